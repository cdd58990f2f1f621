//! A cluster survives a restart of the Docker Engine: same API port, the
//! kubeconfig written at create still works. The machine's own engine is never
//! touched: the test runs a private second `dockerd` (its own socket, data
//! root, exec root, pid file and config file, under a temporary directory, and
//! a bridge of its own), loads the simulator images into it, and stops and
//! restarts it by its pid.
//!
//! Never `--bridge=none`: a dockerd started with it deletes the host's `docker0`
//! interface, which belongs to the machine's engine.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kecs_cluster::{CancellationToken, ClusterManager, CreateOptions};
use support::*;

/// A private dockerd, stopped (by its pid) and its directories removed on drop.
struct PrivateEngine {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateEngine {
    fn new() -> PrivateEngine {
        // a short path: unix socket paths are limited to 108 bytes
        let dir = PathBuf::from(format!("/tmp/kecs-dockerd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // the machine's daemon.json sets data-root; ours must not inherit it
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        // its default bridge is one of its own (the test's containers use a
        // network of their own; this only keeps it off docker0)
        let bridge = Self::bridge_name();
        let _ = Command::new("ip").args(["link", "del", &bridge]).status();
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip link add {bridge} type bridge && ip addr add 198.18.{}.1/24 dev {bridge} && ip link set {bridge} up",
                std::process::id() % 250
            ))
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "creating bridge {bridge} for the private engine"
        );
        PrivateEngine { dir, child: None }
    }

    fn bridge_name() -> String {
        format!("kecsd{}", std::process::id() % 100_000)
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("d.sock").display())
    }

    async fn start(&mut self) {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .unwrap();
        let d = &self.dir;
        let mut child = Command::new("dockerd")
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg(format!("--bridge={}", Self::bridge_name()))
            .args(["--iptables=false", "--ip6tables=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("these tests need dockerd on PATH");
        // The engine logs "API listen on <socket>" once it serves: wait for
        // that line (the event), with a deadline; the log is kept for errors.
        let stderr = child.stderr.take().unwrap();
        let (listening, up) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = writeln!(log, "{line}");
                if line.contains("API listen on") {
                    let _ = listening.send(());
                }
            }
        });
        self.child = Some(child);
        let waited = tokio::task::spawn_blocking(move || up.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(
            waited.is_ok(),
            "private dockerd did not start serving within 60 s: {}",
            self.log()
        );
        let engine = kecs_cluster::docker::connect(Some(&self.host()))
            .await
            .unwrap();
        engine
            .ping()
            .await
            .expect("the private engine answers /_ping");
    }

    /// SIGTERM by pid, then wait for it to exit (the engine stops its
    /// containers first).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn load(&self, images: &[&str]) {
        let mut save = Command::new("docker")
            .arg("save")
            .args(images)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let status = Command::new("docker")
            .args(["-H", &self.host(), "load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {images:?}");
        assert!(
            status.success(),
            "loading {images:?} into the private engine"
        );
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_some() {
            // whatever the test left: remove it, then stop the engine
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "docker -H {h} ps -aq | xargs -r docker -H {h} rm -f -v; docker -H {h} network prune -f",
                    h = self.host()
                ))
                .output();
        }
        self.stop();
        // mounts the engine left under its roots go before the directory does
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {d}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                d = self.dir.display()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["link", "del", &Self::bridge_name()])
            .status();
    }
}

async fn api_answers(kubeconfig: &Path, limit: Duration) -> String {
    let yaml = std::fs::read_to_string(kubeconfig).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match kecs_cluster::readiness::server_version(&yaml, Duration::from_secs(2)).await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("the API did not answer: {e}"),
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_comes_back_after_an_engine_restart() {
    ensure_sim_image().await;
    let _gate = shared();
    let mut engine = PrivateEngine::new();
    engine.start().await;
    engine.load(&[SIM_IMAGE]);

    let dir = TempDir::new("engine");
    let mut config = config(dir.path(), "k3d");
    config.docker_host = Some(engine.host());
    let manager = ClusterManager::new(&config).unwrap();
    let never = CancellationToken::new();
    let name = unique_name("eng");
    // The private engine runs without iptables (it must not touch the
    // machine's rules), so containers there get no embedded DNS: the load
    // balancer could not resolve its servers. The direct layout publishes the
    // API on server-0 itself, through the same restart policy and pinned port.
    let opts = CreateOptions {
        load_balancer: Some(false),
        ..Default::default()
    };
    let info = manager
        .create(&name, &opts, &never)
        .await
        .unwrap_or_else(|e| panic!("create on the private engine: {e}\n{}", engine.log()));
    let kubeconfig = PathBuf::from(&info.kubeconfig_path);
    let before = std::fs::read(&kubeconfig).unwrap();
    api_answers(&kubeconfig, Duration::from_secs(10)).await;

    engine.stop();
    engine.start().await;

    // the restart policy brings every container back, on the same host port
    let manager = ClusterManager::new(&config).unwrap();
    let version = api_answers(&kubeconfig, Duration::from_secs(60)).await;
    assert!(!version.is_empty());
    let after = manager.info(&name, &never).await.unwrap();
    assert_eq!(after.api_port, info.api_port, "the API port moved");
    assert_eq!(std::fs::read(&kubeconfig).unwrap(), before);
    assert!(after.running, "{:?}", after.nodes);
    manager.delete(&name, &never).await.unwrap();
}
