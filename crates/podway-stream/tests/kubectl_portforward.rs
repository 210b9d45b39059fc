//! Real kubectl port-forward against the fake API server: SPDY-over-WebSocket tunnel (1.32),
//! plain SPDY (1.32 with websockets off, 1.28), and a refused connection.
mod common;

use common::FakeApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP echo server on 127.0.0.1; aborted on drop.
struct Echo {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_server() -> Echo {
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
    Echo { port, task }
}

async fn roundtrip(local: u16, payload: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", local))
        .await
        .expect("connect to kubectl");
    tcp.write_all(payload).await.expect("write");
    tcp.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.expect("read");
    got
}

async fn forwards_bytes(minor: u32, spdy: bool) -> Vec<String> {
    let api = FakeApi::start().await;
    forwards_bytes_via(&api, minor, spdy).await;
    api.records()
}

async fn forwards_bytes_via(api: &FakeApi, minor: u32, spdy: bool) {
    let echo = echo_server().await;
    let (mut child, local, _stderr) = api.kubectl_port_forward(minor, echo.port, spdy).await;
    assert_eq!(roundtrip(local, b"ping0\n").await, b"ping0\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(roundtrip(local, &big).await, big);
    // Two connections at once.
    let (a, b) = tokio::join!(roundtrip(local, b"first"), roundtrip(local, b"second"));
    assert_eq!(
        (a.as_slice(), b.as_slice()),
        (&b"first"[..], &b"second"[..])
    );
    let _ = child.kill().await;
}

/// The same through an upgrade-proxy hop (API server → node shape), tunnel and SPDY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_through_proxy() {
    for (minor, spdy, record) in [
        (
            32,
            false,
            "portforward websocket SPDY/3.1+portforward.k8s.io",
        ),
        (28, false, "portforward spdy portforward.k8s.io"),
    ] {
        let backend = FakeApi::start().await;
        let front = FakeApi::start_proxy(backend.port).await;
        forwards_bytes_via(&front, minor, spdy).await;
        assert_eq!(backend.records(), vec![record.to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_port_forward_tunnel() {
    let records = forwards_bytes(32, false).await;
    assert_eq!(
        records,
        vec!["portforward websocket SPDY/3.1+portforward.k8s.io".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_port_forward_spdy() {
    let records = forwards_bytes(32, true).await;
    assert_eq!(
        records,
        vec!["portforward spdy portforward.k8s.io".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_28_port_forward_spdy() {
    let records = forwards_bytes(28, false).await;
    assert_eq!(
        records,
        vec!["portforward spdy portforward.k8s.io".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_reports_the_cause() {
    let api = FakeApi::start().await;
    // A port with nothing listening: bind, note, close.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (mut child, local, mut stderr) = api.kubectl_port_forward(32, closed, false).await;
    let got = roundtrip(local, b"x").await;
    assert!(got.is_empty());
    let mut text = String::new();
    let _ = stderr.read_to_string(&mut text).await;
    let status = child.wait().await.expect("kubectl exit");
    assert!(
        text.contains(&format!("error forwarding port {closed} to pod p, uid : ")),
        "kubectl stderr: {text}"
    );
    assert!(!status.success());
}
