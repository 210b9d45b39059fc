//! DATA: stream payload.

use bytes::{BufMut, Bytes, BytesMut};

use super::{FLAG_FIN, FrameError, MAX_LENGTH, nonzero_stream, put_flags_length};

/// A DATA frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    /// The stream.
    pub stream_id: u32,
    /// The sender has finished its side of the stream after this payload.
    pub fin: bool,
    /// Payload bytes (at most 2^24 − 1).
    pub payload: Bytes,
}

impl Data {
    /// Builds a frame from the header fields and the payload.
    pub fn decode(stream_id: u32, flags: u8, payload: Bytes) -> Result<Self, FrameError> {
        nonzero_stream("DATA", stream_id)?;
        Ok(Data {
            stream_id,
            fin: flags & FLAG_FIN != 0,
            payload,
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_head(dst)?;
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// Appends only the 8-byte frame header, for writers that send the payload from its own
    /// buffer (vectored I/O) instead of copying it behind the header.
    pub fn encode_head(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        if self.payload.len() > MAX_LENGTH {
            return Err(FrameError::TooLarge {
                len: self.payload.len(),
                max: MAX_LENGTH,
            });
        }
        dst.put_u32(self.stream_id & super::MAX_STREAM_ID);
        put_flags_length(dst, if self.fin { FLAG_FIN } else { 0 }, self.payload.len());
        Ok(())
    }
}
