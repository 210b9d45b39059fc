//! Bad input and faults: a working directory the image lacks, a port nothing listens on, a
//! container killed under a running exec, a disk that fills up while an image is unpacked.
//! Each gives an error naming the object and the cause and leaves nothing half-made. Needs
//! root, runc, umoci, busybox-static and the `podway` binary (`cargo build -p podway`; or set
//! `PODWAY_BIN`).
//!
//! The tests take turns (one lock): one counts this process's descriptors and threads, one
//! switches the fast exec path off for the whole process.
mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use podway_runtime::{
    ContainerSpec, ContainerState, PidNamespace, PodNamespaces, ProcessIo, Runtime, SandboxSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Held by each test for its whole run.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Pids of the processes in the cgroup `podway/<id>` of any hierarchy.
fn processes_of_container(id: &str) -> Vec<u32> {
    let needle = format!("/podway/{id}");
    live_pids(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.ends_with(&needle)))
    })
}

/// What `runc state ID` says on the fixture's runc root (stdout, else stderr).
fn runc_state(f: &Fixture, id: &str) -> String {
    let out = std::process::Command::new(&f.config.oci_runtime)
        .arg("--root")
        .arg(f.config.state_dir.join("runc"))
        .args(["state", id])
        .output()
        .unwrap_or_else(|e| panic!("runc state: {e}"));
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    String::from_utf8_lossy(text).into_owned()
}

/// A created container of busybox:1.35 running `cmd` in `working_dir`; returns its id.
async fn create_in(f: &Fixture, sandbox: &str, name: &str, cmd: &[&str], dir: &str) -> String {
    let spec = ContainerSpec {
        name: name.into(),
        image: "busybox:1.35".into(),
        command: strings(cmd),
        working_dir: Some(dir.into()),
        log_path: Some(PathBuf::from(format!("{name}/0.log"))),
        ..ContainerSpec::default()
    };
    f.rt()
        .create_container(sandbox, spec)
        .await
        .unwrap_or_else(|e| panic!("create_container: {e}"))
}

/// Removes container `id` and checks it left no process, mount, folder or cgroup.
async fn remove_leaving_nothing(f: &Fixture, id: &str) {
    let bundle = f.config.data_dir.join("containers").join(id);
    f.rt()
        .remove_container(id)
        .await
        .unwrap_or_else(|e| panic!("remove_container: {e}"));
    assert!(!mounted(&bundle.join("rootfs")));
    assert!(!bundle.exists(), "{} is left", bundle.display());
    assert_eq!(processes_of_container(id), Vec::<u32>::new());
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let cgroup = hierarchy.path().join("podway").join(id);
        assert!(!cgroup.exists(), "{} is left", cgroup.display());
    }
}

#[tokio::test]
async fn a_missing_working_dir_is_made_and_one_that_cannot_be_fails_the_start() {
    let _turn = TURN.lock().await;
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("cwd").await;

    // runc (1.1.5 here) makes a working directory the image lacks, as docker does: in the
    // container's own layer, not in the image's snapshot.
    let made = create_in(&f, &sandbox, "made", &["pwd"], "/no/such/dir").await;
    f.rt()
        .start_container(&made)
        .await
        .unwrap_or_else(|e| panic!("start_container: {e}"));
    let c = eventually("pwd to exit", || {
        let c = futures::executor::block_on(f.rt().container(&made)).ok()?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    assert_eq!((c.exit_code, c.reason.as_str()), (0, "Completed"));
    assert_eq!(
        log_records(&f.log_path("made")),
        [("stdout".into(), "F".into(), "/no/such/dir".into())]
    );
    let upper = f
        .config
        .data_dir
        .join("containers")
        .join(&made)
        .join("upper");
    assert!(upper.join("no/such/dir").is_dir());
    for snapshot in std::fs::read_dir(f.config.data_dir.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        assert!(!snapshot.path().join("no").exists(), "the image changed");
    }
    remove_leaving_nothing(&f, &made).await;

    // A working directory below a file cannot be made: the start fails, naming the container
    // and the directory, and the container is recorded as a start error.
    let dir = "/bin/busybox/sub";
    let broken = create_in(&f, &sandbox, "broken", &["pwd"], dir).await;
    let err = f
        .rt()
        .start_container(&broken)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(&format!(
            "starting container {broken}: working directory {dir:?}: "
        )) && err.ends_with("mkdir /bin/busybox: not a directory")
            && err.matches(broken.as_str()).count() == 1,
        "{err}"
    );
    let c = f
        .rt()
        .container(&broken)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.state, c.reason.as_str(), c.exit_code, c.pid),
        (ContainerState::Exited, "StartError", 128, 0)
    );
    assert_eq!(c.message, err);
    assert_eq!(processes_of_container(&broken), Vec::<u32>::new());
    let state = runc_state(&f, &broken);
    assert!(state.contains("does not exist"), "{state}");
    remove_leaving_nothing(&f, &broken).await;
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
}

