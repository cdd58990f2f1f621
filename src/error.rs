//! One error type for the whole library. `code()` is stable: the C ABI maps it to
//! `kecs_status_t` and the Go bindings to their sentinel errors.

/// Stable error categories. The numbers are the C ABI's status codes and are
/// never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    InvalidArgument = 1,
    NotFound = 2,
    AlreadyExists = 3,
    DockerUnavailable = 4,
    ImageUnavailable = 5,
    Timeout = 6,
    Cancelled = 7,
    Kubernetes = 8,
    Io = 9,
    Internal = 10,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid argument",
            ErrorCode::NotFound => "not found",
            ErrorCode::AlreadyExists => "already exists",
            ErrorCode::DockerUnavailable => "docker unavailable",
            ErrorCode::ImageUnavailable => "image unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Kubernetes => "kubernetes",
            ErrorCode::Io => "io",
            ErrorCode::Internal => "internal",
        }
    }
}

/// Every variant carries a complete sentence: what failed, for which cluster and
/// node, at which step, and (where there is one) what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    DockerUnavailable(String),
    #[error("{0}")]
    ImageUnavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("{0}")]
    Kubernetes(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::DockerUnavailable(_) => ErrorCode::DockerUnavailable,
            Error::ImageUnavailable(_) => ErrorCode::ImageUnavailable,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::Cancelled(_) => ErrorCode::Cancelled,
            Error::Kubernetes(_) => ErrorCode::Kubernetes,
            Error::Io(_) => ErrorCode::Io,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::InvalidArgument(m)
            | Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::DockerUnavailable(m)
            | Error::ImageUnavailable(m)
            | Error::Timeout(m)
            | Error::Cancelled(m)
            | Error::Kubernetes(m)
            | Error::Io(m)
            | Error::Internal(m) => m,
        }
    }

    /// Whether this is a start refused because host port `port` is taken
    /// (Docker's "Bind for <ip>:<port> failed" / "<ip>:<port>: bind: address
    /// already in use").
    pub(crate) fn is_port_conflict(&self, port: u16) -> bool {
        let m = self.message();
        self.code() == ErrorCode::InvalidArgument
            && (m.contains(&format!(":{port} failed")) || m.contains(&format!(":{port}: bind")))
    }

    /// The same error with `context: ` in front of its message, code unchanged.
    pub fn context(self, context: impl std::fmt::Display) -> Error {
        let msg = format!("{context}: {}", self.message());
        self.with_message(msg)
    }

    /// The same error with `: suffix` after its message, code unchanged.
    pub fn with_suffix(self, suffix: impl std::fmt::Display) -> Error {
        let msg = format!("{}; {suffix}", self.message());
        self.with_message(msg)
    }

    fn with_message(self, msg: String) -> Error {
        match self.code() {
            ErrorCode::InvalidArgument => Error::InvalidArgument(msg),
            ErrorCode::NotFound => Error::NotFound(msg),
            ErrorCode::AlreadyExists => Error::AlreadyExists(msg),
            ErrorCode::DockerUnavailable => Error::DockerUnavailable(msg),
            ErrorCode::ImageUnavailable => Error::ImageUnavailable(msg),
            ErrorCode::Timeout => Error::Timeout(msg),
            ErrorCode::Cancelled => Error::Cancelled(msg),
            ErrorCode::Kubernetes => Error::Kubernetes(msg),
            ErrorCode::Io => Error::Io(msg),
            ErrorCode::Internal => Error::Internal(msg),
        }
    }

    /// Classifies a Docker API error met while doing `what`.
    pub fn docker(what: impl std::fmt::Display, err: bollard::errors::Error) -> Error {
        use bollard::errors::Error as B;
        match &err {
            B::DockerResponseServerError {
                status_code: 404,
                message,
            } => Error::NotFound(format!("{what}: {message}")),
            B::DockerResponseServerError {
                status_code: 409,
                message,
            } if message.contains("already") => Error::AlreadyExists(format!("{what}: {message}")),
            B::DockerResponseServerError {
                status_code,
                message,
            } => Error::Internal(format!("{what}: Docker answered {status_code}: {message}")),
            B::RequestTimeoutError => Error::DockerUnavailable(format!(
                "{what}: the Docker Engine did not answer in time"
            )),
            B::HyperResponseError { .. } | B::IOError { .. } | B::HyperLegacyError { .. } => {
                Error::DockerUnavailable(format!("{what}: cannot reach the Docker Engine: {err}"))
            }
            _ => Error::Internal(format!("{what}: {err}")),
        }
    }

    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> Error {
        Error::Io(format!("{what}: {err}"))
    }

    pub fn kube(what: impl std::fmt::Display, err: kube::Error) -> Error {
        Error::Kubernetes(format!("{what}: {err}"))
    }
}

/// Is this a Docker 404 (no such container/network/volume/image)?
pub fn is_docker_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_code() {
        let e = Error::Timeout("waiting".into()).context("cluster kecs-a");
        assert_eq!(e.code(), ErrorCode::Timeout);
        assert_eq!(e.to_string(), "cluster kecs-a: waiting");
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(ErrorCode::InvalidArgument as u32, 1);
        assert_eq!(ErrorCode::Internal as u32, 10);
    }
}
