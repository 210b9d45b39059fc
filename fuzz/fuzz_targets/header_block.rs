//! Arbitrary bytes as NV blocks and as compressed header blocks of one zlib stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spdy::fuzzing::decode_header_blocks(data);
});
