//! Entry points of the cargo-fuzz targets in `fuzz/`, public so that `tests/fuzz_corpus.rs`
//! replays their seed corpora on stable.
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::portforward::headers::{
    HeaderError, StreamType, parse_port_query, parse_stream_headers,
};
use crate::ws::{CLOSE_CHANNEL, Encoding, Inbound, decode_bytes, encode};

/// One received WebSocket channel message: the first byte of `data` picks the protocol (bit 0:
/// base64 encoding, bit 1: v5 close signals), the rest is the message payload. Decodes it and
/// panics if the result breaks an invariant: a close signal is exactly `FF <channel < 5>` and
/// only under v5; a decoded data message encodes back to the bytes it came from.
pub fn ws_channel_message(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let encoding = if selector & 1 == 1 {
        Encoding::Base64
    } else {
        Encoding::Binary
    };
    let v5 = selector & 2 == 2;
    match decode_bytes(encoding, v5, Bytes::copy_from_slice(message)) {
        Ok(Inbound::Close { channel }) => {
            assert!(v5 && channel < 5);
            assert_eq!(message, [CLOSE_CHANNEL, channel]);
        }
        Ok(Inbound::Data { channel, payload }) => {
            assert!(!(v5 && message.first() == Some(&CLOSE_CHANNEL)));
            // Base64 channel digits at or above 0x80 are not one UTF-8 byte; no real TEXT
            // message decodes to them with a valid payload.
            if encoding == Encoding::Binary || message[0] < 0x80 {
                let again = match encode(encoding, channel, &payload) {
                    Message::Binary(b) => b,
                    Message::Text(t) => Bytes::from(t),
                    other => panic!("encode produced {other:?}"),
                };
                assert_eq!(again.as_ref(), message);
            }
        }
        Ok(Inbound::Ignored) => {
            assert!(message.is_empty() || encoding == Encoding::Base64);
        }
        Err(_) => assert!(v5 && message.first() == Some(&CLOSE_CHANNEL)),
    }
}

/// One port-forward stream's headers as text, one `name: value` pair per line (a line without
/// `:` is a name with an empty value; bytes that are not UTF-8 are replaced). Parses them as the
/// SPDY server does, and the `port` values as a legacy WebSocket query; panics if a result breaks
/// an invariant: an accepted stream has a non-zero port equal to its first `port` header, the
/// type its first `streamtype` header names and the request id its first `requestid` header
/// (or the stream-id fallback); a refusal names what was wrong.
pub fn portforward_headers(data: &[u8]) {
    const STREAM_ID: u32 = 3;
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name.trim(), value.trim()),
            None => (line.trim(), ""),
        })
        .collect();
    let headers: spdy::Headers = pairs.iter().copied().collect();
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    match parse_stream_headers(&headers, STREAM_ID) {
        Ok(parsed) => {
            assert_ne!(parsed.port, 0);
            assert_eq!(first("port").map(str::parse::<u16>), Some(Ok(parsed.port)));
            let kind = first("streamtype").map(str::to_ascii_lowercase);
            assert_eq!(kind.as_deref(), Some(parsed.stream_type.as_str()));
            let fallback = match parsed.stream_type {
                StreamType::Error => STREAM_ID,
                StreamType::Data => STREAM_ID - 2,
            };
            let request = first("requestid").map_or(fallback.to_string(), str::to_owned);
            assert_eq!(parsed.request, request);
        }
        Err(e) => {
            let text = e.to_string();
            match &e {
                HeaderError::Missing(name) => assert!(text.contains(name)),
                HeaderError::StreamType(v) => {
                    assert!(text.contains("streamtype") && text.contains(&format!("{v:?}")))
                }
                HeaderError::Port { value, .. } => {
                    assert!(text.contains("\"port\"") && text.contains(&format!("{value:?}")));
                    assert!(!matches!(value.parse::<u16>(), Ok(p) if p > 0));
                }
            }
        }
    }
    let ports: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| *n == "port")
        .map(|(_, v)| *v)
        .collect();
    match parse_port_query(ports.iter().copied()) {
        Ok(parsed) => {
            assert_eq!(parsed.len(), ports.len());
            assert!(
                parsed
                    .iter()
                    .zip(&ports)
                    .all(|(p, v)| *p > 0 && v.parse() == Ok(*p))
            );
        }
        Err(e) => assert!(
            ports.is_empty() && matches!(e, HeaderError::Missing(_))
                || ports
                    .iter()
                    .any(|v| !matches!(v.parse::<u16>(), Ok(p) if p > 0))
        ),
    }
}
