//! kecs-node-sim: a k3s node stand-in for the `kecs-sim/k3s:test` test image, and
//! (run as `kind-node`, or as `kubeadm`/`kubectl`) a kindest/node stand-in for
//! `kecs-sim/kind-node:test` — see `kind.rs`.
//!
//! Seen from outside a container it behaves like a k3s node as k3d drives it: k3s's
//! argv and env, its log lines, a kubeconfig written where `K3S_KUBECONFIG_OUTPUT`
//! says, a TLS Kubernetes API on 6443 that stock kubectl and kube-rs can use for
//! nodes, namespaces, config maps and services (`api.rs`), agents joining by name,
//! and a listener on every node for each Service node port (`nodeports.rs`).
//! Servers that join another (`--server`) form one replicated datastore, as k3s
//! servers with embedded etcd do (`cluster.rs`): every server holds the whole
//! state, writes go to the leader, and the cluster keeps serving reads and
//! writes while any one server is stopped.
//!
//! As `crictl` (or `k3s crictl`), `crictl pull IMAGE` resolves the image through
//! the node's registry configuration and fetches its manifest (`crictl.rs`).
//!
//! State survives a container restart, as k3s's does: the CA, the admin client
//! certificate and the token under `/var/lib/rancher/k3s/server/{tls,token}`, the
//! API objects and nodes in `/var/lib/rancher/k3s/server/db/state.json` (kind
//! nodes: kubeadm's certificates under `/etc/kubernetes/pki`, the rest under
//! `/var/lib/kecs-sim`). A restarted server logs
//! `Cluster dns configmap already exists` instead of `… has been set successfully`;
//! agents register again and log `Successfully registered node` again.
//!
//! Fault knobs, from the environment or, for one boot only, from a file:
//! - `SIM_READY_DELAY_MS=<ms>`: wait before the ready lines.
//! - `SIM_EXIT_BEFORE_READY=<code>`: exit with that code before ready.
//! - `SIM_NEVER_READY=1` (or `=<part of a hostname>`): hang before ready.
//! - `SIM_IGNORE_SIGTERM=1`: ignore SIGTERM (only SIGKILL stops the node).
//! - `SIM_KUBEADM_INIT_FAIL=<code>` (kind image): `kubeadm init` fails.
//! - `SIM_NODE_GRACE_MS=<ms>` (server): a node not heard from for this long is
//!   listed NotReady (default 40 s, Kubernetes' node-monitor-grace-period).
//! - `SIM_LOG_REQUESTS=1`: log every API request (method, path, query, media types).
//! - `SIM_FAULTS_FILE=<path>`: if that file exists when the node boots, its
//!   `KEY=VALUE` lines (`SIM_*` keys only; `#` comments) are knobs too, overriding
//!   the environment. A test mounts a host directory, creates the cluster, writes
//!   the file, then stops and starts a node to fault that restart only.

mod api;
mod args;
mod cluster;
mod crictl;
mod join;
mod kind;
mod kubeadm_conf;
mod logfmt;
mod nodeports;
mod openapi;
mod patch;
mod pki;
mod protobuf;
mod replica;
mod state;
mod table;

use std::net::IpAddr;
use std::time::Duration;

use args::Role;
use state::{NodeRecord, K3S_VERSION};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // a multi-call binary: the kind-node image links kubeadm and kubectl to it
    match argv0.rsplit('/').next().unwrap_or("") {
        "kubeadm" => std::process::exit(runtime().block_on(kind::kubeadm(&argv))),
        "kubectl" => std::process::exit(kind::kubectl(&argv)),
        "crictl" => std::process::exit(runtime().block_on(crictl::main(&argv))),
        _ => {}
    }
    // `k3s crictl …`, as k3s's own multi-call binary takes it
    if argv.first().map(String::as_str) == Some("crictl") {
        std::process::exit(runtime().block_on(crictl::main(&argv[1..])));
    }
    if argv.first().map(String::as_str) == Some("kind-node") {
        std::process::exit(runtime().block_on(run_kind_node()));
    }
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            logfmt::fatal(&e);
            std::process::exit(1);
        }
    };
    std::process::exit(runtime().block_on(run(args)));
}

/// Where a k3s node keeps its state, as k3s does.
const K3S_DATA_DIR: &str = "/var/lib/rancher/k3s";

/// Where an agent keeps the cluster's server URLs (k3s keeps its agent load
/// balancer's server list under `agent/etc`).
const AGENT_SERVERS_FILE: &str = "agent/etc/k3s-agent-load-balancer.json";

