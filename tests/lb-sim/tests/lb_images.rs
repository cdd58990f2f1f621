//! The load-balancer stand-in images seen from outside, the way k3d and kind drive
//! them: real containers on the real Docker Engine, real traffic through ports
//! published on 127.0.0.1, config delivered the way each tool delivers it (k3d:
//! archive PUT of values.yaml; kind: `bash -c <bootstrap>`, then exec'd `cp` of
//! `*.tmp` files and `mv` over the real names). Needs Docker; fails loudly without.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROXY_IMAGE: &str = "kecs-sim/k3d-proxy:test";
const KIND_LB_IMAGE: &str = "kecs-sim/kind-lb:test";
const READY: &str = "start worker processes";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("these tests need the docker CLI and a running engine: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_stdin(args: &[&str], input: &str) {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running docker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static IMAGES: Mutex<bool> = Mutex::new(false);

/// Builds both images with the documented script when missing or older than the
/// sources. A separate target dir keeps the nested cargo off the lock `cargo test` holds.
fn ensure_images() {
    let mut ready = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
    if *ready {
        return;
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = crate_dir.join("build-image.sh");
    let hash = Command::new("bash")
        .arg(&script)
        .arg("--hash")
        .output()
        .expect("running build-image.sh --hash");
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    let current = [PROXY_IMAGE, KIND_LB_IMAGE].iter().all(|image| {
        let out = Command::new("docker")
            .args([
                "image",
                "inspect",
                "-f",
                "{{index .Config.Labels \"kecs.sim.source-hash\"}}",
                image,
            ])
            .output()
            .expect("running docker");
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == hash
    });
    if !current {
        let root: PathBuf = crate_dir.join("../..");
        let status = Command::new("bash")
            .arg(&script)
            .env("CARGO_TARGET_DIR", root.join("target/lb-sim-image"))
            .status()
            .expect("running tests/lb-sim/build-image.sh");
        assert!(status.success(), "building the load-balancer images failed");
    }
    *ready = true;
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "kecslb-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Removes every container and network a test made, when the test ends either way.
struct Cleanup {
    containers: Vec<String>,
    network: String,
}

impl Cleanup {
    fn new(tag: &str) -> Cleanup {
        ensure_images();
        let network = unique(tag);
        docker(&["network", "create", &network]);
        Cleanup {
            containers: Vec::new(),
            network,
        }
    }

    fn name(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.network);
        self.containers.push(name.clone());
        name
    }

    /// An echo upstream answering with its own name on `ports` (TCP and UDP).
    fn upstream(&mut self, role: &str, ports: &[&str]) -> String {
        let name = self.name(role);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &self.network,
            "--entrypoint",
            "/bin/kecs-lb-sim",
            PROXY_IMAGE,
            "echo",
            &name,
        ];
        args.extend_from_slice(ports);
        docker(&args);
        wait_log(&name, "listening on", 1, Duration::from_secs(20));
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// Follows the container's log (stdout and stderr) until `needle` has appeared
/// `count` times; panics with the log after `limit`.
fn wait_log(container: &str, needle: &str, count: usize, limit: Duration) {
    let mut child = Command::new("docker")
        .args(["logs", "-f", container])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running docker logs");
    let (tx, rx) = mpsc::channel::<String>();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for pipe in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + limit;
    let (mut seen, mut log) = (0, Vec::new());
    while seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen += usize::from(line.to_lowercase().contains(&needle.to_lowercase()));
                log.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen >= count,
        "{container}: {needle:?} seen {seen} of {count} times within {limit:?}; log:\n{}",
        log.join("\n")
    );
}

fn host_port(container: &str, port: &str) -> u16 {
    let out = docker(&["port", container, port]);
    let first = out.lines().next().unwrap_or_default();
    first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{container} publishes no {port}: {out:?}"))
}

/// The socket inode of the proxy's TCP listener on `port`, from the container's
/// /proc/net/tcp: the same inode before and after a reload proves the listener
/// was kept, not closed and reopened (a gap too short for a client loop to hit).
fn listener_inode(container: &str, port: u16) -> String {
    let table = docker(&["exec", container, "cat", "/proc/net/tcp"]);
    let local = format!(":{port:04X}");
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[1].ends_with(&local) && f[3] == "0A")
        .map(|f| f[9].to_string())
        .unwrap_or_else(|| panic!("{container} has no TCP listener on {port}:\n{table}"))
}

/// One connection through the proxy: the name of the upstream that answered.
fn ask(port: u16) -> Result<String, String> {
    let addr = (Ipv4Addr::LOCALHOST, port).into();
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.ends_with('\n') {
        Ok(line.trim().to_string())
    } else {
        Err(format!("connection closed without an answer ({line:?})"))
    }
}

fn ask_many(port: u16, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| ask(port).unwrap_or_else(|e| panic!("connection {i} to port {port}: {e}")))
        .collect()
}

