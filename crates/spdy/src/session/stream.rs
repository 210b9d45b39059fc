//! Stream handles: [`Stream`] and its halves [`RecvStream`] and [`SendStream`].

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::PollSender;

use super::state::Shared;
use crate::frame::{Data, Frame, RstStatus};
use crate::headers::Headers;

/// Largest DATA payload we send; larger writes are split.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Size of the buffers written bytes are copied into (allocated on the first write).
const ARENA: usize = 128 * 1024;
/// Buffers a stream keeps for its writes (bounds its copy memory to `ARENAS * ARENA`).
const ARENAS: usize = 4;

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
                arenas: Arenas::default(),
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

    /// See [`RecvStream::read_chunks`].
    pub async fn read_chunks(&mut self, max: usize, out: &mut Vec<Bytes>) -> io::Result<usize> {
        self.recv.read_chunks(max, out).await
    }

    /// See [`RecvStream::end`].
    pub fn end(&self) -> Option<StreamEnd> {
        self.recv.end()
    }

    /// See [`SendStream::send_bytes`].
    pub async fn send_bytes(&mut self, data: Bytes) -> io::Result<()> {
        self.send.send_bytes(data).await
    }
}

/// How the peer's side of a stream ended, as [`RecvStream::end`] reports it. Reads end with EOF
/// in every case (as spdystream does); this tells a half-close from an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The peer half-closed with FIN: it sends nothing more but may still read.
    Finished,
    /// The peer aborted the stream with RST_STREAM.
    ResetByPeer(RstStatus),
    /// We reset the stream (locally, or for a protocol or flow-control violation).
    ResetLocally,
    /// The session ended before the peer finished the stream.
    SessionEnded,
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

    /// How the peer's side ended, once reads have reached (or are about to reach) EOF; `None`
    /// while the peer may still send.
    pub fn end(&self) -> Option<StreamEnd> {
        let st = self.shared.lock();
        let Some(entry) = st.streams.get(&self.id) else {
            return Some(StreamEnd::SessionEnded);
        };
        if entry.fin_received {
            Some(StreamEnd::Finished)
        } else if let Some(status) = entry.reset_by_peer {
            Some(StreamEnd::ResetByPeer(status))
        } else if entry.reset_locally {
            Some(StreamEnd::ResetLocally)
        } else if entry.remote_done {
            Some(StreamEnd::SessionEnded)
        } else {
            None
        }
    }

    /// Waits for received bytes and moves up to `max` (at least 1) of them, as the chunks they
    /// arrived in, onto `out` without copying; returns how many bytes were added, 0 at the end
    /// of the stream. For relays that hand the bytes on (a vectored socket write, or
    /// [`SendStream::send_bytes`]).
    pub async fn read_chunks(&mut self, max: usize, out: &mut Vec<Bytes>) -> io::Result<usize> {
        let max = max.max(1);
        let mut added = 0;
        poll_fn(|cx| {
            self.poll_take(cx, |queue| {
                while added < max {
                    let Some(front) = queue.front_mut() else {
                        break;
                    };
                    let chunk = if front.len() <= max - added {
                        queue.pop_front().unwrap_or_default()
                    } else {
                        front.split_to(max - added)
                    };
                    added += chunk.len();
                    out.push(chunk);
                }
                added
            })
        })
        .await?;
        Ok(added)
    }

    /// Waits for buffered bytes (or the end), lets `take` remove some from the queue (it returns
    /// how many), and returns the consumed bytes to the peer's window.
    fn poll_take(
        &self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut VecDeque<Bytes>) -> usize,
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
        let taken = take(&mut entry.recv_buf);
        entry.buffered -= taken;
        let threshold = self.shared.update_threshold();
        let updates = st.consumed(self.id, taken, threshold);
        let ended = st.ended;
        drop(st);
        if !ended {
            for update in updates {
                self.shared.send_control(update);
            }
        }
        self.shared.space.notify_waiters();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_take(cx, |queue| {
            let mut copied = 0;
            while buf.remaining() > 0 {
                let Some(front) = queue.front_mut() else {
                    break;
                };
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front[..n]);
                front.advance(n);
                copied += n;
                if front.is_empty() {
                    queue.pop_front();
                }
            }
            copied
        })
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
    arenas: Arenas,
}

