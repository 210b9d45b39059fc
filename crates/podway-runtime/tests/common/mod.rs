//! Helpers of the runtime's integration tests (real containers through runc): a fixture with
//! a runtime over temporary folders that cleans up whatever a test leaves, the demo image,
//! sandboxes and containers.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::time::Duration;

use podway_runtime::{ContainerSpec, Runtime, RuntimeConfig, SandboxSpec};

/// The `podway` binary next to the test's target folder, or `PODWAY_BIN`.
pub fn podway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PODWAY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // …/target/debug/deps/runtime-xxxx ⇒ …/target/debug/podway
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("podway"))
        .unwrap_or_else(|| panic!("no target dir above {}", exe.display()));
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p podway` first",
        bin.display()
    );
    bin
}

/// The tests' runtime configuration over `data_dir` and `state_dir`: this machine's runc and
/// the podway binary of [`podway_bin`].
pub fn runtime_config(data_dir: PathBuf, state_dir: PathBuf) -> RuntimeConfig {
    RuntimeConfig {
        data_dir,
        state_dir,
        oci_runtime: PathBuf::from("/usr/sbin/runc"),
        podway_bin: podway_bin(),
    }
}

/// A data dir, a state dir and a runtime over them; on drop kills and unmounts whatever the
/// test left behind (containers, shims, pause processes, rootfs mounts, cgroups).
pub struct Fixture {
    /// The test's temporary folder.
    pub tmp: tempfile::TempDir,
    /// The runtime's configuration.
    pub config: RuntimeConfig,
    /// The runtime (None once closed).
    pub runtime: Option<Runtime>,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = runtime_config(tmp.path().join("data"), tmp.path().join("state"));
        let runtime = Runtime::open(config.clone())
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        Fixture {
            tmp,
            config,
            runtime: Some(runtime),
        }
    }

    /// The open runtime.
    pub fn rt(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .unwrap_or_else(|| panic!("runtime closed"))
    }

    /// Builds the demo image with scripts/demo-image.sh and imports it as busybox:1.35.
    pub fn import_demo(&self) -> podway_runtime::images::Image {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-image.sh");
        let archive = self.tmp.path().join("demo.tar");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&archive)
            .output()
            .unwrap_or_else(|e| panic!("demo-image.sh: {e}"));
        assert!(
            out.status.success(),
            "demo-image.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.rt()
            .images()
            .import_archive(&archive, Some("busybox:1.35"))
            .unwrap_or_else(|e| panic!("import: {e}"))
    }

    /// A ready sandbox named `name`; returns its id.
    pub async fn sandbox(&self, name: &str) -> String {
        let spec = SandboxSpec {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            hostname: format!("{name}-host"),
            log_directory: Some(self.tmp.path().join("logs")),
            ..SandboxSpec::default()
        };
        self.rt()
            .run_sandbox(spec)
            .await
            .unwrap_or_else(|e| panic!("run_sandbox: {e}"))
            .id
    }

    /// A started container of busybox:1.35 running `cmd`; returns its id.
    pub async fn container(&self, sandbox: &str, name: &str, cmd: &[&str]) -> String {
        self.container_with(sandbox, name, cmd, |_| {}).await
    }

    /// Like [`Fixture::container`], with `tweak` applied to the spec first.
    pub async fn container_with(
        &self,
        sandbox: &str,
        name: &str,
        cmd: &[&str],
        tweak: impl FnOnce(&mut ContainerSpec),
    ) -> String {
        let mut spec = ContainerSpec {
            name: name.into(),
            image: "busybox:1.35".into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: Some(PathBuf::from(format!("{name}/0.log"))),
            env: vec![("GREETING".into(), "hi there".into())],
            ..ContainerSpec::default()
        };
        tweak(&mut spec);
        let id = self
            .rt()
            .create_container(sandbox, spec)
            .await
            .unwrap_or_else(|e| panic!("create_container: {e}"));
        self.rt()
            .start_container(&id)
            .await
            .unwrap_or_else(|e| panic!("start_container: {e}"));
        id
    }

    /// The CRI log file of container `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.tmp.path().join("logs").join(name).join("0.log")
    }
}

/// The JSON of a file, if it reads and parses.
pub fn json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A positive pid under `key` of a record.
pub fn pid_of(v: &serde_json::Value, key: &str) -> Option<i32> {
    v.get(key)
        .and_then(|p| p.as_i64())
        .and_then(|p| i32::try_from(p).ok())
        .filter(|&p| p > 0)
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.runtime = None;
        let c = &self.config;
        podway_runtime::killall::killall(&c.data_dir, &c.state_dir, &c.oci_runtime);
    }
}

/// Polls `check` every 50 ms for up to 20 s (a liveness bound, not a timing assertion).
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Owned strings.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Whether `path` is a mount point.
pub fn mounted(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.display().to_string();
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Pids of the live (not zombie) processes for which `matches(pid)` holds.
pub fn live_pids(matches: impl Fn(u32) -> bool) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches(pid) && alive(pid))
        .collect()
}

/// The command line of process `pid`, its arguments joined by spaces ("" once it is gone).
pub fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_string()
}

/// Pids of the live processes whose command line is `args`.
pub fn processes_running(args: &str) -> Vec<u32> {
    live_pids(|pid| cmdline(pid) == args)
}

/// Pids of the live `podway shim` processes serving sandbox `sandbox`.
pub fn shims_of(sandbox: &str) -> Vec<u32> {
    live_pids(|pid| {
        let line = cmdline(pid);
        let args: Vec<&str> = line.split(' ').collect();
        args.get(1) == Some(&"shim")
            && args
                .windows(2)
                .any(|w| w[0] == "--sandbox" && w[1] == sandbox)
    })
}

/// The records of a CRI log file as `(stream, tag, content)`.
pub fn log_records(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next()?;
            Some((
                parts.next()?.to_string(),
                parts.next()?.to_string(),
                parts.next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}
