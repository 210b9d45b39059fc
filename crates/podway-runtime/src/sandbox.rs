//! Pod sandboxes: a `podway pause` process holding new network, IPC and UTS namespaces, the pod's
//! monitor (`podway shim`, started with the pod, stopped with it), and its record in
//! `DATA/sandboxes/<id>/sandbox.json` (with the pod's `hostname`, `hosts`, `resolv.conf`).
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::api::Inner;
use crate::util::{io_ctx, now_nanos, process_alive, read_json, write_json};
use crate::{Error, Result, SandboxInfo, SandboxSpec, SandboxState};

/// What is persisted of a sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SandboxRecord {
    pub id: String,
    pub spec: SandboxSpec,
    pub created_at: i64,
    /// Pid of the pause process and its start time (identifies it across pid reuse).
    pub pid: u32,
    pub pid_start: u64,
    pub stopped: bool,
    /// Pid of the pod's monitor (`podway shim`) and its start time; 0 when none was started.
    #[serde(default)]
    pub shim_pid: u32,
    #[serde(default)]
    pub shim_start: u64,
}

impl SandboxRecord {
    /// Whether its pause process still holds the namespaces.
    pub fn ready(&self) -> bool {
        !self.stopped && process_alive(self.pid, self.pid_start)
    }

    /// The hostname inside the pod.
    pub fn hostname(&self) -> &str {
        if self.spec.hostname.is_empty() {
            &self.spec.name
        } else {
            &self.spec.hostname
        }
    }

    fn info(&self) -> SandboxInfo {
        let ready = self.ready();
        SandboxInfo {
            id: self.id.clone(),
            spec: self.spec.clone(),
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: self.created_at,
            netns_path: if ready {
                PathBuf::from(format!("/proc/{}/ns/net", self.pid))
            } else {
                PathBuf::new()
            },
            pid: if ready { self.pid } else { 0 },
        }
    }
}

/// Files and folders of the pod (in its folder) bound into every container.
pub(crate) const POD_MOUNTS: [(&str, &str); 4] = [
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
    ("resolv.conf", "/etc/resolv.conf"),
    ("shm", "/dev/shm"),
];

/// Mounts the pod's shared `/dev/shm`, a tmpfs at `DIR/shm`.
fn mount_shm(dir: &std::path::Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let shm = dir.join("shm");
    crate::util::create_dir_all(&shm)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        flags,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| Error::Io {
        context: format!("mounting the pod's /dev/shm at {}", shm.display()),
        source: e.into(),
    })
}

impl Inner {
    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("sandboxes").join(id)
    }

    /// The record of sandbox `id`.
    pub(crate) fn sandbox_record(&self, id: &str) -> Result<SandboxRecord> {
        self.sandboxes
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("sandbox {id}")))
    }

    /// Writes `record` to `sandbox.json` and the index.
    fn save_sandbox(&self, record: &SandboxRecord) -> Result<()> {
        write_json(&self.sandbox_dir(&record.id).join("sandbox.json"), record)?;
        self.sandboxes.put(&record.id, record.clone());
        Ok(())
    }

    /// Every record, oldest first.
    fn sandbox_records(&self) -> Vec<SandboxRecord> {
        let mut out = self.sandboxes.all();
        out.sort_by_key(|r| r.created_at);
        out
    }
}

