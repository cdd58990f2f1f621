//! The C ABI's data types: the status enum and the three opaque handles.

use std::ffi::CString;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorCode};
use crate::manager::ClusterManager;

/// Bumped on any change to a function signature, a type layout or a status
/// number. Callers compare `kecs_abi_version()` with the header's
/// `KECS_ABI_VERSION`.
pub const ABI_VERSION: u32 = 2;

/// Result of every fallible function. The numbers are stable and never reused.
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
