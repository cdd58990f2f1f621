//! Local registries wired into k3d- and kind-style clusters, against the real Docker
//! Engine with the REAL distribution registry (Debian's docker-registry, image
//! kecs-sim/registry:test; not a simulator). The engine pushes an image to it
//! through the Engine API; inside a node the simulator's `crictl pull` resolves
//! it through registries.yaml as containerd would.

mod support;

use futures_util::StreamExt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kecs_cluster::docker;
use kecs_cluster::{
    ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode, RegistryCreate, RegistryOptions,
};
use support::*;

const REGISTRY_IMAGE: &str = "kecs-sim/registry:test";

static REGISTRY_IMAGE_READY: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Builds kecs-sim/registry:test (tests/registry/build-image.sh) when missing or stale.
async fn ensure_registry_image() {
    let mut ready = REGISTRY_IMAGE_READY.lock().await;
    if *ready {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/registry/build-image.sh");
    let hash = Command::new("bash")
        .arg(&script)
        .arg("--hash")
        .output()
        .unwrap();
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    let current = docker()
        .await
        .inspect_image(REGISTRY_IMAGE)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.labels)
        .and_then(|l| l.get("kecs.sim.source-hash").cloned())
        .is_some_and(|h| h == hash);
    if !current {
        let ok = Command::new("bash").arg(&script).status().unwrap();
        assert!(ok.success(), "building {REGISTRY_IMAGE} failed");
    }
    *ready = true;
}

/// Removes the named registries (and their data volumes) when dropped.
struct RegistryGuard(Vec<String>);

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &format!("{name}-data")])
                .output();
        }
    }
}

struct Ctx {
    _dir: TempDir,
    config: ClusterManagerConfig,
    manager: ClusterManager,
    /// Last: dropped after the guard's cleanup (fields drop in order), so the
    /// next test waiting for the gate starts after it.
    _gate: Gate,
}

async fn setup(tag: &str) -> Ctx {
    setup_for("k3d", tag).await
}

async fn setup_for(provider: &str, tag: &str) -> Ctx {
    ensure_sim_image().await;
    ensure_registry_image().await;
    let gate = shared_for(provider);
    let dir = TempDir::new(tag);
    let mut config = config(dir.path(), provider);
    config.registry_image = Some(REGISTRY_IMAGE.into());
    let manager = ClusterManager::new(&config).unwrap();
    Ctx {
        _gate: gate,
        _dir: dir,
        config,
        manager,
    }
}

