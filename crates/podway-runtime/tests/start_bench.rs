//! The measuring side of `bench/start_latency.sh` (ignored: run by the script, never in CI):
//! `START_BENCH_N` rounds (default 50) of starting a busybox `sleep` container and a sandbox,
//! each next to its floor, interleaved so that a busy machine slows them alike:
//!
//! - `runtime`: `Runtime::create_container` + `Runtime::start_container` in an existing
//!   sandbox, until the container's process has exec'd `sleep` (`/proc/PID/comm`);
//! - `runc`: the floor, an overlayfs mount of the same image's snapshots, the same
//!   `config.json` the runtime wrote (its own cgroup) and bare `runc run -d`, until `sleep` runs;
//! - `sandbox`: `Runtime::run_sandbox` (the `podway pause` process, the pod's `podway shim`
//!   and the pod's files);
//! - `unshare`: its floor, `unshare --net --ipc --uts true` (the same namespaces made and let go);
//! - and alone, what a sandbox's start is made of: `podway pause` until its report, and one
//!   small file written as the runtime writes its records (temp file, fsync, rename).
//!
//! Every container, bundle, mount and sandbox is removed after its round, and on failure.
//! Prints a markdown table (median, p90, min, and the median over the floor's) with the
//! breakdown of both container starts. Nothing is asserted about the times.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, strings};
use podway_runtime::{ContainerSpec, Runtime};

/// The command of every measured container.
const SLEEP: [&str; 2] = ["sleep", "100000"];

/// Samples in microseconds, by what they measure.
#[derive(Default)]
struct Samples(std::collections::BTreeMap<&'static str, Vec<u64>>);

impl Samples {
    fn add(&mut self, what: &'static str, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.entry(what).or_default().push(micros);
    }

    /// The `p` quantile (nearest rank) of `what`, in milliseconds.
    fn quantile(&self, what: &str, p: f64) -> f64 {
        let mut v = self.0.get(what).cloned().unwrap_or_default();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        let rank = (p * (v.len() - 1) as f64).round() as usize;
        v[rank.min(v.len() - 1)] as f64 / 1000.0
    }

    /// One table row: median, p90, min and the median over `floor`'s.
    fn row(&self, label: &str, what: &str, floor: Option<&str>) {
        let median = self.quantile(what, 0.5);
        let ratio = floor.map_or(String::new(), |f| {
            format!("{:.2}", median / self.quantile(f, 0.5))
        });
        println!(
            "| {label} | {median:.2} | {:.2} | {:.2} | {ratio} |",
            self.quantile(what, 0.9),
            self.quantile(what, 0.0)
        );
    }
}

/// Waits until process `pid` runs `comm` (it has exec'd); panics after 10 s (a liveness bound).
fn wait_exec(pid: u32, comm: &str) {
    let path = format!("/proc/{pid}/comm");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim_end() == comm) {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} never ran {comm}");
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// Runs `cmd` to completion, its stderr into the file `stderr` (not a pipe: a detached
/// container would hold it open); panics unless it succeeds.
fn run(cmd: &mut Command, stderr: &Path) {
    let file = std::fs::File::create(stderr).unwrap_or_else(|e| panic!("{stderr:?}: {e}"));
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        status.success(),
        "{cmd:?}: {status}: {}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
}

/// One container through the runtime: create, start, until `sleep` runs; then removed.
async fn runtime_round(rt: &Runtime, sandbox: &str, round: u32, samples: &mut Samples) {
    let spec = ContainerSpec {
        name: "bench".into(),
        attempt: round,
        image: "busybox:1.35".into(),
        command: strings(&SLEEP),
        log_path: Some(PathBuf::from(format!("bench/{round}.log"))),
        ..ContainerSpec::default()
    };
    let t0 = Instant::now();
    let id = rt
        .create_container(sandbox, spec)
        .await
        .unwrap_or_else(|e| panic!("create_container: {e}"));
    let t1 = Instant::now();
    rt.start_container(&id)
        .await
        .unwrap_or_else(|e| panic!("start_container: {e}"));
    let t2 = Instant::now();
    let pid = rt
        .container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pid;
    let t3 = Instant::now();
    wait_exec(pid, SLEEP[0]);
    let t4 = Instant::now();
    samples.add("runtime.create", t1 - t0);
    samples.add("runtime.start", t2 - t1);
    samples.add("runtime.exec", t4 - t3);
    samples.add("runtime", (t2 - t0) + (t4 - t3));
    rt.remove_container(&id)
        .await
        .unwrap_or_else(|e| panic!("remove_container: {e}"));
}

/// What the floor's bare runc containers are made from.
struct Floor {
    runc: PathBuf,
    /// A runc root of the floor's own (the runtime's is not touched).
    root: PathBuf,
    /// Folder of the bundles.
    bundles: PathBuf,
    /// The overlayfs options' `lowerdir=` value: the image's snapshots, top first.
    lowerdir: String,
    /// The `config.json` the runtime wrote for the same container.
    config: serde_json::Value,
}

/// One bare runc container; its drop deletes it and removes its mount and bundle.
struct FloorContainer<'a> {
    floor: &'a Floor,
    id: String,
    bundle: PathBuf,
}

