//! [`StreamEnd`]: how a reader tells the peer's half-close (FIN) from an abort (RST_STREAM), in
//! both directions, between two of this crate's sessions over loopback TCP.

mod common;

use common::{headers, open_accept, session_pair};
use spdy::{Config, RstStatus, Stream, StreamEnd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which side of a client-opened stream ends it; the other side reads.
#[derive(Debug, Clone, Copy)]
enum Ender {
    Client,
    Server,
}

const BOTH: [Ender; 2] = [Ender::Client, Ender::Server];

/// Opens a stream and returns (ender, reader).
async fn stream_pair(ender: Ender) -> (common::Pair, Stream, Stream) {
    let mut p = session_pair(Config::default()).await;
    let (client, server) = open_accept(
        &p.client,
        &mut p.server_incoming,
        headers(&[("streamtype", "data")]),
    )
    .await;
    match ender {
        Ender::Client => (p, client, server),
        Ender::Server => (p, server, client),
    }
}

/// Everything the reader gets until EOF.
async fn read_all(reader: &mut Stream) -> Vec<u8> {
    let mut got = Vec::new();
    reader.read_to_end(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn fin_reads_as_finished() {
    for ender in BOTH {
        let (_p, mut ender_stream, mut reader) = stream_pair(ender).await;
        assert_eq!(reader.end(), None, "{ender:?}: open stream has no end");
        ender_stream.write_all(b"bye").await.unwrap();
        ender_stream.shutdown().await.unwrap();
        assert_eq!(read_all(&mut reader).await, b"bye", "{ender:?}");
        assert_eq!(reader.end(), Some(StreamEnd::Finished), "{ender:?}");
        // The reader can still answer after the peer's FIN; once it FINs too, both sides see
        // a finished stream.
        reader.write_all(b"ack").await.unwrap();
        reader.shutdown().await.unwrap();
        assert_eq!(read_all(&mut ender_stream).await, b"ack", "{ender:?}");
        assert_eq!(ender_stream.end(), Some(StreamEnd::Finished), "{ender:?}");
        assert_eq!(reader.end(), Some(StreamEnd::Finished), "{ender:?}");
    }
}

#[tokio::test]
async fn rst_reads_as_reset_by_peer_with_its_status() {
    for ender in BOTH {
        for status in [RstStatus::Cancel, RstStatus::InternalError] {
            let (_p, mut ender_stream, mut reader) = stream_pair(ender).await;
            ender_stream.write_all(b"last words").await.unwrap();
            ender_stream.reset(status);
            // Data sent before the RST is still delivered, then EOF.
            assert_eq!(read_all(&mut reader).await, b"last words", "{ender:?}");
            assert_eq!(
                reader.end(),
                Some(StreamEnd::ResetByPeer(status)),
                "{ender:?} {status:?}"
            );
            // Its own FIN afterwards does not turn the reset into a half-close.
            let _ = reader.shutdown().await;
            assert_eq!(reader.end(), Some(StreamEnd::ResetByPeer(status)));
        }
    }
}

#[tokio::test]
async fn own_reset_reads_as_reset_locally_and_the_peer_sees_it() {
    for ender in BOTH {
        let (_p, ender_stream, mut reader) = stream_pair(ender).await;
        let (mut recv, send) = ender_stream.into_split();
        send.reset(RstStatus::Cancel);
        let mut got = Vec::new();
        recv.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        assert_eq!(recv.end(), Some(StreamEnd::ResetLocally), "{ender:?}");
        assert!(read_all(&mut reader).await.is_empty());
        assert_eq!(
            reader.end(),
            Some(StreamEnd::ResetByPeer(RstStatus::Cancel)),
            "{ender:?}"
        );
    }
}

#[tokio::test]
async fn fin_after_data_is_not_a_reset_even_when_the_reader_is_slow() {
    // The reader only starts after FIN and the peer's writes are all in: still `Finished`.
    for ender in BOTH {
        let (_p, mut ender_stream, mut reader) = stream_pair(ender).await;
        let payload = common::pattern(1 << 20, 7);
        let write = async {
            ender_stream.write_all(&payload).await.unwrap();
            ender_stream.shutdown().await.unwrap();
        };
        let read = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            read_all(&mut reader).await
        };
        let ((), got) = tokio::join!(write, read);
        assert!(got == payload, "{ender:?}: payload differs");
        assert_eq!(reader.end(), Some(StreamEnd::Finished), "{ender:?}");
    }
}
