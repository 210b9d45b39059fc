//! Exec on a terminal. runc only hands the pty master to a console socket when it detaches
//! (and then its exit status is lost), so we give `runc exec --tty` a terminal of our own as its
//! stdio, as a terminal user would: runc sets it raw and relays between it and the container's
//! pty, and copies its window size on SIGWINCH, which the kernel sends to runc (session leader on
//! that terminal) when we set the size with `TIOCSWINSZ` on our master.
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;

use nix::pty::openpty;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::Inner;
use crate::util::io_ctx;
use crate::{ProcessIo, Result, WindowSize};

/// Runs `cmd` in container `id` on a new terminal; returns its exit code.
pub(crate) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    cmd: Vec<String>,
    io: ProcessIo,
) -> Result<i32> {
    let context = || format!("exec in container {id}: terminal");
    let mut io = io;
    // The process must not start on a 0x0 terminal: wait for the client's first size (SPDY
    // clients send it just after the streams are set up, a few milliseconds after the start
    // request), then give it to runc as the console size and to our own terminal.
    let initial = match io.resize.as_mut() {
        Some(resize) => first_size(resize).await,
        None => None,
    };
    let winsize = initial.map(|size| libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let mut files = crate::exec::ExecFiles::new(&inner.config.state_dir)?;
    crate::util::write_atomic(
        &files.process,
        &crate::exec::process_json(inner, id, cmd, true, initial)?,
    )?;
    let pty = openpty(winsize.as_ref(), None).map_err(|e| io_ctx(context())(e.into()))?;
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(io_ctx(context()));
    let mut command = crate::oci_runtime::command(&inner.config.oci_runtime, &inner.runc_root());
    command
        .args(files.log_args())
        .arg("exec")
        .arg("--tty")
        .arg("--process")
        .arg(&files.process)
        .arg("--pid-file")
        .arg(&files.pid)
        .arg(id)
        .stdin(stdio(&pty.slave)?)
        .stdout(stdio(&pty.slave)?)
        .stderr(stdio(&pty.slave)?)
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(io_ctx(format!("exec in container {id}: running runc")))?;
    // Only runc keeps the terminal's slave side open now, so the master reads EIO once it exits.
    drop(command);
    drop(pty.slave);
    let master = pty.master;
    crate::util::set_nonblocking(master.as_fd()).map_err(io_ctx(context()))?;
    // SAFETY: `master` is an open descriptor owned by the AsyncFd for its whole life.
    let master = unsafe { AsyncFd::register(master) }.map_err(|e| io_ctx(context())(e.into()))?;
    let master = Arc::new(master);

    let mut side_tasks = Vec::new();
    if let Some(mut resize) = io.resize {
        let master = Arc::clone(&master);
        side_tasks.push(tokio::spawn(async move {
            while let Some(size) = resize.recv().await {
                if let Err(e) = set_size(master.get_ref().as_raw_fd(), size) {
                    tracing::debug!(error = %e, "resizing the terminal");
                }
            }
        }));
    }
    if let Some(stdin) = io.stdin {
        let master = Arc::clone(&master);
        side_tasks.push(tokio::spawn(async move { copy_in(stdin, &master).await }));
    }
    let output = copy_out(&master, io.stdout);
    let (_, status) = tokio::join!(output, child.wait());
    files.finished();
    for task in side_tasks {
        task.abort();
    }
    let status = status.map_err(io_ctx(format!("exec in container {id}: waiting for runc")))?;
    if !status.success()
        && let Some(message) = files.start_error()
    {
        return Err(crate::Error::Command(format!(
            "exec in container {id} failed: {message}"
        )));
    }
    Ok(crate::exec::exit_code(status))
}

/// How long a terminal exec waits for the client's first window size before starting anyway.
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The client's first window size, if it arrives within [`FIRST_SIZE_WAIT`].
pub(crate) async fn first_size(
    resize: &mut tokio::sync::mpsc::Receiver<WindowSize>,
) -> Option<WindowSize> {
    tokio::time::timeout(FIRST_SIZE_WAIT, resize.recv())
        .await
        .ok()
        .flatten()
}

/// Sets the terminal's window size.
pub(crate) fn set_size(fd: RawFd, size: WindowSize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives across the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Terminal output to the client until the terminal closes (EIO once the process is gone).
async fn copy_out(master: &AsyncFd<OwnedFd>, to: Option<Box<dyn AsyncWrite + Send + Unpin>>) {
    let mut to = to;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let Ok(mut guard) = master.readable().await else {
            break;
        };
        match guard
            .try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if let Some(w) = to.as_mut()
                    && w.write_all(&buf[..n]).await.and(w.flush().await).is_err()
                {
                    to = None;
                }
            }
            Err(_would_block) => continue,
        }
    }
}

/// Client input to the terminal until the client's EOF.
async fn copy_in(mut from: Box<dyn AsyncRead + Send + Unpin>, master: &AsyncFd<OwnedFd>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let Ok(mut guard) = master.writable().await else {
                return;
            };
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(Ok(written)) => data = &data[written..],
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}
