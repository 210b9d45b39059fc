//! Our client halves and raw WebSocket clients against our server halves (fake API server).
mod common;

use bytes::Bytes;
use common::FakeApi;
use futures::{SinkExt, StreamExt};
use http::Request;
use podway_stream::portforward::client::PortForwardClient;
use podway_stream::remotecommand::client::{ClientTransport, connect};
use podway_stream::remotecommand::{Outcome, StreamOptions, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn request(api: &FakeApi, path_and_query: &str) -> Request<()> {
    Request::builder()
        .uri(format!("http://127.0.0.1:{}{path_and_query}", api.port))
        .body(())
        .expect("request")
}

async fn tcp(api: &FakeApi) -> TcpStream {
    TcpStream::connect(("127.0.0.1", api.port))
        .await
        .expect("connect")
}

async fn exec_with(transport: ClientTransport) -> String {
    let api = FakeApi::start().await;
    let req = request(
        &api,
        "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=cat%3B%20echo%20err%20%3E%262%3B%20exit%207&stdin=true&stdout=true&stderr=true",
    );
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let (streams, done) = connect(tcp(&api).await, &req, options, transport)
        .await
        .expect("connect");
    let protocol = done.protocol().to_string();
    let mut stdin = streams.stdin.expect("stdin");
    stdin.write_all(b"abc").await.expect("write stdin");
    stdin.shutdown().await.expect("close stdin");
    let (mut out, mut err) = (String::new(), String::new());
    let (mut o, mut e) = (
        streams.stdout.expect("stdout"),
        streams.stderr.expect("stderr"),
    );
    let (a, b) = tokio::join!(o.read_to_string(&mut out), e.read_to_string(&mut err));
    a.expect("stdout");
    b.expect("stderr");
    assert_eq!(out, "abc");
    assert_eq!(err, "err\n");
    assert_eq!(done.outcome().await.expect("outcome"), Outcome::Exited(7));
    protocol
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_client_websocket() {
    assert_eq!(
        exec_with(ClientTransport::WebSocket).await,
        "v5.channel.k8s.io"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_client_spdy() {
    assert_eq!(exec_with(ClientTransport::Spdy).await, "v4.channel.k8s.io");
}

async fn resize_with(transport: ClientTransport) {
    let api = FakeApi::start().await;
    let req = request(
        &api,
        "/api/v1/namespaces/default/pods/p/exec?command=podway-test-resize&stdin=true&stdout=true&tty=true",
    );
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let (streams, done) = connect(tcp(&api).await, &req, options, transport)
        .await
        .expect("connect");
    let resize = streams.resize.expect("resize");
    resize
        .send(TerminalSize {
            width: 80,
            height: 24,
        })
        .await
        .expect("resize");
    let mut out = streams.stdout.expect("stdout");
    let mut got = String::new();
    let mut buf = [0u8; 64];
    while !got.contains("80x24\n") {
        let n = out.read(&mut buf).await.expect("read");
        assert!(n > 0, "stdout ended: {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    resize
        .send(TerminalSize {
            width: 120,
            height: 40,
        })
        .await
        .expect("resize");
    out.read_to_string(&mut got).await.expect("read");
    assert_eq!(got, "80x24\n120x40\n");
    assert_eq!(done.outcome().await.expect("outcome"), Outcome::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_over_websocket() {
    resize_with(ClientTransport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_over_spdy() {
    resize_with(ClientTransport::Spdy).await;
}

async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (port, task)
}

async fn port_forward_with(tunnel: bool) {
    let api = FakeApi::start().await;
    let (echo, echo_task) = echo_server().await;
    let req = request(&api, "/api/v1/namespaces/default/pods/p/portforward");
    let pf = if tunnel {
        PortForwardClient::connect_tunnel(tcp(&api).await, &req).await
    } else {
        PortForwardClient::connect_spdy(tcp(&api).await, &req).await
    }
    .expect("connect");
    for round in 0..3 {
        let (mut data, error) = pf.open(echo).await.expect("open");
        let msg = format!("round {round}");
        data.write_all(msg.as_bytes()).await.expect("write");
        data.shutdown().await.expect("half-close");
        let mut got = String::new();
        data.read_to_string(&mut got).await.expect("read");
        assert_eq!(got, msg);
        assert_eq!(error.text().await.expect("error stream"), None);
    }
    // A refused connection reports its cause and leaves the session usable.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (_data, error) = pf.open(closed).await.expect("open");
    let text = error
        .text()
        .await
        .expect("error stream")
        .expect("error text");
    assert!(
        text.starts_with(&format!("error forwarding port {closed} to pod p, uid : ")),
        "{text}"
    );
    let (mut data, _error) = pf.open(echo).await.expect("open after failure");
    data.write_all(b"still").await.expect("write");
    data.shutdown().await.expect("half-close");
    let mut got = String::new();
    data.read_to_string(&mut got).await.expect("read");
    assert_eq!(got, "still");
    pf.close().await;
    echo_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_client_spdy() {
    port_forward_with(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_client_tunnel() {
    port_forward_with(true).await;
}

async fn raw_ws(
    api: &FakeApi,
    path_and_query: &str,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut req = format!("ws://127.0.0.1:{}{path_and_query}", api.port)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp(api).await)
        .await
        .expect("handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_websocket_port_forward() {
    let api = FakeApi::start().await;
    let (echo, echo_task) = echo_server().await;
    let mut ws = raw_ws(
        &api,
        &format!("/api/v1/namespaces/default/pods/p/portforward?ports={echo}"),
        "v4.channel.k8s.io",
    )
    .await;
    let le = echo.to_le_bytes();
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from(vec![0, le[0], le[1]]))
    );
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from(vec![1, le[0], le[1]]))
    );
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello")))
        .await
        .expect("send");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from_static(b"\x00hello"))
    );
    echo_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_are_answered_without_output() {
    let api = FakeApi::start().await;
    let mut ws = raw_ws(
        &api,
        "/api/v1/namespaces/default/pods/p/exec?command=sleep&command=2&stdout=true",
        "v5.channel.k8s.io",
    )
    .await;
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from_static(&[1]))
    );
    ws.send(Message::Ping(Bytes::from_static(b"hb")))
        .await
        .expect("ping");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Pong(Bytes::from_static(b"hb"))
    );
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from_static(
            b"\x03{\"metadata\":{},\"status\":\"Success\"}"
        ))
    );
    assert!(
        matches!(ws.next().await.expect("msg").expect("ok"), Message::Close(Some(f)) if u16::from(f.code) == 1000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_base64_v1_text_status() {
    let api = FakeApi::start().await;
    let mut ws = raw_ws(
        &api,
        "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=echo%20hi%3B%20exit%202&stdout=true",
        "base64.channel.k8s.io",
    )
    .await;
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::text("1")
    );
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::text("1aGkK")
    );
    let Message::Text(status) = ws.next().await.expect("msg").expect("ok") else {
        panic!("expected text")
    };
    let status = status.as_str();
    assert!(status.starts_with('3'));
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD
        .decode(&status[1..])
        .expect("base64");
    assert_eq!(
        String::from_utf8_lossy(&text),
        "command terminated with non-zero exit code: error executing command [sh -c echo hi; exit 2], exit code 2"
    );
}

/// Sends a raw request head and returns the whole response (the server closes or answers).
async fn raw_http(api: &FakeApi, head: &str) -> String {
    let mut tcp = tcp(api).await;
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if n == 0
            || text.split_once("\r\n\r\n").is_some_and(|(h, body)| {
                let len = h
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                body.len() >= len
            })
        {
            return text.into_owned();
        }
    }
}

#[tokio::test]
async fn refusals() {
    let api = FakeApi::start().await;
    let exec = "/api/v1/namespaces/default/pods/p/exec?command=ls";
    // No overlap on SPDY: 403 with the accepted list.
    let resp = raw_http(&api, &format!("POST {exec}&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\nContent-Length: 0\r\n\r\n")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{resp}"
    );
    assert!(
        resp.contains(
            "unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io]"
        ),
        "{resp}"
    );
    // No protocol header on SPDY: 400.
    let resp = raw_http(&api, &format!("POST {exec}&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n")).await;
    assert!(
        resp.starts_with("HTTP/1.1 400") && resp.contains("X-Stream-Protocol-Version is required"),
        "{resp}"
    );
    // Unknown WebSocket subprotocol: 403.
    let resp = raw_http(&api, &format!("GET {exec}&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v9.channel.k8s.io\r\n\r\n")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    // No streams requested: 400.
    let resp = raw_http(&api, &format!("GET {exec} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")).await;
    assert!(
        resp.starts_with("HTTP/1.1 400")
            && resp.contains("you must specify at least 1 of stdin, stdout, stderr"),
        "{resp}"
    );
    // Not an upgrade: 400 naming the headers.
    let resp = raw_http(
        &api,
        &format!("GET {exec}&stdout=true HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 400") && resp.contains("missing upgrade headers"),
        "{resp}"
    );
    // Tunnel and legacy port-forward: legacy needs ports.
    let resp = raw_http(&api, "GET /api/v1/namespaces/default/pods/p/portforward HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.1 400") && resp.contains("query parameter \"port\" is required"),
        "{resp}"
    );
    // The accept key of RFC 6455's example.
    let resp = raw_http(&api, &format!("GET {exec}&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n")).await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    assert!(
        resp.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{resp}"
    );
    assert!(
        resp.contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{resp}"
    );
}

/// Old SPDY protocol versions: text status on failure (v2/v3), no error text at all (v1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_old_versions() {
    let api = FakeApi::start().await;
    let path = "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=cat%3B%20exit%204&stdin=true&stdout=true";
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    for (protocols, expect_text) in [
        (&["v5.channel.k8s.io"][..], false),
        (&["v3.channel.k8s.io"][..], true),
        (&["v2.channel.k8s.io"][..], true),
        (&["channel.k8s.io"][..], false),
    ] {
        let req = request(&api, path);
        let transport = ClientTransport::SpdyProtocols(protocols);
        let (streams, done) = connect(tcp(&api).await, &req, options, transport)
            .await
            .expect("connect");
        assert_eq!(done.protocol(), protocols[0]);
        let mut stdin = streams.stdin.expect("stdin");
        let version_one = protocols[0] == "channel.k8s.io";
        if !version_one {
            stdin.write_all(b"data").await.expect("write");
            stdin.shutdown().await.expect("close");
        }
        let mut out = String::new();
        streams
            .stdout
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        if !version_one {
            assert_eq!(out, "data");
        }
        let outcome = done.outcome().await.expect("outcome");
        match (protocols[0], expect_text) {
            ("v5.channel.k8s.io", _) => assert_eq!(outcome, Outcome::Exited(4)),
            (_, true) => assert_eq!(
                outcome,
                Outcome::Error("command terminated with non-zero exit code: error executing command [sh -c cat; exit 4], exit code 4".into())
            ),
            (_, false) => assert_eq!(outcome, Outcome::Exited(0), "v1 clients never see the status"),
        }
    }
}

/// What the Python client does: v4 offered second, stdin as TEXT frames, exit code in causes[0].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_style_v4_text_frames() {
    let api = FakeApi::start().await;
    let mut req = format!(
        "ws://127.0.0.1:{}/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=head%20-c%206%3B%20exit%209&stdin=True&stdout=True&stderr=True",
        api.port
    )
    .into_client_request()
    .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io,v5.channel.k8s.io"
            .parse()
            .expect("header"),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp(&api).await)
        .await
        .expect("handshake");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from_static(&[1]))
    );
    ws.send(Message::text("\u{0}hel")).await.expect("send");
    ws.send(Message::text("\u{0}lo\n")).await.expect("send");
    let mut stdout = Vec::new();
    let status = loop {
        match ws.next().await.expect("msg").expect("ok") {
            Message::Binary(b) if b[0] == 1 => stdout.extend_from_slice(&b[1..]),
            Message::Binary(b) if b[0] == 3 => break b.slice(1..),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(stdout, b"hello\n");
    let v: serde_json::Value = serde_json::from_slice(&status).expect("json");
    assert_eq!(v["details"]["causes"][0]["message"], "9");
    assert_eq!(v["reason"], "NonZeroExitCode");
}

/// A handler learns that the client went away even when it never writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_client_disconnect() {
    let api = FakeApi::start().await;
    let mut ws = raw_ws(
        &api,
        "/api/v1/namespaces/default/pods/p/exec?command=podway-test-wait-closed&stdout=true",
        "v5.channel.k8s.io",
    )
    .await;
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::Binary(Bytes::from_static(&[1]))
    );
    drop(ws);
    let mut seen = false;
    for _ in 0..500 {
        if api
            .records()
            .iter()
            .any(|r| r == "handler saw the client go")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen, "{:?}", api.records());
}
