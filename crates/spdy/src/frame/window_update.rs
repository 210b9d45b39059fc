//! WINDOW_UPDATE: flow-control credit. Sessions exchange it only with peers that do flow control
//! (Go has none).

use bytes::{Buf, BufMut, BytesMut};

use super::{FrameError, expect_len, get_stream_id, kind, put_control_head};

/// A WINDOW_UPDATE frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUpdate {
    /// The stream (0 = session in SPDY/3.1).
    pub stream_id: u32,
    /// Credit in bytes (31 bits).
    pub delta: u32,
}

impl WindowUpdate {
    /// Decodes the payload after the frame header.
    pub fn decode(flags: u8, mut payload: &[u8]) -> Result<Self, FrameError> {
        expect_len("WINDOW_UPDATE", payload, 8)?;
        if flags != 0 {
            return Err(FrameError::Invalid {
                frame: "WINDOW_UPDATE",
                reason: "flags must be 0",
            });
        }
        let stream_id = get_stream_id(&mut payload);
        let delta = payload.get_u32() & 0x7FFF_FFFF;
        Ok(WindowUpdate { stream_id, delta })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_control_head(dst, kind::WINDOW_UPDATE, 0, 8);
        dst.put_u32(self.stream_id & super::MAX_STREAM_ID);
        dst.put_u32(self.delta & 0x7FFF_FFFF);
    }
}
