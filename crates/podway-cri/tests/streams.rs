//! Interactive streaming through CRI URLs: TTY exec with resize, attach, and refusals.
//! Needs root, runc, `cargo build -p podway` (or `PODWAY_BIN`), umoci and busybox-static.
mod common;

use common::{Daemon, container_config, eventually, run_pod, sandbox_config, websocket};
use futures::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use tokio_tungstenite::tungstenite::Message;

/// `[channel] + bytes` as one binary message.
fn frame(channel: u8, bytes: &[u8]) -> Message {
    let mut data = vec![channel];
    data.extend_from_slice(bytes);
    Message::Binary(data.into())
}

/// Reads messages until the bytes of `channel` contain `needle`; returns them.
async fn read_until(ws: &mut common::Ws, channel: u8, needle: &str) -> String {
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(needle) {
        match ws.next().await {
            Some(Ok(Message::Binary(data))) if data.first() == Some(&channel) => {
                got.extend_from_slice(&data[1..]);
            }
            Some(Ok(Message::Binary(data))) if data.first() == Some(&3) => {
                panic!("session failed: {}", String::from_utf8_lossy(&data[1..]));
            }
            Some(Ok(_)) => {}
            other => panic!(
                "session ended before {needle:?} ({other:?}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_exec_follows_resize() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/tty");
    let (_, container) = run_pod(&mut c, "tty", &log_dir, &["sleep", "1000"]).await;
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: container,
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut ws = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    ws.send(frame(4, br#"{"Width":100,"Height":30}"#))
        .await
        .unwrap();
    // The resize travels apart from stdin: ask until the shell sees the new size.
    let mut seen = String::new();
    for _ in 0..50 {
        ws.send(frame(0, b"stty size; echo END\n")).await.unwrap();
        seen = read_until(&mut ws, 1, "END\r\n").await;
        if seen.contains("30 100") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        seen.contains("30 100"),
        "terminal size not applied: {seen:?}"
    );
    ws.send(frame(0, b"exit 4\n")).await.unwrap();
    let got = common::channels(&mut ws).await;
    let status = common::status_of(got.get(&3).expect("status on channel 3"));
    assert_eq!(status["details"]["causes"][0]["message"], "4", "{status}");
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reaches_the_main_process_and_its_log() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/attach");
    let sandbox = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config("attach", &log_dir)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut config = container_config("attach", &["cat"]);
    config.stdin = true;
    let container = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox,
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;

    // Not running yet: exec and attach are refused.
    let err = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: container.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );

    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap();
    let url = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: container.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.contains("/attach/"), "{url}");
    let mut ws = websocket(&url, "v4.channel.k8s.io").await.unwrap();
    ws.send(frame(0, b"ping through attach\n")).await.unwrap();
    read_until(&mut ws, 1, "ping through attach\n").await;
    let _ = ws.close(None).await;

    let log_path = log_dir.join("attach/0.log");
    eventually("attached input echoed into the CRI log", || {
        let log_path = log_path.clone();
        async move {
            std::fs::read_to_string(&log_path)
                .is_ok_and(|s| s.contains("stdout F ping through attach"))
        }
    })
    .await;
    // The container outlives the attach session.
    let state = c.container_status(&container).await.state;
    assert_eq!(state, cri::ContainerState::ContainerRunning as i32);
    daemon.stop().await.unwrap();
}
