//! Shared helpers: session pairs over loopback TCP and a raw frame-level peer.
#![allow(dead_code)]

use bytes::BytesMut;
use spdy::codec::Codec;
use spdy::frame::Frame;
use spdy::{Config, Incoming, Role, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

/// Two connected loopback sockets.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), server.unwrap().0)
}

/// A client session and a server session connected over loopback TCP.
pub struct Pair {
    pub client: Session,
    pub client_incoming: Incoming,
    pub server: Session,
    pub server_incoming: Incoming,
}

pub async fn session_pair(config: Config) -> Pair {
    let (c, s) = tcp_pair().await;
    let (client, client_incoming) = Session::new(c, Role::Client, config.clone());
    let (server, server_incoming) = Session::new(s, Role::Server, config);
    Pair {
        client,
        client_incoming,
        server,
        server_incoming,
    }
}

/// A frame-level peer that speaks raw SPDY frames over TCP.
pub struct RawPeer {
    pub io: TcpStream,
    codec: Codec,
    buf: BytesMut,
}

impl RawPeer {
    pub fn new(io: TcpStream) -> Self {
        RawPeer {
            io,
            codec: Codec::new().unwrap(),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(frame, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` at EOF (or a reset connection).
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next frame within `wait`; `None` at EOF or when nothing came in time.
    pub async fn recv_within(&mut self, wait: std::time::Duration) -> Option<Frame> {
        tokio::time::timeout(wait, self.recv()).await.ok().flatten()
    }

    /// The next frame that is not SETTINGS (a session's first frame is its SETTINGS).
    pub async fn recv_skip_settings(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await? {
                Frame::Settings(_) => continue,
                f => return Some(f),
            }
        }
    }

    /// Every frame until EOF.
    pub async fn recv_all(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv().await {
            frames.push(f);
        }
        frames
    }
}

/// A server session whose peer is a raw frame-level client.
pub async fn raw_client_to_server(config: Config) -> (RawPeer, Session, Incoming) {
    let (c, s) = tcp_pair().await;
    let (server, incoming) = Session::new(s, Role::Server, config);
    (RawPeer::new(c), server, incoming)
}

/// A client session whose peer is a raw frame-level server.
pub async fn raw_server_to_client(config: Config) -> (RawPeer, Session, Incoming) {
    let (c, s) = tcp_pair().await;
    let (client, incoming) = Session::new(c, Role::Client, config);
    (RawPeer::new(s), client, incoming)
}

/// Opens a stream on `client` and accepts it from `incoming`.
pub async fn open_accept(
    client: &Session,
    incoming: &mut Incoming,
    headers: spdy::Headers,
) -> (spdy::Stream, spdy::Stream) {
    let accept = async {
        let pending = incoming.accept().await.unwrap();
        assert_eq!(pending.headers(), &headers);
        pending.accept()
    };
    let (client, server) = tokio::join!(client.open(headers.clone()), accept);
    (client.unwrap(), server)
}

pub fn headers(pairs: &[(&str, &str)]) -> spdy::Headers {
    pairs.iter().copied().collect()
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
