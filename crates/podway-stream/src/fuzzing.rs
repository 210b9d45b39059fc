//! Entry points of the cargo-fuzz targets in `fuzz/`, public so that `tests/ws_fuzz_corpus.rs`
//! replays their seed corpora on stable.
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

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