/// Reads every sandbox's record from disk into the index (when the runtime opens).
pub(crate) fn load(inner: &Inner) -> Result<()> {
    let dir = inner.config.data_dir.join("sandboxes");
    for entry in std::fs::read_dir(&dir).map_err(io_ctx(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(io_ctx(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        match read_json::<SandboxRecord>(&inner.sandbox_dir(&name).join("sandbox.json")) {
            Ok(Some(record)) if record.id == name => inner.sandboxes.put(&name, record),
            Ok(_) => tracing::warn!(sandbox = %name, "skipping a sandbox folder without record"),
            Err(e) => tracing::warn!(sandbox = %name, error = %e, "skipping sandbox"),
        }
    }
    Ok(())
}

/// Starts a sandbox.
pub(crate) async fn run(inner: &Arc<Inner>, spec: SandboxSpec) -> Result<SandboxInfo> {
    if spec.name.is_empty() {
        return Err(Error::InvalidArgument("sandbox name is empty".into()));
    }
    if let Some(other) = inner.sandbox_records().into_iter().find(|r| {
        r.spec.name == spec.name
            && r.spec.namespace == spec.namespace
            && r.spec.uid == spec.uid
            && r.spec.attempt == spec.attempt
    }) {
        return Err(Error::AlreadyExists(format!(
            "sandbox {}/{} (uid {}, attempt {}) as {}",
            spec.namespace, spec.name, spec.uid, spec.attempt, other.id
        )));
    }
    let id = crate::util::new_id();
    let dir = inner.sandbox_dir(&id);
    crate::util::create_dir_all(&dir)?;
    let started = {
        let inner = Arc::clone(inner);
        let task_id = id.clone();
        tokio::task::spawn_blocking(move || start_pause(&inner, &task_id, spec))
            .await
            .map_err(|e| Error::Command(format!("starting sandbox {id}: {e}")))?
    };
    match started {
        Ok(record) => {
            tracing::info!(sandbox = %id, pid = record.pid, "sandbox ready");
            Ok(record.info())
        }
        Err(e) => {
            let _ = crate::container::unmount(&dir.join("shm"));
            let _ = crate::util::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn start_pause(inner: &Inner, id: &str, spec: SandboxSpec) -> Result<SandboxRecord> {
    let dir = inner.sandbox_dir(id);
    let mut record = SandboxRecord {
        id: id.to_string(),
        spec,
        created_at: now_nanos(),
        pid: 0,
        pid_start: 0,
        stopped: false,
        shim_pid: 0,
        shim_start: 0,
    };
    let hostname = record.hostname().to_string();
    write_pod_files(&dir, &hostname)?;
    mount_shm(&dir)?;
    let what = format!("starting the pause process of sandbox {id}");
    let pause_args = crate::pause::args(&hostname, &record.spec.namespaces);
    // The pod's monitor starts with the pod (not with its first container): its start stays
    // off the container start path, and a failure shows at once, naming the pod. It needs
    // nothing of the pause process, so both start at the same time.
    let (pause, shim) = std::thread::scope(|scope| {
        let shim = scope.spawn(|| spawn_shim(inner, id));
        let pause = crate::detached::spawn(
            &inner.config.podway_bin,
            &pause_args
                .iter()
                .map(std::ffi::OsString::as_os_str)
                .collect::<Vec<_>>(),
            &dir.join("pause.log"),
            &what,
        );
        let shim = shim.join().unwrap_or_else(|_| {
            Err(Error::Command(format!(
                "starting the monitor of sandbox {id}: the starting thread panicked"
            )))
        });
        (pause, shim)
    });
    let abandon = |pids: &[u32]| {
        for &pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(shim_socket(inner, id));
    };
    let ((pid, pid_start), (shim_pid, shim_start)) = match (pause, shim) {
        (Ok(pause), Ok(shim)) => (pause, shim),
        (Err(e), shim) => {
            abandon(shim.ok().map(|(pid, _)| pid).as_slice());
            return Err(e);
        }
        (Ok((pid, _)), Err(e)) => {
            abandon(&[pid]);
            return Err(e);
        }
    };
    record.pid = pid;
    record.pid_start = pid_start;
    record.shim_pid = shim_pid;
    record.shim_start = shim_start;
    if let Err(e) = inner.save_sandbox(&record) {
        abandon(&[pid, shim_pid]);
        return Err(e);
    }
    tracing::info!(sandbox = %id, pid = record.shim_pid, "pod monitor started");
    Ok(record)
}

/// Writes the pod's `hostname`, `hosts` and `resolv.conf` into its folder. Not fsync'd: they
/// are made anew with every sandbox, and after a crash of the machine the pod's namespaces are
/// gone anyway.
fn write_pod_files(dir: &std::path::Path, hostname: &str) -> Result<()> {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(io_ctx(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// The pod's monitor, running: where to reach it and the sandbox record naming it.
pub(crate) struct Shim {
    /// Its control socket.
    pub socket: PathBuf,
    /// The sandbox's record (with the shim's pid and start time).
    pub record: SandboxRecord,
}

/// The control socket of sandbox `id`'s monitor (short, for the 108-byte limit).
pub(crate) fn shim_socket(inner: &Inner, id: &str) -> PathBuf {
    let short = id.get(..16).unwrap_or(id);
    inner
        .config
        .state_dir
        .join("shims")
        .join(format!("{short}.sock"))
}

/// The sandbox's monitor: the recorded one while it runs (found again after a restart of the
/// runtime), else a new one, recorded. Blocking: call from `spawn_blocking`.
pub(crate) fn ensure_shim(inner: &Inner, id: &str) -> Result<Shim> {
    let _one_at_a_time = inner
        .shim_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut record = inner.sandbox_record(id)?;
    let socket = shim_socket(inner, id);
    if process_alive(record.shim_pid, record.shim_start) && socket.exists() {
        return Ok(Shim { socket, record });
    }
    if !record.ready() {
        return Err(Error::FailedPrecondition(format!(
            "sandbox {id} is not ready: no monitor is started for it"
        )));
    }
    let (pid, start) = spawn_shim(inner, id)?;
    record.shim_pid = pid;
    record.shim_start = start;
    if let Err(e) = inner.save_sandbox(&record) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        return Err(e);
    }
    tracing::info!(sandbox = %id, pid, "pod monitor started");
    Ok(Shim { socket, record })
}

/// Starts a monitor for sandbox `id` on its control socket; returns its pid and start time.
fn spawn_shim(inner: &Inner, id: &str) -> Result<(u32, u64)> {
    let socket = shim_socket(inner, id);
    crate::detached::spawn(
        &inner.config.podway_bin,
        &[
            OsStr::new("shim"),
            OsStr::new("--sandbox"),
            OsStr::new(id),
            OsStr::new("--socket"),
            socket.as_os_str(),
        ],
        &inner.sandbox_dir(id).join("shim.log"),
        &format!("starting the monitor of sandbox {id}"),
    )
}

/// Shuts the sandbox's monitor down (SIGKILL if it does not go within 5 s); removes its socket.
async fn stop_shim(inner: &Arc<Inner>, record: &SandboxRecord) -> Result<()> {
    let socket = shim_socket(inner, &record.id);
    let (pid, start) = (record.shim_pid, record.shim_start);
    if process_alive(pid, start) {
        let asked = {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || {
                crate::shim::call(&socket, &crate::shim::Request::Shutdown)
            })
            .await
        };
        if !matches!(asked, Ok(Ok(Ok(_)))) {
            tracing::warn!(sandbox = %record.id, "the pod monitor did not take the shutdown request; killing it");
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for i in 0..200 {
            if !process_alive(pid, start) {
                break;
            }
            if i == 100 {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if process_alive(pid, start) {
            return Err(Error::Command(format!(
                "sandbox {}: its monitor {pid} does not exit",
                record.id
            )));
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// One sandbox.
pub(crate) fn get(inner: &Inner, id: &str) -> Result<SandboxInfo> {
    Ok(inner.sandbox_record(id)?.info())
}

/// Every sandbox.
pub(crate) fn list(inner: &Inner) -> Result<Vec<SandboxInfo>> {
    Ok(inner
        .sandbox_records()
        .iter()
        .map(SandboxRecord::info)
        .collect())
}

/// Stops the sandbox's containers and its pause process.
pub(crate) async fn stop(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let mut record = inner.sandbox_record(id)?;
    for container in crate::container::ids_of_sandbox(inner, id)? {
        crate::container::stop(inner, &container, Duration::ZERO).await?;
    }
    stop_shim(inner, &inner.sandbox_record(id)?).await?;
    if process_alive(record.pid, record.pid_start) {
        let _ = kill(Pid::from_raw(record.pid as i32), Signal::SIGKILL);
        for _ in 0..100 {
            if !process_alive(record.pid, record.pid_start) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if process_alive(record.pid, record.pid_start) {
            return Err(Error::Command(format!(
                "sandbox {id}: pause process {} does not exit",
                record.pid
            )));
        }
    }
    // Re-read: starting the monitor may have updated the record meanwhile.
    record = inner.sandbox_record(id)?;
    if !record.stopped {
        record.stopped = true;
        inner.save_sandbox(&record)?;
        tracing::info!(sandbox = %id, "sandbox stopped");
    }
    Ok(())
}

/// Removes a sandbox and its containers.
pub(crate) async fn remove(inner: &Arc<Inner>, id: &str) -> Result<()> {
    match inner.sandbox_record(id) {
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    stop(inner, id).await?;
    for container in crate::container::ids_of_sandbox(inner, id)? {
        crate::container::remove(inner, &container).await?;
    }
    let dir = inner.sandbox_dir(id);
    let shm = dir.join("shm");
    tokio::task::spawn_blocking(move || {
        crate::container::unmount(&shm)?;
        crate::util::remove_dir_all(&dir)
    })
    .await
    .map_err(|e| Error::Command(format!("removing sandbox {id}: {e}")))??;
    inner.sandboxes.remove(id);
    tracing::info!(sandbox = %id, "sandbox removed");
    Ok(())
}