/// Knobs read from `SIM_FAULTS_FILE` at boot (empty when unset or absent).
static FAULTS: std::sync::OnceLock<std::collections::HashMap<String, String>> =
    std::sync::OnceLock::new();

fn faults_file() -> &'static std::collections::HashMap<String, String> {
    FAULTS.get_or_init(|| {
        let Some(path) = std::env::var("SIM_FAULTS_FILE")
            .ok()
            .filter(|p| !p.is_empty())
        else {
            return Default::default();
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Default::default();
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| k.starts_with("SIM_"))
            .collect()
    })
}

/// A setting: a `SIM_*` knob from the faults file first, then the environment.
pub fn env(name: &str) -> Option<String> {
    if let Some(v) = faults_file().get(name) {
        return Some(v.clone()).filter(|v| !v.is_empty());
    }
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Exit promptly on SIGTERM/SIGINT — as PID 1 too, where the kernel applies no
/// default action — unless `SIM_IGNORE_SIGTERM=1` asks to be killed with SIGKILL.
fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let ignore = env("SIM_IGNORE_SIGTERM").as_deref() == Some("1");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            if ignore {
                logfmt::info("Received SIGTERM; ignoring it (SIM_IGNORE_SIGTERM=1)");
                continue;
            }
            logfmt::info("Received SIGTERM, shutting down");
            std::process::exit(0);
        }
    });
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "localhost".into())
}

