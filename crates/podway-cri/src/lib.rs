//! The CRI `runtime.v1` server of podway: `RuntimeService` and `ImageService` over gRPC on a unix
//! socket, backed by [`podway_runtime::Runtime`], plus the streaming server that answers the URLs
//! returned by `Exec`, `Attach` and `PortForward` (`/exec/{token}`, `/attach/{token}`,
//! `/portforward/{token}`) with the protocols of [`podway_stream`].
//!
//! ```no_run
//! # async fn demo(runtime: podway_runtime::RuntimeConfig) -> Result<(), podway_cri::Error> {
//! let config = podway_cri::Config::new("/run/podway/cri.sock".into(), runtime);
//! let daemon = podway_cri::RuntimeDaemon::bind(config).await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! daemon.run(shutdown).await
//! # }
//! ```

mod config;
mod convert;
mod daemon;
mod error;
mod image_service;
mod runtime_service;
mod stats;
mod streaming;

pub use config::Config;
pub use daemon::RuntimeDaemon;
pub use error::Error;
