//! One forwarded SPDY connection: the copies between the data stream and the pod's socket.
//!
//! Each direction ends on its own, as TCP's half-close does (no grace timer cutting the other):
//! - the client's FIN on the data stream half-closes the pod socket's write side, and the pod's
//!   answer still flows back;
//! - the pod's EOF sends FIN on the data stream and then closes the error stream, since nothing is
//!   left to report that the client waits for (client-go waits for the error stream's end before
//!   it closes the local socket); the client may keep sending.
//!
//! A reset of the data stream (client-go resets it when its local side fails) or the end of the
//! session aborts both directions, so no pod connection outlives its stream.
//!
//! Bytes are not copied in user space: received DATA payloads go to the socket as they arrived
//! (vectored writes), and socket reads become DATA payloads as they are.
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use spdy::{RecvStream, SendStream, Stream, StreamEnd};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// Bytes taken from the data stream per socket write.
const WRITE_BATCH: usize = 256 * 1024;
/// Buffer offered to each socket read.
const READ_CHUNK: usize = 64 * 1024;
/// Slices handed to one vectored write.
const MAX_SLICES: usize = 64;

/// Copies between `tcp` and `data` until both directions have ended, closing `error` once the
/// pod's side has ended.
pub(super) async fn forward(port: u16, tcp: TcpStream, data: Stream, mut error: Stream) {
    let (tcp_r, tcp_w) = tcp.into_split();
    let (data_r, mut data_w) = data.into_split();
    let (client_done_tx, client_done) = oneshot::channel();
    let up = client_to_pod(data_r, tcp_w, client_done_tx);
    let down = async {
        let r = pod_to_client(tcp_r, &mut data_w, client_done).await;
        if r.is_ok() {
            let _ = data_w.shutdown().await;
        }
        // Dropped unfinished on error: a reset, behind the data already written.
        drop(data_w);
        let _ = error.shutdown().await;
        r
    };
    let (up, down) = tokio::join!(up, down);
    tracing::debug!(port, ?up, ?down, "port-forward connection ended");
}

/// Client → pod: the data stream into the socket, then a half-close of the socket. Tells the
/// other direction how the client's side ended.
async fn client_to_pod(
    mut data_r: RecvStream,
    mut tcp_w: OwnedWriteHalf,
    done: oneshot::Sender<Option<StreamEnd>>,
) -> io::Result<u64> {
    let mut chunks = Vec::new();
    let mut total = 0u64;
    let r = loop {
        match data_r.read_chunks(WRITE_BATCH, &mut chunks).await {
            Ok(0) => break Ok(total),
            Ok(n) => {
                if let Err(e) = write_chunks(&mut tcp_w, &mut chunks).await {
                    break Err(e);
                }
                total += n as u64;
            }
            Err(e) => break Err(e),
        }
    };
    let end = data_r.end();
    // Whatever the client still sends (after a failed write to the pod) is discarded by the
    // session, so an unread stream never holds up the others.
    drop(data_r);
    let _ = tcp_w.shutdown().await;
    let _ = done.send(end);
    r
}

/// Writes all of `chunks` to `w` (vectored) and empties it.
async fn write_chunks<W: AsyncWrite + Unpin>(w: &mut W, chunks: &mut Vec<Bytes>) -> io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(&chunks[first..]) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        let mut n = w.write_vectored(&slices[..count]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let chunk = &mut chunks[first];
            let step = n.min(chunk.len());
            chunk.advance(step);
            n -= step;
            if chunk.is_empty() {
                first += 1;
            }
        }
    }
    chunks.clear();
    Ok(())
}

/// Pod → client: the socket into the data stream until the pod's EOF. Fails when the data stream
/// can no longer be written: reset by the client, or the session gone.
async fn pod_to_client(
    tcp_r: OwnedReadHalf,
    data_w: &mut SendStream,
    mut client_done: oneshot::Receiver<Option<StreamEnd>>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut watching = true;
    loop {
        tokio::select! {
            ready = tcp_r.readable() => {
                ready?;
                // A buffer per read, allocated only once there is something to read: an idle
                // connection holds none, and each read is handed on as it is.
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                match tcp_r.try_read_buf(&mut buf) {
                    Ok(0) => return Ok(total),
                    Ok(n) => {
                        data_w.send_bytes(buf.freeze()).await?;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            end = &mut client_done, if watching => {
                watching = false;
                // After the client's RST_STREAM or the session's end the stream cannot carry
                // the pod's answer: this direction is over too. After its FIN (or a failed
                // write to the pod) the answer still flows.
                if let Ok(Some(
                    end @ (StreamEnd::ResetByPeer(_)
                    | StreamEnd::ResetLocally
                    | StreamEnd::SessionEnded),
                )) = end
                {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("the client's data stream ended: {end:?}"),
                    ));
                }
            }
        }
    }
}