fn values_yaml(ports: &[(&str, &[&str])]) -> String {
    let mut out = String::from("ports:\n");
    for (key, nodes) in ports {
        out.push_str(&format!("  {key}:\n"));
        for n in *nodes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out.push_str("settings:\n  workerConnections: 1024\n");
    out
}

/// Writes values.yaml into the container with an archive PUT (`docker cp`), as
/// k3d's pre-start hook and `UpdateLoadbalancerConfig` do.
fn put_values(container: &str, yaml: &str, scratch: &Path) {
    let file = scratch.join("values.yaml");
    std::fs::write(&file, yaml).unwrap();
    docker(&[
        "cp",
        &file.display().to_string(),
        &format!("{container}:/etc/confd/values.yaml"),
    ]);
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("tmp"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the k3d-style LB (no Cmd/Entrypoint override), writes values.yaml
/// before the first start, starts it and waits for nginx's ready line.
fn start_k3d_lb(t: &mut Cleanup, publish: &[&str], values: &str, scratch: &Path) -> String {
    let lb = t.name("serverlb");
    let mut args = vec!["create", "--name", &lb, "--network", &t.network];
    for p in publish {
        args.extend_from_slice(&["-p", p]);
    }
    args.push(PROXY_IMAGE);
    docker(&args);
    put_values(&lb, values, scratch);
    docker(&["start", &lb]);
    wait_log(&lb, READY, 1, Duration::from_secs(20));
    lb
}

/// Asserts `docker stop` ends the container well within Docker's 10 s grace.
fn assert_stops_promptly(container: &str) {
    let started = Instant::now();
    docker(&["stop", "-t", "10", container]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    eprintln!("docker stop {container}: {took:?}");
}

#[test]
fn k3d_proxy_balances_fails_over_reloads_without_dropping_and_proxies_udp() {
    let mut t = Cleanup::new("k3d");
    let scratch = TempDir::new();
    let a = t.upstream("a", &["6443", "80", "81", "5353"]);
    let b = t.upstream("b", &["6443", "80", "81", "5353"]);
    let c = t.upstream("c", &["80"]);
    let initial = values_yaml(&[
        ("6443.tcp", &[&a, &c]),
        ("80.tcp", &[&a, &b, &c]),
        ("5353.udp", &[&b]),
    ]);
    let lb = start_k3d_lb(
        &mut t,
        &[
            "127.0.0.1::6443",
            "127.0.0.1::80",
            "127.0.0.1::81",
            "127.0.0.1::5353/udp",
        ],
        &initial,
        &scratch.0,
    );
    let (api, web, extra) = (
        host_port(&lb, "6443/tcp"),
        host_port(&lb, "80/tcp"),
        host_port(&lb, "81/tcp"),
    );

    // Round robin across the three upstreams.
    let seen = ask_many(web, 9);
    for up in [&a, &b, &c] {
        assert!(seen.contains(up), "{up} never answered: {seen:?}");
    }
    // `c` runs but does not listen on 6443: its refusals fail over to `a`.
    assert!(ask_many(api, 4).iter().all(|s| *s == a));

    // UDP: a datagram goes to the upstream and the reply comes back to the client.
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.connect((Ipv4Addr::LOCALHOST, host_port(&lb, "5353/udp")))
        .unwrap();
    udp.send(b"ping").unwrap();
    let mut buf = [0u8; 512];
    let n = udp.recv(&mut buf).expect("a UDP reply through the proxy");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        format!("{b} ping"),
        "UDP reply"
    );
    // The same client address stays on its session.
    udp.send(b"again").unwrap();
    let n = udp.recv(&mut buf).expect("a second UDP reply");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("{b} again"));

    // One upstream stopped: every connection is still answered, by the others.
    docker(&["stop", "-t", "10", &c]);
    let seen = ask_many(web, 9);
    assert!(
        seen.iter().all(|s| *s == a || *s == b),
        "answered by a stopped upstream? {seen:?}"
    );
    assert!(seen.contains(&a) && seen.contains(&b), "{seen:?}");

    // Port 81 is published but not configured: nothing answers it yet.
    assert!(ask(extra).is_err(), "port 81 answered before it was added");

    // A connection established before the reload, used again after it.
    let mut held = TcpStream::connect((Ipv4Addr::LOCALHOST, web)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut held_reader = BufReader::new(held.try_clone().unwrap());
    let mut line = String::new();
    held_reader.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "no greeting on the held connection");

    // Reload adding 81 while a client loops on port 80: zero failed connections.
    // The client runs freely; it reports when it is under way, and is told how far
    // to go once the reload is seen (a bounded loop either way).
    let attempts = Arc::new(AtomicUsize::new(0));
    let stop_at = Arc::new(AtomicUsize::new(usize::MAX));
    let (under_way, started) = mpsc::channel();
    let client = {
        let (attempts, stop_at) = (attempts.clone(), stop_at.clone());
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            for i in 0..200_000 {
                if i >= stop_at.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = ask(web) {
                    failed.push(format!("connection {i}: {e}"));
                }
                attempts.store(i + 1, Ordering::SeqCst);
                if i == 20 {
                    let _ = under_way.send(());
                }
            }
            failed
        })
    };
    started
        .recv_timeout(Duration::from_secs(30))
        .expect("the client loop got going");
    let reloaded = values_yaml(&[
        ("6443.tcp", &[&a]),
        ("80.tcp", &[&a, &b]),
        ("81.tcp", &[&b]),
        ("5353.udp", &[&b]),
    ]);
    let inodes_before = (listener_inode(&lb, 80), listener_inode(&lb, 6443));
    let before_reload = attempts.load(Ordering::SeqCst);
    let reload_started = Instant::now();
    put_values(&lb, &reloaded, &scratch.0);
    wait_log(&lb, READY, 2, Duration::from_secs(10));
    let reload_took = reload_started.elapsed();
    let at_ready = attempts.load(Ordering::SeqCst);
    assert_eq!(
        (listener_inode(&lb, 80), listener_inode(&lb, 6443)),
        inodes_before,
        "the listeners of kept ports were reopened by the reload"
    );
    // Keep going for 100 more connections after the reload.
    stop_at.store(at_ready + 100, Ordering::SeqCst);
    let failed = client.join().unwrap();
    let total = attempts.load(Ordering::SeqCst);
    assert!(
        failed.is_empty(),
        "{} of {total} connections on a kept port failed across the reload: {failed:?}",
        failed.len()
    );
    assert!(
        at_ready > before_reload,
        "no connection ran while the reload happened ({before_reload} before, {at_ready} at ready)"
    );
    // The client may be past the mark already when it is set (it never waits).
    assert!(
        total >= at_ready + 100,
        "the client loop ended early at {total}"
    );
    eprintln!(
        "reload under load: values.yaml PUT to ready line {reload_took:?}; {total} connections on port 80, {} while the reload was applied, none failed",
        at_ready - before_reload
    );
    assert_eq!(ask_many(extra, 2), [b.clone(), b.clone()]);
    // The held connection survived the reload and still carries data both ways.
    held.write_all(b"still there\n").unwrap();
    line.clear();
    held_reader.read_line(&mut line).unwrap();
    assert_eq!(
        line, "still there\n",
        "the held connection broke across the reload"
    );
    drop((held, held_reader));

    // Removing a port closes it; the others keep answering.
    put_values(
        &lb,
        &values_yaml(&[("6443.tcp", &[&a]), ("80.tcp", &[&a, &b])]),
        &scratch.0,
    );
    wait_log(&lb, READY, 3, Duration::from_secs(10));
    assert!(ask(extra).is_err(), "port 81 still answers after removal");
    assert_eq!(ask(api), Ok(a.clone()));

    // `k3d cluster stop/start`: the restarted proxy reads the same values.yaml and
    // logs the ready line again.
    docker(&["restart", "-t", "10", &lb]);
    wait_log(&lb, READY, 4, Duration::from_secs(20));
    assert_eq!(ask(host_port(&lb, "6443/tcp")), Ok(a.clone()));

    assert_stops_promptly(&lb);
}