impl Drop for FloorContainer<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.floor.runc)
            .arg("--root")
            .arg(&self.floor.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .output();
        let rootfs = self.bundle.join("rootfs");
        if nix::mount::umount2(&rootfs, nix::mount::MntFlags::empty()).is_err() {
            let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.bundle);
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join("podway").join(&self.id));
        }
    }
}

impl Floor {
    /// The floor of a container like the runtime's container `template` (which stays as is).
    fn new(f: &Fixture, template: &str) -> Floor {
        let dir = f.config.data_dir.join("containers").join(template);
        let record = common::json(&dir.join("container.json"))
            .unwrap_or_else(|| panic!("no container.json in {}", dir.display()));
        let layers: Vec<String> = record["layers"]
            .as_array()
            .unwrap_or_else(|| panic!("no layers in {record}"))
            .iter()
            .rev()
            .filter_map(|l| l.as_str())
            .map(|hex| {
                f.config
                    .data_dir
                    .join("snapshots")
                    .join(hex)
                    .display()
                    .to_string()
            })
            .collect();
        let config = common::json(&dir.join("config.json"))
            .unwrap_or_else(|| panic!("no config.json in {}", dir.display()));
        let floor = Floor {
            runc: f.config.oci_runtime.clone(),
            root: f.tmp.path().join("floor-runc"),
            bundles: f.tmp.path().join("floor-bundles"),
            lowerdir: layers.join(":"),
            config,
        };
        for d in [&floor.root, &floor.bundles] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        floor
    }

