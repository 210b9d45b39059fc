//! Both ends are this crate's sessions, over loopback TCP.

mod common;

use common::{headers, open_accept, pattern, session_pair};
use sha2::{Digest, Sha256};
use spdy::{Config, Error, RstStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server accepts every stream and echoes it until the client's FIN, then half-closes.
fn spawn_echo_server(mut incoming: spdy::Incoming) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut n = 0;
        let mut tasks = Vec::new();
        while let Some(pending) = incoming.accept().await {
            n += 1;
            let mut stream = pending.accept();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let k = stream.read(&mut buf).await.unwrap();
                    if k == 0 {
                        break;
                    }
                    stream.write_all(&buf[..k]).await.unwrap();
                }
                stream.shutdown().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_echo_concurrently() {
    let p = session_pair(Config::default()).await;
    let server = spawn_echo_server(p.server_incoming);
    let mut clients = Vec::new();
    for i in 0..50u64 {
        let session = p.client.clone();
        clients.push(tokio::spawn(async move {
            let id = i.to_string();
            let mut s = session
                .open(headers(&[("streamtype", "data"), ("requestid", &id)]))
                .await
                .unwrap();
            assert_eq!(s.id() % 2, 1);
            assert_eq!(s.headers().get("requestID"), Some(id.as_str()));
            let data = pattern(100_000 + i as usize, i);
            let (mut r, mut w) = tokio::io::split(&mut s);
            let write = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let read = r.read_to_end(&mut back);
            let (_, n) = tokio::join!(write, read);
            n.unwrap();
            assert_eq!(back, data);
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    p.client.close().await;
    assert_eq!(server.await.unwrap(), 50);
}

#[tokio::test]
async fn server_sees_request_headers_and_ids() {
    let mut p = session_pair(Config::default()).await;
    let (client, server) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "error"), ("port", "8080")]),
    )
    .await;
    assert_eq!(client.id(), 1);
    assert_eq!(server.id(), 1);
    assert_eq!(server.headers().get("StreamType"), Some("error"));
    assert_eq!(server.headers().get("port"), Some("8080"));
}

#[tokio::test]
async fn each_direction_half_closes_independently() {
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "stdin")]),
    )
    .await;
    let mut client = client;
    let mut server = pending;

    // Client finishes first; the server still writes afterwards.
    client.write_all(b"to server").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"to server");
    server.write_all(b"after your FIN").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"after your FIN");
    // Writing after our own FIN fails.
    assert!(client.write_all(b"x").await.is_err());

    // The other order on a second stream, with split halves.
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "stdout")]),
    )
    .await;
    let (mut c_recv, mut c_send) = client.into_split();
    let (mut s_recv, mut s_send) = pending.into_split();
    s_send.write_all(b"server first").await.unwrap();
    s_send.shutdown().await.unwrap();
    let mut got = Vec::new();
    c_recv.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"server first");
    c_send.write_all(b"client still writes").await.unwrap();
    c_send.shutdown().await.unwrap();
    let mut got = Vec::new();
    s_recv.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"client still writes");
}

#[tokio::test]
async fn rst_reads_as_eof_after_buffered_data_and_fails_writes() {
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "stdout")]),
    )
    .await;
    let mut client = client;
    let mut server = pending;
    server.write_all(b"last words").await.unwrap();
    server.reset(RstStatus::Cancel);
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    // Once the RST has arrived (reads hit EOF), writes fail with a reset error.
    let err = client.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn rejected_stream_fails_open() {
    let mut p = session_pair(Config::default()).await;
    let open = p.client.open(headers(&[("streamtype", "bogus")]));
    let reject = async {
        p.server_incoming.accept().await.unwrap().reject();
    };
    let (result, ()) = tokio::join!(open, reject);
    match result {
        Err(Error::Refused {
            stream_id: 1,
            status: RstStatus::Cancel,
        }) => {}
        other => panic!("expected refusal, got {other:?}"),
    }
    // The session is still usable.
    p.client.ping().await.unwrap();
}

#[tokio::test]
async fn dropped_stream_resets_and_is_released() {
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    let mut server = pending;
    let mut client = client;
    client.write_all(b"unfinished").await.unwrap();
    drop(client);
    // The data written before the drop arrives, then EOF from RST CANCEL.
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"unfinished");
}

#[tokio::test]
async fn dropping_only_the_send_half_half_closes() {
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    let (mut c_recv, c_send) = client.into_split();
    let mut server = pending;
    drop(c_send);
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty());
    // The stream was half-closed, not reset: the server can still answer.
    server.write_all(b"answer").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    c_recv.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"answer");
}

#[tokio::test]
async fn ping_both_ways() {
    let p = session_pair(Config::default()).await;
    p.client.ping().await.unwrap();
    // The server may ping once the client has spoken (the client's ping above).
    p.server.ping().await.unwrap();
    p.client.ping().await.unwrap();
}

