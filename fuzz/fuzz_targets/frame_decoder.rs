//! Arbitrary bytes through the SPDY frame decoder (and the header blocks inside frames).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spdy::fuzzing::decode_frames(data);
});
