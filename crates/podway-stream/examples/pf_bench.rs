//! Port-forward benchmark over loopback, printing a table (run through `bench/portforward.sh`):
//! one connection through the podway-stream SPDY client and server halves versus plain loopback
//! TCP (the floor) in the same run; 100 concurrent connections (aggregate and per-connection
//! min/max); RSS per idle connection with 1,000 open and per idle session with 200 open. Client, server and target share this
//! process, so the memory figure covers both halves and the target's socket.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use podway_stream::portforward::client::PortForwardClient;
use podway_stream::portforward::{self, Dialer, PortForwardOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Serves port-forward upgrades on 127.0.0.1, dialling 127.0.0.1 ports.
async fn server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req| async move {
                    let dialer: Dialer = Arc::new(|port| {
                        Box::pin(async move {
                            TcpStream::connect(("127.0.0.1", port))
                                .await
                                .map_err(|e| e.to_string())
                        })
                    });
                    Ok::<_, Infallible>(portforward::serve(
                        req,
                        PortForwardOptions::default(),
                        dialer,
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

/// A target that reads each connection to EOF, then answers with the byte count and closes.
async fn sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                let mut total = 0u64;
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = tcp.write_all(&total.to_le_bytes()).await;
            });
        }
    });
    port
}

/// Sends `len` bytes, half-closes, and checks the target's count; returns the elapsed time.
async fn push<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, len: u64) -> Duration {
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = len;
    while left > 0 {
        let n = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        s.write_all(&buf[..n]).await.expect("write");
        left -= n as u64;
    }
    s.shutdown().await.expect("half-close");
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await.expect("count");
    assert_eq!(u64::from_le_bytes(count), len, "bytes lost");
    start.elapsed()
}

async fn session(server: u16) -> PortForwardClient {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{server}/portforward"))
        .body(())
        .expect("request");
    let tcp = TcpStream::connect(("127.0.0.1", server))
        .await
        .expect("connect");
    PortForwardClient::connect_spdy(tcp, &req)
        .await
        .expect("session")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system, all threads) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let one: u64 = std::env::var("PF_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        * MIB;
    let server = server().await;
    let target = sink().await;

    // Warm-up, then the floor and one forwarded connection, alternated three times (best of).
    let pf = session(server).await;
    let (data, _e) = pf.open(target).await.expect("open");
    push(data, 64 * MIB).await;
    eprintln!("warm-up done");
    let (mut plain, mut forwarded) = (Duration::MAX, Duration::MAX);
    // CPU seconds per GiB moved, summed over the three rounds.
    let (mut plain_cpu, mut forwarded_cpu) = (0.0, 0.0);
    for _ in 0..3 {
        let tcp = TcpStream::connect(("127.0.0.1", target))
            .await
            .expect("connect");
        let cpu = cpu_seconds();
        plain = plain.min(push(tcp, one).await);
        plain_cpu += cpu_seconds() - cpu;
        let (data, _e) = pf.open(target).await.expect("open");
        let cpu = cpu_seconds();
        forwarded = forwarded.min(push(data, one).await);
        forwarded_cpu += cpu_seconds() - cpu;
    }
    let gib = 3.0 * one as f64 / (1024.0 * MIB as f64);
    let (plain_cpu, forwarded_cpu) = (plain_cpu / gib, forwarded_cpu / gib);

    eprintln!("single connection done");
    if std::env::var("PF_BENCH_SINGLE_ONLY").is_ok() {
        // For profiling one forwarded connection (see bench/portforward.sh).
        println!(
            "| plain | {:.2} GB/s, {plain_cpu:.2} CPU-s/GiB | port-forward | {:.2} GB/s, {forwarded_cpu:.2} CPU-s/GiB |",
            gbps(one, plain),
            gbps(one, forwarded)
        );
        return;
    }
    // 100 concurrent connections on one session.
    let each = one / 100;
    let start = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let pf = &pf;
            async move {
                let (data, _e) = pf.open(target).await.expect("open");
                push(data, each).await
            }
        })
        .collect();
    let times = futures::future::join_all(tasks).await;
    let all = start.elapsed();
    let rates: Vec<f64> = times.iter().map(|t| gbps(each, *t)).collect();
    let min = rates.iter().cloned().fold(f64::MAX, f64::min);
    let max = rates.iter().cloned().fold(0.0, f64::max);
    pf.close().await;

    eprintln!("100 connections done");
    // Idle connections: the target holds each open without reading.
    let idle = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let idle_port = idle.local_addr().expect("addr").port();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = idle.accept().await {
            let _ = held_tx.send(tcp);
        }
    });
    const N: usize = 1000;
    let pf = session(server).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut conns = Vec::with_capacity(N);
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(pf.open(idle_port).await.expect("open"));
    }
    while held.len() < N {
        held.push(held_rx.recv().await.expect("accepted"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib();

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| plain loopback TCP, 1 connection ({} MiB, floor) | {:.2} GB/s |",
        one / MIB,
        gbps(one, plain)
    );
    println!(
        "| port-forward over SPDY, 1 connection | {:.2} GB/s |",
        gbps(one, forwarded)
    );
    println!(
        "| ratio port-forward / plain | {:.0}% |",
        100.0 * plain.as_secs_f64() / forwarded.as_secs_f64()
    );
    println!(
        "| CPU time per GiB, plain / port-forward (all threads, 2 cores) | {plain_cpu:.2} / {forwarded_cpu:.2} s |"
    );
    println!(
        "| 100 connections, aggregate ({} MiB each) | {:.2} GB/s |",
        each / MIB,
        gbps(each * 100, all)
    );
    println!(
        "| 100 connections, per connection min / max | {:.3} / {:.3} GB/s (min/max {:.2}) |",
        min,
        max,
        min / max
    );
    println!(
        "| RSS per idle port-forward connection (N={N}, both halves + target socket) | {:.1} KiB |",
        after.saturating_sub(before) as f64 / N as f64
    );
    drop(conns);
    pf.close().await;

    // Idle sessions: each an upgraded connection with its client and server SPDY halves.
    const SESSIONS: usize = 200;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        sessions.push(session(server).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib();
    println!(
        "| RSS per idle SPDY port-forward session (N={SESSIONS}, client + server halves, both sockets) | {:.1} KiB |",
        after.saturating_sub(before) as f64 / SESSIONS as f64
    );
    for s in &sessions {
        s.close().await;
    }
}
