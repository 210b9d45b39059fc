//! Real containers through runc: needs root, runc, umoci, busybox-static and the `podway` binary
//! (`cargo build -p podway`; or set `PODWAY_BIN`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use podway_runtime::{
    ContainerSpec, ContainerState, Error, ProcessIo, Runtime, SandboxSpec, SandboxState, WindowSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn imports_the_demo_image() {
    let f = Fixture::new().await;
    let image = f.import_demo();
    assert_eq!(image.repo_tags, ["docker.io/library/busybox:1.35"]);
    assert!(image.id.starts_with("sha256:"));
    assert!(image.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
    let images = f.rt().images();
    let by_id = images.get(&image.id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_id.map(|i| i.id), Some(image.id.clone()));
    let by_digest = images
        .get(&image.repo_digests[0])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(by_digest.is_some());
    assert!(
        images
            .get("busybox")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    // A second store over the same folder (another process) sees it.
    let other =
        podway_runtime::images::open_store(&f.config.data_dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other.list().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    // The layer is unpacked with its busybox.
    let snapshots = std::fs::read_dir(f.config.data_dir.join("snapshots"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .filter(|e| e.path().join("bin/busybox").is_file())
        .count();
    assert_eq!(snapshots, 1);
    images
        .remove("busybox:1.35")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(images.list().unwrap_or_else(|e| panic!("{e}")).is_empty());
    // Its blobs and snapshots are gone with it.
    for dir in ["images/blobs/sha256", "snapshots"] {
        let left = std::fs::read_dir(f.config.data_dir.join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "{dir}");
    }
}

#[tokio::test]
async fn pod_with_logs_exec_port_forward_and_cleanup() {
    let mut f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("web").await;
    let info = f
        .rt()
        .sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.state, SandboxState::Ready);
    let pause_pid = info.pid;

    let id = f
        .container(
            &sandbox,
            "main",
            &["sh", "-c", "echo hello; echo oops >&2; sleep 1000"],
        )
        .await;
    let c = f
        .rt()
        .container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.state, ContainerState::Running);
    assert!(c.image_id.starts_with("sha256:"));

    // CRI log lines for both streams.
    let log = f.log_path("main");
    let text = eventually("both log lines", || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains(" stdout F hello\n") && text.contains(" stderr F oops\n")).then_some(text)
    })
    .await;
    for line in text.lines() {
        let ts = line.split(' ').next().unwrap_or("");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "bad timestamp in {line:?}"
        );
    }

    // exec_sync: stdout, stderr, exit code; env, hostname and cwd from the container.
    let rt = f.rt().clone();
    let out = rt
        .exec_sync(
            &id,
            strings(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("exec_sync: {e}"));
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 3)
    );
    let out = rt
        .exec_sync(
            &id,
            strings(&["sh", "-c", "echo $GREETING; hostname; pwd"]),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("exec_sync: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi there\nweb-host\n/\n"
    );

    // A command that cannot start is an error naming the container and runc's reason.
    let err = rt
        .exec_sync(&id, strings(&["no-such-command"]), None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(&format!("exec in container {id} failed: "))
            && err.contains("no-such-command"),
        "{err}"
    );

    // exec_sync's timeout kills the process.
    let out = rt
        .exec_sync(
            &id,
            // The background child keeps the output open after the process is killed.
            strings(&["sh", "-c", "sleep 1000 & sleep 1000"]),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|e| panic!("exec_sync: {e}"));
    assert_eq!(out.exit_code, -1);

    // exec with stdin: cat echoes until EOF.
    let (mut client_in, exec_in) = tokio::io::duplex(1 << 16);
    let (exec_out, mut client_out) = tokio::io::duplex(1 << 20);
    let io = ProcessIo {
        stdin: Some(Box::new(exec_in)),
        stdout: Some(Box::new(exec_out)),
        ..ProcessIo::default()
    };
    let exec = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.exec(&id, strings(&["cat"]), false, io).await }
    });
    client_in
        .write_all(b"ping through stdin\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(client_in);
    let code = exec
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("exec: {e}"));
    let mut echoed = String::new();
    client_out
        .read_to_string(&mut echoed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((code, echoed.as_str()), (0, "ping through stdin\n"));

    // A caller that goes away (the exec future dropped) takes its process with it.
    let gone = tokio::time::timeout(
        Duration::from_millis(500),
        rt.exec(&id, strings(&["sleep", "999"]), false, ProcessIo::default()),
    )
    .await;
    assert!(gone.is_err());
    let mut left = String::from("sleep 999");
    for _ in 0..100 {
        let ps = rt
            .exec_sync(&id, strings(&["ps", "-o", "args"]), None)
            .await
            .unwrap_or_else(|e| panic!("ps: {e}"));
        left = String::from_utf8_lossy(&ps.stdout).into_owned();
        if !left.contains("sleep 999") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!left.contains("sleep 999"), "{left}");

    // port-forward to busybox httpd listening on the pod's loopback.
    let out = rt
        .exec_sync(
            &id,
            strings(&["httpd", "-p", "127.0.0.1:8080", "-h", "/var/www"]),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("httpd: {e}"));
    assert_eq!(
        out.exit_code,
        0,
        "httpd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = None;
    for _ in 0..200 {
        if let Ok(c) = rt.port_forward(&sandbox, 8080).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = conn.unwrap_or_else(|| panic!("httpd never listened"));
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    conn.read_to_string(&mut response)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        response.starts_with("HTTP/1.") && response[8..].starts_with(" 200 "),
        "{response}"
    );
    assert!(response.ends_with("hello from podway\n"), "{response}");
    let err = rt
        .port_forward(&sandbox, 9)
        .await
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(&format!(
            "failed to connect to localhost:9 inside the network namespace of sandbox {sandbox}: "
        )),
        "{err}"
    );

    // A reopened runtime (as after a restart) still sees the running container.
    drop(rt);
    f.runtime = None;
    f.runtime = Some(
        Runtime::open(f.config.clone())
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}")),
    );
    let c = f
        .rt()
        .container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.state, ContainerState::Running);
    let out = f
        .rt()
        .exec_sync(&id, strings(&["echo", "still"]), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.stdout, b"still\n");

    // Stop: sh as pid 1 ignores SIGTERM, so SIGKILL after the grace.
    f.rt()
        .stop_container(&id, Duration::from_millis(200))
        .await
        .unwrap_or_else(|e| panic!("stop: {e}"));
    let c = f
        .rt()
        .container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.state, c.exit_code, c.reason.as_str()),
        (ContainerState::Exited, 137, "Error")
    );
    assert!(!alive(c.pid) || c.pid == 0);
    let err = f.rt().exec_sync(&id, strings(&["true"]), None).await.err();
    assert!(
        matches!(&err, Some(Error::FailedPrecondition(m)) if m == &format!("container {id} is not running")),
        "{err:?}"
    );

    // Remove: no mount, no cgroup, no folder, no processes.
    let bundle = f.config.data_dir.join("containers").join(&id);
    let record = json(&bundle.join("container.json")).unwrap_or_default();
    f.rt()
        .remove_container(&id)
        .await
        .unwrap_or_else(|e| panic!("remove: {e}"));
    assert!(!mounted(&bundle.join("rootfs")));
    assert!(!bundle.exists());
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/podway/{id}")).exists());
    let pid = pid_of(&record, "pid").unwrap_or(0);
    assert!(pid == 0 || !alive(pid as u32), "pid {pid} still runs");
    // The pod's monitor outlives its containers: it goes with the sandbox.
    let shim = pid_of(&record, "shim_pid").unwrap_or(0) as u32;
    assert!(
        alive(shim),
        "the pod's monitor {shim} is gone with a container"
    );
    assert!(f.rt().container(&id).await.is_err());
    f.rt()
        .remove_container(&id)
        .await
        .unwrap_or_else(|e| panic!("idempotent remove: {e}"));

    f.rt()
        .stop_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.rt().sandbox(&sandbox).await.map(|s| s.state).ok(),
        Some(SandboxState::NotReady)
    );
    assert!(!alive(pause_pid));
    assert!(
        !alive(shim),
        "the pod's monitor {shim} outlives its stopped sandbox"
    );
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        f.rt()
            .list_sandboxes()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert!(!f.config.data_dir.join("sandboxes").join(&sandbox).exists());
    assert!(!mounted(
        &f.config
            .data_dir
            .join("sandboxes")
            .join(&sandbox)
            .join("shm")
    ));
}