#[test]
fn k3d_proxy_logs_host_not_found_and_keeps_serving_the_others() {
    let mut t = Cleanup::new("k3dnf");
    let scratch = TempDir::new();
    let a = t.upstream("a", &["6443"]);
    let lb = start_k3d_lb(
        &mut t,
        &["127.0.0.1::6443"],
        &values_yaml(&[("6443.tcp", &[&a])]),
        &scratch.0,
    );
    let api = host_port(&lb, "6443/tcp");
    // Two node names Docker's DNS does not know (containers that do not exist):
    // `ghost` never will; `late` is started after the reload.
    let ghost = format!("{}-ghost", t.network);
    let late = format!("{}-late", t.network);
    put_values(
        &lb,
        &values_yaml(&[("6443.tcp", &[&a, &ghost, &late])]),
        &scratch.0,
    );
    wait_log(
        &lb,
        "host not found in upstream",
        2,
        Duration::from_secs(15),
    );
    let state = docker(&["inspect", "-f", "{{.State.Running}}", &lb]);
    assert_eq!(
        state, "true",
        "the proxy must survive an unresolvable upstream"
    );
    // Names are resolved at connect time: `late` gets its turns as soon as it
    // exists, with no reload; the ghost's turns fail over. Every connection is answered.
    assert_eq!(t.upstream("late", &["6443"]), late);
    let seen = ask_many(api, 6);
    assert!(seen.iter().all(|s| *s == a || *s == late), "{seen:?}");
    assert!(seen.contains(&a) && seen.contains(&late), "{seen:?}");
    // No ready line for a config with an unresolvable name (k3d then reports
    // the node as down): only the first start's.
    let log = docker(&["logs", &lb]);
    let all = log
        + &String::from_utf8_lossy(
            &Command::new("docker")
                .args(["logs", &lb])
                .output()
                .unwrap()
                .stderr,
        );
    assert_eq!(all.matches(READY).count(), 1, "{all}");
}

