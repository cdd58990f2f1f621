//! kind-node mode: a stand-in for `kindest/node`. PID 1 logs systemd's boot line
//! and serves a control socket; the `kubeadm` and `kubectl` commands kind execs
//! (the same binary under those names) ask it to start the simulated API server
//! (`kubeadm init`, writing kubeadm's `/etc/kubernetes/admin.conf` and the
//! certificates under `/etc/kubernetes/pki`) or to join the cluster (`kubeadm
//! join`): as a worker, or — with `controlPlane:` in the JoinConfiguration and
//! the shared certificates copied from the first control plane, as kind does —
//! as another control plane serving a replica of the cluster's state
//! (`replica.rs`), so the API keeps answering while any one of them is stopped.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::kubeadm_conf::{self, KubeadmConf};
use crate::pki::{self, CaPem, Flavor, KUBEADM_PKI_DIR, SHARED_KUBEADM_PKI};
use crate::state::NodeRecord;
use crate::{join, logfmt, replica};

pub const CONTROL_SOCKET: &str = "/run/kecs-sim/control.sock";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// The node's state across container restarts (a kind node keeps its cluster in
/// etcd's and kubelet's directories): the admin certificate, API objects, and
/// the kubeadm configuration the node was initialised or joined with.
const DATA_DIR: &str = "/var/lib/kecs-sim";
const INIT_CONF: &str = "/var/lib/kecs-sim/kubeadm-init.conf";
const JOIN_CONF: &str = "/var/lib/kecs-sim/kubeadm-join.conf";
/// The control planes a worker knew (its node-port feed names them), for a
/// rejoin after a restart.
const SERVERS_FILE: &str = "/var/lib/kecs-sim/servers.json";
/// How long `kubeadm join` waits for the control plane to answer.
const JOIN_LIMIT: Duration = Duration::from_secs(30);

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
    // control plane's static pods again, or the node rejoins (a control plane
    // through any member it knew, a worker through any control plane)
    if let Ok(conf) = std::fs::read_to_string(INIT_CONF) {
        if let Err(e) = node.init(&conf).await {
            logfmt::error(&format!("restarting the control plane: {}", e.message));
        }
    } else if let Ok(conf) = std::fs::read_to_string(JOIN_CONF) {
        let node = node.clone();
        tokio::spawn(async move {
            match node.join(&conf, true).await {
                Ok(()) => logfmt::info("Rejoined the cluster after a restart"),
                Err(e) => logfmt::error(&format!("rejoining the cluster: {}", e.message)),
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

/// Why a kubeadm command failed: the phase (kubeadm prints `error execution
/// phase <phase>: <message>`; empty: the command itself) and the message.
struct Failure {
    phase: &'static str,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { phase: "", message }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_string().into()
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
        let op = req["op"].as_str().unwrap_or("");
        let result = match op {
            "init" => self.init(conf).await,
            "join" => self.join(conf, false).await,
            other => Err(format!("unknown request {other:?}").into()),
        };
        let reply = match result {
            Ok(()) => json!({"ok": true}),
            Err(f) => {
                let phase = if f.phase.is_empty() { op } else { f.phase };
                json!({"ok": false, "phase": phase, "error": f.message})
            }
        };
        let _ = w.write_all(format!("{reply}\n").as_bytes()).await;
    }

    /// This node as a control plane: a member of the replicated state at
    /// `https://<name>:<port>`, labelled as a control plane.
    fn control_plane(&self, port: u16) -> NodeRecord {
        let mut me = self.me.clone();
        me.control_plane = true;
        me.peer_url = format!("https://{}:{port}", me.name);
        me
    }

    async fn init(&self, raw: &str) -> Result<(), Failure> {
        let conf: KubeadmConf = kubeadm_conf::parse(raw);
        let endpoint = conf
            .control_plane_endpoint
            .clone()
            .unwrap_or_else(|| format!("{}:6443", self.me.name));
        let token = conf
            .token
            .clone()
            .ok_or("kubeadm.conf has no bootstrap token")?;
        let ca = ensure_shared_pki()?;
        let me = self.control_plane(6443);
        let pki = self.issue(&ca, &conf, &endpoint, &[])?;
        let replica = replica::serve(
            &replica::Spec {
                me: me.clone(),
                token,
                db: Path::new(DATA_DIR).join("db"),
                service_net: crate::state::service_net(conf.service_subnet.as_deref()),
                joined: None,
                port: 6443,
            },
            &pki,
        )
        .await?;
        replica.catch_up(&me, true).await;
        write_admin_conf(&pki, &endpoint, &conf, false)?;
        write_private(INIT_CONF, raw)?;
        eprintln!("kube-apiserver is listening on :6443 (simulated)");
        Ok(())
    }

    /// The serving certificate (for this node, the control-plane endpoint's
    /// host, kubeadm's certSANs and `extra` names) and the admin certificate.
    fn issue(
        &self,
        ca: &CaPem,
        conf: &KubeadmConf,
        endpoint: &str,
        extra: &[String],
    ) -> Result<pki::Pki, String> {
        let mut sans = conf.cert_sans.clone();
        sans.push(host_of(endpoint).to_string());
        sans.extend_from_slice(extra);
        replica::issue_persistent(
            ca,
            Flavor::Kubeadm,
            &Path::new(DATA_DIR).join("tls"),
            &self.me.name,
            &self.ips,
            &sans,
        )
    }

    /// `kubeadm join`; `rejoin`: the node restarted and joins again by itself,
    /// retrying for as long as it takes.
    async fn join(&self, raw: &str, rejoin: bool) -> Result<(), Failure> {
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
        if conf.join_control_plane.is_some() {
            return self
                .join_control_plane(raw, &conf, &endpoint, &token, rejoin)
                .await;
        }
        let mut urls = vec![url.clone()];
        if rejoin {
            urls.extend(
                crate::nodeports::saved_servers(Path::new(SERVERS_FILE))
                    .into_iter()
                    .filter(|u| *u != url),
            );
        }
        register(&urls, &token, &self.me, &endpoint, rejoin).await?;
        write_private(JOIN_CONF, raw)?;
        tokio::spawn(crate::nodeports::follow_server(
            url,
            token,
            self.me.name.clone(),
            Some(PathBuf::from(SERVERS_FILE)),
        ));
        Ok(())
    }

    /// Joins as another control plane: the certificates kind copied from the
    /// first control plane must be there (kubeadm fails as it does when they
    /// are not); registers through the discovery endpoint, takes the cluster's
    /// state, serves it with a certificate issued by the copied CA and becomes
    /// a member of the replication.
    async fn join_control_plane(
        &self,
        raw: &str,
        conf: &KubeadmConf,
        endpoint: &str,
        token: &str,
        rejoin: bool,
    ) -> Result<(), Failure> {
        let ca = load_shared_pki().map_err(|message| Failure {
            phase: "control-plane-prepare/certs",
            message,
        })?;
        let local = conf.join_control_plane.clone().unwrap_or_default();
        let port = local.bind_port.unwrap_or(6443);
        let me = self.control_plane(port);
        let db = Path::new(DATA_DIR).join("db");
        let urls = replica::rejoin_urls(&format!("https://{endpoint}"), &db, &me.name);
        let (cluster_ca, snapshot) = register(&urls, token, &me, endpoint, rejoin).await?;
        if cluster_ca.cert_pem.trim() != ca.cert_pem.trim() {
            return Err(Failure {
                phase: "control-plane-prepare/certs",
                message: format!(
                    "{KUBEADM_PKI_DIR}/ca.crt is not the CA of the cluster at {endpoint}"
                ),
            });
        }
        let extra: Vec<String> = local.advertise_address.into_iter().collect();
        let pki = self.issue(&ca, conf, endpoint, &extra)?;
        let replica = replica::serve(
            &replica::Spec {
                me: me.clone(),
                token: token.to_string(),
                db,
                service_net: crate::state::service_net(conf.service_subnet.as_deref()),
                joined: Some(snapshot),
                port,
            },
            &pki,
        )
        .await?;
        replica.catch_up(&me, false).await;
        write_admin_conf(&pki, endpoint, conf, true)?;
        write_private(JOIN_CONF, raw)?;
        eprintln!("kube-apiserver is listening on :{port} (simulated)");
        Ok(())
    }
}

/// Registers with the first of `urls` that answers (retrying while none does):
/// the cluster's CA and state. A rejected token fails; a first join gives up
/// after `JOIN_LIMIT`, a rejoin never does.
async fn register(
    urls: &[String],
    token: &str,
    me: &NodeRecord,
    endpoint: &str,
    rejoin: bool,
) -> Result<(CaPem, Value), Failure> {
    let attempt = join::register_retrying(urls, token, me);
    let joined = if rejoin {
        attempt.await
    } else {
        tokio::time::timeout(JOIN_LIMIT, attempt)
            .await
            .map_err(|_| {
                format!(
                    "could not reach the control plane at {endpoint} within {}s",
                    JOIN_LIMIT.as_secs()
                )
            })?
    };
    Ok(joined?)
}

fn host_of(endpoint: &str) -> &str {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host.trim_matches(['[', ']']),
        _ => endpoint,
    }
}

/// The shared certificates `kubeadm init` makes (kept across restarts: a pair
/// is made only when a file of it is missing); returns the cluster CA.
fn ensure_shared_pki() -> Result<CaPem, String> {
    let dir = Path::new(KUBEADM_PKI_DIR);
    let has = |f: &str| dir.join(f).exists();
    if !SHARED_KUBEADM_PKI
        .iter()
        .all(|(_, public, private)| has(public) && has(private))
    {
        let fresh = pki::shared_kubeadm_pki().map_err(|e| format!("generating PKI: {e}"))?;
        for (_, public, private) in SHARED_KUBEADM_PKI {
            if has(public) && has(private) {
                continue;
            }
            for (file, pem) in fresh.iter().filter(|(f, _)| *f == public || *f == private) {
                // private keys are for root only, as kubeadm writes them
                let mode = if file.ends_with(".key") { 0o600 } else { 0o644 };
                let path = dir.join(file).display().to_string();
                crate::write_kubeconfig(&path, pem, mode)
                    .map_err(|e| format!("writing {path}: {e}"))?;
            }
        }
    }
    load_shared_pki()
}

/// The shared certificates a joining control plane needs, checked as kubeadm
/// checks them (each file present and PEM of its kind); returns the cluster CA.
fn load_shared_pki() -> Result<CaPem, String> {
    let dir = Path::new(KUBEADM_PKI_DIR);
    let mut ca = None;
    for (name, public, private) in SHARED_KUBEADM_PKI {
        let (public_path, private_path) = (dir.join(public), dir.join(private));
        let public_pem = if public.ends_with(".pub") {
            read_pem(&public_path, "-----BEGIN PUBLIC KEY-----").map_err(|e| {
                format!(
                    "failure loading key for {name}: couldn't load the public key file {}: {e}",
                    public_path.display()
                )
            })?
        } else {
            read_pem(&public_path, "-----BEGIN CERTIFICATE-----").map_err(|e| {
                format!(
                    "failure loading certificate for {name}: couldn't load the certificate file {}: {e}",
                    public_path.display()
                )
            })?
        };
        let private_pem = read_pem(&private_path, "PRIVATE KEY-----").map_err(|e| {
            format!(
                "failure loading key for {name}: couldn't load the private key file {}: {e}",
                private_path.display()
            )
        })?;
        if ca.is_none() {
            ca = Some(CaPem {
                cert_pem: public_pem,
                key_pem: private_pem,
            });
        }
    }
    Ok(ca.expect("the cluster CA is the first shared pair"))
}

/// A PEM file's text, which must contain `marker`; errors read as Go's.
fn read_pem(path: &Path, marker: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("open {}: {why}", path.display())
    })?;
    if !text.contains(marker) {
        return Err("data does not contain a valid PEM block".into());
    }
    Ok(text)
}

