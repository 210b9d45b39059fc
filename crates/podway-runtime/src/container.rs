//! Containers: an overlayfs rootfs over the image's snapshots, an OCI bundle in
//! `DATA/containers/<id>/` (`config.json`, `rootfs/`, `upper/`, `work/`, `container.json`), run by
//! the pod's monitor (`podway shim`, one per sandbox), which records `exit.json`.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::api::Inner;
use crate::shim::{EXIT_FILE, ExitRecord};
use crate::util::{io_ctx, now_nanos, process_alive, read_json, write_json};
use crate::{ContainerInfo, ContainerSpec, ContainerState, Error, PidNamespace, Result};

/// What is persisted of a container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub spec: ContainerSpec,
    pub image_id: String,
    /// Digests (hex) of the layers its rootfs is made of: their snapshots stay while it exists.
    #[serde(default)]
    pub layers: Vec<String>,
    pub created_at: i64,
    pub started_at: i64,
    /// The container's init process and its start time.
    pub pid: u32,
    pub pid_start: u64,
    /// The pod's monitor and its start time (it ran this container).
    pub shim_pid: u32,
    pub shim_start: u64,
    /// Why it failed to start, if it did.
    pub message: String,
}

/// A container's record with its exit, once known (an exit is final, so it is read once).
#[derive(Debug, Clone)]
pub(crate) struct ContainerEntry {
    pub record: ContainerRecord,
    pub exit: Option<ExitRecord>,
}

impl Inner {
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("containers").join(id)
    }

    pub(crate) fn runc_root(&self) -> PathBuf {
        self.config.state_dir.join("runc")
    }

    /// The record of container `id`.
    pub(crate) fn container_record(&self, id: &str) -> Result<ContainerRecord> {
        self.containers
            .get(id)
            .map(|entry| entry.record)
            .ok_or_else(|| Error::NotFound(format!("container {id}")))
    }

    /// Writes `record` to `container.json` and the index.
    pub(crate) fn save_container(&self, record: &ContainerRecord) -> Result<()> {
        write_json(
            &self.container_dir(&record.id).join("container.json"),
            record,
        )?;
        let exit = self.containers.get(&record.id).and_then(|e| e.exit);
        self.containers.put(
            &record.id,
            ContainerEntry {
                record: record.clone(),
                exit,
            },
        );
        Ok(())
    }

    /// Writes the exit of container `id` (the monitor does this itself when it runs).
    fn save_exit(&self, id: &str, exit: ExitRecord) -> Result<()> {
        write_json(&self.container_dir(id).join(EXIT_FILE), &exit)?;
        self.containers.update(id, |e| e.exit = Some(exit));
        Ok(())
    }

    /// Every record, oldest first.
    fn container_records(&self) -> Vec<ContainerRecord> {
        let mut out: Vec<ContainerRecord> = self
            .containers
            .all()
            .into_iter()
            .map(|e| e.record)
            .collect();
        out.sort_by_key(|r| r.created_at);
        out
    }

    /// The container as it is now.
    pub(crate) fn container_info(&self, record: &ContainerRecord) -> Result<ContainerInfo> {
        let exit = self.containers.get(&record.id).and_then(|e| e.exit);
        self.entry_info(&ContainerEntry {
            record: record.clone(),
            exit,
        })
    }

    /// The container as it is now: its recorded exit, else whether its processes live (an
    /// `exit.json` the monitor wrote since is read and kept).
    fn entry_info(&self, entry: &ContainerEntry) -> Result<ContainerInfo> {
        let record = &entry.record;
        let mut info = ContainerInfo {
            id: record.id.clone(),
            sandbox_id: record.sandbox_id.clone(),
            spec: record.spec.clone(),
            image_id: record.image_id.clone(),
            state: ContainerState::Created,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: record.message.clone(),
            pid: 0,
        };
        let mut exit = entry.exit.clone();
        if exit.is_none() && record.started_at != 0 {
            if process_alive(record.pid, record.pid_start) {
                info.state = ContainerState::Running;
                info.pid = record.pid;
                return Ok(info);
            }
            exit = read_json(&self.container_dir(&record.id).join(EXIT_FILE))?;
            if let Some(exit) = &exit {
                self.containers
                    .update(&record.id, |e| e.exit = Some(exit.clone()));
            }
        }
        if let Some(exit) = exit {
            info.state = ContainerState::Exited;
            info.exit_code = exit.exit_code;
            info.finished_at = exit.finished_at;
            info.reason = match (exit.exit_code, record.message.is_empty()) {
                (_, false) => "StartError",
                (0, true) => "Completed",
                _ => "Error",
            }
            .to_string();
        } else if record.started_at != 0 {
            if process_alive(record.shim_pid, record.shim_start) {
                // The process is gone; its monitor is still draining the output.
                info.state = ContainerState::Running;
                info.pid = record.pid;
            } else {
                info.state = ContainerState::Exited;
                info.exit_code = 255;
                info.reason = "Unknown".into();
                info.message = "the container's monitor exited without recording its exit".into();
            }
        }
        Ok(info)
    }
}

