use super::*;
use proptest::prelude::*;

fn kube_headers(streamtype: &str) -> Headers {
    let mut h = Headers::new();
    h.insert("streamtype", streamtype);
    h.insert("port", "8080");
    h.insert("requestid", "0");
    h
}

#[test]
fn first_block_carries_level9_zlib_header_and_dictionary_id() {
    let mut enc = HeaderEncoder::new().unwrap();
    let mut out = BytesMut::new();
    enc.encode(&kube_headers("error"), &mut out).unwrap();
    assert_eq!(&out[..6], &[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
    assert_eq!(&out[out.len() - 4..], &[0x00, 0x00, 0xff, 0xff]);
    // The second block continues the stream: no zlib header.
    let mut second = BytesMut::new();
    enc.encode(&kube_headers("data"), &mut second).unwrap();
    assert_ne!(&second[..2], &[0x78, 0xf9]);
    assert_eq!(&second[second.len() - 4..], &[0x00, 0x00, 0xff, 0xff]);
}

/// kubectl 1.32's second SYN_STREAM block (PROTOCOLS §1.2) decodes after our compression of the
/// first block: the inflater's window only depends on the uncompressed bytes, so this holds even
/// where our deflate choices differ from Go's.
#[test]
fn observed_go_continuation_block_decodes() {
    let mut enc = HeaderEncoder::new().unwrap();
    let mut first = BytesMut::new();
    enc.encode(&kube_headers("error"), &mut first).unwrap();
    let mut dec = HeaderDecoder::default();
    assert_eq!(dec.decode(&first).unwrap(), kube_headers("error"));
    let observed = [
        0xc2, 0xaa, 0x19, 0x54, 0x0e, 0x25, 0x12, 0xd6, 0x0b, 0x00, 0x00, 0x00, 0xff, 0xff,
    ];
    let second = dec.decode(&observed).unwrap();
    assert_eq!(second.get("streamtype"), Some("data"));
    assert_eq!(second.get("port"), Some("8080"));
    assert_eq!(second.get("requestid"), Some("0"));
    assert_eq!(second.len(), 3);
}

/// Our blocks, fed in order to one standard zlib inflater (with the dictionary), are one valid
/// stream: across blocks that push the dictionary out of the encoder's 2 KiB history, with
/// repeated headers compressed against earlier blocks.
#[test]
fn blocks_form_one_zlib_stream_for_a_standard_inflater() {
    let mut enc = HeaderEncoder::new().unwrap();
    let mut zlib = Decompress::new(true);
    let mut sizes = Vec::new();
    for i in 0..200u32 {
        let mut h = kube_headers(if i % 2 == 0 { "error" } else { "data" });
        h.insert("requestid", &(i / 2).to_string());
        h.insert("x-filler", &"ab".repeat((i % 37) as usize * 7));
        let mut block = BytesMut::new();
        enc.encode(&h, &mut block).unwrap();
        sizes.push(block.len());
        let mut out = vec![0u8; 64 * 1024];
        let before = zlib.total_out();
        let mut status = zlib.decompress(&block, &mut out, FlushDecompress::Sync);
        if let Err(e) = &status {
            assert_eq!(e.needs_dictionary(), Some(DICTIONARY_ADLER32));
            zlib.set_dictionary(&DICTIONARY).unwrap();
            let consumed = zlib.total_in() as usize;
            status = zlib.decompress(&block[consumed..], &mut out, FlushDecompress::Sync);
        }
        status.unwrap();
        let produced = (zlib.total_out() - before) as usize;
        assert_eq!(decode_nv(&out[..produced]).unwrap(), h, "block {i}");
    }
    assert!(enc.history.len() <= HISTORY);
    // A block repeating the previous pair's headers refers back to it.
    let mut enc = HeaderEncoder::new().unwrap();
    let (mut first, mut again) = (BytesMut::new(), BytesMut::new());
    enc.encode(&kube_headers("data"), &mut first).unwrap();
    enc.encode(&kube_headers("data"), &mut again).unwrap();
    assert!(again.len() < 16, "repeat block is {} bytes", again.len());
}

#[test]
fn nv_layout_is_counted_and_length_prefixed() {
    let mut h = Headers::new();
    h.insert("StreamType", "error");
    let nv = encode_nv(&h).unwrap();
    assert_eq!(
        nv,
        b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error".to_vec()
    );
    assert_eq!(encode_nv(&Headers::new()).unwrap(), vec![0, 0, 0, 0]);
}

#[test]
fn multiple_values_join_with_nul_and_split_back() {
    let mut h = Headers::new();
    h.insert("a", "1");
    h.insert("b", "2");
    h.insert("A", "3");
    let nv = encode_nv(&h).unwrap();
    assert_eq!(
        nv,
        b"\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x031\x003\x00\x00\x00\x01b\x00\x00\x00\x012"
            .to_vec()
    );
    let back = decode_nv(&nv).unwrap();
    let pairs: Vec<_> = back.iter().collect();
    assert_eq!(pairs, vec![("a", "1"), ("a", "3"), ("b", "2")]);
}

#[test]
fn upper_case_and_duplicate_names_are_stream_errors() {
    let upper = b"\x00\x00\x00\x01\x00\x00\x00\x01A\x00\x00\x00\x00";
    let e = decode_nv(upper).unwrap_err();
    assert!(matches!(e, HeaderError::InvalidName(_)) && e.is_stream_level());
    let dup = b"\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x00\x00";
    let e = decode_nv(dup).unwrap_err();
    assert!(matches!(e, HeaderError::DuplicateName(_)) && e.is_stream_level());
}

#[test]
fn structural_nv_errors_are_connection_errors() {
    for bad in [
        &b"\x00\x00"[..],
        b"\x00\x00\x00\x01\x00\x00\x00\x05ab",
        b"\x00\x00\x00\x00x",
        b"\xff\xff\xff\xff",
    ] {
        let e = decode_nv(bad).unwrap_err();
        assert!(!e.is_stream_level(), "{e}");
    }
}

#[test]
fn decompression_bomb_is_an_error() {
    // 10 MiB of one value compresses to a few KiB.
    let mut h = Headers::new();
    h.insert("x", &"a".repeat(10 * 1024 * 1024));
    let mut enc = HeaderEncoder::new().unwrap();
    let mut block = BytesMut::new();
    enc.encode(&h, &mut block).unwrap();
    assert!(block.len() < 64 * 1024);
    let mut dec = HeaderDecoder::default();
    assert!(matches!(
        dec.decode(&block),
        Err(HeaderError::TooLarge {
            max: DEFAULT_MAX_HEADER_BLOCK
        })
    ));
}

#[test]
fn wrong_dictionary_is_rejected() {
    // A zlib header asking for dictionary id 0x00000001 (FDICT, check bits valid).
    let mut dec = HeaderDecoder::default();
    let e = dec
        .decode(&[0x78, 0xbb, 0x00, 0x00, 0x00, 0x01, 0x00])
        .unwrap_err();
    assert!(matches!(e, HeaderError::WrongDictionary(1)), "{e}");
}

#[test]
fn garbage_is_a_decompression_error() {
    let mut dec = HeaderDecoder::default();
    assert!(dec.decode(&[0xde, 0xad, 0xbe, 0xef]).is_err());
}

fn headers_strategy() -> impl Strategy<Value = Headers> {
    proptest::collection::btree_map(
        "[a-z0-9:-]{1,12}",
        proptest::collection::vec("[ -~]{0,20}", 1..3),
        0..6,
    )
    .prop_map(|m| {
        let mut h = Headers::new();
        for (name, values) in m {
            for v in values {
                h.insert(&name, &v);
            }
        }
        h
    })
}

proptest! {
    #[test]
    fn blocks_round_trip_through_one_stream(blocks in proptest::collection::vec(headers_strategy(), 1..8)) {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut dec = HeaderDecoder::default();
        for h in blocks {
            let mut out = BytesMut::new();
            enc.encode(&h, &mut out).unwrap();
            prop_assert_eq!(dec.decode(&out).unwrap(), h);
        }
    }

    #[test]
    fn nv_round_trips(h in headers_strategy()) {
        prop_assert_eq!(decode_nv(&encode_nv(&h).unwrap()).unwrap(), h);
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_nv(&bytes);
        let _ = HeaderDecoder::default().decode(&bytes);
    }
}
