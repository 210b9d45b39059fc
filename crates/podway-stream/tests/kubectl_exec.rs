//! Real kubectl binaries against the fake API server: exec over WebSocket (1.32) and SPDY.
mod common;

use std::process::Stdio;

use common::FakeApi;
use tokio::io::AsyncWriteExt;

struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

async fn kubectl_exec(
    api: &FakeApi,
    minor: u32,
    spdy: bool,
    stdin: Option<&[u8]>,
    args: &[&str],
) -> Run {
    let mut cmd = api.kubectl(minor);
    if spdy {
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
    }
    cmd.arg("exec");
    if stdin.is_some() {
        cmd.arg("-i");
    }
    cmd.arg("p").arg("--").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kubectl");
    // Feed stdin while the output is read, so that neither side waits on the other.
    let feeder = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut w)) => {
            let data = data.to_vec();
            Some(tokio::spawn(async move {
                let _ = w.write_all(&data).await;
            }))
        }
        _ => None,
    };
    let out = child.wait_with_output().await.expect("kubectl output");
    if let Some(f) = feeder {
        f.await.expect("stdin feeder");
    }
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

async fn exit_code_and_streams(minor: u32, spdy: bool) -> Vec<String> {
    let api = FakeApi::start().await;
    let run = kubectl_exec(
        &api,
        minor,
        spdy,
        None,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
    )
    .await;
    assert_eq!(run.stdout, "out\n", "stderr was: {}", run.stderr);
    assert!(run.stderr.starts_with("err\n"), "stderr: {}", run.stderr);
    assert_eq!(run.code, Some(3), "stderr: {}", run.stderr);

    let run = kubectl_exec(&api, minor, spdy, Some(b"hi\n"), &["cat"]).await;
    assert_eq!(run.stdout, "hi\n", "stderr was: {}", run.stderr);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);

    // A larger transfer both ways, all output before the status.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let run = kubectl_exec(&api, minor, spdy, Some(&big), &["cat"]).await;
    assert_eq!(run.stdout.len(), big.len(), "stderr was: {}", run.stderr);
    assert_eq!(run.stdout.as_bytes(), &big[..]);
    assert_eq!(run.code, Some(0));
    api.records()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_exec_websocket_v5() {
    let records = exit_code_and_streams(32, false).await;
    assert!(
        records
            .iter()
            .all(|r| r == "exec websocket v5.channel.k8s.io"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_exec_spdy_fallback_off() {
    let records = exit_code_and_streams(32, true).await;
    assert!(
        records
            .iter()
            .all(|r| r.starts_with("exec spdy v5.channel.k8s.io,v4.channel.k8s.io")),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_28_exec_spdy() {
    let records = exit_code_and_streams(28, false).await;
    assert!(
        records
            .iter()
            .all(|r| r.starts_with("exec spdy v4.channel.k8s.io")),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reports_a_command_that_cannot_run() {
    for spdy in [false, true] {
        let api = FakeApi::start().await;
        let run = kubectl_exec(&api, 32, spdy, None, &["/nonexistent/podway-test"]).await;
        assert!(
            run.stderr
                .contains("Internal error occurred: error executing command in container:"),
            "spdy={spdy}: {}",
            run.stderr
        );
        assert_eq!(run.code, Some(1), "spdy={spdy}: {}", run.stderr);
    }
}

/// `kubectl exec -it` on a pseudo-terminal (util-linux `script`) of 100x30: the terminal size
/// reaches the handler over WebSocket v5 (1.32) and SPDY (1.28).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_tty_sends_terminal_size() {
    for minor in [32, 28] {
        let api = FakeApi::start().await;
        let kubectl = format!(
            "stty cols 100 rows 30; /usr/lib/google-cloud-sdk/bin/kubectl.1.{minor} --kubeconfig {} --cache-dir {} exec -it p -- podway-test-resize 1",
            api.kubeconfig().display(),
            api.dir.path().join("cache").display()
        );
        let out = tokio::process::Command::new("script")
            .args(["-qec", &kubectl, "/dev/null"])
            .env("HOME", api.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .expect("script");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("100x30"),
            "kubectl 1.{minor}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let records = api.records();
        assert_eq!(records.len(), 1, "{records:?}");
    }
}

/// 32 MiB of stdout, and 8 MiB of stdin echoed back, over WebSocket v5 and SPDY: nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_large_transfers() {
    for spdy in [false, true] {
        let api = FakeApi::start().await;
        let run = kubectl_exec(
            &api,
            32,
            spdy,
            None,
            &["sh", "-c", "head -c 33554432 /dev/zero | tr '\\0' x"],
        )
        .await;
        assert_eq!(run.code, Some(0), "spdy={spdy}: {}", run.stderr);
        assert_eq!(run.stdout.len(), 32 << 20, "spdy={spdy}");
        assert!(run.stdout.bytes().all(|b| b == b'x'));
        let input: Vec<u8> = (0..(8u32 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
        let run = kubectl_exec(&api, 32, spdy, Some(&input), &["cat"]).await;
        assert_eq!(run.code, Some(0), "spdy={spdy}: {}", run.stderr);
        assert!(
            run.stdout.as_bytes() == input.as_slice(),
            "spdy={spdy}: {} bytes back",
            run.stdout.len()
        );
    }
}
