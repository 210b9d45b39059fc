//! Stream handles: [`Stream`] and its halves [`RecvStream`] and [`SendStream`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::PollSender;

use super::state::Shared;
use crate::frame::{Data, Frame, RstStatus};
use crate::headers::Headers;

/// Largest DATA payload we send; larger writes are split.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

/// A bidirectional SPDY stream.
///
/// Reads end (EOF) after the peer's FIN or RST_STREAM; `poll_shutdown` half-closes with an empty
/// DATA frame carrying FIN. Dropping it without shutdown resets the stream with CANCEL (after
/// the DATA already written).
#[derive(Debug)]
pub struct Stream {
    recv: RecvStream,
    send: SendStream,
    headers: Headers,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32, headers: Headers) -> Self {
        Stream {
            recv: RecvStream {
                shared: shared.clone(),
                id,
            },
            send: SendStream {
                tx: PollSender::new(shared.data_tx.clone()),
                shared,
                id,
                finished: false,
            },
            headers,
        }
    }

    /// The stream id (odd for client-opened, even for server-opened streams).
    pub fn id(&self) -> u32 {
        self.recv.id
    }

    /// The headers of the SYN_STREAM that opened the stream (sent by us or by the peer).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Aborts the stream in both directions with RST_STREAM `status`.
    pub fn reset(self, status: RstStatus) {
        self.send.reset(status);
    }

    /// Splits into independently owned halves; the stream is released once both are dropped.
    pub fn into_split(self) -> (RecvStream, SendStream) {
        (self.recv, self.send)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

/// The receiving half of a stream: bytes from the peer until its FIN or RST_STREAM.
#[derive(Debug)]
pub struct RecvStream {
    shared: Arc<Shared>,
    id: u32,
}

impl RecvStream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let Some(entry) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if entry.recv_buf.is_empty() {
            if entry.remote_done {
                return Poll::Ready(Ok(()));
            }
            entry.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut copied = 0;
        while buf.remaining() > 0 {
            let Some(front) = entry.recv_buf.front_mut() else {
                break;
            };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front.split_to(n));
            copied += n;
            if front.is_empty() {
                entry.recv_buf.pop_front();
            }
        }
        entry.buffered -= copied;
        let threshold = self.shared.update_threshold();
        if let Some(update) = st.consumed(self.id, copied, threshold)
            && !st.ended
        {
            self.shared.send_control(update);
        }
        drop(st);
        self.shared.space.notify_waiters();
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        self.shared.release(self.id, true, false);
    }
}

/// The sending half of a stream. Writes become DATA frames of at most 32 KiB; shutdown sends
/// FIN. Dropping it without shutdown sends FIN while the [`RecvStream`] is alive, else RST
/// CANCEL — in both cases after the DATA already written.
#[derive(Debug)]
pub struct SendStream {
    shared: Arc<Shared>,
    id: u32,
    tx: PollSender<Frame>,
    finished: bool,
}

impl SendStream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the stream with RST_STREAM `status`; reads on the other half end too.
    pub fn reset(mut self, status: RstStatus) {
        self.finished = true;
        self.shared.reset_stream(self.id, status);
    }

    /// Why writing is impossible, if it is.
    fn write_error(&self) -> Option<io::Error> {
        let st = self.shared.lock();
        let msg = match st.streams.get(&self.id) {
            _ if st.ended => "SPDY session closed",
            None => "SPDY stream released",
            Some(e) if e.reset_by_peer.is_some() => {
                return Some(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("SPDY stream {} was reset by the peer", self.id),
                ));
            }
            Some(e) if e.local_done => "SPDY stream already finished",
            Some(_) => return None,
        };
        Some(io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("{msg}: cannot write to stream {}", self.id),
        ))
    }

    /// How many bytes of a `want`-byte write the peer's window allows now; `None` (with the
    /// waker registered) while a peer that does flow control has left no window.
    fn poll_window(&self, cx: &mut Context<'_>, want: usize) -> Option<usize> {
        let mut st = self.shared.lock();
        let aware = st.peer_flow_control;
        let entry = st.streams.get_mut(&self.id)?;
        if !aware {
            return Some(want);
        }
        if entry.windows.send <= 0 {
            entry.write_waker = Some(cx.waker().clone());
            return None;
        }
        Some(want.min(usize::try_from(entry.windows.send).unwrap_or(usize::MAX)))
    }

    fn closed_channel(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("SPDY session closed: cannot write to stream {}", self.id),
        )
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.write_error() {
            return Poll::Ready(Err(e));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let Some(n) = self.poll_window(cx, buf.len().min(MAX_DATA_CHUNK)) else {
            // Re-checked after registering: a reset or the end may have raced the waker.
            return match self.write_error() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            };
        };
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(self.closed_channel()));
        }
        // Only this handle spends the window, so it has not shrunk since `poll_window`.
        if let Some(entry) = self.shared.lock().streams.get_mut(&self.id) {
            entry.windows.send -= n as i64;
        }
        let frame = Frame::Data(Data {
            stream_id: self.id,
            fin: false,
            payload: Bytes::copy_from_slice(&buf[..n]),
        });
        if self.tx.send_item(frame).is_err() {
            return Poll::Ready(Err(self.closed_channel()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.finished || self.write_error().is_some() {
            // Already finished, reset or gone: nothing left to close.
            self.finished = true;
            return Poll::Ready(Ok(()));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            self.finished = true;
            return Poll::Ready(Ok(()));
        }
        let frame = Frame::Data(Data {
            stream_id: self.id,
            fin: true,
            payload: Bytes::new(),
        });
        let _ = self.tx.send_item(frame);
        self.finished = true;
        if let Some(entry) = self.shared.lock().streams.get_mut(&self.id) {
            entry.local_done = true;
        }
        self.shared.changed.notify_waiters();
        Poll::Ready(Ok(()))
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.finished {
            let mut st = self.shared.lock();
            let ended = st.ended;
            if let Some(entry) = st.streams.get_mut(&self.id)
                && !entry.local_done
            {
                entry.local_done = true;
                // While the receive half lives this is a half-close (FIN), as a reader that drops
                // its unused write side expects; otherwise the stream is abandoned (RST CANCEL).
                // Either goes behind this stream's queued DATA, so nothing written is lost.
                let frame = if entry.recv_handle {
                    Frame::Data(Data {
                        stream_id: self.id,
                        fin: true,
                        payload: Bytes::new(),
                    })
                } else {
                    Frame::RstStream(crate::frame::RstStream {
                        stream_id: self.id,
                        status: RstStatus::Cancel,
                    })
                };
                if !ended {
                    self.shared.send_ordered(frame);
                }
            }
        }
        self.shared.release(self.id, false, true);
    }
}
