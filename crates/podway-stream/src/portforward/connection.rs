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
use std::io;

use spdy::{RecvStream, SendStream, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use crate::io::MAX_CHUNK;

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

/// Client → pod: the data stream into the socket, then a half-close of the socket.
async fn client_to_pod(
    data_r: RecvStream,
    mut tcp_w: OwnedWriteHalf,
    done: oneshot::Sender<()>,
) -> io::Result<u64> {
    let mut from = BufReader::with_capacity(2 * MAX_CHUNK, data_r);
    let r = tokio::io::copy_buf(&mut from, &mut tcp_w).await;
    // Whatever the client still sends (after a failed write to the pod) is discarded by the
    // session, so an unread stream never holds up the others.
    drop(from);
    let _ = tcp_w.shutdown().await;
    let _ = done.send(());
    r
}

/// Pod → client: the socket into the data stream until the pod's EOF. Fails when the data stream
/// can no longer be written: reset by the client, or the session gone.
async fn pod_to_client(
    mut tcp_r: OwnedReadHalf,
    data_w: &mut SendStream,
    mut client_done: oneshot::Receiver<()>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut total = 0u64;
    let mut watching = true;
    loop {
        tokio::select! {
            read = tcp_r.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(total);
                }
                data_w.write_all(&buf[..n]).await?;
                total += n as u64;
            }
            _ = &mut client_done, if watching => {
                watching = false;
                // Reads of the data stream end alike on the client's FIN, its RST_STREAM and the
                // session's end. Only after a FIN can the stream still carry the pod's answer:
                // an empty write succeeds then and fails in the other cases.
                let written = data_w.write(&[]).await?;
                debug_assert_eq!(written, 0);
            }
        }
    }
}
