//! Scale over loopback TCP: our client halves against our server halves (the fake API server),
//! the port-forward server dialling plain tokio targets on 127.0.0.1.
//! - 1,000 port-forward connections at once on one SPDY session, each verified;
//! - 1 GiB each way through one port-forward connection, SHA-256 verified;
//! - 100 MiB through exec stdin → `cat` → stdout, SHA-256 verified, over SPDY v4 and WebSocket v5.
mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::FakeApi;
use http::Request;
use podway_stream::portforward::client::PortForwardClient;
use podway_stream::remotecommand::client::{ClientTransport, connect};
use podway_stream::remotecommand::{Outcome, StreamOptions};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for one whole test step; a hang fails instead of blocking the suite.
const WAIT: Duration = Duration::from_secs(600);

const MIB: u64 = 1024 * 1024;

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done after {WAIT:?}"),
    }
}

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

/// Writes `len` pseudo-random bytes (xorshift from `seed`) and half-closes; returns their hash.
async fn send_pattern<W: AsyncWrite + Unpin>(w: &mut W, seed: u64, len: u64) -> [u8; 32] {
    let mut state = seed | 1;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        hash.update(&buf[..n]);
        w.write_all(&buf[..n]).await.expect("write");
        left -= n as u64;
    }
    w.shutdown().await.expect("half-close");
    hash.finalize().into()
}

/// Reads to EOF; returns the byte count and hash.
async fn receive<R: AsyncRead + Unpin>(r: &mut R) -> (u64, [u8; 32]) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await.expect("read");
        if n == 0 {
            return (total, hash.finalize().into());
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
}

async fn echo_target() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_port_forward_connections_at_once_on_one_spdy_session() {
    const N: usize = 1000;
    let api = FakeApi::start().await;
    let (echo, echo_task) = echo_target().await;
    let req = request(&api, "/api/v1/namespaces/default/pods/p/portforward");
    let pf = PortForwardClient::connect_spdy(tcp(&api).await, &req)
        .await
        .expect("session");
    // All connections are open before any of them sends.
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(pf.open(echo).await.expect("open"));
    }
    let checks = conns.into_iter().enumerate().map(|(i, (mut data, error))| {
        tokio::spawn(async move {
            let msg = format!("connection {i} ").repeat(100);
            data.write_all(msg.as_bytes()).await.expect("write");
            data.shutdown().await.expect("half-close");
            let mut got = String::new();
            data.read_to_string(&mut got).await.expect("read");
            assert_eq!(got, msg, "connection {i}");
            assert_eq!(error.text().await.expect("error stream"), None);
        })
    });
    let results = within("1,000 connections", futures::future::join_all(checks)).await;
    for r in results {
        r.expect("connection task");
    }
    pf.close().await;
    echo_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_through_one_port_forward_connection() {
    const LEN: u64 = 1024 * MIB;
    let api = FakeApi::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The target sends its own GiB while it hashes the client's.
    let target = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let (mut r, mut w) = tcp.into_split();
        tokio::join!(receive(&mut r), send_pattern(&mut w, 2, LEN))
    });
    let req = request(&api, "/api/v1/namespaces/default/pods/p/portforward");
    let pf = PortForwardClient::connect_spdy(tcp(&api).await, &req)
        .await
        .expect("session");
    let (data, error) = pf.open(port).await.expect("open");
    let (mut r, mut w) = tokio::io::split(data);
    let start = Instant::now();
    let (sent, received) = within(
        "1 GiB each way",
        futures::future::join(send_pattern(&mut w, 1, LEN), receive(&mut r)),
    )
    .await;
    let elapsed = start.elapsed();
    let ((target_got, target_hash), target_sent) = target.await.expect("target");
    assert_eq!(target_got, LEN);
    assert_eq!(target_hash, sent, "client → target bytes differ");
    assert_eq!(received, (LEN, target_sent), "target → client bytes differ");
    assert_eq!(error.text().await.expect("error stream"), None);
    eprintln!("1 GiB each way through one port-forward connection in {elapsed:?}");
    pf.close().await;
}

async fn exec_cat(transport: ClientTransport, protocol: &str) {
    const LEN: u64 = 100 * MIB;
    let api = FakeApi::start().await;
    let req = request(
        &api,
        "/api/v1/namespaces/default/pods/p/exec?command=cat&stdin=true&stdout=true",
    );
    let options = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let (streams, done) = connect(tcp(&api).await, &req, options, transport)
        .await
        .expect("connect");
    assert_eq!(done.protocol(), protocol);
    let mut stdin = streams.stdin.expect("stdin");
    let mut stdout = streams.stdout.expect("stdout");
    let (sent, received) = within(
        "100 MiB through cat",
        futures::future::join(send_pattern(&mut stdin, 3, LEN), receive(&mut stdout)),
    )
    .await;
    assert_eq!(received, (LEN, sent));
    assert_eq!(
        within("the exit status", done.outcome())
            .await
            .expect("outcome"),
        Outcome::Exited(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_exec_stdin_to_stdout_spdy_v4() {
    exec_cat(ClientTransport::Spdy, "v4.channel.k8s.io").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_exec_stdin_to_stdout_websocket_v5() {
    exec_cat(ClientTransport::WebSocket, "v5.channel.k8s.io").await;
}
