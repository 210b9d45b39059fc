//! SPDY/3.1 as Kubernetes speaks it: framing, zlib header blocks with the SPDY/3 dictionary and
//! multiplexed sessions over any async byte stream, wire-compatible with Go's moby/spdystream.
//!
//! Layout (after hyperium/h2): [`frame`] holds one plain type per frame with `encode`/`decode`,
//! [`header_block`] the NV format and the per-direction zlib contexts, [`codec`] the tokio-util
//! codec between bytes and frames, and [`session`] the connection tasks and streams.
//!
//! Compatibility with spdystream is deliberate and narrower than the SPDY/3.1 draft: per-stream
//! flow control binds only a peer that has shown it does flow control (sent INITIAL_WINDOW_SIZE
//! or WINDOW_UPDATE, as podway sessions do; Go never does), so windows are never awaited from Go
//! and Go is never sent WINDOW_UPDATE; no HEADERS/NOOP/CREDENTIAL frames are sent, a server sends nothing before the client's first
//! frame, and RST_STREAM from the peer reads as end-of-stream.

pub mod codec;
mod dictionary;
mod error;
pub mod frame;
pub mod fuzzing;
pub mod header_block;
mod headers;
pub mod session;

pub use dictionary::{DICTIONARY, DICTIONARY_ADLER32, DICTIONARY_LEN};
pub use error::Error;
pub use frame::RstStatus;
pub use headers::Headers;
pub use session::{
    Config, Incoming, PendingStream, RecvStream, Role, SendStream, Session, Stream, StreamEnd,
};
