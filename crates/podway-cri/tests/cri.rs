//! The CRI server over real gRPC on a unix socket, with the real runtime (root, runc).
//! Needs `cargo build -p podway` first (or `PODWAY_BIN`), umoci and busybox-static.
mod common;

use std::time::Duration;

use common::{
    Daemon, IMAGE, channels, eventually, run_httpd_pod, run_pod, sandbox_config, status_of,
    websocket,
};
use futures::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use tokio_tungstenite::tungstenite::{self, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_status_and_images() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();

    let version = c
        .runtime
        .version(cri::VersionRequest {
            version: "0.1.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "podway");
    assert_eq!(version.runtime_api_version, "v1");

    let status = c
        .runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    for kind in ["RuntimeReady", "NetworkReady"] {
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.r#type == kind && c.status),
            "{kind} in {:?}",
            status.conditions
        );
    }

    let spec = |image: &str| {
        Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        })
    };
    let image = c
        .images
        .image_status(cri::ImageStatusRequest {
            image: spec(IMAGE),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .expect("demo image present");
    assert!(image.id.starts_with("sha256:"), "{}", image.id);
    assert!(
        image.repo_tags.iter().any(|t| t.ends_with("busybox:1.35")),
        "{:?}",
        image.repo_tags
    );

    let missing = c
        .images
        .image_status(cri::ImageStatusRequest {
            image: spec("nothere:1"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.image.is_none());

    let listed = c
        .images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(listed.iter().any(|i| i.id == image.id));

    let pulled = c
        .images
        .pull_image(cri::PullImageRequest {
            image: spec(IMAGE),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.image_ref, image.id);
    let err = c
        .images
        .pull_image(cri::PullImageRequest {
            // A loopback registry with no server: the pull is tried and fails, naming the image.
            image: spec("127.0.0.1:9/nothere:1"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("nothere"), "{}", err.message());

    let fs = c
        .images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.unwrap().value > 0);

    // Removing an absent image succeeds.
    c.images
        .remove_image(cri::RemoveImageRequest {
            image: spec("nothere:1"),
        })
        .await
        .unwrap();

    let err = c
        .runtime
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    let socket = daemon.socket.clone();
    daemon.stop().await.unwrap();
    assert!(!socket.exists(), "socket file removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_exec_sync_and_exec_url() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/test_web_uid-web");

    let (sandbox, container) = run_pod(
        &mut c,
        "web",
        &log_dir,
        &["sh", "-c", "echo hello from web; exec sleep 1000"],
    )
    .await;

    // ListPodSandbox filters.
    let lister = c.clone();
    let list = |filter: cri::PodSandboxFilter| {
        let mut c = lister.clone();
        async move {
            c.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .items
        }
    };
    let by_label = list(cri::PodSandboxFilter {
        label_selector: [("app".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].id, sandbox);
    assert_eq!(by_label[0].state, cri::PodSandboxState::SandboxReady as i32);
    assert!(
        list(cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxNotready as i32
            }),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        list(cri::PodSandboxFilter {
            label_selector: [("app".to_owned(), "db".to_owned())].into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    let status = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.metadata.unwrap().name, "web");
    assert!(status.created_at > 0);

    // A second sandbox with the same metadata is refused.
    let err = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config("web", &log_dir)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{}", err.message());

    // ListContainers filters.
    let containers = c
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                label_selector: [("container".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].id, container);

    let running = c.container_status(&container).await;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32);
    assert!(running.started_at >= running.created_at && running.created_at > 0);
    assert_eq!(running.image.unwrap().image, IMAGE);
    assert!(running.image_id.starts_with("sha256:"));
    assert!(!running.image_ref.is_empty());
    let log_path = log_dir.join("web/0.log");
    assert_eq!(running.log_path, log_path.to_string_lossy());
    eventually("the container's output in its CRI log file", || {
        let log_path = log_path.clone();
        async move {
            std::fs::read_to_string(&log_path).is_ok_and(|s| s.contains("stdout F hello from web"))
        }
    })
    .await;

    // ExecSync.
    let out = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code, 3);

    // Exec URL over WebSocket v5: stdout, stderr, status with the exit code.
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo hi; echo oops >&2; exit 7".into(),
            ],
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let prefix = format!("http://{}/exec/", daemon.stream_addr);
    assert!(url.starts_with(&prefix), "{url}");
    assert!(
        url.len() - prefix.len() >= 22,
        "token of at least 128 bits: {url}"
    );
    let mut ws = websocket(&url, "v5.channel.k8s.io").await.unwrap();
    let got = channels(&mut ws).await;
    assert_eq!(got.get(&1).map(Vec::as_slice), Some(&b"hi\n"[..]));
    assert_eq!(got.get(&2).map(Vec::as_slice), Some(&b"oops\n"[..]));
    let status = status_of(got.get(&3).expect("status on channel 3"));
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(
        status["details"]["causes"][0]["reason"], "ExitCode",
        "{status}"
    );
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");

    // The token is spent: reuse is 404 and reaches no container.
    match websocket(&url, "v5.channel.k8s.io").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        Ok(_) => panic!("reused token was accepted"),
        Err(err) => panic!("unexpected error {err}"),
    }

    // Exec with stdin over v4: what goes in comes out, exit 0 ⇒ Success.
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: container.clone(),
            cmd: vec!["cat".into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut ws = websocket(&url, "v4.channel.k8s.io").await.unwrap();
    let mut stdin = vec![0u8];
    stdin.extend_from_slice(b"through stdin\n");
    ws.send(Message::Binary(stdin.into())).await.unwrap();
    // v4 has no half-close: close the session's stdin by ending the command through the
    // status; instead read until our bytes came back, then close the socket.
    let mut echoed = Vec::new();
    while !echoed.ends_with(b"through stdin\n") {
        match ws.next().await {
            Some(Ok(Message::Binary(data))) if data.first() == Some(&1) => {
                echoed.extend_from_slice(&data[1..]);
            }
            Some(Ok(_)) => {}
            other => panic!("session ended before the echo: {other:?}"),
        }
    }
    assert_eq!(echoed, b"through stdin\n");
    ws.close(None).await.unwrap();

    // Stop, status, remove (twice), sandbox stop and remove (twice).
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: container.clone(),
            timeout: 5,
        })
        .await
        .unwrap();
    let exited = c.container_status(&container).await;
    assert_eq!(exited.state, cri::ContainerState::ContainerExited as i32);
    assert!(exited.finished_at >= exited.started_at);
    assert_ne!(exited.exit_code, 0, "killed by a signal");
    for _ in 0..2 {
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: container.clone(),
            })
            .await
            .unwrap();
    }
    let err = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    for _ in 0..2 {
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await
            .unwrap();
    }
    assert!(list(cri::PodSandboxFilter::default()).await.is_empty());
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streaming_requests_are_invalid_arguments() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let exec =
        |container_id: &str, tty: bool, stdin: bool, stdout: bool, stderr: bool| cri::ExecRequest {
            container_id: container_id.into(),
            cmd: vec!["true".into()],
            tty,
            stdin,
            stdout,
            stderr,
        };
    for (request, what) in [
        (exec("", false, false, true, false), "container_id"),
        (exec("abc", true, false, true, true), "tty and stderr"),
        (exec("abc", false, false, false, false), "one of stdin"),
    ] {
        let err = c.runtime.exec(request).await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{}",
            err.message()
        );
        assert!(err.message().contains(what), "{}", err.message());
    }
    let err = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: "abc".into(),
            stdin: false,
            tty: true,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: String::new(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // Unknown objects.
    let err = c
        .runtime
        .exec(exec("0123abc", false, false, true, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    let err = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "0123abc".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    // A made-up token is 404.
    let url = format!("http://{}/exec/AAAAAAAAAAAAAAAAAAAAAA", daemon.stream_addr);
    match websocket(&url, "v4.channel.k8s.io").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        Ok(_) => panic!("made-up token was accepted"),
        Err(err) => panic!("unexpected error {err}"),
    }
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_is_resource_exhausted() {
    let daemon = Daemon::start_with(|config| config.max_in_flight = 2).await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/limit");
    let (sandbox, _) = run_pod(&mut c, "limit", &log_dir, &["sleep", "1000"]).await;
    let request = cri::PortForwardRequest {
        pod_sandbox_id: sandbox.clone(),
        port: vec![8080],
    };
    for _ in 0..2 {
        c.runtime.port_forward(request.clone()).await.unwrap();
    }
    let err = c.runtime.port_forward(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message()
            .contains("maximum number of in-flight requests exceeded")
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_legacy_websocket() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let log_dir = daemon.dir.path().join("logs/pf");
    let (sandbox, _) = run_httpd_pod(&mut c, "pf", &log_dir).await;
    let url = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox,
            port: vec![8080],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.contains("/portforward/"), "{url}");
    let mut ws = websocket(&url, "v4.channel.k8s.io").await.unwrap();
    // The first message on each channel is the port, little-endian.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match ws.next().await {
            Some(Ok(Message::Binary(data))) => seen.push(data.to_vec()),
            Some(Ok(_)) => {}
            other => panic!("session ended early: {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, vec![vec![0, 0x90, 0x1f], vec![1, 0x90, 0x1f]]);
    let mut request = vec![0u8];
    request.extend_from_slice(b"GET /index.html HTTP/1.0\r\n\r\n");
    ws.send(Message::Binary(request.into())).await.unwrap();
    let mut body = Vec::new();
    while !String::from_utf8_lossy(&body).contains("hello from podway") {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) if data.first() == Some(&0) => {
                body.extend_from_slice(&data[1..]);
            }
            Ok(Some(Ok(Message::Binary(data)))) if data.first() == Some(&1) => {
                panic!(
                    "port-forward error: {}",
                    String::from_utf8_lossy(&data[1..])
                );
            }
            Ok(Some(Ok(_))) => {}
            other => panic!(
                "no answer from httpd ({other:?}); got {:?}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    let _ = ws.close(None).await;
    drop(daemon);
}

/// The shim cannot reopen a log yet: a running container's ReopenContainerLog is Unimplemented
/// (the kubelet then leaves the file alone); a stopped one is FailedPrecondition, an unknown one
/// NotFound, as containerd answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_answers() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let logs = daemon.dir.path().join("logs");
    let script = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";
    let (_, container) = run_pod(&mut c, "reopen", &logs, &["sh", "-c", script]).await;
    let log_path = c.container_status(&container).await.log_path;
    // Rotation as the kubelet does it: rename, then ask for a reopen; new lines land in a new
    // file at the old path, the renamed one keeps what it had.
    eventually("the first log lines", || {
        let log_path = log_path.clone();
        async move { std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("line 1\n")) }
    })
    .await;
    let rotated = format!("{log_path}.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    c.runtime
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap();
    eventually("lines in the reopened log", || {
        let log_path = log_path.clone();
        async move {
            std::fs::read_to_string(&log_path)
                .is_ok_and(|t| t.lines().filter(|l| l.contains(" stdout F line ")).count() >= 2)
        }
    })
    .await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains(" stdout F line 0"), "{old}");
    let new = std::fs::read_to_string(&log_path).unwrap();
    assert!(!new.contains(" stdout F line 0\n"), "{new}");
    assert!(new.lines().all(|l| l.split(' ').count() >= 4), "{new}");
    let client = c.clone();
    let reopen = |id: String| {
        let mut c = client.clone();
        async move {
            c.runtime
                .reopen_container_log(cri::ReopenContainerLogRequest { container_id: id })
                .await
                .unwrap_err()
                .code()
        }
    };
    assert_eq!(reopen("0".repeat(64)).await, tonic::Code::NotFound);
    assert_eq!(reopen(String::new()).await, tonic::Code::InvalidArgument);
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: container.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    assert_eq!(reopen(container).await, tonic::Code::FailedPrecondition);
    daemon.stop().await.unwrap();
}
