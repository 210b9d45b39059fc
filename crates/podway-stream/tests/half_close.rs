//! Half-close of forwarded connections: each direction closes on its own, over SPDY, the
//! SPDY-over-WebSocket tunnel and the legacy WebSocket protocol. Every wait is bounded so a
//! connection left open fails the test instead of hanging it.
mod common;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use common::FakeApi;
use futures::{SinkExt, StreamExt};
use http::Request;
use podway_stream::portforward::client::PortForwardClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Longest wait for anything a test expects to happen.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing after {WAIT:?}"),
    }
}

/// A target that serves one connection with `serve`; its result arrives on the receiver.
async fn target<F, Fut, T>(serve: F) -> (u16, oneshot::Receiver<T>, JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = tx.send(serve(tcp).await);
        }
    });
    (port, rx, task)
}

async fn session(api: &FakeApi, tunnel: bool) -> PortForwardClient {
    let req = Request::builder()
        .uri(format!(
            "http://127.0.0.1:{}/api/v1/namespaces/default/pods/p/portforward",
            api.port
        ))
        .body(())
        .expect("request");
    let tcp = TcpStream::connect(("127.0.0.1", api.port))
        .await
        .expect("connect");
    if tunnel {
        PortForwardClient::connect_tunnel(tcp, &req).await
    } else {
        PortForwardClient::connect_spdy(tcp, &req).await
    }
    .expect("port-forward session")
}

