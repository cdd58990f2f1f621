//! The C ABI called directly from Rust: NULL and bad input for every function,
//! the panic boundary, cancellation before/during/after a call, concurrent use
//! of one manager, and the header's freshness and version macros.

mod support;

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use kecs_cluster::ffi::*;
use kecs_status_t::*;
use support::*;

const GENERATED_HEADER: &str = include_str!(concat!(env!("OUT_DIR"), "/kecs_cluster.h"));
const COMMITTED_HEADER: &str = include_str!("../include/kecs_cluster.h");

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Takes an error object: (status, message), freeing it.
fn take_err(e: *mut KecsError) -> (kecs_status_t, String) {
    assert!(!e.is_null(), "expected an error object");
    unsafe {
        let code = kecs_error_code(e);
        let msg = CStr::from_ptr(kecs_error_message(e))
            .to_string_lossy()
            .into_owned();
        kecs_error_free(e);
        (code, msg)
    }
}

struct Manager(*mut KecsManager);
unsafe impl Send for Manager {}
unsafe impl Sync for Manager {}
impl Drop for Manager {
    fn drop(&mut self) {
        unsafe { kecs_manager_free(self.0) }
    }
}

fn manager(json: &str) -> Manager {
    let mut m = null_mut();
    let mut err = null_mut();
    let st = unsafe { kecs_manager_new(cs(json).as_ptr(), &mut m, &mut err) };
    assert_eq!(
        st,
        KECS_STATUS_OK,
        "{:?}",
        (!err.is_null()).then(|| take_err(err))
    );
    assert!(err.is_null());
    Manager(m)
}

fn sim_manager(dir: &TempDir) -> Manager {
    manager(&format!(
        r#"{{"image":"{SIM_IMAGE}","privileged":{},"kubeconfigPath":"{}"}}"#,
        privileged(),
        dir.path().display()
    ))
}

#[test]
fn header_is_current() {
    assert!(
        GENERATED_HEADER == COMMITTED_HEADER,
        "include/kecs_cluster.h is stale: the sources generate a different header. \
         Regenerate it with `KECS_UPDATE_HEADER=1 cargo build --release` and commit it."
    );
}