/// Reads every container's records from disk into the index (when the runtime opens).
pub(crate) fn load(inner: &Inner) -> Result<()> {
    let dir = inner.config.data_dir.join("containers");
    for entry in std::fs::read_dir(&dir).map_err(io_ctx(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(io_ctx(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let folder = inner.container_dir(&name);
        let loaded = read_json::<ContainerRecord>(&folder.join("container.json"))
            .and_then(|record| Ok((record, read_json::<ExitRecord>(&folder.join(EXIT_FILE))?)));
        match loaded {
            Ok((Some(record), exit)) if record.id == name => {
                inner.containers.put(&name, ContainerEntry { record, exit })
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(container = %name, error = %e, "skipping container"),
        }
    }
    Ok(())
}

/// Ids of the containers of sandbox `sandbox_id`.
pub(crate) fn ids_of_sandbox(inner: &Inner, sandbox_id: &str) -> Result<Vec<String>> {
    Ok(inner
        .container_records()
        .into_iter()
        .filter(|r| r.sandbox_id == sandbox_id)
        .map(|r| r.id)
        .collect())
}

/// One container.
pub(crate) fn get(inner: &Inner, id: &str) -> Result<ContainerInfo> {
    inner.container_info(&inner.container_record(id)?)
}

/// Every container.
pub(crate) fn list(inner: &Inner) -> Result<Vec<ContainerInfo>> {
    let mut entries = inner.containers.all();
    entries.sort_by_key(|e| e.record.created_at);
    entries.iter().map(|e| inner.entry_info(e)).collect()
}

/// Creates a container: rootfs and bundle.
pub(crate) async fn create(
    inner: &Arc<Inner>,
    sandbox_id: &str,
    spec: ContainerSpec,
) -> Result<String> {
    let sandbox = inner.sandbox_record(sandbox_id)?;
    if !sandbox.ready() {
        return Err(Error::FailedPrecondition(format!(
            "sandbox {sandbox_id} is not ready"
        )));
    }
    if spec.name.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container in sandbox {sandbox_id}: empty name"
        )));
    }
    if let Some(other) = inner.container_records().into_iter().find(|r| {
        r.sandbox_id == sandbox_id && r.spec.name == spec.name && r.spec.attempt == spec.attempt
    }) {
        return Err(Error::AlreadyExists(format!(
            "container {:?} (attempt {}) in sandbox {sandbox_id} as {}",
            spec.name, spec.attempt, other.id
        )));
    }
    let id = crate::util::new_id();
    let task = {
        let inner = Arc::clone(inner);
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            let result = build(&inner, &id, &sandbox, spec);
            if result.is_err() {
                let dir = inner.container_dir(&id);
                let _ = unmount(&dir.join("rootfs"));
                let _ = crate::util::remove_dir_all(&dir);
            }
            result
        })
    };
    task.await
        .map_err(|e| Error::Command(format!("creating container {id}: {e}")))??;
    tracing::info!(container = %id, sandbox = %sandbox_id, "container created");
    Ok(id)
}

