//! kecs-bench: every figure of the library as a ratio to the raw Docker API floor,
//! measured side by side in one run on the node simulator image (see BENCHMARKS.md).

mod floor;
mod stats;

use bollard::Docker;
use clap::Parser;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kecs_cluster::{CancellationToken, ClusterManager, ClusterManagerConfig, CreateOptions};
use stats::{markdown, stat, Row, Stat};

#[derive(Parser)]
#[command(about = "kecs-cluster benchmark harness (node simulator image; see BENCHMARKS.md)")]
struct Args {
    /// Runs per figure (cycle, readiness, FFI).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Runs per scale and concurrency point.
    #[arg(long, default_value_t = 5)]
    scale_runs: usize,
    /// Create/delete cycles for the memory figure.
    #[arg(long, default_value_t = 50)]
    memory_cycles: usize,
    /// Write the results as JSON too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The Go driver (built from bindings/go/cmd/kecs-bench-go by bench/run.sh).
    #[arg(long)]
    go_driver: Option<PathBuf>,
    #[arg(long, default_value = "kecs-sim/k3s:test")]
    image: String,
    /// Sections to run (comma-separated): cycle,readiness,scale,concurrency,ffi,memory.
    #[arg(long, default_value = "cycle,readiness,scale,concurrency,ffi,memory")]
    sections: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Ctx {
    args: Args,
    docker: Docker,
    dir: PathBuf,
    seq: std::sync::atomic::AtomicUsize,
}

impl Ctx {
    fn name(&self, tag: &str) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("kb{tag}{}{n}", std::process::id() % 10_000)
    }

    fn manager(&self) -> ClusterManager {
        let cfg = ClusterManagerConfig {
            image: Some(self.args.image.clone()),
            privileged: Some(false),
            kubeconfig_path: Some(self.dir.display().to_string()),
            ..Default::default()
        };
        ClusterManager::new(&cfg).expect("manager")
    }

