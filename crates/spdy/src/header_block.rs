//! Name/value header blocks: the NV encoding and the zlib contexts with the SPDY/3 dictionary.
//!
//! Each direction of a session owns one [`HeaderEncoder`] or [`HeaderDecoder`] for its whole life:
//! the zlib stream is never reset, every block ends with a sync flush, and only the first block
//! carries the zlib header with the dictionary id.

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::{DICTIONARY, DICTIONARY_ADLER32};
use crate::headers::Headers;

/// Default bound on the decompressed size of one header block.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Why a header block could not be produced or understood.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// zlib refused to compress.
    #[error("header compression failed: {0}")]
    Compress(String),
    /// The compressed bytes are not a valid continuation of the peer's zlib stream.
    #[error("header decompression failed: {0}")]
    Decompress(String),
    /// The peer's zlib stream asks for a dictionary other than SPDY/3's.
    #[error("header block asks for zlib dictionary {0:#010x}, expected the SPDY/3 dictionary")]
    WrongDictionary(u32),
    /// The decompressed block exceeds the configured bound (a decompression bomb).
    #[error("decompressed header block exceeds {max} bytes")]
    TooLarge {
        /// The bound in force.
        max: usize,
    },
    /// The NV block ends before its announced entries.
    #[error("header block is truncated")]
    Truncated,
    /// Bytes remain after the announced entries.
    #[error("header block has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A header name is empty, not lower-case, or not UTF-8.
    #[error("header name {0:?} is invalid (names must be non-empty lower-case text)")]
    InvalidName(String),
    /// A header name appears twice in one block.
    #[error("header name {0:?} appears more than once")]
    DuplicateName(String),
    /// A header value is not UTF-8.
    #[error("value of header {0:?} is not UTF-8")]
    InvalidValue(String),
    /// A header name or value is too long for the 32-bit length field.
    #[error("header {0:?} is too long to encode")]
    TooLong(String),
}

impl HeaderError {
    /// Whether the block decompressed correctly and only its content is unacceptable, so the
    /// connection can continue and only the stream is refused.
    pub fn is_stream_level(&self) -> bool {
        matches!(
            self,
            HeaderError::InvalidName(_)
                | HeaderError::DuplicateName(_)
                | HeaderError::InvalidValue(_)
        )
    }
}

/// Serialises headers into an uncompressed NV block (names lower-cased, values of one name
/// joined by NUL).
pub fn encode_nv(headers: &Headers) -> Result<Vec<u8>, HeaderError> {
    let groups = headers.grouped();
    let mut out = Vec::with_capacity(64);
    out.put_u32(len32(groups.len(), "count")?);
    for (name, values) in &groups {
        out.put_u32(len32(name.len(), name)?);
        out.put_slice(name.as_bytes());
        let value_len: usize = values.iter().map(|v| v.len()).sum::<usize>() + values.len() - 1;
        out.put_u32(len32(value_len, name)?);
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.put_u8(0);
            }
            out.put_slice(value.as_bytes());
        }
    }
    Ok(out)
}

fn len32(len: usize, what: &str) -> Result<u32, HeaderError> {
    u32::try_from(len).map_err(|_| HeaderError::TooLong(what.to_owned()))
}

/// Parses an uncompressed NV block, enforcing lower-case unique names.
///
/// Structural errors (truncation, trailing bytes) are reported before content errors, so a
/// content error means the whole block was well-formed.
pub fn decode_nv(block: &[u8]) -> Result<Headers, HeaderError> {
    let mut src = block;
    let count = take_u32(&mut src)? as usize;
    // Each entry needs at least 8 bytes; reject absurd counts before allocating.
    if count > src.len() / 8 {
        return Err(HeaderError::Truncated);
    }
    let mut raw: Vec<(&[u8], &[u8])> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_bytes(&mut src)?;
        let value = take_bytes(&mut src)?;
        raw.push((name, value));
    }
    if !src.is_empty() {
        return Err(HeaderError::TrailingBytes(src.len()));
    }
    let mut headers = Headers::new();
    let mut seen: Vec<&str> = Vec::with_capacity(count);
    for (name, value) in raw {
        let name_text = std::str::from_utf8(name)
            .map_err(|_| HeaderError::InvalidName(String::from_utf8_lossy(name).into_owned()))?;
        let name_ok =
            !name_text.is_empty() && !name_text.bytes().any(|b| b.is_ascii_uppercase() || b == 0);
        if !name_ok {
            return Err(HeaderError::InvalidName(name_text.to_owned()));
        }
        if seen.contains(&name_text) {
            return Err(HeaderError::DuplicateName(name_text.to_owned()));
        }
        seen.push(name_text);
        let value_text = std::str::from_utf8(value)
            .map_err(|_| HeaderError::InvalidValue(name_text.to_owned()))?;
        for part in value_text.split('\0') {
            headers.insert(name_text, part);
        }
    }
    Ok(headers)
}

