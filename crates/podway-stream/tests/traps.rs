//! The compatibility traps of PROTOCOLS.md §9 that concern podway-stream, one test each.
//!
//! Covered elsewhere:
//! - 1 (no flow control with Go): `kubectl_exec::kubectl_large_transfers` (32 MiB over SPDY with
//!   kubectl 1.28, which never sends WINDOW_UPDATE), `kubectl_matrix`; windows in `spdy`'s tests.
//! - 2 (header names, zlib dictionary): `spdy`'s golden tests; every kubectl test.
//! - 3 (SYN_REPLY promptly): `kubectl_exec::kubectl_1_28_exec_spdy`, `kubectl_matrix`.
//! - 5 (RST_STREAM CANCEL is EOF): `half_close::spdy_client_reset_closes_the_target_connection`
//!   (server side), `clients::port_forward_client_spdy` (client reads the refused pair's end).
//! - 6 (kubectl WebSocket: pongs, BINARY, 1000, status on channel 3):
//!   `clients::websocket_pings_are_answered_without_output`, `kubectl_exec::kubectl_1_32_exec_websocket_v5`.
//! - 7 (TEXT frames and empty messages accepted): `clients::python_style_v4_text_frames`,
//!   `ws::frame` unit test `text_frames_on_binary_protocols_and_empty`.
//! - 10 (exit code string in causes, Python reads causes[0]): `status` unit tests
//!   `exit_code_exact_bytes`, `clients::python_style_v4_text_frames`.
//! - 11 (one error ends kubectl's session; every error stream closed):
//!   `kubectl_portforward::refused_connection_reports_the_cause`, `clients::port_forward_client_spdy`,
//!   `half_close::*_target_close_reaches_client_that_keeps_its_side_open`.
//! - 14 (query booleans): `query` unit tests; the runtime's CRI tests.
//! - 16 (proxy splices only after 101): `proxy::refusal_is_forwarded_and_backend_dropped`,
//!   `proxy::non_upgrade_success_becomes_bad_gateway`.
//! - 13, 15, 17 concern the API server, the CRI streaming server and OpenAPI, not this crate.
//!
//! Here: 4 (nothing after the SPDY 101 before the client's first frame), 8 (one initial empty
//! message, on the lowest writable channel), 9 (the server never sends v5 CLOSE), 12 (tunnel
//! message boundaries are meaningless, zero-length messages included), and one found here: kubectl
//! drops WebSocket output that arrives before it registered its streams.
mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::FakeApi;
use futures::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(10);

async fn tcp(api: &FakeApi) -> TcpStream {
    TcpStream::connect(("127.0.0.1", api.port))
        .await
        .expect("connect")
}

/// Trap 4: after the SPDY 101 the server sends nothing until the client has sent a frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_4_server_is_silent_after_spdy_101() {
    let api = FakeApi::start().await;
    for (path, protocol) in [
        (
            "/api/v1/namespaces/default/pods/p/exec?command=sleep&command=2&stdout=true",
            "v4.channel.k8s.io",
        ),
        (
            "/api/v1/namespaces/default/pods/p/portforward",
            "portforward.k8s.io",
        ),
    ] {
        let mut conn = tcp(&api).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("request");
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(WAIT, conn.read(&mut byte))
                .await
                .expect("response head")
                .expect("read");
            assert_eq!(n, 1, "connection closed: {}", String::from_utf8_lossy(&got));
            got.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&got);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let early = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut byte)).await;
        assert!(
            early.is_err(),
            "{protocol}: the server spoke first after the 101: {early:?}"
        );
    }
}

/// Runs one WebSocket exec; every BINARY message with its arrival time after the 101.
async fn ws_exec(api: &FakeApi, query: &str, protocol: &str) -> Vec<(Duration, Bytes)> {
    let mut req = format!(
        "ws://127.0.0.1:{}/api/v1/namespaces/default/pods/p/exec?{query}",
        api.port
    )
    .into_client_request()
    .expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp(api).await)
        .await
        .expect("handshake");
    let upgraded = std::time::Instant::now();
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message")
        {
            Some(Ok(Message::Binary(b))) => messages.push((upgraded.elapsed(), b)),
            Some(Ok(Message::Close(_))) | None => return messages,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("WebSocket error: {e}"),
        }
    }
}

