//! The C ABI (`include/kecs_cluster.h`, generated from this module by cbindgen).
//!
//! Every function catches panics, checks its pointers, and reports failures as a
//! `kecs_status_t` plus, when the caller passes `err`, an error object. Rust
//! callers should use [`crate::ClusterManager`] instead.

mod boundary;
pub mod types;

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use boundary::{
    cancel_arg, into_c_string, manager_arg, opt_str_arg, out_arg, run, run_or, str_arg,
};
pub use types::{kecs_status_t, KecsCancel, KecsError, KecsManager, ABI_VERSION};

use crate::config::ClusterManagerConfig;
use crate::error::Error;
use crate::manager::ClusterManager;
use crate::options::{CreateOptions, PortMapping};
use crate::registry::RegistryCreate;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Calls in flight on each manager (by address), so that `kecs_manager_free`
/// can wait until no thread is inside one before it frees what they use.
static CALLS: Mutex<Option<HashMap<usize, ManagerCalls>>> = Mutex::new(None);
/// Signalled whenever a call leaves a manager that is being freed.
static CALL_LEFT: Condvar = Condvar::new();

#[derive(Default)]
struct ManagerCalls {
    in_flight: usize,
    freeing: bool,
}

fn calls() -> std::sync::MutexGuard<'static, Option<HashMap<usize, ManagerCalls>>> {
    CALLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// One call inside a manager: counted from `enter` until it drops, at the end of
/// the exported function's body.
struct InCall<'a> {
    m: &'a KecsManager,
    key: usize,
}

impl std::ops::Deref for InCall<'_> {
    type Target = KecsManager;
    fn deref(&self) -> &KecsManager {
        self.m
    }
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        let mut calls = calls();
        if let Some(c) = calls.as_mut().and_then(|map| map.get_mut(&self.key)) {
            c.in_flight -= 1;
            if c.freeing {
                CALL_LEFT.notify_all();
            }
        }
    }
}

/// Checks `m` and counts the call until the returned guard drops; refuses calls
/// on a manager that `kecs_manager_free` is freeing.
///
/// # Safety
/// `m` is NULL or a pointer from `kecs_manager_new` not yet freed.
unsafe fn enter<'a>(m: *const KecsManager) -> Result<InCall<'a>, Error> {
    // SAFETY: per the contract above.
    let manager = unsafe { manager_arg(m) }?;
    let key = m as usize;
    let mut calls = calls();
    match calls.as_mut().and_then(|map| map.get_mut(&key)) {
        Some(c) if c.freeing => Err(Error::Cancelled(
            "the manager is being freed (kecs_manager_free was called)".into(),
        )),
        Some(c) => {
            c.in_flight += 1;
            Ok(InCall { m: manager, key })
        }
        // not made by kecs_manager_new or already freed: the caller broke the
        // contract; refusing beats using freed memory when we can tell
        None => Err(Error::InvalidArgument(
            "manager was not made by kecs_manager_new or was already freed".into(),
        )),
    }
}

/// The library's version, e.g. "0.1.0". Static storage: never free it.
#[no_mangle]
pub extern "C" fn kecs_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The ABI version the library implements; equals `KECS_ABI_VERSION` of the
/// header it was built with.
#[no_mangle]
pub extern "C" fn kecs_abi_version() -> u32 {
    ABI_VERSION
}

/// Creates a manager from a JSON config (camelCase fields of
/// ClusterManagerConfig; NULL = defaults plus the environment). Makes no Docker
/// call: the engine is contacted on first use. Starts a small tokio runtime
/// (threads named `kecs-worker`).
///
/// On success writes the new manager to `*out` (free it with
/// `kecs_manager_free`). `out` must not be NULL.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out` and `err` are NULL or
/// valid pointers.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_manager_new(
    config_json: *const c_char,
    out: *mut *mut KecsManager,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_manager_new", err, || {
        out_arg(out, "out")?;
        let config = match unsafe { opt_str_arg(config_json, "config_json") }? {
            Some(json) => ClusterManagerConfig::from_json(json)?,
            None => ClusterManagerConfig::default(),
        };
        let manager = ClusterManager::new(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kecs-worker")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the runtime: {e}")))?;
        let m = Box::into_raw(Box::new(KecsManager {
            runtime: Some(runtime),
            manager: std::sync::Arc::new(manager),
        }));
        calls()
            .get_or_insert_with(HashMap::new)
            .insert(m as usize, ManagerCalls::default());
        // SAFETY: checked non-NULL above.
        unsafe { *out = m };
        Ok(())
    })
}

