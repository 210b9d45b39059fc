//! A whole podway (`podway up`) on temp dirs and free ports, driven by the real kubectl, and torn
//! down — processes, containers, mounts, folders — even when a test fails.
#![allow(dead_code)] // each test file uses a different subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// kubectl 1.32, the version issue 2 names (the PATH kubectl dispatches to it for our /version).
pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// The podway binary under test.
pub fn podway_bin() -> PathBuf {
    std::env::var_os("PODWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_podway")))
}

/// The repository root (for scripts/ and examples/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `check` every 200 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running `podway up`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub api_port: u16,
    up: Option<Child>,
}

impl Cluster {
    /// Starts `podway up` and waits until the node is Ready; imports the demo image.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`], with `extra` flags for `podway up`.
    pub fn start_with(extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("podway-e2e-")
            .tempdir()
            .expect("temp dir");
        let data_dir = dir.path().join("data");
        let state_dir = dir.path().join("run");
        let api_port = free_port();
        let node_port = free_port();
        let node_name = format!("e2e-{}", std::process::id());
        let log = std::fs::File::create(dir.path().join("podway-up.log")).expect("log file");
        let up = Command::new(podway_bin())
            .args(["up", "--data-dir"])
            .arg(&data_dir)
            .arg("--state-dir")
            .arg(&state_dir)
            .args([
                "--api-port",
                &api_port.to_string(),
                "--node-port",
                &node_port.to_string(),
            ])
            .args(["--node-name", &node_name])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn podway up");
        let kubeconfig = data_dir.join("kubeconfig");
        let mut cluster = Cluster {
            dir,
            data_dir,
            state_dir,
            kubeconfig,
            node_name,
            api_port,
            up: Some(up),
        };
        let image = cluster.dir.path().join("busybox.tar");
        run_ok(Command::new(repo_root().join("scripts/demo-image.sh")).arg(&image));
        wait_for("the kubeconfig", Duration::from_secs(60), || {
            cluster.assert_running();
            cluster.kubeconfig.exists().then_some(())
        });
        let imported = run_ok(
            Command::new(podway_bin())
                .args(["image", "import"])
                .arg(&image)
                .args(["--name", "busybox:1.35", "--data-dir"])
                .arg(&cluster.data_dir),
        );
        assert!(
            stdout(&imported).contains("docker.io/library/busybox:1.35"),
            "{}",
            stdout(&imported)
        );
        let node = cluster.node_name.clone();
        wait_for("the node to be Ready", Duration::from_secs(60), || {
            cluster.assert_running();
            let out = cluster.kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (stdout(&out) == "True").then_some(())
        });
        cluster
    }

    /// Fails the test (with podway's log) if `podway up` has exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.up.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("podway up exited with {status}; log:\n{}", self.log());
        }
    }

    /// podway up's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podway-up.log")).unwrap_or_default()
    }

    /// A kubectl 1.32 command against this cluster.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        // A cache per cluster: discovery results must not leak between runs on other ports.
        cmd.env("KUBECACHEDIR", self.dir.path().join("kube-cache"));
        cmd.env("HOME", self.dir.path());
        cmd
    }

    /// Runs kubectl 1.32 to completion.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl and fails the test unless it exits 0.
    pub fn kubectl_ok(&self, args: &[&str]) -> Output {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\npodway log:\n{}",
            describe(&out),
            self.log()
        );
        out
    }

    /// Writes `yaml` to a file of this cluster's temp dir and `kubectl apply`s it.
    pub fn apply(&self, yaml: &str) {
        let manifest = self.dir.path().join("manifest.yaml");
        std::fs::write(&manifest, yaml).expect("write manifest");
        self.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    }

    /// Waits (90 s at most) until pod `name` is Running; fails with podway's log if `podway up`
    /// has exited.
    pub fn wait_running(&mut self, name: &str) {
        wait_for(
            &format!("pod {name} to be Running"),
            Duration::from_secs(90),
            || {
                self.assert_running();
                let out = self.kubectl(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]);
                (stdout(&out) == "Running").then_some(())
            },
        );
    }

    /// The runtime's id of pod `name`'s first container (its `containerID` without the scheme).
    pub fn container_id(&self, name: &str) -> String {
        let id = stdout(&self.kubectl_ok(&[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ]));
        id.split_once("://")
            .map(|(_, id)| id.to_owned())
            .unwrap_or_else(|| panic!("bad containerID {id:?}"))
    }

    /// Stops `podway up` with SIGTERM and returns its exit status and stdout.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.up.take().expect("podway up already stopped");
        terminate(&mut child, Duration::from_secs(60));
        let status = child.wait().expect("wait podway up");
        let mut out = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut out);
        }
        (status, out)
    }

    /// Mount points below this cluster's temp dir.
    pub fn mounts(&self) -> Vec<String> {
        mounts_below(self.dir.path())
    }

    /// Pids of processes whose command line mentions this cluster's temp dir (shims, pause).
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(self.dir.path())
    }

    /// SIGKILLs `podway up` (as a crash would) and waits for it; its pods keep running.
    pub fn kill_up(&mut self) {
        if let Some(mut child) = self.up.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `podway killall` on this cluster's folders.
    pub fn killall(&self) -> Output {
        Command::new(podway_bin())
            .args(["killall", "--data-dir"])
            .arg(&self.data_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .output()
            .expect("run podway killall")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.up.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
        // Whatever is left: the pods' processes, runc's state, mounts and cgroups; then any
        // process or mount that still names the temp dir.
        let _ = self.killall();
        for (pid, _) in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process killed when dropped (kubectl port-forward, logs -f).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mount points (from /proc/self/mountinfo) at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|mount_point| mount_point.starts_with(&prefix))
        .collect()
}

/// Processes whose command line contains `needle`'s path.
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Runs a command and fails the test unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", describe(&out));
    out
}

/// Trimmed stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Trimmed stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Status, stdout and stderr for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    )
}
