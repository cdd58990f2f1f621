//! One error type for the whole library. `code()` is stable: the C ABI maps it to
//! `kecs_status_t` (same numbers) and the Go bindings take their constants from
//! the header, so one enum serves Rust, C and Go.

/// The underlying error an [`Error`] was made from (a Docker, I/O or Kubernetes
/// client error), kept for [`std::error::Error::source`].
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Stable error categories. The numbers are the C ABI's status codes
/// (`kecs_status_t`) and are never reused. 11 is taken by the C ABI's
/// `KECS_STATUS_PANIC`, which only the boundary produces (a caught panic is
/// not a library error), so no variant has it.
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
    /// A node container exited (or was stopped) before it became ready, or a
    /// command the library runs inside a node (exec) failed. The message names
    /// the node and the step, and carries the node's output where there is one.
    NodeFailed = 12,
}

impl ErrorCode {
    /// Every code, in number order. (A function rather than an associated
    /// constant: cbindgen would otherwise put this Rust-only enum in the C
    /// header next to `kecs_status_t`.)
    pub const fn all() -> [ErrorCode; 11] {
        [
            ErrorCode::InvalidArgument,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::DockerUnavailable,
            ErrorCode::ImageUnavailable,
            ErrorCode::Timeout,
            ErrorCode::Cancelled,
            ErrorCode::Kubernetes,
            ErrorCode::Io,
            ErrorCode::Internal,
            ErrorCode::NodeFailed,
        ]
    }

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
            ErrorCode::NodeFailed => "node failed",
        }
    }
}

