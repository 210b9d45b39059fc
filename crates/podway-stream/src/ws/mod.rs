//! WebSocket plumbing: the server handshake on a hyper request, Kubernetes channel framing, and
//! a byte-stream view of a WebSocket (for SPDY tunnelling).
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::{Body, Error};

mod bytestream;
pub(crate) mod frame;
mod write_end;

pub use bytestream::WsByteStream;
pub use frame::{CLOSE_CHANNEL, Encoding, Inbound, decode, decode_bytes, encode};
pub use write_end::{EndableWrite, WriteEnd};

/// A server-side WebSocket over a hyper-upgraded connection (see [`EndableWrite`]).
pub type UpgradedWebSocket = WebSocketStream<EndableWrite<TokioIo<Upgraded>>>;

/// Validates a WebSocket upgrade request the way golang.org/x/net/websocket does (GET only,
/// version 13, a key) and returns the `Sec-WebSocket-Accept` value, or the status of the
/// (empty-bodied) refusal to send, see [`empty`].
pub fn check_handshake<B>(req: &Request<B>) -> Result<String, StatusCode> {
    if req.method() != Method::GET {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.map(|v| v.as_bytes()) != Some(b"13") {
        return Err(StatusCode::BAD_REQUEST);
    }
    match req.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(StatusCode::BAD_REQUEST),
    }
}

/// A response with `status` and no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// The `101 Switching Protocols` answer; `protocol` is echoed unless it is `""`.
pub fn switching(accept: &str, protocol: &str) -> Response<Body> {
    let mut resp = empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if !protocol.is_empty()
        && let Ok(v) = HeaderValue::from_str(protocol)
    {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    resp
}

/// Waits for hyper to hand over the connection and wraps it as a server-side WebSocket.
pub async fn server_socket(
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<UpgradedWebSocket, Error> {
    let upgraded = on_upgrade.await?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let io = EndableWrite::new(TokioIo::new(upgraded));
    Ok(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
}

/// Largest inbound message accepted, as Go's WebSocket servers (`DefaultMaxPayloadBytes`).
pub const MAX_MESSAGE: usize = 32 << 20;

/// How long a client may take to answer the server's close frame before the session ends anyway.
pub(crate) const CLOSE_ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends a normal close frame and then ends the connection's write side (see [`EndableWrite`]);
/// the read side stays open for the client's answer.
pub(crate) async fn send_close(
    sink: &mut futures::stream::SplitSink<UpgradedWebSocket, Message>,
    write_end: &WriteEnd,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    send_close_with(sink, write_end, CloseCode::Normal, "").await
}

/// The close sent when a session idled out: 1001 "going away" (the server abandons a session
/// that is not finished), so that clients report it instead of taking it for a normal end
/// (client-go treats only 1000 as a clean end of the streams).
pub(crate) async fn send_idle_close(
    sink: &mut futures::stream::SplitSink<UpgradedWebSocket, Message>,
    write_end: &WriteEnd,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    send_close_with(sink, write_end, CloseCode::Away, IDLE_CLOSE_REASON).await
}

/// The reason text of [`send_idle_close`]'s close frame.
pub const IDLE_CLOSE_REASON: &str = "stream idle timeout";

async fn send_close_with(
    sink: &mut futures::stream::SplitSink<UpgradedWebSocket, Message>,
    write_end: &WriteEnd,
    code: CloseCode,
    reason: &'static str,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    use futures::SinkExt;
    let close = CloseFrame {
        code,
        reason: reason.into(),
    };
    sink.send(Message::Close(Some(close))).await?;
    write_end.request();
    sink.flush().await
}

/// Lets a session's `reader` run until the client answers the close (or goes away), for at most
/// [`CLOSE_ANSWER_GRACE`].
pub(crate) async fn await_close_answer(reader: impl std::future::Future) {
    if tokio::time::timeout(CLOSE_ANSWER_GRACE, reader)
        .await
        .is_err()
    {
        tracing::debug!("client did not answer the WebSocket close");
    }
}
