//! The shim's single-threaded loop: `poll(2)` over the control socket, a signalfd for SIGCHLD
//! and every container's descriptors.
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::task::{Slot, Task};
use super::{Request, StartRequest};

/// How long a shutdown waits for killed containers to be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Size of the scratch buffer every read goes through.
const READ_CHUNK: usize = 32 * 1024;

#[derive(Debug, Clone, Copy)]
enum Token {
    Control,
    Signals,
    Task(usize, Slot),
}

/// The pod's monitor.
pub(super) struct Monitor {
    control: UnixListener,
    socket: PathBuf,
    signals: SignalFd,
    tasks: Vec<Task>,
    buf: Vec<u8>,
    shutdown_at: Option<Instant>,
    /// Drop the pages setup or a control request touched before the next sleep (see
    /// [`crate::resident`]).
    release_pages: bool,
}

impl Monitor {
    /// Blocks SIGCHLD into a signalfd and binds the control socket at `socket`.
    pub fn new(socket: &Path) -> Result<Monitor, String> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let _ = std::fs::remove_file(socket);
        let control = UnixListener::bind(socket)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("binding {}: {e}", socket.display()))?;
        Ok(Monitor {
            control,
            socket: socket.to_path_buf(),
            signals,
            tasks: Vec::new(),
            buf: vec![0; READ_CHUNK],
            shutdown_at: None,
            release_pages: true,
        })
    }

    /// Serves until a shutdown request (and its grace) is over.
    pub fn run(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        loop {
            if let Some(at) = self.shutdown_at
                && (self.tasks.is_empty() || at.elapsed() >= SHUTDOWN_GRACE)
            {
                break;
            }
            fds.clear();
            tokens.clear();
            let mut add = |fd: RawFd, events: libc::c_short, token: Token| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                tokens.push(token);
            };
            if self.shutdown_at.is_none() {
                add(self.control.as_raw_fd(), libc::POLLIN, Token::Control);
            }
            add(
                self.signals.as_fd().as_raw_fd(),
                libc::POLLIN,
                Token::Signals,
            );
            for (t, task) in self.tasks.iter().enumerate() {
                task.interests(|fd, events, slot| add(fd, events, Token::Task(t, slot)));
            }
            let timeout =
                if self.shutdown_at.is_some() || self.tasks.iter().any(Task::has_stuck_client) {
                    1000
                } else {
                    -1
                };
            if std::mem::take(&mut self.release_pages) {
                // Last before sleeping: whatever runs after it maps its pages back.
                crate::resident::release_clean_file_pages();
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    eprintln!("podway shim: poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            for (pfd, token) in fds.iter().zip(tokens.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *token {
                    Token::Control => self.accept_control(),
                    Token::Signals => self.reap(),
                    Token::Task(t, slot) => self.tasks[t].ready(slot, &mut self.buf),
                }
            }
            self.settle();
        }
        for task in &self.tasks {
            task.abandon();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Drops gone clients; records and forgets the containers that exited and are drained.
    fn settle(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.tasks.len() {
            self.tasks[i].sweep(now);
            if self.tasks[i].done() {
                self.tasks.swap_remove(i).finish();
            } else {
                i += 1;
            }
        }
    }

    /// Answers the control connections waiting (one request each).
    fn accept_control(&mut self) {
        while let Ok((conn, _)) = self.control.accept() {
            self.answer(&conn);
        }
        // Starting a container ran code the loop does not need again (runc, JSON).
        self.release_pages = true;
    }

    fn answer(&mut self, conn: &UnixStream) {
        use std::io::Write;
        let reply = match super::read_request(conn) {
            Ok(Request::Start(req)) => match self.start(&req) {
                Ok((pid, started_at)) => format!("ok {pid} {started_at}\n"),
                // The runtime's message names the container already.
                Err(e) => format!("error {}\n", e.replace('\n', " ")),
            },
            Ok(Request::Shutdown) => {
                for task in &self.tasks {
                    task.kill();
                }
                self.shutdown_at = Some(Instant::now());
                "ok\n".to_string()
            }
            Err(e) => format!("error {}\n", e.replace('\n', " ")),
        };
        let mut conn = conn;
        let _ = conn.write_all(reply.as_bytes());
    }

    fn start(&mut self, req: &StartRequest) -> Result<(i32, i64), String> {
        if self.tasks.iter().any(|t| t.id == req.id) {
            return Err("it already runs in this shim".into());
        }
        let (task, started_at) = Task::start(req)?;
        let pid = task.pid;
        self.tasks.push(task);
        Ok((pid, started_at))
    }

    /// Reaps every child that exited: a container's init gives its exit code; runc's own
    /// children and strays reparented to us are just reaped.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("podway shim: waitpid: {e}");
                    return;
                }
            };
            if let Some(task) = self
                .tasks
                .iter_mut()
                .find(|t| t.pid == pid.as_raw() && t.exit.is_none())
            {
                task.exited(code);
            }
        }
    }
}