    fn go(&self, mode: &str, n: usize, name: &str) -> Value {
        let driver = self.args.go_driver.as_ref().expect("--go-driver");
        let out = Command::new(driver)
            .args([
                "-mode",
                mode,
                "-n",
                &n.to_string(),
                "-image",
                &self.args.image,
                "-name",
                name,
            ])
            .args(["-kubeconfig-dir", &self.dir.display().to_string()])
            .output()
            .expect("running the Go driver");
        assert!(
            out.status.success(),
            "Go driver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("Go driver JSON")
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The Go driver in serve mode: one process and one warm Manager for the run.
struct GoServer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl GoServer {
    fn start(cx: &Ctx) -> GoServer {
        let driver = cx.args.go_driver.as_ref().expect("--go-driver");
        let mut child = tokio::process::Command::new(driver)
            .args([
                "-mode",
                "serve",
                "-image",
                &cx.args.image,
                "-kubeconfig-dir",
                &cx.dir.display().to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the Go driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
            child.stdout.take().unwrap(),
        ));
        GoServer {
            child,
            stdin,
            stdout,
        }
    }

    async fn cycle(&mut self, name: &str) -> Value {
        self.command(&format!("cycle {name}")).await
    }

    async fn command(&mut self, line: &str) -> Value {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("Go driver stdin");
        let line = self
            .stdout
            .next_line()
            .await
            .expect("Go driver stdout")
            .expect("Go driver exited");
        let _ = &self.child;
        serde_json::from_str(&line).expect("Go driver JSON")
    }
}

/// `2026-11-26T08:13:02.123456789Z` → seconds since the epoch, with fraction.
fn docker_time(ts: &str) -> Option<f64> {
    let whole = kecs_cluster::provider::k3d::unix_seconds(ts)? as f64;
    let frac = ts
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .unwrap_or("0");
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    Some(whole + frac)
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The daemon's timestamp of the first log line of `container` containing `needle`.
async fn line_time(docker: &Docker, container: &str, needle: &str) -> Option<f64> {
    use futures_util::StreamExt;
    let opts = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        timestamps: true,
        ..Default::default()
    };
    let mut s = docker.logs(container, Some(opts));
    while let Some(Ok(chunk)) = s.next().await {
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        for line in text.lines() {
            if line.contains(needle) {
                return docker_time(line.split_whitespace().next()?);
            }
        }
    }
    None
}

/// (a) one library cycle on a warm manager: (create → ready ms, whole cycle ms).
async fn rust_cycle(cx: &Ctx, m: &ClusterManager) -> (f64, f64) {
    let name = cx.name("r");
    let never = CancellationToken::new();
    let t = Instant::now();
    m.create(&name, &CreateOptions::default(), &never)
        .await
        .expect("create");
    let created = ms(t.elapsed());
    m.delete(&name, &never).await.expect("delete");
    (created, ms(t.elapsed()))
}

async fn cycles(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let (mut a_create, mut a, mut b_create, mut b, mut c, mut d_create, mut d) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cli-cycle.sh");
    // both library peers keep one warm manager for the whole run
    let manager = cx.manager();
    let mut go = cx.args.go_driver.as_ref().map(|_| GoServer::start(cx));
    for _ in 0..cx.args.runs {
        // interleaved, so every peer sees the same machine
        let (cr, cy) = rust_cycle(cx, &manager).await;
        a_create.push(cr);
        a.push(cy);
        if let Some(go) = go.as_mut() {
            let v = go.cycle(&cx.name("g")).await;
            b_create.push(v["create_ms"].as_f64().unwrap_or(f64::NAN));
            b.push(v["cycle_ms"].as_f64().unwrap_or(f64::NAN));
        }
        let t = Instant::now();
        let st = Command::new("bash")
            .arg(&script)
            .arg(cx.name("c"))
            .arg(&cx.args.image)
            .output()
            .expect("cli-cycle.sh");
        assert!(
            st.status.success(),
            "cli-cycle.sh: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        c.push(ms(t.elapsed()));
        let t = Instant::now();
        let (created, fc) = floor::create(&cx.docker, &cx.args.image, &cx.name("f"), 0, true).await;
        floor::delete(&cx.docker, fc).await;
        d_create.push(created);
        d.push(ms(t.elapsed()));
    }
    let (sa, sc, sd) = (stat(&a), stat(&c), stat(&d));
    rows.push(Row::ratio(
        "1. cycle create→ready→delete, 1 server: (a) Rust API vs (d) floor",
        "ms",
        sa,
        "(d) raw Docker API",
        sd,
        1.15,
    ));
    rows.push(Row::ratio(
        "1. create→ready only: (a) Rust API vs (d) floor",
        "ms",
        stat(&a_create),
        "(d) raw Docker API",
        stat(&d_create),
        1.15,
    ));
    if !b.is_empty() {
        rows.push(Row::ratio(
            "1. cycle: (b) Go bindings vs (a) Rust API",
            "ms",
            stat(&b),
            "(a) Rust API",
            sa,
            1.02,
        ));
        rows.push(Row::ratio(
            "1. create→ready: (b) Go bindings vs (a) Rust API",
            "ms",
            stat(&b_create),
            "(a) Rust API",
            stat(&a_create),
            1.02,
        ));
    }
    rows.push(Row::ratio(
        "1. cycle: (a) Rust API vs (c) Docker CLI + 100 ms log polling",
        "ms",
        sa,
        "(c) Docker CLI script",
        sc,
        0.95,
    ));
    raw["cycle"] = json!({"a_ms": a, "a_create_ms": a_create, "b_ms": b, "b_create_ms": b_create, "c_ms": c, "d_ms": d, "d_create_ms": d_create});
}

async fn readiness(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let (mut ours, mut polled) = (vec![], vec![]);
    let never = CancellationToken::new();
    for _ in 0..cx.args.runs {
        let m = cx.manager();
        let name = cx.name("l");
        m.create(&name, &CreateOptions::default(), &never)
            .await
            .expect("create");
        let returned = now_epoch();
        let full = m.cluster_name(&name).unwrap();
        let line = line_time(
            &cx.docker,
            &format!("k3d-{full}-server-0"),
            "k3s is up and running",
        )
        .await
        .expect("ready line");
        ours.push((returned - line) * 1000.0);
        m.delete(&name, &never).await.expect("delete");

        // KECS's WaitForClusterReady: try, and after each failure sleep 2 s
        let fname = cx.name("p");
        let (_, fc) = floor_started(cx, &fname).await;
        let server = fc.containers[0].clone();
        loop {
            if kecs_api_answers(&cx.docker, &server).await {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let done = now_epoch();
        let line = line_time(&cx.docker, &server, "k3s is up and running")
            .await
            .expect("ready line");
        polled.push((done - line) * 1000.0);
        floor::delete(&cx.docker, fc).await;
    }
    rows.push(Row::absolute(
        "2. readiness latency: ready log line → create returns (library)",
        "ms",
        stat(&ours),
        "≤ 50 ms",
        Some(50.0),
    ));
    rows.push(Row::absolute(
        "2. readiness latency with KECS's 2-second polling (same node)",
        "ms",
        stat(&polled),
        "reference",
        None,
    ));
    raw["readiness"] = json!({"library_ms": ours, "kecs_polling_ms": polled});
}

/// A floor server started without waiting (for the polling comparison).
async fn floor_started(cx: &Ctx, name: &str) -> (f64, floor::FloorCluster) {
    use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
    let network = format!("kecs-floor-{name}");
    cx.docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let server = format!("{name}-server");
    let mut ports = std::collections::HashMap::new();
    ports.insert(
        "6443/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        }]),
    );
    let body = ContainerCreateBody {
        image: Some(cx.args.image.clone()),
        hostname: Some(server.clone()),
        cmd: Some(vec!["server".into()]),
        env: Some(vec!["K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml".into()]),
        exposed_ports: Some(vec!["6443/tcp".into()]),
        host_config: Some(HostConfig {
            init: Some(true),
            network_mode: Some(network.clone()),
            port_bindings: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = bollard::query_parameters::CreateContainerOptions {
        name: Some(server.clone()),
        ..Default::default()
    };
    cx.docker.create_container(Some(opts), body).await.unwrap();
    cx.docker
        .start_container(
            &server,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    (
        0.0,
        floor::FloorCluster {
            network,
            containers: vec![server],
        },
    )
}

/// One KECS-style readiness attempt: kubeconfig present, client built, nodes listed.
async fn kecs_api_answers(docker: &Docker, server: &str) -> bool {
    let Ok(raw) = kecs_cluster::docker::read_file(docker, server, "/output/kubeconfig.yaml").await
    else {
        return false;
    };
    let Ok(info) = kecs_cluster::docker::inspect(docker, server).await else {
        return false;
    };
    let Some(port) = kecs_cluster::docker::published_port(&info, "6443/tcp") else {
        return false;
    };
    let names = kecs_cluster::kubeconfig::EntryNames {
        cluster: "p".into(),
        context: "p".into(),
        user: "p".into(),
    };
    let Ok(yaml) = kecs_cluster::kubeconfig::rewrite(
        &String::from_utf8_lossy(&raw),
        &names,
        &format!("https://127.0.0.1:{port}"),
    ) else {
        return false;
    };
    let Ok(client) = kecs_cluster::readiness::client(&yaml, Duration::from_secs(5)).await else {
        return false;
    };
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    nodes
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .is_ok()
}

async fn scale(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let mut out = serde_json::Map::new();
    for agents in [0usize, 2, 4, 8] {
        let (mut lib, mut par, mut seq) = (vec![], vec![], vec![]);
        for _ in 0..cx.args.scale_runs {
            let m = cx.manager();
            let name = cx.name("s");
            let t = Instant::now();
            m.create(
                &name,
                &CreateOptions {
                    agents: agents as u32,
                    ..Default::default()
                },
                &never,
            )
            .await
            .expect("create");
            lib.push(ms(t.elapsed()));
            m.delete(&name, &never).await.expect("delete");
            let (p, fc) =
                floor::create(&cx.docker, &cx.args.image, &cx.name("fp"), agents, true).await;
            floor::delete(&cx.docker, fc).await;
            par.push(p);
            let (s, fc) =
                floor::create(&cx.docker, &cx.args.image, &cx.name("fs"), agents, false).await;
            floor::delete(&cx.docker, fc).await;
            seq.push(s);
        }
        rows.push(Row::ratio(
            &format!(
                "3. scale 1 server + {agents} agents, create→ready: library vs parallel floor"
            ),
            "ms",
            stat(&lib),
            "floor, nodes started in parallel",
            stat(&par),
            1.15,
        ));
        rows.push(Row::absolute(&format!("3. scale 1 server + {agents} agents: floor starting nodes one after another (k3d's order)"), "ms", stat(&seq), "reference", None));
        out.insert(
            format!("agents_{agents}"),
            json!({"library_ms": lib, "floor_parallel_ms": par, "floor_sequential_ms": seq}),
        );
    }
    raw["scale"] = Value::Object(out);
}

async fn concurrency(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let mut out = serde_json::Map::new();
    for k in [1usize, 2, 4] {
        let (mut lib, mut fl) = (vec![], vec![]);
        for _ in 0..cx.args.scale_runs {
            let m = cx.manager();
            let names: Vec<String> = (0..k).map(|_| cx.name("k")).collect();
            let opts = CreateOptions::default();
            let t = Instant::now();
            futures_util::future::join_all(names.iter().map(|n| m.create(n, &opts, &never)))
                .await
                .into_iter()
                .for_each(|r| {
                    r.expect("create");
                });
            lib.push(ms(t.elapsed()));
            futures_util::future::join_all(names.iter().map(|n| m.delete(n, &never))).await;
            let t = Instant::now();
            let fnames: Vec<String> = (0..k).map(|_| cx.name("kf")).collect();
            let made = futures_util::future::join_all(
                fnames
                    .iter()
                    .map(|n| floor::create(&cx.docker, &cx.args.image, n, 0, true)),
            )
            .await;
            fl.push(ms(t.elapsed()));
            futures_util::future::join_all(
                made.into_iter().map(|(_, c)| floor::delete(&cx.docker, c)),
            )
            .await;
        }
        rows.push(Row::ratio(
            &format!("4. {k} cluster(s) created at once: library vs floor"),
            "ms",
            stat(&lib),
            "floor, same K at once",
            stat(&fl),
            1.15,
        ));
        out.insert(format!("k_{k}"), json!({"library_ms": lib, "floor_ms": fl}));
    }
    raw["concurrency"] = Value::Object(out);
}

async fn ffi_cost(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let Some(_) = cx.args.go_driver else { return };
    let m = cx.manager();
    let never = CancellationToken::new();
    let mut go = GoServer::start(cx);
    let block = 100;
    // warm up both sides (connect, negotiate, first allocations)
    for _ in 0..20 {
        m.exists("bench-missing", &never).await.expect("exists");
    }
    go.command("exists 20").await;
    let (mut rust_exists, mut go_exists, mut rust_path, mut go_path) =
        (vec![], vec![], vec![], vec![]);
    // interleaved blocks, so both sides see the same machine
    for _ in 0..cx.args.runs {
        for _ in 0..block {
            let t = Instant::now();
            m.exists("bench-missing", &never).await.expect("exists");
            rust_exists.push(t.elapsed().as_nanos() as f64);
        }
        go_exists.extend(floats(&go.command(&format!("exists {block}")).await["ns"]));
        for _ in 0..block {
            let t = Instant::now();
            std::hint::black_box(m.kubeconfig_path("bench-missing").expect("path"));
            rust_path.push(t.elapsed().as_nanos() as f64);
        }
        go_path.extend(floats(&go.command(&format!("path {block}")).await["ns"]));
    }
    let us = |s: Stat| Stat {
        median: s.median / 1000.0,
        p90: s.p90 / 1000.0,
        n: s.n,
    };
    let (re, ge, rp, gp) = (
        stat(&rust_exists),
        stat(&go_exists),
        stat(&rust_path),
        stat(&go_path),
    );
    rows.push(Row::absolute(
        "5. ClusterExists (missing cluster), Rust API: one Docker round trip",
        "µs",
        us(re),
        "reference",
        None,
    ));
    rows.push(Row::absolute(
        "5. ClusterExists through Go → C ABI → Rust",
        "µs",
        us(ge),
        "reference",
        None,
    ));
    let frac = (ge.median - re.median) / re.median * 100.0;
    rows.push(Row::absolute(
        "5. FFI overhead on ClusterExists (Go − Rust medians) as % of the round trip",
        "%",
        Stat {
            median: frac,
            p90: f64::NAN,
            n: ge.n,
        },
        "≤ 2 %",
        Some(2.0),
    ));
    rows.push(Row::absolute(
        "5. boundary alone: GetKubeconfigPath via Go (no Docker call)",
        "µs",
        us(gp),
        "reference",
        None,
    ));
    rows.push(Row::absolute(
        "5. boundary alone: kubeconfig_path in Rust",
        "µs",
        us(rp),
        "reference",
        None,
    ));
    raw["ffi"] = json!({"rust_exists_ns": rust_exists, "go_exists_ns": go_exists, "rust_path_ns": rust_path, "go_path_ns": go_path});
}

fn memory(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    if cx.args.go_driver.is_none() {
        return;
    }
    let v = cx.go("rss", cx.args.memory_cycles, &cx.name("m"));
    let r = &v["rss_kib"];
    let kib = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let idle_mb = (kib("idle") - kib("before")) / 1024.0;
    let growth = (kib("after") - kib("warm")) / kib("warm") * 100.0;
    let one = |x: f64| Stat {
        median: x,
        p90: f64::NAN,
        n: 1,
    };
    rows.push(Row::absolute(
        "6. RSS of a Go process: idle Manager − process before it",
        "MB",
        one(idle_mb),
        "≤ 15 MB",
        Some(15.0),
    ));
    rows.push(Row::absolute(
        &format!(
            "6. RSS growth over {} create/delete cycles (after one warm-up)",
            cx.args.memory_cycles
        ),
        "%",
        one(growth),
        "≤ 5 %",
        Some(5.0),
    ));
    raw["memory"] = v;
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({"cores": cores, "memory_gib": (mem / 1024.0 / 1024.0 * 10.0).round() / 10.0, "date": date})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let docker = kecs_cluster::docker::connect(std::env::var("DOCKER_HOST").ok().as_deref())
        .await
        .expect("Docker");
    let version = docker
        .version()
        .await
        .map(|v| v.version.unwrap_or_default())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("kecs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cx = Ctx {
        args,
        docker,
        dir,
        seq: Default::default(),
    };
    let mut rows = Vec::new();
    let mut raw = json!({});
    let mut m = machine();
    m["docker"] = json!(version);
    eprintln!("kecs-bench: {m}");
    let want = |s: &str| cx.args.sections.split(',').any(|x| x.trim() == s);
    if want("cycle") {
        eprintln!("kecs-bench: create→ready→delete cycles");
        cycles(&cx, &mut rows, &mut raw).await;
    }
    if want("readiness") {
        eprintln!("kecs-bench: readiness latency");
        readiness(&cx, &mut rows, &mut raw).await;
    }
    if want("scale") {
        eprintln!("kecs-bench: scale");
        scale(&cx, &mut rows, &mut raw).await;
    }
    if want("concurrency") {
        eprintln!("kecs-bench: concurrency");
        concurrency(&cx, &mut rows, &mut raw).await;
    }
    if want("ffi") {
        eprintln!("kecs-bench: FFI cost");
        ffi_cost(&cx, &mut rows, &mut raw).await;
    }
    if want("memory") {
        eprintln!("kecs-bench: memory");
        memory(&cx, &mut rows, &mut raw);
    }
    let _ = std::fs::remove_dir_all(&cx.dir);
    println!("Machine: {} cores, {} GiB, Docker {}, {}; node image {} (simulator); {} runs per figure, {} per scale/concurrency point.\n",
        m["cores"], m["memory_gib"], m["docker"].as_str().unwrap_or(""), m["date"].as_str().unwrap_or(""), cx.args.image, cx.args.runs, cx.args.scale_runs);
    println!("{}", markdown(&rows));
    if let Some(path) = &cx.args.json {
        let doc = json!({"machine": m, "runs": cx.args.runs, "scale_runs": cx.args.scale_runs, "rows": rows, "samples": raw});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("writing --json");
    }
}
