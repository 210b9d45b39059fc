//! The writer's output buffer: encoded frames as a queue of byte chunks. On a transport with
//! vectored writes, large DATA payloads are not copied behind their header but written from the
//! buffer they arrived in; everything else is encoded into one growing scratch buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::codec::FrameEncoder;
use crate::frame::{Frame, FrameError};

/// DATA payloads at least this long are written from their own buffer (when vectored).
const ZERO_COPY_MIN: usize = 4 * 1024;
/// Slices handed to one vectored write (Linux accepts 1,024; a few dozen cover a batch).
const MAX_SLICES: usize = 64;

/// Frames encoded but not yet written.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Sealed chunks, in wire order.
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    chunked: usize,
    /// Small frames and DATA headers being gathered; sealed into `chunks` before a payload.
    scratch: BytesMut,
    /// Whether the transport writes vectors natively (else everything is copied into `scratch`).
    vectored: bool,
}

impl Outgoing {
    /// An empty buffer for a transport that does (`vectored`) or does not write vectors.
    pub fn new(vectored: bool, capacity: usize) -> Self {
        Outgoing {
            chunks: VecDeque::new(),
            chunked: 0,
            scratch: BytesMut::with_capacity(capacity),
            vectored,
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.chunked + self.scratch.len()
    }

    /// Encodes `frame` behind what is already buffered.
    pub fn push(&mut self, encoder: &mut FrameEncoder, frame: Frame) -> Result<(), FrameError> {
        match frame {
            Frame::Data(d) if self.vectored && d.payload.len() >= ZERO_COPY_MIN => {
                d.encode_head(&mut self.scratch)?;
                self.seal();
                self.chunked += d.payload.len();
                self.chunks.push_back(d.payload);
                Ok(())
            }
            other => encoder.encode_ref(&other, &mut self.scratch),
        }
    }

    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            let chunk = self.scratch.split().freeze();
            self.chunked += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Writes everything buffered, then flushes `io`.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        self.seal();
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            let n = io.write_vectored(&slices[..count]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        io.flush().await
    }

    /// Drops `n` written bytes from the front.
    fn advance(&mut self, mut n: usize) {
        self.chunked -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Data;

    /// A sink that accepts at most `step` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                left -= take;
                n += take;
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn frames() -> Vec<Frame> {
        (0..5u8)
            .map(|i| {
                Frame::Data(Data {
                    stream_id: 1 + u32::from(i),
                    fin: i == 4,
                    payload: Bytes::from(vec![i; 100 + 3000 * usize::from(i)]),
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn vectored_and_copied_output_are_the_plain_encoding() {
        let mut expected = BytesMut::new();
        let mut encoder = FrameEncoder::new().unwrap();
        for f in frames() {
            encoder.encode_ref(&f, &mut expected).unwrap();
        }
        for vectored in [true, false] {
            for step in [1, 7, 4096, 1 << 20] {
                let mut encoder = FrameEncoder::new().unwrap();
                let mut out = Outgoing::new(vectored, 1024);
                for f in frames() {
                    out.push(&mut encoder, f).unwrap();
                }
                assert_eq!(out.len(), expected.len());
                let mut sink = Trickle {
                    out: Vec::new(),
                    step,
                    vectored,
                };
                out.write_to(&mut sink).await.unwrap();
                assert_eq!(out.len(), 0);
                assert!(sink.out == expected[..], "vectored {vectored}, step {step}");
            }
        }
    }
}
