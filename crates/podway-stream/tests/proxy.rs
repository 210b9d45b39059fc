//! The upgrade-aware proxy: kubectl through a proxy hop, and refusals from raw backends.
mod common;

use std::process::Stdio;

use common::FakeApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_through_proxy() {
    let backend = FakeApi::start().await;
    let front = FakeApi::start_proxy(backend.port).await;
    let out = front
        .kubectl(32)
        .args([
            "exec",
            "p",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("err\n"));
    assert_eq!(out.status.code(), Some(3));
    assert!(front.records().iter().any(|r| r.starts_with("proxied")));
    assert_eq!(
        backend.records(),
        vec!["exec websocket v5.channel.k8s.io".to_string()]
    );
}

/// A backend that reads one request head and answers `response` then closes.
async fn raw_backend(response: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        tcp.write_all(response).await.expect("write");
        // Whatever the client sends after the refusal must never reach us.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        head.extend_from_slice(b"--after--");
        head.extend_from_slice(&rest);
        head
    });
    (port, task)
}

async fn raw_request(front: u16, extra: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", front))
        .await
        .expect("connect");
    tcp.write_all(
        b"POST /api/v1/namespaces/default/pods/p/exec?command=ls&stdout=true HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .expect("write");
    tcp.write_all(extra).await.expect("write extra");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the server closes, or until a 101 head plus the spliced greeting arrived.
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.starts_with(b"HTTP/1.1 101") && out.ends_with(b"greeting") {
            break;
        }
    }
    out
}

#[tokio::test]
async fn refusal_is_forwarded_and_backend_dropped() {
    let (port, backend) = raw_backend(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nX-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\n\r\nforbidden text",
    )
    .await;
    let front = FakeApi::start_proxy(port).await;
    let resp =
        String::from_utf8_lossy(&raw_request(front.port, b"SECRET-FRAMES").await).into_owned();
    assert!(resp.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{resp}"
    );
    assert!(resp.ends_with("forbidden text"), "{resp}");
    let seen = String::from_utf8_lossy(&backend.await.expect("backend")).into_owned();
    assert!(
        seen.starts_with(
            "POST /api/v1/namespaces/default/pods/p/exec?command=ls&stdout=true HTTP/1.1\r\n"
        ),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{seen}"
    );
    assert!(
        seen.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io\r\n"),
        "{seen}"
    );
    assert!(
        seen.ends_with("--after--"),
        "bytes leaked to the backend: {seen}"
    );
}

#[tokio::test]
async fn non_upgrade_success_becomes_bad_gateway() {
    let (port, _backend) = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let front = FakeApi::start_proxy(port).await;
    let resp = String::from_utf8_lossy(&raw_request(front.port, b"").await).into_owned();
    assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{resp}");
    assert!(resp.contains("status code 200"), "{resp}");
}

#[tokio::test]
async fn switching_splices_with_early_bytes() {
    let (port, backend) = raw_backend(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\ngreeting",
    )
    .await;
    let front = FakeApi::start_proxy(port).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", front.port))
        .await
        .expect("connect");
    tcp.write_all(
        b"POST /api/v1/namespaces/default/pods/p/exec?command=ls&stdout=true HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"greeting") {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{text}"
    );
    // Client bytes after the upgrade reach the backend; closing our write side ends its read.
    tcp.write_all(b"client-bytes").await.expect("write");
    tcp.shutdown().await.expect("shutdown");
    let seen = String::from_utf8_lossy(&backend.await.expect("backend")).into_owned();
    assert!(seen.ends_with("--after--client-bytes"), "{seen}");
}
