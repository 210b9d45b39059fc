//! Starting one container with `RUNC run -d`, its stdio on pipes the shim keeps (or, with a tty,
//! on the terminal whose master runc hands over through a console socket).
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use super::StartRequest;

/// The container's stdio as the shim holds it.
pub(super) struct Io {
    /// Output streams and their CRI stream names (`stdout`, `stderr`).
    pub outputs: Vec<(OwnedFd, &'static str)>,
    /// The write side of the container's stdin (a copy of the terminal with a tty).
    pub stdin: Option<OwnedFd>,
    /// The terminal master, for resizes.
    pub terminal: Option<OwnedFd>,
}

/// Runs `runc run -d`; returns the container's pid and its stdio.
pub(super) fn start(req: &StartRequest) -> Result<(i32, Io), String> {
    let pid_file = req.bundle.join("init.pid");
    let runc_log = req.bundle.join("runc.log");
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&runc_log);
    let mut cmd = Command::new(&req.runtime);
    cmd.arg("--root")
        .arg(&req.root)
        .arg("--log")
        .arg(&runc_log)
        .args(["--log-format", "text", "run", "-d", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(&req.bundle);
    let pipe = |what: &str| std::io::pipe().map_err(|e| format!("{what} pipe: {e}"));
    let (status, io) = if req.tty {
        let console = console_socket_path(&req.attach);
        let _ = std::fs::remove_file(&console);
        let listener = UnixListener::bind(&console)
            .map_err(|e| format!("binding {}: {e}", console.display()))?;
        cmd.arg("--console-socket")
            .arg(&console)
            .arg(&req.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd
            .status()
            .map_err(|e| format!("running {}: {e}", req.runtime.display()));
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
                let master = master?;
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("terminal: {e}"));
                Io {
                    outputs: vec![(dup(&master)?, "stdout")],
                    stdin: if req.stdin { Some(dup(&master)?) } else { None },
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
        let (stdin_w, stdin) = if req.stdin {
            let (r, w) = pipe("stdin")?;
            (Some(OwnedFd::from(w)), Stdio::from(r))
        } else {
            (None, Stdio::null())
        };
        cmd.arg(&req.id).stdin(stdin).stdout(out_w).stderr(err_w);
        let status = cmd
            .status()
            .map_err(|e| format!("running {}: {e}", req.runtime.display()))?;
        let io = Io {
            outputs: vec![(out_r.into(), "stdout"), (err_r.into(), "stderr")],
            stdin: stdin_w,
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
            req.runtime.display()
        ));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("no pid in {}", pid_file.display()))?;
    Ok((pid, io))
}

/// The console socket next to the attach socket (short, for the 108-byte limit).
fn console_socket_path(attach: &Path) -> PathBuf {
    attach.with_extension("console")
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