/// kind's bootstrap command (kind-contract §1e): envoy bootstrap via `echo -en`,
/// empty CDS/LDS only when absent, envoy restarted until it exits cleanly.
fn kind_bootstrap(cluster: &str, node_id: &str) -> String {
    let envoy_yaml = format!(
        "node:\\n  cluster: {cluster}\\n  id: {node_id}\\n\\ndynamic_resources:\\n  cds_config:\\n    resource_api_version: V3\\n    path: /home/envoy/cds.yaml\\n  lds_config:\\n    resource_api_version: V3\\n    path: /home/envoy/lds.yaml\\n\\nadmin:\\n  access_log_path: /dev/stdout\\n  address:\\n    socket_address:\\n      address: 0.0.0.0\\n      port_value: 10000\\n"
    );
    format!(
        "mkdir -p /home/envoy && echo -en '{envoy_yaml}' > /home/envoy/envoy.yaml && \
         {{ [ -f /home/envoy/cds.yaml ] || echo 'resources: []' > /home/envoy/cds.yaml; }} && \
         {{ [ -f /home/envoy/lds.yaml ] || echo 'resources: []' > /home/envoy/lds.yaml; }} && \
         while true; do envoy -c /home/envoy/envoy.yaml && break; sleep 1; done"
    )
}

