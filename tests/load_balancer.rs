//! k3d's server load balancer and port mappings on a running cluster, against
//! the real Docker Engine with the simulator images (nodes: kecs-sim/k3s:test,
//! load balancer: kecs-sim/k3d-proxy:test, a real TCP/UDP proxy). A NodePort
//! Service created with stock kubectl answers on every node with the node's
//! name, so a mapping is tested end to end: host port → proxy → node port.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kecs_cluster::options::parse_port_spec;
use kecs_cluster::{
    ClusterInfo, ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode, PortMapping,
};
use support::*;

struct Ctx {
    _dir: TempDir,
    dir: PathBuf,
    manager: ClusterManager,
    name: String,
    full: String,
    _guard: ClusterGuard,
    /// Last: dropped after the guard's cleanup (fields drop in order), so the
    /// next test waiting for the gate starts after it.
    _gate: Gate,
}

async fn setup(tag: &str, tweak: impl FnOnce(&mut ClusterManagerConfig)) -> Ctx {
    setup_for("k3d", tag, tweak).await
}

async fn setup_for(
    provider: &str,
    tag: &str,
    tweak: impl FnOnce(&mut ClusterManagerConfig),
) -> Ctx {
    ensure_sim_image().await;
    let gate = shared_for(provider);
    let dir = TempDir::new(tag);
    let mut config = config(dir.path(), provider);
    tweak(&mut config);
    let manager = ClusterManager::new(&config).expect("manager");
    let name = unique_name(tag);
    let full = manager.cluster_name(&name).unwrap();
    let guard = ClusterGuard {
        config: config.clone(),
        name: full.clone(),
    };
    Ctx {
        _gate: gate,
        dir: dir.path().to_path_buf(),
        _dir: dir,
        manager,
        name,
        full,
        _guard: guard,
    }
}

/// A NodePort Service on `node_port`, created from a file with stock kubectl.
fn create_node_port(dir: &Path, kubeconfig: &Path, name: &str, node_port: u16) {
    let file = dir.join(format!("{name}.json"));
    let svc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": name},
            "ports": [{"port": 80, "targetPort": 80, "nodePort": node_port, "protocol": "TCP"}]
        }
    });
    std::fs::write(&file, svc.to_string()).unwrap();
    kubectl(kubeconfig, &["create", "-f", file.to_str().unwrap()]);
}

/// One HTTP GET on 127.0.0.1:`port`: the body, or why it failed.
fn http_get(port: u16) -> Result<String, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    if !out.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP answer: {out:?}"));
    }
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// The NodePort answers through `port` (a node's name, as the simulator's
/// kube-proxy stand-in answers), waiting up to `limit` for the listener the
/// Service opens on every node.
fn answers_with_node_name(port: u16, cluster: &str, limit: Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match http_get(port) {
            Ok(body) if body.contains(&format!("k3d-{cluster}-")) => return body,
            other if std::time::Instant::now() > deadline => {
                panic!("port {port} did not answer with a node of {cluster}: {other:?}")
            }
            _ => std::thread::yield_now(),
        }
    }
}

async fn info(c: &Ctx) -> ClusterInfo {
    c.manager.info(&c.name, &never()).await.unwrap()
}

/// Keeps connecting to the API port (TCP) and fetching through a mapped port
/// (HTTP) until stopped; counts attempts and failures.
struct Probe {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    fn start(api_port: u16, mapped_port: u16) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, a, f) = (stop.clone(), attempts.clone(), failures.clone());
        let handle = std::thread::spawn(move || {
            let api: SocketAddr = ([127, 0, 0, 1], api_port).into();
            while !s.load(Ordering::SeqCst) {
                a.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = TcpStream::connect_timeout(&api, Duration::from_secs(2)) {
                    f.lock().unwrap().push(format!("API port: {e}"));
                }
                if let Err(e) = http_get(mapped_port) {
                    f.lock().unwrap().push(format!("mapped port: {e}"));
                }
            }
        });
        Probe {
            stop,
            attempts,
            failures,
            handle: Some(handle),
        }
    }

    /// Stops the probe: (attempts, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (self.attempts.load(Ordering::SeqCst), failures)
    }
}

