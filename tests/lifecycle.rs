//! Cluster lifecycle and failure paths against the real Docker Engine with the
//! node simulator image. One suite, run for every provider (`for_providers!`).

mod support;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kecs_cluster::{
    CancellationToken, ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode,
};
use support::*;

struct Ctx {
    _dir: TempDir,
    dir: std::path::PathBuf,
    _config: ClusterManagerConfig,
    manager: ClusterManager,
    name: String,
    full: String,
    _guard: ClusterGuard,
    /// Last: dropped after the guard's cleanup (fields drop in order), so the
    /// next test waiting for the gate starts after it.
    _gate: Gate,
}

async fn setup(provider: &str, tag: &str, tweak: impl FnOnce(&mut ClusterManagerConfig)) -> Ctx {
    setup_gated(provider, tag, tweak, shared_for(provider)).await
}

async fn setup_gated(
    provider: &str,
    tag: &str,
    tweak: impl FnOnce(&mut ClusterManagerConfig),
    gate: Gate,
) -> Ctx {
    ensure_sim_image().await;
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
        _config: config,
        manager,
        name,
        full,
        _guard: guard,
    }
}

async fn ready_nodes(kubeconfig_yaml: &str) -> Vec<String> {
    let client = kecs_cluster::readiness::client(kubeconfig_yaml, Duration::from_secs(5))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client);
    nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| n.metadata.name)
        .collect()
}

async fn assert_gone(c: &Ctx) {
    assert!(
        !c.manager.exists(&c.name, &never()).await.unwrap(),
        "cluster still exists"
    );
    assert_eq!(
        leftovers(&c.full).await,
        Vec::<String>::new(),
        "Docker objects left behind"
    );
    assert_eq!(
        files_in(&c.dir),
        Vec::<String>::new(),
        "kubeconfig files left behind"
    );
}

// ---- lifecycle ---------------------------------------------------------------