fn kind_lds() -> String {
    "resources:\n- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: listener_apiserver\n  address:\n    socket_address:\n      address: 0.0.0.0\n      port_value: 6443\n      protocol: TCP\n  filter_chains:\n  - filters:\n    - name: envoy.filters.network.tcp_proxy\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n        stat_prefix: ingress_tcp\n        cluster: kube_apiservers\n".to_string()
}

fn kind_cds(backends: &[&str]) -> String {
    let mut out = String::from(
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: kube_apiservers\n  connect_timeout: 0.25s\n  type: STRICT_DNS\n  lb_policy: ROUND_ROBIN\n  dns_lookup_family: V4_PREFERRED\n  health_checks:\n  - timeout: 3s\n    interval: 2s\n    unhealthy_threshold: 2\n    healthy_threshold: 1\n    http_health_check:\n      path: /healthz\n  load_assignment:\n    cluster_name: kube_apiservers\n    endpoints:\n    - lb_endpoints:\n",
    );
    for b in backends {
        out.push_str(&format!(
            "      - endpoint:\n          address:\n            socket_address:\n              address: {b}\n              port_value: 6443\n"
        ));
    }
    out
}

#[test]
fn kind_lb_boots_from_bash_bootstrap_and_follows_mv_updates() {
    let mut t = Cleanup::new("kind");
    let cp1 = t.upstream("control-plane", &["6443"]);
    let cp2 = t.upstream("control-plane2", &["6443"]);
    let lb = t.name("external-load-balancer");
    let bootstrap = kind_bootstrap(&t.network, &lb);
    docker(&[
        "run",
        "-d",
        "--name",
        &lb,
        "--hostname",
        &lb,
        "--tty",
        "--network",
        &t.network,
        "-p",
        "127.0.0.1::6443/tcp",
        KIND_LB_IMAGE,
        "bash",
        "-c",
        &bootstrap,
    ]);
    wait_log(&lb, "starting workers", 1, Duration::from_secs(20));
    let api = host_port(&lb, "6443/tcp");
    assert!(
        ask(api).is_err(),
        "answered before any listener was configured"
    );

    // kind's loadbalancer action: WriteFile of both *.tmp, then chmod + mv.
    let write_file = |path: &str, content: &str| {
        docker(&["exec", &lb, "mkdir", "-p", "/home/envoy"]);
        docker_stdin(&["exec", "-i", &lb, "cp", "/dev/stdin", path], content);
    };
    write_file("/home/envoy/lds.yaml.tmp", &kind_lds());
    write_file("/home/envoy/cds.yaml.tmp", &kind_cds(&[&cp1, &cp2]));
    docker(&[
        "exec",
        &lb,
        "sh",
        "-c",
        "chmod 666 /home/envoy/cds.yaml.tmp /home/envoy/lds.yaml.tmp && mv /home/envoy/cds.yaml.tmp /home/envoy/cds.yaml && mv /home/envoy/lds.yaml.tmp /home/envoy/lds.yaml",
    ]);
    wait_log(
        &lb,
        "add/update listener 'listener_apiserver'",
        1,
        Duration::from_secs(10),
    );
    let seen = ask_many(api, 6);
    assert!(seen.contains(&cp1) && seen.contains(&cp2), "{seen:?}");

    // A control plane stops: every connection is answered by the other.
    docker(&["stop", "-t", "10", &cp2]);
    assert!(ask_many(api, 6).iter().all(|s| *s == cp1));

    assert_stops_promptly(&lb);
}
