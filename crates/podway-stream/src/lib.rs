//! Kubernetes streaming protocols: remotecommand (exec/attach) and portforward, over SPDY/3.1 and
//! WebSocket, plus the upgrade-aware proxy that every hop between a client and a container uses.
//!
//! CONTRACT (fixed by the lead; other crates compile against these signatures):
//! - [`remotecommand::serve`] answers an exec/attach upgrade request and runs the session.
//! - [`portforward::serve`] answers a port-forward upgrade request and runs the session.
//! - [`proxy::upgrade_proxy`] forwards an upgrade request to a backend and splices only after 101.
//!
//! Beyond the contract:
//! - [`remotecommand::client::connect`] and [`portforward::client::PortForwardClient`] are the
//!   client halves (WebSocket v5/v4 and SPDY v4…v1 for exec/attach; SPDY and the
//!   SPDY-over-WebSocket tunnel for port-forward) over any connected byte stream.
//! - [`negotiate`] holds the protocol tokens, the negotiation rules and the refusal responses of
//!   Kubernetes servers; [`status`] the exact status documents; [`ws`] the WebSocket handshake,
//!   channel framing and [`ws::WsByteStream`] (a WebSocket as a byte stream).
//!
//! Every server half closes idle sessions and keeps WebSocket sessions alive with pings, as the
//! process-wide [`ServerOptions`] say (installed once by the streaming server).
//!
//! Servers are hyper handlers: serve the connection with `.with_upgrades()`, return the
//! [`Body`] response, and the session runs on a spawned task after the 101.

mod client;
mod error;
pub mod fuzzing;
mod idle;
mod io;
pub mod negotiate;
pub mod portforward;
pub mod proxy;
mod query;
pub mod remotecommand;
mod resize;
mod spdy_conn;
pub mod status;
pub mod ws;

pub use error::Error;
pub use idle::{DEFAULT_IDLE_TIMEOUT, DEFAULT_PING_INTERVAL, ServerOptions};

/// The body type of every HTTP response this crate builds.
pub type Body = http_body_util::Full<bytes::Bytes>;
