//! Every installed kubectl (1.27–1.33) with its default transports: exec and port-forward,
//! recording which protocol each negotiated.
mod common;

use std::process::Stdio;

use common::FakeApi;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const VERSIONS: &[u32] = &[27, 28, 29, 30, 31, 32, 33];

fn installed(minor: u32) -> bool {
    std::path::Path::new(&format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}")).exists()
}

async fn exec_once(api: &FakeApi, minor: u32) {
    let mut child = api
        .kubectl(minor)
        .args([
            "exec",
            "-i",
            "p",
            "--",
            "sh",
            "-c",
            "cat; echo err >&2; exit 5",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"in\n").await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in\n",
        "kubectl 1.{minor}: {stderr}"
    );
    assert!(stderr.starts_with("err\n"), "kubectl 1.{minor}: {stderr}");
    assert_eq!(out.status.code(), Some(5), "kubectl 1.{minor}: {stderr}");
}

async fn port_forward_once(api: &FakeApi, minor: u32, echo: u16) {
    let mut child = api
        .kubectl(minor)
        .args(["port-forward", "p", &format!(":{echo}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let local: u16 = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("kubectl exited early");
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            break rest
                .split(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port");
        }
    };
    let mut tcp = TcpStream::connect(("127.0.0.1", local))
        .await
        .expect("connect");
    tcp.write_all(b"through").await.expect("write");
    tcp.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"through", "kubectl 1.{minor}");
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_exec_and_port_forward() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let echo = listener.local_addr().expect("addr").port();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut table = Vec::new();
    for &minor in VERSIONS.iter().filter(|m| installed(**m)) {
        let api = FakeApi::start().await;
        exec_once(&api, minor).await;
        port_forward_once(&api, minor, echo).await;
        let records = api.records();
        // Exec went WebSocket v5 from 1.30, port-forward through the tunnel from 1.31.
        let exec_ws = minor >= 30;
        let pf_ws = minor >= 31;
        assert_eq!(records.len(), 2, "kubectl 1.{minor}: {records:?}");
        assert_eq!(
            records[0] == "exec websocket v5.channel.k8s.io",
            exec_ws,
            "kubectl 1.{minor}: {records:?}"
        );
        assert!(
            exec_ws || records[0].starts_with("exec spdy "),
            "kubectl 1.{minor}: {records:?}"
        );
        let expected_pf = if pf_ws {
            "portforward websocket SPDY/3.1+portforward.k8s.io"
        } else {
            "portforward spdy portforward.k8s.io"
        };
        assert_eq!(records[1], expected_pf, "kubectl 1.{minor}");
        table.push(format!("kubectl 1.{minor}: {}", records.join(" | ")));
    }
    echo_task.abort();
    println!("{}", table.join("\n"));
    assert!(!table.is_empty());
}