/// One server behind the load balancer: kubectl through it, a NodePort reached
/// through a mapping given at create and one added at run time, zero refused
/// connections on the API and the existing mapping while ports are added and
/// removed, the mappings back after stop/start, and a removed one closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_with_ports_added_and_removed_while_running() {
    let c = setup("lb", |_| {}).await;
    let create_port = free_port();
    let opts = CreateOptions {
        agents: 1,
        ports: vec![PortMapping {
            host_port: create_port,
            container_port: 30080,
            protocol: None,
            host_ip: Some("127.0.0.1".into()),
            node: Some("loadbalancer".into()),
        }],
        ..Default::default()
    };
    let created = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    let lb = format!("k3d-{}-serverlb", c.full);
    assert_eq!(created.load_balancer, lb);
    assert!(created
        .nodes
        .iter()
        .any(|n| n.name == lb && n.role == "loadbalancer"));
    assert_eq!(created.node_count, 2, "servers and agents only");
    let kubeconfig = PathBuf::from(&created.kubeconfig_path);
    let yaml = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        yaml.contains(&format!("https://127.0.0.1:{}", created.api_port)),
        "{yaml}"
    );
    // k3d's shape: only the load balancer publishes the API
    let docker = docker().await;
    let server = docker::inspect(&docker, &format!("k3d-{}-server-0", c.full))
        .await
        .unwrap();
    assert!(docker::published_port(&server, "6443/tcp").is_none());
    let lb_info = docker::inspect(&docker, &lb).await.unwrap();
    assert_eq!(
        docker::published_port(&lb_info, "6443/tcp"),
        Some(created.api_port)
    );
    let nodes = kubectl(&kubeconfig, &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");

    create_node_port(&c.dir, &kubeconfig, "web", 30080);
    answers_with_node_name(create_port, &c.full, Duration::from_secs(30));

    // add at run time while a probe hammers the API port and the existing mapping
    let added_port = free_port();
    let probe = Probe::start(created.api_port, create_port);
    let added = c
        .manager
        .port_add(
            &c.name,
            &parse_port_spec(&format!("{added_port}:30080")).unwrap(),
            &never(),
        )
        .await
        .unwrap();
    assert!(added.added);
    assert_eq!(added.host_port, added_port);
    // the same mapping again is not an error
    c.manager
        .port_add(
            &c.name,
            &parse_port_spec(&format!("{added_port}:30080")).unwrap(),
            &never(),
        )
        .await
        .unwrap();
    answers_with_node_name(added_port, &c.full, Duration::from_secs(30));
    c.manager
        .port_remove(&c.name, added_port, "tcp", &never())
        .await
        .unwrap();
    let (attempts, failures) = probe.finish();
    assert!(attempts > 10, "the probe ran only {attempts} times");
    assert!(
        failures.is_empty(),
        "{} of {attempts} probes failed during add/remove: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(http_get(added_port).is_err(), "a removed port is closed");
    assert_eq!(info(&c).await.api_port, created.api_port);

    // a mapping added at run time survives stop/start, as does the create one
    let again = free_port();
    c.manager
        .port_add(
            &c.name,
            &parse_port_spec(&format!("{again}:30080")).unwrap(),
            &never(),
        )
        .await
        .unwrap();
    c.manager.stop(&c.name, &never()).await.unwrap();
    c.manager
        .start(&c.name, Duration::from_secs(120), &never())
        .await
        .unwrap();
    answers_with_node_name(again, &c.full, Duration::from_secs(30));
    answers_with_node_name(create_port, &c.full, Duration::from_secs(30));
    let ports = c.manager.ports(&c.name, &never()).await.unwrap();
    assert!(ports.iter().any(|p| p.host_port == again && p.added));
    assert!(ports.iter().any(|p| p.host_port == create_port && !p.added));
    // a create-time mapping cannot be removed without recreating the balancer
    let e = c
        .manager
        .port_remove(&c.name, create_port, "tcp", &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");

    c.manager.delete(&c.name, &never()).await.unwrap();
    assert!(leftovers(&c.full).await.is_empty());
}

/// A host port in use makes the add fail clearly; the cluster and its other
/// mappings are untouched. Bad specs are InvalidArgument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_port_add_changes_nothing() {
    let c = setup("lbf", |_| {}).await;
    let created = c
        .manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    let kubeconfig = PathBuf::from(&created.kubeconfig_path);
    create_node_port(&c.dir, &kubeconfig, "web", 30081);
    let mapped = free_port();
    c.manager
        .port_add(
            &c.name,
            &parse_port_spec(&format!("{mapped}:30081")).unwrap(),
            &never(),
        )
        .await
        .unwrap();
    let before = info(&c).await;

    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let e = c
        .manager
        .port_add(
            &c.name,
            &parse_port_spec(&format!("{busy}:30081")).unwrap(),
            &never(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    let after = info(&c).await;
    assert_eq!(after.nodes, before.nodes, "no container added or removed");
    assert_eq!(after.ports, before.ports);
    answers_with_node_name(mapped, &c.full, Duration::from_secs(30));

    for bad in ["8080", "x:80", "80:0", "80:80/sctp", "80:80@server:0"] {
        let r = match parse_port_spec(bad) {
            Ok(p) => c.manager.port_add(&c.name, &p, &never()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert_eq!(r.unwrap_err().code(), ErrorCode::InvalidArgument, "{bad}");
    }
    let e = c
        .manager
        .port_remove(&c.name, free_port(), "tcp", &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    drop(held);
}

/// Three servers: with server-0's container stopped, the API still answers
/// through the load balancer (requests fail over to the other servers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_survive_server0_stopping() {
    let c = setup("lb3", |_| {}).await;
    let opts = CreateOptions {
        servers: 3,
        ..Default::default()
    };
    let created = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    let kubeconfig = PathBuf::from(&created.kubeconfig_path);
    let docker = docker().await;
    docker::stop_container(&docker, &format!("k3d-{}-server-0", c.full))
        .await
        .unwrap();
    for _ in 0..6 {
        let v = kubectl(&kubeconfig, &["get", "--raw", "/version"]);
        assert!(v.contains("gitVersion"), "{v}");
    }
}

/// A load balancer image that cannot be had: ImageUnavailable naming it, and
/// nothing of the cluster exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_lb_image_leaves_nothing() {
    let c = setup("lbi", |cfg| {
        cfg.lb_image = Some("kecs-sim/no-such-proxy:test".into())
    })
    .await;
    let e = c
        .manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ImageUnavailable, "{e}");
    assert!(e.to_string().contains("kecs-sim/no-such-proxy:test"), "{e}");
    assert!(leftovers(&c.full).await.is_empty());
    assert!(files_in(&c.dir).is_empty());

    // --no-lb: the direct layout, no load balancer image needed
    let opts = CreateOptions {
        load_balancer: Some(false),
        ..Default::default()
    };
    let created = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    assert!(created.load_balancer.is_empty());
    let e = c
        .manager
        .port_add(&c.name, &parse_port_spec("0:30080").unwrap(), &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}

/// kind with three control planes and two workers: the external load balancer
/// is the API's one endpoint (the kubeconfig names its published port), every
/// node is Ready through it, and the API keeps answering reads and writes with
/// the bootstrap control plane stopped, and after the cluster starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_ha_behind_the_external_load_balancer() {
    let c = setup_for("kind", "kha", |_| {}).await;
    let opts = CreateOptions {
        servers: 3,
        agents: 2,
        ..Default::default()
    };
    let created = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    let lb = format!("{}-external-load-balancer", c.full);
    assert_eq!(created.load_balancer, lb);
    assert_eq!(created.node_count, 5);
    let docker = docker().await;
    let port = docker::published_port(&docker::inspect(&docker, &lb).await.unwrap(), "6443/tcp")
        .expect("the load balancer publishes the API");
    assert_eq!(created.api_port, port);
    let kubeconfig = PathBuf::from(&created.kubeconfig_path);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        text.contains(&format!("server: https://127.0.0.1:{port}")),
        "{text}"
    );
    let ready_nodes = |kubeconfig: &Path| -> Vec<String> {
        let out = kubectl(
            kubeconfig,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ],
        );
        out.lines()
            .filter(|l| l.ends_with("=True"))
            .map(|l| l.trim_end_matches("=True").to_string())
            .collect()
    };
    let mut ready = ready_nodes(&kubeconfig);
    ready.sort();
    let cp = |suffix: &str| format!("{}-control-plane{suffix}", c.full);
    let worker = |suffix: &str| format!("{}-worker{suffix}", c.full);
    assert_eq!(
        ready,
        vec![cp(""), cp("2"), cp("3"), worker(""), worker("2")],
        "every node Ready through the load balancer"
    );

    // the bootstrap control plane goes away: the other two answer, writes included
    docker::stop_container(&docker, &cp("")).await.unwrap();
    for _ in 0..6 {
        let v = kubectl(&kubeconfig, &["get", "--raw", "/version"]);
        assert!(v.contains("gitVersion"), "{v}");
    }
    kubectl(&kubeconfig, &["create", "namespace", "written-without-cp1"]);

    // a start brings the stopped node back; same endpoint, every node Ready
    c.manager
        .start(&c.name, Duration::from_secs(120), &never())
        .await
        .unwrap();
    assert!(c.manager.is_running(&c.name, &never()).await.unwrap());
    assert_eq!(ready_nodes(&kubeconfig).len(), 5);
    let ns = kubectl(
        &kubeconfig,
        &["get", "namespace", "written-without-cp1", "-o", "name"],
    );
    assert_eq!(ns.trim(), "namespace/written-without-cp1");
}

/// kind's load balancer image that cannot be had: ImageUnavailable naming it and
/// nothing exists; options kind cannot honour are refused before any Docker call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_missing_lb_image_and_refused_layouts_leave_nothing() {
    let c = setup_for("kind", "khi", |cfg| {
        cfg.lb_image = Some("kecs-sim/no-such-envoy:test".into())
    })
    .await;
    let ha = CreateOptions {
        servers: 3,
        ..Default::default()
    };
    let e = c.manager.create(&c.name, &ha, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ImageUnavailable, "{e}");
    assert!(e.to_string().contains("kecs-sim/no-such-envoy:test"), "{e}");
    assert!(leftovers(&c.full).await.is_empty());
    assert!(files_in(&c.dir).is_empty());
    for opts in [
        CreateOptions {
            servers: 3,
            load_balancer: Some(false),
            ..Default::default()
        },
        CreateOptions {
            load_balancer: Some(true),
            ..Default::default()
        },
    ] {
        let e = c
            .manager
            .create(&c.name, &opts, &never())
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        assert!(e.to_string().contains("load balancer"), "{e}");
    }
    assert!(leftovers(&c.full).await.is_empty());
}

use kecs_cluster::docker;