/// Frees a manager. Calls in flight on `m` in other threads are cancelled
/// first (they return KECS_STATUS_CANCELLED; a create removes what it made),
/// and `kecs_manager_free` returns only once every one of them has returned and
/// every rollback has finished — also one waiting for a Docker Engine that does
/// not answer, up to the client's request timeout (120 s). Calls that start
/// while it runs fail with KECS_STATUS_CANCELLED. Then the runtime is shut
/// down. NULL is ignored. `m` must not be used once it has returned.
///
/// # Safety
/// `m` is NULL or a pointer from `kecs_manager_new` not yet freed (nor being
/// freed by another thread).
#[no_mangle]
pub unsafe extern "C" fn kecs_manager_free(m: *mut KecsManager) {
    if m.is_null() {
        return;
    }
    let key = m as usize;
    run_or((), || {
        if let Some(c) = calls().as_mut().and_then(|map| map.get_mut(&key)) {
            c.freeing = true;
        }
        {
            // SAFETY: still a live manager; only this thread frees it.
            let manager = unsafe { &*m };
            if let Some(rt) = &manager.runtime {
                let shared = manager.manager.clone();
                // cancels the calls in flight and waits for their tasks,
                // rollbacks included
                rt.block_on(async move { shared.shutdown().await });
            }
        }
        // the calls' threads leave once their answer is made
        let mut calls = calls();
        while calls
            .as_ref()
            .and_then(|map| map.get(&key))
            .is_some_and(|c| c.in_flight > 0)
        {
            calls = CALL_LEFT.wait(calls).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(map) = calls.as_mut() {
            map.remove(&key);
        }
        drop(calls);
        // SAFETY: the caller gives up ownership of a pointer from
        // kecs_manager_new, and no call is inside it any more.
        let mut m = unsafe { Box::from_raw(m) };
        if let Some(rt) = m.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    })
}

/// Creates a cluster and blocks until it is ready (or fails, times out, or is
/// cancelled — in which case everything it created is removed). `options_json`
/// holds CreateOptions (camelCase; NULL = defaults). An existing cluster is not
/// an error (idempotent). A cancel returns within about a second even when the
/// Docker Engine does not answer a request; the removal then finishes in the
/// background once the engine answers (`kecs_manager_free` waits for it).
///
/// # Safety
/// `m` from `kecs_manager_new`; strings NUL-terminated or NULL; `cancel` NULL or
/// from `kecs_cancel_new`; `err` NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_create(
    m: *const KecsManager,
    name: *const c_char,
    options_json: *const c_char,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_create", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let options = match unsafe { opt_str_arg(options_json, "options_json") }? {
            Some(json) => CreateOptions::from_json(json)?,
            None => CreateOptions::default(),
        };
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        m.run(move |mgr| async move { mgr.create(&name, &options, &token).await.map(|_| ()) })
            .map(|_| ())
    })
}

/// Deletes a cluster and the kubeconfig files this library wrote for it. A
/// missing cluster is not an error. Blocks.
///
/// # Safety
/// As for `kecs_cluster_create`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_delete(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_delete", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        m.run(move |mgr| async move { mgr.delete(&name, &token).await })
    })
}

/// Writes whether the cluster exists to `*out` (not NULL). Blocks for one Docker
/// call.
///
/// # Safety
/// As for `kecs_cluster_create`; `out` valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_exists(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    out: *mut bool,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_exists", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let exists = m.run(move |mgr| async move { mgr.exists(&name, &token).await })?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = exists };
        Ok(())
    })
}

/// Blocks until an existing cluster's nodes are ready, at most `timeout_ms`.
///
/// # Safety
/// As for `kecs_cluster_create`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_wait_ready(
    m: *const KecsManager,
    name: *const c_char,
    timeout_ms: u64,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_wait_ready", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let timeout = Duration::from_millis(timeout_ms);
        m.run(move |mgr| async move { mgr.wait_ready(&name, timeout, &token).await })
    })
}

/// Stops every container of the cluster (idempotent; NOT_FOUND when there is no
/// such cluster). Its containers, volumes, host ports and kubeconfig stay.
/// Blocks.
///
/// # Safety
/// As for `kecs_cluster_create`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_stop(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_stop", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        m.run(move |mgr| async move { mgr.stop(&name, &token).await })
    })
}

