//! `podway pause`: holds a sandbox's namespaces.
//!
//! `podway pause --hostname NAME [--host-network] [--host-ipc] [--pid-namespace]` forks; the
//! parent exits at once (so whoever started it reaps it and the holder is detached), the child
//! starts a new session and unshares the IPC namespace and, unless `--host-network`, the
//! network and UTS namespaces (then sets the hostname and brings `lo` up). With
//! `--pid-namespace` it also unshares the PID namespace and forks once more: that child is the
//! pod's PID 1, and reaps the orphans of every container sharing it. The holder writes
//! `ok PID\n` (its pid as the host sees it; or `error TEXT\n`) on stdout, closes it, and sleeps
//! until SIGTERM or SIGINT.
use std::ffi::OsString;
use std::io::Write;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid, fork, sethostname, setsid};

use crate::{PidNamespace, PodNamespaces};

/// What the holder is asked to make.
#[derive(Debug, Default)]
struct Args {
    hostname: Option<String>,
    host_network: bool,
    host_ipc: bool,
    pid_namespace: bool,
}

/// The arguments of `podway pause` for a pod with `hostname` and `namespaces`.
pub(crate) fn args(hostname: &str, namespaces: &PodNamespaces) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["pause", "--hostname", hostname]
        .iter()
        .map(OsString::from)
        .collect();
    for (set, flag) in [
        (namespaces.host_network, "--host-network"),
        (namespaces.host_ipc, "--host-ipc"),
        (namespaces.pid == PidNamespace::Pod, "--pid-namespace"),
    ] {
        if set {
            args.push(flag.into());
        }
    }
    args
}

/// Entry point of `podway pause ARGS…`, called by the binary before any async runtime starts.
/// Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut parsed = Args::default();
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--hostname" => parsed.hostname = it.next(),
            "--host-network" => parsed.host_network = true,
            "--host-ipc" => parsed.host_ipc = true,
            "--pid-namespace" => parsed.pid_namespace = true,
            "pause" => {}
            other => {
                eprintln!("podway pause: unknown argument {other:?}");
                return 2;
            }
        }
    }
    // SAFETY: called before any thread or async runtime starts (contract of this entry point).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => 0,
        Ok(ForkResult::Child) => hold(&parsed),
        Err(e) => {
            println!("error fork: {e}");
            1
        }
    }
}

/// The namespaces `args` asks to unshare.
fn unshare_flags(args: &Args) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    if !args.host_network {
        // A pod on the host's network keeps the host's name too, as the kubelet's do.
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    if !args.host_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if args.pid_namespace {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    flags
}

/// The holder: sets up the namespaces, reports, and waits for a stop signal.
fn hold(args: &Args) -> i32 {
    let setup = || -> Result<(), String> {
        setsid().map_err(|e| format!("setsid: {e}"))?;
        unshare(unshare_flags(args)).map_err(|e| format!("unshare: {e}"))?;
        if args.host_network {
            return Ok(());
        }
        if let Some(name) = args.hostname.as_deref().filter(|h| !h.is_empty()) {
            sethostname(name).map_err(|e| format!("sethostname {name:?}: {e}"))?;
        }
        crate::netns::loopback_up().map_err(|e| format!("bringing lo up: {e}"))
    };
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        signals.add(s);
    }
    let mut result = setup().and_then(|()| signals.thread_block().map_err(|e| e.to_string()));
    if result.is_ok() && args.pid_namespace {
        // unshare(CLONE_NEWPID) moves only the children: the next one is the pod's PID 1.
        // SAFETY: this process is single-threaded (see `main`).
        match unsafe { fork() } {
            Ok(ForkResult::Parent { .. }) => return 0,
            Ok(ForkResult::Child) => {}
            Err(e) => result = Err(format!("fork into the pid namespace: {e}")),
        }
    }
    let report = match &result {
        Ok(()) => format!("ok {}\n", host_pid()),
        Err(e) => format!("error {e}\n"),
    };
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush());
    crate::util::detach_stdio();
    if result.is_err() {
        return 1;
    }
    crate::resident::release_clean_file_pages();
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap_orphans(),
            Ok(Signal::SIGHUP) | Err(_) => continue,
            Ok(_) => return 0,
        }
    }
}

/// This process's pid as the host sees it: `getpid()` says 1 inside a new pid namespace.
fn host_pid() -> u32 {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(std::process::id)
}

/// Reaps every exited child: as a pid namespace's init, the holder inherits the orphans of
/// the pod's containers.
fn reap_orphans() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status.pid().is_none() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_pod_namespaces() {
        let plain = args("web", &PodNamespaces::default());
        assert_eq!(plain, ["pause", "--hostname", "web"]);
        let shared = args(
            "web",
            &PodNamespaces {
                host_network: true,
                host_ipc: true,
                pid: PidNamespace::Pod,
            },
        );
        assert!(shared.iter().any(|a| a == "--pid-namespace"));
        assert!(shared.iter().any(|a| a == "--host-network"));
        assert!(shared.iter().any(|a| a == "--host-ipc"));
    }
}
