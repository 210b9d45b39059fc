//! RST_STREAM: aborts a stream.

use bytes::{Buf, BufMut, BytesMut};

use super::{FrameError, expect_len, get_stream_id, kind, nonzero_stream, put_control_head};

/// RST_STREAM status codes (SPDY/3 §2.6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RstStatus {
    /// Generic protocol violation.
    ProtocolError = 1,
    /// Frame for a stream that is not active.
    InvalidStream = 2,
    /// The stream was refused before any processing.
    RefusedStream = 3,
    /// Unsupported SPDY version.
    UnsupportedVersion = 4,
    /// The stream is no longer needed (Kubernetes' normal end of a stream).
    Cancel = 5,
    /// Internal failure of the sender.
    InternalError = 6,
    /// Flow-control window violated.
    FlowControlError = 7,
    /// SYN_REPLY for an already open stream.
    StreamInUse = 8,
    /// Data or SYN_REPLY for a half-closed stream.
    StreamAlreadyClosed = 9,
    /// Credentials rejected.
    InvalidCredentials = 10,
    /// A frame was too large to process.
    FrameTooLarge = 11,
}

impl RstStatus {
    /// The status for a wire value; 0 and unknown values have none.
    pub fn from_u32(value: u32) -> Option<Self> {
        use RstStatus::*;
        Some(match value {
            1 => ProtocolError,
            2 => InvalidStream,
            3 => RefusedStream,
            4 => UnsupportedVersion,
            5 => Cancel,
            6 => InternalError,
            7 => FlowControlError,
            8 => StreamInUse,
            9 => StreamAlreadyClosed,
            10 => InvalidCredentials,
            11 => FrameTooLarge,
            _ => return None,
        })
    }
}

/// A RST_STREAM frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstStream {
    /// The stream being reset.
    pub stream_id: u32,
    /// Why.
    pub status: RstStatus,
}

impl RstStream {
    /// Decodes the payload after the frame header.
    pub fn decode(mut payload: &[u8]) -> Result<Self, FrameError> {
        expect_len("RST_STREAM", payload, 8)?;
        let stream_id = nonzero_stream("RST_STREAM", get_stream_id(&mut payload))?;
        let status = RstStatus::from_u32(payload.get_u32()).ok_or(FrameError::Invalid {
            frame: "RST_STREAM",
            reason: "unknown status code",
        })?;
        Ok(RstStream { stream_id, status })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_control_head(dst, kind::RST_STREAM, 0, 8);
        dst.put_u32(self.stream_id & super::MAX_STREAM_ID);
        dst.put_u32(self.status as u32);
    }
}