fn build(
    inner: &Inner,
    id: &str,
    sandbox: &crate::sandbox::SandboxRecord,
    mut spec: ContainerSpec,
) -> Result<()> {
    let image = inner.images.resolve(&spec.image)?;
    let dir = inner.container_dir(id);
    let rootfs = dir.join("rootfs");
    for sub in ["rootfs", "upper", "work"] {
        crate::util::create_dir_all(&dir.join(sub))?;
    }
    let lower: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| Error::Io {
        context: format!("mounting the rootfs of container {id}"),
        source: e.into(),
    })?;
    if let (Some(log), Some(log_dir)) = (&spec.log_path, &sandbox.spec.log_directory)
        && log.is_relative()
    {
        spec.log_path = Some(log_dir.join(log));
    }
    let sandbox_dir = inner.sandbox_dir(&sandbox.id);
    let pod_mounts: Vec<(PathBuf, &'static str)> = crate::sandbox::POD_MOUNTS
        .iter()
        .map(|(file, dest)| (sandbox_dir.join(file), *dest))
        // Sandboxes made by an older runtime may lack some (e.g. `shm`).
        .filter(|(source, _)| source.exists())
        .collect();
    let oci = crate::bundle::build_spec(&crate::bundle::BundleParams {
        id,
        spec: &spec,
        image: &image.process,
        rootfs: &rootfs,
        hostname: sandbox.hostname(),
        pause_pid: sandbox.pid,
        namespaces: sandbox.spec.namespaces,
        pod_mounts: &pod_mounts,
    })?;
    oci.save(dir.join("config.json"))
        .map_err(|e| Error::Command(format!("writing config.json of container {id}: {e}")))?;
    let record = ContainerRecord {
        id: id.to_string(),
        sandbox_id: sandbox.id.clone(),
        spec,
        image_id: image.image.id,
        layers: image
            .layers
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect(),
        created_at: now_nanos(),
        started_at: 0,
        pid: 0,
        pid_start: 0,
        shim_pid: 0,
        shim_start: 0,
        message: String::new(),
    };
    inner.save_container(&record)
}

/// Starts a created container under its monitor.
pub(crate) async fn start(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let record = inner.container_record(id)?;
    let info = inner.container_info(&record)?;
    if info.state != ContainerState::Created {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is {:?}, not created",
            info.state
        )));
    }
    if !inner.sandbox_record(&record.sandbox_id)?.ready() {
        return Err(Error::FailedPrecondition(format!(
            "container {id}: its sandbox {} is not ready",
            record.sandbox_id
        )));
    }
    let task = {
        let inner = Arc::clone(inner);
        tokio::task::spawn_blocking(move || start_shim(&inner, record))
    };
    task.await
        .map_err(|e| Error::Command(format!("starting container {id}: {e}")))?
}

fn start_shim(inner: &Inner, mut record: ContainerRecord) -> Result<()> {
    let id = record.id.clone();
    let what = format!("starting container {id}");
    let request = crate::shim::Request::Start(crate::shim::StartRequest {
        id: id.clone(),
        bundle: inner.container_dir(&id),
        runtime: inner.config.oci_runtime.clone(),
        root: inner.runc_root(),
        log: record.spec.log_path.clone(),
        attach: crate::attach::socket_path(&inner.config.state_dir, &id),
        stdin: record.spec.stdin,
        stdin_once: record.spec.stdin_once,
        tty: record.spec.tty,
        kill_all_on_exit: shares_pid_namespace(inner, &record),
    });
    let started = crate::sandbox::ensure_shim(inner, &record.sandbox_id).and_then(|shim| {
        let words = crate::shim::call(&shim.socket, &request)
            .map_err(io_ctx(format!(
                "{what}: talking to the monitor of sandbox {} ({})",
                record.sandbox_id,
                shim.socket.display()
            )))?
            .map_err(|e| {
                Error::Command(format!("{what}: {}", explain_start_error(inner, &id, e)))
            })?;
        let pid = words.first().and_then(|w| w.parse::<u32>().ok());
        let started_at = words.get(1).and_then(|w| w.parse::<i64>().ok());
        match (pid, started_at) {
            (Some(pid), Some(at)) => Ok((pid, at, shim.record)),
            _ => Err(Error::Command(format!("{what}: bad report {words:?}"))),
        }
    });
    match started {
        Ok((pid, started_at, sandbox)) => {
            record.started_at = started_at;
            record.pid = pid;
            record.pid_start = crate::util::proc_start_time(pid).unwrap_or(0);
            record.shim_pid = sandbox.shim_pid;
            record.shim_start = sandbox.shim_start;
            inner.save_container(&record)?;
            tracing::info!(container = %id, pid, "container started");
            Ok(())
        }
        Err(e) => {
            let now = now_nanos();
            record.started_at = now;
            record.message = e.to_string();
            inner.save_container(&record)?;
            inner.save_exit(
                &id,
                ExitRecord {
                    exit_code: 128,
                    finished_at: now,
                },
            )?;
            Err(e)
        }
    }
}

/// The monitor's reason a container did not start, led by its working directory when that is
/// what failed (runc makes a missing one, but not below a file: `mkdir /bin/sh: not a
/// directory`, or `chdir to cwd …`).
fn explain_start_error(inner: &Inner, id: &str, reason: String) -> String {
    let config = inner.container_dir(id).join("config.json");
    let Some(cwd) = oci_spec::runtime::Spec::load(&config)
        .ok()
        .and_then(|spec| spec.process().as_ref().map(|p| p.cwd().clone()))
    else {
        return reason;
    };
    let about_cwd = reason.contains("chdir to cwd")
        || cwd
            .ancestors()
            .filter(|dir| dir.parent().is_some())
            .any(|dir| reason.contains(&format!("mkdir {}:", dir.display())));
    if about_cwd {
        format!(
            "working directory {:?}: {reason}",
            cwd.display().to_string()
        )
    } else {
        reason
    }
}

