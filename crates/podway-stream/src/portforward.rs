//! portforward server half.
use std::future::Future;
use std::pin::Pin;

use hyper::{Request, Response, body::Incoming};

use crate::Body;
use crate::negotiate::{self, Transport};

pub mod client;
mod connection;
pub mod headers;
mod legacy_ws;
mod spdy_server;

/// What the session forwards to, for error messages and the legacy WebSocket protocol.
#[derive(Debug, Clone, Default)]
pub struct PortForwardOptions {
    /// The pod (or sandbox id) named in error texts.
    pub pod: String,
    /// The pod uid named in error texts (empty via CRI, as containerd does).
    pub uid: String,
    /// Ports fixed at request time (legacy WebSocket protocol only; SPDY names ports per stream).
    pub ports: Vec<u16>,
}

/// A boxed future returned by a [`Dialer`].
pub type DialFuture = Pin<Box<dyn Future<Output = Result<tokio::net::TcpStream, String>> + Send>>;

/// Opens one connection to `localhost:port` inside the pod; the error text is the cause.
pub type Dialer = std::sync::Arc<dyn Fn(u16) -> DialFuture + Send + Sync>;

/// Answers a port-forward upgrade request: SPDY `portforward.k8s.io`, the SPDY-over-WebSocket
/// tunnel `SPDY/3.1+portforward.k8s.io`, and the legacy WebSocket channel protocol (`""`,
/// `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`). Returns the response to send (101 or 4xx);
/// after the upgrade, each client connection is dialled with `dialer` and copied both ways.
pub fn serve(
    req: Request<Incoming>,
    options: PortForwardOptions,
    dialer: Dialer,
) -> Response<Body> {
    match negotiate::transport(req.headers()) {
        Some(Transport::Spdy) => spdy_server::serve(req, options, dialer),
        Some(Transport::WebSocket) => {
            if negotiate::tunnel_protocols(req.headers())
                .iter()
                .any(|p| p == negotiate::PORTFORWARD)
            {
                spdy_server::serve_tunnel(req, options, dialer)
            } else {
                legacy_ws::serve(req, options, dialer)
            }
        }
        None => negotiate::missing_upgrade_headers(req.headers()),
    }
}