#[test]
fn header_versions_match_cargo() {
    let define = |name: &str| -> String {
        COMMITTED_HEADER
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the header"))
            .trim()
            .to_string()
    };
    assert_eq!(
        define("KECS_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        define("KECS_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        define("KECS_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert_eq!(
        define("KECS_VERSION"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(define("KECS_ABI_VERSION"), kecs_abi_version().to_string());
    let v = unsafe { CStr::from_ptr(kecs_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// The status numbers are part of the ABI: each keeps its number for good, and
/// a new one (NODE_FAILED, 12, in ABI 3) bumps KECS_ABI_VERSION.
#[test]
fn header_status_numbers_are_stable() {
    let declared: Vec<(String, u32)> = COMMITTED_HEADER
        .lines()
        .filter_map(|l| {
            let (name, n) = l.trim().strip_prefix("KECS_STATUS_")?.split_once(" = ")?;
            Some((name.to_string(), n.trim_end_matches(',').parse().ok()?))
        })
        .collect();
    let expected = [
        ("OK", 0),
        ("INVALID_ARGUMENT", 1),
        ("NOT_FOUND", 2),
        ("ALREADY_EXISTS", 3),
        ("DOCKER_UNAVAILABLE", 4),
        ("IMAGE_UNAVAILABLE", 5),
        ("TIMEOUT", 6),
        ("CANCELLED", 7),
        ("KUBERNETES", 8),
        ("IO", 9),
        ("INTERNAL", 10),
        ("PANIC", 11),
        ("NODE_FAILED", 12),
    ];
    let expected: Vec<(String, u32)> = expected.iter().map(|&(n, v)| (n.to_string(), v)).collect();
    assert_eq!(declared, expected);
    assert_eq!(KECS_STATUS_NODE_FAILED as u32, 12);
    // every library error code is the status of the same number
    for code in kecs_cluster::ErrorCode::all() {
        assert_eq!(kecs_status_t::from(code) as u32, code as u32, "{code:?}");
    }
    assert!(
        kecs_abi_version() >= 3,
        "KECS_STATUS_NODE_FAILED came with ABI 3"
    );
}

#[test]
fn null_and_invalid_input_is_refused_for_every_function() {
    let dir = TempDir::new("ffinull");
    let m = manager(&format!(
        r#"{{"kubeconfigPath":"{}","dockerHost":"tcp://127.0.0.1:1"}}"#,
        dir.path().display()
    ));
    let name = cs("web");
    let bad_utf8: &[u8] = b"w\xffb\0";
    let bad = bad_utf8.as_ptr() as *const c_char;
    let mut err: *mut KecsError = null_mut();
    let mut s: *mut c_char = null_mut();
    let mut b = false;
    unsafe {
        // kecs_manager_new
        assert_eq!(
            kecs_manager_new(null(), null_mut(), &mut err),
            KECS_STATUS_INVALID_ARGUMENT
        );
        assert!(take_err(err).1.contains("out"));
        let mut out = null_mut();
        for (json, needle) in [
            ("{", "config"),
            (r#"{"bogus":1}"#, "bogus"),
            (r#"{"provider":"x"}"#, "provider"),
        ] {
            err = null_mut();
            assert_eq!(
                kecs_manager_new(cs(json).as_ptr(), &mut out, &mut err),
                KECS_STATUS_INVALID_ARGUMENT
            );
            assert!(out.is_null(), "out written on failure");
            let (_, msg) = take_err(err);
            assert!(msg.contains(needle), "{json}: {msg}");
        }
        err = null_mut();
        assert_eq!(
            kecs_manager_new(bad, &mut out, &mut err),
            KECS_STATUS_INVALID_ARGUMENT
        );
        assert!(take_err(err).1.contains("UTF-8"));

        // each cluster function with a NULL manager, NULL name, bad UTF-8 and NULL out
        type Call<'a> = Box<
            dyn Fn(*const KecsManager, *const c_char, *mut *mut KecsError) -> kecs_status_t + 'a,
        >;
        let sp: *mut *mut c_char = &mut s;
        let bp: *mut bool = &mut b;
        let calls: Vec<(&str, Call, Option<Call>)> = vec![
            (
                "create",
                Box::new(|m, n, e| kecs_cluster_create(m, n, null(), null(), e)),
                None,
            ),
            (
                "delete",
                Box::new(|m, n, e| kecs_cluster_delete(m, n, null(), e)),
                None,
            ),
            (
                "exists",
                Box::new(move |m, n, e| kecs_cluster_exists(m, n, null(), bp, e)),
                Some(Box::new(|m, n, e| {
                    kecs_cluster_exists(m, n, null(), null_mut(), e)
                })),
            ),
            (
                "wait_ready",
                Box::new(|m, n, e| kecs_cluster_wait_ready(m, n, 10, null(), e)),
                None,
            ),
            (
                "kubeconfig",
                Box::new(move |m, n, e| kecs_cluster_kubeconfig(m, n, null(), sp, e)),
                Some(Box::new(|m, n, e| {
                    kecs_cluster_kubeconfig(m, n, null(), null_mut(), e)
                })),
            ),
            (
                "kubeconfig_path",
                Box::new(move |m, n, e| kecs_cluster_kubeconfig_path(m, n, sp, e)),
                Some(Box::new(|m, n, e| {
                    kecs_cluster_kubeconfig_path(m, n, null_mut(), e)
                })),
            ),
            (
                "info",
                Box::new(move |m, n, e| kecs_cluster_info(m, n, null(), sp, e)),
                Some(Box::new(|m, n, e| {
                    kecs_cluster_info(m, n, null(), null_mut(), e)
                })),
            ),
        ];
        for (what, call, null_out) in &calls {
            let mut e = null_mut();
            assert_eq!(
                call(null(), name.as_ptr(), &mut e),
                KECS_STATUS_INVALID_ARGUMENT,
                "{what}"
            );
            assert!(take_err(e).1.contains("manager"), "{what}");
            let mut e = null_mut();
            assert_eq!(
                call(m.0, null(), &mut e),
                KECS_STATUS_INVALID_ARGUMENT,
                "{what}"
            );
            assert!(take_err(e).1.contains("name"), "{what}");
            let mut e = null_mut();
            assert_eq!(
                call(m.0, bad, &mut e),
                KECS_STATUS_INVALID_ARGUMENT,
                "{what}"
            );
            assert!(take_err(e).1.contains("UTF-8"), "{what}");
            // err may be NULL: only the status comes back
            assert_eq!(
                call(m.0, null(), null_mut()),
                KECS_STATUS_INVALID_ARGUMENT,
                "{what}"
            );
            if let Some(nc) = null_out {
                let mut e = null_mut();
                assert_eq!(
                    nc(m.0, name.as_ptr(), &mut e),
                    KECS_STATUS_INVALID_ARGUMENT,
                    "{what}"
                );
                assert!(take_err(e).1.contains("out"), "{what}");
            }
        }
        assert!(s.is_null(), "out-parameter written on failure");
        // create: malformed and unknown option JSON
        for json in ["[", r#"{"servers":"x"}"#, r#"{"nope":true}"#] {
            let mut e = null_mut();
            assert_eq!(
                kecs_cluster_create(m.0, name.as_ptr(), cs(json).as_ptr(), null(), &mut e),
                KECS_STATUS_INVALID_ARGUMENT
            );
            assert!(take_err(e).1.contains("options"), "{json}");
        }
        // list
        let mut e = null_mut();
        assert_eq!(
            kecs_cluster_list(null(), null(), sp, &mut e),
            KECS_STATUS_INVALID_ARGUMENT
        );
        take_err(e);
        let mut e = null_mut();
        assert_eq!(
            kecs_cluster_list(m.0, null(), null_mut(), &mut e),
            KECS_STATUS_INVALID_ARGUMENT
        );
        take_err(e);
        // an unreachable engine is a clean error too
        let mut e = null_mut();
        assert_eq!(
            kecs_cluster_exists(m.0, name.as_ptr(), null(), &mut b, &mut e),
            KECS_STATUS_DOCKER_UNAVAILABLE
        );
        take_err(e);
        // the accessors and frees accept NULL
        assert_eq!(kecs_error_code(null()), KECS_STATUS_INVALID_ARGUMENT);
        assert!(!kecs_error_message(null()).is_null());
        kecs_error_free(null_mut());
        kecs_string_free(null_mut());
        kecs_cancel_free(null_mut());
        kecs_cancel_trigger(null());
        kecs_manager_free(null_mut());
        // a pure call succeeds and its string is ours to free
        let mut path = null_mut();
        assert_eq!(
            kecs_cluster_kubeconfig_path(m.0, name.as_ptr(), &mut path, null_mut()),
            KECS_STATUS_OK
        );
        assert!(CStr::from_ptr(path)
            .to_str()
            .unwrap()
            .ends_with("/kecs-web.config"));
        kecs_string_free(path);
    }
}

#[tokio::test]
async fn a_panic_never_crosses_the_boundary() {
    // Calling a blocking function from inside an async runtime makes tokio panic
    // ("cannot start a runtime from within a runtime"): the boundary must turn it
    // into KECS_STATUS_PANIC.
    let dir = TempDir::new("ffipanic");
    let m = sim_manager(&dir);
    let mut err = null_mut();
    let mut b = false;
    let st = unsafe { kecs_cluster_exists(m.0, cs("web").as_ptr(), null(), &mut b, &mut err) };
    assert_eq!(st, KECS_STATUS_PANIC);
    let (code, msg) = take_err(err);
    assert_eq!(code, KECS_STATUS_PANIC);
    assert!(
        msg.contains("kecs_cluster_exists") && msg.contains("panic"),
        "{msg}"
    );
    // the manager still works from a plain thread afterwards
    let m = std::thread::spawn(move || {
        let st =
            unsafe { kecs_cluster_exists(m.0, cs("web").as_ptr(), null(), &mut b, null_mut()) };
        assert_eq!(st, KECS_STATUS_OK);
        m
    })
    .join()
    .unwrap();
    drop(m);
}

#[test]
fn cancellation_before_during_and_after() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_sim_image());
    let _gate = exclusive();
    let dir = TempDir::new("fficancel");
    let m = sim_manager(&dir);
    let name = format!("kecs-{}", unique_name("fc"));
    let _guard = ClusterGuard {
        config: support::config(dir.path(), "k3d"),
        name: name.clone(),
    };
    let cname = cs(&name);
    unsafe {
        // before: the call fails at once and creates nothing
        let tok = kecs_cancel_new();
        kecs_cancel_trigger(tok);
        let t = Instant::now();
        let mut e = null_mut();
        assert_eq!(
            kecs_cluster_create(m.0, cname.as_ptr(), null(), tok, &mut e),
            KECS_STATUS_CANCELLED
        );
        assert!(t.elapsed() < Duration::from_secs(1));
        take_err(e);
        kecs_cancel_free(tok);
        assert!(rt.block_on(leftovers(&name)).is_empty());

        // during: a slow create is cancelled from another thread and rolled back
        let tok = kecs_cancel_new();
        let tok_addr = tok as usize;
        let first_node = name.clone();
        let trigger = std::thread::spawn(move || {
            // cancel once the first node container exists
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(wait_for_first_node(&first_node, Duration::from_secs(30)));
            let at = Instant::now();
            kecs_cancel_trigger(tok_addr as *const KecsCancel);
            at
        });
        let opts = cs(r#"{"env":{"SIM_READY_DELAY_MS":"30000"}}"#);
        let mut e = null_mut();
        let st = kecs_cluster_create(m.0, cname.as_ptr(), opts.as_ptr(), tok, &mut e);
        let returned = Instant::now();
        let cancelled_at = trigger.join().unwrap();
        assert_eq!(st, KECS_STATUS_CANCELLED, "{:?}", take_err(e));
        let latency = returned.duration_since(cancelled_at);
        assert!(
            latency < Duration::from_secs(1),
            "returned {latency:?} after the trigger"
        );
        kecs_cancel_free(tok);
        assert_eq!(rt.block_on(leftovers(&name)), Vec::<String>::new());
        assert!(files_in(dir.path()).is_empty());

        // after: triggering a token whose call finished changes nothing
        let tok = kecs_cancel_new();
        assert_eq!(
            kecs_cluster_create(m.0, cname.as_ptr(), null(), tok, null_mut()),
            KECS_STATUS_OK
        );
        kecs_cancel_trigger(tok);
        let mut exists = false;
        assert_eq!(
            kecs_cluster_exists(m.0, cname.as_ptr(), null(), &mut exists, null_mut()),
            KECS_STATUS_OK
        );
        assert!(exists);
        kecs_cancel_free(tok);
        assert_eq!(
            kecs_cluster_delete(m.0, cname.as_ptr(), null(), null_mut()),
            KECS_STATUS_OK
        );
    }
}

#[test]
fn eight_threads_share_one_manager() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_sim_image());
    let _gate = shared();
    let dir = TempDir::new("ffi8");
    let m = std::sync::Arc::new(sim_manager(&dir));
    let names: Vec<String> = (0..8)
        .map(|_| format!("kecs-{}", unique_name("f8")))
        .collect();
    let _guards: Vec<ClusterGuard> = names
        .iter()
        .map(|n| ClusterGuard {
            config: support::config(dir.path(), "k3d"),
            name: n.clone(),
        })
        .collect();
    let threads: Vec<_> = names
        .iter()
        .cloned()
        .map(|name| {
            let m = m.clone();
            std::thread::spawn(move || unsafe {
                let n = cs(&name);
                let mut e = null_mut();
                let st = kecs_cluster_create(m.0, n.as_ptr(), null(), null(), &mut e);
                assert_eq!(
                    st,
                    KECS_STATUS_OK,
                    "{name}: {:?}",
                    (!e.is_null()).then(|| take_err(e))
                );
                let mut exists = false;
                assert_eq!(
                    kecs_cluster_exists(m.0, n.as_ptr(), null(), &mut exists, null_mut()),
                    KECS_STATUS_OK
                );
                assert!(exists);
                let mut list = null_mut();
                assert_eq!(
                    kecs_cluster_list(m.0, null(), &mut list, null_mut()),
                    KECS_STATUS_OK
                );
                assert!(CStr::from_ptr(list).to_str().unwrap().contains(&name));
                kecs_string_free(list);
                assert_eq!(
                    kecs_cluster_delete(m.0, n.as_ptr(), null(), null_mut()),
                    KECS_STATUS_OK
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for n in &names {
        assert!(rt.block_on(leftovers(n)).is_empty(), "{n} left objects");
    }
}
