//! A client that vanishes mid-stream (its connection just drops, no close handshake) ends its
//! exec process's stdin, and the streaming server is left with no task, fd or process more than
//! before: counted in this process, where the daemon runs, over WebSocket and SPDY.
//! Needs root, runc, `cargo build -p podway` (or `PODWAY_BIN`), umoci and busybox-static.
mod common;

use common::{Daemon, eventually, run_pod, running, websocket};
use futures::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use podway_stream::remotecommand::StreamOptions;
use podway_stream::remotecommand::client::{ClientTransport, connect};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// What the daemon (this process) holds: open fds, child processes, alive tokio tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    fds: usize,
    children: usize,
    tasks: usize,
}

fn held() -> Held {
    let me = std::process::id().to_string();
    let children = std::fs::read_dir("/proc").map_or(0, |procs| {
        procs
            .flatten()
            .filter(|p| {
                std::fs::read_to_string(p.path().join("stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|pp| pp == me))
                        .unwrap_or(false)
                })
            })
            .count()
    });
    Held {
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
        children,
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    }
}

/// A live session shows in the counts (so that their return to `before` means something).
fn assert_session_counted(before: Held) {
    let during = held();
    assert!(
        during.fds > before.fds && during.children > before.children && during.tasks > before.tasks,
        "before {before:?}, during a session {during:?}"
    );
}

fn no_more_than(now: Held, before: Held) -> bool {
    now.fds <= before.fds && now.children <= before.children && now.tasks <= before.tasks
}

async fn exec_url(c: &mut common::Clients, container: &str, cmd: &[&str]) -> String {
    c.runtime
        .exec(cri::ExecRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_clients_end_stdin_and_leave_nothing_behind() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/vanish");
    let (_, container) = run_pod(&mut c, "vanish", &log_dir, &["sleep", "1000"]).await;
    let before = held();

    // WebSocket: one line echoed, then the connection just drops.
    let ws_argv = [
        "sh",
        "-c",
        "while read l; do echo \"$l\"; done; : vanish-ws",
    ];
    let url = exec_url(&mut c, &container, &ws_argv).await;
    let mut ws = websocket(&url, "v5.channel.k8s.io")
        .await
        .expect("WebSocket");
    ws.send(Message::Binary(b"\x00mid-stream\n".to_vec().into()))
        .await
        .expect("stdin");
    let mut echoed = Vec::new();
    while echoed != b"mid-stream\n" {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&1) => {
                echoed.extend_from_slice(&b[1..])
            }
            Some(Ok(_)) => {}
            other => panic!("session ended early: {other:?}"),
        }
    }
    assert!(running(&ws_argv));
    assert_session_counted(before);
    drop(ws);
    eventually(
        "stdin of the vanished WebSocket client's process ends it",
        || async { !running(&ws_argv) },
    )
    .await;

    // SPDY: the same, the client's streams and connection dropped mid-stream.
    let spdy_argv = [
        "sh",
        "-c",
        "while read l; do echo \"$l\"; done; : vanish-spdy",
    ];
    let url = exec_url(&mut c, &container, &spdy_argv).await;
    let io = TcpStream::connect(daemon.stream_addr)
        .await
        .expect("connect")
        .into_std()
        .expect("std socket");
    // A second handle on the socket, to cut the connection under the client session.
    let cut = io.try_clone().expect("socket clone");
    let io = TcpStream::from_std(io).expect("tokio socket");
    let req = http::Request::post(&url).body(()).expect("request");
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let (streams, completion) = connect(io, &req, options, ClientTransport::Spdy)
        .await
        .expect("SPDY exec");
    let mut stdin = streams.stdin.expect("stdin");
    let mut stdout = BufReader::new(streams.stdout.expect("stdout"));
    stdin.write_all(b"mid-stream\n").await.expect("stdin");
    let mut line = String::new();
    stdout.read_line(&mut line).await.expect("echo");
    assert_eq!(line, "mid-stream\n");
    assert!(running(&spdy_argv));
    assert_session_counted(before);
    cut.shutdown(std::net::Shutdown::Both)
        .expect("cut the connection");
    drop((cut, stdin, stdout, streams.stderr, completion));
    eventually(
        "stdin of the vanished SPDY client's process ends it",
        || async { !running(&spdy_argv) },
    )
    .await;

    eventually("no task, fd or child process is left behind", || async {
        no_more_than(held(), before)
    })
    .await;
    daemon.stop().await.expect("daemon stops");
}
