//! Faults only a real Docker Engine shows, and rollbacks no path may skip: a
//! fault-injecting proxy (tests/fault_proxy) in front of the real engine stalls
//! or cuts single requests of a create; cancels must answer within 2 s while
//! the request hangs, and the rollback must finish once the engine answers. A
//! dropped create future, a runtime going away, a panic inside the build and
//! `kecs_manager_free` during a create must all remove what the create made.
//! k3d provider, one server and two agents behind the default load balancer;
//! every check of what is left asks the real engine directly, not the proxy.

mod fault_proxy;
mod support;

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use fault_proxy::FaultProxy;
use kecs_cluster::ffi::{self, kecs_status_t};
use kecs_cluster::{
    CancellationToken, ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode,
};
use support::*;

/// What a cancel on a hung engine may take, as the issue asks (the manager
/// waits up to its 1 s grace for the rollback, then answers).
const CANCEL_BOUND: Duration = Duration::from_secs(2);
/// How long a rollback may take once the engine answers again.
const ROLLBACK_LIMIT: Duration = Duration::from_secs(60);
/// How long a test waits for a create to reach the request it breaks.
const REACH_LIMIT: Duration = Duration::from_secs(60);

struct Setup {
    _gate: Gate,
    dir: TempDir,
    proxy: FaultProxy,
    /// The manager's config: the engine through the proxy.
    config: ClusterManagerConfig,
    /// The same, straight to the engine.
    direct: ClusterManagerConfig,
    manager: ClusterManager,
    name: String,
    full: String,
    _guard: ClusterGuard,
}

async fn setup(tag: &str, gate: Gate) -> Setup {
    ensure_sim_image().await;
    let proxy = FaultProxy::start(tag).await;
    let dir = TempDir::new(tag);
    let direct = config(dir.path(), "k3d");
    let mut config = direct.clone();
    config.docker_host = Some(proxy.docker_host());
    let manager = ClusterManager::new(&config).expect("manager");
    let name = unique_name(tag);
    let full = manager.cluster_name(&name).unwrap();
    // the cleanup of a failed test goes straight to the engine
    let guard = ClusterGuard {
        config: direct.clone(),
        name: full.clone(),
    };
    Setup {
        _gate: gate,
        dir,
        proxy,
        config,
        direct,
        manager,
        name,
        full,
        _guard: guard,
    }
}

/// One server, two agents, the default load balancer.
fn options() -> CreateOptions {
    CreateOptions {
        agents: 2,
        ..Default::default()
    }
}

async fn assert_nothing_left(s: &Setup) {
    assert_eq!(
        leftovers(&s.full).await,
        Vec::<String>::new(),
        "Docker objects left behind"
    );
    assert_eq!(
        files_in(s.dir.path()),
        Vec::<String>::new(),
        "kubeconfig files left behind"
    );
}

// ---- a) a request the engine does not answer, then a cancel ------------------

