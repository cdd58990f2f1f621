//! The boundary every exported function goes through: panics are caught (never
//! unwinding into C), pointers are checked before use, errors become a status
//! plus an optional error object.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::types::{kecs_status_t, KecsCancel, KecsError, KecsManager};
use crate::error::{Error, Result};
use tokio_util::sync::CancellationToken;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

/// Runs `f` for the exported function `func`; stores an error object in `*err`
/// (when `err` is not NULL) on failure and leaves it untouched on success.
pub(crate) fn run(
    func: &str,
    err: *mut *mut KecsError,
    f: impl FnOnce() -> Result<()>,
) -> kecs_status_t {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let error = match outcome {
        Ok(Ok(())) => return kecs_status_t::KECS_STATUS_OK,
        Ok(Err(e)) => KecsError::from_error(&e),
        Err(payload) => KecsError::new(
            kecs_status_t::KECS_STATUS_PANIC,
            &format!(
                "{func}: internal panic caught at the C boundary: {}",
                panic_message(payload.as_ref())
            ),
        ),
    };
    let status = error.status;
    if !err.is_null() {
        // SAFETY: the caller passes either NULL or a valid `kecs_error_t **`.
        unsafe { *err = Box::into_raw(Box::new(error)) };
    }
    status
}

/// Runs `f` catching panics, for functions that return a value instead of a status.
pub(crate) fn run_or<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// A required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the header's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// An optional string argument: NULL means "not given".
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        unsafe { str_arg(ptr, what) }.map(Some)
    }
}

/// # Safety
/// `m` is NULL or a pointer from `kecs_manager_new` not yet freed.
pub(crate) unsafe fn manager_arg<'a>(m: *const KecsManager) -> Result<&'a KecsManager> {
    // SAFETY: per the contract above.
    unsafe { m.as_ref() }.ok_or_else(|| Error::InvalidArgument("manager is NULL".into()))
}

/// The token of `cancel`, or one that never fires when NULL.
///
/// # Safety
/// `cancel` is NULL or a pointer from `kecs_cancel_new` not yet freed.
pub(crate) unsafe fn cancel_arg(cancel: *const KecsCancel) -> CancellationToken {
    // SAFETY: per the contract above.
    match unsafe { cancel.as_ref() } {
        Some(c) => c.token.clone(),
        None => CancellationToken::new(),
    }
}

/// Checks that an out-parameter can be written.
pub(crate) fn out_arg<T>(out: *mut T, what: &str) -> Result<()> {
    if out.is_null() {
        Err(Error::InvalidArgument(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// Hands a string to C; freed with `kecs_string_free`.
pub(crate) fn into_c_string(s: String) -> Result<*mut c_char> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| Error::Internal("result contains a NUL byte".into()))
}

impl KecsManager {
    /// Runs a manager operation as a task on the manager's runtime and blocks the
    /// calling thread until it ends. The task's I/O is driven where it runs, so
    /// the caller is woken once, at the end (blocking on the future itself from a
    /// foreign thread costs a thread hand-off per I/O event). A panic in the task
    /// is re-raised here, where the boundary turns it into KECS_STATUS_PANIC.
    pub(crate) fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(std::sync::Arc<crate::manager::ClusterManager>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::Internal("manager has been shut down".into()))?;
        // boxed once: the operation's future (kilobytes for a Docker call) then
        // moves by pointer into the task, not by copies through each wrapper
        let fut = Box::pin(op(self.manager.clone()));
        // spawned from inside block_on: if block_on refuses (a caller already in
        // an async runtime), it panics before anything has started
        match rt.block_on(async move { rt.spawn(fut).await }) {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Internal(format!(
                "the operation's task ended early: {e}"
            ))),
        }
    }
}