fn take_u32(src: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, rest) = src.split_first_chunk::<4>().ok_or(HeaderError::Truncated)?;
    *src = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_bytes<'a>(src: &mut &'a [u8]) -> Result<&'a [u8], HeaderError> {
    let len = take_u32(src)? as usize;
    if src.len() < len {
        return Err(HeaderError::Truncated);
    }
    let (bytes, rest) = src.split_at(len);
    *src = rest;
    Ok(bytes)
}

/// The compressing side of one direction of a session.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl std::fmt::Debug for HeaderEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderEncoder")
            .field("total_in", &self.zlib.total_in())
            .finish()
    }
}

impl HeaderEncoder {
    /// A fresh zlib stream at level 9 with the SPDY/3 dictionary preset.
    pub fn new() -> Result<Self, HeaderError> {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(&DICTIONARY)
            .map_err(|e| HeaderError::Compress(e.to_string()))?;
        Ok(HeaderEncoder { zlib })
    }

    /// Compresses `headers` as the next block of this stream and appends it to `dst`, ending with
    /// a sync flush.
    pub fn encode(&mut self, headers: &Headers, dst: &mut BytesMut) -> Result<(), HeaderError> {
        let nv = encode_nv(headers)?;
        let mut chunk = [0u8; 4096];
        let mut consumed = 0;
        loop {
            let in_before = self.zlib.total_in();
            let out_before = self.zlib.total_out();
            self.zlib
                .compress(&nv[consumed..], &mut chunk, FlushCompress::Sync)
                .map_err(|e| HeaderError::Compress(e.to_string()))?;
            consumed += (self.zlib.total_in() - in_before) as usize;
            let produced = (self.zlib.total_out() - out_before) as usize;
            dst.put_slice(&chunk[..produced]);
            // The flush is complete once all input is taken and zlib left output space unused.
            if consumed == nv.len() && produced < chunk.len() {
                return Ok(());
            }
        }
    }
}

/// The decompressing side of one direction of a session.
pub struct HeaderDecoder {
    zlib: Decompress,
    max: usize,
}

impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field("total_in", &self.zlib.total_in())
            .field("max", &self.max)
            .finish()
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HEADER_BLOCK)
    }
}

impl HeaderDecoder {
    /// A fresh inflater that accepts decompressed blocks of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        HeaderDecoder {
            zlib: Decompress::new(true),
            max,
        }
    }

    /// Decompresses the next block of this stream (all of `block` must be consumed) and parses it.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let nv = self.inflate(block)?;
        decode_nv(&nv)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut consumed = 0;
        loop {
            let in_before = self.zlib.total_in();
            let out_before = self.zlib.total_out();
            let result =
                self.zlib
                    .decompress(&block[consumed..], &mut chunk, FlushDecompress::Sync);
            let taken = (self.zlib.total_in() - in_before) as usize;
            let produced = (self.zlib.total_out() - out_before) as usize;
            consumed += taken;
            if out.len() + produced > self.max {
                return Err(HeaderError::TooLarge { max: self.max });
            }
            out.extend_from_slice(&chunk[..produced]);
            match result {
                Ok(Status::StreamEnd) if consumed < block.len() => {
                    return Err(HeaderError::Decompress(
                        "zlib stream ended inside a header block".into(),
                    ));
                }
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => {
                        self.zlib
                            .set_dictionary(&DICTIONARY)
                            .map_err(|e| HeaderError::Decompress(e.to_string()))?;
                        continue;
                    }
                    Some(other) => return Err(HeaderError::WrongDictionary(other)),
                    None => return Err(HeaderError::Decompress(e.to_string())),
                },
            }
            if consumed == block.len() && produced < chunk.len() {
                return Ok(out);
            }
            if taken == 0 && produced == 0 {
                return Err(HeaderError::Decompress(
                    "header block did not advance the zlib stream".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
