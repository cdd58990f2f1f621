//! kind-node mode: a stand-in for `kindest/node`. PID 1 logs systemd's boot line
//! and serves a control socket; the `kubeadm` and `kubectl` commands kind execs
//! (the same binary under those names) ask it to start the simulated API server
//! (`kubeadm init`, writing kubeadm's `/etc/kubernetes/admin.conf`) or to register
//! with the control plane (`kubeadm join`).

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::kubeadm_conf::{self, KubeadmConf};
use crate::state::{NodeRecord, State};
use crate::{api, join, logfmt, pki};

pub const CONTROL_SOCKET: &str = "/run/kecs-sim/control.sock";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// The node's state across container restarts (a kind node keeps its cluster in
/// etcd's and kubelet's directories): PKI, API objects, and the kubeadm
/// configuration the node was initialised or joined with.
const DATA_DIR: &str = "/var/lib/kecs-sim";
const INIT_CONF: &str = "/var/lib/kecs-sim/kubeadm-init.conf";
const JOIN_CONF: &str = "/var/lib/kecs-sim/kubeadm-join.conf";

/// systemd-style console line (kind waits for "Reached target .*Multi-User System").
fn systemd(msg: &str) {
    eprintln!("[  OK  ] {msg}");
}

pub async fn run_node(me: NodeRecord, ips: Vec<std::net::IpAddr>) -> i32 {
    eprintln!("systemd 252.38-1~deb12u1 running in system mode (kecs node simulator)");
    if let Ok(v) = std::fs::read_to_string("/kind/version") {
        crate::state::set_version(v.trim());
    }
    let _ = std::fs::create_dir_all("/run/kecs-sim");
    let _ = std::fs::remove_file(CONTROL_SOCKET);
    let listener = match UnixListener::bind(CONTROL_SOCKET) {
        Ok(l) => l,
        Err(e) => {
            logfmt::fatal(&format!("control socket {CONTROL_SOCKET}: {e}"));
            return 1;
        }
    };
    systemd("Started containerd.service - containerd container runtime.");
    let node = Arc::new(Node { me, ips });
    // a restarted node brings back what kubeadm set up before: kubelet starts the
    // control plane's static pods again, or rejoins as a worker
    if let Ok(conf) = std::fs::read_to_string(INIT_CONF) {
        if let Err(e) = node.init(&conf).await {
            logfmt::error(&format!("restarting the control plane: {e}"));
        }
    } else if let Ok(conf) = std::fs::read_to_string(JOIN_CONF) {
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = node.join(&conf).await {
                logfmt::error(&format!("rejoining the cluster: {e}"));
            }
        });
    }
    systemd("Reached target multi-user.target - Multi-User System.");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move { node.serve(stream).await });
    }
}

struct Node {
    me: NodeRecord,
    ips: Vec<std::net::IpAddr>,
}

impl Node {
    async fn serve(&self, stream: UnixStream) {
        let (r, mut w) = stream.into_split();
        let mut line = String::new();
        if BufReader::new(r).read_line(&mut line).await.is_err() {
            return;
        }
        let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let conf = req["config"].as_str().unwrap_or("");
        let result = match req["op"].as_str() {
            Some("init") => self.init(conf).await,
            Some("join") => self.join(conf).await,
            other => Err(format!("unknown request {other:?}")),
        };
        let reply = match result {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e}),
        };
        let _ = w.write_all(format!("{reply}\n").as_bytes()).await;
    }

    async fn init(&self, raw: &str) -> Result<(), String> {
        let conf: KubeadmConf = kubeadm_conf::parse(raw);
        let endpoint = conf
            .control_plane_endpoint
            .clone()
            .unwrap_or_else(|| format!("{}:6443", self.me.name));
        let token = conf
            .token
            .clone()
            .ok_or("kubeadm.conf has no bootstrap token")?;
        let mut sans = conf.cert_sans.clone();
        sans.push(endpoint.split(':').next().unwrap_or_default().to_string());
        let dir = std::path::Path::new(DATA_DIR);
        let issued = crate::persistent_pki(
            dir,
            || pki::new_ca().map_err(|e| e.to_string()),
            &self.me.name,
            &self.ips,
            &sans,
        )?;
        let ca = issued.ca.clone();
        let (state, _) = State::open(
            token,
            ca.cert_pem.clone(),
            Some(dir.join("db")),
            crate::state::service_net(conf.service_subnet.as_deref()),
        );
        let state = Arc::new(state);
        state.register(self.me.clone());
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", 6443))
            .await
            .map_err(|e| format!("listen on :6443: {e}"))?;
        let tls = api::tls_config(&issued)?;
        let server = Arc::new(api::Server {
            state: state.clone(),
            ca,
            advertise: format!("{}:6443", self.me.ip),
            node_name: self.me.name.clone(),
            cluster: None,
        });
        tokio::spawn(api::serve(listener, tls, server));
        tokio::spawn(crate::nodeports::follow_state(state, self.me.name.clone()));
        let cluster = conf
            .cluster_name
            .clone()
            .unwrap_or_else(|| "kubernetes".into());
        std::fs::create_dir_all("/etc/kubernetes").map_err(|e| e.to_string())?;
        write_private(ADMIN_CONF, &admin_conf(&issued, &endpoint, &cluster))?;
        write_private(INIT_CONF, raw)?;
        eprintln!("kube-apiserver is listening on :6443 (simulated)");
        Ok(())
    }

    async fn join(&self, raw: &str) -> Result<(), String> {
        let conf: KubeadmConf = kubeadm_conf::parse(raw);
        let endpoint = conf
            .api_server_endpoint
            .clone()
            .ok_or("kubeadm.conf has no discovery.bootstrapToken.apiServerEndpoint")?;
        let token = conf
            .token
            .clone()
            .ok_or("kubeadm.conf has no bootstrap token")?;
        let url = format!("https://{endpoint}");
        match tokio::time::timeout(
            Duration::from_secs(30),
            join::register_once_retrying(&url, &token, &self.me),
        )
        .await
        {
            Ok(r) => r.map(|_| ())?,
            Err(_) => {
                return Err(format!(
                    "could not reach the control plane at {endpoint} within 30s"
                ))
            }
        }
        write_private(JOIN_CONF, raw)?;
        tokio::spawn(crate::nodeports::follow_server(
            url,
            token,
            self.me.name.clone(),
            None,
        ));
        Ok(())
    }
}

