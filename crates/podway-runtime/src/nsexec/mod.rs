//! The fast exec path: the runtime starts the process in the container itself, without an
//! OCI runtime process per exec, and gives it what `runc exec` gives it:
//!
//! - the namespaces of the container's init process (`/proc/PID/ns/*`, opened before the
//!   fork): net, ipc, uts, cgroup and time when they differ from ours, the pid namespace
//!   (joined by a short-lived thread before the fork, so the process is born in it and stays
//!   our direct child), and the mount namespace last;
//! - its cgroups (every v1 hierarchy's `tasks`, written by the single-threaded child, which
//!   spares the global lock `cgroup.procs` takes; v2's `cgroup.procs` when mounted);
//! - the spec's user (uid, gid, additional gids), capabilities (bounding, effective,
//!   permitted, inheritable, ambient), `noNewPrivileges`, rlimits, umask, env (with `TERM` on
//!   a terminal and `HOME` from the container's passwd when unset), cwd, and runc's session
//!   keyring `_ses.<id>`;
//! - a terminal from the container's own devpts (session leader, controlling terminal,
//!   resizable), or pipes; stdio is handed to the process user as runc does;
//! - the spec's seccomp filter (`linux.seccomp`), compiled to classic BPF by
//!   [`crate::seccomp_bpf`] at every exec and loaded where runc's exec loads it: before the
//!   capabilities are dropped without `noNewPrivileges` (loading then takes `CAP_SYS_ADMIN`),
//!   right before `execve` with it. One filter, as runc loads one.
//!
//! It falls back to `runc exec` (see `plan::unsupported` and `plan::seccomp_filter`) when the
//! spec has what it does not reproduce: a seccomp profile the compiler refuses (a seccomp
//! agent, another CPU family's architecture, rules with different actions for one call, flags
//! other than LOG/SPEC_ALLOW/TSYNC or ones this kernel does not take, a program over 4096
//! instructions), an AppArmor profile, an SELinux label, a user namespace, an Intel RDT group,
//! a personality, an I/O priority, a scheduler policy or an exec CPU affinity; also when the
//! init process is gone (runc then reports why), when the container has no usable devpts for a
//! terminal, and when `PODWAY_EXEC=runc` is set.
//!
//! Safety of the window between fork and execve (the CVE-2019-5736 family): the child is born
//! in the container's pid namespace, so its processes may see it before it has switched to the
//! container's root, user and capabilities. Its first act is `PR_SET_DUMPABLE = 0`, which
//! closes its `/proc/PID/{fd,root,cwd,exe,mem}` to anyone without `CAP_SYS_PTRACE`; before
//! that (a few instructions after fork) the kernel's ptrace check still refuses a container
//! process, whose capabilities are a strict subset of the child's full root set. Its
//! `/proc/PID/exe` is the runtime's binary, which can never be opened for writing while the
//! runtime daemon runs it (ETXTBSY), so it cannot be overwritten from the container either.
//! Every descriptor above stdio is close-on-exec before `execve` (`close_range`), so nothing
//! of the runtime's (namespace, cgroup or root descriptors, sockets) reaches the container.
mod caps;
mod cgroup;
mod child;
mod plan;
mod pty;
mod spawn;

use std::sync::atomic::{AtomicU8, Ordering};

use crate::api::Inner;
use crate::{Error, WindowSize};

use spawn::Stdio3;

/// 0: not decided yet (read `PODWAY_EXEC`), 1: fast path, 2: always `runc exec`.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether execs take the fast path (the default; `PODWAY_EXEC=runc` in the environment
/// turns it off).
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var_os("PODWAY_EXEC").is_none_or(|v| v != "runc");
            MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns the fast path on or off for the whole process (benchmarks compare both paths).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// An exec the fast path will run: planned, with its terminal when it has one.
pub(crate) struct Prepared {
    plan: plan::Plan,
    terminal: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
}

/// A started process's terminal: its output, its input, and a descriptor to resize it.
pub(crate) struct Terminal {
    /// What the process writes (EIO once every holder of the terminal has closed it).
    pub output: tokio::net::unix::pipe::Receiver,
    /// What the process reads.
    pub input: tokio::net::unix::pipe::Sender,
    /// The master side, for `TIOCSWINSZ`.
    pub master: std::os::fd::OwnedFd,
}

/// Prepares `cmd` in container `id` for the fast path; `None` when it does not apply (the
/// caller then runs `runc exec`, which also reports a container that is gone).
pub(crate) fn prepare(inner: &Inner, id: &str, cmd: &[String], tty: bool) -> Option<Prepared> {
    if !enabled() {
        return None;
    }
    let plan = plan::plan(inner, id, cmd, tty)
        .map_err(|reason| tracing::debug!(container = %id, %reason, "exec through the OCI runtime"))
        .ok()?;
    let terminal = if tty {
        Some(
            pty::open(&plan.root, None)
                .map_err(|e| tracing::debug!(container = %id, error = %e, "no terminal in the container; exec through the OCI runtime"))
                .ok()?,
        )
    } else {
        None
    };
    Some(Prepared { plan, terminal })
}

impl Prepared {
    /// Sets the size of the terminal before the process starts.
    pub(crate) fn set_size(&self, size: WindowSize) -> std::io::Result<()> {
        match &self.terminal {
            Some((master, _)) => {
                crate::tty::set_size(std::os::fd::AsRawFd::as_raw_fd(master), size)
            }
            None => Ok(()),
        }
    }

    /// Starts the process; without a terminal, `pipes` says which streams are pipes.
    pub(crate) async fn spawn(
        self,
        id: &str,
        cmd: &[String],
        pipes: (bool, bool, bool),
    ) -> crate::Result<(tokio::process::Child, Option<Terminal>)> {
        let (stdin, stdout, stderr) = pipes;
        let stdio = match self.terminal {
            Some((master, slave)) => Stdio3::Terminal(master, slave),
            None => Stdio3::Pipes {
                stdin,
                stdout,
                stderr,
            },
        };
        let spawned = spawn::spawn(self.plan, stdio)
            .await
            .map_err(|e| start_error(id, cmd, &e))?;
        let terminal = match spawned.terminal {
            Some(master) => {
                let (output, input, master) = pty::streams(master).map_err(crate::util::io_ctx(
                    format!("exec in container {id}: terminal"),
                ))?;
                Some(Terminal {
                    output,
                    input,
                    master,
                })
            }
            None => None,
        };
        Ok((spawned.child, terminal))
    }
}

/// The error of a process that could not start, worded like runc's.
fn start_error(id: &str, cmd: &[String], e: &spawn::SpawnError) -> Error {
    let program = cmd.first().map(String::as_str).unwrap_or_default();
    let cause = match e.step {
        Some(child::Step::Chdir) => format!("chdir to cwd set in config.json failed: {}", e.error),
        Some(step) => format!("{}: {}", step.what(), e.error),
        None if e.error.kind() == std::io::ErrorKind::NotFound && !program.contains('/') => {
            format!("exec: {program:?}: executable file not found in $PATH")
        }
        None => format!("exec: {program:?}: {}", e.error),
    };
    Error::Command(format!(
        "exec in container {id} failed: unable to start container process: {cause}"
    ))
}
