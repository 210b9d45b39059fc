//! HEADERS: more headers for an open stream. Decoded (to keep the zlib stream in step) but never
//! sent to Go peers, whose handler blocks on it.

use bytes::{BufMut, BytesMut};

use super::syn_stream::decode_headers;
use super::{
    FLAG_FIN, FrameError, expect_min_len, get_stream_id, kind, nonzero_stream, put_control_head,
};
use crate::header_block::{HeaderDecoder, HeaderEncoder};
use crate::headers::Headers;

/// A HEADERS frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadersFrame {
    /// The stream the headers belong to.
    pub stream_id: u32,
    /// The sender has finished its side of the stream.
    pub fin: bool,
    /// The headers.
    pub headers: Headers,
}

impl HeadersFrame {
    /// Decodes the payload after the frame header.
    pub fn decode(
        flags: u8,
        mut payload: &[u8],
        decoder: &mut HeaderDecoder,
    ) -> Result<Self, FrameError> {
        expect_min_len("HEADERS", payload, 4)?;
        let stream_id = get_stream_id(&mut payload);
        let headers = decode_headers(stream_id, payload, decoder)?;
        nonzero_stream("HEADERS", stream_id)?;
        Ok(HeadersFrame {
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
        put_control_head(dst, kind::HEADERS, flags, 4 + block.len());
        dst.put_u32(self.stream_id & super::MAX_STREAM_ID);
        dst.put_slice(&block);
        Ok(())
    }
}
