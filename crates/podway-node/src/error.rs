//! The node agent's error type.
use std::{net::SocketAddr, path::PathBuf};

/// Everything that can stop the node agent from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the agent needs (certificate, key, kubeconfig) could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The debugging-handler listener could not be bound.
    #[error("binding the node agent listener to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The serving certificate, key or client CA is unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The kubeconfig could not be turned into an API client.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// The CRI socket path cannot be used as an endpoint.
    #[error("CRI endpoint {path}: {source}")]
    CriEndpoint {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// A call to the API server failed.
    #[error("API server: {context}: {source}")]
    Api {
        /// What the agent was doing.
        context: String,
        /// The cause.
        source: kube::Error,
    },
}
