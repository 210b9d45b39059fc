//! Small I/O adapters shared by the sessions: channel-backed readers and writers and a guard
//! that tells the session when every output writer is gone.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Largest payload put in one outgoing message (kubectl's own chunk size).
pub(crate) const MAX_CHUNK: usize = 32 * 1024;

/// Reads the byte chunks sent on an mpsc channel; EOF once every sender is dropped.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl ChannelReader {
    /// A reader over `rx`.
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            pending: Bytes::new(),
        }
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(chunk) => self.pending = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Dropped together with the writer that holds it; [`DoneWaiter::wait`] returns once all are gone.
#[derive(Clone)]
pub(crate) struct DoneGuard(#[allow(dead_code)] mpsc::Sender<()>);

/// Waits for every [`DoneGuard`] cloned from its pair to be dropped.
pub(crate) struct DoneWaiter(mpsc::Receiver<()>);

/// A guard/waiter pair.
pub(crate) fn done_pair() -> (DoneGuard, DoneWaiter) {
    let (tx, rx) = mpsc::channel(1);
    (DoneGuard(tx), DoneWaiter(rx))
}

impl DoneWaiter {
    /// Resolves when every guard has been dropped.
    pub(crate) async fn wait(mut self) {
        while self.0.recv().await.is_some() {}
    }
}

/// Writes into an mpsc channel as `(channel, chunk)` items; shutdown or drop ends the channel.
pub(crate) struct ChannelWriter {
    tx: PollSender<(u8, Bytes)>,
    channel: u8,
}

impl ChannelWriter {
    /// A writer that tags every chunk with `channel`.
    pub(crate) fn new(tx: mpsc::Sender<(u8, Bytes)>, channel: u8) -> Self {
        ChannelWriter {
            tx: PollSender::new(tx),
            channel,
        }
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the streaming connection is closed",
    )
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.tx.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = buf.len().min(MAX_CHUNK);
        let channel = self.channel;
        self.tx
            .send_item((channel, Bytes::copy_from_slice(&buf[..n])))
            .map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// Wraps a writer so that the session knows when it is dropped.
pub(crate) struct GuardedWriter<W> {
    inner: W,
    _guard: DoneGuard,
}

impl<W> GuardedWriter<W> {
    /// `inner`, holding `guard` until dropped.
    pub(crate) fn new(inner: W, guard: DoneGuard) -> Self {
        GuardedWriter {
            inner,
            _guard: guard,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GuardedWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
