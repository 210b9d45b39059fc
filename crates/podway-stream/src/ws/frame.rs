//! Kubernetes channel framing inside WebSocket messages.
//!
//! Binary protocols: `[channel][payload]` in a BINARY message. Base64 protocols: `'0'+channel`
//! then the standard padded base64 of the payload, in a TEXT message. v5 adds the client's
//! `FF <channel>` close signal.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::Error;

/// How channel payloads are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Raw bytes in BINARY messages.
    Binary,
    /// Base64 text in TEXT messages.
    Base64,
}

/// The v5 close-signal marker byte.
pub const CLOSE_CHANNEL: u8 = 0xFF;

/// One decoded inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A payload for a channel.
    Data {
        /// The channel number.
        channel: u8,
        /// The (decoded) payload.
        payload: Bytes,
    },
    /// v5: the client half-closed a channel.
    Close {
        /// The closed channel.
        channel: u8,
    },
    /// Nothing to deliver (empty message, control frame, undecodable base64).
    Ignored,
}

/// Encodes `payload` for `channel`.
pub fn encode(encoding: Encoding, channel: u8, payload: &[u8]) -> Message {
    match encoding {
        Encoding::Binary => {
            let mut buf = Vec::with_capacity(payload.len() + 1);
            buf.push(channel);
            buf.extend_from_slice(payload);
            Message::Binary(Bytes::from(buf))
        }
        Encoding::Base64 => {
            let mut text = String::with_capacity(payload.len() * 4 / 3 + 5);
            text.push(char::from(b'0'.wrapping_add(channel)));
            STANDARD.encode_string(payload, &mut text);
            Message::text(text)
        }
    }
}

/// Decodes an inbound data message. TEXT and BINARY are both accepted as bytes; with `v5` a
/// message starting `FF` is a close signal (exactly 2 bytes, channel < 5, else a protocol error).
pub fn decode(encoding: Encoding, v5: bool, msg: Message) -> Result<Inbound, Error> {
    match msg {
        Message::Binary(b) => decode_bytes(encoding, v5, b),
        Message::Text(t) => decode_bytes(encoding, v5, Bytes::from(t)),
        _ => Ok(Inbound::Ignored),
    }
}

/// Decodes the payload of an inbound TEXT or BINARY message, as [`decode`].
pub fn decode_bytes(encoding: Encoding, v5: bool, data: Bytes) -> Result<Inbound, Error> {
    let Some(&first) = data.first() else {
        return Ok(Inbound::Ignored);
    };
    if v5 && first == CLOSE_CHANNEL {
        if data.len() != 2 || data[1] >= 5 {
            return Err(Error::Protocol(format!(
                "invalid close message: {} bytes, channel {}",
                data.len(),
                data.get(1).copied().unwrap_or(0)
            )));
        }
        return Ok(Inbound::Close { channel: data[1] });
    }
    match encoding {
        Encoding::Binary => Ok(Inbound::Data {
            channel: first,
            payload: data.slice(1..),
        }),
        Encoding::Base64 => {
            let Some(channel) = first.checked_sub(b'0') else {
                return Ok(Inbound::Ignored);
            };
            match STANDARD.decode(&data[1..]) {
                Ok(payload) => Ok(Inbound::Data {
                    channel,
                    payload: Bytes::from(payload),
                }),
                Err(e) => {
                    tracing::debug!(error = %e, channel, "dropping undecodable base64 message");
                    Ok(Inbound::Ignored)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_golden() {
        assert_eq!(
            encode(Encoding::Binary, 1, b""),
            Message::Binary(Bytes::from_static(&[1]))
        );
        assert_eq!(
            encode(Encoding::Binary, 3, b"{}"),
            Message::Binary(Bytes::from_static(b"\x03{}"))
        );
        let got = decode(
            Encoding::Binary,
            true,
            Message::Binary(Bytes::from_static(b"\x00hello\n")),
        )
        .unwrap();
        assert_eq!(
            got,
            Inbound::Data {
                channel: 0,
                payload: Bytes::from_static(b"hello\n")
            }
        );
    }

    #[test]
    fn base64_golden() {
        assert_eq!(encode(Encoding::Base64, 1, b""), Message::text("1"));
        assert_eq!(encode(Encoding::Base64, 1, b"hi"), Message::text("1aGk="));
        // legacy port-forward first message for port 8080 on the data channel
        assert_eq!(
            encode(Encoding::Base64, 0, &8080u16.to_le_bytes()),
            Message::text("0kB8=")
        );
        let got = decode(Encoding::Base64, false, Message::text("0aGk=")).unwrap();
        assert_eq!(
            got,
            Inbound::Data {
                channel: 0,
                payload: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(
            decode(Encoding::Base64, false, Message::text("0!!")).unwrap(),
            Inbound::Ignored
        );
    }

    #[test]
    fn text_frames_on_binary_protocols_and_empty() {
        let got = decode(Encoding::Binary, false, Message::text("\u{0}ls\n")).unwrap();
        assert_eq!(
            got,
            Inbound::Data {
                channel: 0,
                payload: Bytes::from_static(b"ls\n")
            }
        );
        assert_eq!(
            decode(Encoding::Binary, true, Message::Binary(Bytes::new())).unwrap(),
            Inbound::Ignored
        );
    }

    #[test]
    fn v5_close() {
        let close = Message::Binary(Bytes::from_static(&[0xFF, 0]));
        assert_eq!(
            decode(Encoding::Binary, true, close.clone()).unwrap(),
            Inbound::Close { channel: 0 }
        );
        // not v5: 255 is just an unknown channel
        assert!(matches!(
            decode(Encoding::Binary, false, close).unwrap(),
            Inbound::Data { channel: 255, .. }
        ));
        assert!(
            decode(
                Encoding::Binary,
                true,
                Message::Binary(Bytes::from_static(&[0xFF, 7]))
            )
            .is_err()
        );
        assert!(
            decode(
                Encoding::Binary,
                true,
                Message::Binary(Bytes::from_static(&[0xFF, 0, 0]))
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn channel_frames_round_trip(channel in 0u8..5, payload in proptest::collection::vec(any::<u8>(), 0..2048), base64 in any::<bool>(), v5 in any::<bool>()) {
            let encoding = if base64 { Encoding::Base64 } else { Encoding::Binary };
            let decoded = decode(encoding, v5 && !base64, encode(encoding, channel, &payload)).unwrap();
            prop_assert_eq!(decoded, Inbound::Data { channel, payload: Bytes::from(payload) });
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
            let _ = decode(Encoding::Binary, v5, Message::Binary(Bytes::from(data.clone())));
            if let Ok(text) = String::from_utf8(data) {
                let _ = decode(Encoding::Base64, false, Message::text(text));
            }
        }
    }
}
