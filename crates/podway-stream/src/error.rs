//! The crate's error type.

/// Errors of the streaming sessions (logged by the servers, returned by the clients).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP upgrade itself failed (hyper could not hand over the connection).
    #[error("HTTP upgrade failed: {0}")]
    Upgrade(#[from] hyper::Error),
    /// Reading or writing the underlying connection failed.
    #[error("stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed.
    #[error("WebSocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The SPDY layer failed.
    #[error("SPDY error: {0}")]
    Spdy(#[from] spdy::Error),
    /// The server answered the upgrade request with something other than 101.
    #[error("unable to upgrade connection: {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: http::StatusCode,
        /// The response body (trimmed, bounded).
        body: String,
    },
    /// The peer broke the streaming protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer did not open the expected streams in time.
    #[error("timed out waiting for client to create streams")]
    StreamCreationTimeout,
}
