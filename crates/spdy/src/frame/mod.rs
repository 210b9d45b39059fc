//! SPDY/3 frames as plain values: one module per frame type, each with `encode` and `decode` and no
//! I/O. Header blocks are (de)compressed through the per-direction zlib contexts of
//! [`crate::header_block`].

mod data;
mod goaway;
mod headers;
mod ping;
mod rst_stream;
mod settings;
mod syn_reply;
mod syn_stream;
mod window_update;

pub use data::Data;
pub use goaway::{GoAway, GoAwayStatus};
pub use headers::HeadersFrame;
pub use ping::Ping;
pub use rst_stream::{RstStatus, RstStream};
pub use settings::{Setting, Settings};
pub use syn_reply::SynReply;
pub use syn_stream::SynStream;
pub use window_update::WindowUpdate;

use bytes::{Buf, BufMut, BytesMut};

use crate::header_block::HeaderError;

/// The SPDY version this crate speaks and writes into every control frame.
pub const VERSION: u16 = 3;
/// Length of every frame header (control and data) in bytes.
pub const HEADER_LEN: usize = 8;
/// The largest payload length the 24-bit length field can express.
pub const MAX_LENGTH: usize = 0x00FF_FFFF;
/// Largest stream id (31 bits).
pub const MAX_STREAM_ID: u32 = 0x7FFF_FFFF;

/// Flag on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender has finished its side of the stream.
pub const FLAG_FIN: u8 = 0x01;

/// Control frame type numbers.
pub(crate) mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// Any SPDY/3 frame this crate sends or accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream(SynStream),
    /// Accepts a stream.
    SynReply(SynReply),
    /// Aborts a stream.
    RstStream(RstStream),
    /// Connection settings (sessions use INITIAL_WINDOW_SIZE).
    Settings(Settings),
    /// Liveness check and its echo.
    Ping(Ping),
    /// The sender is closing the connection.
    GoAway(GoAway),
    /// Additional headers for a stream (accepted, never sent to Go peers).
    Headers(HeadersFrame),
    /// Flow-control credit.
    WindowUpdate(WindowUpdate),
    /// Stream payload.
    Data(Data),
}

impl Frame {
    /// The stream this frame belongs to, or 0 for connection-level frames.
    pub fn stream_id(&self) -> u32 {
        match self {
            Frame::SynStream(f) => f.stream_id,
            Frame::SynReply(f) => f.stream_id,
            Frame::RstStream(f) => f.stream_id,
            Frame::Headers(f) => f.stream_id,
            Frame::WindowUpdate(f) => f.stream_id,
            Frame::Data(f) => f.stream_id,
            Frame::Settings(_) | Frame::Ping(_) | Frame::GoAway(_) => 0,
        }
    }
}

/// Why bytes could not be decoded into a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading or writing the underlying transport failed.
    #[error("SPDY transport I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A control frame carried a version other than 3.
    #[error("SPDY control frame has unsupported version {0} (expected 3)")]
    BadVersion(u16),
    /// NOOP, CREDENTIAL or an unknown control frame type (the decoder skips these; kept for
    /// callers that match on it).
    #[error("SPDY control frame type {0} is not supported")]
    UnknownType(u16),
    /// A frame announced a payload longer than allowed.
    #[error("SPDY frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A control frame's length does not fit its type.
    #[error("SPDY {frame} frame has invalid length {len}")]
    BadLength {
        /// Frame type name.
        frame: &'static str,
        /// The announced payload length.
        len: usize,
    },
    /// A field holds a value the protocol forbids.
    #[error("SPDY {frame} frame is invalid: {reason}")]
    Invalid {
        /// Frame type name.
        frame: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The header block could not be decompressed or parsed; the connection cannot continue.
    #[error("SPDY header block is invalid: {0}")]
    HeaderBlock(#[from] HeaderError),
    /// The header block decoded but holds names the protocol forbids; only this stream is affected.
    #[error("SPDY stream {stream_id} has invalid headers: {source}")]
    StreamHeaders {
        /// The stream whose headers are invalid.
        stream_id: u32,
        /// The violation.
        source: HeaderError,
    },
}

impl FrameError {
    /// If this error only concerns one stream, that stream and the RST_STREAM status to send.
    pub fn stream_error(&self) -> Option<(u32, RstStatus)> {
        match self {
            FrameError::StreamHeaders { stream_id, .. } => {
                Some((*stream_id, RstStatus::ProtocolError))
            }
            _ => None,
        }
    }
}

/// The decoded 8-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// A control frame header.
    Control {
        /// Protocol version (3).
        version: u16,
        /// Control frame type.
        kind: u16,
        /// Flags byte.
        flags: u8,
        /// Payload length.
        length: usize,
    },
    /// A DATA frame header.
    Data {
        /// Stream id.
        stream_id: u32,
        /// Flags byte.
        flags: u8,
        /// Payload length.
        length: usize,
    },
}

impl Head {
    /// Parses the first 8 bytes of `src` (which must hold at least [`HEADER_LEN`] bytes).
    pub fn parse(src: &[u8; HEADER_LEN]) -> Head {
        let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let flags = src[4];
        let length = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
        if word & 0x8000_0000 != 0 {
            Head::Control {
                version: ((word >> 16) & 0x7FFF) as u16,
                kind: (word & 0xFFFF) as u16,
                flags,
                length,
            }
        } else {
            Head::Data {
                stream_id: word,
                flags,
                length,
            }
        }
    }

    /// The payload length announced by this header.
    pub fn length(&self) -> usize {
        match self {
            Head::Control { length, .. } | Head::Data { length, .. } => *length,
        }
    }
}

/// Writes a control frame header. `length` must not exceed [`MAX_LENGTH`].
pub(crate) fn put_control_head(dst: &mut BytesMut, kind: u16, flags: u8, length: usize) {
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    put_flags_length(dst, flags, length);
}

/// Writes the flags byte and the 24-bit length.
pub(crate) fn put_flags_length(dst: &mut BytesMut, flags: u8, length: usize) {
    let length = (length.min(MAX_LENGTH)) as u32;
    dst.put_u32((u32::from(flags) << 24) | length);
}

/// Reads a 31-bit stream id, ignoring the reserved top bit.
pub(crate) fn get_stream_id(src: &mut &[u8]) -> u32 {
    src.get_u32() & MAX_STREAM_ID
}

/// Checks that a fixed-length control frame has the expected length.
pub(crate) fn expect_len(
    frame: &'static str,
    payload: &[u8],
    len: usize,
) -> Result<(), FrameError> {
    if payload.len() == len {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            frame,
            len: payload.len(),
        })
    }
}

/// Checks that a frame has at least `len` bytes of payload.
pub(crate) fn expect_min_len(
    frame: &'static str,
    payload: &[u8],
    len: usize,
) -> Result<(), FrameError> {
    if payload.len() >= len {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            frame,
            len: payload.len(),
        })
    }
}

/// Rejects stream id 0 where a stream is required.
pub(crate) fn nonzero_stream(frame: &'static str, id: u32) -> Result<u32, FrameError> {
    if id == 0 {
        Err(FrameError::Invalid {
            frame,
            reason: "stream id 0",
        })
    } else {
        Ok(id)
    }
}

#[cfg(test)]
mod tests;
