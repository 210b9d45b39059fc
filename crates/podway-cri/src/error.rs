//! Errors of the daemon and the mapping of runtime errors to gRPC status codes.
use std::path::PathBuf;

/// Why the CRI daemon could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container runtime could not be opened.
    #[error("opening the container runtime: {0}")]
    Runtime(#[from] podway_runtime::Error),
    /// A file-system or socket operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or socket concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process answers on the CRI socket.
    #[error("CRI socket {0} is in use by another process")]
    SocketInUse(PathBuf),
    /// The streaming server could not listen.
    #[error("binding the streaming server on {addr}: {source}")]
    StreamBind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving CRI on {path}: {source}")]
    Serve {
        /// The CRI socket.
        path: PathBuf,
        /// The underlying error.
        source: tonic::transport::Error,
    },
}

/// Maps a runtime error to the gRPC status a CRI client expects (the text names object and cause).
pub(crate) fn status(err: podway_runtime::Error) -> tonic::Status {
    use podway_runtime::Error as E;
    let message = err.to_string();
    match err {
        E::NotFound(_) => tonic::Status::not_found(message),
        E::AlreadyExists(_) => tonic::Status::already_exists(message),
        E::InvalidArgument(_) => tonic::Status::invalid_argument(message),
        E::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
        E::Unauthenticated(_) => tonic::Status::unauthenticated(message),
        E::Command(_) | E::Io { .. } => tonic::Status::internal(message),
    }
}

/// Whether a runtime error says the object does not exist.
pub(crate) fn is_not_found(err: &podway_runtime::Error) -> bool {
    matches!(err, podway_runtime::Error::NotFound(_))
}
