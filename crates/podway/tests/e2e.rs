//! Issue 2's walking skeleton, as a user checks it: `podway up`, then the real kubectl 1.32 for
//! apply, get, exec (exit codes, both streams, stdin), logs (-f), port-forward and delete, and a
//! clean stop that leaves no process, mount or cgroup behind. Needs root, runc, umoci, busybox-static.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use support::*;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: main
      image: busybox:1.35
      command:
        - sh
        - -c
        - |
          trap "exit 0" TERM
          httpd -p 127.0.0.1:8080 -h /var/www
          echo "web started"
          echo "to stderr" >&2
          i=0
          while true; do echo "tick $i"; i=$((i+1)); sleep 1; done
"#;

#[test]
fn walking_skeleton_with_kubectl_1_32() {
    let mut cluster = Cluster::start();

    // apply + get: the pod runs on our node.
    cluster.apply(POD);
    cluster.wait_running("web");
    let table = stdout(&cluster.kubectl_ok(&["get", "pods", "-o", "wide"]));
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no row for web:\n{table}"));
    assert!(
        row.contains("Running") && row.contains(&cluster.node_name),
        "unexpected row: {row}"
    );
    let container_id = cluster.container_id("web");

    // The container really runs under runc in its own namespaces.
    let runc_root = cluster.state_dir.join("runc");
    let state = run_ok(
        std::process::Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["state", &container_id]),
    );
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("runc state json");
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_u64().expect("pid");
    for ns in ["net", "mnt", "pid", "uts", "ipc"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("container ns");
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("own ns");
        assert_ne!(theirs, ours, "container shares the host's {ns} namespace");
    }

    // exec: both streams on the right fds, the exit code comes through.
    let out = cluster.kubectl(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out", "{}", describe(&out));
    assert!(stderr(&out).starts_with("err"), "{}", describe(&out));

    // exec -i: stdin reaches the process and EOF ends it.
    let mut cat = cluster
        .kubectl_cmd(&["exec", "-i", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl exec -i");
    cat.stdin
        .take()
        .expect("stdin")
        .write_all(b"hi\n")
        .expect("write stdin");
    let out = cat.wait_with_output().expect("kubectl exec -i");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "hi");

    // exec sees the container's filesystem, not the host's.
    let out = cluster.kubectl_ok(&["exec", "web", "--", "cat", "/var/www/index.html"]);
    assert_eq!(stdout(&out), "hello from podway");

    // logs, and logs -f that keeps streaming.
    let logs = stdout(&cluster.kubectl_ok(&["logs", "web"]));
    assert!(
        logs.contains("web started") && logs.contains("to stderr"),
        "logs: {logs}"
    );
    let mut follow = KillOnDrop(
        cluster
            .kubectl_cmd(&["logs", "-f", "--tail=1", "web"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("logs -f"),
    );
    let mut lines = BufReader::new(follow.0.stdout.take().expect("stdout")).lines();
    // Following: ticks written after the command started keep arriving, in order.
    let ticks: Vec<u64> = lines
        .by_ref()
        .take(6)
        .map(|line| line.expect("utf-8"))
        .filter_map(|line| line.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect();
    assert!(
        ticks.len() >= 2 && ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "followed ticks: {ticks:?}"
    );
    drop(follow);

    // port-forward to 127.0.0.1:8080 inside the pod's network namespace.
    let local = free_port();
    let mut forward = KillOnDrop(
        cluster
            .kubectl_cmd(&["port-forward", "pod/web", &format!("{local}:8080")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("port-forward"),
    );
    let mut banner = String::new();
    let mut reader = BufReader::new(forward.0.stdout.take().expect("stdout"));
    reader.read_line(&mut banner).expect("banner");
    assert!(
        banner.contains("Forwarding from"),
        "port-forward said: {banner}"
    );
    // kubectl keeps writing ("Handling connection for …"): keep its stdout open and drained.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    for _ in 0..3 {
        let out = run_ok(
            std::process::Command::new("curl")
                .args(["-sS", "--max-time", "10"])
                .arg(format!("http://127.0.0.1:{local}/")),
        );
        assert_eq!(stdout(&out), "hello from podway");
    }
    // The page came from the pod's namespace: on the host nothing listens on 8080.
    if !host_has_8080_listener() {
        assert!(std::net::TcpStream::connect("127.0.0.1:8080").is_err());
    }
    drop(forward);

    // delete: kubectl waits until the pod is gone; nothing of the container is left.
    cluster.kubectl_ok(&["delete", "pod", "web", "--timeout=60s"]);
    let out = cluster.kubectl(&["get", "pod", "web"]);
    assert!(
        !out.status.success() && stderr(&out).contains("not found"),
        "{}",
        describe(&out)
    );
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/podway/{container_id}")).exists(),
        "the container's cgroup is left behind"
    );
    let rootfs_mounts: Vec<_> = cluster
        .mounts()
        .into_iter()
        .filter(|m| m.contains(&container_id))
        .collect();
    assert!(
        rootfs_mounts.is_empty(),
        "mounts left behind: {rootfs_mounts:?}"
    );
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "the container's process {pid} still runs"
    );

    // Ctrl-C equivalent: every tier stops, exit 0, nothing left.
    let (status, _) = cluster.stop();
    assert!(
        status.success(),
        "podway up exited with {status}; log:\n{}",
        cluster.log()
    );
    assert_eq!(cluster.processes(), Vec::new(), "processes left behind");
    assert_eq!(cluster.mounts(), Vec::<String>::new(), "mounts left behind");
}

/// Whether something on the host itself listens on 8080 (then the check above proves nothing).
fn host_has_8080_listener() -> bool {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(":1F90 00000000:0000 0A"))
}

/// The CRI log files of pod `name`'s container `container`: rotated ones oldest first, then
/// the current `0.log`, each with its text; None when a rotation moved a file while they were
/// read (the caller reads again).
fn log_files(cluster: &Cluster, name: &str, container: &str) -> Option<Vec<(String, String)>> {
    let pods = cluster.data_dir.join("pods");
    let pod_dir = std::fs::read_dir(&pods).ok()?.flatten().find(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(&format!("default_{name}_"))
    })?;
    let dir = pod_dir.path().join(container);
    let list = || -> Option<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("0.log"))
            .collect();
        // `0.log.<YYYYMMDD-HHMMSS>` sort by time; `0.log` (shortest) goes last.
        names.sort_by_key(|n| (n == "0.log", n.clone()));
        Some(names)
    };
    let before = list()?;
    let files = before
        .iter()
        .map(|n| Some((n.clone(), std::fs::read_to_string(dir.join(n)).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    (list()? == before).then_some(files)
}

/// The numbers N of the `line N …` records in CRI log text (each a whole stdout record).
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let mut fields = l.splitn(4, ' ');
            let (_, stream, tag, content) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            assert_eq!((stream, tag), ("stdout", "F"), "a whole record: {l:?}");
            line_number(content)
        })
        .collect()
}