/// Where `poll_write` copies the caller's bytes: a buffer filled in turn and, once full, set
/// aside until the frames cut from it have been written, then reused. A steady writer whose
/// frames wait in the writer's queue needs several (up to [`ARENAS`]); reusing them rather than
/// allocating per buffer saves the page faults of fresh memory, a large part of the copy's cost.
#[derive(Debug, Default)]
struct Arenas {
    current: BytesMut,
    /// Full buffers, oldest first; some of their frames may still be queued.
    spent: VecDeque<BytesMut>,
}

impl Arenas {
    /// Copies `bytes` into an arena and returns them as a frame payload.
    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.current.capacity() - self.current.len() < bytes.len() {
            let want = ARENA.max(bytes.len());
            // Pushed even when exactly full (zero capacity left): it still owns its buffer.
            self.spent.push_back(std::mem::take(&mut self.current));
            let reusable = self.spent.iter_mut().position(|b| b.try_reclaim(want));
            self.current = match reusable {
                Some(i) => self.spent.remove(i).unwrap_or_default(),
                None => BytesMut::with_capacity(want),
            };
            // Bounded: the oldest buffer goes (its frames keep it alive until written).
            while self.spent.len() >= ARENAS {
                self.spent.pop_front();
            }
        }
        self.current.extend_from_slice(bytes);
        self.current.split().freeze()
    }
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

    /// Sends `data` as DATA frames of at most [`MAX_DATA_CHUNK`] bytes without copying it;
    /// returns once all of it is queued (waiting for window and queue space as writes do).
    pub async fn send_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_capacity(cx, data.len())).await?;
            let chunk = data.split_to(n);
            self.send_data(chunk)?;
        }
        Ok(())
    }

    /// Waits until some of a `want`-byte write (1 ≤ want) may be sent: the stream is writable,
    /// the windows allow it and a place in the data queue is reserved. Returns how many bytes
    /// (at most [`MAX_DATA_CHUNK`]), already deducted from the windows; the caller must send
    /// exactly that many with [`SendStream::send_data`].
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let want = want.min(MAX_DATA_CHUNK);
        loop {
            // Checked before reserving, so a stream without window holds no queue place.
            ready!(self.shared.poll_send_window(self.id, cx, want))?;
            if ready!(self.tx.poll_reserve(cx)).is_err() {
                return Poll::Ready(Err(self.closed_channel()));
            }
            // Other streams may have spent the session window meanwhile: take what is left.
            match self.shared.take_send_window(self.id, want) {
                Some(n) => return Poll::Ready(Ok(n)),
                None => {
                    self.tx.abort_send();
                }
            }
        }
    }

    /// Queues one DATA frame into the place reserved by [`SendStream::poll_capacity`].
    fn send_data(&mut self, payload: Bytes) -> io::Result<()> {
        let frame = Frame::Data(Data {
            stream_id: self.id,
            fin: false,
            payload,
        });
        self.tx.send_item(frame).map_err(|_| self.closed_channel())
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
        if buf.is_empty() {
            return Poll::Ready(match self.shared.write_error(self.id) {
                Some(e) => Err(e),
                None => Ok(0),
            });
        }
        let n = ready!(self.poll_capacity(cx, buf.len()))?;
        let payload = self.arenas.copy(&buf[..n]);
        self.send_data(payload)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.finished || self.shared.write_error(self.id).is_some() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_reused_once_their_frames_are_gone_even_when_filled_exactly() {
        let mut arenas = Arenas::default();
        let chunk = vec![7u8; ARENA / 4];
        // Fill the first arena exactly, keeping its frames alive.
        let first: Vec<Bytes> = (0..4).map(|_| arenas.copy(&chunk)).collect();
        let first_ptr = first[0].as_ptr();
        // The next write needs a new arena: the first is still referenced.
        let second = arenas.copy(&chunk);
        assert_ne!(second.as_ptr(), first_ptr);
        drop(first);
        for _ in 0..3 {
            drop(arenas.copy(&chunk));
        }
        // The second arena is full now; the first, released, is taken again.
        let again = arenas.copy(&chunk);
        assert_eq!(again.as_ptr(), first_ptr);
        assert!(arenas.spent.len() < ARENAS);
    }
}
