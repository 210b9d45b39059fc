//! Hostile input from a raw frame-level peer: each violation gets the RST_STREAM or GOAWAY the
//! protocol prescribes, the session survives where only a stream is at fault, and nothing panics
//! or buffers without bound.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{RawPeer, headers, pattern, raw_client_to_server};
use flate2::{Compress, Compression, FlushCompress};
use spdy::frame::{Data, Frame, GoAway, GoAwayStatus, Ping, RstStream, SynStream};
use spdy::{Config, RstStatus, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

/// A control frame's bytes with any type, flags and payload.
fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, 0x03];
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

/// An uncompressed NV block with the given entries, unchecked (any case, any size).
fn nv(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (entries.len() as u32).to_be_bytes().to_vec();
    for (name, value) in entries {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// The first header block of a fresh zlib stream with the SPDY/3 dictionary.
fn compress_first_block(nv: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), true);
    z.set_dictionary(&spdy::DICTIONARY).unwrap();
    let mut out = Vec::with_capacity(nv.len() / 10 + 1024);
    loop {
        let consumed = z.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        z.compress_vec(&nv[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if z.total_in() as usize == nv.len() && out.capacity() > out.len() {
            return out;
        }
    }
}

/// A SYN_STREAM with a hand-made compressed header block.
fn syn_stream_raw(stream_id: u32, block: &[u8]) -> Vec<u8> {
    let mut payload = stream_id.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(block);
    control(1, 0, &payload)
}

fn syn(stream_id: u32) -> Frame {
    Frame::SynStream(SynStream::new(
        stream_id,
        headers(&[("streamtype", "data")]),
    ))
}

fn rst(stream_id: u32, status: RstStatus) -> Frame {
    Frame::RstStream(RstStream { stream_id, status })
}

fn data(stream_id: u32, payload: &'static [u8], fin: bool) -> Frame {
    Frame::Data(Data {
        stream_id,
        fin,
        payload: Bytes::from_static(payload),
    })
}

/// The next frame that is not the session's SETTINGS, within [`WAIT`].
async fn next(peer: &mut RawPeer) -> Option<Frame> {
    tokio::time::timeout(WAIT, peer.recv_skip_settings())
        .await
        .expect("no frame in time")
}

/// The session answers a PING: it is alive.
async fn assert_alive(peer: &mut RawPeer, id: u32) {
    peer.send(Frame::Ping(Ping { id })).await;
    assert_eq!(next(peer).await, Some(Frame::Ping(Ping { id })));
}

/// The session sends GOAWAY `status` and closes the connection.
async fn assert_goaway(
    peer: &mut RawPeer,
    session: &Session,
    last_good: u32,
    status: GoAwayStatus,
) {
    assert_eq!(
        next(peer).await,
        Some(Frame::GoAway(GoAway {
            last_good_stream_id: last_good,
            status
        }))
    );
    assert_eq!(next(peer).await, None);
    tokio::time::timeout(WAIT, session.closed())
        .await
        .expect("session did not end");
}

#[tokio::test]
async fn malformed_frames_get_goaway_protocol_error() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "RST_STREAM of 7 bytes",
            control(3, 0, &[0, 0, 0, 1, 0, 0, 5]),
        ),
        (
            "RST_STREAM status 0",
            control(3, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
        ),
        ("PING of 3 bytes", control(6, 0, &[0, 0, 1])),
        ("GOAWAY of 4 bytes", control(7, 0, &[0, 0, 0, 0])),
        (
            "WINDOW_UPDATE of 7 bytes",
            control(9, 0, &[0, 0, 0, 1, 0, 0, 1]),
        ),
        (
            "WINDOW_UPDATE with flags",
            control(9, 1, &[0, 0, 0, 1, 0, 0, 0, 1]),
        ),
        (
            "SETTINGS count beyond length",
            control(4, 0, &[0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1]),
        ),
        ("SYN_STREAM of 4 bytes", control(1, 0, &[0, 0, 0, 1])),
        (
            "SYN_STREAM with a corrupt block",
            syn_stream_raw(1, &[0x78, 0xbb, 1, 2, 3, 4, 5]),
        ),
        ("SYN_STREAM with the wrong dictionary", {
            let mut z = Compress::new(Compression::default(), true);
            z.set_dictionary(b"not the SPDY dictionary").unwrap();
            let mut block = Vec::with_capacity(256);
            z.compress_vec(&nv(&[(b"a", b"b")]), &mut block, FlushCompress::Sync)
                .unwrap();
            syn_stream_raw(1, &block)
        }),
        ("control frame of version 2", {
            let mut f = control(6, 0, &[0, 0, 0, 1]);
            f[1] = 2;
            f
        }),
    ];
    for (what, bytes) in cases {
        let (mut peer, server, _incoming) = raw_client_to_server(Config::default()).await;
        peer.send_raw(&bytes).await;
        eprintln!("case: {what}");
        assert_goaway(&mut peer, &server, 0, GoAwayStatus::ProtocolError).await;
    }
}

#[tokio::test]
async fn oversized_control_frame_fails_before_its_payload_arrives() {
    let (mut peer, server, _incoming) = raw_client_to_server(Config::default()).await;
    // Announces 16 MiB and sends none of it: the session must not wait (or allocate) for it.
    peer.send_raw(&[0x80, 0x03, 0x00, 0x01, 0x00, 0xFF, 0xFF, 0xFF])
        .await;
    assert_goaway(&mut peer, &server, 0, GoAwayStatus::ProtocolError).await;
}