/// Stalls the first request `method` whose path contains `parts` (the cluster's
/// full name substituted for `{c}`), cancels the create the moment the proxy
/// holds it, and checks the create answers Cancelled within CANCEL_BOUND; then
/// lets the request through and checks the rollback leaves nothing.
/// `in_request`: the create is held inside the request (it cannot see the
/// cancel until the engine answers), not in a wait raced against the cancel.
async fn stall_then_cancel(tag: &str, method: &str, parts: &[&str], in_request: bool) {
    let s = setup(tag, exclusive()).await;
    let parts: Vec<String> = parts.iter().map(|p| p.replace("{c}", &s.full)).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut stall = s.proxy.stall(method, &parts, 1);
    let token = CancellationToken::new();
    let opts = options();
    let create = s.manager.create(&s.name, &opts, &token);
    tokio::pin!(create);
    let line = tokio::select! {
        line = stall.hit(REACH_LIMIT) => line,
        r = &mut create => panic!("the create ended before {method} {parts:?}: {r:?}"),
    };
    let cancelled_at = Instant::now();
    token.cancel();
    let result = create.await;
    let latency = cancelled_at.elapsed();
    let e = result.unwrap_err();
    eprintln!("{tag}: held {line:?}; create answered {latency:?} after the cancel: {e}");
    assert_eq!(e.code(), ErrorCode::Cancelled, "{e}");
    assert!(e.to_string().contains(&s.full), "{e}");
    assert!(
        latency < CANCEL_BOUND,
        "returned {latency:?} after the cancel: {e}"
    );
    assert_eq!(
        e.to_string().contains("had not finished"),
        in_request,
        "the rollback goes on in the background exactly when a request is held: {e}"
    );
    if in_request {
        // the rollback waits for the held request: the manager's shutdown
        // waits for it too, until the engine answers again
        let mut shutdown = Box::pin(s.manager.shutdown());
        assert!(
            tokio::time::timeout(Duration::ZERO, &mut shutdown)
                .await
                .is_err(),
            "shutdown returned while a rollback waits for the held request"
        );
        stall.release();
        tokio::time::timeout(ROLLBACK_LIMIT, shutdown)
            .await
            .expect("the rollback finishes once the engine answers");
        // shutdown returned after the rollback: nothing is left right now
        assert_nothing_left(&s).await;
    } else {
        // a wait (not a request) was held: the create rolled back before it
        // answered
        assert_nothing_left(&s).await;
        stall.release();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_network_create_then_cancel() {
    stall_then_cancel("snet", "POST", &["/networks/create"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_node_create_then_cancel() {
    stall_then_cancel(
        "snode",
        "POST",
        &["/containers/create", "name=k3d-{c}-agent-1"],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_archive_upload_then_cancel() {
    // values.yaml into the load balancer, before its first start
    stall_then_cancel(
        "sarch",
        "PUT",
        &["/containers/k3d-{c}-serverlb/archive"],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_node_start_then_cancel() {
    stall_then_cancel(
        "sstart",
        "POST",
        &["/containers/k3d-{c}-server-0/start"],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_log_follow_then_cancel() {
    stall_then_cancel(
        "slogs",
        "GET",
        &["/containers/k3d-{c}-agent-0/logs", "follow=true"],
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_restart_policy_update_then_cancel() {
    stall_then_cancel(
        "supd",
        "POST",
        &["/containers/k3d-{c}-server-0/update"],
        true,
    )
    .await;
}

/// A request the engine does not answer past the create's own deadline: the
/// create answers Timeout about CANCEL_GRACE after it, and rolls back once the
/// engine answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_past_the_deadline_times_out() {
    let s = setup("sdead", exclusive()).await;
    let server0 = format!("name=k3d-{}-server-0", s.full);
    let mut stall = s.proxy.stall("POST", &["/containers/create", &server0], 1);
    let limit = Duration::from_secs(3);
    let opts = CreateOptions {
        agents: 2,
        timeout_ms: limit.as_millis() as u64,
        ..Default::default()
    };
    let token = never();
    let started = Instant::now();
    let create = s.manager.create(&s.name, &opts, &token);
    tokio::pin!(create);
    tokio::select! {
        _ = stall.hit(REACH_LIMIT) => {}
        r = &mut create => panic!("the create ended before creating server-0: {r:?}"),
    }
    let e = create.await.unwrap_err();
    let took = started.elapsed();
    eprintln!("sdead: answered {took:?} after the start: {e}");
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    assert!(e.to_string().contains("timed out after 3.0s"), "{e}");
    assert!(took < limit + CANCEL_BOUND, "answered after {took:?}: {e}");
    stall.release();
    wait_until_gone(&s.full, ROLLBACK_LIMIT).await;
    assert_nothing_left(&s).await;
}

// ---- b) a connection cut mid-create -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_create_is_docker_unavailable() {
    let s = setup("reset", shared()).await;
    let node = format!("k3d-{}-agent-0", s.full);
    let mut reset = s
        .proxy
        .reset("POST", &[&format!("/containers/{node}/start")], 1);
    let e = s
        .manager
        .create(&s.name, &options(), &never())
        .await
        .unwrap_err();
    reset.hit(Duration::from_secs(1)).await;
    assert_eq!(e.code(), ErrorCode::DockerUnavailable, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("starting node {node}")),
        "says what it was doing: {msg}"
    );
    // the rollback ran before the error returned (the engine answers it)
    assert_nothing_left(&s).await;
}

// ---- c) a create nobody waits for any more ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_create_future_rolls_back() {
    let mut s = setup("drop", shared()).await;
    let (reporter, mut progress) = progress_channel();
    s.manager = ClusterManager::new(&s.config)
        .unwrap()
        .with_reporter(reporter);
    let opts = options();
    let token = never();
    // boxed, so that dropping it drops the future itself
    let mut create = Box::pin(s.manager.create(&s.name, &opts, &token));
    let server0 = format!("started node k3d-{}-server-0", s.full);
    tokio::select! {
        _ = wait_for_progress(&mut progress, &server0, REACH_LIMIT) => {}
        r = &mut create => panic!("the create ended before {server0:?}: {r:?}"),
    }
    drop(create);
    wait_until_gone(&s.full, ROLLBACK_LIMIT).await;
    s.manager.shutdown().await;
    assert_nothing_left(&s).await;
}

/// The runtime a create runs on goes away half-way (its tasks are dropped):
/// the rollback runs on a thread of its own before the runtime's drop returns.
#[test]
fn runtime_dropped_mid_create_rolls_back() {
    let checks = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = checks.block_on(setup("rtdrop", shared()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (reporter, mut progress) = progress_channel();
    // straight to the engine: the proxy runs on `checks`, which is not driven
    // while this thread drops the runtime
    let (config, name) = (s.direct.clone(), s.name.clone());
    runtime.spawn(async move {
        let manager = ClusterManager::new(&config)
            .unwrap()
            .with_reporter(reporter);
        let r = manager.create(&name, &options(), &never()).await;
        panic!("the create was to be cut off, but it ended: {r:?}");
    });
    let server0 = format!("started node k3d-{}-server-0", s.full);
    checks.block_on(wait_for_progress(&mut progress, &server0, REACH_LIMIT));
    drop(runtime);
    checks.block_on(async {
        assert_nothing_left(&s).await;
    });
}

// ---- d) a panic inside the build ----------------------------------------------------

async fn panic_at(tag: &str, step: impl Fn(&str) -> String) {
    let s = setup(tag, shared()).await;
    kecs_cluster::manager::testing::panic_when_step_reported(&step(&s.full));
    let e = s
        .manager
        .create(&s.name, &options(), &never())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Internal, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("panic"), "{msg}");
    assert!(msg.contains("has been removed"), "{msg}");
    assert_nothing_left(&s).await;
    // the manager still works: the name lock was given back
    assert!(!s.manager.exists(&s.name, &never()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_inside_the_build_rolls_back() {
    // containers exist and server-0 runs
    panic_at("panic", |full| format!("started node k3d-{full}-server-0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_after_the_kubeconfig_is_written_rolls_back() {
    // the whole cluster and its kubeconfig file exist
    panic_at("panickc", |full| format!("/{full}.config")).await;
}

// ---- e) the C ABI: kecs_manager_free while a create runs ------------------------------

struct SendPtr(*mut ffi::KecsManager);
// SAFETY: the manager is made for use from any thread (the C ABI's contract).
unsafe impl Send for SendPtr {}

#[test]
fn manager_free_during_create_rolls_back() {
    let checks = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = checks.block_on(setup("cfree", shared()));
    // straight to the engine: the proxy runs on `checks`, which is not driven
    // while this thread is inside kecs_manager_free
    let config = CString::new(serde_json::to_string(&s.direct).unwrap()).unwrap();
    let mut m: *mut ffi::KecsManager = std::ptr::null_mut();
    let mut err: *mut ffi::KecsError = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    let st = unsafe { ffi::kecs_manager_new(config.as_ptr(), &mut m, &mut err) };
    assert_eq!(st, kecs_status_t::KECS_STATUS_OK);
    let name = CString::new(s.name.clone()).unwrap();
    // the nodes take 30 s to be ready: the create is still running when freed
    let opts = CString::new(r#"{"agents":2,"env":{"SIM_READY_DELAY_MS":"30000"}}"#).unwrap();
    let shared_m = SendPtr(m);
    let creating = std::thread::spawn(move || {
        let m = shared_m;
        let mut err: *mut ffi::KecsError = std::ptr::null_mut();
        // SAFETY: a live manager (freed only after this call returns, by the
        // contract under test), valid strings, no cancel token.
        let st = unsafe {
            ffi::kecs_cluster_create(
                m.0,
                name.as_ptr(),
                opts.as_ptr(),
                std::ptr::null(),
                &mut err,
            )
        };
        let msg = if err.is_null() {
            String::new()
        } else {
            // SAFETY: an error from the library, freed right after.
            let msg = unsafe { CStr::from_ptr(ffi::kecs_error_message(err)) }
                .to_string_lossy()
                .into_owned();
            unsafe { ffi::kecs_error_free(err) };
            msg
        };
        (st, msg)
    });
    checks.block_on(wait_for_first_node(&s.full, REACH_LIMIT));
    let freeing = Instant::now();
    // SAFETY: from kecs_manager_new; a call is in flight on another thread,
    // which kecs_manager_free allows.
    unsafe { ffi::kecs_manager_free(m) };
    eprintln!("kecs_manager_free returned after {:?}", freeing.elapsed());
    let (st, msg) = creating.join().unwrap();
    assert_eq!(st, kecs_status_t::KECS_STATUS_CANCELLED, "{msg}");
    // free returned only after the rollback
    checks.block_on(assert_nothing_left(&s));
}