/// Starts a stopped cluster (idempotent) with the same API port and kubeconfig,
/// and blocks until every node is Ready, at most `timeout_ms`. A node that does
/// not come back is named in the error; nothing is removed.
///
/// # Safety
/// As for `kecs_cluster_create`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_start(
    m: *const KecsManager,
    name: *const c_char,
    timeout_ms: u64,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_start", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let timeout = Duration::from_millis(timeout_ms);
        m.run(move |mgr| async move { mgr.start(&name, timeout, &token).await })
    })
}

/// Writes whether every container of the cluster runs to `*out` (not NULL);
/// NOT_FOUND when there is no such cluster. Blocks for one Docker call.
///
/// # Safety
/// As for `kecs_cluster_create`; `out` valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_is_running(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    out: *mut bool,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_is_running", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let running = m.run(move |mgr| async move { mgr.is_running(&name, &token).await })?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = running };
        Ok(())
    })
}

/// Writes the cluster's kubeconfig (YAML) to `*out_yaml` (not NULL): the host URL,
/// or the in-network URL in container mode. Free it with `kecs_string_free`.
///
/// # Safety
/// As for `kecs_cluster_create`; `out_yaml` valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_kubeconfig(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    out_yaml: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_kubeconfig", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out_yaml, "out_yaml")?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let yaml =
            into_c_string(m.run(move |mgr| async move { mgr.kubeconfig(&name, &token).await })?)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_yaml = yaml };
        Ok(())
    })
}

/// Writes the path of the cluster's kubeconfig file (`<kubeconfigPath>/<name>.config`)
/// to `*out_path` (not NULL); free it with `kecs_string_free`. Pure: does not
/// block and makes no Docker call; the file exists only while the cluster does.
///
/// # Safety
/// `m` from `kecs_manager_new`; `name` NUL-terminated; `out_path` valid; `err`
/// NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_kubeconfig_path(
    m: *const KecsManager,
    name: *const c_char,
    out_path: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_kubeconfig_path", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out_path, "out_path")?;
        let path = m.manager.kubeconfig_path(name)?;
        let path = path
            .to_str()
            .ok_or_else(|| Error::InvalidArgument("kubeconfig path is not valid UTF-8".into()))?;
        let s = into_c_string(path.to_string())?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_path = s };
        Ok(())
    })
}

/// Writes one ClusterInfo as JSON to `*out_json` (not NULL); free it with
/// `kecs_string_free`. KECS_STATUS_NOT_FOUND when the cluster does not exist.
///
/// # Safety
/// As for `kecs_cluster_create`; `out_json` valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_info(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    out_json: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_info", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out_json, "out_json")?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let info = m.run(move |mgr| async move { mgr.info(&name, &token).await })?;
        let json = serde_json::to_string(&info)
            .map_err(|e| Error::Internal(format!("encoding info: {e}")))?;
        let s = into_c_string(json)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = s };
        Ok(())
    })
}

/// Writes a JSON array of ClusterInfo (clusters whose names start with the
/// configured prefix) to `*out_json` (not NULL); free it with `kecs_string_free`.
///
/// # Safety
/// `m` from `kecs_manager_new`; `cancel` NULL or from `kecs_cancel_new`;
/// `out_json` valid; `err` NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_list(
    m: *const KecsManager,
    cancel: *const KecsCancel,
    out_json: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_list", err, || {
        let m = unsafe { enter(m) }?;
        out_arg(out_json, "out_json")?;
        let token = unsafe { cancel_arg(cancel) };
        let list = m.run(move |mgr| async move { mgr.list(&token).await })?;
        let json = serde_json::to_string(&list)
            .map_err(|e| Error::Internal(format!("encoding list: {e}")))?;
        let s = into_c_string(json)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = s };
        Ok(())
    })
}

/// Adds a host-port mapping to a running cluster's load balancer without
/// interrupting the API or other mappings. `port_json` is one PortMapping
/// (`{"hostPort":8080,"containerPort":30080,"protocol":"udp","hostIp":"127.0.0.1"}`;
/// hostPort 0 picks a free one). When `out_json` is not NULL the resulting
/// PortInfo is written there as JSON; free it with `kecs_string_free`. An
/// identical mapping is not an error; a failure changes nothing. Blocks.
///
/// # Safety
/// As for `kecs_cluster_create`; `port_json` a NUL-terminated string;
/// `out_json` NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_port_add(
    m: *const KecsManager,
    name: *const c_char,
    port_json: *const c_char,
    cancel: *const KecsCancel,
    out_json: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_port_add", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let port_json = unsafe { str_arg(port_json, "port_json") }?;
        let port: PortMapping = serde_json::from_str(port_json)
            .map_err(|e| Error::InvalidArgument(format!("port mapping JSON: {e}")))?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let info = m.run(move |mgr| async move { mgr.port_add(&name, &port, &token).await })?;
        if !out_json.is_null() {
            let json = serde_json::to_string(&info)
                .map_err(|e| Error::Internal(format!("encoding the port: {e}")))?;
            let s = into_c_string(json)?;
            // SAFETY: checked non-NULL above.
            unsafe { *out_json = s };
        }
        Ok(())
    })
}

