//! `podway pause`: holds a sandbox's namespaces.
//!
//! `podway pause --hostname NAME` forks; the parent exits at once (so whoever started it reaps it
//! and the holder is detached), the child starts a new session, unshares the network, IPC and
//! UTS namespaces, sets the hostname, brings `lo` up, writes `ok PID\n` (or `error TEXT\n`) on
//! stdout, closes it, and sleeps until SIGTERM or SIGINT.
use std::ffi::OsString;
use std::io::Write;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{ForkResult, fork, sethostname, setsid};

/// Entry point of `podway pause ARGS…`, called by the binary before any async runtime starts.
/// Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut hostname = None;
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--hostname" => hostname = it.next(),
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
        Ok(ForkResult::Child) => hold(hostname.as_deref()),
        Err(e) => {
            println!("error fork: {e}");
            1
        }
    }
}

/// The holder: sets up the namespaces, reports, and waits for a stop signal.
fn hold(hostname: Option<&str>) -> i32 {
    let setup = || -> Result<(), String> {
        setsid().map_err(|e| format!("setsid: {e}"))?;
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|e| format!("unshare: {e}"))?;
        if let Some(name) = hostname.filter(|h| !h.is_empty()) {
            sethostname(name).map_err(|e| format!("sethostname {name:?}: {e}"))?;
        }
        crate::netns::loopback_up().map_err(|e| format!("bringing lo up: {e}"))
    };
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    let report = match setup().and_then(|()| signals.thread_block().map_err(|e| e.to_string())) {
        Ok(()) => format!("ok {}\n", std::process::id()),
        Err(e) => format!("error {e}\n"),
    };
    let failed = report.starts_with("error");
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush());
    crate::util::detach_stdio();
    if failed {
        return 1;
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) | Err(_) => continue,
            Ok(_) => return 0,
        }
    }
}