impl Ctx {
    fn cluster(&self, tag: &str) -> (String, String, ClusterGuard) {
        let name = unique_name(tag);
        let full = self.manager.cluster_name(&name).unwrap();
        let guard = ClusterGuard {
            config: self.config.clone(),
            name: full.clone(),
        };
        (name, full, guard)
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Tags one of our local images as localhost:<port>/<repo>:<tag> and pushes it
/// with the engine (the Engine API, as `docker push` does).
async fn push(port: u16, repo: &str, tag: &str) {
    let docker = docker().await;
    let target = format!("localhost:{port}/{repo}");
    docker
        .tag_image(
            SIM_LB_IMAGE,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(target.clone()),
                tag: Some(tag.into()),
            }),
        )
        .await
        .unwrap();
    let mut stream = docker.push_image(
        &target,
        Some(bollard::query_parameters::PushImageOptions {
            tag: Some(tag.into()),
            ..Default::default()
        }),
        None,
    );
    while let Some(item) = stream.next().await {
        let info = item.unwrap();
        assert!(info.error_detail.is_none(), "push failed: {info:?}");
    }
    let _ = docker
        .remove_image(
            &format!("{target}:{tag}"),
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

/// `crictl pull` inside a node: where the manifest came from.
async fn pull_in_node(node: &str, image: &str) -> String {
    let docker = docker().await;
    docker::exec_ok(&docker, node, &["crictl", "pull", image], None, false)
        .await
        .unwrap_or_else(|e| panic!("crictl pull {image} in {node}: {e}"))
}

/// A registry made by the create: push to localhost:<port>, the catalog lists
/// it, a node pulls it through the mirror, the KEP-1755 ConfigMap and
/// CoreDNS's NodeHosts say where it is; a second cluster shares it, and it
/// goes only with the last cluster that used it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_created_with_a_cluster_and_shared() {
    let c = setup("reg").await;
    let (a, a_full, _ga) = c.cluster("rga");
    let reg = unique_name("testreg-a");
    let _rg = RegistryGuard(vec![reg.clone()]);
    let port = free_port();
    let opts = CreateOptions {
        registry: Some(RegistryOptions {
            create: Some(RegistryCreate {
                name: reg.clone(),
                host_port: port,
                ..Default::default()
            }),
            use_existing: vec![],
        }),
        ..Default::default()
    };
    let info = c.manager.create(&a, &opts, &never()).await.unwrap();

    push(port, "kecs/app", "v1").await;
    let catalog = http_get(port, "/v2/_catalog");
    assert!(catalog.contains("kecs/app"), "{catalog}");
    let server0 = format!("k3d-{a_full}-server-0");
    let pulled = pull_in_node(&server0, &format!("localhost:{port}/kecs/app:v1")).await;
    assert!(pulled.contains(&format!("http://{reg}:5000")), "{pulled}");
    let pulled = pull_in_node(&server0, &format!("{reg}:5000/kecs/app:v1")).await;
    assert!(pulled.contains(&format!("http://{reg}:5000")), "{pulled}");

    let hosting = kubectl(
        &info.kubeconfig_path,
        &[
            "get",
            "configmap",
            "-n",
            "kube-public",
            "local-registry-hosting",
            "-o",
            "jsonpath={.data.localRegistryHosting\\.v1}",
        ],
    );
    assert!(
        hosting.contains(&format!("host: localhost:{port}")),
        "{hosting}"
    );
    assert!(hosting.contains(&format!("hostFromClusterNetwork: {reg}:5000")));
    let hosts = kubectl(
        &info.kubeconfig_path,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "coredns",
            "-o",
            "jsonpath={.data.NodeHosts}",
        ],
    );
    let ip = docker::inspect(&docker().await, &reg)
        .await
        .unwrap()
        .network_settings
        .unwrap()
        .networks
        .unwrap()[&format!("k3d-{a_full}")]
        .ip_address
        .clone()
        .unwrap();
    assert!(hosts.contains(&format!("{ip} {reg}")), "{hosts}");

    // a second cluster uses it
    let (b, b_full, _gb) = c.cluster("rgb");
    let opts = CreateOptions {
        registry: Some(RegistryOptions {
            create: None,
            use_existing: vec![reg.clone()],
        }),
        ..Default::default()
    };
    c.manager.create(&b, &opts, &never()).await.unwrap();
    c.manager.delete(&a, &never()).await.unwrap();
    // only the registry A's create made is left, still labelled with A
    let left = leftovers(&a_full).await;
    assert!(left.iter().all(|l| l.contains(&reg)), "{left:?}");
    let still = c.manager.registry_get(&reg, &never()).await.unwrap();
    assert!(
        still.running,
        "the registry stays while another cluster uses it"
    );
    let pulled = pull_in_node(
        &format!("k3d-{b_full}-server-0"),
        &format!("localhost:{port}/kecs/app:v1"),
    )
    .await;
    assert!(pulled.contains(&format!("http://{reg}:5000")), "{pulled}");
    // the last cluster goes: a registry a cluster create made goes with it
    c.manager.delete(&b, &never()).await.unwrap();
    let e = c.manager.registry_get(&reg, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}

/// kind's local-registry recipe: a registry made by a kind create serves pulls
/// in the nodes through containerd's `hosts.toml` (`localhost:<port>` and its
/// name), the KEP-1755 ConfigMap says where it is; a second kind cluster uses
/// it, keeps it when the first goes (the kind network is shared, so use is
/// recorded on the nodes), and takes a standalone registry connected while it
/// runs, with no node restart; the registry a create made goes with the last
/// cluster that used it, the standalone one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_registry_recipe_created_shared_and_connected() {
    let c = setup_for("kind", "kreg").await;
    let (a, a_full, _ga) = c.cluster("kra");
    let reg = unique_name("testreg-k");
    let standalone = unique_name("testreg-s");
    let _rg = RegistryGuard(vec![reg.clone(), standalone.clone()]);
    let port = free_port();
    let opts = CreateOptions {
        agents: 1,
        registry: Some(RegistryOptions {
            create: Some(RegistryCreate {
                name: reg.clone(),
                host_port: port,
                ..Default::default()
            }),
            use_existing: vec![],
        }),
        ..Default::default()
    };
    let info = c.manager.create(&a, &opts, &never()).await.unwrap();
    push(port, "kecs/kind-app", "v1").await;
    let catalog = http_get(port, "/v2/_catalog");
    assert!(catalog.contains("kecs/kind-app"), "{catalog}");
    for image in [
        format!("localhost:{port}/kecs/kind-app:v1"),
        format!("{reg}:5000/kecs/kind-app:v1"),
    ] {
        let pulled = pull_in_node(&format!("{a_full}-worker"), &image).await;
        assert!(pulled.contains(&format!("http://{reg}:5000")), "{pulled}");
        assert!(pulled.contains("hosts.toml"), "{pulled}");
    }
    let hosting = kubectl(
        &info.kubeconfig_path,
        &[
            "get",
            "configmap",
            "-n",
            "kube-public",
            "local-registry-hosting",
            "-o",
            "jsonpath={.data.localRegistryHosting\\.v1}",
        ],
    );
    assert!(
        hosting.contains(&format!("host: localhost:{port}")),
        "{hosting}"
    );

