//! The measuring side of `bench/runtime_portforward.sh` (ignored: run by the script, never in
//! CI): socket throughput of `Runtime::port_forward` (a TCP connection to `localhost:PORT` made
//! inside the sandbox's network namespace) against plain loopback TCP in the host's namespace.
//!
//! Both ends run the same code: a sink/source server whose listener is bound inside the pod's
//! network namespace (from a thread that joined it) and a second one bound on the host's
//! loopback, and one client. Each of `PF_BENCH_RUNS` runs (default 5) moves `PF_BENCH_MIB`
//! (default 1024) MiB each way over each path, the two paths interleaved. Also the connect time
//! of both (`PF_BENCH_CONNECTS`, default 200). Prints markdown tables; nothing is asserted about
//! the times.
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of every read and write, both ends.
const CHUNK: usize = 256 * 1024;

/// The client asks the server to read this many bytes, then answer one byte.
const SINK: u8 = b'U';
/// The client asks the server to write this many bytes, then close.
const SOURCE: u8 = b'D';

/// A number from the environment, or `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A listener on `127.0.0.1:0` inside the network namespace at `netns`, bound from a thread
/// that joined it (the socket stays there).
fn listen_in(netns: &Path) -> std::net::TcpListener {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap_or_else(|e| panic!("{netns:?}: {e}"));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {netns:?}: {e}"));
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"))
    })
    .join()
    .unwrap_or_else(|_| panic!("the listening thread panicked"))
}

/// Serves every connection of `listener`: a one-byte request and a length, then sink or source.
async fn serve(listener: std::net::TcpListener) {
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
    while let Ok((conn, _)) = listener.accept().await {
        // A connection closed before its request (the connect-time samples) just ends.
        tokio::spawn(async move { drop(handle(conn).await) });
    }
}

async fn handle(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut head = [0u8; 9];
    conn.read_exact(&mut head).await?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[1..]);
    let mut left = u64::from_be_bytes(len);
    let mut buf = vec![0u8; CHUNK];
    match head[0] {
        SINK => {
            while left > 0 {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left = left.saturating_sub(n as u64);
            }
            conn.write_all(b"k").await
        }
        _ => {
            while left > 0 {
                let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
                conn.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            conn.shutdown().await
        }
    }
}

/// Sends `bytes` to the server's sink; the time until the server has read them all.
async fn upload(mut conn: TcpStream, bytes: u64) -> Duration {
    let buf = vec![7u8; CHUNK];
    let start = Instant::now();
    let mut head = vec![SINK];
    head.extend(bytes.to_be_bytes());
    conn.write_all(&head)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        conn.write_all(&buf[..n])
            .await
            .unwrap_or_else(|e| panic!("upload: {e}"));
        left -= n as u64;
    }
    let mut ack = [0u8; 1];
    conn.read_exact(&mut ack)
        .await
        .unwrap_or_else(|e| panic!("upload ack: {e}"));
    start.elapsed()
}

/// Reads `bytes` from the server's source until it closes; the time taken.
async fn download(mut conn: TcpStream, bytes: u64) -> Duration {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut head = vec![SOURCE];
    head.extend(bytes.to_be_bytes());
    conn.write_all(&head)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = 0u64;
    loop {
        let n = conn
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("download: {e}"));
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let took = start.elapsed();
    assert_eq!(got, bytes, "download ended early");
    took
}

/// The two ways of reaching a server, by the names the tables use.
#[derive(Clone, Copy)]
enum Way {
    /// `Runtime::port_forward` into the sandbox, to the pod's server.
    PortForward,
    /// `TcpStream::connect` on the host's loopback, to the host's server.
    Loopback,
}

/// What the client needs to open a connection either way.
struct Target<'a> {
    f: &'a Fixture,
    sandbox: &'a str,
    pod_port: u16,
    host_addr: SocketAddr,
}

impl Target<'_> {
    async fn connect(&self, way: Way) -> TcpStream {
        let conn = match way {
            Way::PortForward => self
                .f
                .rt()
                .port_forward(self.sandbox, self.pod_port)
                .await
                .unwrap_or_else(|e| panic!("port_forward: {e}")),
            Way::Loopback => TcpStream::connect(self.host_addr)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}")),
        };
        // As the runtime sets on its side (no Nagle).
        conn.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
        conn
    }
}

