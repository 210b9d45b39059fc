//! GOAWAY: the sender is closing the connection.

use bytes::{Buf, BufMut, BytesMut};

use super::{FrameError, expect_len, get_stream_id, kind, put_control_head};

/// GOAWAY status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum GoAwayStatus {
    /// Normal close.
    Ok = 0,
    /// The peer violated the protocol.
    ProtocolError = 1,
    /// The sender failed internally.
    InternalError = 2,
}

/// A GOAWAY frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// Highest peer-created stream id the sender processed.
    pub last_good_stream_id: u32,
    /// Why the connection is closing.
    pub status: GoAwayStatus,
}

impl GoAway {
    /// Decodes the payload after the frame header.
    pub fn decode(flags: u8, mut payload: &[u8]) -> Result<Self, FrameError> {
        expect_len("GOAWAY", payload, 8)?;
        if flags != 0 {
            return Err(FrameError::Invalid {
                frame: "GOAWAY",
                reason: "flags must be 0",
            });
        }
        let last_good_stream_id = get_stream_id(&mut payload);
        let status = match payload.get_u32() {
            0 => GoAwayStatus::Ok,
            1 => GoAwayStatus::ProtocolError,
            2 => GoAwayStatus::InternalError,
            _ => {
                return Err(FrameError::Invalid {
                    frame: "GOAWAY",
                    reason: "unknown status code",
                });
            }
        };
        Ok(GoAway {
            last_good_stream_id,
            status,
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_control_head(dst, kind::GOAWAY, 0, 8);
        dst.put_u32(self.last_good_stream_id & super::MAX_STREAM_ID);
        dst.put_u32(self.status as u32);
    }
}
