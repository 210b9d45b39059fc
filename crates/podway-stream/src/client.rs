//! The client side of an HTTP/1.1 upgrade over an already-connected byte stream, for the
//! remotecommand and portforward clients.
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::negotiate::{self, SPDY_31, STREAM_PROTOCOL_HEADER};
use crate::{Body, Error};

/// Largest refusal body kept for the error message.
const MAX_REFUSAL: usize = 64 * 1024;

/// Sends `req` (its URI, with authority for `Host`, and its extra headers such as
/// `Authorization`) as an upgrade request over `io` with `method` and `upgrade_headers`, and
/// returns the 101's headers and the upgraded connection; any other answer is
/// [`Error::Refused`].
async fn upgrade<IO>(
    io: IO,
    req: &Request<()>,
    method: Method,
    upgrade_headers: HeaderMap,
) -> Result<(HeaderMap, Upgraded), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade client connection failed");
        }
    });
    let mut out = Request::new(Body::new(Bytes::new()));
    *out.method_mut() = method;
    *out.uri_mut() = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|e| Error::Protocol(format!("bad request target: {e}")))?;
    *out.headers_mut() = req.headers().clone();
    if let Some(authority) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        out.headers_mut().insert(header::HOST, v);
    }
    for (name, value) in &upgrade_headers {
        out.headers_mut().append(name, value.clone());
    }
    let mut resp = sender.send_request(out).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_REFUSAL)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(Error::Refused { status, body });
    }
    let headers = resp.headers().clone();
    let upgraded = hyper::upgrade::on(&mut resp).await?;
    Ok((headers, upgraded))
}

/// A WebSocket handshake offering `protocols`; returns the socket and the chosen protocol.
pub(crate) async fn websocket<IO>(
    io: IO,
    req: &Request<()>,
    protocols: &[&str],
) -> Result<(WebSocketStream<TokioIo<Upgraded>>, String), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let key = generate_key();
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    h.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).map_err(|e| Error::Protocol(e.to_string()))?,
    );
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(&protocols.join(",")).map_err(|e| Error::Protocol(e.to_string()))?,
    );
    let (headers, upgraded) = upgrade(io, req, Method::GET, h).await?;
    let accept = headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes());
    if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err(Error::Protocol(
            "WebSocket handshake: wrong Sec-WebSocket-Accept".into(),
        ));
    }
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !protocols.contains(&protocol.as_str()) {
        return Err(Error::Protocol(format!(
            "server chose WebSocket subprotocol {protocol:?}, offered {protocols:?}"
        )));
    }
    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    Ok((socket, protocol))
}

/// A SPDY upgrade (POST) offering `protocols`; returns the connection and the chosen protocol.
pub(crate) async fn spdy<IO>(
    io: IO,
    req: &Request<()>,
    protocols: &[&str],
) -> Result<(TokioIo<Upgraded>, String), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_31));
    for p in protocols {
        h.append(
            STREAM_PROTOCOL_HEADER,
            HeaderValue::from_str(p).map_err(|e| Error::Protocol(e.to_string()))?,
        );
    }
    let (headers, upgraded) = upgrade(io, req, Method::POST, h).await?;
    if negotiate::transport(&headers) != Some(negotiate::Transport::Spdy) {
        return Err(Error::Protocol(
            "server answered 101 without SPDY/3.1 upgrade headers".into(),
        ));
    }
    let protocol = headers
        .get(STREAM_PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(negotiate::CHANNEL_V1)
        .to_string();
    Ok((TokioIo::new(upgraded), protocol))
}