/// Removes a mapping `kecs_cluster_port_add` made: host port `host_port` with
/// `protocol` "tcp" or "udp" (NULL = "tcp"). NOT_FOUND when it is not mapped;
/// INVALID_ARGUMENT for a mapping given at create. Blocks.
///
/// # Safety
/// As for `kecs_cluster_create`; `protocol` NULL or a NUL-terminated string.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_port_remove(
    m: *const KecsManager,
    name: *const c_char,
    host_port: u16,
    protocol: *const c_char,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_port_remove", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        let protocol = unsafe { opt_str_arg(protocol, "protocol") }?
            .unwrap_or("tcp")
            .to_string();
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        m.run(move |mgr| async move { mgr.port_remove(&name, host_port, &protocol, &token).await })
    })
}

/// Writes the cluster's host-port mappings (a JSON array of PortInfo, the API
/// port excepted) to `*out_json` (not NULL); free it with `kecs_string_free`.
///
/// # Safety
/// As for `kecs_cluster_create`; `out_json` valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_cluster_ports(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    out_json: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_cluster_ports", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out_json, "out_json")?;
        let token = unsafe { cancel_arg(cancel) };
        let name = name.to_string();
        let ports = m.run(move |mgr| async move { mgr.ports(&name, &token).await })?;
        let json = serde_json::to_string(&ports)
            .map_err(|e| Error::Internal(format!("encoding the ports: {e}")))?;
        let s = into_c_string(json)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = s };
        Ok(())
    })
}

/// Creates and starts a standalone registry from `opts_json` (one
/// RegistryCreate: `{"name":"kecs-registry","hostPort":5000,"hostIp":"127.0.0.1",
/// "aliases":["registry.kecs.local"]}`); no cluster delete removes it. When
/// `out_json` is not NULL the RegistryInfo is written there; free it with
/// `kecs_string_free`. ALREADY_EXISTS when the name is taken. Blocks.
///
/// # Safety
/// `m` from `kecs_manager_new`; `opts_json` a NUL-terminated string; `cancel`
/// NULL or from `kecs_cancel_new`; `out_json` and `err` NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_registry_create(
    m: *const KecsManager,
    opts_json: *const c_char,
    cancel: *const KecsCancel,
    out_json: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_registry_create", err, || {
        let m = unsafe { enter(m) }?;
        let json = unsafe { str_arg(opts_json, "opts_json") }?;
        let opts: RegistryCreate = serde_json::from_str(json)
            .map_err(|e| Error::InvalidArgument(format!("registry options JSON: {e}")))?;
        let token = unsafe { cancel_arg(cancel) };
        let info = m.run(move |mgr| async move { mgr.registry_create(&opts, &token).await })?;
        if !out_json.is_null() {
            let json = serde_json::to_string(&info)
                .map_err(|e| Error::Internal(format!("encoding the registry: {e}")))?;
            let s = into_c_string(json)?;
            // SAFETY: checked non-NULL above.
            unsafe { *out_json = s };
        }
        Ok(())
    })
}

/// Removes a registry and its data volume; a missing one is not an error. Blocks.
///
/// # Safety
/// `m` from `kecs_manager_new`; `name` a NUL-terminated string; `cancel` NULL or
/// from `kecs_cancel_new`; `err` NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_registry_delete(
    m: *const KecsManager,
    name: *const c_char,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_registry_delete", err, || {
        let m = unsafe { enter(m) }?;
        let name = unsafe { str_arg(name, "name") }?.to_string();
        let token = unsafe { cancel_arg(cancel) };
        m.run(move |mgr| async move { mgr.registry_delete(&name, &token).await })
    })
}

