//! Arbitrary port-forward stream headers (`name: value` lines) through the SPDY port-forward
//! server's header parser and the legacy WebSocket `port` query parser, see
//! `podway_stream::fuzzing::portforward_headers`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    podway_stream::fuzzing::portforward_headers(data);
});