/// The container's own addresses, read from the kernel's local routing table.
fn local_ips() -> Vec<IpAddr> {
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if let Ok(ip) = t.parse::<IpAddr>() {
            last = Some(ip);
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last {
                if !ip.is_loopback() && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// The fault knobs every node honours before it reports ready; returns an exit
/// code when the node must stop.
async fn fault_knobs() -> Option<i32> {
    if let Some(ms) = env("SIM_READY_DELAY_MS").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = env("SIM_EXIT_BEFORE_READY") {
        let code: i32 = code.parse().unwrap_or(1);
        logfmt::fatal(&format!(
            "simulated failure before ready (SIM_EXIT_BEFORE_READY={code})"
        ));
        return Some(code);
    }
    // "1": this node; any other value: nodes whose hostname contains it (so one
    // node of a cluster can be held back while the env is set on every node)
    let never = env("SIM_NEVER_READY").is_some_and(|v| v == "1" || hostname().contains(v.as_str()));
    if never {
        logfmt::info("Waiting for containerd startup: simulated hang (SIM_NEVER_READY)");
        std::future::pending::<()>().await;
    }
    None
}

/// This node as the API lists it, and its addresses.
fn this_node(
    control_plane: bool,
    labels: std::collections::BTreeMap<String, String>,
) -> (NodeRecord, Vec<IpAddr>) {
    let ips = local_ips();
    let ip = ips
        .first()
        .map(|i| i.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let node = NodeRecord {
        name: hostname(),
        control_plane,
        ip,
        labels,
        created: String::new(),
        uid: String::new(),
        peer_url: String::new(),
    };
    (node, ips)
}

async fn run_kind_node() -> i32 {
    watch_signals();
    if let Some(code) = fault_knobs().await {
        return code;
    }
    let (node, ips) = this_node(hostname().contains("control-plane"), Default::default());
    kind::run_node(node, ips).await
}

async fn run(args: args::Args) -> i32 {
    watch_signals();
    let role_name = if args.role == Role::Server {
        ""
    } else {
        " agent"
    };
    logfmt::info(&format!(
        "Starting k3s{role_name} {K3S_VERSION} (kecs node simulator)"
    ));
    for d in &args.disabled {
        logfmt::info(&format!("Disabling component: {d}"));
    }
    if let Some(code) = fault_knobs().await {
        return code;
    }
    let (me, ips) = this_node(args.role == Role::Server, args.node_labels.clone());
    let name = me.name.clone();
    let server_url = args.server_url.clone().or_else(|| env("K3S_URL"));
    let token = args.token.clone().or_else(|| env("K3S_TOKEN"));

    match args.role {
        Role::Agent => {
            let (Some(url), Some(token)) = (server_url, token) else {
                logfmt::fatal("agent needs K3S_URL and K3S_TOKEN");
                return 1;
            };
            logfmt::info("Containerd is now running");
            // the servers known from the last run too: a restarted agent
            // rejoins through any of them, as k3s's agent load balancer does
            let servers_file = std::path::Path::new(K3S_DATA_DIR).join(AGENT_SERVERS_FILE);
            let mut urls = vec![url.clone()];
            urls.extend(
                nodeports::saved_servers(&servers_file)
                    .into_iter()
                    .filter(|u| *u != url),
            );
            join::register_with_any(&urls, &token, &me, join::Retry::AgentConfig).await;
            logfmt::info(&format!("Successfully registered node {name}"));
            tokio::spawn(nodeports::follow_server(
                url,
                token,
                name,
                Some(servers_file),
            ));
        }
        Role::Server => {
            if let Err(e) = run_server(&args, &me, &ips, server_url, token).await {
                logfmt::fatal(&e);
                return 1;
            }
        }
    }
    std::future::pending::<()>().await;
    0
}

/// Reads `path`, or makes its content with `make` and writes it (mode 0600) for
/// the next boot.
fn load_or_save(
    path: &std::path::Path,
    make: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        return Ok(s);
    }
    let s = make()?;
    write_private(path, &s)?;
    Ok(s)
}

fn write_private(path: &std::path::Path, content: &str) -> Result<(), String> {
    write_kubeconfig(&path.display().to_string(), content, 0o600)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

async fn run_server(
    args: &args::Args,
    me: &NodeRecord,
    ips: &[IpAddr],
    server_url: Option<String>,
    token: Option<String>,
) -> Result<(), String> {
    let dir = std::path::Path::new(K3S_DATA_DIR).join("server");
    let token_file = dir.join("token");
    let token = match token {
        Some(t) => {
            let _ = load_or_save(&token_file, || Ok(t.clone()))?;
            t
        }
        None => load_or_save(&token_file, || Ok(state::new_uid()))?
            .trim()
            .to_string(),
    };
    let db = dir.join("db");
    // a server is a member of the replicated datastore under its own name
    let mut me = me.clone();
    me.peer_url = format!("https://{}:{}", me.name, args.https_port);
    // a joining server takes the cluster CA and state from the server it joins
    // (every boot: it registers again, as a k3s server rejoins its etcd
    // cluster); on a restart any member it knew will do, the init server need
    // not be up
    let joined = match &server_url {
        Some(url) => {
            let urls = replica::rejoin_urls(url, &db, &me.name);
            Some(join::register_with_any(&urls, &token, &me, join::Retry::Quick).await)
        }
        None => None,
    };
    let (joined_ca, joined_state) = match joined {
        Some((ca, state)) => (Some(ca), Some(state)),
        None => (None, None),
    };
    let tls_dir = dir.join("tls");
    let ca = replica::load_or_make_ca(
        &tls_dir.join("server-ca.crt"),
        &tls_dir.join("server-ca.key"),
        || match joined_ca {
            Some(ca) => Ok(ca),
            None => pki::new_ca(pki::Flavor::K3s).map_err(|e| format!("generating CA: {e}")),
        },
    )?;
    let pki = replica::issue_persistent(
        &ca,
        pki::Flavor::K3s,
        &tls_dir,
        &me.name,
        ips,
        &args.tls_sans,
    )?;
    // a joining server starts from the cluster's state, not a new one of its own
    let founder = server_url.is_none();
    let replica = replica::serve(
        &replica::Spec {
            me: me.clone(),
            token,
            db,
            service_net: state::service_net(None),
            joined: joined_state,
            port: args.https_port,
        },
        &pki,
    )
    .await?;
    logfmt::info(&format!(
        "Running kube-apiserver --advertise-address={} --secure-port={} --tls-cert-file=/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt",
        me.ip, args.https_port
    ));
    logfmt::info("Containerd is now running");
    if args.cluster_init {
        if replica.restarted {
            logfmt::info("Starting etcd for existing cluster member (simulated)");
        } else {
            logfmt::info("Starting etcd for new cluster (simulated)");
        }
    }
    replica.catch_up(&me, founder).await;

    let out = env("K3S_KUBECONFIG_OUTPUT").unwrap_or_else(|| "/etc/rancher/k3s/k3s.yaml".into());
    let mode = env("K3S_KUBECONFIG_MODE")
        .and_then(|m| u32::from_str_radix(&m, 8).ok())
        .unwrap_or(0o600);
    write_kubeconfig(&out, &pki::kubeconfig_yaml(&pki, args.https_port), mode)
        .map_err(|e| format!("writing kubeconfig {out}: {e}"))?;
    logfmt::info(&format!("Wrote kubeconfig {out}"));
    logfmt::info("k3s is up and running");
    if replica.restarted {
        logfmt::info("Cluster dns configmap already exists");
    } else {
        logfmt::info("Cluster dns configmap has been set successfully");
    }
    Ok(())
}

fn write_kubeconfig(path: &str, yaml: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, yaml)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}
