//! Protocol negotiation for HTTP/1.1 upgrades: which transport a request asks for, which
//! subprotocol both sides support, and the refusal responses Kubernetes servers send.
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::Body;

/// The SPDY upgrade token.
pub const SPDY_31: &str = "SPDY/3.1";
/// The header that carries SPDY subprotocols (one line per protocol, client order).
pub const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// The header listing the server's protocols on a failed SPDY negotiation.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";
/// Prefix of the SPDY-over-WebSocket tunnel subprotocols.
pub const TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// remotecommand protocol v1.
pub const CHANNEL_V1: &str = "channel.k8s.io";
/// remotecommand protocol v2 (SPDY only).
pub const CHANNEL_V2: &str = "v2.channel.k8s.io";
/// remotecommand protocol v3 (SPDY only).
pub const CHANNEL_V3: &str = "v3.channel.k8s.io";
/// remotecommand protocol v4.
pub const CHANNEL_V4: &str = "v4.channel.k8s.io";
/// remotecommand protocol v5.
pub const CHANNEL_V5: &str = "v5.channel.k8s.io";
/// WebSocket base64 variant of v1.
pub const BASE64_V1: &str = "base64.channel.k8s.io";
/// WebSocket base64 variant of v4.
pub const BASE64_V4: &str = "v4.base64.channel.k8s.io";
/// The SPDY port-forward protocol.
pub const PORTFORWARD: &str = "portforward.k8s.io";

/// The transport an upgrade request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `Upgrade: websocket`.
    WebSocket,
    /// `Upgrade: SPDY/3.1` with `Connection: upgrade`.
    Spdy,
}

/// True when a comma-separated header (any of its lines) contains `token`, case-insensitively.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Which upgrade the request asks for, if any (`Connection` must name `upgrade`).
pub fn transport(headers: &HeaderMap) -> Option<Transport> {
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return None;
    }
    if header_has_token(headers, header::UPGRADE, "websocket") {
        Some(Transport::WebSocket)
    } else if header_has_token(headers, header::UPGRADE, SPDY_31) {
        Some(Transport::Spdy)
    } else {
        None
    }
}

/// The values of every line of `name`, split on `,` and trimmed, empty values dropped.
pub fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The SPDY protocols a remotecommand server accepts (v5 is served as v4).
pub const SPDY_REMOTECOMMAND: &[&str] =
    &[CHANNEL_V5, CHANNEL_V4, CHANNEL_V3, CHANNEL_V2, CHANNEL_V1];
/// The WebSocket subprotocols a remotecommand server accepts (`""` = no header).
pub const WS_REMOTECOMMAND: &[&str] =
    &[CHANNEL_V5, CHANNEL_V4, BASE64_V4, BASE64_V1, CHANNEL_V1, ""];
/// The WebSocket subprotocols of the legacy port-forward channel protocol.
pub const WS_PORTFORWARD: &[&str] = &[CHANNEL_V4, BASE64_V4, ""];

/// Why a SPDY protocol negotiation failed; [`SpdyRefusal::response`] is what Go servers answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpdyRefusal {
    /// No `X-Stream-Protocol-Version` header (400).
    Missing,
    /// No common protocol (403).
    NoOverlap {
        /// What the client offered.
        client: Vec<String>,
        /// What the server accepts.
        server: Vec<String>,
    },
}

impl SpdyRefusal {
    /// The HTTP response for this refusal, with the texts of apimachinery's `Handshake`.
    pub fn response(&self) -> Response<Body> {
        match self {
            SpdyRefusal::Missing => text_response(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: X-Stream-Protocol-Version is required".to_string(),
            ),
            SpdyRefusal::NoOverlap { client, server } => {
                let mut resp = text_response(
                    StatusCode::FORBIDDEN,
                    format!(
                        "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
                        client.join(" "),
                        server.join(" ")
                    ),
                );
                for p in server {
                    if let Ok(v) = HeaderValue::from_str(p) {
                        resp.headers_mut().append(ACCEPTED_PROTOCOLS_HEADER, v);
                    }
                }
                resp
            }
        }
    }
}

/// Picks the first client-offered SPDY protocol (header lines split on `,`) that `server` supports.
pub fn negotiate_spdy(headers: &HeaderMap, server: &[&str]) -> Result<&'static str, SpdyRefusal> {
    let client = header_list(headers, STREAM_PROTOCOL_HEADER);
    if client.is_empty() {
        return Err(SpdyRefusal::Missing);
    }
    for c in &client {
        if let Some(p) = KNOWN
            .iter()
            .find(|k| **k == c.as_str() && server.contains(k))
        {
            return Ok(p);
        }
    }
    Err(SpdyRefusal::NoOverlap {
        client,
        server: server.iter().map(|s| s.to_string()).collect(),
    })
}

/// Every protocol token this crate knows, so negotiated values can be `&'static str`.
const KNOWN: &[&str] = &[
    CHANNEL_V5,
    CHANNEL_V4,
    CHANNEL_V3,
    CHANNEL_V2,
    CHANNEL_V1,
    BASE64_V4,
    BASE64_V1,
    PORTFORWARD,
    "",
];

