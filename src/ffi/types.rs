//! The C ABI's data types: the status enum and the three opaque handles.

use std::ffi::CString;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorCode};
use crate::manager::ClusterManager;

/// Bumped on any change to a function signature, a type layout or a status
/// number. Callers compare `kecs_abi_version()` with the header's
/// `KECS_ABI_VERSION`.
pub const ABI_VERSION: u32 = 3;

/// Result of every fallible function. The numbers are stable and never reused.
/// Besides OK and PANIC they are the library's error codes (Rust `ErrorCode`,
/// Go `Code`), number for number.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum kecs_status_t {
    KECS_STATUS_OK = 0,
    KECS_STATUS_INVALID_ARGUMENT = 1,
    KECS_STATUS_NOT_FOUND = 2,
    KECS_STATUS_ALREADY_EXISTS = 3,
    KECS_STATUS_DOCKER_UNAVAILABLE = 4,
    KECS_STATUS_IMAGE_UNAVAILABLE = 5,
    KECS_STATUS_TIMEOUT = 6,
    KECS_STATUS_CANCELLED = 7,
    KECS_STATUS_KUBERNETES = 8,
    KECS_STATUS_IO = 9,
    KECS_STATUS_INTERNAL = 10,
    /// A Rust panic was caught at the boundary; the message says where.
    KECS_STATUS_PANIC = 11,
    /// A node container exited (or was stopped) before it became ready, or a
    /// command run inside a node failed; the message names the node and step.
    KECS_STATUS_NODE_FAILED = 12,
}

impl From<ErrorCode> for kecs_status_t {
    fn from(c: ErrorCode) -> Self {
        use kecs_status_t::*;
        match c {
            ErrorCode::InvalidArgument => KECS_STATUS_INVALID_ARGUMENT,
            ErrorCode::NotFound => KECS_STATUS_NOT_FOUND,
            ErrorCode::AlreadyExists => KECS_STATUS_ALREADY_EXISTS,
            ErrorCode::DockerUnavailable => KECS_STATUS_DOCKER_UNAVAILABLE,
            ErrorCode::ImageUnavailable => KECS_STATUS_IMAGE_UNAVAILABLE,
            ErrorCode::Timeout => KECS_STATUS_TIMEOUT,
            ErrorCode::Cancelled => KECS_STATUS_CANCELLED,
            ErrorCode::Kubernetes => KECS_STATUS_KUBERNETES,
            ErrorCode::Io => KECS_STATUS_IO,
            ErrorCode::Internal => KECS_STATUS_INTERNAL,
            ErrorCode::NodeFailed => KECS_STATUS_NODE_FAILED,
        }
    }
}

/// Opaque: a cluster manager with its own tokio runtime.
pub struct KecsManager {
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
    pub(crate) manager: std::sync::Arc<ClusterManager>,
}

/// Opaque: an error's status and message.
pub struct KecsError {
    pub(crate) status: kecs_status_t,
    pub(crate) message: CString,
}

impl KecsError {
    pub(crate) fn new(status: kecs_status_t, message: &str) -> KecsError {
        // messages never contain NUL in practice; replace rather than lose the error
        let message = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
        KecsError { status, message }
    }

    pub(crate) fn from_error(e: &Error) -> KecsError {
        KecsError::new(e.code().into(), e.message())
    }
}

/// Opaque: a cancellation token shared between a call and the thread that may
/// cancel it.
pub struct KecsCancel {
    pub(crate) token: CancellationToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_the_status_of_the_same_number() {
        for code in ErrorCode::all() {
            let status = kecs_status_t::from(code);
            assert_eq!(status as u32, code as u32, "{code:?} -> {status:?}");
        }
        assert_eq!(kecs_status_t::KECS_STATUS_PANIC as u32, 11);
        assert!(ErrorCode::all()
            .iter()
            .all(|&c| c as u32 != kecs_status_t::KECS_STATUS_PANIC as u32));
    }

    #[test]
    fn a_node_failure_reaches_c_as_node_failed() {
        let e = KecsError::from_error(&Error::NodeFailed("node kecs-a-server-0 exited".into()));
        assert_eq!(e.status, kecs_status_t::KECS_STATUS_NODE_FAILED);
        assert_eq!(e.message.to_str().unwrap(), "node kecs-a-server-0 exited");
    }

    #[test]
    fn the_abi_version_counts_the_node_failed_status() {
        // 3: KECS_STATUS_NODE_FAILED was added.
        assert_eq!(ABI_VERSION, 3);
    }
}