    let (b, b_full, _gb) = c.cluster("krb");
    let opts = CreateOptions {
        registry: Some(RegistryOptions {
            create: None,
            use_existing: vec![reg.clone()],
        }),
        ..Default::default()
    };
    c.manager.create(&b, &opts, &never()).await.unwrap();
    c.manager.delete(&a, &never()).await.unwrap();
    assert!(
        c.manager
            .registry_get(&reg, &never())
            .await
            .unwrap()
            .running,
        "the registry stays while another kind cluster uses it"
    );
    let b_node = format!("{b_full}-control-plane");
    let pulled = pull_in_node(&b_node, &format!("localhost:{port}/kecs/kind-app:v1")).await;
    assert!(pulled.contains(&format!("http://{reg}:5000")), "{pulled}");

    // a standalone registry joins the running cluster: no node restarts
    let port2 = free_port();
    c.manager
        .registry_create(
            &RegistryCreate {
                name: standalone.clone(),
                host_port: port2,
                ..Default::default()
            },
            &never(),
        )
        .await
        .unwrap();
    push(port2, "kecs/late", "v2").await;
    let docker = docker().await;
    let started_before = docker::inspect(&docker, &b_node)
        .await
        .unwrap()
        .state
        .unwrap()
        .started_at;
    c.manager
        .registry_connect(&standalone, &b, Duration::from_secs(120), &never())
        .await
        .unwrap();
    let pulled = pull_in_node(&b_node, &format!("localhost:{port2}/kecs/late:v2")).await;
    assert!(
        pulled.contains(&format!("http://{standalone}:5000")),
        "{pulled}"
    );
    let started_after = docker::inspect(&docker, &b_node)
        .await
        .unwrap()
        .state
        .unwrap()
        .started_at;
    assert_eq!(started_before, started_after, "the node did not restart");

    c.manager.delete(&b, &never()).await.unwrap();
    let e = c.manager.registry_get(&reg, &never()).await.unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::NotFound,
        "made by a create: gone with its last user"
    );
    assert!(leftovers(&a_full).await.is_empty() && leftovers(&b_full).await.is_empty());
    assert!(
        c.manager
            .registry_get(&standalone, &never())
            .await
            .unwrap()
            .running
    );
    c.manager
        .registry_delete(&standalone, &never())
        .await
        .unwrap();
}