/// Writes every registry (a JSON array of RegistryInfo) to `*out_json` (not
/// NULL); free it with `kecs_string_free`.
///
/// # Safety
/// `m` from `kecs_manager_new`; `cancel` NULL or from `kecs_cancel_new`;
/// `out_json` valid; `err` NULL or valid.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_registry_list(
    m: *const KecsManager,
    cancel: *const KecsCancel,
    out_json: *mut *mut c_char,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_registry_list", err, || {
        let m = unsafe { enter(m) }?;
        out_arg(out_json, "out_json")?;
        let token = unsafe { cancel_arg(cancel) };
        let list = m.run(move |mgr| async move { mgr.registry_list(&token).await })?;
        let json = serde_json::to_string(&list)
            .map_err(|e| Error::Internal(format!("encoding the registries: {e}")))?;
        let s = into_c_string(json)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = s };
        Ok(())
    })
}

/// Connects registry `registry` to running cluster `name`: network, then
/// `registries.yaml` in every node and a restart of the nodes (k3s reads it
/// only when it starts), waited for until every node is Ready, at most
/// `timeout_ms`. Blocks.
///
/// # Safety
/// As for `kecs_cluster_create`; `registry` a NUL-terminated string.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn kecs_registry_connect(
    m: *const KecsManager,
    registry: *const c_char,
    name: *const c_char,
    timeout_ms: u64,
    cancel: *const KecsCancel,
    err: *mut *mut KecsError,
) -> kecs_status_t {
    run("kecs_registry_connect", err, || {
        let m = unsafe { enter(m) }?;
        let registry = unsafe { str_arg(registry, "registry") }?.to_string();
        let name = unsafe { str_arg(name, "name") }?.to_string();
        let token = unsafe { cancel_arg(cancel) };
        let timeout = Duration::from_millis(timeout_ms);
        m.run(move |mgr| async move {
            mgr.registry_connect(&registry, &name, timeout, &token)
                .await
        })
    })
}

/// Frees a string returned by this library. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn kecs_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    run_or((), || {
        // SAFETY: the pointer came from CString::into_raw in this library.
        drop(unsafe { CString::from_raw(s) });
    })
}

/// Creates a cancellation token; free it with `kecs_cancel_free` once no call
/// and no `kecs_cancel_trigger` can use it any more. Returns NULL only if
/// allocation fails.
#[no_mangle]
pub extern "C" fn kecs_cancel_new() -> *mut KecsCancel {
    run_or(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(KecsCancel {
            token: tokio_util::sync::CancellationToken::new(),
        }))
    })
}

/// Cancels every call given this token: the call returns KECS_STATUS_CANCELLED
/// within about a second, also when the Docker Engine hangs (a create rolls back
/// first; a rollback held up by a request the engine has not answered goes on in
/// the background, and `kecs_manager_free` waits for it). Idempotent; callable from
/// any thread, also before the call starts (the call then fails at once). NULL
/// is ignored.
///
/// # Safety
/// `c` is NULL or a pointer from `kecs_cancel_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn kecs_cancel_trigger(c: *const KecsCancel) {
    run_or((), || {
        // SAFETY: per the contract above.
        if let Some(c) = unsafe { c.as_ref() } {
            c.token.cancel();
        }
    })
}

/// Frees a token. NULL is ignored.
///
/// # Safety
/// `c` is NULL or a pointer from `kecs_cancel_new`, not yet freed and no longer
/// used by any call or trigger.
#[no_mangle]
pub unsafe extern "C" fn kecs_cancel_free(c: *mut KecsCancel) {
    if c.is_null() {
        return;
    }
    run_or((), || {
        // SAFETY: the caller gives up ownership.
        drop(unsafe { Box::from_raw(c) });
    })
}

/// The error's status (KECS_STATUS_INVALID_ARGUMENT for NULL).
///
/// # Safety
/// `e` is NULL or an error from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn kecs_error_code(e: *const KecsError) -> kecs_status_t {
    // SAFETY: per the contract above.
    match unsafe { e.as_ref() } {
        Some(e) => e.status,
        None => kecs_status_t::KECS_STATUS_INVALID_ARGUMENT,
    }
}

/// The error's message (UTF-8), owned by the error: valid until
/// `kecs_error_free`. For NULL, a static message.
///
/// # Safety
/// `e` is NULL or an error from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn kecs_error_message(e: *const KecsError) -> *const c_char {
    // SAFETY: per the contract above.
    match unsafe { e.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"error is NULL".as_ptr(),
    }
}

/// Frees an error. NULL is ignored.
///
/// # Safety
/// `e` is NULL or an error from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn kecs_error_free(e: *mut KecsError) {
    if e.is_null() {
        return;
    }
    run_or((), || {
        // SAFETY: the caller gives up ownership.
        drop(unsafe { Box::from_raw(e) });
    })
}
