//! Arbitrary received WebSocket messages through the Kubernetes channel parser of every
//! remotecommand/port-forward encoding (binary, base64, v5 close signals); the first byte picks
//! the protocol, see `podway_stream::fuzzing::ws_channel_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    podway_stream::fuzzing::ws_channel_message(data);
});
