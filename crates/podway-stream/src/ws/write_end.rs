//! A connection whose write side can be ended (TCP FIN) from outside the WebSocket layer, while
//! its read side stays open.
//!
//! After its last message and the close frame, a server must let the client see the end of the
//! connection: some clients (the official Python client over TLS) only notice the close frame
//! when the socket becomes readable again, which a FIN does. Closing the whole socket instead
//! could answer late client input with a reset that discards output the client has not read yet,
//! so the read side stays open until the client closes.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An I/O object that shuts its write side down on the first flush after [`WriteEnd::request`].
pub struct EndableWrite<T> {
    inner: T,
    requested: Arc<AtomicBool>,
    ended: bool,
}

/// Asks an [`EndableWrite`] to end its write side at its next flush.
#[derive(Clone)]
pub struct WriteEnd(Arc<AtomicBool>);

impl WriteEnd {
    /// Requests the shutdown; the owner's next flush performs it.
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<T> EndableWrite<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        EndableWrite {
            inner,
            requested: Arc::new(AtomicBool::new(false)),
            ended: false,
        }
    }

    /// A handle that requests the end of the write side.
    pub fn write_end(&self) -> WriteEnd {
        WriteEnd(self.requested.clone())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EndableWrite<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EndableWrite<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        if !self.ended && self.requested.load(Ordering::Acquire) {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.ended = true;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn flush_after_request_ends_only_the_write_side() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = EndableWrite::new(ours);
        let end = io.write_end();
        io.write_all(b"last words").await.unwrap();
        io.flush().await.unwrap();
        end.request();
        io.flush().await.unwrap();
        let mut seen = Vec::new();
        theirs.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"last words");
        // The other direction still works.
        theirs.write_all(b"late").await.unwrap();
        let mut late = [0u8; 4];
        io.read_exact(&mut late).await.unwrap();
        assert_eq!(&late, b"late");
    }
}
