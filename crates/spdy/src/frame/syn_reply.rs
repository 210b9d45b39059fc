//! SYN_REPLY: accepts a stream.

use bytes::{BufMut, BytesMut};

use super::syn_stream::decode_headers;
use super::{
    FLAG_FIN, FrameError, expect_min_len, get_stream_id, kind, nonzero_stream, put_control_head,
};
use crate::header_block::{HeaderDecoder, HeaderEncoder};
use crate::headers::Headers;

/// A SYN_REPLY frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynReply {
    /// The accepted stream.
    pub stream_id: u32,
    /// The sender has nothing to send on this stream.
    pub fin: bool,
    /// Reply headers (empty in Kubernetes).
    pub headers: Headers,
}

impl SynReply {
    /// A reply with the given headers and no flags.
    pub fn new(stream_id: u32, headers: Headers) -> Self {
        SynReply {
            stream_id,
            fin: false,
            headers,
        }
    }

    /// Decodes the payload after the frame header.
    pub fn decode(
        flags: u8,
        mut payload: &[u8],
        decoder: &mut HeaderDecoder,
    ) -> Result<Self, FrameError> {
        expect_min_len("SYN_REPLY", payload, 4)?;
        let stream_id = get_stream_id(&mut payload);
        let headers = decode_headers(stream_id, payload, decoder)?;
        nonzero_stream("SYN_REPLY", stream_id)?;
        Ok(SynReply {
            stream_id,
            fin: flags & FLAG_FIN != 0,
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
        let flags = if self.fin { FLAG_FIN } else { 0 };
        put_control_head(dst, kind::SYN_REPLY, flags, 4 + block.len());
        dst.put_u32(self.stream_id & super::MAX_STREAM_ID);
        dst.put_slice(&block);
        Ok(())
    }
}
