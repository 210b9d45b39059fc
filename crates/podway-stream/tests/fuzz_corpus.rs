//! Replays every seed of `fuzz/corpus/ws_channel/` and `fuzz/corpus/portforward_headers/`
//! through the fuzz targets' entry points, so CI exercises them on stable. With
//! `PODWAY_WRITE_CORPUS=1` it first (re)writes the seeds (see [`podway_stream::fuzzing`]).
use std::path::Path;

use podway_stream::fuzzing::{portforward_headers, ws_channel_message};

/// Writes `seeds` to `fuzz/corpus/<target>/` when asked, then runs `entry` on each seed and on
/// every file of that folder (the fuzzer's finds too).
fn replay(target: &str, seeds: &[(&str, Vec<u8>)], entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    if std::env::var_os("PODWAY_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, seed) in seeds {
            std::fs::write(dir.join(name), seed).expect("write seed");
        }
    }
    // The seeds themselves, even where the corpus folder is missing.
    for (_, seed) in seeds {
        entry(seed);
    }
    let mut replayed = 0;
    for entry_path in std::fs::read_dir(&dir).expect("corpus folder exists") {
        let path = entry_path.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("read seed");
        entry(&data);
        replayed += 1;
    }
    assert!(
        replayed >= seeds.len(),
        "only {replayed} seeds in {}",
        dir.display()
    );
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
    replay("ws_channel", &seeds(), ws_channel_message);
}

/// Port-forward stream headers, one `name: value` per line.
fn portforward_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let huge = format!(
        "streamtype: data\nport: {}\nrequestid: {}\n",
        "9".repeat(4096),
        "1".repeat(4096)
    );
    [
        ("data_valid", "streamtype: data\nport: 8080\nrequestid: 0\n"),
        (
            "error_valid",
            "streamtype: error\nport: 8080\nrequestid: 0\n",
        ),
        ("data_no_request_id", "streamtype: data\nport: 80\n"),
        ("error_uppercase", "StreamType: ERROR\nPort: 65535\n"),
        ("missing_port", "streamtype: data\nrequestid: 1\n"),
        ("missing_streamtype", "port: 8080\nrequestid: 1\n"),
        ("port_zero", "streamtype: data\nport: 0\nrequestid: 2\n"),
        (
            "port_65536",
            "streamtype: error\nport: 65536\nrequestid: 3\n",
        ),
        ("port_negative", "streamtype: data\nport: -80\n"),
        ("port_plus", "streamtype: data\nport: +80\n"),
        ("port_non_numeric", "streamtype: data\nport: http\n"),
        ("port_empty", "streamtype: data\nport\n"),
        ("streamtype_unknown", "streamtype: both\nport: 80\n"),
        (
            "duplicate_port",
            "streamtype: data\nport: 80\nport: 0\nrequestid: 4\n",
        ),
        (
            "duplicate_streamtype",
            "streamtype: error\nstreamtype: data\nport: 80\n",
        ),
        (
            "duplicate_requestid",
            "streamtype: data\nport: 80\nrequestid: 5\nrequestid: 6\n",
        ),
        ("empty", ""),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .chain([("huge_values", huge.into_bytes())])
    .collect()
}

#[test]
fn portforward_headers_corpus_replays() {
    replay(
        "portforward_headers",
        &portforward_seeds(),
        portforward_headers,
    );
}
