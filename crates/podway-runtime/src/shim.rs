//! `podway shim`: the container monitor (one per container for now).
//!
//! `podway shim --id ID --bundle DIR --runtime RUNC --root RUNC_ROOT [--log FILE]` forks; the
//! parent exits at once and the child (new session, child subreaper) runs
//! `RUNC run -d` with the container's stdout/stderr on pipes it owns, reports `ok PID SHIM_PID STARTED_AT_NANOS\n`
//! (or `error TEXT\n`) on its stdout, writes the output as CRI log records to FILE, waits for the
//! container's exit and records it in `DIR/exit.json` once the output is drained.
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, setsid};

/// The exit record a shim leaves in the bundle (`exit.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExitRecord {
    /// Exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// Nanoseconds since the epoch.
    pub finished_at: i64,
}

/// Name of the exit record in the bundle.
pub(crate) const EXIT_FILE: &str = "exit.json";

struct Args {
    id: String,
    bundle: PathBuf,
    runtime: PathBuf,
    root: PathBuf,
    log: Option<PathBuf>,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let (mut id, mut bundle, mut runtime, mut root, mut log) = (None, None, None, None, None);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let slot = match arg.to_str() {
            Some("shim") => continue,
            Some("--id") => &mut id,
            Some("--bundle") => &mut bundle,
            Some("--runtime") => &mut runtime,
            Some("--root") => &mut root,
            Some("--log") => &mut log,
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        *slot = it.next();
    }
    let need = |v: Option<OsString>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(Args {
        id: need(id, "--id")?.to_string_lossy().into_owned(),
        bundle: need(bundle, "--bundle")?.into(),
        runtime: need(runtime, "--runtime")?.into(),
        root: need(root, "--root")?.into(),
        log: log.map(PathBuf::from),
    })
}

/// Entry point of `podway shim ARGS…`, called by the binary before any async runtime starts.
/// Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("podway shim: {e}");
            return 2;
        }
    };
    // SAFETY: called before any thread or async runtime starts (contract of this entry point).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => 0,
        Ok(ForkResult::Child) => monitor(&args),
        Err(e) => {
            println!("error fork: {e}");
            1
        }
    }
}

fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    crate::util::detach_stdio();
}

fn monitor(args: &Args) -> i32 {
    let started = setsid()
        .map_err(|e| format!("setsid: {e}"))
        .and_then(|_| set_subreaper())
        .and_then(|()| start(args));
    let (pid, readers) = match started {
        Ok(v) => v,
        Err(e) => {
            report(&format!("error {}\n", e.replace('\n', " ")));
            return 1;
        }
    };
    let started_at = crate::util::now_nanos();
    report(&format!("ok {pid} {} {started_at}\n", std::process::id()));

    let sink: Arc<Mutex<Box<dyn Write + Send>>> =
        Arc::new(Mutex::new(open_log(args.log.as_deref())));
    let pumps: Vec<_> = readers
        .into_iter()
        .map(|(reader, stream)| {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || crate::cri_log::copy_to_log(reader, stream, &*sink))
        })
        .collect();
    let exit_code = wait_for(pid);
    let finished_at = crate::util::now_nanos();
    for pump in pumps {
        let _ = pump.join();
    }
    let record = ExitRecord {
        exit_code,
        finished_at,
    };
    if let Err(e) = crate::util::write_json(&args.bundle.join(EXIT_FILE), &record) {
        eprintln!("podway shim {}: {e}", args.id);
        return 1;
    }
    0
}

fn set_subreaper() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn open_log(path: Option<&Path>) -> Box<dyn Write + Send> {
    let Some(path) = path else {
        return Box::new(std::io::sink());
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Box::new(f),
        Err(e) => {
            eprintln!("podway shim: opening log {}: {e}", path.display());
            Box::new(std::io::sink())
        }
    }
}

type Readers = Vec<(std::io::PipeReader, &'static str)>;

/// Runs `runc run -d` with stdout/stderr on new pipes; returns the container pid and the readers.
fn start(args: &Args) -> Result<(i32, Readers), String> {
    let (out_r, out_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let pid_file = args.bundle.join("init.pid");
    let runc_log = args.bundle.join("runc.log");
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&runc_log);
    let status = {
        let mut cmd = Command::new(&args.runtime);
        cmd.arg("--root")
            .arg(&args.root)
            .arg("--log")
            .arg(&runc_log)
            .args(["--log-format", "text", "run", "-d", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&args.bundle)
            .arg(&args.id)
            .stdin(Stdio::null())
            .stdout(out_w)
            .stderr(err_w);
        cmd.status()
            .map_err(|e| format!("running {}: {e}", args.runtime.display()))?
        // `cmd` (holding our copies of the write ends) is dropped here.
    };
    if !status.success() {
        let log = std::fs::read_to_string(&runc_log).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| l.contains("level=error"))
            .unwrap_or(log.trim());
        return Err(format!(
            "{} run failed ({status}): {last}",
            args.runtime.display()
        ));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("no pid in {}", pid_file.display()))?;
    Ok((pid, vec![(out_r, "stdout"), (err_r, "stderr")]))
}

/// Reaps children until `pid` exits; returns its exit code.
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("podway shim: waiting for {pid}: {e}");
                return 255;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let args = [
            "shim",
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--runtime",
            "runc",
            "--root",
            "/r",
        ];
        let parsed = parse(args.iter().map(OsString::from).collect());
        assert!(
            parsed
                .as_ref()
                .is_ok_and(|a| a.id == "c1" && a.log.is_none())
        );
        assert!(parse(vec![OsString::from("--bogus")]).is_err());
        assert!(parse(vec![OsString::from("--id"), OsString::from("x")]).is_err());
    }
}