/// N of a `line N …` line.
fn line_number(line: &str) -> Option<u64> {
    line.strip_prefix("line ")?.split(' ').next()?.parse().ok()
}

#[test]
fn logs_rotate_by_size_without_losing_a_line() {
    let mut cluster = Cluster::start_with(&[
        "--container-log-max-size",
        "4Ki",
        "--container-log-max-files",
        "3",
        "--container-log-monitor-interval",
        "1",
    ]);
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: chatty}\nspec:\n  containers:\n  \
         - name: main\n    image: busybox:1.35\n    command: [sh, -c, 'i=0; while true; do \
         echo \"line $i $(printf %080d 0)\"; i=$((i+1)); sleep 0.01; done']\n",
    );
    cluster.wait_running("chatty");
    // Two rotations at least, so that the oldest file has been removed once.
    let mut rotations_seen = std::collections::BTreeSet::new();
    let files = wait_for("four rotations", std::time::Duration::from_secs(60), || {
        let files = log_files(&cluster, "chatty", "main")?;
        let rotated = files.len() - 1;
        assert!(
            rotated <= 2,
            "more files than --container-log-max-files 3: {:?}",
            files.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        rotations_seen.extend(files.iter().map(|f| f.0.clone()).filter(|n| n != "0.log"));
        (rotations_seen.len() >= 4 && rotated == 2).then_some(files)
    });
    // What the files hold, oldest first, is one unbroken sequence: no record lost or split
    // when the file was renamed and reopened.
    let numbers: Vec<u64> = files
        .iter()
        .flat_map(|(_, text)| line_numbers(text))
        .collect();
    let first = numbers.first().copied().unwrap_or(0);
    let expected: Vec<u64> = (first..first + numbers.len() as u64).collect();
    assert_eq!(
        numbers,
        expected,
        "gaps across {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(first > 0, "the oldest rotated files were removed");
    // kubectl logs reads the current file, as with the kubelet.
    let logs = stdout(&cluster.kubectl_ok(&["logs", "chatty"]));
    let shown: Vec<u64> = logs.lines().filter_map(line_number).collect();
    assert!(
        !shown.is_empty() && shown.windows(2).all(|w| w[1] == w[0] + 1),
        "{logs}"
    );
    assert!(
        shown[0] >= first,
        "kubectl logs shows the current file only"
    );
}
