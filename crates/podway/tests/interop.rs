//! Every stock kubectl on this machine against one `podway up`: exec (plain, with stdin, on a
//! terminal), attach with stdin and port-forward, asserting outputs and exit codes, and which protocol each version
//! negotiated (the table in `docs/protocols-by-client.md`). Needs root, runc, umoci, busybox-static,
//! the versioned kubectl copies and Debian's kubectl 1.20 (`scripts/install-deps.sh` fetches it).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::*;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: peer
spec:
  containers:
    - name: main
      image: busybox:1.35
      command: ["sh", "-c", "trap 'exit 0' TERM; httpd -p 127.0.0.1:8080 -h /var/www; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: listener
spec:
  containers:
    - name: main
      image: busybox:1.35
      stdin: true
      command: ["sh", "-c", "while read line; do echo \"got $line\"; done"]
"#;

/// A kubectl under test and the protocols it must negotiate with podway.
struct Client {
    name: &'static str,
    binary: PathBuf,
    exec: &'static str,
    port_forward: &'static str,
}

fn clients() -> Vec<Client> {
    let gcloud = |v: &str| PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}"));
    let debian = std::env::var_os("PODWAY_KUBECTL_1_20")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/podway/kubectl-1.20/usr/bin/kubectl"));
    let ws_v5 = "WebSocket \"v5.channel.k8s.io\"";
    let tunnel = "WebSocket \"SPDY/3.1+portforward.k8s.io\"";
    let spdy_pf = "SPDY \"portforward.k8s.io\"";
    vec![
        Client {
            name: "1.20 (Debian)",
            binary: debian,
            exec: "SPDY \"v4.channel.k8s.io\"",
            port_forward: spdy_pf,
        },
        Client {
            name: "1.27",
            binary: gcloud("1.27"),
            exec: "SPDY \"v4.channel.k8s.io\"",
            port_forward: spdy_pf,
        },
        Client {
            name: "1.29",
            binary: gcloud("1.29"),
            exec: "SPDY \"v5.channel.k8s.io\"",
            port_forward: spdy_pf,
        },
        Client {
            name: "1.30",
            binary: gcloud("1.30"),
            exec: ws_v5,
            port_forward: spdy_pf,
        },
        Client {
            name: "1.31",
            binary: gcloud("1.31"),
            exec: ws_v5,
            port_forward: tunnel,
        },
        Client {
            name: "1.32",
            binary: gcloud("1.32"),
            exec: ws_v5,
            port_forward: tunnel,
        },
        Client {
            name: "1.33",
            binary: gcloud("1.33"),
            exec: ws_v5,
            port_forward: tunnel,
        },
    ]
}

#[test]
fn every_kubectl_version_execs_and_forwards() {
    let mut cluster = Cluster::start();
    cluster.apply(POD);
    for pod in ["peer", "listener"] {
        cluster.wait_running(pod);
    }

    for client in clients() {
        assert!(
            client.binary.exists(),
            "kubectl {} missing at {}",
            client.name,
            client.binary.display()
        );
        let kubectl = |args: &[&str]| {
            let mut cmd = Command::new(&client.binary);
            cmd.arg("--kubeconfig").arg(&cluster.kubeconfig).args(args);
            cmd.env("HOME", cluster.dir.path());
            cmd.env(
                "KUBECACHEDIR",
                cluster.dir.path().join(format!("cache-{}", client.name)),
            );
            cmd
        };
        let who = client.name;

        // exec: both streams, exit code (1.20 reports it as v4 status like the others).
        let log_before = cluster.log().len();
        let out = kubectl(&[
            "exec",
            "peer",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("kubectl exec");
        assert_eq!(
            out.status.code(),
            Some(3),
            "kubectl {who}: {}",
            describe(&out)
        );
        assert_eq!(stdout(&out), "out", "kubectl {who}: {}", describe(&out));
        assert!(
            stderr(&out).starts_with("err"),
            "kubectl {who}: {}",
            describe(&out)
        );
        let negotiated = &cluster.log()[log_before..];
        assert!(
            negotiated.contains(&format!("negotiated {} for exec", client.exec)),
            "kubectl {who} should negotiate {} for exec; podway logged:\n{negotiated}",
            client.exec
        );

        // exec -i: stdin, then EOF ends the command.
        let mut cat = kubectl(&["exec", "-i", "peer", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl exec -i");
        cat.stdin
            .take()
            .expect("stdin")
            .write_all(b"through stdin\n")
            .expect("write");
        let out = cat.wait_with_output().expect("kubectl exec -i");
        assert!(out.status.success(), "kubectl {who}: {}", describe(&out));
        assert_eq!(stdout(&out), "through stdin", "kubectl {who}");

        // exec -it on a real terminal (script(1) gives kubectl a 91x27 pty): the process starts
        // with that size and its exit code comes back. script's stdin stays open until the end.
        let line = format!(
            "stty cols 91 rows 27; {} --kubeconfig {} exec -it peer -- sh -c 'stty size; exit 5'",
            client.binary.display(),
            cluster.kubeconfig.display()
        );
        let mut tty = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("HOME", cluster.dir.path())
            .env(
                "KUBECACHEDIR",
                cluster.dir.path().join(format!("cache-{}", client.name)),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script kubectl exec -it");
        let _open_stdin = tty.stdin.take();
        let out = tty.wait_with_output().expect("script kubectl exec -it");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "kubectl {who} -it: {text}");
        assert!(
            text.starts_with("27 91\r\n"),
            "kubectl {who} -it: the process saw another size: {text:?}"
        );

        // attach -i: a line reaches the main process's stdin and its answer comes back. The
        // client then goes away; without stdinOnce the process keeps its stdin for the next one.
        let mut attach = KillOnDrop(
            kubectl(&["attach", "-i", "listener"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl attach -i"),
        );
        let mut attach_stdin = attach.0.stdin.take().expect("stdin");
        let mut answers = BufReader::new(attach.0.stdout.take().expect("stdout"));
        let line = format!("from kubectl {who}");
        // kubectl reads its stdin once attached; a line written earlier waits in the pipe.
        writeln!(attach_stdin, "{line}").expect("write to kubectl attach");
        let expected = format!("got {line}");
        let mut answer = String::new();
        while answer.trim_end() != expected {
            answer.clear();
            let n = answers.read_line(&mut answer).expect("read kubectl attach");
            assert!(n > 0, "kubectl {who} attach ended before {expected:?}");
        }
        drop(attach);
        drop(attach_stdin);

        // port-forward: several connections through one session.
        let log_before = cluster.log().len();
        let local = free_port();
        let mut forward = KillOnDrop(
            kubectl(&["port-forward", "pod/peer", &format!("{local}:8080")])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl port-forward"),
        );
        let mut reader = BufReader::new(forward.0.stdout.take().expect("stdout"));
        let mut banner = String::new();
        reader.read_line(&mut banner).expect("banner");
        assert!(
            banner.contains("Forwarding from"),
            "kubectl {who} port-forward said: {banner}"
        );
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        for _ in 0..3 {
            let out = run_ok(
                Command::new("curl")
                    .args(["-sS", "--max-time", "10"])
                    .arg(format!("http://127.0.0.1:{local}/")),
            );
            assert_eq!(
                stdout(&out),
                "hello from podway",
                "kubectl {who} port-forward"
            );
        }
        drop(forward);
        let negotiated = &cluster.log()[log_before..];
        assert!(
            negotiated.contains(&format!(
                "negotiated {} for portforward",
                client.port_forward
            )),
            "kubectl {who} should negotiate {} for port-forward; podway logged:\n{negotiated}",
            client.port_forward
        );
    }
}