    /// One round: bundle (mount + config), `runc run -d`, until `sleep` runs; then removed.
    fn round(&self, round: u32, samples: &mut Samples) {
        let id = format!("podway-bench-{}-{round}", std::process::id());
        let c = FloorContainer {
            floor: self,
            bundle: self.bundles.join(&id),
            id,
        };
        let t0 = Instant::now();
        self.bundle(&c.bundle, &c.id);
        let t1 = Instant::now();
        let pid_file = c.bundle.join("init.pid");
        run(
            Command::new(&self.runc)
                .arg("--root")
                .arg(&self.root)
                .args(["run", "-d", "--pid-file"])
                .arg(&pid_file)
                .arg("--bundle")
                .arg(&c.bundle)
                .arg(&c.id),
            &c.bundle.join("runc.stderr"),
        );
        let t2 = Instant::now();
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()));
        wait_exec(pid, SLEEP[0]);
        let t3 = Instant::now();
        samples.add("runc.prepare", t1 - t0);
        samples.add("runc.run", t2 - t1);
        samples.add("runc.exec", t3 - t2);
        samples.add("runc", t3 - t0);
        drop(c);
    }

    /// Makes an OCI bundle at `dir` as the runtime does: overlayfs rootfs and `config.json`.
    fn bundle(&self, dir: &Path, id: &str) {
        for sub in ["rootfs", "upper", "work"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lowerdir,
            dir.join("upper").display(),
            dir.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &dir.join("rootfs"),
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .unwrap_or_else(|e| panic!("mounting the floor's rootfs: {e}"));
        let mut config = self.config.clone();
        config["linux"]["cgroupsPath"] = format!("/podway/{id}").into();
        let bytes = serde_json::to_vec(&config).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("config.json"), bytes).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// One sandbox through the runtime, then stopped and removed.
async fn sandbox_round(f: &Fixture, round: u32, samples: &mut Samples) {
    let t0 = Instant::now();
    let id = f.sandbox(&format!("bench-{round}")).await;
    samples.add("sandbox", t0.elapsed());
    f.rt()
        .remove_sandbox(&id)
        .await
        .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
}

/// The parts of a sandbox's start that cost most, alone: `podway pause` until its report
/// (the holder is killed at once), and one small file written as the runtime writes its
/// records (temp file, fsync, rename; a sandbox writes one).
fn sandbox_parts(f: &Fixture, round: u32, samples: &mut Samples) {
    let t0 = Instant::now();
    let out = Command::new(&f.config.podway_bin)
        .args(["pause", "--hostname", "bench"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("podway pause: {e}"));
    samples.add("sandbox.pause", t0.elapsed());
    let report = String::from_utf8_lossy(&out.stdout);
    let pid: i32 = report
        .strip_prefix("ok ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("podway pause reported {report:?}"));
    // SAFETY: kill(2) with a plain pid and signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };

    let dir = f.tmp.path();
    let (tmp, path) = (dir.join(".fsync-probe"), dir.join(format!("fsync-{round}")));
    let t0 = Instant::now();
    let mut file = std::fs::File::create(&tmp).unwrap_or_else(|e| panic!("{e}"));
    std::io::Write::write_all(&mut file, &[b'x'; 200]).unwrap_or_else(|e| panic!("{e}"));
    file.sync_all().unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("{e}"));
    samples.add("sandbox.fsync", t0.elapsed());
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
#[ignore = "a benchmark: run by bench/start_latency.sh"]
async fn container_start_latency() {
    let rounds: u32 = std::env::var("START_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let f = Fixture::new().await;
    f.import_demo();
    let rt = f.rt().clone();
    let sandbox = f.sandbox("bench").await;
    // The floor's bundle is the runtime's own for the same container (its first one).
    let template = rt
        .create_container(
            &sandbox,
            ContainerSpec {
                name: "template".into(),
                image: "busybox:1.35".into(),
                command: strings(&SLEEP),
                ..ContainerSpec::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create_container: {e}"));
    let floor = Floor::new(&f, &template);
    rt.remove_container(&template)
        .await
        .unwrap_or_else(|e| panic!("remove_container: {e}"));

    let mut samples = Samples::default();
    // Warm-up round (page cache, first-use paths), not counted.
    let mut warm = Samples::default();
    runtime_round(&rt, &sandbox, rounds, &mut warm).await;
    floor.round(rounds, &mut warm);
    sandbox_round(&f, rounds, &mut warm).await;
    for round in 0..rounds {
        // Rotate the order every round so that none always runs first.
        for k in 0..5 {
            match (round as usize + k) % 5 {
                0 => runtime_round(&rt, &sandbox, round, &mut samples).await,
                1 => floor.round(round, &mut samples),
                2 => sandbox_round(&f, round, &mut samples).await,
                3 => sandbox_parts(&f, round, &mut samples),
                _ => {
                    let t0 = Instant::now();
                    run(
                        Command::new("unshare").args(["--net", "--ipc", "--uts", "true"]),
                        &f.tmp.path().join("unshare.stderr"),
                    );
                    samples.add("unshare", t0.elapsed());
                }
            }
        }
    }

    // After libtest's "test … " line.
    println!();
    println!("| step | median ms | p90 ms | min ms | median / floor |");
    println!("|---|---:|---:|---:|---:|");
    let s = &samples;
    s.row(
        "**container start, runtime** (create + start until `sleep` runs)",
        "runtime",
        Some("runc"),
    );
    s.row(
        "**container start, floor** (overlay mount + config.json + bare `runc run -d`, until `sleep` runs)",
        "runc",
        Some("runc"),
    );
    s.row(
        "runtime: `create_container` (rootfs mount, config.json, record)",
        "runtime.create",
        Some("runc.prepare"),
    );
    s.row(
        "runtime: `start_container` (the pod's `podway shim` runs `runc run -d`; record)",
        "runtime.start",
        Some("runc.run"),
    );
    s.row(
        "runtime: after start until `sleep` runs",
        "runtime.exec",
        Some("runc.exec"),
    );
    s.row("floor: overlay mount + config.json", "runc.prepare", None);
    s.row("floor: `runc run -d`", "runc.run", None);
    s.row(
        "floor: after `runc run` until `sleep` runs",
        "runc.exec",
        None,
    );
    s.row(
        "**sandbox, runtime** (`run_sandbox`: `podway pause` and the pod's `podway shim` side by side, /dev/shm, pod files, its fsync'd record)",
        "sandbox",
        Some("unshare"),
    );
    s.row(
        "**sandbox, floor** (`unshare --net --ipc --uts true`)",
        "unshare",
        Some("unshare"),
    );
    s.row(
        "sandbox part: `podway pause` alone, until its report",
        "sandbox.pause",
        Some("unshare"),
    );
    s.row(
        "sandbox part: one small file, fsync'd and renamed (a sandbox writes 1, a container 2)",
        "sandbox.fsync",
        None,
    );
    drop(f);
}
