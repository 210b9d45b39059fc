//! `podway up 2>&1 | tee log`, then Ctrl-C: the terminal's SIGINT kills tee too, so podway stops
//! with nobody reading its stdout or stderr. It must still shut down, and exit 0.
//! Needs root (the runtime starts), like the other tests of the binary.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

#[test]
fn stops_on_sigint_after_the_log_reader_is_gone() {
    let dir = tempfile::Builder::new()
        .prefix("podway-signals-")
        .tempdir()
        .expect("temp dir");
    let mut up = KillOnDrop(
        Command::new(podway_bin())
            .args(["up", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--state-dir")
            .arg(dir.path().join("run"))
            .args(["--api-port", &free_port().to_string()])
            .args(["--node-port", &free_port().to_string()])
            .args(["--node-name", "signals"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn podway up"),
    );
    let stdout = up.0.stdout.take().expect("stdout");
    let stderr = up.0.stderr.take().expect("stderr");
    let mut banner = String::new();
    let mut lines = BufReader::new(stdout);
    while !banner.starts_with("podway is up") {
        banner.clear();
        let n = lines.read_line(&mut banner).expect("read podway up");
        assert!(n > 0, "podway up ended before it was up");
    }
    // The reader goes away, as tee does on Ctrl-C.
    drop(lines);
    drop(stderr);
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(up.0.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill -INT podway up");
    let status = wait_for(
        "podway up to stop after SIGINT",
        Duration::from_secs(60),
        || up.0.try_wait().expect("wait podway up"),
    );
    assert!(status.success(), "podway up exited with {status}");
    assert!(
        mounts_below(dir.path()).is_empty(),
        "{:?}",
        mounts_below(dir.path())
    );
}

#[test]
fn killall_stops_the_pods_of_a_crashed_podway_up() {
    let mut cluster = Cluster::start();
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: survivor}\nspec:\n  containers:\n  \
         - {name: main, image: busybox:1.35, command: [sleep, '1000']}\n",
    );
    cluster.wait_running("survivor");

    let refused = cluster.killall();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("a runtime is serving"),
        "{}",
        stderr(&refused)
    );

    cluster.kill_up();
    let left = cluster.processes();
    assert!(
        left.iter().any(|(_, cmd)| cmd.contains(" shim ")),
        "the pod's monitor outlives podway up: {left:?}"
    );
    let killed = cluster.killall();
    assert!(killed.status.success(), "{}", stderr(&killed));
    assert!(
        stdout(&killed).starts_with(
            "killed 3 processes; removed the mounts and cgroups of 1 container and 1 sandbox"
        ),
        "{}",
        stdout(&killed)
    );
    let left = wait_for("the pod's processes to go", Duration::from_secs(10), || {
        let left = cluster.processes();
        left.is_empty().then_some(left)
    });
    assert!(left.is_empty());
    assert!(cluster.mounts().is_empty(), "{:?}", cluster.mounts());
}
