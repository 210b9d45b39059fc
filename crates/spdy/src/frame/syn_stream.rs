//! SYN_STREAM: opens a stream.

use bytes::{Buf, BufMut, BytesMut};

use super::{
    FLAG_FIN, FrameError, expect_min_len, get_stream_id, kind, nonzero_stream, put_control_head,
};
use crate::header_block::{HeaderDecoder, HeaderEncoder};
use crate::headers::Headers;

/// SYN_STREAM flag: the receiver must not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// A SYN_STREAM frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynStream {
    /// The new stream's id.
    pub stream_id: u32,
    /// Associated stream id (server push; always 0 here).
    pub associated_id: u32,
    /// Priority, 0 (highest) to 7.
    pub priority: u8,
    /// Credential slot (always 0 here).
    pub slot: u8,
    /// The sender has nothing to send on this stream.
    pub fin: bool,
    /// The receiver must not send on this stream.
    pub unidirectional: bool,
    /// The stream's headers.
    pub headers: Headers,
}

impl SynStream {
    /// A plain SYN_STREAM as Kubernetes sends it: priority 0, no flags.
    pub fn new(stream_id: u32, headers: Headers) -> Self {
        SynStream {
            stream_id,
            associated_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers,
        }
    }

    /// Decodes the payload after the frame header.
    pub fn decode(
        flags: u8,
        mut payload: &[u8],
        decoder: &mut HeaderDecoder,
    ) -> Result<Self, FrameError> {
        expect_min_len("SYN_STREAM", payload, 10)?;
        let stream_id = get_stream_id(&mut payload);
        let associated_id = get_stream_id(&mut payload);
        let priority = payload.get_u8() >> 5;
        let slot = payload.get_u8();
        // Decompress before validating the id so the zlib stream stays in step.
        let headers = decode_headers(stream_id, payload, decoder)?;
        nonzero_stream("SYN_STREAM", stream_id)?;
        Ok(SynStream {
            stream_id,
            associated_id,
            priority,
            slot,
            fin: flags & FLAG_FIN != 0,
            unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
            headers,
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(
        &self,
        dst: &mut BytesMut,
        encoder: &mut HeaderEncoder,
    ) -> Result<(), FrameError> {
        let mut block = BytesMut::new();
        encoder.encode(&self.headers, &mut block)?;
        let mut flags = 0;
        if self.fin {
            flags |= FLAG_FIN;
        }
        if self.unidirectional {
            flags |= FLAG_UNIDIRECTIONAL;
        }
        put_control_head(dst, kind::SYN_STREAM, flags, 10 + block.len());
        dst.put_u32(self.stream_id & super::MAX_STREAM_ID);
        dst.put_u32(self.associated_id & super::MAX_STREAM_ID);
        dst.put_u8((self.priority & 0x07) << 5);
        dst.put_u8(self.slot);
        dst.put_slice(&block);
        Ok(())
    }
}

/// Decompresses a header block, turning content violations into a stream-level error.
pub(super) fn decode_headers(
    stream_id: u32,
    block: &[u8],
    decoder: &mut HeaderDecoder,
) -> Result<Headers, FrameError> {
    decoder.decode(block).map_err(|source| {
        if source.is_stream_level() && stream_id != 0 {
            FrameError::StreamHeaders { stream_id, source }
        } else {
            FrameError::HeaderBlock(source)
        }
    })
}
