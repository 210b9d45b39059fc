//! Processes in running containers: the fast path ([`crate::nsexec`]) or `runc exec` when it
//! does not apply, and the capture buffers of `exec_sync`.
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::api::Inner;
use crate::util::io_ctx;
use crate::{ContainerState, Error, ExecSyncOutput, ProcessIo, Result, WindowSize};

/// Most bytes kept per stream by `exec_sync`.
pub(crate) const EXEC_SYNC_CAP: usize = 16 * 1024 * 1024;

/// How long output is still read after a timed-out process was killed.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// Temporary files of one exec (`STATE/exec/<random>.{json,pid}`), removed on drop; dropped
/// before [`ExecFiles::finished`] (the caller went away), it kills the exec'd process too.
pub(crate) struct ExecFiles {
    /// The process JSON.
    pub process: PathBuf,
    /// runc's pid file.
    pub pid: PathBuf,
    /// runc's log (its errors).
    pub log: PathBuf,
    finished: bool,
}

impl ExecFiles {
    pub(crate) fn new(state_dir: &Path) -> Result<ExecFiles> {
        let dir = state_dir.join("exec");
        crate::util::create_dir_all(&dir)?;
        let name = crate::util::new_id();
        Ok(ExecFiles {
            process: dir.join(format!("{name}.json")),
            pid: dir.join(format!("{name}.pid")),
            log: dir.join(format!("{name}.log")),
            finished: false,
        })
    }

    /// runc's global options for this exec: its log.
    pub(crate) fn log_args(&self) -> [&std::ffi::OsStr; 4] {
        [
            std::ffi::OsStr::new("--log"),
            self.log.as_os_str(),
            std::ffi::OsStr::new("--log-format"),
            std::ffi::OsStr::new("text"),
        ]
    }

    /// The error runc logged if the process never started (no pid file), after it exited.
    pub(crate) fn start_error(&self) -> Option<String> {
        if self.pid.exists() {
            return None;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Some(crate::oci_runtime::last_error(&log)).filter(|m| !m.is_empty())
    }

    /// Marks the process as gone (runc exec returned).
    pub(crate) fn finished(&mut self) {
        self.finished = true;
    }

    /// Kills the exec'd process (its pid from runc's pid file), if it started.
    fn kill(&self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
        }
        let _ = std::fs::remove_file(&self.process);
        let _ = std::fs::remove_file(&self.pid);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The container's process settings (env, cwd, user, capabilities) with `cmd` as arguments.
pub(crate) fn process_json(
    inner: &Inner,
    id: &str,
    cmd: Vec<String>,
    terminal: bool,
    console_size: Option<WindowSize>,
) -> Result<Vec<u8>> {
    let config = inner.container_dir(id).join("config.json");
    let spec = oci_spec::runtime::Spec::load(&config)
        .map_err(|e| Error::Command(format!("reading {}: {e}", config.display())))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Command(format!("container {id} has no process in config.json")))?;
    process.set_args(Some(cmd));
    if terminal {
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|kv| kv.starts_with("TERM=")) {
            env.push("TERM=xterm".to_string());
            process.set_env(Some(env));
        }
    }
    process.set_terminal(Some(terminal));
    // runc sizes the container's terminal before the process starts (its later copy from our
    // terminal races with the process reading its size).
    if let Some(size) = console_size {
        let console = oci_spec::runtime::BoxBuilder::default()
            .height(u32::from(size.rows))
            .width(u32::from(size.cols))
            .build()
            .map_err(|e| Error::Command(format!("console size for container {id}: {e}")))?;
        process.set_console_size(Some(console));
    }
    serde_json::to_vec(&process)
        .map_err(|e| Error::Command(format!("encoding the exec process of container {id}: {e}")))
}

/// Runs `cmd` in container `id` with `io`; returns the exit code (-1 when `timeout` killed it).
/// The fast path ([`crate::nsexec`]) starts the process itself; `runc exec` runs it otherwise.
pub(crate) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    cmd: Vec<String>,
    tty: bool,
    io: ProcessIo,
    timeout: Option<Duration>,
) -> Result<i32> {
    let info = crate::container::get(inner, id)?;
    if info.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is not running"
        )));
    }
    if cmd.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "exec in container {id}: empty command"
        )));
    }
    if let Some(prepared) = crate::nsexec::prepare(inner, id, &cmd, tty) {
        return exec_fast(prepared, id, &cmd, io, timeout).await;
    }
    if tty {
        return crate::tty::exec(inner, id, cmd, io).await;
    }
    exec_runc(inner, id, cmd, io, timeout).await
}

/// The fast path: the process started by the runtime in the container's namespaces.
async fn exec_fast(
    prepared: crate::nsexec::Prepared,
    id: &str,
    cmd: &[String],
    io: ProcessIo,
    timeout: Option<Duration>,
) -> Result<i32> {
    let mut io = io;
    // A terminal process must not start at 0x0: wait for the client's first size.
    if let Some(resize) = io.resize.as_mut()
        && let Some(size) = crate::tty::first_size(resize).await
    {
        prepared
            .set_size(size)
            .map_err(io_ctx(format!("exec in container {id}: terminal size")))?;
    }
    let pipes = (io.stdin.is_some(), io.stdout.is_some(), io.stderr.is_some());
    let (mut child, terminal) = prepared.spawn(id, cmd, pipes).await?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let kill_child = move || {
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    };
    let mut resizer = None;
    let streams = match terminal {
        Some(terminal) => {
            if let Some(mut resize) = io.resize.take() {
                let master = terminal.master;
                resizer = Some(tokio::spawn(async move {
                    while let Some(size) = resize.recv().await {
                        if let Err(e) = crate::tty::set_size(master.as_raw_fd(), size) {
                            tracing::debug!(error = %e, "resizing the terminal");
                        }
                    }
                }));
            }
            Streams {
                stdin: Some(Box::new(terminal.input)),
                stdout: Some(Box::new(terminal.output)),
                stderr: None,
            }
        }
        None => Streams {
            stdin: child.stdin.take().map(|s| Box::new(s) as _),
            stdout: child.stdout.take().map(|s| Box::new(s) as _),
            stderr: child.stderr.take().map(|s| Box::new(s) as _),
        },
    };
    let status = drive(child.wait(), streams, io, timeout, &kill_child).await;
    if let Some(task) = resizer {
        task.abort();
    }
    let status = status.map_err(io_ctx(format!("exec in container {id}: waiting")))?;
    Ok(status.map_or(-1, exit_code))
}

