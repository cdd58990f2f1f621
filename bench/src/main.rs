//! kecs-bench: every figure of the library as a ratio to the raw Docker API floor,
//! measured side by side in one run on the node simulator image (see BENCHMARKS.md).

mod charts;
#[path = "../../tests/fault_proxy/mod.rs"]
mod fault_proxy;
mod floor;
mod stats;

use bollard::Docker;
use clap::Parser;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floor::Order;
use kecs_cluster::engine::Engine;
use kecs_cluster::{
    CancellationToken, ClusterManager, ClusterManagerConfig, CreateOptions, RegistryCreate,
    RegistryOptions,
};
use stats::{markdown, stat, Against, Row, Stat};

#[derive(Parser)]
#[command(about = "kecs-cluster benchmark harness (node simulator image; see BENCHMARKS.md)")]
struct Args {
    /// Least runs per figure (cycle, ports, stop/start, FFI); more are made while
    /// the 95 % interval of the figure's ratio is wider than ±5 %, up to --max-runs.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Cap on the adaptive runs per figure.
    #[arg(long, default_value_t = 25)]
    max_runs: usize,
    /// Least runs per scale and concurrency point (and readiness).
    #[arg(long, default_value_t = 5)]
    scale_runs: usize,
    /// Cap on the adaptive runs per scale and concurrency point.
    #[arg(long, default_value_t = 10)]
    scale_max_runs: usize,
    /// Create/delete cycles for the memory figure.
    #[arg(long, default_value_t = 50)]
    memory_cycles: usize,
    /// Write the results (every sample) as JSON too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the SVG charts into this directory (from this run, or --render-only).
    #[arg(long)]
    charts: Option<PathBuf>,
    /// Only draw the charts of an existing results JSON (no Docker needed).
    #[arg(long, value_name = "JSON")]
    render_only: Option<PathBuf>,
    /// Internal: make --calls calls of `exists` (on a missing cluster) or of
    /// `path` (kubeconfig_path, no Docker call) and exit; the FFI figure counts
    /// this process's instructions under callgrind.
    #[arg(long, value_name = "exists|path")]
    probe: Option<String>,
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// The Go driver (built from bindings/go/cmd/kecs-bench-go by bench/run.sh).
    #[arg(long)]
    go_driver: Option<PathBuf>,
    #[arg(long, default_value = "kecs-sim/k3s:test")]
    image: String,
    /// The load balancer's image (the library reads $KECS_LB_IMAGE too).
    #[arg(long, default_value = "kecs-sim/k3d-proxy:test")]
    lb_image: String,
    /// The registry's image (the real distribution registry, built by
    /// tests/registry/build-image.sh).
    #[arg(long, default_value = "kecs-sim/registry:test")]
    registry_image: String,
    /// Sections to run (comma-separated): cycle,readiness,scale,concurrency,ports,stopstart,registry,cancel,ffi,memory.
    #[arg(
        long,
        default_value = "cycle,readiness,scale,concurrency,ports,stopstart,registry,cancel,ffi,memory"
    )]
    sections: String,
}