async fn single_server(provider: &str) {
    let c = setup(provider, "one", |_| {}).await;
    let info = c
        .manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    assert_eq!(info.name, c.full);
    assert_eq!(info.status, "running");
    assert_eq!(info.provider, provider);
    assert_eq!(info.node_count, 1);
    assert!(
        info.version.starts_with("v1."),
        "version {:?}",
        info.version
    );
    assert_eq!(info.api_host, "127.0.0.1");

    // kubeconfig file: where GetKubeconfigPath says, mode 0600, usable from the host
    let path = c.manager.kubeconfig_path(&c.name).unwrap();
    assert_eq!(info.kubeconfig_path, path.display().to_string());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert!(yaml.contains(&format!("https://127.0.0.1:{}", info.api_port)));
    assert_eq!(ready_nodes(&yaml).await.len(), 1);
    assert_eq!(c.manager.kubeconfig(&c.name, &never()).await.unwrap(), yaml);

    // the API port answers on loopback
    std::net::TcpStream::connect(("127.0.0.1", info.api_port))
        .expect("API port bound on 127.0.0.1");

    assert!(c.manager.exists(&c.name, &never()).await.unwrap());
    let list = c.manager.list(&never()).await.unwrap();
    assert!(
        list.iter().any(|i| i.name == c.full),
        "list misses {}",
        c.full
    );

    c.manager
        .wait_ready(&c.name, Duration::from_secs(10), &never())
        .await
        .unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
    // delete is idempotent
    c.manager.delete(&c.name, &never()).await.unwrap();
    let e = c.manager.info(&c.name, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    let e = c.manager.kubeconfig(&c.name, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}

async fn server_and_two_agents(provider: &str) {
    let c = setup(provider, "agt", |_| {}).await;
    let opts = CreateOptions {
        agents: 2,
        ..Default::default()
    };
    let info = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    assert_eq!(info.node_count, 3);
    // k3d's load balancer is listed with the nodes, but not counted as one
    let helpers = usize::from(!info.load_balancer.is_empty());
    assert_eq!(
        info.nodes.iter().filter(|n| n.state == "running").count(),
        3 + helpers
    );
    assert!(info.running);
    let yaml = std::fs::read_to_string(c.manager.kubeconfig_path(&c.name).unwrap()).unwrap();
    assert_eq!(ready_nodes(&yaml).await.len(), 3);
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
}

async fn create_and_delete_twice(provider: &str) {
    let c = setup(provider, "twice", |_| {}).await;
    let first = c
        .manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    // idempotent: the existing cluster is returned, nothing is recreated
    let again = c
        .manager
        .create(&c.full, &CreateOptions::default(), &never())
        .await
        .unwrap();
    assert_eq!(first.api_port, again.api_port);
    assert_eq!(first.nodes, again.nodes);
    c.manager.delete(&c.full, &never()).await.unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
    // and the same name can be created again afterwards
    c.manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
}

async fn container_mode_urls(provider: &str) {
    let c = setup(provider, "cm", |cfg| cfg.container_mode = Some(true)).await;
    let info = c
        .manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    let main = std::fs::read_to_string(c.dir.join(format!("{}.config", c.full))).unwrap();
    let host = std::fs::read_to_string(c.dir.join(format!("{}.host.config", c.full))).unwrap();
    let internal = match provider {
        "kind" => format!("https://{}-control-plane:6443", c.full),
        _ => format!("https://k3d-{}-server-0:6443", c.full),
    };
    assert_eq!(
        kecs_cluster::kubeconfig::server_url(&main).as_deref(),
        Some(internal.as_str())
    );
    assert_eq!(
        kecs_cluster::kubeconfig::server_url(&host),
        Some(format!("https://127.0.0.1:{}", info.api_port))
    );
    assert_eq!(ready_nodes(&host).await.len(), 1);
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
}

// ---- failure paths: each leaves nothing behind ---------------------------------

async fn missing_image(provider: &str) {
    let c = setup(provider, "noimg", |cfg| {
        cfg.image = Some("kecs-sim/does-not-exist:never".into())
    })
    .await;
    let e = c
        .manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ImageUnavailable, "{e}");
    assert!(
        e.to_string().contains("kecs-sim/does-not-exist:never"),
        "{e}"
    );
    assert_gone(&c).await;
}

async fn node_exits_before_ready(provider: &str) {
    let c = setup(provider, "exit", |_| {}).await;
    let opts = CreateOptions {
        env: [("SIM_EXIT_BEFORE_READY".to_string(), "3".to_string())].into(),
        ..Default::default()
    };
    let e = c
        .manager
        .create(&c.name, &opts, &never())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exit code 3"), "{e}");
    assert_gone(&c).await;
}

async fn node_never_ready_times_out(provider: &str) {
    let c = setup_gated(provider, "hang", |_| {}, exclusive()).await;
    let opts = CreateOptions {
        env: [("SIM_NEVER_READY".to_string(), "1".to_string())].into(),
        timeout_ms: 3_000,
        ..Default::default()
    };
    let started = Instant::now();
    let e = c
        .manager
        .create(&c.name, &opts, &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_gone(&c).await;
}

async fn api_port_in_use(provider: &str) {
    let c = setup(provider, "port", |_| {}).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let opts = CreateOptions {
        api_port: port,
        ..Default::default()
    };
    let e = c
        .manager
        .create(&c.name, &opts, &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    assert_gone(&c).await;
}

async fn cancel_during_create(provider: &str) {
    let c = setup_gated(provider, "cancel", |_| {}, exclusive()).await;
    let opts = CreateOptions {
        env: [("SIM_READY_DELAY_MS".to_string(), "20000".to_string())].into(),
        ..Default::default()
    };
    let token = CancellationToken::new();
    let trigger = token.clone();
    let m = &c.manager;
    let ((result, returned), cancelled_at) = tokio::join!(
        async { (m.create(&c.name, &opts, &token).await, Instant::now()) },
        async {
            // cancel once the first node container exists
            wait_for_first_node(&c.full, Duration::from_secs(30)).await;
            let at = Instant::now();
            trigger.cancel();
            at
        }
    );
    let e = result.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Cancelled, "{e}");
    let latency = returned.duration_since(cancelled_at);
    assert!(
        latency < Duration::from_secs(1),
        "returned {latency:?} after cancel"
    );
    assert_gone(&c).await;
}

macro_rules! for_providers {
    ($($test:ident),* $(,)?) => {
        mod k3d {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() { super::$test("k3d").await } )*
        }
        mod kind {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() { super::$test("kind").await } )*
        }
    };
}

