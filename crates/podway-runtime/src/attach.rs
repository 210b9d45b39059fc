//! Attaching to a container's main process through its monitor's unix socket
//! (`STATE/attach/<first 16 hex of the id>.sock`).
//!
//! Frames both ways: one kind byte, a big-endian u32 length, the payload. Client ⇒ shim:
//! [`STDIN`] data, [`CLOSE_STDIN`] (honoured only with `stdin_once`), [`RESIZE`] (cols u16, rows u16),
//! [`REOPEN_LOG`]. Shim ⇒ client: [`STDOUT`], [`STDERR`] data, [`REOPEN_DONE`]; the shim closes
//! the socket when the container has exited.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::Inner;
use crate::{ContainerState, Error, ProcessIo, Result, WindowSize};

/// Bytes for the process's stdin.
pub(crate) const STDIN: u8 = 0;
/// The client's stdin ended: the shim closes the process's stdin when it has `stdin_once`.
pub(crate) const CLOSE_STDIN: u8 = 1;
/// A terminal size.
pub(crate) const RESIZE: u8 = 2;
/// Process stdout (or terminal output).
pub(crate) const STDOUT: u8 = 3;
/// Process stderr.
pub(crate) const STDERR: u8 = 4;

/// Reopen the CRI log file at its path (after a log rotation renamed it).
pub(crate) const REOPEN_LOG: u8 = 5;
/// The answer to [`REOPEN_LOG`]: empty on success, otherwise the error text.
pub(crate) const REOPEN_DONE: u8 = 6;

/// How long the shim may take to answer [`REOPEN_LOG`].
const REOPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest payload accepted in one frame.
pub(crate) const MAX_FRAME: usize = 1 << 20;

/// Encodes one frame.
pub(crate) fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(kind);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// The payload length a frame head announces, `None` when it exceeds [`MAX_FRAME`].
fn payload_len(head: &[u8; 5]) -> Option<usize> {
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    (len <= MAX_FRAME).then_some(len)
}

/// A frame head announcing more than [`MAX_FRAME`] bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Oversized;

/// A frame found in a buffer: kind, payload, bytes it takes.
pub(crate) type Frame<'a> = (u8, &'a [u8], usize);

/// The first frame of `buf`, `Ok(None)` while incomplete.
pub(crate) fn split_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, Oversized> {
    let Some(head) = buf.first_chunk::<5>() else {
        return Ok(None);
    };
    let len = payload_len(head).ok_or(Oversized)?;
    Ok(buf
        .get(5..5 + len)
        .map(|payload| (head[0], payload, 5 + len)))
}

/// Reads one frame from the monitor's socket.
async fn read_frame_from(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let len = payload_len(&head)
        .ok_or_else(|| std::io::Error::other("oversized frame from the container's monitor"))?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok((head[0], payload))
}

/// The attach socket of container `id`.
pub(crate) fn socket_path(state_dir: &Path, id: &str) -> PathBuf {
    let short = id.get(..16).unwrap_or(id);
    state_dir.join("attach").join(format!("{short}.sock"))
}

/// Attaches `io` to container `id`; returns when the process ends or the client goes away.
pub(crate) async fn attach(inner: &Arc<Inner>, id: &str, io: ProcessIo) -> Result<()> {
    let info = running_container(inner, id)?;
    if io.stdin.is_some() && !info.spec.stdin {
        return Err(Error::InvalidArgument(format!(
            "container {id} was not created with stdin open; attach without stdin"
        )));
    }
    let path = socket_path(&inner.config.state_dir, id);
    let socket = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| Error::Io {
            context: format!("attaching to container {id} ({})", path.display()),
            source: e,
        })?;
    let (mut from_shim, to_shim) = socket.into_split();
    let to_shim = Arc::new(tokio::sync::Mutex::new(to_shim));

    let mut tasks = AbortOnDrop(Vec::new());
    if let Some(mut stdin) = io.stdin {
        let to_shim = Arc::clone(&to_shim);
        tasks.0.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to_shim
                    .lock()
                    .await
                    .write_all(&frame(STDIN, &buf[..n]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = to_shim
                .lock()
                .await
                .write_all(&frame(CLOSE_STDIN, &[]))
                .await;
        }));
    }
    if let Some(mut resize) = io.resize {
        let to_shim = Arc::clone(&to_shim);
        tasks.0.push(tokio::spawn(async move {
            while let Some(WindowSize { cols, rows }) = resize.recv().await {
                let mut payload = cols.to_be_bytes().to_vec();
                payload.extend_from_slice(&rows.to_be_bytes());
                if to_shim
                    .lock()
                    .await
                    .write_all(&frame(RESIZE, &payload))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    let (mut stdout, mut stderr) = (io.stdout, io.stderr);
    while let Ok((kind, payload)) = read_frame_from(&mut from_shim).await {
        let out = match kind {
            STDOUT => stdout.as_mut(),
            STDERR => stderr.as_mut(),
            _ => None,
        };
        if let Some(out) = out
            && (out.write_all(&payload).await.is_err() || out.flush().await.is_err())
        {
            // The client went away.
            break;
        }
    }
    drop(tasks);
    Ok(())
}

/// Container `id`, which must be running (its monitor serves the socket).
fn running_container(inner: &Arc<Inner>, id: &str) -> Result<crate::ContainerInfo> {
    let info = crate::container::get(inner, id)?;
    if info.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is not running"
        )));
    }
    Ok(info)
}

/// Makes container `id`'s monitor reopen its CRI log file (CRI `ReopenContainerLog`).
pub(crate) async fn reopen_log(inner: &Arc<Inner>, id: &str) -> Result<()> {
    running_container(inner, id)?;
    let path = socket_path(&inner.config.state_dir, id);
    let io_error = |e: std::io::Error| Error::Io {
        context: format!("reopening the log of container {id} ({})", path.display()),
        source: e,
    };
    let mut socket = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(io_error)?;
    socket
        .write_all(&frame(REOPEN_LOG, &[]))
        .await
        .map_err(io_error)?;
    // Output frames go to every connection of the monitor, this one too: skip them.
    let answer = async {
        loop {
            let (kind, payload) = read_frame_from(&mut socket).await?;
            if kind == REOPEN_DONE {
                return Ok(payload);
            }
        }
    };
    let payload = tokio::time::timeout(REOPEN_TIMEOUT, answer)
        .await
        .map_err(|_| io_error(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io_error)?;
    if payload.is_empty() {
        Ok(())
    } else {
        Err(Error::Command(format!(
            "reopening the log of container {id}: {}",
            String::from_utf8_lossy(&payload)
        )))
    }
}

/// The session's input tasks, stopped when the session ends or its future is dropped (so the
/// shim sees the client go away).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut bytes = frame(STDIN, b"hello");
        bytes.extend(frame(CLOSE_STDIN, b""));
        assert_eq!(split_frame(&bytes), Ok(Some((STDIN, &b"hello"[..], 10))));
        assert_eq!(
            split_frame(&bytes[10..]),
            Ok(Some((CLOSE_STDIN, &b""[..], 5)))
        );
        assert_eq!(split_frame(&bytes[..9]), Ok(None));
        assert_eq!(
            split_frame(&[STDIN, 0xff, 0xff, 0xff, 0xff]),
            Err(Oversized)
        );
    }

    #[test]
    fn short_socket_names() {
        let id = "a".repeat(64);
        let p = socket_path(Path::new("/run/podway"), &id);
        assert_eq!(p, Path::new("/run/podway/attach/aaaaaaaaaaaaaaaa.sock"));
    }
}
