//! `podway killall`: stops everything a runtime's folders run, without the runtime daemon.
//!
//! For a node whose runtime is gone (crashed, or about to be uninstalled) and for tests that
//! must leave nothing behind even when a test failed half-way: every pod monitor, container
//! process and pause process named by a record is killed (checked against its start time, so a
//! reused pid is never hit), runc's state of each container is deleted, and every rootfs and
//! `/dev/shm` mount and container cgroup is removed. Records and logs stay: a runtime started
//! on the same folders afterwards lists the containers as exited and the sandboxes as not ready.
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::container::ContainerRecord;
use crate::sandbox::SandboxRecord;
use crate::util::{process_alive, read_json};

/// What [`killall`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Killed {
    /// Processes killed (monitors, containers, pause processes).
    pub processes: usize,
    /// Containers whose runc state, rootfs mount and cgroup were removed.
    pub containers: usize,
    /// Sandboxes whose `/dev/shm` mount was removed.
    pub sandboxes: usize,
}

/// Kills every process a runtime on `data_dir` and `state_dir` started and removes their runc
/// state (through `oci_runtime`), mounts and cgroups (see the module doc). Blocking; best
/// effort: what cannot be removed is logged and the rest goes on.
pub fn killall(data_dir: &Path, state_dir: &Path, oci_runtime: &Path) -> Killed {
    let mut killed = Killed::default();
    let sandboxes: Vec<SandboxRecord> = records(&data_dir.join("sandboxes"), "sandbox.json");
    let containers: Vec<ContainerRecord> = records(&data_dir.join("containers"), "container.json");
    let mut kill_checked = |pid: u32, start: u64| {
        if pid > 0 && process_alive(pid, start) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            killed.processes += 1;
        }
    };
    for s in &sandboxes {
        kill_checked(s.shim_pid, s.shim_start);
    }
    for c in &containers {
        kill_checked(c.pid, c.pid_start);
    }
    for s in &sandboxes {
        kill_checked(s.pid, s.pid_start);
    }
    let runc_root = state_dir.join("runc");
    for c in &containers {
        if let Err(e) = crate::oci_runtime::delete(oci_runtime, &runc_root, &c.id) {
            tracing::warn!(container = %c.id, error = %e, "deleting its OCI runtime state");
        }
        let rootfs = data_dir.join("containers").join(&c.id).join("rootfs");
        if let Err(e) = crate::container::unmount(&rootfs) {
            tracing::warn!(container = %c.id, error = %e, "unmounting its rootfs");
        }
        crate::container::remove_cgroups(&c.id);
        killed.containers += 1;
    }
    for s in &sandboxes {
        let shm = data_dir.join("sandboxes").join(&s.id).join("shm");
        if let Err(e) = crate::container::unmount(&shm) {
            tracing::warn!(sandbox = %s.id, error = %e, "unmounting its /dev/shm");
        }
        killed.sandboxes += 1;
    }
    killed
}

/// The records `FILE` of every folder below `dir` that has a readable one.
fn records<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Vec<T> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| read_json(&entry.path().join(file)).ok().flatten())
        .collect()
}