/// A standalone registry connected to a running cluster: its nodes restart and
/// pull through it; deleting the cluster leaves the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_connected_to_a_running_cluster() {
    let c = setup("regc").await;
    let (n, full, _g) = c.cluster("rgc");
    let reg = unique_name("testreg-c");
    let _rg = RegistryGuard(vec![reg.clone()]);
    let port = free_port();
    let made = c
        .manager
        .registry_create(
            &RegistryCreate {
                name: reg.clone(),
                host_port: port,
                aliases: vec!["registry.kecs.local".into()],
                ..Default::default()
            },
            &never(),
        )
        .await
        .unwrap();
    assert_eq!((made.host_ip.as_str(), made.host_port), ("127.0.0.1", port));
    assert!(c
        .manager
        .registry_list(&never())
        .await
        .unwrap()
        .iter()
        .any(|r| r.name == reg && r.cluster.is_empty()));
    let e = c
        .manager
        .registry_create(
            &RegistryCreate {
                name: reg.clone(),
                ..Default::default()
            },
            &never(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);

    c.manager
        .create(&n, &CreateOptions::default(), &never())
        .await
        .unwrap();
    push(port, "kecs/late", "v2").await;
    c.manager
        .registry_connect(&reg, &n, Duration::from_secs(120), &never())
        .await
        .unwrap();
    let node = format!("k3d-{full}-server-0");
    let pulled = pull_in_node(&node, &format!("registry.kecs.local:{port}/kecs/late:v2")).await;
    assert!(pulled.contains(&format!("http://{reg}:5000")), "{pulled}");
    c.manager.delete(&n, &never()).await.unwrap();
    assert!(leftovers(&full).await.is_empty());
    assert!(
        c.manager
            .registry_get(&reg, &never())
            .await
            .unwrap()
            .running
    );
    c.manager.registry_delete(&reg, &never()).await.unwrap();
    c.manager.registry_delete(&reg, &never()).await.unwrap();
}

/// A busy registry port and a missing registry image fail clearly and leave
/// nothing; the image is checked before any cluster object exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_failures_leave_nothing() {
    let c = setup("regf").await;
    let (n, full, _g) = c.cluster("rgf");
    let reg = unique_name("testreg-f");
    let _rg = RegistryGuard(vec![reg.clone()]);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let opts = CreateOptions {
        registry: Some(RegistryOptions {
            create: Some(RegistryCreate {
                name: reg.clone(),
                host_port: busy,
                ..Default::default()
            }),
            use_existing: vec![],
        }),
        ..Default::default()
    };
    let e = c.manager.create(&n, &opts, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains(&busy.to_string()), "{e}");
    assert!(leftovers(&full).await.is_empty());
    assert!(c.manager.registry_get(&reg, &never()).await.is_err());
    drop(held);

    let mut config = c.config.clone();
    config.registry_image = Some("kecs-sim/no-such-registry:test".into());
    let manager = ClusterManager::new(&config).unwrap();
    let e = manager.create(&n, &opts, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ImageUnavailable, "{e}");
    assert!(
        e.to_string().contains("kecs-sim/no-such-registry:test"),
        "{e}"
    );
    assert!(leftovers(&full).await.is_empty());

    let opts = CreateOptions {
        registry: Some(RegistryOptions {
            create: None,
            use_existing: vec![format!("{full}-nothing")],
        }),
        ..Default::default()
    };
    let e = c.manager.create(&n, &opts, &never()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(leftovers(&full).await.is_empty());
}

/// `enableRegistry` (KECS's shared registry): the first create makes the
/// standalone `kecs-registry` with its alias, every cluster mirrors to it, and
/// deleting a cluster leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_registry_shares_kecs_registry() {
    let c = setup("regs").await;
    let shared = kecs_cluster::registry::SHARED_NAME;
    // someone else's kecs-registry stays theirs: then this test only uses it
    let existed = c.manager.registry_get(shared, &never()).await.is_ok();
    let _rg = RegistryGuard(if existed {
        vec![]
    } else {
        vec![shared.to_string()]
    });
    let mut config = c.config.clone();
    config.enable_registry = Some(true);
    config.registry_port = Some(free_port());
    let manager = ClusterManager::new(&config).unwrap();
    let (n, full, _g) = c.cluster("rgs");
    manager
        .create(&n, &CreateOptions::default(), &never())
        .await
        .unwrap();
    let reg = manager.registry_get(shared, &never()).await.unwrap();
    assert!(reg.running && reg.cluster.is_empty(), "{reg:?}");
    assert!(reg.aliases.iter().any(|a| a == "registry.kecs.local"));
    let yaml = docker::read_file(
        &docker().await,
        &format!("k3d-{full}-server-0"),
        kecs_cluster::registry::K3S_REGISTRIES_PATH,
    )
    .await
    .unwrap();
    let yaml = String::from_utf8(yaml).unwrap();
    assert!(
        yaml.contains(&format!("\"registry.kecs.local:{}\"", reg.host_port)),
        "{yaml}"
    );
    manager.delete(&n, &never()).await.unwrap();
    assert!(leftovers(&full).await.is_empty());
    assert!(
        manager
            .registry_get(shared, &never())
            .await
            .unwrap()
            .running
    );
}