fn write_private(path: &str, content: &str) -> Result<(), String> {
    crate::write_kubeconfig(path, content, 0o600).map_err(|e| format!("writing {path}: {e}"))
}

/// kubeadm's admin kubeconfig: user `kubernetes-admin`, context
/// `kubernetes-admin@<cluster>`, server the control-plane endpoint.
fn admin_conf(p: &pki::Pki, endpoint: &str, cluster: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://{endpoint}\n  name: {cluster}\ncontexts:\n- context:\n    cluster: {cluster}\n    user: kubernetes-admin\n  name: kubernetes-admin@{cluster}\ncurrent-context: kubernetes-admin@{cluster}\nkind: Config\npreferences: {{}}\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = pki::base64(p.ca.cert_pem.as_bytes()),
        cert = pki::base64(p.admin_cert_pem.as_bytes()),
        key = pki::base64(p.admin_key_pem.as_bytes()),
    )
}

/// Sends one request to PID 1's control socket and returns its answer.
async fn ask(op: &str, config: &str) -> Result<(), String> {
    let mut s = UnixStream::connect(CONTROL_SOCKET)
        .await
        .map_err(|e| format!("node agent not running ({CONTROL_SOCKET}): {e}"))?;
    s.write_all(format!("{}\n", json!({"op": op, "config": config})).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    let v: Value =
        serde_json::from_str(&line).map_err(|e| format!("bad answer from the node agent: {e}"))?;
    if v["ok"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(v["error"].as_str().unwrap_or("unknown error").to_string())
    }
}

fn config_arg(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_string());
        }
        if a == "--config" {
            return it.next().cloned();
        }
    }
    None
}

/// `kubeadm init|join --config …` as kind runs them. Knob: `SIM_KUBEADM_INIT_FAIL=<code>`.
pub async fn kubeadm(args: &[String]) -> i32 {
    let op = args.first().map(String::as_str).unwrap_or("");
    if !matches!(op, "init" | "join") {
        eprintln!("kubeadm (kecs node simulator): only init and join are simulated, got {op:?}");
        return 1;
    }
    if op == "init" {
        if let Some(code) = crate::env("SIM_KUBEADM_INIT_FAIL") {
            eprintln!("[init] error execution phase wait-control-plane: simulated failure (SIM_KUBEADM_INIT_FAIL={code})");
            return code.parse().unwrap_or(1);
        }
    }
    let Some(path) = config_arg(args) else {
        eprintln!("kubeadm {op}: --config is required");
        return 1;
    };
    let config = match std::fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kubeadm {op}: reading {path}: {e}");
            return 1;
        }
    };
    match ask(op, &config).await {
        Ok(()) if op == "init" => {
            println!("Your Kubernetes control-plane has initialized successfully!");
            0
        }
        Ok(()) => {
            println!("This node has joined the cluster.");
            0
        }
        Err(e) => {
            eprintln!("error execution phase {op}: {e}");
            1
        }
    }
}

/// `kubectl` for the commands kind runs: `create|apply -f -` (stdin), `taint`, `label`.
pub fn kubectl(args: &[String]) -> i32 {
    use std::io::Read;
    if !std::path::Path::new(ADMIN_CONF).exists() {
        eprintln!("The connection to the server localhost:8080 was refused - did you specify the right host or port?");
        return 1;
    }
    let verb = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str)
        .unwrap_or("");
    match verb {
        "create" | "apply" => {
            let mut manifest = String::new();
            if args.iter().any(|a| a == "-") {
                let _ = std::io::stdin().read_to_string(&mut manifest);
            }
            let docs = manifest
                .split("\n---")
                .filter(|d| d.contains("kind:"))
                .count();
            let word = if verb == "create" {
                "created"
            } else {
                "configured"
            };
            for i in 0..docs {
                println!("object/{i} {word}");
            }
            0
        }
        "taint" => {
            println!("node/all untainted");
            0
        }
        "label" => {
            println!("node/all unlabeled");
            0
        }
        other => {
            eprintln!("kubectl (kecs node simulator): {other:?} is not simulated");
            1
        }
    }
}