/// A library error: a stable [`ErrorCode`], a complete sentence (what failed,
/// for which cluster and node, at which step, and where there is one, what to
/// do about it) and, when it came from another library's error, that error as
/// its [`source`](std::error::Error::source). `Display` prints the message only;
/// the message already includes the source's text.
///
/// Make one with the constructor named after its code
/// (`Error::NotFound(msg)`, `Error::NodeFailed(msg)`, ...), or from a client
/// error with [`Error::docker`], [`Error::io`] and [`Error::kube`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
    #[source]
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// One constructor per code, spelled like the enum variants `Error` used to have,
// so `Error::NotFound(format!(..))` and `.map_err(Error::Internal)` read as before.
#[allow(non_snake_case)]
impl Error {
    pub fn InvalidArgument(message: String) -> Error {
        Error::new(ErrorCode::InvalidArgument, message)
    }
    pub fn NotFound(message: String) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }
    pub fn AlreadyExists(message: String) -> Error {
        Error::new(ErrorCode::AlreadyExists, message)
    }
    pub fn DockerUnavailable(message: String) -> Error {
        Error::new(ErrorCode::DockerUnavailable, message)
    }
    pub fn ImageUnavailable(message: String) -> Error {
        Error::new(ErrorCode::ImageUnavailable, message)
    }
    pub fn Timeout(message: String) -> Error {
        Error::new(ErrorCode::Timeout, message)
    }
    pub fn Cancelled(message: String) -> Error {
        Error::new(ErrorCode::Cancelled, message)
    }
    pub fn Kubernetes(message: String) -> Error {
        Error::new(ErrorCode::Kubernetes, message)
    }
    pub fn Io(message: String) -> Error {
        Error::new(ErrorCode::Io, message)
    }
    pub fn Internal(message: String) -> Error {
        Error::new(ErrorCode::Internal, message)
    }
    /// A node exited or was stopped before it was ready, or an exec in a node
    /// failed (see [`ErrorCode::NodeFailed`]).
    pub fn NodeFailed(message: String) -> Error {
        Error::new(ErrorCode::NodeFailed, message)
    }
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `source` as its underlying cause (replacing any).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is a start refused because host port `port` is taken
    /// (Docker's "Bind for <ip>:<port> failed" / "<ip>:<port>: bind: address
    /// already in use").
    pub(crate) fn is_port_conflict(&self, port: u16) -> bool {
        let m = self.message();
        self.code() == ErrorCode::InvalidArgument
            && (m.contains(&format!(":{port} failed")) || m.contains(&format!(":{port}: bind")))
    }

    /// The same error with `context: ` in front of its message; code and source
    /// unchanged.
    pub fn context(mut self, context: impl std::fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The same error with `; suffix` after its message; code and source
    /// unchanged.
    pub fn with_suffix(mut self, suffix: impl std::fmt::Display) -> Error {
        self.message = format!("{}; {suffix}", self.message);
        self
    }

    /// Classifies a Docker API error met while doing `what`; the Docker error
    /// is kept as the source.
    pub fn docker(what: impl std::fmt::Display, err: bollard::errors::Error) -> Error {
        use bollard::errors::Error as B;
        let error = match &err {
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
        };
        error.with_source(err)
    }

    /// An I/O error met while doing `what`, kept as the source.
    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> Error {
        Error::Io(format!("{what}: {err}")).with_source(err)
    }

    /// A Kubernetes client error met while doing `what`, kept as the source.
    pub fn kube(what: impl std::fmt::Display, err: kube::Error) -> Error {
        Error::Kubernetes(format!("{what}: {err}")).with_source(err)
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
    use std::error::Error as _;

    #[test]
    fn context_keeps_code() {
        let e = Error::Timeout("waiting".into()).context("cluster kecs-a");
        assert_eq!(e.code(), ErrorCode::Timeout);
        assert_eq!(e.to_string(), "cluster kecs-a: waiting");
        let e = e.with_suffix("try again");
        assert_eq!(e.code(), ErrorCode::Timeout);
        assert_eq!(e.message(), "cluster kecs-a: waiting; try again");
        assert!(e.source().is_none());
    }

    #[test]
    fn codes_are_stable() {
        let numbers: Vec<(u32, &str)> = ErrorCode::all()
            .iter()
            .map(|&c| (c as u32, c.as_str()))
            .collect();
        assert_eq!(
            numbers,
            [
                (1, "invalid argument"),
                (2, "not found"),
                (3, "already exists"),
                (4, "docker unavailable"),
                (5, "image unavailable"),
                (6, "timeout"),
                (7, "cancelled"),
                (8, "kubernetes"),
                (9, "io"),
                (10, "internal"),
                (12, "node failed"),
            ]
        );
    }

    #[test]
    fn each_constructor_gives_its_code() {
        let made = [
            Error::InvalidArgument("m".into()),
            Error::NotFound("m".into()),
            Error::AlreadyExists("m".into()),
            Error::DockerUnavailable("m".into()),
            Error::ImageUnavailable("m".into()),
            Error::Timeout("m".into()),
            Error::Cancelled("m".into()),
            Error::Kubernetes("m".into()),
            Error::Io("m".into()),
            Error::Internal("m".into()),
            Error::NodeFailed("m".into()),
        ];
        let codes: Vec<ErrorCode> = made.iter().map(Error::code).collect();
        assert_eq!(codes, ErrorCode::all());
        assert!(made.iter().all(|e| e.to_string() == "m"));
        // usable as a function, as the enum variants were
        let make: fn(String) -> Error = Error::NodeFailed;
        assert_eq!(make("boom".into()).code(), ErrorCode::NodeFailed);
    }

    /// The source of `e`, as `T`.
    fn source_as<T: std::error::Error + 'static>(e: &Error) -> &T {
        e.source()
            .unwrap_or_else(|| panic!("{e} has no source"))
            .downcast_ref::<T>()
            .unwrap_or_else(|| panic!("the source of {e} is not a {}", std::any::type_name::<T>()))
    }

    #[test]
    fn docker_errors_keep_their_source_through_context() {
        let not_found = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such container: kecs-a-server-0".into(),
        };
        let e = Error::docker("inspecting kecs-a-server-0", not_found)
            .context("cluster kecs-a")
            .with_suffix("was it deleted?");
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert_eq!(
            e.to_string(),
            "cluster kecs-a: inspecting kecs-a-server-0: No such container: kecs-a-server-0; was it deleted?"
        );
        assert!(matches!(
            source_as::<bollard::errors::Error>(&e),
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ));

        let e = Error::docker("pinging", bollard::errors::Error::RequestTimeoutError);
        assert_eq!(e.code(), ErrorCode::DockerUnavailable);
        assert!(matches!(
            source_as::<bollard::errors::Error>(&e),
            bollard::errors::Error::RequestTimeoutError
        ));
    }

    #[test]
    fn io_errors_keep_their_source_through_context() {
        let err = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::io("writing /x/kecs-a.config", err).context("cluster kecs-a");
        assert_eq!(e.code(), ErrorCode::Io);
        assert_eq!(
            e.to_string(),
            "cluster kecs-a: writing /x/kecs-a.config: denied"
        );
        assert_eq!(
            source_as::<std::io::Error>(&e).kind(),
            std::io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn kube_errors_keep_their_source_through_context() {
        let err = kube::Error::LinesCodecMaxLineLengthExceeded;
        let e = Error::kube("listing nodes", err).with_suffix("is the API up?");
        assert_eq!(e.code(), ErrorCode::Kubernetes);
        assert!(e.to_string().starts_with("listing nodes: "), "{e}");
        assert!(matches!(
            source_as::<kube::Error>(&e),
            kube::Error::LinesCodecMaxLineLengthExceeded
        ));
    }

    #[test]
    fn node_failed_can_carry_a_source() {
        let err = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "log ended");
        let e = Error::NodeFailed("cluster kecs-a: node kecs-a-server-0 exited (code 1)".into())
            .with_source(err)
            .context("creating");
        assert_eq!(e.code(), ErrorCode::NodeFailed);
        assert_eq!(
            source_as::<std::io::Error>(&e).kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn errors_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
    }
}
