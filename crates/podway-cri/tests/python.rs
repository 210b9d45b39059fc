//! Interop with a CRI client podway did not write: `python/cri_client.py` (Debian's python3-grpcio,
//! stubs generated from the vendored CRI proto by python3-grpc-tools) drives a pod's lifecycle
//! and ExecSync against the daemon (root, runc).
mod common;

use std::path::Path;

use common::{Daemon, IMAGE};

/// Debian's interpreter, which has python3-grpcio and python3-grpc-tools (a `python3` earlier on
/// PATH, e.g. pyenv's, may lack them).
const PYTHON: &str = "/usr/bin/python3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_drives_a_pod() {
    let daemon = Daemon::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cri_client.py");
    let logs = daemon.dir.path().join("logs");
    let output = tokio::process::Command::new(PYTHON)
        .arg(&script)
        .arg(&daemon.socket)
        .arg(IMAGE)
        .arg(&logs)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running python3 (apt-get install python3-grpcio python3-grpc-tools)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "version: podway v1 0.1.0",
            "sandbox: 64 hex characters",
            "started: True",
            "listed: main=CONTAINER_RUNNING",
            "exec_sync: exit=3 stdout=out-42 stderr=err",
            "unknown container: NOT_FOUND",
            "stopped: CONTAINER_EXITED",
            "removed: 0 sandboxes left",
        ],
        "stderr:\n{stderr}"
    );
    daemon.stop().await.unwrap();
}