/// The target answers and closes; the client reads the answer to EOF and the error stream ends,
/// while the client never closes its own side (kubectl waits for both before it closes).
async fn target_close_reaches_client(tunnel: bool) {
    let api = FakeApi::start().await;
    let (port, _, task) = target(|mut tcp| async move {
        tcp.write_all(b"answer").await.expect("target write");
    })
    .await;
    let pf = session(&api, tunnel).await;
    let (mut data, error) = pf.open(port).await.expect("open");
    let mut got = Vec::new();
    within("EOF from the target", data.read_to_end(&mut got))
        .await
        .expect("read");
    assert_eq!(got, b"answer");
    let text = within("end of the error stream", error.text()).await;
    assert_eq!(text.expect("error stream"), None);
    pf.close().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_target_close_reaches_client_that_keeps_its_side_open() {
    target_close_reaches_client(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_target_close_reaches_client_that_keeps_its_side_open() {
    target_close_reaches_client(true).await;
}

/// The client sends a request and half-closes; the target reads to EOF, then answers.
async fn client_half_close_still_gets_answer(tunnel: bool) {
    let api = FakeApi::start().await;
    let (port, request, task) = target(|mut tcp| async move {
        let mut req = Vec::new();
        tcp.read_to_end(&mut req).await.expect("target read");
        let answer = format!("got {} bytes", req.len());
        tcp.write_all(answer.as_bytes())
            .await
            .expect("target write");
        req
    })
    .await;
    let pf = session(&api, tunnel).await;
    let (mut data, error) = pf.open(port).await.expect("open");
    data.write_all(&[7u8; 100_000]).await.expect("write");
    data.shutdown().await.expect("half-close");
    let mut got = String::new();
    within(
        "the answer after a half-close",
        data.read_to_string(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(got, "got 100000 bytes");
    assert_eq!(
        within("the target's request", request)
            .await
            .expect("target"),
        vec![7u8; 100_000]
    );
    let text = within("end of the error stream", error.text()).await;
    assert_eq!(text.expect("error stream"), None);
    pf.close().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_client_half_close_still_gets_answer() {
    client_half_close_still_gets_answer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_client_half_close_still_gets_answer() {
    client_half_close_still_gets_answer(true).await;
}

/// The target half-closes first and keeps reading: the client still reaches it after its EOF.
async fn client_sends_after_target_half_close(tunnel: bool) {
    let api = FakeApi::start().await;
    let (port, request, task) = target(|mut tcp| async move {
        tcp.write_all(b"greeting").await.expect("target write");
        tcp.shutdown().await.expect("target half-close");
        let mut req = Vec::new();
        tcp.read_to_end(&mut req).await.expect("target read");
        req
    })
    .await;
    let pf = session(&api, tunnel).await;
    let (mut data, _error) = pf.open(port).await.expect("open");
    let mut got = Vec::new();
    within("the target's EOF", data.read_to_end(&mut got))
        .await
        .expect("read");
    assert_eq!(got, b"greeting");
    data.write_all(b"late words")
        .await
        .expect("write after EOF");
    data.shutdown().await.expect("half-close");
    assert_eq!(
        within("the words sent after EOF", request)
            .await
            .expect("target"),
        b"late words"
    );
    pf.close().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_client_sends_after_target_half_close() {
    client_sends_after_target_half_close(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_client_sends_after_target_half_close() {
    client_sends_after_target_half_close(true).await;
}

/// A reset data stream (client-go resets it when its local side fails) closes the target's
/// connection, even one that never writes, and ends the error stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_client_reset_closes_the_target_connection() {
    let api = FakeApi::start().await;
    let (port, closed, task) = target(|mut tcp| async move {
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.is_ok()
    })
    .await;
    let pf = session(&api, false).await;
    let (mut data, error) = pf.open(port).await.expect("open");
    data.write_all(b"x").await.expect("write");
    data.reset(spdy::RstStatus::Cancel);
    assert!(
        within("the target's socket to close", closed)
            .await
            .expect("target")
    );
    let text = within("end of the error stream", error.text()).await;
    assert_eq!(text.expect("error stream"), None);
    pf.close().await;
    task.abort();
}

/// Closing the session closes the target connections it carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_session_close_closes_idle_target_connections() {
    let api = FakeApi::start().await;
    let (port, closed, task) = target(|mut tcp| async move {
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.is_ok()
    })
    .await;
    let pf = session(&api, false).await;
    let (_data, _error) = pf.open(port).await.expect("open");
    // Let the server dial before the session goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pf.close().await;
    assert!(
        within("the target's socket to close", closed)
            .await
            .expect("target")
    );
    task.abort();
}

async fn legacy_ws(api: &FakeApi, ports: &[u16]) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut req = format!(
        "ws://127.0.0.1:{}/api/v1/namespaces/default/pods/p/portforward?ports={ports}",
        api.port
    )
    .into_client_request()
    .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io".parse().expect("header"),
    );
    let tcp = TcpStream::connect(("127.0.0.1", api.port))
        .await
        .expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("handshake");
    ws
}

/// Next BINARY message that carries bytes beyond the channel byte (skips the port preambles).
async fn next_data(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Vec<u8> {
    loop {
        let msg = within("a WebSocket message", ws.next())
            .await
            .expect("message")
            .expect("ok");
        if let Message::Binary(b) = msg
            && b.len() > 3
        {
            return b.to_vec();
        }
    }
}

/// Legacy WebSocket: the target's half-close does not cut the client → target direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_ws_client_sends_after_target_half_close() {
    let api = FakeApi::start().await;
    let (port, request, task) = target(|mut tcp| async move {
        tcp.write_all(b"greeting").await.expect("target write");
        tcp.shutdown().await.expect("target half-close");
        let mut req = vec![0u8; 10];
        tcp.read_exact(&mut req).await.expect("target read");
        req
    })
    .await;
    let mut ws = legacy_ws(&api, &[port]).await;
    assert_eq!(next_data(&mut ws).await, b"\x00greeting");
    ws.send(Message::Binary(Bytes::from_static(b"\x00late words")))
        .await
        .expect("send");
    assert_eq!(
        within("the words sent after EOF", request)
            .await
            .expect("target"),
        b"late words"
    );
    task.abort();
}

/// Legacy WebSocket: input for a port whose target is gone is dropped, and never stalls the
/// session's other ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_ws_dead_port_does_not_stall_the_others() {
    let api = FakeApi::start().await;
    let (dead, _, dead_task) = target(|tcp| async move { drop(tcp) }).await;
    let (echo, _, echo_task) = target(|mut tcp| async move {
        let (mut r, mut w) = tcp.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await;
    let mut ws = legacy_ws(&api, &[dead, echo]).await;
    // Let the server dial both ports and the dead one close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let chunk = [&[0u8][..], &[1u8; 64 * 1024][..]].concat();
    for _ in 0..100 {
        within(
            "sending to the dead port",
            ws.send(Message::Binary(Bytes::from(chunk.clone()))),
        )
        .await
        .expect("send");
    }
    ws.send(Message::Binary(Bytes::from_static(b"\x02alive")))
        .await
        .expect("send");
    assert_eq!(next_data(&mut ws).await, b"\x02alive");
    dead_task.abort();
    echo_task.abort();
}
