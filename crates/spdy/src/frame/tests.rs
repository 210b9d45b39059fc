use super::*;
use crate::codec::Codec;
use crate::headers::Headers;
use bytes::Bytes;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn rst_status() -> impl Strategy<Value = RstStatus> {
    (1u32..=11).prop_map(|v| RstStatus::from_u32(v).unwrap())
}

fn headers() -> impl Strategy<Value = Headers> {
    proptest::collection::btree_map("[a-z][a-z0-9-]{0,10}", "[ -~]{0,16}", 0..5).prop_map(|m| {
        let mut h = Headers::new();
        for (n, v) in m {
            h.insert(&n, &v);
        }
        h
    })
}

fn stream_id() -> impl Strategy<Value = u32> {
    1u32..=MAX_STREAM_ID
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            stream_id(),
            0u32..=MAX_STREAM_ID,
            0u8..8,
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            headers()
        )
            .prop_map(
                |(stream_id, associated_id, priority, slot, fin, unidirectional, headers)| {
                    Frame::SynStream(SynStream {
                        stream_id,
                        associated_id,
                        priority,
                        slot,
                        fin,
                        unidirectional,
                        headers,
                    })
                }
            ),
        (stream_id(), any::<bool>(), headers()).prop_map(|(stream_id, fin, headers)| {
            Frame::SynReply(SynReply {
                stream_id,
                fin,
                headers,
            })
        }),
        (stream_id(), any::<bool>(), headers()).prop_map(|(stream_id, fin, headers)| {
            Frame::Headers(HeadersFrame {
                stream_id,
                fin,
                headers,
            })
        }),
        (stream_id(), rst_status())
            .prop_map(|(stream_id, status)| Frame::RstStream(RstStream { stream_id, status })),
        (
            any::<bool>(),
            proptest::collection::vec((any::<u8>(), 0u32..0x0100_0000, any::<u32>()), 0..6)
        )
            .prop_map(|(clear, e)| Frame::Settings(Settings {
                clear,
                entries: e
                    .into_iter()
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect(),
            })),
        any::<u32>().prop_map(|id| Frame::Ping(Ping { id })),
        (
            0u32..=MAX_STREAM_ID,
            prop_oneof![
                Just(GoAwayStatus::Ok),
                Just(GoAwayStatus::ProtocolError),
                Just(GoAwayStatus::InternalError)
            ]
        )
            .prop_map(|(last_good_stream_id, status)| Frame::GoAway(GoAway {
                last_good_stream_id,
                status
            })),
        (0u32..=MAX_STREAM_ID, 0u32..=0x7FFF_FFFF)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate(WindowUpdate { stream_id, delta })),
        (
            stream_id(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(stream_id, fin, p)| Frame::Data(Data {
                stream_id,
                fin,
                payload: Bytes::from(p)
            })),
    ]
}

proptest! {
    /// Every frame type survives encode → decode, also split at arbitrary read boundaries.
    #[test]
    fn frames_round_trip(frames in proptest::collection::vec(frame(), 1..10), cut in any::<prop::sample::Index>()) {
        let mut tx = Codec::new().unwrap();
        let mut rx = Codec::new().unwrap();
        let mut wire = BytesMut::new();
        for f in &frames {
            tx.encode(f.clone(), &mut wire).unwrap();
        }
        let cut = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut decoded = Vec::new();
        while let Some(f) = rx.decode(&mut buf).unwrap() {
            decoded.push(f);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = rx.decode(&mut buf).unwrap() {
            decoded.push(f);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    /// Arbitrary bytes produce frames or errors, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut rx = Codec::new().unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = rx.decode(&mut buf) {}
    }
}

#[test]
fn head_parses_control_and_data() {
    assert_eq!(
        Head::parse(&[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04]),
        Head::Control {
            version: 3,
            kind: 6,
            flags: 0,
            length: 4
        }
    );
    assert_eq!(
        Head::parse(&[0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]),
        Head::Data {
            stream_id: 1,
            flags: 1,
            length: 0
        }
    );
}

#[test]
fn rst_status_zero_and_unknown_are_rejected() {
    assert!(RstStream::decode(&[0, 0, 0, 1, 0, 0, 0, 0]).is_err());
    assert!(RstStream::decode(&[0, 0, 0, 1, 0, 0, 0, 12]).is_err());
    assert_eq!(
        RstStream::decode(&[0, 0, 0, 1, 0, 0, 0, 5]).unwrap(),
        RstStream {
            stream_id: 1,
            status: RstStatus::Cancel
        }
    );
}

#[test]
fn fixed_length_frames_check_their_length() {
    assert!(Ping::decode(0, &[0, 0, 0]).is_err());
    assert!(Ping::decode(0, &[0, 0, 0, 1, 0]).is_err());
    assert!(Ping::decode(1, &[0, 0, 0, 1]).is_err());
    assert!(GoAway::decode(0, &[0; 4]).is_err());
    assert!(WindowUpdate::decode(0, &[0; 12]).is_err());
    assert!(Settings::decode(0, &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}
