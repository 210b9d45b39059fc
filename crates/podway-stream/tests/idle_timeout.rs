//! Idle timeout and keep-alive pings of the server halves, with a 2 s idle timeout and 500 ms
//! pings installed for this whole test binary (the options are process-wide).
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::FakeApi;
use futures::{SinkExt, StreamExt};
use http::Request;
use podway_stream::ServerOptions;
use podway_stream::remotecommand::client::{ClientTransport, connect};
use podway_stream::remotecommand::{Outcome, StreamOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const IDLE: Duration = Duration::from_secs(2);
const PING: Duration = Duration::from_millis(500);

fn short_timeouts() {
    ServerOptions {
        idle_timeout: Some(IDLE),
        ping_interval: Some(PING),
    }
    .install();
}

/// `sh -c SCRIPT` exec path with the given streams.
fn exec_path(script: &str, stdin: bool) -> String {
    let script: String = script
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!(
        "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command={script}&stdout=true&stdin={stdin}"
    )
}

async fn tcp(api: &FakeApi) -> TcpStream {
    TcpStream::connect(("127.0.0.1", api.port))
        .await
        .expect("connect")
}

/// What a session showed until the server closed it.
struct Closed {
    /// When each ping arrived, after the reading started.
    pings: Vec<Duration>,
    /// When the close frame arrived.
    after: Duration,
    /// The close frame.
    frame: Option<CloseFrame>,
    /// The BINARY messages, in order.
    binary: Vec<Bytes>,
}

/// Reads `ws` until the server closes it (10 s at most).
async fn read_until_closed(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Closed {
    let start = Instant::now();
    let (mut pings, mut binary) = (Vec::new(), Vec::new());
    let frame = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server closes the idle session")
            .expect("connection open")
            .expect("message");
        match msg {
            Message::Binary(b) => binary.push(b),
            Message::Ping(_) => pings.push(start.elapsed()),
            Message::Close(frame) => break frame,
            _ => {}
        }
    };
    Closed {
        pings,
        after: start.elapsed(),
        frame,
        binary,
    }
}

/// The session was closed with `code` after the idle timeout, and pinged meanwhile.
fn assert_idle_close(closed: &Closed, code: CloseCode) {
    assert_eq!(closed.frame.as_ref().map(|f| f.code), Some(code));
    assert!(
        closed.after >= IDLE - Duration::from_millis(100) && closed.after < IDLE * 2,
        "closed after {:?}",
        closed.after
    );
    assert!(closed.pings.len() >= 2, "pings: {:?}", closed.pings);
}

async fn websocket(api: &FakeApi, path: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    websocket_with(api, path, "v5.channel.k8s.io").await
}

async fn websocket_with(
    api: &FakeApi,
    path: &str,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut req = format!("ws://127.0.0.1:{}{path}", api.port)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (ws, _) = tokio_tungstenite::client_async(req, tcp(api).await)
        .await
        .expect("handshake");
    ws
}

/// Whether process `pid` is gone (reaped, or a zombie that no longer runs).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn assert_process_ends(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs after its session was closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills `pid` on drop, so a failed test leaves no process behind.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !process_gone(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_exec_is_pinged_then_closed_and_its_process_killed() {
    short_timeouts();
    let api = FakeApi::start().await;
    // No stdin: only dropping the handler (which kills the process) can end it.
    let mut ws = websocket(&api, &exec_path("echo $$; exec sleep 600", false)).await;
    let closed = read_until_closed(&mut ws).await;
    let pid = closed
        .binary
        .iter()
        .find(|b| b.first() == Some(&1) && b.len() > 1)
        .map(|b| {
            let text = String::from_utf8_lossy(&b[1..]).trim().to_string();
            text.parse::<u32>().expect("pid")
        })
        .expect("the process printed its pid");
    let _guard = KillOnDrop(pid);
    // Pings at the interval, and they did not keep the session alive.
    assert_idle_close(&closed, CloseCode::Away);
    let reason = closed.frame.as_ref().map(|f| f.reason.as_str());
    assert_eq!(reason, Some(podway_stream::ws::IDLE_CLOSE_REASON));
    let pings = &closed.pings;
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= PING - Duration::from_millis(100) && gap < PING * 3,
            "pings: {pings:?}"
        );
    }
    assert_process_ends(pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_websocket_exec_outlives_the_idle_timeout() {
    short_timeouts();
    let api = FakeApi::start().await;
    let mut ws = websocket(&api, &exec_path("exec cat", true)).await;
    let start = Instant::now();
    let mut round = 0u32;
    // Twice the idle timeout, with a stdin line every 400 ms echoed back each time.
    while start.elapsed() < IDLE * 2 {
        round += 1;
        let line = format!("line {round}\n");
        let mut msg = vec![0u8];
        msg.extend_from_slice(line.as_bytes());
        ws.send(Message::Binary(Bytes::from(msg)))
            .await
            .expect("send stdin");
        let mut echoed = Vec::new();
        while echoed != line.as_bytes() {
            match ws.next().await.expect("open").expect("message") {
                Message::Binary(b) if b.first() == Some(&1) => echoed.extend_from_slice(&b[1..]),
                Message::Close(frame) => panic!("closed while active: {frame:?}"),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Still a working session: closing stdin ends cat with success.
    ws.send(Message::Binary(Bytes::from_static(&[0xFF, 0])))
        .await
        .expect("close stdin");
    let status = loop {
        match ws.next().await.expect("open").expect("message") {
            Message::Binary(b) if b.first() == Some(&3) => break b.slice(1..),
            Message::Close(frame) => panic!("closed without status: {frame:?}"),
            _ => {}
        }
    };
    let status: serde_json::Value = serde_json::from_slice(&status).expect("status json");
    assert_eq!(status["status"], "Success");
}

fn request(api: &FakeApi, path: &str) -> Request<()> {
    Request::builder()
        .uri(format!("http://127.0.0.1:{}{path}", api.port))
        .body(())
        .expect("request")
}

const STDIN_STDOUT: StreamOptions = StreamOptions {
    stdin: true,
    stdout: true,
    stderr: false,
    tty: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_spdy_exec_is_closed_and_its_process_ends() {
    short_timeouts();
    let api = FakeApi::start().await;
    let req = request(&api, &exec_path("echo $$; exec cat", true));
    let (streams, done) = connect(tcp(&api).await, &req, STDIN_STDOUT, ClientTransport::Spdy)
        .await
        .expect("connect");
    let start = Instant::now();
    let _stdin = streams.stdin.expect("stdin"); // held open: only the server can end the session
    let mut out = BufReader::new(streams.stdout.expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).await.expect("pid line");
    let pid: u32 = line.trim().parse().expect("pid");
    let _guard = KillOnDrop(pid);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), out.read_to_end(&mut rest))
        .await
        .expect("the server ends the idle session")
        .ok();
    let closed_after = start.elapsed();
    assert!(
        closed_after >= IDLE - Duration::from_millis(100) && closed_after < IDLE * 3,
        "closed after {closed_after:?}"
    );
    // stdin ended with the session, so cat is gone. (What the client reports is the SPDY
    // server's business: the session was torn down, no status was sent.)
    assert_process_ends(pid).await;
    drop(done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_spdy_exec_outlives_the_idle_timeout() {
    short_timeouts();
    let api = FakeApi::start().await;
    let req = request(&api, &exec_path("exec cat", true));
    let (streams, done) = connect(tcp(&api).await, &req, STDIN_STDOUT, ClientTransport::Spdy)
        .await
        .expect("connect");
    let mut stdin = streams.stdin.expect("stdin");
    let mut out = BufReader::new(streams.stdout.expect("stdout"));
    let start = Instant::now();
    let mut round = 0u32;
    while start.elapsed() < IDLE * 2 {
        round += 1;
        let line = format!("line {round}\n");
        stdin.write_all(line.as_bytes()).await.expect("stdin");
        let mut echoed = String::new();
        out.read_line(&mut echoed).await.expect("echo");
        assert_eq!(echoed, line, "the session ended while active");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    stdin.shutdown().await.expect("close stdin");
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.expect("stdout end");
    assert_eq!(done.outcome().await.expect("outcome"), Outcome::Exited(0));
}

/// Reads an HTTP response head byte by byte (the SPDY server says nothing before the client).
async fn response_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_pings_are_answered() {
    short_timeouts();
    let api = FakeApi::start().await;
    let mut tcp = tcp(&api).await;
    let path = exec_path("exec cat", true);
    tcp.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("upgrade request");
    let head = response_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (session, _incoming) = spdy::Session::new(tcp, spdy::Role::Client, spdy::Config::default());
    for _ in 0..3 {
        let rtt = tokio::time::timeout(Duration::from_secs(5), session.ping())
            .await
            .expect("the server answers within 5 s")
            .expect("ping");
        assert!(rtt < Duration::from_secs(1), "ping took {rtt:?}");
    }
    session.close().await;
}

struct KubectlRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

async fn kubectl_exec(api: &FakeApi, minor: u32, spdy: bool, script: &str) -> KubectlRun {
    let mut cmd = api.kubectl(minor);
    if spdy {
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
    }
    cmd.args(["exec", "p", "--", "sh", "-c", script])
        .stdin(std::process::Stdio::null());
    let start = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("kubectl finishes")
        .expect("run kubectl");
    KubectlRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// kubectl 1.32 (WebSocket, answering 3 server pings while the command is silent) and 1.28
/// (SPDY) exec a command that stays silent for most of the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_works_with_pings_on() {
    short_timeouts();
    let api = FakeApi::start().await;
    for (minor, spdy) in [(32, false), (28, true)] {
        let run = kubectl_exec(&api, minor, spdy, "sleep 1.6; echo done").await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (Some(0), "done\n"),
            "kubectl 1.{minor}: {}",
            run.stderr
        );
    }
    let records = api.records();
    assert!(
        records.iter().any(|r| r.contains("websocket"))
            && records.iter().any(|r| r.contains("spdy")),
        "{records:?}"
    );
}

/// A kubectl (WebSocket) exec that stays silent past the idle timeout is cut, and kubectl says
/// so with a failure (never exit 0): the 1001 close is an error to client-go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_idle_websocket_exec_is_closed_as_a_failure() {
    short_timeouts();
    let api = FakeApi::start().await;
    for (minor, spdy) in [(32, false)] {
        let run = kubectl_exec(&api, minor, spdy, "sleep 30; echo late").await;
        assert_ne!(run.code, Some(0), "kubectl 1.{minor}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "kubectl 1.{minor}: {}", run.stdout);
        assert!(
            run.took < Duration::from_secs(15),
            "kubectl 1.{minor} took {:?}",
            run.took
        );
        assert!(
            run.stderr.contains("going away"),
            "kubectl 1.{minor}: {}",
            run.stderr
        );
    }
}

/// The SPDY-over-WebSocket port-forward tunnel: WebSocket pings at the interval while the SPDY
/// session inside is silent, and the SPDY idle timeout ends the tunnel with a normal close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnel_is_pinged_then_closed() {
    short_timeouts();
    let api = FakeApi::start().await;
    let mut ws = websocket_with(
        &api,
        "/api/v1/namespaces/default/pods/p/portforward",
        "SPDY/3.1+portforward.k8s.io",
    )
    .await;
    // The SPDY session inside ends the tunnel normally (after its GOAWAY).
    assert_idle_close(&read_until_closed(&mut ws).await, CloseCode::Normal);
}

/// The legacy WebSocket port-forward (ports in the query) pings, and closes as abandoned (1001)
/// once nothing has crossed it for the idle timeout, even with its pod connection still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_legacy_port_forward_is_pinged_then_closed() {
    short_timeouts();
    let api = FakeApi::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("target listener");
    let port = listener.local_addr().expect("target address").port();
    // The pod side: accepts and keeps its connection open, silent.
    let target = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(conn);
    });
    let mut ws = websocket_with(
        &api,
        &format!("/api/v1/namespaces/default/pods/p/portforward?ports={port}"),
        "v4.channel.k8s.io",
    )
    .await;
    let closed = read_until_closed(&mut ws).await;
    target.abort();
    assert_idle_close(&closed, CloseCode::Away);
}

/// kubectl 1.32 port-forward through the tunnel keeps working across the server's pings: two
/// round trips on one connection, 1.2 s (two ping intervals) apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_tunnel_works_with_pings_on() {
    short_timeouts();
    let api = FakeApi::start().await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let remote = echo.local_addr().expect("addr").port();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let (mut kubectl, local, _stderr) = api.kubectl_port_forward(32, remote, false).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", local))
        .await
        .expect("connect to kubectl");
    for word in [&b"before"[..], b"after"] {
        tcp.write_all(word).await.expect("write");
        let mut back = vec![0u8; word.len()];
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(back, word);
        tokio::time::sleep(PING * 2 + Duration::from_millis(200)).await;
    }
    let records = api.records();
    assert!(
        records
            .iter()
            .any(|r| r.contains("portforward websocket SPDY/3.1+portforward.k8s.io")),
        "{records:?}"
    );
    let _ = kubectl.kill().await;
    echo_task.abort();
}
