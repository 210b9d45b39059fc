//! Exec on a terminal: `runc exec --console-socket SOCK` hands us the pty master over
//! SCM_RIGHTS; we pump it to the client and apply window-size changes with `TIOCSWINSZ`.
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::api::Inner;
use crate::util::io_ctx;
use crate::{Error, ProcessIo, Result, WindowSize};

/// Runs `cmd` in container `id` on a new terminal; returns its exit code.
pub(crate) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    cmd: Vec<String>,
    io: ProcessIo,
) -> Result<i32> {
    let files = crate::exec::ExecFiles::new(&inner.config.state_dir)?;
    crate::util::write_atomic(
        &files.process,
        &crate::exec::process_json(inner, id, cmd, true)?,
    )?;
    let listener = UnixListener::bind(&files.socket)
        .map_err(io_ctx(format!("exec in container {id}: console socket")))?;
    let mut child = crate::oci_runtime::command(&inner.config.oci_runtime, &inner.runc_root())
        .arg("exec")
        .arg("--process")
        .arg(&files.process)
        .arg("--pid-file")
        .arg(&files.pid)
        .arg("--console-socket")
        .arg(&files.socket)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_ctx(format!("exec in container {id}: running runc")))?;
    let mut runc_stderr = child.stderr.take();
    let conn = tokio::select! {
        conn = listener.accept() => conn.map_err(io_ctx(format!("exec in container {id}: console socket")))?.0,
        status = child.wait() => {
            let mut text = String::new();
            if let Some(err) = runc_stderr.as_mut() {
                let _ = err.read_to_string(&mut text).await;
            }
            let status = status.map_err(io_ctx(format!("exec in container {id}: waiting for runc")))?;
            return Err(Error::Command(format!(
                "exec in container {id} failed ({status}): {}",
                text.trim()
            )));
        }
    };
    let conn = conn
        .into_std()
        .map_err(io_ctx(format!("exec in container {id}: console socket")))?;
    let master = tokio::task::spawn_blocking(move || receive_fd(&conn))
        .await
        .map_err(|e| Error::Command(format!("exec in container {id}: {e}")))?
        .map_err(io_ctx(format!(
            "exec in container {id}: receiving the terminal"
        )))?;
    set_nonblocking(&master).map_err(io_ctx(format!("exec in container {id}: terminal")))?;
    // SAFETY: `master` is an open descriptor owned by the AsyncFd for its whole life.
    let master = unsafe { AsyncFd::register(master) }
        .map_err(|e| io_ctx(format!("exec in container {id}: terminal"))(e.into()))?;
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
    for task in side_tasks {
        task.abort();
    }
    let status = status.map_err(io_ctx(format!("exec in container {id}: waiting for runc")))?;
    Ok(crate::exec::exit_code(status))
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn receive_fd(conn: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    conn.set_nonblocking(false)?;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; we own it now.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("runc sent no terminal descriptor"))
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
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
                if let Some(w) = to.as_mut() {
                    if w.write_all(&buf[..n]).await.and(w.flush().await).is_err() {
                        to = None;
                    }
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