/// Descriptors open in this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

/// The error of a port-forward to `port` of `sandbox` (empty if it connected).
async fn refused(rt: &Runtime, sandbox: &str, port: u16) -> String {
    rt.port_forward(sandbox, port)
        .await
        .map(drop)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// `GET /index.html` through a port-forward to the sandbox's port 8080: the response.
async fn get_index(rt: &Runtime, sandbox: &str) -> String {
    let mut conn = rt
        .port_forward(sandbox, 8080)
        .await
        .unwrap_or_else(|e| panic!("port_forward: {e}"));
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    conn.read_to_string(&mut response)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    response
}

#[tokio::test]
async fn port_forward_to_a_port_nobody_listens_on_is_refused_and_leaks_nothing() {
    let _turn = TURN.lock().await;
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("ports").await;
    f.container(
        &sandbox,
        "httpd",
        &["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/var/www"],
    )
    .await;
    let rt = f.rt();
    let mut listening = false;
    for _ in 0..200 {
        if rt.port_forward(&sandbox, 8080).await.is_ok() {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listening, "httpd never listened");

    let first = refused(rt, &sandbox, 8081).await;
    let fds = open_fds();
    for _ in 0..5 {
        let err = refused(rt, &sandbox, 8081).await;
        assert_eq!(
            err,
            format!(
                "failed to connect to localhost:8081 inside the network namespace of sandbox \
                 {sandbox}: Connection refused (os error 111)"
            )
        );
    }
    assert_eq!(first, refused(rt, &sandbox, 8081).await);
    assert_eq!(
        open_fds(),
        fds,
        "descriptors leaked by refused port-forwards"
    );
    assert_eq!(threads_named("podway-netns"), 0);

    // The runtime still forwards to a port that has a listener.
    let response = get_index(rt, &sandbox).await;
    assert!(
        response.starts_with("HTTP/1.") && response.ends_with("hello from podway\n"),
        "{response}"
    );
    assert_eq!(
        open_fds(),
        fds,
        "descriptors left by a finished port-forward"
    );

    // A stopped pod has no network namespace to connect in.
    f.rt()
        .stop_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("stop_sandbox: {e}"));
    assert_eq!(
        refused(rt, &sandbox, 8080).await,
        format!(
            "failed to connect to localhost:8080 inside the network namespace of sandbox \
             {sandbox}: the sandbox is not ready"
        )
    );
    f.rt()
        .remove_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
}

/// The parent pid of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// How an exec's container goes away.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    /// `stop_container` (as the kubelet stops it).
    Stopped,
    /// Its main process is SIGKILLed from outside (as the OOM killer does).
    Killed,
}