#[tokio::test]
async fn decompression_bomb_in_a_header_block_gets_goaway() {
    let (mut peer, server, _incoming) = raw_client_to_server(Config::default()).await;
    // 64 MiB of header value compress to some 64 KiB: far beyond the 256 KiB block bound.
    let value = vec![b'a'; 64 * 1024 * 1024];
    let block = compress_first_block(&nv(&[(b"bomb", &value)]));
    drop(value);
    assert!(block.len() < 1024 * 1024, "block of {} bytes", block.len());
    peer.send_raw(&syn_stream_raw(1, &block)).await;
    assert_goaway(&mut peer, &server, 0, GoAwayStatus::ProtocolError).await;
}

#[tokio::test]
async fn unknown_control_frame_types_are_ignored() {
    let (mut peer, _server, mut incoming) = raw_client_to_server(Config::default()).await;
    peer.send_raw(&control(5, 0, &[])).await; // NOOP (SPDY/2)
    peer.send_raw(&control(10, 0, &pattern(40, 1))).await; // CREDENTIAL
    peer.send_raw(&control(0x7777, 0xFF, &pattern(1000, 2)))
        .await;
    assert_alive(&mut peer, 1).await;
    // The header compression context is untouched: streams still open.
    peer.send(syn(1)).await;
    let pending = tokio::time::timeout(WAIT, incoming.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.headers(), &headers(&[("streamtype", "data")]));
}

#[tokio::test]
async fn invalid_header_names_refuse_only_that_stream() {
    let (mut peer, _server, _incoming) = raw_client_to_server(Config::default()).await;
    let block = compress_first_block(&nv(&[(b"Upper", b"x")]));
    peer.send_raw(&syn_stream_raw(1, &block)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(1, RstStatus::ProtocolError))
    );
    assert_alive(&mut peer, 1).await;
}

#[tokio::test]
async fn stream_id_reuse_and_parity_violations_get_rst_protocol_error() {
    let (mut peer, _server, mut incoming) = raw_client_to_server(Config::default()).await;
    peer.send(syn(1)).await;
    let mut first = incoming.accept().await.unwrap().accept();
    assert!(matches!(next(&mut peer).await, Some(Frame::SynReply(r)) if r.stream_id == 1));

    // The same id again breaks that stream: it is reset and reads EOF.
    peer.send(syn(1)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(1, RstStatus::ProtocolError))
    );
    let mut buf = Vec::new();
    first.read_to_end(&mut buf).await.unwrap();
    assert!(first.write_all(b"x").await.is_err());

    // A client may not use even ids.
    peer.send(syn(2)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(2, RstStatus::ProtocolError))
    );
    // Ids only grow.
    peer.send(syn(7)).await;
    let _seven = incoming.accept().await.unwrap().accept();
    assert!(matches!(next(&mut peer).await, Some(Frame::SynReply(r)) if r.stream_id == 7));
    peer.send(syn(5)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(5, RstStatus::ProtocolError))
    );
    assert_alive(&mut peer, 1).await;
}

#[tokio::test]
async fn data_on_unknown_or_finished_streams_is_reset() {
    let (mut peer, _server, mut incoming) = raw_client_to_server(Config::default()).await;
    peer.send(data(9, b"nobody opened this", false)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(9, RstStatus::InvalidStream))
    );

    peer.send(syn(1)).await;
    let mut stream = incoming.accept().await.unwrap().accept();
    assert!(matches!(next(&mut peer).await, Some(Frame::SynReply(r)) if r.stream_id == 1));
    peer.send(data(1, b"last words", true)).await;
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    peer.send(data(1, b"after FIN", false)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(1, RstStatus::StreamAlreadyClosed))
    );
    // Our direction of the stream is still usable.
    stream.write_all(b"reply").await.unwrap();
    assert_eq!(next(&mut peer).await, Some(data(1, b"reply", false)));
    assert_alive(&mut peer, 1).await;
}

#[tokio::test]
async fn syn_stream_after_goaway_is_refused() {
    let (mut peer, server, mut incoming) = raw_client_to_server(Config::default()).await;
    peer.send(syn(1)).await;
    let mut stream = incoming.accept().await.unwrap().accept();
    assert!(matches!(next(&mut peer).await, Some(Frame::SynReply(r)) if r.stream_id == 1));
    // We finish our side, so close() waits for the peer to finish stream 1.
    stream.shutdown().await.unwrap();
    assert_eq!(next(&mut peer).await, Some(data(1, b"", true)));
    let closing = tokio::spawn({
        let server = server.clone();
        async move { server.close().await }
    });
    assert_eq!(
        next(&mut peer).await,
        Some(Frame::GoAway(GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::Ok
        }))
    );
    peer.send(syn(3)).await;
    assert_eq!(
        next(&mut peer).await,
        Some(rst(3, RstStatus::RefusedStream))
    );
    // Finishing stream 1 lets the close complete.
    peer.send(data(1, b"", true)).await;
    assert_eq!(next(&mut peer).await, None);
    tokio::time::timeout(WAIT, closing).await.unwrap().unwrap();
}

#[tokio::test]
async fn garbage_never_panics_and_ends_the_session() {
    for seed in 1..=32u64 {
        let (mut peer, server, _incoming) = raw_client_to_server(Config::default()).await;
        let mut bytes = pattern(4096, seed);
        // Every other case starts like a control frame, to get past the header checks.
        if seed % 2 == 0 {
            bytes[..4].copy_from_slice(&[0x80, 0x03, 0x00, (seed % 10) as u8]);
        }
        peer.send_raw(&bytes).await;
        peer.io.shutdown().await.unwrap();
        // Whatever it decoded, the session ends (a panicked reader would never end it).
        tokio::time::timeout(WAIT, server.closed())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: session did not end"));
        let _ = peer.recv_all().await;
    }
}
