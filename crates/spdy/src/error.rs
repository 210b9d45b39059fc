//! The session-level [`Error`].

use std::time::Duration;

use crate::frame::{FrameError, RstStatus};

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The session has ended or is closing; no new streams or pings.
    #[error("SPDY session is closed")]
    SessionClosed,
    /// The peer answered SYN_STREAM with RST_STREAM.
    #[error("SPDY stream {stream_id} was refused by the peer with RST_STREAM {status:?}")]
    Refused {
        /// The stream.
        stream_id: u32,
        /// The peer's status code.
        status: RstStatus,
    },
    /// The peer did not send SYN_REPLY in time.
    #[error("SPDY peer sent no SYN_REPLY for stream {stream_id} within {timeout:?}")]
    ReplyTimeout {
        /// The stream.
        stream_id: u32,
        /// The time waited.
        timeout: Duration,
    },
    /// All 2^30 stream ids of this side have been used.
    #[error("SPDY session has used all of its stream ids")]
    StreamIdsExhausted,
    /// The session failed on a frame (for errors surfaced from the codec).
    #[error(transparent)]
    Frame(#[from] FrameError),
}
