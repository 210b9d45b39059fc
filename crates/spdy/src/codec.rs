//! [`Codec`]: a tokio-util `Decoder`/`Encoder` between bytes and [`Frame`]s that owns the two
//! header-block zlib contexts of a connection and enforces frame size limits.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{
    Data, Frame, FrameError, GoAway, HEADER_LEN, Head, HeadersFrame, MAX_LENGTH, Ping, RstStream,
    Settings, SynReply, SynStream, VERSION, WindowUpdate, kind,
};
use crate::header_block::{DEFAULT_MAX_HEADER_BLOCK, HeaderDecoder, HeaderEncoder, HeaderError};

/// Default limit for control frame payloads.
pub const DEFAULT_MAX_CONTROL_LEN: usize = 1024 * 1024;

/// Frame codec for one connection: decoding state for the peer's direction, encoding state for
/// ours. Sessions use the two halves separately, one per task.
#[derive(Debug)]
pub struct Codec {
    decoder: FrameDecoder,
    encoder: FrameEncoder,
}

impl Codec {
    /// A codec with the default limits of [`FrameDecoder::new`].
    pub fn new() -> Result<Self, HeaderError> {
        Ok(Codec {
            decoder: FrameDecoder::new(),
            encoder: FrameEncoder::new()?,
        })
    }

    /// A codec whose decoder uses the given limits (see [`FrameDecoder::with_limits`]).
    pub fn with_limits(
        max_data_len: usize,
        max_control_len: usize,
        max_header_block: usize,
    ) -> Result<Self, HeaderError> {
        Ok(Codec {
            decoder: FrameDecoder::with_limits(max_data_len, max_control_len, max_header_block),
            encoder: FrameEncoder::new()?,
        })
    }

    /// Splits into the reading and the writing half.
    pub fn split(self) -> (FrameDecoder, FrameEncoder) {
        (self.decoder, self.encoder)
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decoder.decode(src)
    }
}

impl Encoder<Frame> for Codec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encoder.encode_ref(&frame, dst)
    }
}

/// Decodes the peer's frames, owning the peer-direction zlib inflater.
#[derive(Debug)]
pub struct FrameDecoder {
    decoder: HeaderDecoder,
    max_data_len: usize,
    max_control_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// Accepts DATA up to the protocol maximum (2^24 − 1 bytes, as Go allows), control frames up
    /// to 1 MiB and decompressed header blocks up to 256 KiB.
    pub fn new() -> Self {
        Self::with_limits(
            MAX_LENGTH,
            DEFAULT_MAX_CONTROL_LEN,
            DEFAULT_MAX_HEADER_BLOCK,
        )
    }

    /// Explicit limits: payload bytes for DATA and for control frames, decompressed bytes per
    /// header block.
    pub fn with_limits(
        max_data_len: usize,
        max_control_len: usize,
        max_header_block: usize,
    ) -> Self {
        FrameDecoder {
            decoder: HeaderDecoder::new(max_header_block),
            max_data_len,
            max_control_len,
        }
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        // Unknown control frames (NOOP, CREDENTIAL, future types) are skipped, as SPDY/3 requires.
        loop {
            match self.decode_one(src)? {
                Decoded::Frame(frame) => return Ok(Some(frame)),
                Decoded::Incomplete => return Ok(None),
                Decoded::Skipped => {}
            }
        }
    }
}

/// The total length (header included) of the frame that starts `buf`, once its 8-byte header
/// is there; for sizing a read buffer.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    buf.first_chunk::<HEADER_LEN>()
        .map(|h| HEADER_LEN + Head::parse(h).length())
}

/// One step of [`FrameDecoder`].
enum Decoded {
    Frame(Frame),
    Incomplete,
    Skipped,
}

impl FrameDecoder {
    fn decode_one(&mut self, src: &mut BytesMut) -> Result<Decoded, FrameError> {
        let Some(head_bytes) = src.first_chunk::<HEADER_LEN>() else {
            return Ok(Decoded::Incomplete);
        };
        let head = Head::parse(head_bytes);
        // Validate the header before waiting for the payload, so a bad frame fails fast.
        let mut known = true;
        let max = match head {
            Head::Control { version, kind, .. } => {
                if version != VERSION {
                    return Err(FrameError::BadVersion(version));
                }
                known = matches!(
                    kind,
                    kind::SYN_STREAM
                        | kind::SYN_REPLY
                        | kind::RST_STREAM
                        | kind::SETTINGS
                        | kind::PING
                        | kind::GOAWAY
                        | kind::HEADERS
                        | kind::WINDOW_UPDATE
                );
                self.max_control_len
            }
            Head::Data { .. } => self.max_data_len,
        };
        let len = head.length();
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if src.len() < HEADER_LEN + len {
            // No `reserve` here: payloads already decoded still share `src`'s allocation, so
            // growing it would copy into fresh memory. The reader sizes its buffer with
            // [`frame_len`].
            return Ok(Decoded::Incomplete);
        }
        if !known {
            src.advance(HEADER_LEN + len);
            return Ok(Decoded::Skipped);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        let frame = match head {
            Head::Data {
                stream_id, flags, ..
            } => Frame::Data(Data::decode(stream_id, flags, payload)?),
            Head::Control { kind, flags, .. } => match kind {
                kind::SYN_STREAM => {
                    Frame::SynStream(SynStream::decode(flags, &payload, &mut self.decoder)?)
                }
                kind::SYN_REPLY => {
                    Frame::SynReply(SynReply::decode(flags, &payload, &mut self.decoder)?)
                }
                kind::HEADERS => {
                    Frame::Headers(HeadersFrame::decode(flags, &payload, &mut self.decoder)?)
                }
                kind::RST_STREAM => Frame::RstStream(RstStream::decode(&payload)?),
                kind::SETTINGS => Frame::Settings(Settings::decode(flags, &payload)?),
                kind::PING => Frame::Ping(Ping::decode(flags, &payload)?),
                kind::GOAWAY => Frame::GoAway(GoAway::decode(flags, &payload)?),
                kind::WINDOW_UPDATE => Frame::WindowUpdate(WindowUpdate::decode(flags, &payload)?),
                other => return Err(FrameError::UnknownType(other)),
            },
        };
        Ok(Decoded::Frame(frame))
    }
}

/// Encodes our frames, owning our direction's zlib deflater.
#[derive(Debug)]
pub struct FrameEncoder {
    encoder: HeaderEncoder,
}

impl FrameEncoder {
    /// A fresh encoder (level 9, SPDY/3 dictionary).
    pub fn new() -> Result<Self, HeaderError> {
        Ok(FrameEncoder {
            encoder: HeaderEncoder::new()?,
        })
    }

    /// Appends one frame to `dst`. Frames must be encoded in the order they are written.
    pub fn encode_ref(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::SynStream(f) => f.encode(dst, &mut self.encoder),
            Frame::SynReply(f) => f.encode(dst, &mut self.encoder),
            Frame::Headers(f) => f.encode(dst, &mut self.encoder),
            Frame::RstStream(f) => {
                f.encode(dst);
                Ok(())
            }
            Frame::Settings(f) => {
                f.encode(dst);
                Ok(())
            }
            Frame::Ping(f) => {
                f.encode(dst);
                Ok(())
            }
            Frame::GoAway(f) => {
                f.encode(dst);
                Ok(())
            }
            Frame::WindowUpdate(f) => {
                f.encode(dst);
                Ok(())
            }
            Frame::Data(f) => f.encode(dst),
        }
    }
}

impl Encoder<Frame> for FrameEncoder {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_ref(&frame, dst)
    }
}

#[cfg(test)]
mod tests;
