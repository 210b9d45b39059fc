//! Flow control: real per-stream windows between two sessions of this crate, none against a
//! peer that never shows flow control (Go's spdystream), and enforcement of an agreed window.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    headers, open_accept, pattern, raw_client_to_server, raw_server_to_client, session_pair,
};
use spdy::frame::{
    Data, Frame, Ping, RstStream, Setting, Settings, SynReply, SynStream, WindowUpdate,
};
use spdy::{Config, RstStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INITIAL_WINDOW_SIZE: u32 = 7;

fn window_settings(value: u32) -> Frame {
    Frame::Settings(Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: INITIAL_WINDOW_SIZE,
            value,
        }],
    })
}

fn data(stream_id: u32, payload: Vec<u8>, fin: bool) -> Frame {
    Frame::Data(Data {
        stream_id,
        fin,
        payload: Bytes::from(payload),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_does_not_block_another_between_podway_sessions() {
    let config = Config {
        max_stream_buffer: 256 * 1024,
        ..Config::default()
    };
    let mut p = session_pair(config).await;
    let (mut slow, mut slow_server) =
        open_accept(&p.client, &mut p.server_incoming, headers(&[("s", "slow")])).await;
    let (mut fast, mut fast_server) =
        open_accept(&p.client, &mut p.server_incoming, headers(&[("s", "fast")])).await;

    // Far more than the receive window on a stream nobody reads yet …
    let slow_data = pattern(16 * 1024 * 1024, 1);
    let slow_writer = {
        let data = slow_data.clone();
        tokio::spawn(async move {
            slow.write_all(&data).await.unwrap();
            slow.shutdown().await.unwrap();
        })
    };
    // … while megabytes pass on the other stream.
    let fast_data = pattern(8 * 1024 * 1024, 2);
    let fast_writer = {
        let data = fast_data.clone();
        tokio::spawn(async move {
            fast.write_all(&data).await.unwrap();
            fast.shutdown().await.unwrap();
        })
    };
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), fast_server.read_to_end(&mut got))
        .await
        .expect("the stalled stream blocked the other one")
        .unwrap();
    assert!(got == fast_data);
    fast_writer.await.unwrap();
    // The stalled stream's writer is held back by its window, not buffered without limit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !slow_writer.is_finished(),
        "the slow writer ignored its window"
    );

    let mut got = Vec::new();
    slow_server.read_to_end(&mut got).await.unwrap();
    assert!(got == slow_data);
    slow_writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_without_window_updates_sends_and_receives_beyond_64k() {
    const TO_PEER: usize = 1024 * 1024;
    const FROM_PEER: usize = 3 * 1024 * 1024;
    let (mut peer, client, _incoming) = raw_server_to_client(Config::default()).await;
    let app = tokio::spawn(async move {
        let stream = client
            .open(headers(&[("streamtype", "data")]))
            .await
            .unwrap();
        let (mut rx, mut tx) = stream.into_split();
        let writer = tokio::spawn(async move {
            tx.write_all(&pattern(TO_PEER, 5)).await.unwrap();
            tx.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        (got, client)
    });

    // Like spdystream: no SETTINGS, no WINDOW_UPDATE, ever.
    let Some(Frame::SynStream(syn)) = peer.recv_skip_settings().await else {
        panic!("expected SYN_STREAM");
    };
    peer.send(Frame::SynReply(SynReply::new(
        syn.stream_id,
        Default::default(),
    )))
    .await;
    let sent = pattern(FROM_PEER, 6);
    for chunk in sent.chunks(32 * 1024) {
        peer.send(data(syn.stream_id, chunk.to_vec(), false)).await;
    }
    peer.send(data(syn.stream_id, Vec::new(), true)).await;

    let mut received = Vec::new();
    loop {
        match peer.recv().await.expect("connection ended early") {
            Frame::Data(d) => {
                received.extend_from_slice(&d.payload);
                if d.fin {
                    break;
                }
            }
            Frame::WindowUpdate(w) => {
                panic!("WINDOW_UPDATE sent to a peer without flow control: {w:?}")
            }
            Frame::RstStream(r) => panic!("stream reset: {r:?}"),
            _ => {}
        }
    }
    assert!(received == pattern(TO_PEER, 5));
    let (got, _client) = app.await.unwrap();
    assert!(got == sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_honours_the_window_of_a_peer_that_does_flow_control() {
    const WINDOW: u32 = 16 * 1024;
    let (mut peer, client, _incoming) = raw_server_to_client(Config::default()).await;
    let app = tokio::spawn(write_one_stream(client, 100 * 1024, 7));
    let Some(Frame::SynStream(syn)) = peer.recv_skip_settings().await else {
        panic!("expected SYN_STREAM");
    };
    peer.send(window_settings(WINDOW)).await;
    peer.send(Frame::SynReply(SynReply::new(
        syn.stream_id,
        Default::default(),
    )))
    .await;

    let mut received = 0usize;
    let mut fin = false;
    while !fin {
        // Everything the window allows arrives, then nothing until credit is given.
        let mut round = 0usize;
        while let Some(frame) = peer.recv_within(Duration::from_millis(300)).await {
            if let Frame::Data(d) = frame {
                round += d.payload.len();
                fin |= d.fin;
            }
        }
        assert!(
            round <= WINDOW as usize,
            "{round} bytes sent on a {WINDOW}-byte window"
        );
        assert!(round == WINDOW as usize || fin, "only {round} bytes sent");
        received += round;
        peer.send(Frame::WindowUpdate(WindowUpdate {
            stream_id: syn.stream_id,
            delta: WINDOW,
        }))
        .await;
    }
    assert_eq!(received, 100 * 1024);
    app.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrunning_the_agreed_window_gets_flow_control_error() {
    const WINDOW: usize = 64 * 1024;
    let config = Config {
        max_stream_buffer: WINDOW,
        ..Config::default()
    };
    let (mut peer, _server, mut incoming) = raw_client_to_server(config).await;
    peer.send(window_settings(WINDOW as u32)).await;
    peer.send(Frame::SynStream(SynStream::new(1, headers(&[("a", "b")]))))
        .await;
    let stream = incoming.accept().await.unwrap().accept();
    // The server advertises its window first.
    assert_eq!(peer.recv().await, Some(window_settings(WINDOW as u32)));
    assert!(matches!(peer.recv().await, Some(Frame::SynReply(r)) if r.stream_id == 1));

    // Exactly the window is fine (nobody reads) …
    for chunk in pattern(WINDOW, 8).chunks(16 * 1024) {
        peer.send(data(1, chunk.to_vec(), false)).await;
    }
    assert_eq!(peer.recv_within(Duration::from_millis(200)).await, None);
    // … one byte more is not.
    peer.send(data(1, vec![0], false)).await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream(RstStream {
            stream_id: 1,
            status: RstStatus::FlowControlError
        }))
    );
    // The session lives on; the stream keeps what arrived within the window.
    peer.send(Frame::Ping(Ping { id: 1 })).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping(Ping { id: 1 })));
    let mut stream = stream;
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert!(got == pattern(WINDOW, 8));
}

/// Both directions of one stream between two podway sessions with a small window: thousands of
/// WINDOW_UPDATEs cross the DATA. Sessions without pings have nothing else to wake a stalled
/// reader or writer, so a lost wakeup in the control path would hang this forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_updates_in_both_directions_never_stall_the_session() {
    const LEN: usize = 4 * 1024 * 1024;
    let config = Config {
        max_stream_buffer: 16 * 1024,
        max_session_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut p = session_pair(config).await;
    let (client, server) =
        open_accept(&p.client, &mut p.server_incoming, headers(&[("s", "echo")])).await;
    let (mut server_r, mut server_w) = server.into_split();
    // The server echoes everything back as it arrives.
    let echo = tokio::spawn(async move {
        tokio::io::copy(&mut server_r, &mut server_w).await.unwrap();
        server_w.shutdown().await.unwrap();
    });
    let (mut client_r, mut client_w) = client.into_split();
    let sent = pattern(LEN, 9);
    let writer = {
        let sent = sent.clone();
        async move {
            client_w.write_all(&sent).await.unwrap();
            client_w.shutdown().await.unwrap();
        }
    };
    let mut got = Vec::with_capacity(LEN);
    let ((), read) = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join(writer, client_r.read_to_end(&mut got)),
    )
    .await
    .expect("the transfer stalled");
    read.unwrap();
    assert!(got == sent, "echoed bytes differ");
    echo.await.unwrap();
}

/// SPDY/3.1 session window: once the peer sends WINDOW_UPDATE on stream 0, the DATA of all
/// streams together stays within it, however large the stream windows are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_window_binds_a_peer_that_sends_session_updates() {
    const SESSION: usize = 64 * 1024 + 1;
    let (mut peer, client, _incoming) = raw_server_to_client(Config::default()).await;
    let app = tokio::spawn(write_one_stream(client, 200 * 1024, 11));
    let Some(Frame::SynStream(syn)) = peer.recv_skip_settings().await else {
        panic!("expected SYN_STREAM");
    };
    peer.send(window_settings(16 * 1024 * 1024)).await;
    // Session credit of 1 byte: the session window is now 64 KiB + 1 and binds.
    peer.send(Frame::WindowUpdate(WindowUpdate {
        stream_id: 0,
        delta: 1,
    }))
    .await;
    peer.send(Frame::SynReply(SynReply::new(
        syn.stream_id,
        Default::default(),
    )))
    .await;
    let mut received = 0usize;
    while let Some(frame) = peer.recv_within(Duration::from_millis(300)).await {
        if let Frame::Data(d) = frame {
            received += d.payload.len();
        }
    }
    assert!(
        received <= SESSION,
        "{received} bytes on a {SESSION}-byte session window"
    );
    assert_eq!(received, SESSION, "the session window was not used up");
    peer.send(Frame::WindowUpdate(WindowUpdate {
        stream_id: 0,
        delta: 1 << 20,
    }))
    .await;
    let mut fin = false;
    while !fin {
        if let Frame::Data(d) = peer.recv().await.expect("connection ended early") {
            received += d.payload.len();
            fin = d.fin;
        }
    }
    assert_eq!(received, 200 * 1024);
    app.await.unwrap();
}

/// Opens a data stream on `client`, writes `len` bytes of pattern `seed` and half-closes it;
/// returns the stream and the session (kept alive for the caller).
async fn write_one_stream(
    client: spdy::Session,
    len: usize,
    seed: u64,
) -> (spdy::Stream, spdy::Session) {
    let mut stream = client
        .open(headers(&[("streamtype", "data")]))
        .await
        .unwrap();
    stream.write_all(&pattern(len, seed)).await.unwrap();
    stream.shutdown().await.unwrap();
    (stream, client)
}