#[tokio::test]
async fn exits_errors_and_sandbox_removal() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("batch").await;

    // A missing image: named error, nothing left behind.
    let spec = ContainerSpec {
        name: "x".into(),
        image: "nope:1".into(),
        ..ContainerSpec::default()
    };
    let err = f
        .rt()
        .create_container(&sandbox, spec)
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("image \"docker.io/library/nope:1\" not found")
    );
    let left = std::fs::read_dir(f.config.data_dir.join("containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);

    // A container that finishes: exit code, reason, final unterminated output as P.
    let id = f
        .container(&sandbox, "once", &["sh", "-c", "echo done; printf tail"])
        .await;
    let c = eventually("the container to exit", || {
        let c = futures_lite_block(f.rt().container(&id))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    assert_eq!((c.exit_code, c.reason.as_str()), (0, "Completed"));
    assert!(c.finished_at >= c.started_at && c.started_at > 0);
    let log = std::fs::read_to_string(f.log_path("once")).unwrap_or_default();
    let records: Vec<&str> = log
        .lines()
        .map(|l| l.split_once(' ').map_or("", |(_, r)| r))
        .collect();
    assert_eq!(records, ["stdout F done", "stdout P tail"]);

    // A running one, and a tty exec with a resize.
    let running = f.container(&sandbox, "tty", &["sleep", "1000"]).await;
    let (mut client_in, exec_in) = tokio::io::duplex(1 << 16);
    let (exec_out, mut client_out) = tokio::io::duplex(1 << 20);
    let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
    let io = ProcessIo {
        stdin: Some(Box::new(exec_in)),
        stdout: Some(Box::new(exec_out)),
        stderr: None,
        resize: Some(resize_rx),
    };
    let rt = f.rt().clone();
    let exec = tokio::spawn({
        let running = running.clone();
        async move {
            rt.exec(
                &running,
                strings(&["sh", "-c", "test -t 0 && echo on-tty; read x; stty size"]),
                true,
                io,
            )
            .await
        }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("on-tty") {
        let n = client_out
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if n == 0 {
            let result = exec.await;
            panic!(
                "tty output ended early: {:?}, exec: {result:?}",
                String::from_utf8_lossy(&seen)
            );
        }
        seen.extend_from_slice(&buf[..n]);
    }
    resize_tx
        .send(WindowSize {
            cols: 100,
            rows: 40,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    client_in
        .write_all(b"go\r")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = exec
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("tty exec: {e}"));
    client_out
        .read_to_end(&mut seen)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = String::from_utf8_lossy(&seen);
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("40 100"), "{seen:?}");

    // A command that does not exist: the start fails with runc's reason, recorded as StartError.
    let spec = ContainerSpec {
        name: "broken".into(),
        image: "busybox:1.35".into(),
        command: strings(&["/no/such/binary"]),
        ..ContainerSpec::default()
    };
    let broken = f
        .rt()
        .create_container(&sandbox, spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = f
        .rt()
        .start_container(&broken)
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with(&format!("starting container {broken}: "))
                && e.contains("/no/such/binary")),
        "{err:?}"
    );
    let c = f
        .rt()
        .container(&broken)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.state, c.reason.as_str()),
        (ContainerState::Exited, "StartError")
    );
    assert!(c.message.contains("/no/such/binary"), "{}", c.message);
    f.rt()
        .remove_container(&broken)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/podway/{broken}")).exists());

    // Containers of a pod share its /dev/shm.
    let out = f
        .rt()
        .exec_sync(
            &running,
            strings(&["sh", "-c", "echo shared > /dev/shm/note"]),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let peek = f
        .container(&sandbox, "peek", &["cat", "/dev/shm/note"])
        .await;
    eventually("peek to exit", || {
        let c = futures_lite_block(f.rt().container(&peek))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    let log = std::fs::read_to_string(f.log_path("peek")).unwrap_or_default();
    assert!(log.ends_with(" stdout F shared\n"), "{log}");

    // An image in use cannot be removed.
    let err = f.rt().images().remove("busybox:1.35").err();
    assert!(
        matches!(&err, Some(Error::FailedPrecondition(m)) if m.contains("is in use by container")),
        "{err:?}"
    );

    // Removing the sandbox removes its containers and stops everything.
    let pause = f.rt().sandbox(&sandbox).await.map(|s| s.pid).unwrap_or(0);
    let pid = f.rt().container(&running).await.map(|c| c.pid).unwrap_or(0);
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        f.rt()
            .list_containers()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert!(!alive(pause) && !alive(pid));
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/podway/{running}")).exists());
    let err = f.rt().run_sandbox(SandboxSpec::default()).await.err();
    assert!(matches!(err, Some(Error::InvalidArgument(_))));
}

/// Polls a ready-soon future once from a sync closure (the runtime's getters do no awaiting).
fn futures_lite_block<T>(
    fut: impl std::future::Future<Output = podway_runtime::Result<T>>,
) -> Option<T> {
    futures::executor::block_on(fut).ok()
}

#[tokio::test]
async fn attach_to_stdin_and_tty_containers() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("attach").await;

    // stdin + stdin_once, no tty: separate streams.
    let id = f
        .container_with(
            &sandbox,
            "reader",
            &["sh", "-c", "read line; echo got $line; echo bye >&2"],
            |s| {
                s.stdin = true;
                s.stdin_once = true;
            },
        )
        .await;
    let (mut client_in, attach_in) = tokio::io::duplex(1 << 16);
    let (attach_out, mut client_out) = tokio::io::duplex(1 << 20);
    let (attach_err, mut client_err) = tokio::io::duplex(1 << 20);
    let io = ProcessIo {
        stdin: Some(Box::new(attach_in)),
        stdout: Some(Box::new(attach_out)),
        stderr: Some(Box::new(attach_err)),
        resize: None,
    };
    let rt = f.rt().clone();
    let attach = tokio::spawn({
        let id = id.clone();
        async move { rt.attach(&id, io).await }
    });
    client_in
        .write_all(b"hi\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    attach
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let (mut out, mut err) = (String::new(), String::new());
    client_out
        .read_to_string(&mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client_err
        .read_to_string(&mut err)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.as_str(), err.as_str()), ("got hi\n", "bye\n"));
    let c = eventually("reader to exit", || {
        let c = futures_lite_block(f.rt().container(&id))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    assert_eq!(c.exit_code, 0);

    // A tty container: one stream, window size from the client, exit code kept.
    let id = f
        .container_with(&sandbox, "term", &["sh"], |s| {
            s.stdin = true;
            s.tty = true;
        })
        .await;
    let (mut client_in, attach_in) = tokio::io::duplex(1 << 16);
    let (attach_out, mut client_out) = tokio::io::duplex(1 << 20);
    let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
    let io = ProcessIo {
        stdin: Some(Box::new(attach_in)),
        stdout: Some(Box::new(attach_out)),
        stderr: None,
        resize: Some(resize_rx),
    };
    let rt = f.rt().clone();
    let attach = tokio::spawn({
        let id = id.clone();
        async move { rt.attach(&id, io).await }
    });
    resize_tx
        .send(WindowSize {
            cols: 120,
            rows: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    client_in
        .write_all(b"stty size; echo $TERM; exit 7\r")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    attach
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let mut out = String::new();
    client_out
        .read_to_string(&mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("30 120\r\nxterm\r\n"), "{out:?}");
    let c = eventually("term to exit", || {
        let c = futures_lite_block(f.rt().container(&id))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    assert_eq!(c.exit_code, 7);
    let log = std::fs::read_to_string(f.log_path("term")).unwrap_or_default();
    assert!(log.contains(" stdout F xterm"), "{log}");

    // Attaching to an exited container is refused with its name.
    let err = f.rt().attach(&id, ProcessIo::default()).await.err();
    assert!(
        matches!(&err, Some(Error::FailedPrecondition(m)) if m == &format!("container {id} is not running")),
        "{err:?}"
    );
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sockets = std::fs::read_dir(f.config.state_dir.join("attach"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sockets, 0);
}

/// One attach session to `id` writing `input` then ending its stdin; returns what came back
/// on stdout once `expect` was seen (the session is then dropped, as a client hanging up).
async fn attach_once(rt: &Runtime, id: &str, input: &[u8], expect: &str) -> String {
    let (mut client_in, attach_in) = tokio::io::duplex(1 << 16);
    let (attach_out, mut client_out) = tokio::io::duplex(1 << 20);
    let io = ProcessIo {
        stdin: Some(Box::new(attach_in)),
        stdout: Some(Box::new(attach_out)),
        stderr: None,
        resize: None,
    };
    let session = tokio::spawn({
        let (rt, id) = (rt.clone(), id.to_string());
        async move { rt.attach(&id, io).await }
    });
    client_in
        .write_all(input)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(client_in);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&seen).contains(expect) {
            match client_out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    session.abort();
    assert!(read.is_ok(), "no {expect:?} from attach, got {seen:?}");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn attach_stdin_end_closes_container_stdin_only_with_stdin_once() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("stdin-once").await;

    // Without stdin_once the container keeps its stdin: a second attach still reaches `cat`.
    let keep = f
        .container_with(&sandbox, "keep", &["cat"], |s| s.stdin = true)
        .await;
    for word in ["first", "second"] {
        let out = attach_once(f.rt(), &keep, format!("{word}\n").as_bytes(), word).await;
        assert!(out.contains(word), "{out:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = f
        .rt()
        .container(&keep)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.state, ContainerState::Running);
    let log_path = f.log_path("keep");
    eventually("both attached lines in the log", || {
        let log = std::fs::read_to_string(&log_path).ok()?;
        (log.contains(" stdout F first") && log.contains(" stdout F second")).then_some(())
    })
    .await;

    // With stdin_once the first attach's stdin EOF closes the container's stdin: `cat` ends.
    let once = f
        .container_with(&sandbox, "once", &["cat"], |s| {
            s.stdin = true;
            s.stdin_once = true;
        })
        .await;
    attach_once(f.rt(), &once, b"only\n", "only").await;
    let c = eventually("the stdin_once container to exit", || {
        let c = futures_lite_block(f.rt().container(&once))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    assert_eq!(c.exit_code, 0);
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A tar header owned by root.
fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A tar with `entries` (path, contents; `None` = folder) and busybox as `/bin/sh` when asked.
fn layer_tar(entries: &[(&str, Option<&[u8]>)], with_busybox: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = header();
        match data {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data)
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..])
            }
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }
    if with_busybox {
        let busybox = std::fs::read("/bin/busybox").unwrap_or_else(|e| panic!("busybox: {e}"));
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(busybox.len() as u64);
        b.append_data(&mut h, "bin/sh", busybox.as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    b.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// An OCI layout archive of `layers` (media type, bytes) with Cmd `cmd`, annotated `ref_name`.
fn oci_archive(path: &Path, layers: &[(&str, Vec<u8>)], cmd: &[&str], ref_name: &str) {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": cmd, "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [] }
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(&config), "size": config.len() },
        "layers": layers.iter().map(|(mt, data)| serde_json::json!({
            "mediaType": mt, "digest": sha256(data), "size": data.len() })).collect::<Vec<_>>()
    });
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": sha256(&manifest), "size": manifest.len(),
                        "annotations": { "org.opencontainers.image.ref.name": ref_name } }]
    });
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(
        "index.json".into(),
        &serde_json::to_vec(&index).unwrap_or_default(),
    );
    for blob in [config.as_slice(), manifest.as_slice()]
        .into_iter()
        .chain(layers.iter().map(|(_, d)| d.as_slice()))
    {
        add(format!("blobs/{}", sha256(blob).replace(':', "/")), blob);
    }
    std::fs::write(path, b.into_inner().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn layered_image_with_whiteouts_and_gzip() {
    let f = Fixture::new().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(
        &mut gz,
        &layer_tar(
            &[
                ("etc", None),
                ("etc/a", Some(b"a")),
                ("etc/b", Some(b"b")),
                ("d", None),
                ("d/x", Some(b"x")),
            ],
            true,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let lower = gz.finish().unwrap_or_else(|e| panic!("{e}"));
    let upper = layer_tar(
        &[
            ("etc/.wh.a", Some(b"")),
            ("d/.wh..wh..opq", Some(b"")),
            ("d/y", Some(b"y")),
        ],
        false,
    );
    let archive = f.tmp.path().join("layered.tar");
    oci_archive(
        &archive,
        &[
            ("application/vnd.oci.image.layer.v1.tar+gzip", lower),
            ("application/vnd.oci.image.layer.v1.tar", upper),
        ],
        &["/bin/sh", "-c", "ls /etc /d"],
        "example.com/test/layered:v1",
    );
    // Named by the archive's annotation when no name is given.
    let image = f
        .rt()
        .images()
        .import_archive(&archive, None)
        .unwrap_or_else(|e| panic!("import: {e}"));
    assert_eq!(image.repo_tags, ["example.com/test/layered:v1"]);

    let sandbox = f.sandbox("layers").await;
    let spec = ContainerSpec {
        name: "ls".into(),
        image: "example.com/test/layered:v1".into(),
        log_path: Some(PathBuf::from("ls/0.log")),
        ..ContainerSpec::default()
    };
    let id = f
        .rt()
        .create_container(&sandbox, spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    f.rt()
        .start_container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = eventually("ls to exit", || {
        let c = futures_lite_block(f.rt().container(&id))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    let log = std::fs::read_to_string(f.log_path("ls")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(" stdout F ").map(|(_, c)| c))
        .collect();
    // /etc/a whited out, /d made opaque (x hidden) with y added; hosts etc. are bound in.
    assert!(lines.contains(&"b") && !lines.contains(&"a"), "{log}");
    assert!(lines.contains(&"y") && !lines.contains(&"x"), "{log}");
    assert_eq!(c.exit_code, 0, "{log}");

    // A blob that does not match its digest is refused.
    let bad = f.tmp.path().join("bad.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(3);
    b.append_data(
        &mut h,
        format!("blobs/sha256/{}", "0".repeat(64)),
        &b"abc"[..],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&bad, b.into_inner().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let err = f
        .rt()
        .images()
        .import_archive(&bad, Some("bad:1"))
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("has digest sha256:")),
        "{err:?}"
    );
}

/// An attach session to a container with stdin, stdout and stderr, run on a task.
struct Session {
    stdin: Option<tokio::io::DuplexStream>,
    stdout: tokio::io::DuplexStream,
    stderr: tokio::io::DuplexStream,
    seen: Vec<u8>,
    task: tokio::task::JoinHandle<podway_runtime::Result<()>>,
}

impl Session {
    fn open(rt: &Runtime, id: &str) -> Session {
        let (stdin, attach_in) = tokio::io::duplex(1 << 16);
        let (attach_out, stdout) = tokio::io::duplex(1 << 20);
        let (attach_err, stderr) = tokio::io::duplex(1 << 20);
        let io = ProcessIo {
            stdin: Some(Box::new(attach_in)),
            stdout: Some(Box::new(attach_out)),
            stderr: Some(Box::new(attach_err)),
            resize: None,
        };
        let task = tokio::spawn({
            let (rt, id) = (rt.clone(), id.to_string());
            async move { rt.attach(&id, io).await }
        });
        Session {
            stdin: Some(stdin),
            stdout,
            stderr,
            seen: Vec::new(),
            task,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin closed"));
        stdin
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Reads stdout until `expect` shows.
    async fn expect(&mut self, expect: &str) {
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !String::from_utf8_lossy(&self.seen).contains(expect) {
                match self.stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            read.is_ok() && String::from_utf8_lossy(&self.seen).contains(expect),
            "no {expect:?} from attach, got {:?}",
            String::from_utf8_lossy(&self.seen)
        );
    }

    /// Ends stdin and waits for the session to end (the container exits); returns its stderr.
    async fn finish(mut self) -> String {
        drop(self.stdin.take());
        let ended = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "the attach session did not end well: {ended:?}"
        );
        let mut err = Vec::new();
        let _ = self.stderr.read_to_end(&mut err).await;
        String::from_utf8_lossy(&err).into_owned()
    }
}

/// The exited state of container `id`, once it is.
async fn exited(rt: &Runtime, id: &str) -> podway_runtime::ContainerInfo {
    eventually("the container to exit", || {
        let c = futures_lite_block(rt.container(id))?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await
}

/// The pid of the pod's monitor a container's record names.
fn shim_of_container(f: &Fixture, id: &str) -> u32 {
    let record = json(
        &f.config
            .data_dir
            .join("containers")
            .join(id)
            .join("container.json"),
    )
    .unwrap_or_default();
    pid_of(&record, "shim_pid").unwrap_or(0) as u32
}

#[tokio::test]
async fn one_shim_per_pod_serves_three_containers_and_goes_with_the_pod() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("trio").await;
    let shims = shims_of(&sandbox);
    assert_eq!(shims.len(), 1, "one monitor with the sandbox: {shims:?}");
    let shim = shims[0];

    let echo = |name: &str, code: i32| {
        format!("while read l; do echo {name}:$l; echo {name}-err:$l >&2; done; exit {code}")
    };
    let with_stdin = |s: &mut ContainerSpec| {
        s.stdin = true;
        s.stdin_once = true;
    };
    let one = f
        .container_with(&sandbox, "one", &["sh", "-c", &echo("one", 3)], with_stdin)
        .await;
    let two = f
        .container_with(&sandbox, "two", &["sh", "-c", &echo("two", 5)], with_stdin)
        .await;
    let three = f
        .container(
            &sandbox,
            "three",
            &["sh", "-c", "echo three; echo oops >&2; exit 7"],
        )
        .await;
    assert_eq!(shims_of(&sandbox), [shim], "still one monitor for the pod");
    for id in [&one, &two, &three] {
        assert_eq!(shim_of_container(&f, id), shim);
    }

    // Attached to two containers at once: each gets its own container's output.
    let mut a = Session::open(f.rt(), &one);
    let mut b = Session::open(f.rt(), &two);
    a.send(b"x\n").await;
    b.send(b"y\n").await;
    a.expect("one:x\n").await;
    b.expect("two:y\n").await;
    b.send(b"z\n").await;
    a.send(b"w\n").await;
    b.expect("two:z\n").await;
    a.expect("one:w\n").await;
    assert_eq!(String::from_utf8_lossy(&a.seen), "one:x\none:w\n");
    assert_eq!(String::from_utf8_lossy(&b.seen), "two:y\ntwo:z\n");
    // stdin_once: ending the session's stdin ends the container.
    let (err_a, err_b) = tokio::join!(a.finish(), b.finish());
    assert_eq!(err_a, "one-err:x\none-err:w\n");
    assert_eq!(err_b, "two-err:y\ntwo-err:z\n");

    for (id, name, code, lines) in [(&one, "one", 3, ["x", "w"]), (&two, "two", 5, ["y", "z"])] {
        let c = exited(f.rt(), id).await;
        assert_eq!((c.exit_code, c.reason.as_str()), (code, "Error"));
        let records = log_records(&f.log_path(name));
        let of = |stream: &str| -> Vec<String> {
            records
                .iter()
                .filter(|(s, t, _)| s == stream && t == "F")
                .map(|(_, _, c)| c.clone())
                .collect()
        };
        assert_eq!(of("stdout"), lines.map(|l| format!("{name}:{l}")));
        assert_eq!(of("stderr"), lines.map(|l| format!("{name}-err:{l}")));
        assert_eq!(records.len(), 4, "{records:?}");
    }
    let c = exited(f.rt(), &three).await;
    assert_eq!(c.exit_code, 7);
    let mut records = log_records(&f.log_path("three"));
    records.sort();
    assert_eq!(
        records,
        [
            ("stderr".into(), "F".into(), "oops".into()),
            ("stdout".into(), "F".into(), "three".into())
        ]
    );
    // Their monitor stays for the pod's next containers.
    assert_eq!(shims_of(&sandbox), [shim]);

    // Removing the pod removes its monitor, its sockets and its folder.
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
    assert!(shims_of(&sandbox).is_empty());
    assert!(!alive(shim));
    for dir in ["shims", "attach"] {
        let left: Vec<_> = std::fs::read_dir(f.config.state_dir.join(dir))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {dir}: {left:?}");
    }
    assert!(!f.config.data_dir.join("sandboxes").join(&sandbox).exists());
}

/// The numbers of `NAME N` lines of a counting container's log: all of them, in order.
fn counted(f: &Fixture, name: &str) -> Vec<u64> {
    log_records(&f.log_path(name))
        .into_iter()
        .filter_map(|(s, t, c)| {
            let n = c.strip_prefix(&format!("{name} "))?.parse().ok()?;
            (s == "stdout" && t == "F").then_some(n)
        })
        .collect()
}

#[tokio::test]
async fn runtime_restart_keeps_the_pod_shim_and_whole_logs() {
    let mut f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("steady").await;
    let count =
        |name: &str| format!("i=0; while true; do echo {name} $i; i=$((i+1)); sleep 0.05; done");
    let a = f.container(&sandbox, "a", &["sh", "-c", &count("a")]).await;
    let b = f.container(&sandbox, "b", &["sh", "-c", &count("b")]).await;
    let shim = shim_of_container(&f, &a);
    assert_eq!(shims_of(&sandbox), [shim]);
    eventually("some lines", || (counted(&f, "b").len() > 3).then_some(())).await;

    // The runtime goes away for a while; the containers and their monitor do not.
    f.runtime = None;
    let before = [counted(&f, "a").len(), counted(&f, "b").len()];
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = [counted(&f, "a").len(), counted(&f, "b").len()];
    assert!(
        during[0] > before[0] && during[1] > before[1],
        "no lines written while the runtime was down"
    );
    f.runtime = Some(
        Runtime::open(f.config.clone())
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}")),
    );
    for id in [&a, &b] {
        let c = f.rt().container(id).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.state, ContainerState::Running);
    }
    // A new container of the pod goes to the same monitor.
    let c = f
        .container(&sandbox, "c", &["sh", "-c", "echo new; sleep 1000"])
        .await;
    assert_eq!(shim_of_container(&f, &c), shim);
    assert_eq!(shims_of(&sandbox), [shim]);
    eventually("the new container's log", || {
        log_records(&f.log_path("c"))
            .contains(&("stdout".into(), "F".into(), "new".into()))
            .then_some(())
    })
    .await;
    // The old containers keep logging through the same monitor after the restart (one line per
    // 50 ms: wait for it rather than assume the time since then was long enough).
    eventually("lines written after the restart", || {
        (counted(&f, "a").len() > during[0] && counted(&f, "b").len() > during[1]).then_some(())
    })
    .await;
    for (id, name, during) in [(&a, "a", during[0]), (&b, "b", during[1])] {
        f.rt()
            .stop_container(id, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("stop: {e}"));
        assert_eq!(exited(f.rt(), id).await.exit_code, 137);
        let numbers = counted(&f, name);
        let expected: Vec<u64> = (0..numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "the log of {name} has gaps");
        assert!(
            numbers.len() > during,
            "{name}: {} lines at the end, {during} while the runtime was down",
            numbers.len()
        );
    }

    // A killed monitor: its containers are reported exited once their processes go, and the
    // pod's next container gets a new monitor.
    // SAFETY: kill(2) with a plain pid and signal.
    unsafe { libc::kill(shim as i32, libc::SIGKILL) };
    eventually("the monitor to go", || (!alive(shim)).then_some(())).await;
    f.rt()
        .stop_container(&c, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("stop: {e}"));
    let info = exited(f.rt(), &c).await;
    assert_eq!((info.exit_code, info.reason.as_str()), (255, "Unknown"));
    let d = f
        .container(&sandbox, "d", &["sh", "-c", "echo again; exit 2"])
        .await;
    let new_shim = shim_of_container(&f, &d);
    assert!(new_shim != shim && new_shim != 0);
    assert_eq!(shims_of(&sandbox), [new_shim]);
    assert_eq!(exited(f.rt(), &d).await.exit_code, 2);
    assert_eq!(
        log_records(&f.log_path("d")),
        [("stdout".into(), "F".into(), "again".into())]
    );
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
    assert!(shims_of(&sandbox).is_empty());
}

/// `Anonymous:` of a process's smaps_rollup, in KiB.
fn anonymous_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_stuck_attach_client_holds_back_only_its_container_and_is_dropped() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("stuck").await;
    let spew = "s=$(head -c 8000 /dev/zero | tr '\\0' x); while true; do echo $s; sleep 0.01; done";
    let noisy = f.container(&sandbox, "noisy", &["sh", "-c", spew]).await;
    let tick = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done";
    f.container(&sandbox, "tick", &["sh", "-c", tick]).await;
    let shim = shim_of_container(&f, &noisy);

    // A client that never reads its output.
    let (attach_out, never_read) = tokio::io::duplex(1 << 16);
    let io = ProcessIo {
        stdout: Some(Box::new(attach_out)),
        ..ProcessIo::default()
    };
    let session = tokio::spawn({
        let (rt, id) = (f.rt().clone(), noisy.clone());
        async move { rt.attach(&id, io).await }
    });
    let log_len = |name: &str| std::fs::metadata(f.log_path(name)).map_or(0, |m| m.len());
    // The noisy container's output is held back once the client's queue is full...
    let held = eventually("the noisy log to stop growing", || {
        let before = log_len("noisy");
        std::thread::sleep(Duration::from_millis(300));
        (before > 0 && log_len("noisy") == before).then_some(before)
    })
    .await;
    // ...while its neighbour in the same monitor keeps logging, and the monitor's memory stays
    // bounded.
    let ticks = counted(&f, "tick").len();
    eventually("the tick log to grow", || {
        (counted(&f, "tick").len() > ticks + 5).then_some(())
    })
    .await;
    assert!(log_len("noisy") <= held + 8 * 1024);
    let anon = anonymous_kib(shim);
    assert!(
        anon < 4096,
        "the monitor holds {anon} KiB of anonymous memory"
    );
    // The stuck client is dropped (10 s) and the output flows to the log again.
    eventually("the noisy log to grow again", || {
        (log_len("noisy") > held + 64 * 1024).then_some(())
    })
    .await;
    drop(never_read);
    let ended = tokio::time::timeout(Duration::from_secs(10), session).await;
    assert!(matches!(ended, Ok(Ok(_))), "{ended:?}");
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
    assert!(shims_of(&sandbox).is_empty());
}

#[tokio::test]
async fn a_sandbox_that_cannot_start_leaves_no_process_socket_or_folder() {
    let f = Fixture::new().await;
    // The kernel refuses host names over 64 bytes: `podway pause` fails at sethostname while
    // the pod's monitor, started alongside, is already up.
    let hostname = "h".repeat(65);
    let spec = SandboxSpec {
        name: "unnamed".into(),
        namespace: "default".into(),
        uid: "uid-unnamed".into(),
        hostname: hostname.clone(),
        ..SandboxSpec::default()
    };
    let err = f
        .rt()
        .run_sandbox(spec)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("starting the pause process of sandbox ")
            && err.contains(&format!("sethostname {hostname:?}")),
        "{err}"
    );
    let state = f.config.state_dir.to_string_lossy().into_owned();
    let monitors = eventually("the monitor to be gone", || {
        let left = live_pids(|pid| {
            let line = cmdline(pid);
            line.contains(" shim ") && line.contains(&state)
        });
        left.is_empty().then_some(left)
    })
    .await;
    assert!(monitors.is_empty());
    let sockets = std::fs::read_dir(f.config.state_dir.join("shims"))
        .map(|d| d.count())
        .unwrap_or(0);
    let sandboxes = std::fs::read_dir(f.config.data_dir.join("sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!((sockets, sandboxes), (0, 0));
    let listed = f
        .rt()
        .list_sandboxes()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(listed.is_empty());
}

#[tokio::test]
async fn killall_stops_a_pod_whose_runtime_is_gone_and_keeps_its_records() {
    let mut f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("orphan").await;
    let a = f.container(&sandbox, "a", &["sleep", "1000"]).await;
    let b = f
        .container(&sandbox, "b", &["sh", "-c", "echo before; sleep 1000"])
        .await;
    let info = f
        .rt()
        .list_sandboxes()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pause = info.first().map_or(0, |s| s.pid);
    let mut pids = vec![pause, shim_of_container(&f, &a)];
    for id in [&a, &b] {
        pids.push(
            f.rt()
                .container(id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .pid,
        );
    }
    assert!(pids.iter().all(|&p| p > 0 && alive(p)), "{pids:?}");
    eventually("b's first line", || {
        std::fs::read_to_string(f.log_path("b"))
            .ok()
            .filter(|l| l.contains("before"))
    })
    .await;

    // The runtime is gone; its pod is not, until killall.
    f.runtime = None;
    let c = &f.config;
    let killed = podway_runtime::killall::killall(&c.data_dir, &c.state_dir, &c.oci_runtime);
    assert_eq!(
        (killed.processes, killed.containers, killed.sandboxes),
        (4, 2, 1)
    );
    eventually("every process to go", || {
        pids.iter().all(|&p| !alive(p)).then_some(())
    })
    .await;
    let data = &c.data_dir;
    let mut mount_points = vec![data.join("sandboxes").join(&sandbox).join("shm")];
    for id in [&a, &b] {
        mount_points.push(data.join("containers").join(id).join("rootfs"));
    }
    for m in &mount_points {
        assert!(!mounted(m), "{} is still mounted", m.display());
    }
    let runc = std::process::Command::new(&c.oci_runtime)
        .arg("--root")
        .arg(c.state_dir.join("runc"))
        .args(["list", "-q"])
        .output()
        .unwrap_or_else(|e| panic!("runc list: {e}"));
    assert_eq!(String::from_utf8_lossy(&runc.stdout).trim(), "");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for id in [&a, &b] {
            let cgroup = hierarchy.path().join("podway").join(id);
            assert!(!cgroup.exists(), "{} is left", cgroup.display());
        }
    }

    // A runtime opened afterwards finds the pod stopped and the log whole.
    f.runtime = Some(
        Runtime::open(f.config.clone())
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}")),
    );
    for id in [&a, &b] {
        assert_eq!(exited(f.rt(), id).await.state, ContainerState::Exited);
    }
    let sandboxes = f
        .rt()
        .list_sandboxes()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sandboxes.first().map(|s| s.state),
        Some(SandboxState::NotReady)
    );
    let log = std::fs::read_to_string(f.log_path("b")).unwrap_or_default();
    assert!(log.contains("stdout F before"), "{log}");
}
