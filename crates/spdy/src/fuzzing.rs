//! Entry points shared by the fuzz targets (`fuzz/`) and the test that replays their seed
//! corpora on the stable toolchain. Each feeds arbitrary bytes to a decoder and must never panic
//! or allocate beyond the decoder's limits, whatever the input.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::codec::FrameDecoder;
use crate::header_block::{HeaderDecoder, decode_nv};

/// Limit on a decompressed header block while fuzzing (small, so bombs are cheap to find).
const FUZZ_MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Limit on a frame payload while fuzzing.
const FUZZ_MAX_FRAME: usize = 1024 * 1024;

/// Decodes `data` as a stream of frames until it runs out or an error ends the connection,
/// returning how many frames were decoded.
pub fn decode_frames(data: &[u8]) -> usize {
    let mut decoder =
        FrameDecoder::with_limits(FUZZ_MAX_FRAME, FUZZ_MAX_FRAME, FUZZ_MAX_HEADER_BLOCK);
    let mut buf = BytesMut::from(data);
    let mut frames = 0;
    while let Ok(Some(_)) = decoder.decode(&mut buf) {
        frames += 1;
    }
    frames
}

/// Treats `data` as an uncompressed NV block, then as two consecutive compressed header blocks
/// of one zlib stream (a 2-byte big-endian length of the first block, then both blocks),
/// returning how many blocks decoded.
pub fn decode_header_blocks(data: &[u8]) -> usize {
    let mut decoded = usize::from(decode_nv(data).is_ok());
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return decoded;
    };
    let cut = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (first, second) = rest.split_at(cut);
    let mut decoder = HeaderDecoder::new(FUZZ_MAX_HEADER_BLOCK);
    for block in [first, second] {
        match decoder.decode(block) {
            Ok(_) => decoded += 1,
            Err(e) if e.is_stream_level() => {}
            Err(_) => break,
        }
    }
    decoded
}