#[tokio::test]
async fn close_ends_both_sessions_and_streams() {
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    let _client = client;
    let mut server = pending;
    p.client.close().await;
    assert!(p.client.is_closed());
    // The server sees the RST (EOF), then GOAWAY ends its session.
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    p.server.closed().await;
    assert!(p.server_incoming.accept().await.is_none());
    assert!(matches!(
        p.server.open(headers(&[("a", "b")])).await,
        Err(Error::SessionClosed)
    ));
    assert!(matches!(p.client.ping().await, Err(Error::SessionClosed)));
}

#[tokio::test]
async fn close_waits_for_the_peer_to_finish_half_closed_streams() {
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    let mut client = client;
    let mut server = pending;
    client.shutdown().await.unwrap();
    let closing = {
        let session = p.client.clone();
        tokio::spawn(async move { session.close().await })
    };
    // The server finishes its side after the client started closing; the data still arrives.
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    server.write_all(b"final").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"final");
    closing.await.unwrap();
    p.server.closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_through_one_stream() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let mut p = session_pair(Config::default()).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    let mut client = client;
    let mut server = pending;
    let reader = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n;
        }
        (total, hash.finalize())
    });
    let block = pattern(1024 * 1024, 7);
    let mut hash = Sha256::new();
    for i in 0..TOTAL / block.len() {
        // Vary the content per block so reordering would be detected.
        let mut chunk = block.clone();
        chunk[0] = i as u8;
        hash.update(&chunk);
        client.write_all(&chunk).await.unwrap();
    }
    client.shutdown().await.unwrap();
    let (total, digest) = reader.await.unwrap();
    assert_eq!(total, TOTAL);
    assert_eq!(digest, hash.finalize());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_stream_does_not_block_others_within_its_buffer() {
    let config = Config {
        max_stream_buffer: 1024 * 1024,
        ..Config::default()
    };
    let mut p = session_pair(config).await;
    let (slow, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "slow")]),
    )
    .await;
    let mut slow = slow;
    let mut slow_server = pending;
    let (fast, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "fast")]),
    )
    .await;
    let mut fast = fast;
    let mut fast_server = pending;

    // Less than the bound on the stream nobody reads yet …
    let slow_data = pattern(900 * 1024, 1);
    slow.write_all(&slow_data).await.unwrap();
    slow.shutdown().await.unwrap();
    // … while 8 MiB pass on the other stream.
    let fast_data = pattern(8 * 1024 * 1024, 2);
    let writer = {
        let data = fast_data.clone();
        tokio::spawn(async move {
            fast.write_all(&data).await.unwrap();
            fast.shutdown().await.unwrap();
        })
    };
    let mut got = Vec::new();
    fast_server.read_to_end(&mut got).await.unwrap();
    assert!(got == fast_data);
    writer.await.unwrap();
    let mut got = Vec::new();
    slow_server.read_to_end(&mut got).await.unwrap();
    assert!(got == slow_data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stream_buffer_pauses_then_resumes() {
    let config = Config {
        max_stream_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut p = session_pair(config).await;
    let (a, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "a")]),
    )
    .await;
    let mut a = a;
    let mut a_server = pending;
    // Far more than the buffer and the socket buffers hold: the writer can only finish if the
    // reader, paused at the bound, resumes as the application reads.
    let data = pattern(16 * 1024 * 1024, 3);
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            a.write_all(&data).await.unwrap();
            a.shutdown().await.unwrap();
        })
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = a_server.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data);
    writer.await.unwrap();
}

#[tokio::test]
async fn idle_timeout_ends_the_session() {
    let config = Config {
        idle_timeout: Some(std::time::Duration::from_millis(200)),
        ..Config::default()
    };
    let mut p = session_pair(config).await;
    let (client, pending) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    let mut client = client;
    let _server = pending;
    // Nothing happens: both ends time out, the stream ends.
    p.client.closed().await;
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    p.server.closed().await;
}

#[tokio::test]
async fn periodic_pings_keep_an_idle_session_alive() {
    use std::time::Duration;
    let client_config = Config {
        ping_interval: Some(Duration::from_millis(50)),
        ..Config::default()
    };
    let server_config = Config {
        idle_timeout: Some(Duration::from_millis(400)),
        ..Config::default()
    };
    let (c, s) = common::tcp_pair().await;
    let (client, _ci) = spdy::Session::new(c, spdy::Role::Client, client_config);
    let (server, _si) = spdy::Session::new(s, spdy::Role::Server, server_config);
    // Several idle periods pass without application traffic; pings keep it open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!server.is_closed());
    client.close().await;
    server.closed().await;
}