/// Execs `sleep SECONDS` (a number only this call uses; on a terminal when `tty`) in container
/// `id`, makes the container go as `gone` says and returns what the exec returned (its exit
/// code or its error) and whether the fast path ran it (then the process was our own child).
/// Checks the exec's process is gone.
async fn exec_then_kill(
    rt: &Runtime,
    id: &str,
    seconds: &str,
    tty: bool,
    gone: Gone,
) -> (Result<i32, String>, bool) {
    let exec = tokio::spawn({
        let (rt, id, cmd) = (rt.clone(), id.to_string(), strings(&["sleep", seconds]));
        let io = ProcessIo {
            stdout: Some(Box::new(tokio::io::sink())),
            ..ProcessIo::default()
        };
        async move { rt.exec(&id, cmd, tty, io).await }
    });
    let cmdline = format!("sleep {seconds}");
    let pid = eventually("the exec'd sleep", || {
        processes_running(&cmdline).first().copied()
    })
    .await;
    let fast = parent_of(pid) == Some(std::process::id());
    match gone {
        Gone::Stopped => rt
            .stop_container(id, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("stop_container: {e}")),
        Gone::Killed => {
            let main = rt.container(id).await.map_or(0, |c| c.pid);
            assert!(main > 0 && alive(main), "no main process");
            // SAFETY: kill(2) with a plain pid and signal.
            unsafe { libc::kill(main as i32, libc::SIGKILL) };
        }
    }
    // A liveness bound (the exec would otherwise run for 100 s), not a timing assertion.
    let returned = tokio::time::timeout(Duration::from_secs(20), exec)
        .await
        .unwrap_or_else(|_| panic!("the exec of {cmdline} did not return after its container died"))
        .unwrap_or_else(|e| panic!("{e}"))
        .map_err(|e| e.to_string());
    eventually("the exec's process to be gone", || {
        (!alive(pid)).then_some(())
    })
    .await;
    let c = eventually("the container to be exited", || {
        let c = futures::executor::block_on(rt.container(id)).ok()?;
        (c.state == ContainerState::Exited).then_some(c)
    })
    .await;
    assert_eq!((c.exit_code, c.reason.as_str()), (137, "Error"));
    (returned, fast)
}

/// Puts the fast exec path back on when dropped.
struct FastPathBack;

impl Drop for FastPathBack {
    fn drop(&mut self) {
        podway_runtime::nsexec::set_enabled(true);
    }
}

#[tokio::test]
async fn an_exec_ends_with_its_container() {
    let _turn = TURN.lock().await;
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("mid-exec").await;
    let _back = FastPathBack;
    // The exec's process dies with the container's pid namespace: SIGKILL, 128 + 9.
    let cases = [
        (true, false, Gone::Stopped, "101"),
        (false, false, Gone::Stopped, "102"),
        (true, true, Gone::Stopped, "103"),
        (false, true, Gone::Stopped, "104"),
        (true, false, Gone::Killed, "105"),
        (false, false, Gone::Killed, "106"),
    ];
    for (fast_path, tty, gone, seconds) in cases {
        podway_runtime::nsexec::set_enabled(fast_path);
        let id = f
            .container(&sandbox, &format!("victim-{seconds}"), &["sleep", "1000"])
            .await;
        let (returned, fast) = exec_then_kill(f.rt(), &id, seconds, tty, gone).await;
        assert_eq!(fast, fast_path);
        assert_eq!(
            returned,
            Ok(137),
            "fast path: {fast_path}, tty: {tty}, {gone:?}"
        );
        remove_leaving_nothing(&f, &id).await;
    }
    podway_runtime::nsexec::set_enabled(true);

    // In a pod that shares one pid namespace the exec'd process does not die with the
    // container's main process: stopping the container ends it too, and so does the main
    // process's own end (its monitor kills what it left).
    let spec = SandboxSpec {
        name: "shared".into(),
        namespace: "default".into(),
        uid: "uid-shared".into(),
        hostname: "shared-host".into(),
        log_directory: Some(f.tmp.path().join("logs")),
        namespaces: PodNamespaces {
            pid: PidNamespace::Pod,
            ..PodNamespaces::default()
        },
        ..SandboxSpec::default()
    };
    let shared = f
        .rt()
        .run_sandbox(spec)
        .await
        .unwrap_or_else(|e| panic!("run_sandbox: {e}"))
        .id;
    let shared_cases = [
        (true, Gone::Stopped, "111"),
        (false, Gone::Stopped, "112"),
        (true, Gone::Killed, "113"),
        (false, Gone::Killed, "114"),
    ];
    for (fast_path, gone, seconds) in shared_cases {
        podway_runtime::nsexec::set_enabled(fast_path);
        let name = format!("shared-{seconds}");
        let id = f.container(&shared, &name, &["sleep", "1000"]).await;
        let (returned, fast) = exec_then_kill(f.rt(), &id, seconds, false, gone).await;
        assert_eq!(fast, fast_path);
        assert_eq!(returned, Ok(137), "fast path: {fast_path}, {gone:?}");
        remove_leaving_nothing(&f, &id).await;
    }
    for id in [&sandbox, &shared] {
        f.rt()
            .remove_sandbox(id)
            .await
            .unwrap_or_else(|e| panic!("remove_sandbox: {e}"));
    }
}

