//! Replays every seed of `fuzz/corpus/ws_channel/` through the fuzz target's entry point, so CI
//! exercises it on stable. With `PODWAY_WRITE_CORPUS=1` it first (re)writes the seeds: one
//! message of each kind for each protocol (see [`podway_stream::fuzzing::ws_channel_message`]).
use std::path::{Path, PathBuf};

use podway_stream::fuzzing::ws_channel_message;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ws_channel")
}

/// Selector bytes: binary, base64, v5 binary.
const BINARY: u8 = 0;
const BASE64: u8 = 1;
const V5: u8 = 2;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let with = |selector: u8, message: &[u8]| {
        let mut seed = vec![selector];
        seed.extend_from_slice(message);
        seed
    };
    vec![
        ("binary_stdin", with(BINARY, b"\x00ls -l\n")),
        ("binary_stdout_empty", with(BINARY, b"\x01")),
        (
            "binary_resize",
            with(BINARY, b"\x04{\"Width\":80,\"Height\":24}"),
        ),
        (
            "binary_status",
            with(BINARY, b"\x03{\"metadata\":{},\"status\":\"Success\"}"),
        ),
        ("binary_ff_not_v5", with(BINARY, b"\xff\x00")),
        ("empty_message", with(BINARY, b"")),
        ("v5_close_stdin", with(V5, b"\xff\x00")),
        ("v5_close_resize", with(V5, b"\xff\x04")),
        ("v5_close_bad_channel", with(V5, b"\xff\x07")),
        ("v5_close_too_long", with(V5, b"\xff\x00\x00")),
        ("v5_close_too_short", with(V5, b"\xff")),
        ("v5_stdin", with(V5, b"\x00hello\n")),
        ("base64_stdin", with(BASE64, b"0aGk=")),
        ("base64_empty_payload", with(BASE64, b"1")),
        ("base64_port_prefix", with(BASE64, b"0kB8=")),
        ("base64_invalid", with(BASE64, b"0!!")),
        ("base64_unpadded", with(BASE64, b"0aGk")),
        ("base64_below_zero_digit", with(BASE64, b"/aGk=")),
        ("base64_v5_close", with(BASE64 | V5, b"\xff\x00")),
    ]
}

#[test]
fn ws_channel_corpus_replays() {
    let dir = corpus();
    if std::env::var_os("PODWAY_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, seed) in seeds() {
            std::fs::write(dir.join(name), seed).expect("write seed");
        }
    }
    // The seeds themselves, even where the corpus folder is missing.
    for (_, seed) in seeds() {
        ws_channel_message(&seed);
    }
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/ws_channel exists") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("read seed");
        ws_channel_message(&data);
        replayed += 1;
    }
    assert!(
        replayed >= seeds().len(),
        "only {replayed} seeds in {}",
        dir.display()
    );
}
