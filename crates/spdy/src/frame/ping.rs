//! PING: liveness check; the receiver echoes pings whose id parity differs from its own.

use bytes::{Buf, BufMut, BytesMut};

use super::{FrameError, expect_len, kind, put_control_head};

/// A PING frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// Ping id: odd from clients, even from servers.
    pub id: u32,
}

impl Ping {
    /// Decodes the payload after the frame header.
    pub fn decode(flags: u8, mut payload: &[u8]) -> Result<Self, FrameError> {
        expect_len("PING", payload, 4)?;
        if flags != 0 {
            return Err(FrameError::Invalid {
                frame: "PING",
                reason: "flags must be 0",
            });
        }
        Ok(Ping {
            id: payload.get_u32(),
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_control_head(dst, kind::PING, 0, 4);
        dst.put_u32(self.id);
    }
}
