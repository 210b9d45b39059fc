//! The streaming server's idle timeout and keep-alive pings on real container execs, with a 2 s
//! idle timeout and 500 ms pings: idle sessions over WebSocket and SPDY are closed and leave no
//! process or fd behind; an active one outlives the timeout.
//! Needs root, runc, `cargo build -p podway` (or `PODWAY_BIN`), umoci and busybox-static.
mod common;

use std::time::{Duration, Instant};

use common::{Daemon, eventually, run_pod, running, websocket};
use futures::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use podway_stream::remotecommand::StreamOptions;
use podway_stream::remotecommand::client::{ClientTransport, connect};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const IDLE: Duration = Duration::from_secs(2);
const PING: Duration = Duration::from_millis(500);

/// Open fds of this process (the daemon runs in it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

async fn exec_url(c: &mut common::Clients, container: &str, cmd: &[&str], stdin: bool) -> String {
    c.runtime
        .exec(cri::ExecRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_and_leave_nothing_behind_active_ones_survive() {
    let daemon = Daemon::start_with(|config| {
        config.stream_idle_timeout = Some(IDLE);
        config.stream_ping_interval = Some(PING);
    })
    .await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/idle");
    let (_, container) = run_pod(&mut c, "idle", &log_dir, &["sleep", "1000"]).await;
    let fds_before = open_fds();

    // WebSocket, no stdin: the process only ends because the server drops the idle session.
    let ws_argv = ["sleep", "603"];
    let url = exec_url(&mut c, &container, &ws_argv, false).await;
    let mut ws = websocket(&url, "v5.channel.k8s.io")
        .await
        .expect("WebSocket");
    let start = Instant::now();
    eventually("the WebSocket exec runs", || async { running(&ws_argv) }).await;
    let mut pings = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame from the idle session: {other:?}"),
        }
    };
    let took = start.elapsed();
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    assert!(
        took >= IDLE - Duration::from_millis(200),
        "closed after {took:?}"
    );
    assert!(pings >= 2, "{pings} pings in {took:?}");
    drop(ws);
    eventually("the idle WebSocket exec's process is gone", || async {
        !running(&ws_argv)
    })
    .await;

    // SPDY, stdin held open by the client: the session's end ends stdin, so `read` returns.
    let spdy_argv = ["sh", "-c", "read line; : idle-spdy"];
    let url = exec_url(&mut c, &container, &spdy_argv, true).await;
    let io = TcpStream::connect(daemon.stream_addr)
        .await
        .expect("connect");
    let req = http::Request::post(&url).body(()).expect("request");
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let (streams, completion) = connect(io, &req, options, ClientTransport::Spdy)
        .await
        .expect("SPDY exec");
    let start = Instant::now();
    let _stdin = streams.stdin.expect("stdin");
    eventually("the SPDY exec runs", || async { running(&spdy_argv) }).await;
    let mut rest = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        streams.stdout.expect("stdout").read_to_end(&mut rest),
    )
    .await
    .expect("the idle SPDY session ends")
    .ok();
    let took = start.elapsed();
    assert!(
        took >= IDLE - Duration::from_millis(200),
        "closed after {took:?}"
    );
    drop(completion);
    eventually("the idle SPDY exec's process is gone", || async {
        !running(&spdy_argv)
    })
    .await;

    // An active WebSocket session outlives the idle timeout.
    let url = exec_url(&mut c, &container, &["cat"], true).await;
    let mut ws = websocket(&url, "v5.channel.k8s.io")
        .await
        .expect("WebSocket");
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < IDLE * 2 {
        round += 1;
        let line = format!("line {round}\n");
        ws.send(Message::Binary([b"\x00", line.as_bytes()].concat().into()))
            .await
            .expect("stdin");
        let mut echoed = Vec::new();
        while echoed != line.as_bytes() {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) if b.first() == Some(&1) => {
                    echoed.extend_from_slice(&b[1..]);
                }
                Some(Ok(Message::Close(frame))) => panic!("closed while active: {frame:?}"),
                Some(Ok(_)) => {}
                other => panic!("session ended while active: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    ws.send(Message::Binary(vec![0xFF, 0].into()))
        .await
        .expect("close stdin");
    let got = common::channels(&mut ws).await;
    let status = common::status_of(got.get(&3).expect("status on channel 3"));
    assert_eq!(status["status"], "Success", "{status}");
    drop(ws);

    eventually("the sessions' fds are closed", || async {
        open_fds() <= fds_before
    })
    .await;
    daemon.stop().await.expect("daemon stops");
}
