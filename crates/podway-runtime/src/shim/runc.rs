//! `podway shim`: the container monitor (one per container for now).
//!
//! `podway shim --id ID --bundle DIR --runtime RUNC --root RUNC_ROOT [--log FILE]
//! [--attach SOCK] [--stdin] [--stdin-once] [--tty]` forks; the parent exits at once and the
//! child (new session, child subreaper) runs `RUNC run -d` with the container's stdio on pipes
//! it owns (or, with `--tty`, on a terminal whose master runc hands over through a console
//! socket), reports `ok PID SHIM_PID STARTED_AT_NANOS\n` (or `error TEXT\n`) on its stdout,
//! writes the output as CRI log records to FILE, serves attach clients on SOCK
//! (framed stdin, resize and output), waits for the container's exit and records it in `DIR/exit.json`
//! once the output is drained.
use std::ffi::OsString;
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, setsid};

use crate::attach;

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

#[derive(Debug)]
struct Args {
    id: String,
    bundle: PathBuf,
    runtime: PathBuf,
    root: PathBuf,
    log: Option<PathBuf>,
    attach: Option<PathBuf>,
    stdin: bool,
    stdin_once: bool,
    tty: bool,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let (mut id, mut bundle, mut runtime, mut root, mut log, mut attach) =
        (None, None, None, None, None, None);
    let (mut stdin, mut stdin_once, mut tty) = (false, false, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let slot = match arg.to_str() {
            Some("shim") => continue,
            Some("--stdin") => {
                stdin = true;
                continue;
            }
            Some("--stdin-once") => {
                stdin_once = true;
                continue;
            }
            Some("--tty") => {
                tty = true;
                continue;
            }
            Some("--id") => &mut id,
            Some("--bundle") => &mut bundle,
            Some("--runtime") => &mut runtime,
            Some("--root") => &mut root,
            Some("--log") => &mut log,
            Some("--attach") => &mut attach,
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
        attach: attach.map(PathBuf::from),
        stdin,
        stdin_once,
        tty,
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

/// The container's stdio as the shim holds it.
struct Io {
    /// Output streams and their CRI stream names.
    outputs: Vec<(Box<dyn std::io::Read + Send>, &'static str)>,
    /// The write side of the container's stdin (the terminal with a tty).
    stdin: Option<Box<dyn Write + Send>>,
    /// The terminal master, for resizes.
    terminal: Option<Arc<OwnedFd>>,
}

/// What attach clients share.
struct Shared {
    clients: Mutex<Vec<UnixStream>>,
    /// The CRI log file being written (swapped by [`attach::REOPEN_LOG`]) and its path.
    log: Arc<Mutex<Box<dyn Write + Send>>>,
    log_path: Option<PathBuf>,
    stdin: Mutex<Option<Box<dyn Write + Send>>>,
    terminal: Option<Arc<OwnedFd>>,
    stdin_once: bool,
    tty: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn monitor(args: &Args) -> i32 {
    let started = setsid()
        .map_err(|e| format!("setsid: {e}"))
        .and_then(|_| set_subreaper())
        .and_then(|()| listen(args))
        .and_then(|listener| start(args).map(|(pid, io)| (listener, pid, io)));
    let (listener, pid, io) = match started {
        Ok(v) => v,
        Err(e) => {
            if let Some(sock) = &args.attach {
                let _ = std::fs::remove_file(sock);
            }
            report(&format!("error {}\n", e.replace('\n', " ")));
            return 1;
        }
    };
    let started_at = crate::util::now_nanos();
    report(&format!("ok {pid} {} {started_at}\n", std::process::id()));

    let shared = Arc::new(Shared {
        clients: Mutex::new(Vec::new()),
        log: Arc::new(Mutex::new(open_log(args.log.as_deref()))),
        log_path: args.log.clone(),
        stdin: Mutex::new(io.stdin),
        terminal: io.terminal,
        stdin_once: args.stdin_once,
        tty: args.tty,
    });
    if let Some(listener) = listener {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || serve(&listener, &shared));
    }
    let sink = Arc::clone(&shared.log);
    let pumps: Vec<_> = io
        .outputs
        .into_iter()
        .map(|(reader, stream)| {
            let sink = Arc::clone(&sink);
            let shared = Arc::clone(&shared);
            let kind = if stream == "stderr" {
                attach::STDERR
            } else {
                attach::STDOUT
            };
            std::thread::spawn(move || {
                crate::cri_log::copy_to_log(reader, stream, &*sink, |chunk| {
                    broadcast(&shared, kind, chunk);
                });
            })
        })
        .collect();
    let exit_code = wait_for(pid);
    let finished_at = crate::util::now_nanos();
    if args.tty {
        // The terminal gives EIO once the container's side is closed; nothing else to drain.
        drop(lock(&shared.stdin).take());
    }
    for pump in pumps {
        let _ = pump.join();
    }
    let record = ExitRecord {
        exit_code,
        finished_at,
    };
    if let Some(sock) = &args.attach {
        let _ = std::fs::remove_file(sock);
    }
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

/// Binds the attach socket, if asked for.
fn listen(args: &Args) -> Result<Option<UnixListener>, String> {
    let Some(path) = &args.attach else {
        return Ok(None);
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
        .map(Some)
        .map_err(|e| format!("binding {}: {e}", path.display()))
}

/// Accepts attach clients; each gets the output from now on and may write stdin and resizes.
fn serve(listener: &UnixListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
        if let Ok(copy) = conn.try_clone() {
            lock(&shared.clients).push(copy);
        }
        let shared = Arc::clone(shared);
        std::thread::spawn(move || client(conn, &shared));
    }
}

/// One attach client's input.
///
/// CRI semantics: the end of a client's stdin (a [`attach::CLOSE_STDIN`] frame, or the client
/// going away after it wrote stdin) closes the container's stdin only when it was created with
/// `stdin_once`; otherwise the container keeps its stdin for the next attach.
fn client(mut conn: UnixStream, shared: &Shared) {
    let mut used_stdin = false;
    while let Some((kind, payload)) = attach::read_frame(&mut conn) {
        match kind {
            attach::STDIN => {
                used_stdin = true;
                let mut stdin = lock(&shared.stdin);
                if let Some(w) = stdin.as_mut()
                    && w.write_all(&payload).and_then(|()| w.flush()).is_err()
                {
                    *stdin = None;
                }
            }
            attach::CLOSE_STDIN => {
                used_stdin = true;
                close_stdin_once(shared);
            }
            attach::REOPEN_LOG => {
                let answer = match reopen_log(shared) {
                    Ok(()) => Vec::new(),
                    Err(e) => e.into_bytes(),
                };
                // Under the clients lock: output frames to this connection must not interleave.
                let _clients = lock(&shared.clients);
                let _ = conn.write_all(&attach::frame(attach::REOPEN_DONE, &answer));
            }
            attach::RESIZE if payload.len() == 4 => {
                if let Some(term) = &shared.terminal {
                    let size = crate::WindowSize {
                        cols: u16::from_be_bytes([payload[0], payload[1]]),
                        rows: u16::from_be_bytes([payload[2], payload[3]]),
                    };
                    let _ = crate::tty::set_size(term.as_raw_fd(), size);
                }
            }
            _ => {}
        }
    }
    if used_stdin {
        close_stdin_once(shared);
    }
}

/// Closes the container's stdin if it was created with `stdin_once` (pipes only: a terminal
/// stays open for output).
fn close_stdin_once(shared: &Shared) {
    if shared.stdin_once && !shared.tty {
        drop(lock(&shared.stdin).take());
    }
}

/// Sends output to every attach client, dropping those that fail.
fn broadcast(shared: &Shared, kind: u8, chunk: &[u8]) {
    let mut clients = lock(&shared.clients);
    if clients.is_empty() {
        return;
    }
    let frame = attach::frame(kind, chunk);
    clients.retain_mut(|c| c.write_all(&frame).is_ok());
}

/// Opens the log file again at its path and writes every later record there; the output
/// threads take the same lock per record, so no record is split between the files.
fn reopen_log(shared: &Shared) -> Result<(), String> {
    let Some(path) = &shared.log_path else {
        return Err("the container has no log file".into());
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut log = lock(&shared.log);
    let _ = log.flush();
    *log = Box::new(file);
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

/// Runs `runc run -d`; returns the container pid and its stdio.
fn start(args: &Args) -> Result<(i32, Io), String> {
    let pid_file = args.bundle.join("init.pid");
    let runc_log = args.bundle.join("runc.log");
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&runc_log);
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.root)
        .arg("--log")
        .arg(&runc_log)
        .args(["--log-format", "text", "run", "-d", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(&args.bundle);
    let pipe = |what: &str| std::io::pipe().map_err(|e| format!("{what} pipe: {e}"));
    let (status, io) = if args.tty {
        let console = console_socket_path(args)?;
        let _ = std::fs::remove_file(&console);
        let listener = UnixListener::bind(&console)
            .map_err(|e| format!("binding {}: {e}", console.display()))?;
        cmd.arg("--console-socket")
            .arg(&console)
            .arg(&args.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd
            .status()
            .map_err(|e| format!("running {}: {e}", args.runtime.display()));
        // runc sent the master before it exited (the socket buffers it until we accept).
        let master = status.as_ref().ok().filter(|s| s.success()).map(|_| {
            listener
                .set_nonblocking(true)
                .and_then(|()| listener.accept())
                .and_then(|(conn, _)| receive_fd(&conn))
                .map_err(|e| format!("receiving the terminal from runc: {e}"))
        });
        let _ = std::fs::remove_file(&console);
        let status = status?;
        let io = match master {
            Some(master) => {
                let master = Arc::new(master?);
                let dup = |fd: &OwnedFd| {
                    fd.try_clone()
                        .map(std::fs::File::from)
                        .map_err(|e| format!("terminal: {e}"))
                };
                Io {
                    outputs: vec![(Box::new(dup(&master)?), "stdout")],
                    stdin: if args.stdin {
                        Some(Box::new(dup(&master)?))
                    } else {
                        None
                    },
                    terminal: Some(master),
                }
            }
            None => Io {
                outputs: Vec::new(),
                stdin: None,
                terminal: None,
            },
        };
        (status, io)
    } else {
        let (out_r, out_w) = pipe("stdout")?;
        let (err_r, err_w) = pipe("stderr")?;
        let (stdin_w, stdin) = if args.stdin {
            let (r, w) = pipe("stdin")?;
            (Some(w), Stdio::from(r))
        } else {
            (None, Stdio::null())
        };
        cmd.arg(&args.id).stdin(stdin).stdout(out_w).stderr(err_w);
        let status = cmd
            .status()
            .map_err(|e| format!("running {}: {e}", args.runtime.display()))?;
        let io = Io {
            outputs: vec![(Box::new(out_r), "stdout"), (Box::new(err_r), "stderr")],
            stdin: stdin_w.map(|w| Box::new(w) as Box<dyn Write + Send>),
            terminal: None,
        };
        (status, io)
    };
    // `cmd` held our copies of the container's ends of the pipes.
    drop(cmd);
    if !status.success() {
        let log = std::fs::read_to_string(&runc_log).unwrap_or_default();
        let last = crate::oci_runtime::last_error(&log);
        return Err(format!(
            "{} run failed ({status}): {last}",
            args.runtime.display()
        ));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("no pid in {}", pid_file.display()))?;
    Ok((pid, io))
}

/// The console socket next to the attach socket (short, for the 108-byte limit).
fn console_socket_path(args: &Args) -> Result<PathBuf, String> {
    let attach = args.attach.as_ref().ok_or("--tty needs --attach")?;
    Ok(attach.with_extension("console"))
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn receive_fd(conn: &UnixStream) -> std::io::Result<OwnedFd> {
    conn.set_nonblocking(false)?;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; we own it now.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(std::io::Error::other("runc sent no terminal descriptor"))
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
            "--tty",
        ];
        let parsed = parse(args.iter().map(OsString::from).collect());
        assert!(
            parsed
                .as_ref()
                .is_ok_and(|a| a.id == "c1" && a.log.is_none() && a.tty && !a.stdin)
        );
        assert!(parse(vec![OsString::from("--bogus")]).is_err());
        assert!(parse(vec![OsString::from("--id"), OsString::from("x")]).is_err());
    }
}