/// A tmpfs of `size` mounted on a fresh folder; unmounted on drop (even when a test fails).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap_or_else(|e| panic!("{e}"));
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs on {}: {e}", at.display()));
        SmallDisk(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        nix::mount::mount(
            None::<&str>,
            &self.0,
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT,
            Some(format!("size={size}").as_str()),
        )
        .unwrap_or_else(|e| panic!("remounting {}: {e}", self.0.display()));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A rootfs tarball with one file `name` of `data`, gzip-compressed when asked.
fn tarball(name: &str, data: &[u8], gzip: bool) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, name, data)
        .unwrap_or_else(|e| panic!("{e}"));
    let tar = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
    if !gzip {
        return tar;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap_or_else(|e| panic!("{e}"));
    gz.finish().unwrap_or_else(|e| panic!("{e}"))
}

/// Every file and folder under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(
                path.strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The sha256 digest of `data`, `sha256:HEX`.
fn digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

#[tokio::test]
async fn a_disk_that_fills_up_during_an_import_keeps_nothing_of_it() {
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A layer that is small as a blob (8 MiB of zeros, gzip) but not once unpacked, and one
    // whose blob does not fit (4 MiB of random bytes).
    let zeros = tarball("big", &vec![0u8; 8 << 20], true);
    let mut noise = vec![0u8; 4 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut noise))
        .unwrap_or_else(|e| panic!("{e}"));
    let noise = tarball("noise", &noise, false);
    let archives = [
        ("unpacked:1", tmp.path().join("zeros.tar.gz"), zeros),
        ("stored:1", tmp.path().join("noise.tar"), noise),
    ];
    for (_, path, bytes) in &archives {
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    let disk = SmallDisk::mount(&tmp.path().join("disk"), "3m");
    let config = runtime_config(disk.0.join("data"), tmp.path().join("state"));
    let rt = Runtime::open(config.clone())
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    // The store's lock file and ingest folder stay once made; nothing else may.
    let contents = || -> Vec<String> {
        tree(&config.data_dir)
            .into_iter()
            .filter(|p| p != "images/index.lock" && p != "images/ingest")
            .collect()
    };
    let empty = contents();
    for (name, path, bytes) in &archives {
        let err = rt
            .images()
            .import_archive(path, Some(name))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let layer = digest(bytes);
        assert!(
            err.starts_with(&format!("importing {}: ", path.display()))
                && err.contains(&layer)
                && err.contains("No space left on device"),
            "{err}"
        );
        if *name == "unpacked:1" {
            assert!(
                err.ends_with(&format!(
                    "unpacking layer {layer} of image \"docker.io/library/{name}\": \"big\": \
                     No space left on device (os error 28)"
                )),
                "{err}"
            );
        }
        // No image, blob, snapshot or temporary file is left of it.
        assert_eq!(contents(), empty, "after importing {name}");
        assert!(
            rt.images()
                .list()
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
    }

    // With room enough, the same imports work.
    disk.resize("64m");
    for (name, path, _) in &archives {
        rt.images()
            .import_archive(path, Some(name))
            .unwrap_or_else(|e| panic!("import {name}: {e}"));
    }
    let sizes: Vec<u64> = ["big", "noise"]
        .iter()
        .filter_map(|file| {
            std::fs::read_dir(config.data_dir.join("snapshots"))
                .into_iter()
                .flatten()
                .flatten()
                .find_map(|s| std::fs::metadata(s.path().join(file)).ok())
                .map(|m| m.len())
        })
        .collect();
    assert_eq!(sizes, [8 << 20, 4 << 20]);
    assert_eq!(rt.images().list().map(|l| l.len()).ok(), Some(2));
    drop(rt);
    drop(disk);
}