/// Traps 8 and 9: exactly one initial empty message, on the lowest writable channel, and no
/// v5 CLOSE (`FF <channel>`) from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_8_and_9_one_initial_empty_message_and_no_close_from_server() {
    let api = FakeApi::start().await;
    let command = "command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262";
    for protocol in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        for (streams, lowest) in [("stdout=true&stderr=true", 1u8), ("stderr=true", 2u8)] {
            let messages: Vec<Bytes> = ws_exec(&api, &format!("{command}&{streams}"), protocol)
                .await
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            let empty: Vec<_> = messages.iter().filter(|m| m.len() == 1).collect();
            assert_eq!(
                empty,
                vec![&Bytes::from(vec![lowest])],
                "{protocol} {streams}: {messages:?}"
            );
            assert_eq!(
                messages[0],
                Bytes::from(vec![lowest]),
                "{protocol} {streams}"
            );
            assert!(
                messages.iter().all(|m| m.first() != Some(&0xff)),
                "{protocol} {streams}: the server sent a v5 CLOSE: {messages:?}"
            );
            assert!(
                messages.iter().any(|m| m.first() == Some(&3)),
                "{protocol} {streams}: no status: {messages:?}"
            );
        }
    }
}

/// kubectl registers its WebSocket streams only after its reader runs, and drops messages for
/// streams it does not know yet: output that a fast process writes at once is held briefly after
/// the upgrade (the 1.32 interop test lost its first stdout line about once in twenty runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_output_waits_for_kubectl_to_register_its_streams() {
    let api = FakeApi::start().await;
    let query = "command=echo&command=out&stdout=true";
    for protocol in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let messages = ws_exec(&api, query, protocol).await;
        let (at, first) = messages
            .iter()
            .find(|(_, m)| m.len() > 1)
            .expect("output or status");
        assert!(
            *at >= Duration::from_millis(10),
            "{protocol}: {first:?} arrived {at:?} after the upgrade"
        );
        assert_eq!(&first[..], b"\x01out\n", "{protocol}");
    }
}

/// A WebSocket byte stream that sends each write as a zero-length BINARY message followed by
/// messages of at most 3 bytes, as kubectl's tunnel is observed to (2-byte and 0-byte messages).
struct Chopped {
    ws: WebSocketStream<TcpStream>,
    pending: Bytes,
}

impl AsyncRead for Chopped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chopped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io::Error::other)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::new()))
            .map_err(io::Error::other)?;
        let mut sent = 0;
        while sent < buf.len() {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(r) => r.map_err(io::Error::other)?,
                Poll::Pending if sent == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(sent)),
            }
            let n = (buf.len() - sent).min(3);
            Pin::new(&mut self.ws)
                .start_send(Message::Binary(Bytes::copy_from_slice(
                    &buf[sent..sent + n],
                )))
                .map_err(io::Error::other)?;
            sent += n;
        }
        Poll::Ready(Ok(sent))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

/// Trap 12: the tunnel server reads SPDY from arbitrarily cut BINARY messages, empty ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_12_tunnel_ignores_message_boundaries() {
    let api = FakeApi::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let echo = tokio::spawn(async move {
        if let Ok((mut t, _)) = listener.accept().await {
            let (mut r, mut w) = t.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        }
    });
    let mut req = format!(
        "ws://127.0.0.1:{}/api/v1/namespaces/default/pods/p/portforward",
        api.port
    )
    .into_client_request()
    .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "SPDY/3.1+portforward.k8s.io".parse().expect("header"),
    );
    let (ws, _) = tokio_tungstenite::client_async(req, tcp(&api).await)
        .await
        .expect("handshake");
    let io = Chopped {
        ws,
        pending: Bytes::new(),
    };
    let (session, _incoming) = spdy::Session::new(io, spdy::Role::Client, spdy::Config::default());
    let headers = |kind: &str| -> spdy::Headers {
        let port = port.to_string();
        [
            ("streamtype", kind),
            ("port", port.as_str()),
            ("requestid", "0"),
        ]
        .into_iter()
        .collect()
    };
    let mut error = session.open(headers("error")).await.expect("error stream");
    error.shutdown().await.expect("half-close error stream");
    let mut data = session.open(headers("data")).await.expect("data stream");
    data.write_all(b"cut into pieces").await.expect("write");
    data.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got))
        .await
        .expect("echo")
        .expect("read");
    assert_eq!(got, b"cut into pieces");
    let mut text = Vec::new();
    tokio::time::timeout(WAIT, error.read_to_end(&mut text))
        .await
        .expect("error stream end")
        .expect("read");
    assert!(text.is_empty(), "{}", String::from_utf8_lossy(&text));
    session.close().await;
    echo.abort();
}