/// Adaptive runs stop once the 95 % interval of the ratio is within ±5 %.
const CI_WITHIN: f64 = 0.05;

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
        self.manager_at(None)
    }

    /// A manager reaching the engine at `docker_host` (default: the local one).
    fn manager_at(&self, docker_host: Option<String>) -> ClusterManager {
        let cfg = ClusterManagerConfig {
            docker_host,
            image: Some(self.args.image.clone()),
            privileged: Some(false),
            lb_image: Some(self.args.lb_image.clone()),
            registry_image: Some(self.args.registry_image.clone()),
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
            .env("KECS_LB_IMAGE", &self.args.lb_image)
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
            .env("KECS_LB_IMAGE", &cx.args.lb_image)
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

fn with_lb(lb: bool) -> CreateOptions {
    CreateOptions {
        load_balancer: Some(lb),
        ..Default::default()
    }
}

/// One library cycle on a warm manager: (create → ready ms, whole cycle ms).
async fn rust_cycle(cx: &Ctx, m: &ClusterManager, opts: &CreateOptions) -> (f64, f64) {
    let name = cx.name("r");
    let never = CancellationToken::new();
    let t = Instant::now();
    m.create(&name, opts, &never).await.expect("create");
    let created = ms(t.elapsed());
    m.delete(&name, &never).await.expect("delete");
    (created, ms(t.elapsed()))
}

/// One floor cycle: (create → ready ms, whole cycle ms).
async fn floor_cycle(cx: &Ctx, lb: bool, agents: usize, order: Order) -> (f64, f64) {
    let t = Instant::now();
    let lb_image = lb.then_some(cx.args.lb_image.as_str());
    let (created, fc) = floor::create(
        &cx.docker,
        &cx.args.image,
        lb_image,
        &cx.name("f"),
        agents,
        order,
    )
    .await;
    floor::delete(&cx.docker, fc).await;
    (created, ms(t.elapsed()))
}

/// Runs `one` at least `min` times and more, up to `cap`, while any of the
/// ratios `pairs` names (value, floor sample keys) is not settled.
async fn adaptive<F, Fut>(
    min: usize,
    cap: usize,
    samples: &mut std::collections::BTreeMap<&'static str, Vec<f64>>,
    pairs: &[(&'static str, &[&'static str])],
    mut one: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<(&'static str, f64)>>,
{
    let mut runs = 0;
    loop {
        if runs >= min.max(1) {
            let all_settled = pairs.iter().all(|(value, floors)| {
                let orders: Vec<(&str, &[f64])> = floors
                    .iter()
                    .map(|f| (*f, samples.get(f).map(Vec::as_slice).unwrap_or(&[])))
                    .collect();
                // a peer this run does not have (no Go driver) holds nothing up
                let Some(value) = samples.get(value) else {
                    return true;
                };
                let (_, floor) = stats::best(&orders);
                stats::settled(value, floor, CI_WITHIN)
            });
            if all_settled || runs >= cap {
                eprintln!("kecs-bench:   {runs} runs (settled: {all_settled})");
                return;
            }
        }
        for (k, v) in one().await {
            samples.entry(k).or_default().push(v);
        }
        runs += 1;
    }
}

type Samples = std::collections::BTreeMap<&'static str, Vec<f64>>;

/// The ratio row of `value` against the best (lowest-median) of the floor orders.
fn floor_row(
    figure: &str,
    s: &Samples,
    value: &str,
    orders: &[(&'static str, &'static str)],
    max: f64,
) -> Row {
    let measured: Vec<(&str, &[f64])> = orders
        .iter()
        .map(|(label, key)| (*label, s.get(key).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    let (label, floor) = stats::best(&measured);
    Row::ratio(
        figure,
        "ms",
        &s[value],
        &format!("floor, best order: {label}"),
        floor,
        Against::Floor,
        max,
    )
}

const LB_CREATE_FLOORS: &[(&str, &str)] = &[
    ("LB pipelined", "floor_lb_pipelined_create_ms"),
    ("sequential", "floor_lb_sequential_create_ms"),
];
const LB_CYCLE_FLOORS: &[(&str, &str)] = &[
    ("LB pipelined", "floor_lb_pipelined_ms"),
    ("sequential", "floor_lb_sequential_ms"),
];

async fn cycles(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cli-cycle.sh");
    // both library peers keep one warm manager for the whole run
    let manager = cx.manager();
    let go = std::sync::Arc::new(tokio::sync::Mutex::new(
        cx.args.go_driver.as_ref().map(|_| GoServer::start(cx)),
    ));
    let mut s = Samples::new();
    let pairs: &[(&str, &[&str])] = &[
        (
            "a_lb_create_ms",
            &[
                "floor_lb_pipelined_create_ms",
                "floor_lb_sequential_create_ms",
            ],
        ),
        ("a_direct_create_ms", &["floor_direct_create_ms"]),
        ("b_lb_create_ms", &["a_lb_create_ms"]),
    ];
    let (min, cap) = (cx.args.runs, cx.args.max_runs);
    adaptive(min, cap, &mut s, pairs, || {
        let (manager, go, script) = (&manager, go.clone(), script.clone());
        async move {
            // interleaved, so every peer sees the same machine
            let mut out = vec![];
            let (cr, cy) = rust_cycle(cx, manager, &with_lb(true)).await;
            out.extend([("a_lb_create_ms", cr), ("a_lb_ms", cy)]);
            let (cr, cy) = rust_cycle(cx, manager, &with_lb(false)).await;
            out.extend([("a_direct_create_ms", cr), ("a_direct_ms", cy)]);
            if let Some(go) = go.lock().await.as_mut() {
                let v = go.cycle(&cx.name("g")).await;
                out.push((
                    "b_lb_create_ms",
                    v["create_ms"].as_f64().unwrap_or(f64::NAN),
                ));
                out.push(("b_lb_ms", v["cycle_ms"].as_f64().unwrap_or(f64::NAN)));
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
            out.push(("c_direct_ms", ms(t.elapsed())));
            let (cr, cy) = floor_cycle(cx, true, 0, Order::Parallel).await;
            out.extend([
                ("floor_lb_pipelined_create_ms", cr),
                ("floor_lb_pipelined_ms", cy),
            ]);
            let (cr, cy) = floor_cycle(cx, true, 0, Order::Sequential).await;
            out.extend([
                ("floor_lb_sequential_create_ms", cr),
                ("floor_lb_sequential_ms", cy),
            ]);
            // one node: every order is the same order
            let (cr, cy) = floor_cycle(cx, false, 0, Order::Parallel).await;
            out.extend([("floor_direct_create_ms", cr), ("floor_direct_ms", cy)]);
            out
        }
    })
    .await;
    let direct: &[(&str, &str)] = &[("one node", "floor_direct_create_ms")];
    rows.push(floor_row(
        "1a. create→ready with the load balancer (default), Rust API vs floor with the same LB container",
        &s,
        "a_lb_create_ms",
        LB_CREATE_FLOORS,
        1.15,
    ));
    rows.push(floor_row(
        "1a. cycle create→ready→delete with the load balancer, Rust API vs floor",
        &s,
        "a_lb_ms",
        LB_CYCLE_FLOORS,
        1.15,
    ));
    rows.push(floor_row(
        "1b. create→ready without LB (`load_balancer: Some(false)`), Rust API vs the old floor",
        &s,
        "a_direct_create_ms",
        direct,
        1.15,
    ));
    rows.push(floor_row(
        "1b. cycle without LB, Rust API vs the old floor",
        &s,
        "a_direct_ms",
        &[("one node", "floor_direct_ms")],
        1.15,
    ));
    if s.contains_key("b_lb_ms") {
        rows.push(Row::ratio(
            "1c. cycle with LB: (b) Go bindings vs (a) Rust API",
            "ms",
            &s["b_lb_ms"],
            "(a) Rust API",
            &s["a_lb_ms"],
            Against::Peer,
            1.02,
        ));
        rows.push(Row::ratio(
            "1c. create→ready with LB: (b) Go bindings vs (a) Rust API",
            "ms",
            &s["b_lb_create_ms"],
            "(a) Rust API",
            &s["a_lb_create_ms"],
            Against::Peer,
            1.02,
        ));
    }
    rows.push(Row::ratio(
        "1d. cycle without LB: (a) Rust API vs (c) Docker CLI + 100 ms log polling",
        "ms",
        &s["a_direct_ms"],
        "(c) Docker CLI script",
        &s["c_direct_ms"],
        Against::Peer,
        0.95,
    ));
    for (label, key) in LB_CREATE_FLOORS {
        rows.push(Row::absolute(
            &format!("1e. floor with LB, create→ready, order: {label}"),
            "ms",
            stat(&s[*key]),
            "reference",
            None,
        ));
    }
    raw["cycle"] = json!(s);
}

async fn readiness(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let (mut ours, mut polled) = (vec![], vec![]);
    let never = CancellationToken::new();
    // the server's ready line is the last event only without the load balancer
    for _ in 0..cx.args.scale_runs {
        let m = cx.manager();
        let name = cx.name("l");
        m.create(&name, &with_lb(false), &never)
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
        let server = fc.server.clone();
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
            server,
            agents: vec![],
            lb: None,
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

/// The floor orders of the scale figure (label, sample key).
const SCALE_FLOORS: &[(&str, &str)] = &[
    ("parallel", "floor_parallel_ms"),
    ("sequential", "floor_sequential_ms"),
    ("pipelined", "floor_pipelined_ms"),
];

async fn scale(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let mut out = serde_json::Map::new();
    for agents in [0usize, 2, 4, 8] {
        eprintln!("kecs-bench:  1 server + {agents} agents");
        let mut s = Samples::new();
        let pairs: &[(&str, &[&str])] = &[(
            "library_ms",
            &[
                "floor_parallel_ms",
                "floor_sequential_ms",
                "floor_pipelined_ms",
            ],
        )];
        adaptive(
            cx.args.scale_runs,
            cx.args.scale_max_runs,
            &mut s,
            pairs,
            || async {
                let m = cx.manager();
                let name = cx.name("s");
                let opts = CreateOptions {
                    agents: agents as u32,
                    ..with_lb(true)
                };
                let t = Instant::now();
                m.create(&name, &opts, &never).await.expect("create");
                let lib = ms(t.elapsed());
                m.delete(&name, &never).await.expect("delete");
                let (par, _) = floor_cycle(cx, true, agents, Order::Parallel).await;
                let (seq, _) = floor_cycle(cx, true, agents, Order::Sequential).await;
                let (pip, _) = floor_cycle(cx, true, agents, Order::Pipelined).await;
                vec![
                    ("library_ms", lib),
                    ("floor_parallel_ms", par),
                    ("floor_sequential_ms", seq),
                    ("floor_pipelined_ms", pip),
                ]
            },
        )
        .await;
        rows.push(floor_row(
            &format!("3. scale 1 server + {agents} agents + LB, create→ready: library vs floor"),
            &s,
            "library_ms",
            SCALE_FLOORS,
            1.15,
        ));
        // the coin toss shows in the tail: p90 against the p90 of the same floor
        let measured: Vec<(&str, &[f64])> = SCALE_FLOORS
            .iter()
            .map(|(label, key)| (*label, s[*key].as_slice()))
            .collect();
        let (label, floor) = stats::best(&measured);
        let p90 = stat(&s["library_ms"]).p90 / stat(floor).p90;
        rows.push(Row::absolute(
            &format!("3. scale 1 server + {agents} agents: p90 library / p90 floor ({label})"),
            "ratio",
            stats::one(p90),
            "≤ 1.15",
            Some(1.15),
        ));
        for (label, key) in [
            (
                "nodes started in parallel, LB pipelined",
                "floor_parallel_ms",
            ),
            ("one after another (k3d's order)", "floor_sequential_ms"),
            (
                "agents once the server's API runs, LB after the server's start",
                "floor_pipelined_ms",
            ),
        ] {
            rows.push(Row::absolute(
                &format!("3. scale 1 server + {agents} agents: floor, {label}"),
                "ms",
                stat(&s[key]),
                "reference",
                None,
            ));
        }
        out.insert(format!("agents_{agents}"), json!(s));
    }
    raw["scale"] = Value::Object(out);
}

async fn concurrency(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let mut out = serde_json::Map::new();
    for k in [1usize, 2, 4] {
        eprintln!("kecs-bench:  {k} at once");
        let mut s = Samples::new();
        let pairs: &[(&str, &[&str])] = &[("library_ms", &["floor_ms"])];
        adaptive(
            cx.args.scale_runs,
            cx.args.scale_max_runs,
            &mut s,
            pairs,
            || async {
                let m = cx.manager();
                let names: Vec<String> = (0..k).map(|_| cx.name("k")).collect();
                let opts = with_lb(true);
                let t = Instant::now();
                futures_util::future::join_all(names.iter().map(|n| m.create(n, &opts, &never)))
                    .await
                    .into_iter()
                    .for_each(|r| {
                        r.expect("create");
                    });
                let lib = ms(t.elapsed());
                futures_util::future::join_all(names.iter().map(|n| m.delete(n, &never))).await;
                let t = Instant::now();
                let fnames: Vec<String> = (0..k).map(|_| cx.name("kf")).collect();
                let made = futures_util::future::join_all(fnames.iter().map(|n| {
                    floor::create(
                        &cx.docker,
                        &cx.args.image,
                        Some(&cx.args.lb_image),
                        n,
                        0,
                        Order::Parallel,
                    )
                }))
                .await;
                let fl = ms(t.elapsed());
                futures_util::future::join_all(
                    made.into_iter().map(|(_, c)| floor::delete(&cx.docker, c)),
                )
                .await;
                vec![("library_ms", lib), ("floor_ms", fl)]
            },
        )
        .await;
        rows.push(floor_row(
            &format!("4. {k} cluster(s) with LB created at once: library vs floor"),
            &s,
            "library_ms",
            &[("same K at once, LB pipelined", "floor_ms")],
            1.15,
        ));
        out.insert(format!("k_{k}"), json!(s));
    }
    raw["concurrency"] = Value::Object(out);
}

/// k3d's `node edit --port-add` (k3d contract §2.4): the load balancer is
/// recreated and its proxy entrypoint sleeps 3 × 2 s before nginx starts, so
/// the call takes at least 6 s and every published port, the API's included,
/// refuses connections meanwhile.
const K3D_PORT_ADD_MIN_MS: f64 = 6000.0;

/// Adds (and removes) one more mapping while connecting to the cluster's API
/// port every 5 ms: (connections tried, refused). Kept out of the timed runs,
/// so the probing load does not weigh on the figure.
async fn api_during_port_add(m: &ClusterManager, name: &str, api_port: u16) -> (usize, usize) {
    let never = CancellationToken::new();
    let done = CancellationToken::new();
    let api = format!("127.0.0.1:{api_port}");
    let probe = async {
        let (mut tried, mut refused) = (0, 0);
        while !done.is_cancelled() {
            tried += 1;
            if tokio::net::TcpStream::connect(&api).await.is_err() {
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (tried, refused)
    };
    let add = async {
        let port = kecs_cluster::PortMapping {
            host_port: 0,
            container_port: 29999,
            protocol: None,
            host_ip: Some("127.0.0.1".into()),
            node: None,
        };
        let info = m.port_add(name, &port, &never).await.expect("port add");
        done.cancel();
        info
    };
    let (counts, info) = tokio::join!(probe, add);
    m.port_remove(name, info.host_port, &info.protocol, &never)
        .await
        .expect("port remove");
    counts
}

/// (b) a port mapping added to a running cluster: library vs the Docker calls
/// of the same design (proxy create, values.yaml PUT, start, log wait).
async fn ports(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let m = cx.manager();
    let name = cx.name("pa");
    let info = m
        .create(&name, &with_lb(true), &never)
        .await
        .expect("create");
    let (_, fc) = floor::create(
        &cx.docker,
        &cx.args.image,
        Some(&cx.args.lb_image),
        &cx.name("pf"),
        0,
        Order::Parallel,
    )
    .await;
    let mut s = Samples::new();
    let pairs: &[(&str, &[&str])] = &[("library_ms", &["floor_ms"])];
    let seq = std::sync::atomic::AtomicU16::new(0);
    adaptive(cx.args.runs, cx.args.max_runs, &mut s, pairs, || async {
        let container_port = 30000 + seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = kecs_cluster::PortMapping {
            host_port: 0,
            container_port,
            protocol: None,
            host_ip: Some("127.0.0.1".into()),
            node: None,
        };
        let t = Instant::now();
        let info = m.port_add(&name, &port, &never).await.expect("port add");
        let lib = ms(t.elapsed());
        let t = Instant::now();
        m.port_remove(&name, info.host_port, &info.protocol, &never)
            .await
            .expect("port remove");
        let lib_remove = ms(t.elapsed());
        let proxy = format!("{}-p{container_port}", fc.server);
        let fl = floor::port_add(&cx.docker, &fc, &cx.args.lb_image, &proxy, container_port).await;
        floor::remove(&cx.docker, std::slice::from_ref(&proxy)).await;
        vec![
            ("library_ms", lib),
            ("floor_ms", fl),
            ("library_remove_ms", lib_remove),
        ]
    })
    .await;
    let (tries, refused) = api_during_port_add(&m, &name, info.api_port).await;
    m.delete(&name, &never).await.expect("delete");
    floor::delete(&cx.docker, fc).await;
    rows.push(Row::absolute(
        &format!(
            "5a. API connections refused during one more port add (of {tries} tried, every 5 ms)"
        ),
        "connections",
        stats::one(refused as f64),
        "0",
        Some(0.0),
    ));
    rows.push(floor_row(
        "5a. port add on a running cluster (its own proxy), library vs floor",
        &s,
        "library_ms",
        &[("create, PUT, start, log wait", "floor_ms")],
        1.15,
    ));
    rows.push(Row::absolute(
        "5a. port add, library; API untouched (k3d `node edit --port-add`: ≥ 6000 ms, API refused meanwhile)",
        "ms",
        stat(&s["library_ms"]),
        "< 6000 (k3d)",
        Some(K3D_PORT_ADD_MIN_MS),
    ));
    rows.push(Row::absolute(
        "5a. port remove, library (reference)",
        "ms",
        stat(&s["library_remove_ms"]),
        "reference",
        None,
    ));
    raw["ports"] = json!(s);
    raw["ports_api_probe"] = json!({"tried": tries, "refused": refused});
}

/// One create (with LB), stop and start of the library with its progress
/// messages and the time since each operation began: where the time goes.
async fn timelines(cx: &Ctx, raw: &mut Value) {
    type Lines = std::sync::Arc<std::sync::Mutex<Vec<(f64, String)>>>;
    let lines: Lines = Default::default();
    let sink = lines.clone();
    let m = cx
        .manager()
        .with_reporter(std::sync::Arc::new(move |d: Duration, msg: &str| {
            sink.lock().unwrap().push((ms(d), msg.to_string()));
        }));
    let never = CancellationToken::new();
    let name = cx.name("tl");
    let take = |what: &str, t: Instant| {
        let mut l = std::mem::take(&mut *lines.lock().unwrap());
        l.push((ms(t.elapsed()), "returned".into()));
        for (at, msg) in &l {
            eprintln!("kecs-bench:   {what} +{at:.0} ms {msg}");
        }
        l
    };
    let t = Instant::now();
    m.create(&name, &with_lb(true), &never)
        .await
        .expect("create");
    let create = take("create", t);
    let t = Instant::now();
    m.stop(&name, &never).await.expect("stop");
    let stop = take("stop", t);
    let t = Instant::now();
    m.start(&name, Duration::from_secs(120), &never)
        .await
        .expect("start");
    let start = take("start", t);
    m.delete(&name, &never).await.expect("delete");
    // the delete's messages are not the next create's
    lines.lock().unwrap().clear();
    let name = cx.name("tl");
    let eight = CreateOptions {
        agents: 8,
        ..with_lb(true)
    };
    let t = Instant::now();
    m.create(&name, &eight, &never).await.expect("create");
    let create8 = take("create, 8 agents", t);
    m.delete(&name, &never).await.expect("delete");
    raw["timelines"] =
        json!({"create_with_lb": create, "stop": stop, "start": start, "create_8_agents": create8});
}

/// (c) stop → start → ready of a running 1-server cluster with its load
/// balancer: library vs the raw Docker stops and starts, and vs the delete +
/// create KECS runs today to get a stopped cluster back.
async fn stop_start(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let m = cx.manager();
    let name = cx.name("ss");
    let again = cx.name("sw");
    m.create(&name, &with_lb(true), &never)
        .await
        .expect("create");
    m.create(&again, &with_lb(true), &never)
        .await
        .expect("create");
    let floor_cluster = |tag: &'static str| async move {
        floor::create(
            &cx.docker,
            &cx.args.image,
            Some(&cx.args.lb_image),
            &cx.name(tag),
            0,
            Order::Parallel,
        )
        .await
        .1
    };
    let (fp, fs) = (floor_cluster("sp").await, floor_cluster("sq").await);
    let mut s = Samples::new();
    let pairs: &[(&str, &[&str])] =
        &[("library_ms", &["floor_parallel_ms", "floor_sequential_ms"])];
    adaptive(cx.args.runs, cx.args.max_runs, &mut s, pairs, || async {
        let t = Instant::now();
        m.stop(&name, &never).await.expect("stop");
        let lib_stop = ms(t.elapsed());
        m.start(&name, Duration::from_secs(120), &never)
            .await
            .expect("start");
        let lib = ms(t.elapsed());
        let (par_stop, par) = floor::stop_start(&cx.docker, &fp, Order::Parallel).await;
        let (seq_stop, seq) = floor::stop_start(&cx.docker, &fs, Order::Sequential).await;
        // KECS today: delete the cluster and create it again
        let t = Instant::now();
        m.delete(&again, &never).await.expect("delete");
        m.create(&again, &with_lb(true), &never)
            .await
            .expect("create");
        let workaround = ms(t.elapsed());
        vec![
            ("library_ms", lib),
            ("library_stop_ms", lib_stop),
            ("floor_parallel_ms", par),
            ("floor_parallel_stop_ms", par_stop),
            ("floor_sequential_ms", seq),
            ("floor_sequential_stop_ms", seq_stop),
            ("delete_create_ms", workaround),
        ]
    })
    .await;
    m.delete(&name, &never).await.expect("delete");
    m.delete(&again, &never).await.expect("delete");
    floor::delete(&cx.docker, fp).await;
    floor::delete(&cx.docker, fs).await;
    // Docker 20.10 has no valid parallel stop (its network controller can
    // deadlock): there the floor's "parallel" order stops one at a time too
    let serial = cx.docker.one_leave_at_a_time();
    let (stops_lb, stops) = if serial {
        (
            "stops one at a time (this engine), LB pipelined",
            "stops one at a time (this engine)",
        )
    } else {
        ("parallel stops, LB pipelined", "parallel stops")
    };
    rows.push(floor_row(
        "5b. stop→start→ready, 1 server + LB, library vs floor",
        &s,
        "library_ms",
        &[
            (stops_lb, "floor_parallel_ms"),
            ("one after another", "floor_sequential_ms"),
        ],
        1.15,
    ));
    rows.push(floor_row(
        "5b. of which stop, library vs floor",
        &s,
        "library_stop_ms",
        &[
            (stops, "floor_parallel_stop_ms"),
            ("one after another", "floor_sequential_stop_ms"),
        ],
        1.15,
    ));
    rows.push(Row::ratio(
        "5b. stop→start→ready, library vs delete + create (KECS's workaround today)",
        "ms",
        &s["library_ms"],
        "delete + create, library",
        &s["delete_create_ms"],
        Against::Peer,
        1.0,
    ));
    raw["stop_start"] = json!(s);
    timelines(cx, raw).await;
}

/// Cancel latency (issue #14): a create with the load balancer is held by the
/// fault proxy (tests/fault_proxy) in front of the real engine, either inside a
/// request (server-0's container create: the engine has not answered) or in a
/// wait (server-0's log follow), and cancelled the moment the proxy holds it.
/// Timed: cancel → the create returns Cancelled; then, the request let go →
/// `shutdown` returns (the rollback done). A new manager per run: shutdown ends it.
async fn cancel(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let proxy = fault_proxy::FaultProxy::start("bench").await;
    let mut s = Samples::new();
    for _ in 0..cx.args.runs {
        for held_request in [true, false] {
            let m = cx.manager_at(Some(proxy.docker_host()));
            let name = cx.name("cx");
            let full = m.cluster_name(&name).expect("name");
            let server0 = format!("k3d-{full}-server-0");
            let mut stall = if held_request {
                proxy.stall(
                    "POST",
                    &["/containers/create", &format!("name={server0}")],
                    1,
                )
            } else {
                proxy.stall(
                    "GET",
                    &[&format!("/containers/{server0}/logs"), "follow=true"],
                    1,
                )
            };
            let token = CancellationToken::new();
            let opts = with_lb(true);
            let create = m.create(&name, &opts, &token);
            tokio::pin!(create);
            tokio::select! {
                _ = stall.hit(Duration::from_secs(60)) => {}
                r = &mut create => panic!("cancel: the create ended before the held call: {r:?}"),
            }
            let t = Instant::now();
            token.cancel();
            let e = create.await.expect_err("a cancelled create");
            let cancel_ms = ms(t.elapsed());
            assert_eq!(e.code(), kecs_cluster::ErrorCode::Cancelled, "{e}");
            let t = Instant::now();
            stall.release();
            m.shutdown().await;
            let rollback_ms = ms(t.elapsed());
            let never = CancellationToken::new();
            assert!(
                !cx.manager().exists(&name, &never).await.expect("exists"),
                "cancel: {full} left behind"
            );
            let (cancel_key, rollback_key) = if held_request {
                ("held_request_cancel_ms", "held_request_rollback_ms")
            } else {
                ("held_wait_cancel_ms", "held_wait_rollback_ms")
            };
            s.entry(cancel_key).or_default().push(cancel_ms);
            s.entry(rollback_key).or_default().push(rollback_ms);
        }
    }
    rows.push(Row::absolute(
        "9. cancel → Cancelled, create with LB held inside a request the engine has not answered (server-0's create)",
        "ms",
        stat(&s["held_request_cancel_ms"]),
        "≤ 2000 (#14)",
        Some(2000.0),
    ));
    rows.push(Row::absolute(
        "9. cancel → Cancelled, create with LB held in a wait (server-0's log follow)",
        "ms",
        stat(&s["held_wait_cancel_ms"]),
        "≤ 2000 (#14)",
        Some(2000.0),
    ));
    rows.push(Row::absolute(
        "9. held request let go → rollback done (`shutdown` returns), nothing left",
        "ms",
        stat(&s["held_request_rollback_ms"]),
        "reference",
        None,
    ));
    raw["cancel"] = json!(s);
}

/// A free TCP port on 127.0.0.1 (for a registry's host port).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// create→ready with a registry made by the create vs without one, interleaved;
/// and KECS's sequence today (a cluster, then the registry wired into its
/// running nodes, which restarts them; KECS also sleeps 5 s on top).
async fn registry(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    let never = CancellationToken::new();
    let m = cx.manager();
    let mut s = Samples::new();
    let pairs: &[(&str, &[&str])] = &[("with_registry_ms", &["without_ms"])];
    adaptive(cx.args.runs, cx.args.max_runs, &mut s, pairs, || async {
        let plain = CreateOptions::default();
        let (without, _) = rust_cycle(cx, &m, &plain).await;
        let reg = cx.name("reg");
        let with = CreateOptions {
            registry: Some(RegistryOptions {
                create: Some(RegistryCreate {
                    name: reg,
                    host_port: free_port(),
                    ..Default::default()
                }),
                use_existing: vec![],
            }),
            ..Default::default()
        };
        // the registry a create made goes with the cluster's delete
        let (with_registry, _) = rust_cycle(cx, &m, &with).await;
        let name = cx.name("rk");
        let reg = cx.name("regk");
        let t = Instant::now();
        m.create(&name, &plain, &never).await.expect("create");
        m.registry_create(
            &RegistryCreate {
                name: reg.clone(),
                host_port: free_port(),
                ..Default::default()
            },
            &never,
        )
        .await
        .expect("registry create");
        m.registry_connect(&reg, &name, Duration::from_secs(120), &never)
            .await
            .expect("registry connect");
        let connect_after = ms(t.elapsed());
        m.delete(&name, &never).await.expect("delete");
        m.registry_delete(&reg, &never)
            .await
            .expect("registry delete");
        vec![
            ("without_ms", without),
            ("with_registry_ms", with_registry),
            ("connect_after_ms", connect_after),
        ]
    })
    .await;
    rows.push(Row::ratio(
        "8. create→ready with a registry (made by the create) vs without",
        "ms",
        &s["with_registry_ms"],
        "the same create without a registry",
        &s["without_ms"],
        Against::Peer,
        1.10,
    ));
    rows.push(Row::ratio(
        "8. create→ready with a registry vs KECS's sequence (create, then wire the registry into the running nodes: a node restart; KECS sleeps 5 s more, not counted)",
        "ms",
        &s["with_registry_ms"],
        "create + registry create + connect (restart)",
        &s["connect_after_ms"],
        Against::Peer,
        1.0,
    ));
    raw["registry"] = json!(s);
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
        p10: s.p10 / 1000.0,
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
        "6. wall clock: ClusterExists (missing cluster), Rust API: one Docker round trip",
        "µs",
        us(re),
        "reference",
        None,
    ));
    rows.push(Row::absolute(
        "6. wall clock: ClusterExists through Go → C ABI → Rust",
        "µs",
        us(ge),
        "reference",
        None,
    ));
    let frac = (ge.median - re.median) / re.median * 100.0;
    rows.push(Row::absolute(
        "6. wall clock: FFI overhead on ClusterExists (Go − Rust medians) as % of the round trip",
        "%",
        stats::one(frac),
        "reference (noisy)",
        None,
    ));
    rows.push(Row::absolute(
        "6. wall clock: boundary alone: GetKubeconfigPath via Go (no Docker call)",
        "µs",
        us(gp),
        "reference",
        None,
    ));
    rows.push(Row::absolute(
        "6. wall clock: boundary alone: kubeconfig_path in Rust",
        "µs",
        us(rp),
        "reference",
        None,
    ));
    raw["ffi"] = json!({"rust_exists_ns": rust_exists, "go_exists_ns": go_exists, "rust_path_ns": rust_path, "go_path_ns": go_path});
    ffi_instructions(cx, rows, raw);
}

/// Instructions (callgrind's `Collected` Ir: every thread of the process,
/// user space) executed by `program args`, or None when valgrind is missing.
fn callgrind_ir(cx: &Ctx, program: &std::path::Path, args: &[String]) -> Option<f64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(program)
        .args(args)
        .env("KECS_LB_IMAGE", &cx.args.lb_image)
        // callgrind aborts on the signals of Go's asynchronous preemption
        .env("GODEBUG", "asyncpreemptoff=1")
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "callgrind {}: {err}",
        program.display()
    );
    err.lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
}

/// Instructions per call of `what` through `side` ("rust": this binary's
/// --probe; "go": the Go driver's probe mode, Go → C ABI → Rust): the
/// difference between a long and a short run over the difference in calls, so
/// process start, runtime start and the warm-up cancel out. Median of 3 pairs.
fn per_call_instructions(cx: &Ctx, side: &str, what: &str) -> Option<f64> {
    const SHORT: usize = 50;
    // a pure call is ~100× cheaper than a round trip: more of them
    let long: usize = if what == "path" { 2050 } else { 250 };
    let dir = cx.dir.display().to_string();
    let command = |n: usize| -> (PathBuf, Vec<String>) {
        match side {
            "rust" => (
                std::env::current_exe().expect("own path"),
                [
                    "--probe",
                    what,
                    "--calls",
                    &n.to_string(),
                    "--image",
                    &cx.args.image,
                    "--lb-image",
                    &cx.args.lb_image,
                ]
                .map(String::from)
                .to_vec(),
            ),
            _ => (
                cx.args.go_driver.clone().expect("--go-driver"),
                [
                    "-mode",
                    "probe",
                    "-what",
                    what,
                    "-n",
                    &n.to_string(),
                    "-image",
                    &cx.args.image,
                    "-kubeconfig-dir",
                    &dir,
                ]
                .map(String::from)
                .to_vec(),
            ),
        }
    };
    let mut per_call = vec![];
    for _ in 0..3 {
        let (p, a) = command(SHORT);
        let short = callgrind_ir(cx, &p, &a)?;
        let (p, a) = command(long);
        let more = callgrind_ir(cx, &p, &a)?;
        per_call.push((more - short) / (long - SHORT) as f64);
    }
    eprintln!("kecs-bench:   {side} {what}: {per_call:?} instructions per call");
    Some(stats::median(&per_call))
}

/// The FFI boundary by instruction count (no wall-clock noise): Go → C → Rust
/// vs Rust alone, for `exists` on a missing cluster (one Docker round trip) and
/// for a pure call (kubeconfig_path, no I/O).
fn ffi_instructions(cx: &Ctx, rows: &mut Vec<Row>, raw: &mut Value) {
    if cx.args.go_driver.is_none() {
        return;
    }
    let Some(rust_exists) = per_call_instructions(cx, "rust", "exists") else {
        eprintln!("kecs-bench: valgrind not found: no instruction counts");
        return;
    };
    let go_exists = per_call_instructions(cx, "go", "exists").expect("callgrind");
    let rust_path = per_call_instructions(cx, "rust", "path").expect("callgrind");
    let go_path = per_call_instructions(cx, "go", "path").expect("callgrind");
    let instr = |figure: &str, x: f64| {
        Row::absolute(figure, "instructions", stats::one(x), "reference", None)
    };
    rows.push(instr(
        "6. instructions per ClusterExists (missing cluster), Rust API",
        rust_exists,
    ));
    rows.push(instr(
        "6. instructions per ClusterExists, Go → C ABI → Rust",
        go_exists,
    ));
    rows.push(Row::absolute(
        "6. FFI overhead on ClusterExists by instructions: (Go − Rust) / Rust",
        "%",
        stats::one((go_exists - rust_exists) / rust_exists * 100.0),
        "≤ 2 %",
        Some(2.0),
    ));
    rows.push(instr(
        "6. instructions per pure call: kubeconfig_path in Rust",
        rust_path,
    ));
    rows.push(instr(
        "6. instructions per pure call: GetKubeconfigPath via Go → C ABI → Rust",
        go_path,
    ));
    rows.push(Row::absolute(
        "6. the boundary alone (pure call, Go − Rust) as % of a ClusterExists round trip's instructions",
        "%",
        stats::one((go_path - rust_path) / rust_exists * 100.0),
        "≤ 2 %",
        Some(2.0),
    ));
    raw["ffi_instructions"] = json!({
        "rust_exists": rust_exists, "go_exists": go_exists,
        "rust_path": rust_path, "go_path": go_path,
    });
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
    let one = stats::one;
    rows.push(Row::absolute(
        "7. RSS of a Go process: idle Manager − process before it",
        "MB",
        one(idle_mb),
        "≤ 15 MB",
        Some(15.0),
    ));
    rows.push(Row::absolute(
        &format!(
            "7. RSS growth over {} create/delete cycles (after one warm-up)",
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

/// `--probe`: a fixed number of calls and nothing else, for callgrind.
async fn probe(cx: &Ctx, what: &str) {
    let m = cx.manager();
    let never = CancellationToken::new();
    // warm up as the timed loops do: connect, negotiate, first allocations
    for _ in 0..20 {
        m.exists("bench-missing", &never).await.expect("exists");
    }
    for _ in 0..cx.args.calls {
        match what {
            "exists" => {
                std::hint::black_box(m.exists("bench-missing", &never).await.expect("exists"));
            }
            "path" => {
                std::hint::black_box(m.kubeconfig_path("bench-missing").expect("path"));
            }
            other => panic!("--probe {other}: exists or path"),
        }
    }
}

fn render_charts(doc: &Value, dir: &std::path::Path) {
    match charts::render(doc, dir) {
        Ok(files) => {
            for f in files {
                eprintln!("kecs-bench: wrote {}", f.display());
            }
        }
        Err(e) => {
            eprintln!("kecs-bench: drawing the charts failed: {e}");
            std::process::exit(1);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    if let Some(json) = &args.render_only {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(json).expect("reading the --render-only JSON"),
        )
        .expect("--render-only: not JSON");
        let dir = args
            .charts
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts"));
        render_charts(&doc, &dir);
        return;
    }
    let docker = kecs_cluster::docker::connect(std::env::var("DOCKER_HOST").ok().as_deref())
        .await
        .expect("Docker");
    let dir = std::env::temp_dir().join(format!("kecs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cx = Ctx {
        args,
        docker,
        dir,
        seq: Default::default(),
    };
    if let Some(what) = cx.args.probe.clone() {
        probe(&cx, &what).await;
        let _ = std::fs::remove_dir_all(&cx.dir);
        return;
    }
    let version = cx
        .docker
        .version()
        .await
        .map(|v| v.version.unwrap_or_default())
        .unwrap_or_default();
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
    if want("ports") {
        eprintln!("kecs-bench: port add");
        ports(&cx, &mut rows, &mut raw).await;
    }
    if want("stopstart") {
        eprintln!("kecs-bench: stop→start");
        stop_start(&cx, &mut rows, &mut raw).await;
    }
    if want("registry") {
        eprintln!("kecs-bench: registry");
        registry(&cx, &mut rows, &mut raw).await;
    }
    if want("cancel") {
        eprintln!("kecs-bench: cancel latency");
        cancel(&cx, &mut rows, &mut raw).await;
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
    println!("Machine: {} cores, {} GiB, Docker {}, {}; node image {} (simulator), load balancer image {}; at least {} runs per figure (cap {}), {} per scale/concurrency point (cap {}).\n",
        m["cores"], m["memory_gib"], m["docker"].as_str().unwrap_or(""), m["date"].as_str().unwrap_or(""), cx.args.image, cx.args.lb_image, cx.args.runs, cx.args.max_runs, cx.args.scale_runs, cx.args.scale_max_runs);
    println!("{}", markdown(&rows));
    let doc = json!({"machine": m, "runs": cx.args.runs, "max_runs": cx.args.max_runs, "scale_runs": cx.args.scale_runs, "scale_max_runs": cx.args.scale_max_runs, "rows": rows, "samples": raw});
    if let Some(path) = &cx.args.json {
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("writing --json");
    }
    if let Some(dir) = &cx.args.charts {
        render_charts(&doc, dir);
    }
}
