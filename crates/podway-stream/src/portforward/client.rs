//! portforward client halves: SPDY `portforward.k8s.io` and the SPDY-over-WebSocket tunnel, for
//! `podway port-forward` and tests.
use std::sync::atomic::{AtomicU64, Ordering};

use http::Request;
use spdy::{Headers, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::negotiate::{PORTFORWARD, TUNNEL_PREFIX};
use crate::{Error, client, ws};

/// One port-forward session; each [`PortForwardClient::open`] is one forwarded connection.
pub struct PortForwardClient {
    session: spdy::Session,
    next_request: AtomicU64,
}

/// The error stream of one forwarded connection.
pub struct ErrorStream(Stream);

impl ErrorStream {
    /// Reads the error stream to its end: `None` when the server reported nothing.
    pub async fn text(mut self) -> Result<Option<String>, Error> {
        let mut buf = Vec::new();
        self.0.read_to_end(&mut buf).await?;
        Ok((!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned()))
    }
}

impl PortForwardClient {
    /// Upgrades `io` to SPDY (`portforward.k8s.io`) for the request `req` (URI of the
    /// `…/portforward` endpoint, extra headers such as `Authorization`).
    pub async fn connect_spdy<IO>(io: IO, req: &Request<()>) -> Result<Self, Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (io, protocol) = client::spdy(io, req, &[PORTFORWARD]).await?;
        if protocol != PORTFORWARD {
            return Err(Error::Protocol(format!(
                "unable to negotiate protocol: server chose {protocol:?}"
            )));
        }
        Ok(Self::start(io))
    }

    /// Opens the WebSocket tunnel (`SPDY/3.1+portforward.k8s.io`) and runs SPDY inside it.
    pub async fn connect_tunnel<IO>(io: IO, req: &Request<()>) -> Result<Self, Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let protocol = format!("{TUNNEL_PREFIX}{PORTFORWARD}");
        let (socket, _) = client::websocket(io, req, &[protocol.as_str()]).await?;
        Ok(Self::start(ws::WsByteStream::new(socket)))
    }

    fn start<IO>(io: IO) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let config = spdy::Config {
            ping_interval: Some(std::time::Duration::from_secs(10)),
            ..spdy::Config::default()
        };
        let (session, mut incoming) = spdy::Session::new(io, spdy::Role::Client, config);
        tokio::spawn(async move {
            while let Some(pending) = incoming.accept().await {
                pending.reject();
            }
        });
        PortForwardClient {
            session,
            next_request: AtomicU64::new(0),
        }
    }

    /// Opens one forwarded connection to `port` in the pod: the data stream (read/write the
    /// remote socket; shutdown half-closes it) and its error stream.
    pub async fn open(&self, port: u16) -> Result<(Stream, ErrorStream), Error> {
        let request = self
            .next_request
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let port = port.to_string();
        let headers = |kind: &str| -> Headers {
            [
                ("streamtype", kind),
                ("port", port.as_str()),
                ("requestid", request.as_str()),
            ]
            .into_iter()
            .collect()
        };
        let mut error = self.session.open(headers("error")).await?;
        error.shutdown().await?;
        let data = self.session.open(headers("data")).await?;
        Ok((data, ErrorStream(error)))
    }

    /// Closes the session (GOAWAY, then the connection).
    pub async fn close(&self) {
        self.session.close().await;
    }
}