/// SIGTERM, then SIGKILL after `grace`; waits until the exit is recorded.
pub(crate) async fn stop(inner: &Arc<Inner>, id: &str, grace: Duration) -> Result<()> {
    let record = inner.container_record(id)?;
    let running = |inner: &Inner| -> Result<bool> {
        Ok(inner.container_info(&record)?.state == ContainerState::Running)
    };
    if !running(inner)? {
        kill_leftovers(inner, &record).await;
        return Ok(());
    }
    let signal = |sig: Signal| {
        if process_alive(record.pid, record.pid_start) {
            let _ = kill(Pid::from_raw(record.pid as i32), sig);
        }
    };
    if !grace.is_zero() {
        signal(Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && running(inner)? {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Kill, and wait for the monitor to record the exit (it drains the output first).
    for _ in 0..600 {
        if !running(inner)? {
            kill_leftovers(inner, &record).await;
            tracing::info!(container = %id, "container stopped");
            return Ok(());
        }
        signal(Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Command(format!(
        "container {id} did not stop after SIGKILL"
    )))
}

/// Kills what is left in the cgroup of a started container whose main process is gone, when
/// that did not end them: in a pod-wide or the host's pid namespace, its exec'd processes (and
/// their children) outlive it.
async fn kill_leftovers(inner: &Inner, record: &ContainerRecord) {
    if !shares_pid_namespace(inner, record) || record.pid == 0 {
        return;
    }
    let (runtime, root, id) = (
        inner.config.oci_runtime.clone(),
        inner.runc_root(),
        record.id.clone(),
    );
    let killed =
        tokio::task::spawn_blocking(move || crate::oci_runtime::kill_all(&runtime, &root, &id))
            .await;
    if let Ok(Err(e)) = killed {
        tracing::debug!(container = %record.id, error = %e, "killing what is left of it");
    }
}

/// Whether the container's pid namespace is the pod's or the host's: then the processes exec'd
/// into it outlive its main process unless they are killed.
fn shares_pid_namespace(inner: &Inner, record: &ContainerRecord) -> bool {
    inner
        .sandbox_record(&record.sandbox_id)
        .is_ok_and(|s| s.spec.namespaces.pid != PidNamespace::Container)
}

/// Removes a container, stopping it first; leaves no runc state, mount, cgroup or folder.
pub(crate) async fn remove(inner: &Arc<Inner>, id: &str) -> Result<()> {
    match inner.container_record(id) {
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    stop(inner, id, Duration::ZERO).await?;
    let dir = inner.container_dir(id);
    let dir2 = dir.clone();
    let (runtime, root, id2) = (
        inner.config.oci_runtime.clone(),
        inner.runc_root(),
        id.to_string(),
    );
    tokio::task::spawn_blocking(move || -> Result<()> {
        crate::oci_runtime::delete(&runtime, &root, &id2)?;
        unmount(&dir2.join("rootfs"))?;
        crate::util::remove_dir_all(&dir2)
    })
    .await
    .map_err(|e| Error::Command(format!("removing container {id}: {e}")))??;
    inner.containers.remove(id);
    remove_cgroups(id);
    let socket = crate::attach::socket_path(&inner.config.state_dir, id);
    let _ = std::fs::remove_file(socket.with_extension("console"));
    let _ = std::fs::remove_file(socket);
    tracing::info!(container = %id, "container removed");
    Ok(())
}

/// Unmounts `path` if it is a mount point (lazily when busy).
pub(crate) fn unmount(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            umount2(path, MntFlags::MNT_DETACH).map_err(|e| Error::Io {
                context: format!("unmounting {}", path.display()),
                source: e.into(),
            })
        }
        Err(e) => Err(Error::Io {
            context: format!("unmounting {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Removes cgroup folders `podway/<id>` left in any v1 hierarchy (runc delete normally does).
pub(crate) fn remove_cgroups(id: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join("podway").join(id);
        if dir.is_dir()
            && let Err(e) = std::fs::remove_dir(&dir)
        {
            tracing::warn!(cgroup = %dir.display(), error = %e, "removing cgroup");
        }
    }
}
