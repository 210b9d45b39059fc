//! The writer task: the only place frames are encoded (so header blocks enter our zlib stream in
//! wire order) and written to the socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Role;
use super::outgoing::Outgoing;
use super::state::Shared;
use crate::codec::FrameEncoder;
use crate::frame::{Frame, GoAwayStatus};

/// Bytes gathered before a write is issued.
const BATCH_BYTES: usize = 256 * 1024;
/// Initial capacity of the buffer small frames and DATA headers are encoded into.
const SCRATCH_BYTES: usize = 16 * 1024;
/// How long the final flush after the session ended may take.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Frames waiting to be written, in the two queues the writer serves.
pub(crate) struct Queues {
    pub control: mpsc::UnboundedReceiver<Frame>,
    pub data: mpsc::Receiver<Frame>,
}

impl Queues {
    /// Takes a queued frame without waiting; control frames first.
    fn try_next(&mut self, shared: &Shared) -> Option<Frame> {
        if let Ok(f) = self.control.try_recv() {
            shared.control_taken();
            return Some(f);
        }
        self.data.try_recv().ok()
    }

    /// Waits for the next frame; control frames first. `None` when the session ended.
    async fn next(&mut self, shared: &Shared) -> Option<Frame> {
        tokio::select! {
            biased;
            f = self.control.recv() => {
                if f.is_some() {
                    shared.control_taken();
                }
                f
            }
            f = self.data.recv() => f,
            _ = shared.ended.cancelled() => None,
        }
    }
}

/// Runs until the session ends, then flushes what is queued and shuts the socket down.
pub(crate) async fn run<W>(
    shared: Arc<Shared>,
    mut io: W,
    encoder: Option<FrameEncoder>,
    mut queues: Queues,
) where
    W: AsyncWrite + Unpin,
{
    let Some(mut encoder) = encoder else {
        shared.terminate("header compressor could not be created");
        shared.finished.cancel();
        return;
    };
    let mut buf = Outgoing::new(io.is_write_vectored(), SCRATCH_BYTES);
    // A Go client drops bytes a server sends before the client's first frame.
    let may_write = shared.role == Role::Client
        || tokio::select! {
            // A peer whose first frame was malformed has spoken: it still gets our GOAWAY.
            biased;
            _ = shared.peer_spoke.cancelled() => true,
            _ = shared.ended.cancelled() => false,
        };
    if may_write {
        while let Some(first) = queues.next(&shared).await {
            let mut next = Some(first);
            while let Some(frame) = next {
                if let Err(e) = buf.push(&mut encoder, frame) {
                    tracing::warn!(error = %e, "SPDY frame could not be encoded");
                    shared.fail(GoAwayStatus::InternalError, "frame encoding failed");
                    break;
                }
                next = if buf.len() < BATCH_BYTES {
                    queues.try_next(&shared)
                } else {
                    None
                };
            }
            if let Err(e) = buf.write_to(&mut io).await {
                tracing::debug!(error = %e, "SPDY write failed");
                shared.terminate("write failed");
                break;
            }
            shared.touch();
        }
        // Finish what was queued before the end (e.g. RST and GOAWAY from close()).
        let drain = async {
            while let Some(frame) = queues.try_next(&shared) {
                if buf.push(&mut encoder, frame).is_err() {
                    break;
                }
            }
            buf.write_to(&mut io).await
        };
        if let Ok(Err(e)) = tokio::time::timeout(FINAL_FLUSH, drain).await {
            tracing::debug!(error = %e, "SPDY final flush failed");
        }
    }
    let _ = tokio::time::timeout(FINAL_FLUSH, io.shutdown()).await;
    shared.finished.cancel();
}
