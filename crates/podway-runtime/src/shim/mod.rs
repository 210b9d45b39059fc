//! `podway shim`: the pod's monitor, one per pod sandbox (the conmon-rs model).
//!
//! `podway shim --sandbox ID --socket PATH` forks; the parent exits at once and the child (new
//! session, child subreaper) binds its control socket at PATH, reports `ok SHIM_PID\n` (or
//! `error TEXT\n`) on its stdout and serves the pod's containers until told to shut down. It
//! runs them with `RUNC run -d`, keeps their stdio (pipes, or the terminal master with a tty),
//! writes their output as CRI log records, serves attach on one unix socket per container
//! (framed as in `attach.rs`, several clients at once, log reopen included), reaps every child
//! (containers, runc's own, strays) and records each container's exit in its bundle's
//! `exit.json` once its output is drained (128 + signal when killed by a signal).
//!
//! Control protocol (on PATH, one request per connection; the runtime connects, writes one
//! line, reads one line, the shim closes):
//!
//! ```text
//! → {"start":{"id":ID,"bundle":DIR,"runtime":RUNC,"root":RUNC_ROOT,"log":FILE|null,
//!             "attach":SOCK,"stdin":bool,"stdin_once":bool,"tty":bool,
//!             "kill_all_on_exit":bool}}\n
//! ← ok PID STARTED_AT_NANOS\n            (the container's init runs)
//! ← error CAUSE\n                        (nothing of it is left in the shim)
//! → "shutdown"\n
//! ← ok\n                                 (SIGKILL to containers still running, then exit once
//!                                         they are recorded, at most 5 s later)
//! ```
//!
//! Requests are one JSON line of at most 64 KiB; every reply is one text line.
//!
//! Threads: one. A `poll(2)` loop over the control socket, a signalfd for SIGCHLD, and per
//! container its output descriptors, its stdin, its attach listener and clients (all
//! non-blocking). Buffers are bounded: a container's output is not read while one of its attach
//! clients has [`task::BACKLOG`] bytes queued (a client stuck for 10 s is dropped),
//! attach input is not read while the container's stdin has as much queued, frames are at most
//! [`crate::attach::MAX_FRAME`] bytes and a partial log line at most
//! [`crate::cri_log::MAX_LINE`]. A `start` request blocks the loop while runc runs (the
//! containers' pipes buffer their output meanwhile).
use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{ForkResult, fork, setsid};

mod monitor;
mod runc;
mod task;

/// The exit record the shim leaves in a container's bundle (`exit.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExitRecord {
    /// Exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// Nanoseconds since the epoch.
    pub finished_at: i64,
}

/// Name of the exit record in the bundle.
pub(crate) const EXIT_FILE: &str = "exit.json";

/// Longest request line.
const MAX_REQUEST: u64 = 64 * 1024;

/// How long the runtime waits for an answer (runc may be slow on a loaded node).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the runtime asks of the pod's shim.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// Start a container.
    Start(StartRequest),
    /// Stop serving: kill what still runs, record it, exit.
    Shutdown,
}

/// A container to start.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StartRequest {
    /// Container id (runc's name for it).
    pub id: String,
    /// Its OCI bundle (where `exit.json` goes).
    pub bundle: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The OCI runtime's `--root`.
    pub root: PathBuf,
    /// The CRI log file.
    pub log: Option<PathBuf>,
    /// Its attach socket.
    pub attach: PathBuf,
    /// Keep stdin open for attach.
    pub stdin: bool,
    /// Close stdin when the first attach that used it ends.
    pub stdin_once: bool,
    /// Run on a terminal.
    pub tty: bool,
    /// Its pid namespace is the pod's or the host's: when its main process exits, kill what it
    /// leaves in its cgroup (exec'd processes), as a container with its own namespace loses
    /// them with its init.
    #[serde(default)]
    pub kill_all_on_exit: bool,
}

#[derive(Debug)]
struct Args {
    sandbox: String,
    socket: PathBuf,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let (mut sandbox, mut socket) = (None, None);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let slot = match arg.to_str() {
            Some("shim") => continue,
            Some("--sandbox") => &mut sandbox,
            Some("--socket") => &mut socket,
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        *slot = it.next();
    }
    let need = |v: Option<OsString>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(Args {
        sandbox: need(sandbox, "--sandbox")?.to_string_lossy().into_owned(),
        socket: need(socket, "--socket")?.into(),
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
        Ok(ForkResult::Child) => serve(&args),
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

/// The detached child: sets itself up, reports, runs the loop.
fn serve(args: &Args) -> i32 {
    let ready = setsid()
        .map_err(|e| format!("setsid: {e}"))
        .and_then(|_| set_subreaper())
        .and_then(|()| monitor::Monitor::new(&args.socket));
    match ready {
        Ok(mut monitor) => {
            report(&format!("ok {}\n", std::process::id()));
            monitor.run();
            0
        }
        Err(e) => {
            report(&format!(
                "error pod shim of sandbox {}: {}\n",
                args.sandbox,
                e.replace('\n', " ")
            ));
            1
        }
    }
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

/// Reads one request line from a control connection (blocking, bounded in size and time).
fn read_request(conn: &UnixStream) -> Result<Request, String> {
    conn.set_nonblocking(false)
        .and_then(|()| conn.set_read_timeout(Some(Duration::from_secs(10))))
        .and_then(|()| conn.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| format!("control connection: {e}"))?;
    let mut line = Vec::new();
    std::io::BufReader::new(conn.take(MAX_REQUEST))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    serde_json::from_slice(&line).map_err(|e| format!("bad request: {e}"))
}

/// Sends `request` to the shim listening on `socket` and returns the words after `ok` of its
/// answer (runtime side; blocking: call from `spawn_blocking`).
pub(crate) fn call(
    socket: &Path,
    request: &Request,
) -> std::io::Result<Result<Vec<String>, String>> {
    let mut conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut answer)?;
    let answer = answer.trim_end();
    Ok(match answer.split_once(' ').unwrap_or((answer, "")) {
        ("ok", rest) => Ok(rest.split_whitespace().map(str::to_string).collect()),
        ("error", text) => Err(text.to_string()),
        ("", _) => Err("the pod's shim closed the connection without an answer".into()),
        _ => Err(format!("unexpected answer {answer:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let args = ["shim", "--sandbox", "s1", "--socket", "/run/x.sock"];
        let parsed = parse(args.iter().map(OsString::from).collect());
        assert!(
            parsed
                .as_ref()
                .is_ok_and(|a| a.sandbox == "s1" && a.socket == Path::new("/run/x.sock"))
        );
        assert!(parse(vec![OsString::from("--bogus")]).is_err());
        assert!(parse(vec![OsString::from("--sandbox"), OsString::from("x")]).is_err());
    }

    #[test]
    fn requests_are_one_json_line() {
        let shutdown = serde_json::to_string(&Request::Shutdown).unwrap_or_default();
        assert_eq!(shutdown, "\"shutdown\"");
        let start = Request::Start(StartRequest {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime: "runc".into(),
            root: "/r".into(),
            log: None,
            attach: "/a.sock".into(),
            stdin: true,
            stdin_once: false,
            tty: false,
            kill_all_on_exit: false,
        });
        let text = serde_json::to_string(&start).unwrap_or_default();
        assert!(text.starts_with("{\"start\":{\"id\":\"c1\"") && !text.contains('\n'));
        let back: Result<Request, _> = serde_json::from_str(&text);
        assert!(
            matches!(back, Ok(Request::Start(s)) if s.stdin && s.attach == Path::new("/a.sock"))
        );
    }
}
