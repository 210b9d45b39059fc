use super::*;
use crate::frame::{GoAwayStatus, RstStatus};
use crate::headers::Headers;
use bytes::Bytes;

fn encode(codec: &mut Codec, frame: Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec.encode(frame, &mut out).unwrap();
    out.to_vec()
}

fn kube_headers(streamtype: &str) -> Headers {
    let mut h = Headers::new();
    h.insert("streamtype", streamtype);
    h.insert("port", "8080");
    h.insert("requestid", "0");
    h
}

#[test]
fn golden_fixed_frames() {
    let mut c = Codec::new().unwrap();
    assert_eq!(
        encode(&mut c, Frame::Ping(Ping { id: 1 })),
        [
            0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01
        ]
    );
    assert_eq!(
        encode(
            &mut c,
            Frame::Data(Data {
                stream_id: 1,
                fin: true,
                payload: Bytes::new()
            })
        ),
        [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]
    );
    assert_eq!(
        encode(
            &mut c,
            Frame::Data(Data {
                stream_id: 3,
                fin: false,
                payload: Bytes::from_static(b"ping0\n")
            })
        ),
        [
            0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x06, b'p', b'i', b'n', b'g', b'0', b'\n'
        ]
    );
    assert_eq!(
        encode(
            &mut c,
            Frame::RstStream(RstStream {
                stream_id: 5,
                status: RstStatus::Cancel
            })
        ),
        [
            0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 5, 0, 0, 0, 5
        ]
    );
    assert_eq!(
        encode(
            &mut c,
            Frame::GoAway(GoAway {
                last_good_stream_id: 0,
                status: GoAwayStatus::Ok
            })
        ),
        [
            0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
}

#[test]
fn golden_syn_stream_header() {
    let mut c = Codec::new().unwrap();
    let wire = encode(
        &mut c,
        Frame::SynStream(SynStream::new(1, kube_headers("error"))),
    );
    assert_eq!(&wire[..4], &[0x80, 0x03, 0x00, 0x01]);
    assert_eq!(wire[4], 0);
    let len = u32::from_be_bytes([0, wire[5], wire[6], wire[7]]) as usize;
    assert_eq!(len, wire.len() - 8);
    assert_eq!(&wire[8..18], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&wire[18..24], &[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
}

/// The observed kubectl frames of PROTOCOLS §1.2, with our first SYN_STREAM in place of Go's
/// (whose compressed bytes were only partly recorded).
#[test]
fn observed_kubectl_sequence_decodes() {
    let mut ours = Codec::new().unwrap();
    let mut wire = BytesMut::new();
    ours.encode(
        Frame::SynStream(SynStream::new(1, kube_headers("error"))),
        &mut wire,
    )
    .unwrap();
    wire.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]);
    wire.extend_from_slice(&[
        0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xc2, 0xaa, 0x19, 0x54, 0x0e, 0x25, 0x12, 0xd6, 0x0b, 0x00, 0x00, 0x00,
        0xff, 0xff,
    ]);
    wire.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x06, 0x70, 0x69, 0x6e, 0x67, 0x30, 0x0a,
    ]);
    wire.extend_from_slice(&[
        0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
    ]);

    let mut rx = Codec::new().unwrap();
    let mut frames = Vec::new();
    while let Some(f) = rx.decode(&mut wire).unwrap() {
        frames.push(f);
    }
    assert!(wire.is_empty());
    assert_eq!(
        frames,
        vec![
            Frame::SynStream(SynStream::new(1, kube_headers("error"))),
            Frame::Data(Data {
                stream_id: 1,
                fin: true,
                payload: Bytes::new()
            }),
            Frame::SynStream(SynStream::new(3, kube_headers("data"))),
            Frame::Data(Data {
                stream_id: 3,
                fin: false,
                payload: Bytes::from_static(b"ping0\n")
            }),
            Frame::Ping(Ping { id: 1 }),
        ]
    );
}

#[test]
fn limits_are_enforced_from_the_header() {
    let mut rx = Codec::with_limits(1024, 1024, 1024).unwrap();
    let mut buf = BytesMut::from(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x04, 0x01][..]);
    assert!(matches!(
        rx.decode(&mut buf),
        Err(FrameError::TooLarge {
            len: 1025,
            max: 1024
        })
    ));
    let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x04, 0x00, 0x10, 0x00, 0x00][..]);
    assert!(matches!(
        rx.decode(&mut buf),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn noop_credential_and_unknown_types_are_skipped() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&[0x80, 0x03, 0x00, 0x05, 0, 0, 0, 0]); // NOOP
    bytes.extend_from_slice(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 3, 1, 2, 3]); // CREDENTIAL
    bytes.extend_from_slice(&[0x80, 0x03, 0x00, 0x63, 0xff, 0, 0, 1, 9]); // type 99
    bytes.extend_from_slice(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]); // PING 1
    let mut rx = Codec::new().unwrap();
    // Byte by byte: a partly received unknown frame waits like any other.
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[b]);
        if let Some(f) = rx.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(frames, vec![Frame::Ping(crate::frame::Ping { id: 1 })]);
    assert!(buf.is_empty());
}

#[test]
fn oversized_unknown_type_and_bad_version_fail() {
    for (head, want) in [
        ([0x80, 0x03, 0x00, 0x63, 0, 0xff, 0, 0], "exceeds"),
        ([0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4], "version 2"),
    ] {
        let mut rx = Codec::new().unwrap();
        let mut buf = BytesMut::from(&head[..]);
        let e = rx.decode(&mut buf).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
}