/// The process's side of its streams, as the runtime reads and writes them.
struct Streams {
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
}

/// Copies between the client's `io` and the process's `streams` until the process has exited
/// and its output ended; `None` when `timeout` expired and `kill` was called.
async fn drive(
    wait: impl Future<Output = std::io::Result<std::process::ExitStatus>>,
    streams: Streams,
    io: ProcessIo,
    timeout: Option<Duration>,
    kill: &(dyn Fn() + Sync),
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let stdin_pump = match (io.stdin, streams.stdin) {
        (Some(mut src), Some(mut dst)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut src, &mut dst).await;
            let _ = dst.shutdown().await;
        })),
        _ => None,
    };
    let stdout = pump(streams.stdout, io.stdout);
    let stderr = pump(streams.stderr, io.stderr);
    let run = async {
        let (_, _, status) = tokio::join!(stdout, stderr, wait);
        status
    };
    tokio::pin!(run);
    let status = match timeout {
        None => run.await.map(Some),
        Some(limit) => tokio::select! {
            status = &mut run => status.map(Some),
            () = tokio::time::sleep(limit) => {
                kill();
                // Children of the killed process may hold its output open: give up on them
                // after a moment.
                let _ = tokio::time::timeout(DRAIN_AFTER_KILL, &mut run).await;
                Ok(None)
            }
        },
    };
    if let Some(pump) = stdin_pump {
        pump.abort();
    }
    status
}

/// `runc exec` with pipes.
async fn exec_runc(
    inner: &Arc<Inner>,
    id: &str,
    cmd: Vec<String>,
    io: ProcessIo,
    timeout: Option<Duration>,
) -> Result<i32> {
    let mut files = ExecFiles::new(&inner.config.state_dir)?;
    crate::util::write_atomic(&files.process, &process_json(inner, id, cmd, false, None)?)?;
    let stdio = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut child = crate::oci_runtime::command(&inner.config.oci_runtime, &inner.runc_root())
        .args(files.log_args())
        .arg("exec")
        .arg("--process")
        .arg(&files.process)
        .arg("--pid-file")
        .arg(&files.pid)
        .arg(id)
        .stdin(stdio(io.stdin.is_some()))
        .stdout(stdio(io.stdout.is_some()))
        .stderr(stdio(io.stderr.is_some()))
        .kill_on_drop(true)
        .spawn()
        .map_err(io_ctx(format!("exec in container {id}: running runc")))?;
    let streams = Streams {
        stdin: child.stdin.take().map(|s| Box::new(s) as _),
        stdout: child.stdout.take().map(|s| Box::new(s) as _),
        stderr: child.stderr.take().map(|s| Box::new(s) as _),
    };
    // On timeout the exec'd process is killed (its pid from runc's pid file); runc then exits.
    let status = drive(child.wait(), streams, io, timeout, &|| files.kill()).await;
    files.finished();
    let status = status.map_err(io_ctx(format!("exec in container {id}: waiting for runc")))?;
    let Some(status) = status else {
        return Ok(-1);
    };
    if !status.success()
        && let Some(message) = files.start_error()
    {
        return Err(Error::Command(format!(
            "exec in container {id} failed: {message}"
        )));
    }
    Ok(exit_code(status))
}

/// The exit code of a process status (128 + signal when killed).
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies a child's output into the client's writer until EOF.
async fn pump(
    from: Option<Box<dyn AsyncRead + Send + Unpin>>,
    to: Option<Box<dyn AsyncWrite + Send + Unpin>>,
) {
    if let (Some(mut from), Some(mut to)) = (from, to) {
        if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
            tracing::debug!(error = %e, "exec output stream ended");
        }
        let _ = to.flush().await;
    }
}

/// Runs `cmd` and captures its output (each stream capped at 16 MiB).
pub(crate) async fn exec_sync(
    inner: &Arc<Inner>,
    id: &str,
    cmd: Vec<String>,
    timeout: Option<Duration>,
) -> Result<ExecSyncOutput> {
    let stdout = Capture::default();
    let stderr = Capture::default();
    let io = ProcessIo {
        stdout: Some(Box::new(stdout.clone())),
        stderr: Some(Box::new(stderr.clone())),
        ..ProcessIo::default()
    };
    let exit_code = exec(inner, id, cmd, false, io, timeout).await?;
    Ok(ExecSyncOutput {
        stdout: stdout.take(),
        stderr: stderr.take(),
        exit_code,
    })
}

/// A shared buffer that keeps the first [`EXEC_SYNC_CAP`] bytes written and drops the rest.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn take(&self) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut v = match self.0.lock() {
            Ok(v) => v,
            Err(p) => p.into_inner(),
        };
        let room = EXEC_SYNC_CAP.saturating_sub(v.len());
        v.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