/// Picks the WebSocket subprotocol: the first value of the first `Sec-WebSocket-Protocol` line
/// that `server` supports; no header (or an empty one) means `""`. `None` = no overlap (403).
pub fn negotiate_websocket(headers: &HeaderMap, server: &[&str]) -> Option<&'static str> {
    let offered: Vec<&str> = match headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        None => vec![""],
        Some(v) => {
            let list: Vec<&str> = v
                .to_str()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if list.is_empty() { vec![""] } else { list }
        }
    };
    offered.iter().find_map(|o| {
        KNOWN
            .iter()
            .find(|k| **k == *o && server.contains(k))
            .copied()
    })
}

/// The tunnel subprotocols (`SPDY/3.1+…`) offered in `Sec-WebSocket-Protocol`, prefix stripped.
pub fn tunnel_protocols(headers: &HeaderMap) -> Vec<String> {
    header_list(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str())
        .into_iter()
        .filter_map(|p| p.strip_prefix(TUNNEL_PREFIX).map(str::to_string))
        .collect()
}

/// A plain-text response (`Content-Type: text/plain; charset=utf-8`, body = `text` + newline,
/// as Go's `http.Error` writes it).
pub fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(format!("{text}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The 400 sent when an upgrade request lacks the upgrade headers (apimachinery's text).
pub fn missing_upgrade_headers(headers: &HeaderMap) -> Response<Body> {
    let show = |n: header::HeaderName| {
        headers
            .get_all(n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(" ")
    };
    text_response(
        StatusCode::BAD_REQUEST,
        format!(
            "unable to upgrade: missing upgrade headers in request: Connection=[{}] Upgrade=[{}]",
            show(header::CONNECTION),
            show(header::UPGRADE)
        ),
    )
}

/// The `101 Switching Protocols` answer to a SPDY upgrade that negotiated `protocol`.
pub fn spdy_switching(protocol: &str) -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_31));
    if let Ok(v) = HeaderValue::from_str(protocol) {
        h.insert(STREAM_PROTOCOL_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn spdy_client_order_wins() {
        let h = headers(&[
            ("X-Stream-Protocol-Version", "v5.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "channel.k8s.io"),
        ]);
        assert_eq!(negotiate_spdy(&h, SPDY_REMOTECOMMAND), Ok(CHANNEL_V5));
        let h = headers(&[(
            "X-Stream-Protocol-Version",
            "channel.k8s.io, v4.channel.k8s.io",
        )]);
        assert_eq!(negotiate_spdy(&h, SPDY_REMOTECOMMAND), Ok(CHANNEL_V1));
        let cri = &[CHANNEL_V4, CHANNEL_V3, CHANNEL_V2, CHANNEL_V1];
        let h = headers(&[
            ("X-Stream-Protocol-Version", "v5.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ]);
        assert_eq!(negotiate_spdy(&h, cri), Ok(CHANNEL_V4));
    }

    #[test]
    fn spdy_refusals() {
        assert_eq!(
            negotiate_spdy(&HeaderMap::new(), SPDY_REMOTECOMMAND),
            Err(SpdyRefusal::Missing)
        );
        let h = headers(&[("X-Stream-Protocol-Version", "v9.channel.k8s.io, other")]);
        let err = negotiate_spdy(&h, &[PORTFORWARD]).unwrap_err();
        let resp = err.response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            resp.headers()
                .get_all(ACCEPTED_PROTOCOLS_HEADER)
                .iter()
                .collect::<Vec<_>>(),
            vec!["portforward.k8s.io"]
        );
        let body = format!("{:?}", resp.body());
        assert!(body.contains(
            "unable to negotiate protocol: client supports [v9.channel.k8s.io other], server accepts [portforward.k8s.io]"
        ));
        assert_eq!(
            SpdyRefusal::Missing.response().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn websocket_selection() {
        assert_eq!(
            negotiate_websocket(&HeaderMap::new(), WS_REMOTECOMMAND),
            Some("")
        );
        let h = headers(&[(
            "Sec-WebSocket-Protocol",
            "v5.channel.k8s.io,v4.channel.k8s.io",
        )]);
        assert_eq!(negotiate_websocket(&h, WS_REMOTECOMMAND), Some(CHANNEL_V5));
        assert_eq!(negotiate_websocket(&h, WS_PORTFORWARD), Some(CHANNEL_V4));
        let h = headers(&[("Sec-WebSocket-Protocol", "foo, base64.channel.k8s.io")]);
        assert_eq!(negotiate_websocket(&h, WS_REMOTECOMMAND), Some(BASE64_V1));
        let h = headers(&[("Sec-WebSocket-Protocol", "foo")]);
        assert_eq!(negotiate_websocket(&h, WS_REMOTECOMMAND), None);
        // only the first header line counts
        let h = headers(&[
            ("Sec-WebSocket-Protocol", "foo"),
            ("Sec-WebSocket-Protocol", "v4.channel.k8s.io"),
        ]);
        assert_eq!(negotiate_websocket(&h, WS_REMOTECOMMAND), None);
    }

    #[test]
    fn transports() {
        let h = headers(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        assert_eq!(transport(&h), Some(Transport::WebSocket));
        let h = headers(&[
            ("Connection", "keep-alive, upgrade"),
            ("Upgrade", "SPDY/3.1"),
        ]);
        assert_eq!(transport(&h), Some(Transport::Spdy));
        let h = headers(&[("Upgrade", "SPDY/3.1")]);
        assert_eq!(transport(&h), None);
        let h = headers(&[("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io")]);
        assert_eq!(tunnel_protocols(&h), vec![PORTFORWARD.to_string()]);
    }
}
