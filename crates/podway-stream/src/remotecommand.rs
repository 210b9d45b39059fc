//! remotecommand (exec/attach) server half.
use std::future::Future;

use hyper::{Request, Response, StatusCode, body::Incoming};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::negotiate::{self, Transport, text_response};
use crate::{Body, query};

pub mod client;
mod spdy_server;
mod ws;

/// Which standard streams the session carries (from the CRI request or the kubelet query).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client reads stdout.
    pub stdout: bool,
    /// The client reads stderr (forced off when `tty`).
    pub stderr: bool,
    /// The process runs on a terminal; resize events are delivered.
    pub tty: bool,
}

/// A terminal size sent by the client on the resize stream/channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A boxed reader of client bytes (stdin); EOF when the client half-closes stdin.
pub type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writer towards the client (stdout, stderr); dropping or shutting it down ends the stream.
pub type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The streams handed to the handler once the client has opened them.
pub struct ServerStreams {
    /// Client → process bytes, present when `stdin` was requested.
    pub stdin: Option<BoxedReader>,
    /// Process → client stdout, present when `stdout` was requested.
    pub stdout: Option<BoxedWriter>,
    /// Process → client stderr, present when `stderr` was requested and not tty.
    pub stderr: Option<BoxedWriter>,
    /// Terminal size changes, present when `tty` (first size arrives as soon as the client sends it).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Cancelled once the client's connection has ended (disconnect or protocol end), so that a
    /// handler that is only waiting (e.g. attached to a silent process) can stop. Processes keep
    /// running, as in Kubernetes; the handler decides.
    pub closed: CancellationToken,
}

/// How the command ended, reported to the client on the error stream/channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code (0 = success).
    Exited(i32),
    /// The command could not be run or failed for another reason (text goes to the client).
    Error(String),
}

/// Answers an exec/attach upgrade request: negotiates WebSocket (`v5.channel.k8s.io`,
/// `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`, `base64.channel.k8s.io`, `channel.k8s.io`)
/// or SPDY/3.1 (`v5`..`v1` `channel.k8s.io`), and returns the response to send (101 or a 4xx with
/// the reason). After the upgrade it waits for the client's streams, calls `handler`, and once the
/// handler returned and all stdout/stderr bytes were flushed, reports the outcome and closes.
///
/// The outcome is reported once the handler returned **and** every stdout/stderr writer it was
/// given has been dropped (or shut down), so no output is lost behind the status. The request's
/// `command` query parameters, when present, name the command in exit-code texts.
///
/// Sessions follow [`crate::ServerOptions::current`]: a WebSocket session is pinged at the ping
/// interval, and one that carried no data message either way for the idle timeout is closed
/// with 1001 "going away" and its handler dropped (so a handler that owns its process, as the
/// runtime's exec does, ends it). A SPDY session idle that long is torn down by its session,
/// which ends stdin and fails the output writers.
pub fn serve<F, Fut>(req: Request<Incoming>, options: StreamOptions, handler: F) -> Response<Body>
where
    F: FnOnce(ServerStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let options = StreamOptions {
        stderr: options.stderr && !options.tty,
        ..options
    };
    if !(options.stdin || options.stdout || options.stderr) {
        return text_response(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr".to_string(),
        );
    }
    let command = query::values(req.uri().query(), "command");
    match negotiate::transport(req.headers()) {
        Some(Transport::WebSocket) => ws::serve(req, options, command, handler),
        Some(Transport::Spdy) => spdy_server::serve(req, options, command, handler),
        None => negotiate::missing_upgrade_headers(req.headers()),
    }
}
