//! The node agent against containerd instead of podway's runtime: every tier swappable at its
//! real interface. Debian's containerd 1.6 (CRI plugin, runc, overlayfs snapshots, a CNI bridge)
//! runs with its own config and folders inside a network namespace this test creates, together
//! with `podway server` and `podway node`; kubectl runs in it too. Nothing leaves that namespace.
//!
//! Two containerd settings matter here: `restrict_oom_score_adj` (the sandbox's -998 is refused
//! in a restricted container) and a sandbox image that stays up (there is no registry to pull
//! `pause` from, so a busybox tag that sleeps plays it).
//! Needs root, containerd, ctr and the CNI plugins (scripts/install-deps.sh installs them).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// The pods' subnet, on a bridge inside the test's network namespace.
const POD_SUBNET_PREFIX: &str = "10.244.77.";

/// containerd, `podway server` and `podway node` in a network namespace of their own.
struct ContainerdCluster {
    dir: tempfile::TempDir,
    netns: String,
    kubeconfig: PathBuf,
    containerd: Option<Child>,
    server: Option<Child>,
    node: Option<Child>,
}

impl ContainerdCluster {
    fn start() -> ContainerdCluster {
        let dir = tempfile::Builder::new()
            .prefix("podway-containerd-")
            .tempdir()
            .expect("temp dir");
        let netns = format!("podway-ctrd-{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        let mut cluster = ContainerdCluster {
            kubeconfig: dir.path().join("api/kubeconfig"),
            dir,
            netns,
            containerd: None,
            server: None,
            node: None,
        };
        run_ok(Command::new("ip").args(["-n", &cluster.netns, "link", "set", "lo", "up"]));
        cluster.write_config();
        cluster.containerd = Some(
            cluster.spawn(
                "containerd",
                Command::new("containerd")
                    .arg("--config")
                    .arg(cluster.path("config.toml")),
            ),
        );
        wait_for("containerd's socket", Duration::from_secs(30), || {
            cluster.assert_running();
            cluster.path("containerd.sock").exists().then_some(())
        });
        cluster.import_images();

        let bin = podway_bin();
        cluster.server = Some(
            cluster.spawn(
                "server",
                Command::new(&bin)
                    .args(["server", "--data-dir"])
                    .arg(cluster.path("api"))
                    .args(["--node-name", "ctrd", "--port", "6443"]),
            ),
        );
        wait_for("the node kubeconfig", Duration::from_secs(60), || {
            cluster.assert_running();
            cluster.path("api/node.kubeconfig").exists().then_some(())
        });
        cluster.node = Some(cluster.spawn_node());
        wait_for("the node to be Ready", Duration::from_secs(60), || {
            cluster.assert_running();
            let out = cluster.kubectl(
                KUBECTL,
                &[
                    "get",
                    "node",
                    "ctrd",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            );
            (stdout(&out) == "True").then_some(())
        });
        cluster
    }

    /// `podway node` against containerd's socket.
    fn spawn_node(&self) -> Child {
        let pki = self.path("api/pki");
        self.spawn(
            "node",
            Command::new(podway_bin())
                .args(["node", "--node-name", "ctrd", "--kubeconfig"])
                .arg(self.path("api/node.kubeconfig"))
                .arg("--container-runtime-endpoint")
                .arg(format!("unix://{}", self.path("containerd.sock").display()))
                .arg("--tls-cert-file")
                .arg(pki.join("node.crt"))
                .arg("--tls-private-key-file")
                .arg(pki.join("node.key"))
                .arg("--client-ca-file")
                .arg(pki.join("ca.crt"))
                .arg("--pod-log-dir")
                .arg(self.path("pods")),
        )
    }

    /// Stops the node agent with SIGTERM and starts a new one.
    fn restart_node(&mut self) {
        if let Some(mut node) = self.node.take() {
            terminate(&mut node, Duration::from_secs(30));
        }
        self.node = Some(self.spawn_node());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// containerd's config (its own root, state, socket, CNI config) and the CNI bridge network.
    fn write_config(&self) {
        let dir = self.dir.path().display();
        let config = format!(
            r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
[grpc]
  address = "{dir}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/busybox:pause"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dir}/cni"
"#
        );
        std::fs::write(self.path("config.toml"), config).expect("containerd config");
        std::fs::create_dir_all(self.path("cni")).expect("cni dir");
        let network = format!(
            r#"{{"cniVersion":"1.0.0","name":"podway-test","plugins":[{{"type":"bridge","bridge":"cni-podway","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{POD_SUBNET_PREFIX}0/24"}}]],"dataDir":"{dir}/ipam"}}}}]}}"#
        );
        std::fs::write(self.path("cni/10-podway.conflist"), network).expect("cni config");
    }

    /// The demo image as `busybox:1.35`, and a tag of it that sleeps as the sandbox image.
    fn import_images(&self) {
        let archive = self.path("busybox.tar");
        run_ok(Command::new(repo_root().join("scripts/demo-image.sh")).arg(&archive));
        let layout = self.path("layout");
        std::fs::create_dir_all(&layout).expect("layout dir");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-xf")
                .arg(&archive),
        );
        run_ok(
            Command::new("umoci")
                .args(["config", "--image"])
                .arg(format!("{}:1.35", layout.display()))
                .args(["--tag", "pause", "--config.cmd", "sleep"])
                .args(["--config.cmd", "2147483647"]),
        );
        let both = self.path("images.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&both)
                .arg("."),
        );
        run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(self.path("containerd.sock"))
                .args(["--namespace", "k8s.io", "images", "import"])
                .args(["--base-name", "docker.io/library/busybox"])
                .arg(&both),
        );
    }

    /// `program` joined to the test's network namespace only: `ip netns exec` would also remount
    /// /sys, hiding the cgroup mounts runc needs.
    fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Starts a daemon in the namespace, its output in `<name>.log`.
    fn spawn(&self, name: &str, cmd: &mut Command) -> Child {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let mut wrapped = self.in_netns(cmd.get_program());
        wrapped
            .args(cmd.get_args())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        wrapped
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    fn logs(&self) -> String {
        ["containerd", "server", "node"]
            .iter()
            .map(|name| {
                let log =
                    std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name} (last lines)\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails the test, with the daemons' logs, if one of them has exited.
    fn assert_running(&mut self) {
        let exited = [
            ("containerd", &mut self.containerd),
            ("server", &mut self.server),
            ("node", &mut self.node),
        ]
        .into_iter()
        .find_map(|(name, child)| {
            let status = child.as_mut()?.try_wait().ok()??;
            Some((name, status))
        });
        if let Some((name, status)) = exited {
            panic!("{name} exited with {status}\n{}", self.logs());
        }
    }

    fn kubectl_cmd(&self, kubectl: &str, args: &[&str]) -> Command {
        let mut cmd = self.in_netns(kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", self.path("kube-cache"))
            .env("HOME", self.dir.path());
        cmd
    }

    fn kubectl(&self, kubectl: &str, args: &[&str]) -> std::process::Output {
        self.kubectl_cmd(kubectl, args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.kubectl(KUBECTL, args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            describe(&out),
            self.logs()
        );
        out
    }

    /// containerd's containers (the sandboxes' pause containers included).
    fn containerd_containers(&self) -> Vec<String> {
        let out = run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(self.path("containerd.sock"))
                .args(["--namespace", "k8s.io", "containers", "ls", "-q"]),
        );
        stdout(&out).lines().map(str::to_owned).collect()
    }
}

impl Drop for ContainerdCluster {
    fn drop(&mut self) {
        // The normal path first: pods deleted through the API, torn down by the node agent.
        if self.node.is_some() && self.kubeconfig.exists() {
            let _ = self
                .kubectl_cmd(KUBECTL, &["delete", "pods", "--all", "--timeout=60s"])
                .stdin(Stdio::null())
                .output();
        }
        for child in [&mut self.node, &mut self.server, &mut self.containerd] {
            if let Some(mut child) = child.take() {
                terminate(&mut child, Duration::from_secs(20));
            }
        }
        // Shims name their containerd's socket; whatever still runs goes.
        for (pid, _) in processes_mentioning(self.dir.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut mounts = mounts_below(self.dir.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .output();
    }
}

/// Whether a cgroup folder of the pod is left in any v1 hierarchy or the v2 root.
fn pod_cgroups_left(uid: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut bases: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    bases.push(root.to_path_buf());
    bases
        .iter()
        .flat_map(|b| {
            ["", "burstable/", "besteffort/"].map(|q| b.join(format!("kubepods/{q}pod{uid}")))
        })
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn node_agent_runs_pods_on_containerd() {
    let mut cluster = ContainerdCluster::start();
    let runtime = cluster.kubectl_ok(&[
        "get",
        "node",
        "ctrd",
        "-o",
        "jsonpath={.status.nodeInfo.containerRuntimeVersion}",
    ]);
    assert!(
        stdout(&runtime).starts_with("containerd://1."),
        "{}",
        stdout(&runtime)
    );

    let pod = cluster.path("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: demo}\nspec:\n  containers:\n  - name: main\n    \
         image: busybox:1.35\n    imagePullPolicy: IfNotPresent\n    \
         command: [sh, -c, 'echo started; exec httpd -f -p 8080 -h /var/www']\n",
    )
    .expect("pod manifest");
    cluster.kubectl_ok(&["apply", "-f", &pod.to_string_lossy()]);
    let ip = wait_for("the pod to run", Duration::from_secs(120), || {
        let out = cluster.kubectl(
            KUBECTL,
            &[
                "get",
                "pod",
                "demo",
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ],
        );
        let text = stdout(&out);
        text.strip_prefix("Running ").map(str::to_owned)
    });
    assert!(
        ip.starts_with(POD_SUBNET_PREFIX),
        "pod IP {ip:?} not from the CNI bridge's subnet"
    );
    let uid =
        stdout(&cluster.kubectl_ok(&["get", "pod", "demo", "-o", "jsonpath={.metadata.uid}"]));

    // kubectl 1.32 speaks WebSocket (v5), 1.27 SPDY (v4): both reach containerd's streaming server.
    for kubectl in [KUBECTL, "/usr/lib/google-cloud-sdk/bin/kubectl.1.27"] {
        let out = cluster.kubectl(
            kubectl,
            &[
                "exec",
                "demo",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
        );
        assert_eq!(out.status.code(), Some(3), "{kubectl}: {}", describe(&out));
        assert_eq!(stdout(&out), "out", "{kubectl}");
        assert!(
            stderr(&out).starts_with("err"),
            "{kubectl}: {}",
            stderr(&out)
        );

        let mut cat = cluster
            .kubectl_cmd(kubectl, &["exec", "-i", "demo", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl exec -i");
        {
            use std::io::Write;
            let mut stdin = cat.stdin.take().expect("stdin");
            stdin.write_all(b"hi through containerd\n").expect("stdin");
        }
        let out = cat.wait_with_output().expect("kubectl exec -i");
        assert!(out.status.success(), "{kubectl}: {}", describe(&out));
        assert_eq!(stdout(&out), "hi through containerd", "{kubectl}");
    }

    let logs = cluster.kubectl_ok(&["logs", "demo"]);
    assert_eq!(stdout(&logs), "started");

    // A restart of the node agent leaves the pod running: same container, no restart.
    let container_of = |cluster: &ContainerdCluster| {
        stdout(&cluster.kubectl_ok(&[
            "get",
            "pod",
            "demo",
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}",
        ]))
    };
    let before = container_of(&cluster);
    cluster.restart_node();
    wait_for(
        "the restarted agent to serve exec",
        Duration::from_secs(60),
        || {
            let out = cluster.kubectl(KUBECTL, &["exec", "demo", "--", "true"]);
            out.status.success().then_some(())
        },
    );
    assert_eq!(container_of(&cluster), before);
    assert_eq!(stdout(&cluster.kubectl_ok(&["logs", "demo"])), "started");

    let local_port = "18080";
    let _forward = KillOnDrop(
        cluster
            .kubectl_cmd(
                KUBECTL,
                &["port-forward", "demo", &format!("{local_port}:8080")],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl port-forward"),
    );
    let page = wait_for(
        "the page through port-forward",
        Duration::from_secs(30),
        || {
            let out = cluster
                .in_netns("curl")
                .args(["-sf", &format!("http://127.0.0.1:{local_port}/index.html")])
                .output()
                .expect("curl");
            out.status.success().then(|| stdout(&out))
        },
    );
    assert_eq!(page, "hello from podway");

    cluster.kubectl_ok(&["delete", "pod", "demo", "--timeout=60s"]);
    wait_for(
        "containerd to have no container left",
        Duration::from_secs(60),
        || cluster.containerd_containers().is_empty().then_some(()),
    );
    assert_eq!(pod_cgroups_left(&uid), Vec::<PathBuf>::new());
}
