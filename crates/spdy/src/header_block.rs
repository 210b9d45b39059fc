//! Name/value header blocks: the NV encoding and the zlib contexts with the SPDY/3 dictionary.
//!
//! Each direction of a session owns one [`HeaderEncoder`] or [`HeaderDecoder`] for its whole life:
//! the zlib stream is never reset, every block ends with a sync flush, and only the first block
//! carries the zlib header with the dictionary id. The encoder holds only the stream's last 2 KiB
//! between blocks (see [`HeaderEncoder`]); the decoder's inflater is created by the first block.

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

/// log2 of the window our deflater may refer back into. Header blocks are a few hundred bytes,
/// so 2 KiB (the whole SPDY dictionary plus the latest blocks) compresses them about as well as
/// 32 KiB would; any inflater accepts it (a window only bounds back-reference distances).
const WINDOW_BITS: u8 = 11;
/// The uncompressed history kept between blocks: the most our deflater can refer back to.
const HISTORY: usize = 1 << WINDOW_BITS;

/// The compressing side of one direction of a session.
///
/// It keeps no zlib context between blocks (a deflater costs some 300 KiB, most of an idle
/// session). Each block is compressed by the thread's raw deflater (2 KiB window), reset and
/// primed with the last 2 KiB of what this stream has carried so far (at first, the
/// dictionary), and ends with a sync flush; the first block is preceded by the zlib header naming the SPDY
/// dictionary. The peer's single inflater sees one continuous zlib stream.
pub struct HeaderEncoder {
    /// The last [`HISTORY`] uncompressed bytes of the stream, the dictionary included.
    history: Vec<u8>,
    /// Uncompressed bytes compressed so far (the zlib header is due while 0).
    total_in: u64,
}

impl std::fmt::Debug for HeaderEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderEncoder")
            .field("total_in", &self.total_in)
            .finish()
    }
}

impl HeaderEncoder {
    /// A fresh zlib stream with the SPDY/3 dictionary preset.
    pub fn new() -> Result<Self, HeaderError> {
        Ok(HeaderEncoder {
            history: DICTIONARY[DICTIONARY.len().saturating_sub(HISTORY)..].to_vec(),
            total_in: 0,
        })
    }

    /// Compresses `headers` as the next block of this stream and appends it to `dst`, ending with
    /// a sync flush.
    pub fn encode(&mut self, headers: &Headers, dst: &mut BytesMut) -> Result<(), HeaderError> {
        let nv = encode_nv(headers)?;
        if self.total_in == 0 {
            put_zlib_header(dst);
        }
        DEFLATER.with_borrow_mut(|zlib| {
            let zlib = zlib.get_or_insert_with(|| {
                Compress::new_with_window_bits(Compression::best(), false, WINDOW_BITS)
            });
            zlib.reset();
            deflate_block(zlib, &self.history, &nv, dst)
        })?;
        self.total_in += nv.len() as u64;
        remember(&mut self.history, &nv);
        Ok(())
    }
}

thread_local! {
    /// The raw deflater every encoder on this thread borrows for one block at a time (one zlib
    /// context per thread rather than per session direction).
    static DEFLATER: std::cell::RefCell<Option<Compress>> = const { std::cell::RefCell::new(None) };
}

/// Compresses `nv` with `zlib` (a reset raw deflater) after priming it with `history`, appending
/// the output and a sync flush to `dst`.
fn deflate_block(
    zlib: &mut Compress,
    history: &[u8],
    nv: &[u8],
    dst: &mut BytesMut,
) -> Result<(), HeaderError> {
    zlib.set_dictionary(history)
        .map_err(|e| HeaderError::Compress(e.to_string()))?;
    let mut chunk = [0u8; 4096];
    let mut consumed = 0;
    loop {
        let in_before = zlib.total_in();
        let out_before = zlib.total_out();
        zlib.compress(&nv[consumed..], &mut chunk, FlushCompress::Sync)
            .map_err(|e| HeaderError::Compress(e.to_string()))?;
        consumed += (zlib.total_in() - in_before) as usize;
        let produced = (zlib.total_out() - out_before) as usize;
        dst.put_slice(&chunk[..produced]);
        // The flush is complete once all input is taken and zlib left output space unused.
        if consumed == nv.len() && produced < chunk.len() {
            return Ok(());
        }
    }
}

/// Appends `block` to `history`, keeping its last [`HISTORY`] bytes.
fn remember(history: &mut Vec<u8>, block: &[u8]) {
    if block.len() >= HISTORY {
        history.clear();
        history.extend_from_slice(&block[block.len() - HISTORY..]);
        return;
    }
    let excess = (history.len() + block.len()).saturating_sub(HISTORY);
    history.drain(..excess);
    history.extend_from_slice(block);
}

/// The zlib stream header (RFC 1950) a level-9 zlib writes with the SPDY dictionary preset:
/// deflate with a 32 KiB window, maximum compression, FDICT, then the dictionary's Adler-32.
fn put_zlib_header(dst: &mut BytesMut) {
    const CMF: u8 = 0x78; // deflate, 32 KiB window (the most any inflater needs to accept)
    const FLEVEL_FDICT: u8 = 0b1110_0000; // level 3 (maximum), preset dictionary
    let check = (31 - ((u16::from(CMF) << 8) | u16::from(FLEVEL_FDICT)) % 31) % 31;
    dst.put_u8(CMF);
    dst.put_u8(FLEVEL_FDICT | check as u8);
    dst.put_u32(DICTIONARY_ADLER32);
}

/// The decompressing side of one direction of a session.
pub struct HeaderDecoder {
    /// The inflater, created by the first block (an idle session that never receives headers
    /// does not pay for its 32 KiB window).
    zlib: Option<Decompress>,
    max: usize,
}

impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field(
                "total_in",
                &self.zlib.as_ref().map_or(0, Decompress::total_in),
            )
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
        HeaderDecoder { zlib: None, max }
    }

    /// Decompresses the next block of this stream (all of `block` must be consumed) and parses it.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let nv = self.inflate(block)?;
        decode_nv(&nv)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let max = self.max;
        let zlib = self.zlib.get_or_insert_with(|| Decompress::new(true));
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut consumed = 0;
        loop {
            let in_before = zlib.total_in();
            let out_before = zlib.total_out();
            let result = zlib.decompress(&block[consumed..], &mut chunk, FlushDecompress::Sync);
            let taken = (zlib.total_in() - in_before) as usize;
            let produced = (zlib.total_out() - out_before) as usize;
            consumed += taken;
            if out.len() + produced > max {
                return Err(HeaderError::TooLarge { max });
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
                        zlib.set_dictionary(&DICTIONARY)
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
