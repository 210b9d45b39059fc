//! Streaming URLs followed over SPDY/3.1, as the kubelet's proxy does for kubectl ≤1.29 and
//! for port-forward: exec (v4) and port-forward (`portforward.k8s.io`).
//! Needs root, runc, `cargo build -p podway` (or `PODWAY_BIN`), umoci and busybox-static.
mod common;

use common::{Daemon, run_httpd_pod, run_pod};
use k8s_cri::v1 as cri;
use podway_stream::portforward::client::PortForwardClient;
use podway_stream::remotecommand::client::{ClientTransport, connect};
use podway_stream::remotecommand::{Outcome, StreamOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn request(url: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(url)
        .body(())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_reports_output_and_exit_code() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/spdy");
    let (_, container) = run_pod(&mut c, "spdy", &log_dir, &["sleep", "1000"]).await;
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: container,
            cmd: vec!["sh".into(), "-c".into(), "cat; echo err >&2; exit 5".into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let io = TcpStream::connect(daemon.stream_addr).await.unwrap();
    // The query is ignored: the flags come from the CRI request.
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let (streams, completion) = connect(
        io,
        &request(&format!("{url}?tty=1")),
        options,
        ClientTransport::Spdy,
    )
    .await
    .unwrap();
    assert_eq!(completion.protocol(), "v4.channel.k8s.io");
    let mut stdin = streams.stdin.unwrap();
    stdin.write_all(b"over spdy\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut stdout = String::new();
    streams
        .stdout
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    let mut stderr = String::new();
    streams
        .stderr
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(stdout, "over spdy\n");
    assert_eq!(stderr, "err\n");
    assert_eq!(completion.outcome().await.unwrap(), Outcome::Exited(5));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_spdy_dials_inside_the_pod() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/spdypf");
    let (sandbox, _) = run_httpd_pod(&mut c, "spdypf", &log_dir).await;
    // kubectl's CRI request names no ports for SPDY: each stream names its own.
    let url = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox.clone(),
            port: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let io = TcpStream::connect(daemon.stream_addr).await.unwrap();
    let session = PortForwardClient::connect_spdy(io, &request(&url))
        .await
        .unwrap();

    // Two connections in one session reach the pod's localhost:8080.
    for _ in 0..2 {
        let (mut data, error) = session.open(8080).await.unwrap();
        data.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        data.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("hello from podway"), "{answer}");
        assert_eq!(error.text().await.unwrap(), None);
    }

    // Nothing listens on 8081: the error stream says so, naming the port and the sandbox.
    let (mut data, error) = session.open(8081).await.unwrap();
    let mut rest = Vec::new();
    let _ = data.read_to_end(&mut rest).await;
    let text = error.text().await.unwrap().expect("an error text");
    assert!(text.contains("error forwarding port 8081"), "{text}");
    assert!(text.contains(&sandbox), "{text}");
    session.close().await;
    daemon.stop().await.unwrap();
}