/// The directions, by the names the table uses (upload, download).
const DIRECTIONS: [&str; 2] = ["to the pod", "from the pod"];

/// User + system CPU time of this process so far (client and server run in it).
fn cpu_time() -> Duration {
    // SAFETY: getrusage(2) fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The median of `v` (which it sorts).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by bench/runtime_portforward.sh"]
async fn port_forward_throughput() {
    let runs = env_or("PF_BENCH_RUNS", 5);
    let bytes = env_or("PF_BENCH_MIB", 1024) << 20;
    let connects = env_or("PF_BENCH_CONNECTS", 200);
    let f = Fixture::new().await;
    let sandbox = f.sandbox("pf-bench").await;
    let netns = f
        .rt()
        .sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .netns_path;
    let pod = listen_in(&netns);
    let pod_port = pod.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let host =
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let host_addr = host.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let servers = [tokio::spawn(serve(pod)), tokio::spawn(serve(host))];
    let target = Target {
        f: &f,
        sandbox: &sandbox,
        pod_port,
        host_addr,
    };
    let ways = [Way::PortForward, Way::Loopback];
    let mb_s = |took: Duration| bytes as f64 / 1e6 / took.as_secs_f64();

    // Warm-up (first-use paths, socket buffers), not counted.
    for way in ways {
        upload(target.connect(way).await, bytes.min(64 << 20)).await;
        download(target.connect(way).await, bytes.min(64 << 20)).await;
    }

    // After libtest's "test … " line.
    println!();
    println!(
        "| run | direction | port-forward MB/s | loopback MB/s | port-forward / loopback \
         | port-forward CPU ms/GiB | loopback CPU ms/GiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let gib = bytes as f64 / f64::from(1u32 << 30);
    // Per direction and way: (MB/s, CPU ms per GiB) of every run; per direction: the ratios.
    let mut all: [[Vec<(f64, f64)>; 2]; 2] = Default::default();
    let mut ratios: [Vec<f64>; 2] = Default::default();
    for run in 0..runs {
        for (d, direction) in DIRECTIONS.into_iter().enumerate() {
            let mut got = [(0.0, 0.0); 2];
            // Alternate which path goes first.
            for k in 0..2 {
                let w = (run as usize + d + k) % 2;
                let conn = target.connect(ways[w]).await;
                let cpu = cpu_time();
                let took = if d == 0 {
                    upload(conn, bytes).await
                } else {
                    download(conn, bytes).await
                };
                let cpu = cpu_time() - cpu;
                got[w] = (mb_s(took), cpu.as_secs_f64() * 1e3 / gib);
                all[d][w].push(got[w]);
            }
            ratios[d].push(got[0].0 / got[1].0);
            println!(
                "| {} | {direction} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} |",
                run + 1,
                got[0].0,
                got[1].0,
                got[0].0 / got[1].0,
                got[0].1,
                got[1].1,
            );
        }
    }
    for (d, direction) in DIRECTIONS.into_iter().enumerate() {
        let pick = |w: usize, f: fn(&(f64, f64)) -> f64| {
            median(&mut all[d][w].iter().map(f).collect::<Vec<_>>())
        };
        println!(
            "| median (ratio: of the runs' ratios) | {direction} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} |",
            pick(0, |r| r.0),
            pick(1, |r| r.0),
            median(&mut ratios[d]),
            pick(0, |r| r.1),
            pick(1, |r| r.1),
        );
    }

    // Connect time: a fresh connection each way, interleaved.
    let mut times: [Vec<f64>; 2] = Default::default();
    for i in 0..connects {
        for k in 0..2 {
            let w = (i as usize + k) % 2;
            let start = Instant::now();
            let conn = target.connect(ways[w]).await;
            times[w].push(start.elapsed().as_secs_f64() * 1e6);
            drop(conn);
        }
    }
    println!();
    println!("| connect ({connects} each) | median µs | min µs |");
    println!("|---|---:|---:|");
    for (w, label) in [
        "`Runtime::port_forward` (thread + setns + connect)",
        "`TcpStream::connect` on the host's loopback",
    ]
    .into_iter()
    .enumerate()
    {
        let min = times[w].iter().copied().fold(f64::INFINITY, f64::min);
        println!("| {label} | {:.0} | {min:.0} |", median(&mut times[w]));
    }
    for s in servers {
        s.abort();
    }
}
