//! Starting SPDY server sessions on upgraded connections.
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{Error, ServerOptions};

/// How long a client has to open the streams of a session or a port-forward pair.
pub(crate) const CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A server session over any byte stream (an upgraded connection or a WebSocket tunnel), with
/// the idle timeout of [`ServerOptions::current`]. It sends no pings of its own: on SPDY every
/// frame is activity, so they would keep every session alive (see [`crate::ServerOptions`]).
pub(crate) fn server_session<IO>(io: IO) -> (spdy::Session, spdy::Incoming)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let config = spdy::Config {
        idle_timeout: ServerOptions::current().idle_timeout,
        ping_interval: None,
        ..spdy::Config::default()
    };
    spdy::Session::new(io, spdy::Role::Server, config)
}

/// Waits for hyper's upgrade and starts a server session on it.
pub(crate) async fn upgraded_session(
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<(spdy::Session, spdy::Incoming), Error> {
    let upgraded = on_upgrade.await?;
    Ok(server_session(TokioIo::new(upgraded)))
}
