//! One container of the pod's shim: its output (CRI log records and attach clients), its stdin,
//! its attach socket, its exit. Every descriptor is non-blocking; the monitor polls them.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{EXIT_FILE, ExitRecord, StartRequest};
use crate::attach;
use crate::cri_log::{Lines, record};

/// Bytes queued for one attach client (or the container's stdin) above which the shim stops
/// reading what feeds it.
pub(super) const BACKLOG: usize = 256 * 1024;

/// How long an attach client may hold the container's output back before it is dropped.
const STUCK_LIMIT: Duration = Duration::from_secs(10);

/// How long a finished container's clients get to take their last output.
const LAST_WRITE: Duration = Duration::from_secs(2);

/// What a descriptor of a task is, for the poll loop.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// Output stream `i`.
    Output(usize),
    /// The container's stdin.
    Stdin,
    /// The attach listener.
    Listener,
    /// Attach client `i`.
    Client(usize),
}

struct Output {
    fd: File,
    stream: &'static str,
    kind: u8,
    lines: Lines,
    open: bool,
}

struct Stdin {
    fd: File,
    queued: Vec<u8>,
    close_when_flushed: bool,
}

struct Client {
    conn: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    used_stdin: bool,
    open: bool,
    stuck_since: Option<Instant>,
}

/// A running (or draining) container.
pub(super) struct Task {
    /// Container id.
    pub id: String,
    /// Pid of its init process.
    pub pid: i32,
    /// Its exit, once reaped.
    pub exit: Option<ExitRecord>,
    bundle: PathBuf,
    outputs: Vec<Output>,
    stdin: Option<Stdin>,
    terminal: Option<OwnedFd>,
    stdin_once: bool,
    tty: bool,
    log: Option<File>,
    log_path: Option<PathBuf>,
    listener: Option<UnixListener>,
    attach_path: PathBuf,
    clients: Vec<Client>,
    /// The OCI runtime and its root, when what the main process leaves is killed at its exit.
    kill_all_on_exit: Option<(PathBuf, PathBuf)>,
}

