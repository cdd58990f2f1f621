//! Stop and start of existing clusters against the real Docker Engine with the
//! node simulator: the same API port and kubeconfig file after every restart,
//! objects created before the stop still there, agents rejoining, and a node
//! that fails to come back named in the error with nothing removed.

mod support;

use std::path::Path;
use std::time::Duration;

use kecs_cluster::{
    ClusterInfo, ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode, VolumeMount,
};
use support::*;

struct Ctx {
    _dir: TempDir,
    dir: std::path::PathBuf,
    manager: ClusterManager,
    name: String,
    full: String,
    _guard: ClusterGuard,
    /// Last: dropped after the guard's cleanup (fields drop in order), so the
    /// next test waiting for the gate starts after it.
    _gate: Gate,
}

async fn setup(provider: &str, tag: &str) -> Ctx {
    ensure_sim_image().await;
    let gate = shared_for(provider);
    let dir = TempDir::new(tag);
    let config: ClusterManagerConfig = config(dir.path(), provider);
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

async fn info(c: &Ctx) -> ClusterInfo {
    c.manager.info(&c.name, &never()).await.expect("info")
}

/// create → namespace → (stop → start) × 2: same port, same kubeconfig bytes,
/// the namespace still there, every node Ready through the unchanged file.
async fn restart_keeps_everything(provider: &str, tag: &str, opts: CreateOptions) {
    let c = setup(provider, tag).await;
    let created = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    assert!(created.running);
    let kubeconfig = Path::new(&created.kubeconfig_path).to_path_buf();
    let before = std::fs::read(&kubeconfig).unwrap();
    let port = created.api_port;
    assert_ne!(port, 0);
    kubectl(&kubeconfig, &["create", "namespace", "before-stop"]);
    let nodes = (opts.servers + opts.agents) as usize;

    for round in 1..=2 {
        c.manager.stop(&c.name, &never()).await.unwrap();
        // idempotent
        c.manager.stop(&c.name, &never()).await.unwrap();
        assert!(!c.manager.is_running(&c.name, &never()).await.unwrap());
        let stopped = info(&c).await;
        assert_eq!(stopped.status, "stopped", "round {round}");
        assert!(!stopped.running);

        c.manager
            .start(&c.name, Duration::from_secs(120), &never())
            .await
            .unwrap_or_else(|e| panic!("start, round {round}: {e}"));
        assert!(c.manager.is_running(&c.name, &never()).await.unwrap());
        let started = info(&c).await;
        assert_eq!(started.status, "running");
        assert_eq!(
            started.api_port, port,
            "the API port moved in round {round}"
        );
        assert_eq!(
            std::fs::read(&kubeconfig).unwrap(),
            before,
            "the kubeconfig file changed"
        );
        let names = kubectl(&kubeconfig, &["get", "namespaces", "-o", "name"]);
        assert!(
            names.lines().any(|l| l == "namespace/before-stop"),
            "{names}"
        );
        let ready = kubectl(
            &kubeconfig,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ],
        );
        assert_eq!(
            ready.lines().filter(|l| *l == "True").count(),
            nodes,
            "every node Ready after round {round}: {ready}"
        );
        // Docker rewrote /etc/hosts at the start; k3d's host alias is back
        if provider == "k3d" && opts.agents > 0 {
            let agent = format!("k3d-{}-agent-0", c.full);
            let hosts = kecs_cluster::docker::exec_ok(
                &docker().await,
                &agent,
                &["cat", "/etc/hosts"],
                None,
                false,
            )
            .await
            .unwrap();
            assert!(hosts.contains("host.k3d.internal"), "{hosts}");
        }
    }
    // start of a running cluster is a no-op
    c.manager
        .start(&c.name, Duration::from_secs(30), &never())
        .await
        .unwrap();
    c.manager.delete(&c.name, &never()).await.unwrap();
    assert!(leftovers(&c.full).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3d_server_and_two_agents_restart_twice() {
    let opts = CreateOptions {
        agents: 2,
        ..Default::default()
    };
    restart_keeps_everything("k3d", "ss", opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3d_three_servers_restart_twice() {
    let opts = CreateOptions {
        servers: 3,
        ..Default::default()
    };
    restart_keeps_everything("k3d", "ss3", opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_restart_twice() {
    let opts = CreateOptions {
        agents: 1,
        ..Default::default()
    };
    restart_keeps_everything("kind", "ssk", opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_cluster_is_not_found() {
    let c = setup("k3d", "ssnf").await;
    for e in [
        c.manager
            .start(&c.name, Duration::from_secs(5), &never())
            .await,
        c.manager.stop(&c.name, &never()).await,
        c.manager.is_running(&c.name, &never()).await.map(|_| ()),
    ] {
        assert_eq!(e.unwrap_err().code(), ErrorCode::NotFound);
    }
}

/// A node that exits while starting (a fault armed only for the restart,
/// through a file in a mounted volume) is named with its exit code; nothing of
/// the cluster is removed, and it starts again once the fault is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_failing_on_start_is_named_and_nothing_is_removed() {
    let c = setup("k3d", "ssf").await;
    let faults = c.dir.join("faults");
    std::fs::create_dir_all(&faults).unwrap();
    let opts = CreateOptions {
        agents: 1,
        env: [(
            "SIM_FAULTS_FILE".to_string(),
            "/sim-faults/faults.env".to_string(),
        )]
        .into(),
        volumes: vec![VolumeMount {
            source: faults.display().to_string(),
            container_path: "/sim-faults".into(),
            read_only: false,
        }],
        ..Default::default()
    };
    let created = c.manager.create(&c.name, &opts, &never()).await.unwrap();
    let containers = |info: &ClusterInfo| {
        let mut n: Vec<String> = info.nodes.iter().map(|n| n.name.clone()).collect();
        n.sort();
        n
    };
    c.manager.stop(&c.name, &never()).await.unwrap();
    std::fs::write(faults.join("faults.env"), "SIM_EXIT_BEFORE_READY=3\n").unwrap();
    let err = c
        .manager
        .start(&c.name, Duration::from_secs(60), &never())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        kecs_cluster::ErrorCode::NodeFailed,
        "a node that exits is its own code: {err}"
    );
    let msg = err.to_string();
    let server0 = format!("k3d-{}-server-0", c.full);
    assert!(msg.contains(&server0), "{msg}");
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert!(
        msg.contains("SIM_EXIT_BEFORE_READY"),
        "the last log lines: {msg}"
    );
    let after = info(&c).await;
    assert_eq!(containers(&after), containers(&created), "nothing removed");
    assert!(Path::new(&created.kubeconfig_path).exists());

    std::fs::remove_file(faults.join("faults.env")).unwrap();
    c.manager
        .start(&c.name, Duration::from_secs(60), &never())
        .await
        .unwrap();
    assert!(c.manager.is_running(&c.name, &never()).await.unwrap());
}
