//! Starting the planned process: on a short-lived thread that first joins the container's pid
//! namespace (`setns(CLONE_NEWPID)` only changes where the caller's *children* are born), so
//! the process is born in the pod's pid namespace and is still our direct child (waited for
//! and killed like any child); the rest of the setup runs in the child before `execve`.
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;

use super::child::Step;
use super::plan::Plan;

/// What was started.
pub(crate) struct Spawned {
    /// The process (killed when dropped).
    pub child: tokio::process::Child,
    /// The master side of its terminal, if it has one.
    pub terminal: Option<OwnedFd>,
}

/// How the process's stdio is connected.
pub(crate) enum Stdio3 {
    /// Pipes (or `/dev/null` for streams nobody reads or writes).
    Pipes {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// A terminal `(master, slave)`: the slave is stdin, stdout and stderr.
    Terminal(OwnedFd, OwnedFd),
}

/// Why a start failed: the setup step (None: `execve` itself, or spawning) and the OS error.
pub(crate) struct SpawnError {
    pub step: Option<Step>,
    pub error: std::io::Error,
}

/// Starts `plan` with `stdio`.
pub(crate) async fn spawn(plan: Plan, stdio: Stdio3) -> Result<Spawned, SpawnError> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("podway-exec".into())
        .spawn(move || {
            // If the caller went away meanwhile, the child dropped here is killed.
            let _ = tx.send(spawn_here(&handle, plan, stdio));
        });
    if let Err(error) = thread {
        return Err(SpawnError { step: None, error });
    }
    rx.await.unwrap_or_else(|_| {
        Err(SpawnError {
            step: None,
            error: std::io::Error::other("the exec thread ended without a result"),
        })
    })
}

/// On the dedicated thread: joins the pid namespace, forks, and waits for `execve`.
fn spawn_here(
    handle: &tokio::runtime::Handle,
    plan: Plan,
    stdio: Stdio3,
) -> Result<Spawned, SpawnError> {
    let fail = |error| SpawnError { step: None, error };
    if let Some(ns) = &plan.pid_ns {
        // SAFETY: setns(2) on an open namespace descriptor; affects this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } < 0 {
            return Err(SpawnError {
                step: Some(Step::Namespace),
                error: std::io::Error::last_os_error(),
            });
        }
    }
    let _runtime = handle.enter();
    let Some((program, rest)) = plan.args.split_first() else {
        return Err(fail(std::io::Error::other("empty command")));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    let terminal = match stdio {
        Stdio3::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let pipe = |wanted: bool| {
                if wanted {
                    Stdio::piped()
                } else {
                    Stdio::null()
                }
            };
            command
                .stdin(pipe(stdin))
                .stdout(pipe(stdout))
                .stderr(pipe(stderr));
            None
        }
        Stdio3::Terminal(master, slave) => {
            let dup = |fd: &OwnedFd| fd.as_fd().try_clone_to_owned().map(Stdio::from);
            command
                .stdin(dup(&slave).map_err(fail)?)
                .stdout(dup(&slave).map_err(fail)?)
                .stderr(Stdio::from(slave));
            Some(master)
        }
    };
    let setup = plan.setup;
    // SAFETY: the closure only makes raw system calls on data prepared before the fork
    // (see `ChildSetup::run`), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || setup.run());
    }
    let spawned = command.spawn();
    // The command holds the slave's copies and the child's setup (its descriptors).
    drop(command);
    match spawned {
        Ok(child) => Ok(Spawned { child, terminal }),
        Err(error) => Err(SpawnError {
            step: failed_step(&plan.report),
            error,
        }),
    }
}

/// The step the child reported before it exited, if any.
fn failed_step(report: &OwnedFd) -> Option<Step> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // Another thread's fork may hold a copy of the write end: never block on it.
    fcntl(report, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).ok()?;
    let mut byte = [0u8];
    match nix::unistd::read(report, &mut byte) {
        Ok(1) => Step::from_byte(byte[0]),
        _ => None,
    }
}