impl Task {
    /// Binds the attach socket, opens the log and runs the container.
    pub fn start(req: &StartRequest) -> Result<(Task, i64), String> {
        let listener = listen(&req.attach)?;
        let started = super::runc::start(req).and_then(|(pid, io)| {
            let file = |fd: OwnedFd| -> Result<File, String> {
                crate::util::set_nonblocking(fd.as_fd())
                    .map_err(|e| format!("container stdio: {e}"))?;
                Ok(File::from(fd))
            };
            let mut outputs = Vec::new();
            for (fd, stream) in io.outputs {
                outputs.push(Output {
                    fd: file(fd)?,
                    stream,
                    kind: if stream == "stderr" {
                        attach::STDERR
                    } else {
                        attach::STDOUT
                    },
                    lines: Lines::default(),
                    open: true,
                });
            }
            let stdin = io.stdin.map(file).transpose()?.map(|fd| Stdin {
                fd,
                queued: Vec::new(),
                close_when_flushed: false,
            });
            Ok((pid, outputs, stdin, io.terminal))
        });
        let (pid, outputs, stdin, terminal) = match started {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&req.attach);
                return Err(e);
            }
        };
        let started_at = crate::util::now_nanos();
        let task = Task {
            id: req.id.clone(),
            pid,
            exit: None,
            bundle: req.bundle.clone(),
            outputs,
            stdin,
            terminal,
            stdin_once: req.stdin_once,
            tty: req.tty,
            log: req.log.as_deref().and_then(open_log),
            log_path: req.log.clone(),
            listener: Some(listener),
            attach_path: req.attach.clone(),
            clients: Vec::new(),
            kill_all_on_exit: req
                .kill_all_on_exit
                .then(|| (req.runtime.clone(), req.root.clone())),
        };
        Ok((task, started_at))
    }

    /// The descriptors to poll and for what, with their slots.
    pub fn interests(&self, mut add: impl FnMut(RawFd, libc::c_short, Slot)) {
        let clients_keep_up = self
            .clients
            .iter()
            .all(|c| !c.open || c.outbuf.len() < BACKLOG);
        if clients_keep_up {
            for (i, out) in self.outputs.iter().enumerate() {
                if out.open {
                    add(out.fd.as_raw_fd(), libc::POLLIN, Slot::Output(i));
                }
            }
        }
        let stdin_keeps_up = match &self.stdin {
            Some(s) if !s.queued.is_empty() => {
                add(s.fd.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
                s.queued.len() < BACKLOG
            }
            _ => true,
        };
        if let Some(l) = &self.listener {
            add(l.as_raw_fd(), libc::POLLIN, Slot::Listener);
        }
        for (i, c) in self.clients.iter().enumerate().filter(|(_, c)| c.open) {
            let mut events = 0;
            if stdin_keeps_up {
                events |= libc::POLLIN;
            }
            if !c.outbuf.is_empty() {
                events |= libc::POLLOUT;
            }
            add(c.conn.as_raw_fd(), events, Slot::Client(i));
        }
    }

    /// Handles readiness of `slot`; `buf` is the monitor's scratch buffer.
    pub fn ready(&mut self, slot: Slot, buf: &mut [u8]) {
        match slot {
            Slot::Output(i) => self.read_output(i, buf),
            Slot::Stdin => self.flush_stdin(),
            Slot::Listener => self.accept(),
            Slot::Client(i) => {
                flush_client(&mut self.clients[i]);
                self.read_client(i, buf);
            }
        }
    }

    /// Whether an attach client holds the output back (the monitor then wakes up each second).
    pub fn has_stuck_client(&self) -> bool {
        self.clients.iter().any(|c| c.stuck_since.is_some())
    }

    /// Its init process was reaped with `exit_code`.
    pub fn exited(&mut self, exit_code: i32) {
        self.exit = Some(ExitRecord {
            exit_code,
            finished_at: crate::util::now_nanos(),
        });
        if let Some((runtime, root)) = &self.kill_all_on_exit
            && let Err(e) = crate::oci_runtime::kill_all(runtime, root, &self.id)
        {
            eprintln!("podway shim: container {}: {e}", self.id);
        }
        if self.tty {
            // The terminal gives EIO once the container's side is closed; nothing to write now.
            self.stdin = None;
        }
    }

    /// Drops clients that went away or are stuck, honouring `stdin_once` for those that used stdin.
    pub fn sweep(&mut self, now: Instant) {
        let mut closed_stdin_user = false;
        self.clients.retain(|c| {
            let stuck = c
                .stuck_since
                .is_some_and(|t| now.duration_since(t) >= STUCK_LIMIT);
            let keep = c.open && !stuck;
            closed_stdin_user |= !keep && c.used_stdin;
            keep
        });
        if closed_stdin_user {
            self.close_stdin_once();
        }
    }

    /// Whether it exited and its output is drained.
    pub fn done(&self) -> bool {
        self.exit.is_some() && self.outputs.iter().all(|o| !o.open)
    }

    /// Kills its init process (shutdown of the shim).
    pub fn kill(&self) {
        if self.exit.is_none() {
            // SAFETY: kill(2) with a plain pid and signal; the pid is our unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// After [`Task::done`]: gives clients their last output, closes the attach socket and
    /// records the exit.
    pub fn finish(self) {
        for mut c in self.clients {
            if c.open && !c.outbuf.is_empty() {
                let _ = c
                    .conn
                    .set_nonblocking(false)
                    .and_then(|()| c.conn.set_write_timeout(Some(LAST_WRITE)))
                    .and_then(|()| c.conn.write_all(&c.outbuf));
                c.outbuf.clear();
            }
        }
        let _ = std::fs::remove_file(&self.attach_path);
        let record = self.exit.unwrap_or(ExitRecord {
            exit_code: 255,
            finished_at: crate::util::now_nanos(),
        });
        if let Err(e) = crate::util::write_json(&self.bundle.join(EXIT_FILE), &record) {
            eprintln!("podway shim: container {}: {e}", self.id);
        }
    }

    /// Removes its attach socket without recording anything (the shim gives up on it).
    pub fn abandon(&self) {
        let _ = std::fs::remove_file(&self.attach_path);
    }

    fn read_output(&mut self, i: usize, buf: &mut [u8]) {
        let Task {
            id,
            outputs,
            log,
            clients,
            ..
        } = self;
        let out = &mut outputs[i];
        let n = match out.fd.read(buf) {
            Ok(n) => n,
            Err(e) if try_again_later(&e) => return,
            // EIO: the end of a terminal.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => 0,
            Err(e) => {
                eprintln!("podway shim: container {id}: reading {}: {e}", out.stream);
                0
            }
        };
        let stream = out.stream;
        let mut write = |tag: &str, content: &[u8]| {
            if let Some(log) = log.as_mut() {
                record(log, stream, tag, content);
            }
        };
        if n == 0 {
            out.open = false;
            out.lines.finish(write);
            return;
        }
        let chunk = &buf[..n];
        out.lines.push(chunk, &mut write);
        if clients.iter().any(|c| c.open) {
            let frame = attach::frame(out.kind, chunk);
            for c in clients.iter_mut().filter(|c| c.open) {
                c.outbuf.extend_from_slice(&frame);
                flush_client(c);
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((conn, _)) = listener.accept() {
            if conn.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    conn,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    used_stdin: false,
                    open: true,
                    stuck_since: None,
                });
            }
        }
    }

    fn read_client(&mut self, i: usize, buf: &mut [u8]) {
        let c = &mut self.clients[i];
        if !c.open {
            return;
        }
        match c.conn.read(buf) {
            Ok(0) => {
                c.open = false;
                return;
            }
            Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
            Err(e) if try_again_later(&e) => return,
            Err(_) => {
                c.open = false;
                return;
            }
        }
        let mut inbuf = std::mem::take(&mut c.inbuf);
        let mut used = 0;
        loop {
            match attach::split_frame(&inbuf[used..]) {
                Ok(Some((kind, payload, len))) => {
                    self.frame_from(i, kind, payload);
                    used += len;
                }
                Ok(None) => break,
                Err(attach::Oversized) => {
                    self.clients[i].open = false;
                    return;
                }
            }
        }
        inbuf.drain(..used);
        self.clients[i].inbuf = inbuf;
    }

    /// One frame from attach client `i`.
    ///
    /// CRI semantics: the end of a client's stdin (a [`attach::CLOSE_STDIN`] frame, or the
    /// client going away after it wrote stdin) closes the container's stdin only when it was
    /// created with `stdin_once`; otherwise the container keeps its stdin for the next attach.
    fn frame_from(&mut self, i: usize, kind: u8, payload: &[u8]) {
        match kind {
            attach::STDIN => {
                self.clients[i].used_stdin = true;
                if let Some(stdin) = self.stdin.as_mut().filter(|s| !s.close_when_flushed) {
                    stdin.queued.extend_from_slice(payload);
                    self.flush_stdin();
                }
            }
            attach::CLOSE_STDIN => {
                self.clients[i].used_stdin = true;
                self.close_stdin_once();
            }
            attach::REOPEN_LOG => {
                let answer = match self.reopen_log() {
                    Ok(()) => Vec::new(),
                    Err(e) => e.into_bytes(),
                };
                let c = &mut self.clients[i];
                c.outbuf
                    .extend_from_slice(&attach::frame(attach::REOPEN_DONE, &answer));
                flush_client(c);
            }
            attach::RESIZE if payload.len() == 4 => {
                if let Some(term) = &self.terminal {
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

    /// Writes what is queued for the container's stdin; closes it when asked to and flushed.
    fn flush_stdin(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        let mut failed = false;
        while !stdin.queued.is_empty() {
            match stdin.fd.write(&stdin.queued) {
                Ok(n) => {
                    stdin.queued.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed || (stdin.close_when_flushed && stdin.queued.is_empty()) {
            self.stdin = None;
        }
    }

    /// Closes the container's stdin (once what is queued is written) if it was created with
    /// `stdin_once` (pipes only: a terminal stays open for output).
    fn close_stdin_once(&mut self) {
        if self.stdin_once && !self.tty {
            if let Some(stdin) = self.stdin.as_mut() {
                stdin.close_when_flushed = true;
            }
            self.flush_stdin();
        }
    }

    /// Opens the log file again at its path; later records go there.
    fn reopen_log(&mut self) -> Result<(), String> {
        let Some(path) = &self.log_path else {
            return Err("the container has no log file".into());
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        self.log = Some(file);
        Ok(())
    }
}

/// Writes what is queued for a client as far as it takes it; tracks whether it is stuck.
fn flush_client(c: &mut Client) {
    while c.open && !c.outbuf.is_empty() {
        match c.conn.write(&c.outbuf) {
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => c.open = false,
        }
    }
    if c.outbuf.len() < BACKLOG {
        c.stuck_since = None;
    } else if c.stuck_since.is_none() {
        c.stuck_since = Some(Instant::now());
    }
}

/// Binds the attach socket (non-blocking).
fn listen(path: &std::path::Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    if let Err(e) = listener.set_nonblocking(true) {
        let _ = std::fs::remove_file(path);
        return Err(format!("binding {}: {e}", path.display()));
    }
    Ok(listener)
}

/// Opens the CRI log file for appending (its folder made first).
fn open_log(path: &std::path::Path) -> Option<File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| eprintln!("podway shim: opening log {}: {e}", path.display()))
        .ok()
}

/// Whether a non-blocking read found nothing yet (or was interrupted): the loop polls again.
fn try_again_later(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}