/// kubeadm's admin kubeconfig. A joining control plane keeps the one kind
/// copied from the first control plane when it is for this cluster's CA (as
/// kubeadm reuses a kubeconfig that is already there); else it writes its own.
fn write_admin_conf(
    p: &pki::Pki,
    endpoint: &str,
    conf: &KubeadmConf,
    keep_existing: bool,
) -> Result<(), String> {
    std::fs::create_dir_all("/etc/kubernetes").map_err(|e| e.to_string())?;
    if keep_existing {
        let ca = pki::base64(p.ca.cert_pem.as_bytes());
        if std::fs::read_to_string(ADMIN_CONF)
            .is_ok_and(|existing| existing.contains(&format!("certificate-authority-data: {ca}")))
        {
            return Ok(());
        }
    }
    let cluster = conf.cluster_name.as_deref().unwrap_or("kubernetes");
    write_private(ADMIN_CONF, &admin_conf(p, endpoint, cluster))
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

/// Sends one request to PID 1's control socket and returns its answer; an
/// error is (phase, message).
async fn ask(op: &str, config: &str) -> Result<(), (String, String)> {
    let failed = |e: String| (op.to_string(), e);
    let mut s = UnixStream::connect(CONTROL_SOCKET)
        .await
        .map_err(|e| failed(format!("node agent not running ({CONTROL_SOCKET}): {e}")))?;
    s.write_all(format!("{}\n", json!({"op": op, "config": config})).as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let v: Value = serde_json::from_str(&line).map_err(|e| {
        (
            op.to_string(),
            format!("bad answer from the node agent: {e}"),
        )
    })?;
    if v["ok"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err((
            v["phase"].as_str().unwrap_or(op).to_string(),
            v["error"].as_str().unwrap_or("unknown error").to_string(),
        ))
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
        Err((phase, e)) => {
            eprintln!("error execution phase {phase}: {e}");
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
