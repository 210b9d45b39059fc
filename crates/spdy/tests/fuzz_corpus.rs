//! Replays every seed of the fuzz corpora (`fuzz/corpus/<target>/`) through the same entry
//! points the fuzz targets use, so CI exercises them on stable. With `SPDY_WRITE_CORPUS=1` it
//! first (re)writes the seeds: small valid frames and header blocks.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use spdy::Headers;
use spdy::codec::Codec;
use spdy::frame::{
    Data, Frame, GoAway, GoAwayStatus, HeadersFrame, Ping, RstStatus, RstStream, Setting, Settings,
    SynReply, SynStream, WindowUpdate,
};
use spdy::fuzzing::{decode_frames, decode_header_blocks};
use spdy::header_block::HeaderEncoder;
use tokio_util::codec::Encoder;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn sample_headers() -> Headers {
    [("streamtype", "data"), ("port", "8080"), ("requestid", "0")]
        .into_iter()
        .collect()
}

fn sample_frames() -> Vec<(&'static str, Frame)> {
    vec![
        (
            "syn_stream",
            Frame::SynStream(SynStream::new(1, sample_headers())),
        ),
        (
            "syn_reply",
            Frame::SynReply(SynReply::new(1, Headers::new())),
        ),
        (
            "rst_stream",
            Frame::RstStream(RstStream {
                stream_id: 1,
                status: RstStatus::Cancel,
            }),
        ),
        (
            "settings",
            Frame::Settings(Settings {
                clear: false,
                entries: vec![Setting {
                    flags: 0,
                    id: 7,
                    value: 1 << 20,
                }],
            }),
        ),
        ("ping", Frame::Ping(Ping { id: 1 })),
        (
            "goaway",
            Frame::GoAway(GoAway {
                last_good_stream_id: 3,
                status: GoAwayStatus::Ok,
            }),
        ),
        (
            "headers",
            Frame::Headers(HeadersFrame {
                stream_id: 1,
                fin: false,
                headers: sample_headers(),
            }),
        ),
        (
            "window_update",
            Frame::WindowUpdate(WindowUpdate {
                stream_id: 1,
                delta: 65536,
            }),
        ),
        (
            "data_fin",
            Frame::Data(Data {
                stream_id: 1,
                fin: true,
                payload: Bytes::from_static(b"hello"),
            }),
        ),
    ]
}

fn write_seeds() {
    let frames = corpus("frame_decoder");
    std::fs::create_dir_all(&frames).unwrap();
    let mut codec = Codec::new().unwrap();
    let mut session = BytesMut::new();
    for (name, frame) in sample_frames() {
        // Each frame alone, from a fresh compression context, and all in a row from one.
        let mut alone = BytesMut::new();
        Codec::new()
            .unwrap()
            .encode(frame.clone(), &mut alone)
            .unwrap();
        std::fs::write(frames.join(name), &alone).unwrap();
        codec.encode(frame, &mut session).unwrap();
    }
    std::fs::write(frames.join("session"), &session).unwrap();

    let blocks = corpus("header_block");
    std::fs::create_dir_all(&blocks).unwrap();
    let mut encoder = HeaderEncoder::new().unwrap();
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    encoder.encode(&sample_headers(), &mut first).unwrap();
    encoder.encode(&Headers::new(), &mut second).unwrap();
    let mut two = (first.len() as u16).to_be_bytes().to_vec();
    two.extend_from_slice(&first);
    two.extend_from_slice(&second);
    std::fs::write(blocks.join("two_blocks"), two).unwrap();
    let nv = spdy::header_block::encode_nv(&sample_headers()).unwrap();
    std::fs::write(blocks.join("plain_nv"), nv).unwrap();
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(corpus(target))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn seed_corpora_replay_through_the_decoders() {
    if std::env::var_os("SPDY_WRITE_CORPUS").is_some() {
        write_seeds();
    }
    let frames = seeds("frame_decoder");
    assert!(frames.len() >= sample_frames().len(), "frame seeds missing");
    for (name, bytes) in &frames {
        // Committed seeds are valid input; anything the fuzzer adds must at least not panic.
        let n = decode_frames(bytes);
        if name == "session" {
            assert_eq!(n, sample_frames().len(), "{name}");
        }
    }
    let blocks = seeds("header_block");
    assert!(blocks.len() >= 2, "header block seeds missing");
    for (name, bytes) in &blocks {
        let n = decode_header_blocks(bytes);
        match name.as_str() {
            "two_blocks" => assert_eq!(n, 2, "{name}"),
            "plain_nv" => assert_eq!(n, 1, "{name}"),
            _ => {}
        }
    }
}
