//! What a person does at a terminal with kubectl 1.32 against `podway up`: `kubectl run -it` (an
//! attached TTY whose size and exit code come through), and `kubectl cp` both ways (a file, and a
//! folder with a 10 MiB file, checksums compared). Needs root, runc, umoci, busybox-static.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: files
spec:
  containers:
    - name: main
      image: busybox:1.35
      command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;

/// `kubectl run -it` on a 91x27 terminal: the shell sees that size, and the container's exit
/// code becomes kubectl's.
#[test]
fn run_it_attaches_a_terminal() {
    let cluster = Cluster::start();
    let line = format!(
        "stty cols 91 rows 27; {KUBECTL} --kubeconfig {} run -it shell --image busybox:1.35 \
         --image-pull-policy=IfNotPresent --restart=Never -- sh",
        cluster.kubeconfig.display()
    );
    let mut tty = KillOnDrop(
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("HOME", cluster.dir.path())
            .env("KUBECACHEDIR", cluster.dir.path().join("kube-cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script kubectl run -it"),
    );
    // Typed ahead: the pty keeps it until the shell reads its terminal. kubectl sets the size
    // twice (one row and column more, then the real one, to make the shell redraw): the shell
    // waits a moment for the second, as a person at the prompt would.
    let mut keys = tty.0.stdin.take().expect("stdin");
    keys.write_all(b"sleep 1; stty size; exit 6\n")
        .expect("type");
    let mut output = String::new();
    let status = wait_for("kubectl run -it to end", Duration::from_secs(90), || {
        tty.0.try_wait().expect("wait script")
    });
    if let Some(mut pipe) = tty.0.stdout.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut output);
    }
    drop(keys);
    assert!(
        output.contains("27 91"),
        "the shell saw another size: {output:?}\npodway log:\n{}",
        cluster.log()
    );
    assert_eq!(status.code(), Some(6), "{output:?}");
    let phase = cluster.kubectl_ok(&["get", "pod", "shell", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(stdout(&phase), "Failed");
}

/// `kubectl cp` into and out of a pod: contents survive the tar streams over exec.
#[test]
fn cp_copies_files_both_ways() {
    let mut cluster = Cluster::start();
    cluster.apply(POD);
    cluster.wait_running("files");

    // One file in, read back with exec.
    let local = cluster.dir.path().join("note.txt");
    std::fs::write(&local, "copied by kubectl cp\n").expect("write note");
    cluster.kubectl_ok(&["cp", local.to_str().expect("utf-8"), "files:/tmp/note.txt"]);
    let out = cluster.kubectl_ok(&["exec", "files", "--", "cat", "/tmp/note.txt"]);
    assert_eq!(stdout(&out), "copied by kubectl cp");

    // A folder with a small and a 10 MiB random file, in and back out.
    let tree = cluster.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("sub/small.txt"), "small\n").expect("write small");
    let big: Vec<u8> = (0..10 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("big.bin"), &big).expect("write big");
    cluster.kubectl_ok(&["cp", tree.to_str().expect("utf-8"), "files:/tmp/tree"]);
    let sums = cluster.kubectl_ok(&["exec", "files", "--", "md5sum", "/tmp/tree/big.bin"]);
    let local_sum = run_ok(Command::new("md5sum").arg(tree.join("big.bin")));
    assert_eq!(
        stdout(&sums).split_whitespace().next(),
        stdout(&local_sum).split_whitespace().next(),
        "the copy in the pod differs"
    );
    let back = cluster.dir.path().join("back");
    cluster.kubectl_ok(&["cp", "files:/tmp/tree", back.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read(back.join("big.bin")).expect("read big"), big);
    assert_eq!(
        std::fs::read_to_string(back.join("sub/small.txt")).expect("read small"),
        "small\n"
    );
}
