//! The official Kubernetes Python client (Debian's `python3-kubernetes`) against `podway up`:
//! exec with both streams and the exit code, exec with stdin, and its WebSocket port-forward.
//! The script is `tests/python/official_client.py`. Needs root, runc, umoci, busybox-static and
//! python3-kubernetes (`scripts/install-deps.sh`).

mod support;

use std::process::Command;

use support::*;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: pyclient
spec:
  containers:
    - name: main
      image: busybox:1.35
      command: ["sh", "-c", "trap 'exit 0' TERM; httpd -p 127.0.0.1:8080 -h /var/www; while true; do sleep 1; done"]
"#;

#[test]
fn official_python_client_execs_and_forwards() {
    let mut cluster = Cluster::start();
    cluster.apply(POD);
    cluster.wait_running("pyclient");
    let script = repo_root().join("crates/podway/tests/python/official_client.py");
    let out = Command::new("timeout")
        .arg("120")
        .arg("/usr/bin/python3")
        .arg(&script)
        .arg(&cluster.kubeconfig)
        .arg("pyclient")
        .output()
        .expect("run the Python client");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{}\npodway log:\n{}",
        describe(&out),
        cluster.log()
    );
    for expected in [
        "phase Running",
        "exec stdout out",
        "exec stderr err",
        "exec returncode 3",
        "stdin answer got from python",
        "portforward body hello from podway",
        "portforward error None",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "the Python client did not print {expected:?}:\n{text}"
        );
    }
}
