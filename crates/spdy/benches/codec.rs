//! Codec throughput: DATA frames of 16 KiB encoded and decoded (frames/s and bytes/s), and a
//! header block encoded and decoded through the zlib contexts. Run: `cargo bench -p spdy`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spdy::Headers;
use spdy::codec::{FrameDecoder, FrameEncoder};
use spdy::frame::{Data, Frame, SynStream};
use tokio_util::codec::Decoder;

const PAYLOAD: usize = 16 * 1024;
/// Frames per iteration, so per-iteration overhead does not dominate.
const BATCH: usize = 64;

fn data_frame() -> Frame {
    Frame::Data(Data {
        stream_id: 1,
        fin: false,
        payload: Bytes::from(vec![0x5a; PAYLOAD]),
    })
}

fn data_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_16k");
    group.throughput(Throughput::Elements(BATCH as u64));
    let frame = data_frame();
    let mut encoder = FrameEncoder::new().unwrap();
    let mut out = BytesMut::with_capacity(BATCH * (PAYLOAD + 8));
    group.bench_function("encode_frames", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                encoder.encode_ref(black_box(&frame), &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    let mut wire = BytesMut::new();
    for _ in 0..BATCH {
        encoder.encode_ref(&frame, &mut wire).unwrap();
    }
    let wire = wire.freeze();
    let mut decoder = FrameDecoder::new();
    group.bench_function("decode_frames", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            let mut n = 0;
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                black_box(&f);
                n += 1;
            }
            assert_eq!(n, BATCH);
        })
    });
    group.throughput(Throughput::Bytes((BATCH * PAYLOAD) as u64));
    group.bench_function("encode_bytes", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                encoder.encode_ref(black_box(&frame), &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    group.bench_function("decode_bytes", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                black_box(&f);
            }
        })
    });
    group.finish();
}

fn header_blocks(c: &mut Criterion) {
    let headers: Headers = [
        ("streamtype", "data"),
        ("port", "8080"),
        ("requestid", "12"),
    ]
    .into_iter()
    .collect();
    let frame = Frame::SynStream(SynStream::new(1, headers));
    let mut group = c.benchmark_group("header_block");
    group.throughput(Throughput::Elements(1));
    // One context per direction for the whole run, as in a session.
    let mut encoder = FrameEncoder::new().unwrap();
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    group.bench_function("syn_stream_encode_decode", |b| {
        b.iter(|| {
            encoder.encode_ref(black_box(&frame), &mut buf).unwrap();
            black_box(decoder.decode(&mut buf).unwrap().unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, data_frames, header_blocks);
criterion_main!(benches);