for_providers!(
    single_server,
    server_and_two_agents,
    create_and_delete_twice,
    container_mode_urls,
    missing_image,
    node_exits_before_ready,
    node_never_ready_times_out,
    api_port_in_use,
    cancel_during_create,
);

// ---- independent of the provider ----------------------------------------------

#[tokio::test]
async fn invalid_names_fail_before_any_docker_call() {
    // an unreachable engine proves no Docker call is made
    let dir = TempDir::new("inv");
    let cfg = ClusterManagerConfig {
        docker_host: Some("tcp://127.0.0.1:1".into()),
        kubeconfig_path: Some(dir.path().display().to_string()),
        ..Default::default()
    };
    let m = ClusterManager::new(&cfg).unwrap();
    for bad in [
        "",
        "Bad_Name",
        "kecs-",
        "way-too-long-name-for-a-k3d-cluster",
        "a.b",
    ] {
        let e = m
            .create(bad, &CreateOptions::default(), &never())
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{bad:?}: {e}");
        assert_eq!(
            m.exists(bad, &never()).await.unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            m.delete(bad, &never()).await.unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
    }
    let bad_opts = CreateOptions {
        servers: 0,
        ..Default::default()
    };
    assert_eq!(
        m.create("ok", &bad_opts, &never())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument
    );
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn unreachable_docker_host_is_reported_quickly() {
    let dir = TempDir::new("unr");
    // a loopback listener that accepts connections and never answers: the
    // engine that hangs (only loopback addresses are ever dialled here)
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_host = format!("tcp://{}", silent.local_addr().unwrap());
    for host in [
        "tcp://127.0.0.1:1",
        "unix:///nonexistent/docker.sock",
        silent_host.as_str(),
    ] {
        let cfg = ClusterManagerConfig {
            docker_host: Some(host.into()),
            kubeconfig_path: Some(dir.path().display().to_string()),
            ..Default::default()
        };
        let m = ClusterManager::new(&cfg).unwrap();
        let started = Instant::now();
        let e = m.exists("web", &never()).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::DockerUnavailable, "{host}: {e}");
        // the connect timeout is 2 s; allow scheduling slack on a busy machine
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{host}: took {:?}",
            started.elapsed()
        );
        assert!(e.to_string().contains(host), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_init_and_joins() {
    let c = setup("k3d", "ha", |_| {}).await;
    let opts = CreateOptions {
        servers: 3,
        ..Default::default()
    };
    let info = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    assert_eq!(info.node_count, 3);
    let yaml = std::fs::read_to_string(c.manager.kubeconfig_path(&c.name).unwrap()).unwrap();
    assert_eq!(ready_nodes(&yaml).await.len(), 3);
    let docker = docker().await;
    let s0 = docker
        .inspect_container(
            &format!("k3d-{}-server-0", c.full),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert!(s0
        .config
        .as_ref()
        .unwrap()
        .cmd
        .as_ref()
        .unwrap()
        .contains(&"--cluster-init".to_string()));
    assert_eq!(
        s0.config.unwrap().labels.unwrap()["k3d.server.init"],
        "true"
    );
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3d_objects_and_labels_match_the_contract() {
    let c = setup("k3d", "lbl", |_| {}).await;
    let opts = CreateOptions {
        agents: 1,
        ..Default::default()
    };
    c.manager.create(&c.name, &opts, &never()).await.unwrap();
    let docker = docker().await;
    let server = docker
        .inspect_container(
            &format!("k3d-{}-server-0", c.full),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let cfg = server.config.unwrap();
    let labels = cfg.labels.unwrap();
    let net = format!("k3d-{}", c.full);
    for (k, v) in [
        ("app", "k3d"),
        ("k3d.role", "server"),
        ("k3d.cluster", c.full.as_str()),
        ("k3d.cluster.network", net.as_str()),
        ("k3d.cluster.network.external", "false"),
        ("k3d.server.api.hostIP", "127.0.0.1"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    for k in [
        "k3d.version",
        "k3d.cluster.url",
        "k3d.cluster.token",
        "k3d.cluster.network.id",
        "k3d.cluster.network.iprange",
        "k3d.server.api.port",
        "k3d.server.api.host",
        "k3d.cluster.imageVolume",
    ] {
        assert!(labels.contains_key(k), "label {k} missing");
    }
    let token = &labels["k3d.cluster.token"];
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    let env = cfg.env.unwrap();
    assert!(env.contains(&format!("K3S_TOKEN={token}")));
    assert!(env.contains(&"K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml".to_string()));
    let hc = server.host_config.unwrap();
    assert_eq!(hc.init, Some(true));
    assert_eq!(
        hc.restart_policy.unwrap().name.unwrap().to_string(),
        "unless-stopped"
    );
    assert!(hc.tmpfs.unwrap().contains_key("/run"));
    // with the load balancer, only it publishes the API (k3d's layout); the
    // servers know it by name
    assert!(!hc
        .port_bindings
        .unwrap_or_default()
        .contains_key("6443/tcp"));
    let lb_name = format!("k3d-{}-serverlb", c.full);
    assert_eq!(labels["k3d.server.loadbalancer"], lb_name);
    assert!(cfg
        .cmd
        .unwrap()
        .windows(2)
        .any(|w| w[0] == "--tls-san" && w[1] == lb_name));
    let lb = docker
        .inspect_container(
            &lb_name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let lb_labels = lb.config.unwrap().labels.unwrap();
    assert_eq!(lb_labels["k3d.role"], "loadbalancer");
    assert_eq!(lb_labels["k3d.cluster"], c.full);
    assert!(!lb_labels.contains_key("k3d.server.api.port"));
    let lb_hc = lb.host_config.unwrap();
    let binding = &lb_hc.port_bindings.unwrap()["6443/tcp"].clone().unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    // a concrete port, so Docker binds the same one at every start
    assert_eq!(
        binding.host_port.as_deref(),
        Some(labels["k3d.server.api.port"].as_str())
    );
    assert_eq!(
        lb_hc.restart_policy.unwrap().name.unwrap().to_string(),
        "unless-stopped"
    );
    // values.yaml in k3d's format, written before the first start
    let values = kecs_cluster::docker::read_file(&docker, &lb_name, "/etc/confd/values.yaml")
        .await
        .unwrap();
    let values = String::from_utf8(values).unwrap();
    assert!(
        values.starts_with(&format!(
            "ports:\n  6443.tcp:\n  - k3d-{}-server-0\n",
            c.full
        )),
        "{values}"
    );
    assert!(
        values.ends_with("settings:\n  workerConnections: 1024\n"),
        "{values}"
    );
    let agent = docker
        .inspect_container(
            &format!("k3d-{}-agent-0", c.full),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let aenv = agent.config.unwrap().env.unwrap();
    assert!(aenv.contains(&format!("K3S_URL=https://k3d-{}-server-0:6443", c.full)));
    // network and image volume as k3d makes them
    let n = docker
        .inspect_network(
            &net,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(n.driver.as_deref(), Some("bridge"));
    assert_eq!(n.labels.unwrap()["app"], "k3d");
    docker
        .inspect_volume(&format!("k3d-{}-images", c.full))
        .await
        .unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_a_network_it_did_not_create() {
    let c = setup("k3d", "ext", |_| {}).await;
    let docker = docker().await;
    let net = format!("k3d-{}", c.full);
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    struct NetGuard(String);
    impl Drop for NetGuard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &self.0])
                .output();
        }
    }
    let _g = NetGuard(net.clone());
    c.manager
        .create(&c.name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    docker
        .inspect_network(
            &net,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("the user's network must survive delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_never_touches_the_users_kubeconfig() {
    let c = setup("k3d", "own", |_| {}).await;
    // a file of the user's with our file name but not our cluster entry
    let path = c.manager.kubeconfig_path(&c.name).unwrap();
    let users = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://example:6443\n  name: mine\ncontexts: []\nusers: []\n";
    std::fs::write(&path, users).unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), users);
    std::fs::remove_file(&path).unwrap();
}

// ---- kind only ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_rolls_back_a_failing_kubeadm_init() {
    let c = setup("kind", "kadm", |_| {}).await;
    let opts = CreateOptions {
        env: [("SIM_KUBEADM_INIT_FAIL".to_string(), "3".to_string())].into(),
        ..Default::default()
    };
    let e = c
        .manager
        .create(&c.name, &opts, &never())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::NodeFailed,
        "a failed exec is its own code: {e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("kubeadm init") && msg.contains("exited with code 3"),
        "{msg}"
    );
    assert!(
        msg.contains("simulated failure"),
        "the error carries the output tail: {msg}"
    );
    assert_gone(&c).await;
    // the shared network stays, as kind leaves it
    docker()
        .await
        .inspect_network(
            "kind",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_objects_match_the_contract() {
    let c = setup("kind", "kobj", |_| {}).await;
    let opts = CreateOptions {
        agents: 2,
        ..Default::default()
    };
    let info = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    let names: Vec<&str> = info.nodes.iter().map(|n| n.name.as_str()).collect();
    let (cp, w1, w2) = (
        format!("{}-control-plane", c.full),
        format!("{}-worker", c.full),
        format!("{}-worker2", c.full),
    );
    assert_eq!(names, vec![cp.as_str(), w1.as_str(), w2.as_str()]);
    assert_eq!(info.nodes[0].role, "control-plane");
    assert_eq!(info.nodes[1].role, "worker");
    let docker = docker().await;
    let node = docker
        .inspect_container(
            &cp,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let cfg = node.config.unwrap();
    assert_eq!(
        cfg.labels.as_ref().unwrap()["io.x-k8s.kind.cluster"],
        c.full
    );
    assert_eq!(
        cfg.labels.as_ref().unwrap()["io.x-k8s.kind.role"],
        "control-plane"
    );
    assert_eq!(cfg.hostname.as_deref(), Some(cp.as_str()));
    assert!(cfg
        .env
        .unwrap()
        .contains(&"KUBECONFIG=/etc/kubernetes/admin.conf".to_string()));
    let hc = node.host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("kind"));
    assert!(hc.tmpfs.as_ref().unwrap().contains_key("/tmp"));
    assert!(hc
        .binds
        .unwrap()
        .contains(&"/lib/modules:/lib/modules:ro".to_string()));
    let rp = hc.restart_policy.unwrap();
    assert_eq!(
        (
            rp.name.unwrap().to_string().as_str(),
            rp.maximum_retry_count
        ),
        ("on-failure", Some(1))
    );
    assert_eq!(
        hc.port_bindings.unwrap()["6443/tcp"].clone().unwrap()[0]
            .host_ip
            .as_deref(),
        Some("127.0.0.1")
    );
    let yaml = std::fs::read_to_string(c.manager.kubeconfig_path(&c.name).unwrap()).unwrap();
    assert!(kecs_cluster::kubeconfig::has_cluster_entry(
        &yaml,
        &format!("kind-{}", c.full)
    ));
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert_gone(&c).await;
}

/// Docker 20.10 before 20.10.27 gets a cluster's stops and removals one at a
/// time (its network controller can deadlock otherwise: moby/moby#46661); the
/// negotiated API version tells such an engine, so the engine's own version
/// must agree with what the client decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_that_deadlock_get_one_leave_at_a_time() {
    use kecs_cluster::engine::Engine;
    let docker = kecs_cluster::docker::connect(None).await.expect("connect");
    let version = docker.version().await.expect("version");
    let server = version.version.unwrap_or_default();
    let numbers: Vec<u32> = server
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    let affected = numbers.as_slice() < [20, 10, 27].as_slice();
    let sequenced = docker.one_leave_at_a_time();
    let api = version.api_version;
    if affected {
        assert!(sequenced, "Docker {server} (API {api:?}) must be sequenced");
    } else if !numbers.starts_with(&[20, 10]) {
        // 20.10.27 speaks API 1.41 too and may be sequenced without need
        assert!(
            !sequenced,
            "Docker {server} (API {api:?}) needs no sequencing"
        );
    }
}

/// The state two racing creates of one name can leave on this engine, which
/// lets networks share a name: two networks `k3d-<c>`, both labelled with the
/// cluster, and the image volume. Asking the engine by that name is then
/// ambiguous; delete finds the networks by label and removes them by ID, so
/// the user is not stuck with a cluster nobody can delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_clears_two_same_named_networks() {
    let c = setup("k3d", "dupnet", |_| {}).await;
    let docker = docker().await;
    let net = format!("k3d-{}", c.full);
    let labels = std::collections::HashMap::from([
        ("app".to_string(), "k3d".to_string()),
        ("k3d.cluster".to_string(), c.full.clone()),
    ]);
    let mut ids = vec![];
    for _ in 0..2 {
        let made = docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: net.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push(made.id);
    }
    // a standalone registry attached to one of them (by ID): delete must detach
    // it without asking the engine by the ambiguous name, and keep it
    let reg = unique_name("dupreg");
    let _reg_cleanup = RemoveOnDrop(reg.clone());
    c.manager
        .registry_create(
            &kecs_cluster::RegistryCreate {
                name: reg.clone(),
                host_port: free_port(),
                ..Default::default()
            },
            &never(),
        )
        .await
        .unwrap();
    docker
        .connect_network(
            &ids[0],
            bollard::models::NetworkConnectRequest {
                container: reg.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(format!("k3d-{}-images", c.full)),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let by_name = docker
        .inspect_network(
            &net,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await;
    assert!(
        by_name.is_err(),
        "the engine should call the name ambiguous"
    );
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert!(
        leftovers(&c.full).await.is_empty(),
        "{:?}",
        leftovers(&c.full).await
    );
    let kept = c.manager.registry_get(&reg, &never()).await.unwrap();
    assert!(kept.running, "a standalone registry stays");
    c.manager.registry_delete(&reg, &never()).await.unwrap();
}

/// Removes a registry container and its data volume when dropped (test cleanup).
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let volume = format!("{}-data", self.0);
        for args in [
            ["rm", "-f", "-v", self.0.as_str()],
            ["volume", "rm", "-f", volume.as_str()],
        ] {
            let _ = std::process::Command::new("docker").args(args).output();
        }
    }
}

#[tokio::test]
async fn kind_refuses_what_it_cannot_build_before_any_docker_call() {
    let dir = TempDir::new("krefuse");
    let cfg = ClusterManagerConfig {
        provider: Some("kind".into()),
        docker_host: Some("tcp://127.0.0.1:1".into()),
        kubeconfig_path: Some(dir.path().display().to_string()),
        ..Default::default()
    };
    let m = ClusterManager::new(&cfg).unwrap();
    // several control planes need kind's external load balancer
    let ha = CreateOptions {
        servers: 3,
        load_balancer: Some(false),
        ..Default::default()
    };
    let e = m.create("web", &ha, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.to_string().contains("load balancer"), "{e}");
    let args = CreateOptions {
        k3s_args: vec!["--disable=traefik".into()],
        ..Default::default()
    };
    assert_eq!(
        m.create("web", &args, &never()).await.unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn provider_switches_with_the_environment() {
    // KECS_CLUSTER_PROVIDER=kind needs no code change in a caller
    let m = ClusterManager::with_env(&ClusterManagerConfig::default(), |k| match k {
        "KECS_CLUSTER_PROVIDER" => Some("kind".into()),
        "HOME" => Some("/tmp".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(m.config().provider, kecs_cluster::ProviderKind::Kind);
    assert_eq!(m.config().image, "kindest/node:v1.31.4");
}
