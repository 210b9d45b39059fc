//! Multiplexed SPDY sessions: [`Session`] opens streams and pings, [`Incoming`] hands out the
//! peer's streams, and one reader and one writer task own the socket.
//!
//! Behaviour follows moby/spdystream where it matters for interoperability: windows are only
//! honoured once the peer shows it does flow control (SETTINGS or WINDOW_UPDATE), a server is silent until
//! the client's first frame, SYN_REPLY precedes any DATA, RST_STREAM from
//! the peer reads as EOF, and `close()` resets unfinished streams before GOAWAY.

mod flow;
mod inbuf;
mod outgoing;
mod reader;
mod state;
mod stream;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::RstStatus;
use crate::codec::{FrameDecoder, FrameEncoder};
use crate::error::Error;
use crate::frame::{Frame, SynReply};
use crate::headers::Headers;
use state::Shared;

pub use stream::{MAX_DATA_CHUNK, RecvStream, SendStream, Stream, StreamEnd};

/// How long `open` waits for SYN_REPLY (spdystream's `createStreamResponseTimeout`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `close` waits for streams we half-closed to be finished by the peer.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Peer streams waiting in [`Incoming`] before further ones are refused.
const INCOMING_QUEUE: usize = 256;
/// DATA frames waiting for the writer before writers wait.
const DATA_QUEUE: usize = 64;

/// Which end of the connection this session is; it decides stream and ping id parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that sent the HTTP upgrade request: odd stream and ping ids.
    Client,
    /// The side that answered it: even ids, and silent until the client's first frame.
    Server,
}

/// Session tuning.
#[derive(Clone, Debug)]
pub struct Config {
    /// End the session after this long without any frame read or written (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Send a PING this often (`None`: never).
    pub ping_interval: Option<Duration>,
    /// Received bytes buffered per stream before the connection reader pauses; also the
    /// per-stream receive window advertised to a peer that does flow control.
    pub max_stream_buffer: usize,
    /// The SPDY/3.1 session receive window granted to a peer that does flow control: the
    /// received bytes such a peer may have unread across all streams.
    pub max_session_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: None,
            ping_interval: None,
            max_stream_buffer: 1024 * 1024,
            max_session_buffer: 16 * 1024 * 1024,
        }
    }
}

/// A SPDY session over one connection. Cheap to clone; all clones control the same session.
///
/// The connection runs until the peer closes it or sends GOAWAY, it fails, the idle timeout
/// fires, or [`Session::close`] is called; dropping handles does not close it.
#[derive(Clone, Debug)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Starts a session over `io` and spawns its tasks on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (like `tokio::spawn`).
    pub fn new<IO>(io: IO, role: Role, config: Config) -> (Session, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let shared = Shared::new(role, config.clone(), incoming_tx, control_tx, data_tx);
        shared.touch();
        // Go ignores it; a podway peer learns our window and that we do flow control.
        shared.send_control(flow::initial_settings(shared.recv_window));
        let (read_half, write_half) = tokio::io::split(io);
        let encoder = match FrameEncoder::new() {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(error = %e, "SPDY header compressor could not be created");
                None
            }
        };
        let queues = writer::Queues {
            control: control_rx,
            data: data_rx,
        };
        tokio::spawn(writer::run(shared.clone(), write_half, encoder, queues));
        tokio::spawn(reader::run(shared.clone(), read_half, FrameDecoder::new()));
        if let Some(idle) = config.idle_timeout {
            tokio::spawn(idle_timer(shared.clone(), idle));
        }
        let session = Session { shared };
        if let Some(every) = config.ping_interval {
            tokio::spawn(pinger(session.clone(), every));
        }
        (session, Incoming { rx: incoming_rx })
    }

    /// Opens a stream: sends SYN_STREAM with `headers` and waits (up to 30 s) for SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Error> {
        let (id, reply) = self.shared.start_open(headers.clone())?;
        let mut guard = OpenGuard {
            shared: &self.shared,
            id,
            armed: true,
        };
        let result = match tokio::time::timeout(REPLY_TIMEOUT, reply).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::SessionClosed),
            Err(_) => Err(Error::ReplyTimeout {
                stream_id: id,
                timeout: REPLY_TIMEOUT,
            }),
        };
        result?;
        guard.armed = false;
        Ok(Stream::new(self.shared.clone(), id, headers))
    }

    /// Sends a PING and returns the round-trip time once the peer echoes it.
    pub async fn ping(&self) -> Result<std::time::Duration, Error> {
        let start = tokio::time::Instant::now();
        let rx = self.shared.start_ping()?;
        rx.await.map_err(|_| Error::SessionClosed)?;
        Ok(start.elapsed())
    }

    /// Closes the session as spdystream does: RST_STREAM CANCEL for every stream we have not
    /// finished (after the DATA already written), GOAWAY (last peer stream, OK), then — once the
    /// remaining half-closed streams are finished by the peer or after 30 s — the socket.
    /// Returns when the socket is shut down. A second concurrent call waits for the first.
    pub async fn close(&self) {
        if let Some(frames) = self.shared.begin_close() {
            let shared = &self.shared;
            let orderly = async {
                // Through the data queue, behind the DATA already written.
                for frame in frames {
                    if shared.data_tx.send(frame).await.is_err() {
                        return;
                    }
                }
                loop {
                    let changed = shared.changed.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    if shared.all_streams_done() {
                        return;
                    }
                    changed.await;
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(CLOSE_TIMEOUT, orderly) => {}
                _ = shared.ended.cancelled() => {}
            }
            shared.terminate("closed locally");
        }
        self.shared.finished.cancelled().await;
    }

    /// Resolves once the connection has ended (peer EOF or GOAWAY, error, idle timeout, close).
    pub async fn closed(&self) {
        self.shared.ended.cancelled().await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.ended.is_cancelled()
    }
}

/// Resets and releases a stream whose `open` did not complete (error, timeout, cancellation).
struct OpenGuard<'a> {
    shared: &'a Arc<Shared>,
    id: u32,
    armed: bool,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.reset_stream(self.id, RstStatus::Cancel);
            self.shared.release(self.id, true, true);
        }
    }
}

/// Streams opened by the peer, in arrival order.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<PendingStream>,
}

impl Incoming {
    /// The next stream the peer opened; `None` once the session stops accepting streams.
    pub async fn accept(&mut self) -> Option<PendingStream> {
        self.rx.recv().await
    }
}

/// A stream the peer opened that has not been answered yet. Dropping it rejects it.
#[derive(Debug)]
pub struct PendingStream {
    shared: Arc<Shared>,
    id: u32,
    headers: Headers,
    answered: bool,
}

impl PendingStream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32, headers: Headers) -> Self {
        PendingStream {
            shared,
            id,
            headers,
            answered: false,
        }
    }

    /// The headers of the peer's SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Accepts the stream: SYN_REPLY (empty headers) is queued before anything can be written.
    pub fn accept(mut self) -> Stream {
        self.answered = true;
        {
            let mut st = self.shared.lock();
            let ended = st.ended;
            if let Some(entry) = st.streams.get_mut(&self.id) {
                entry.replied = true;
                if !ended && entry.reset_by_peer.is_none() {
                    self.shared
                        .send_control(Frame::SynReply(SynReply::new(self.id, Headers::new())));
                }
            }
        }
        Stream::new(
            self.shared.clone(),
            self.id,
            std::mem::take(&mut self.headers),
        )
    }

    /// Rejects the stream with RST_STREAM CANCEL.
    pub fn reject(self) {
        // Drop does the work.
    }
}

impl Drop for PendingStream {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.reset_stream(self.id, RstStatus::Cancel);
            self.shared.release(self.id, true, true);
        }
    }
}

async fn idle_timer(shared: Arc<Shared>, idle: Duration) {
    loop {
        let deadline = shared.last_activity() + idle;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shared.ended.cancelled() => return,
        }
        if shared.last_activity() + idle <= tokio::time::Instant::now() {
            tracing::debug!(?idle, "SPDY session idle timeout");
            for frame in shared.begin_close().unwrap_or_default() {
                shared.send_control(frame);
            }
            shared.terminate("idle timeout");
            return;
        }
    }
}

async fn pinger(session: Session, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = session.closed() => return,
        }
        // A missing answer is the idle timeout's business; just do not pile pings up.
        if let Ok(Err(Error::SessionClosed)) = tokio::time::timeout(every, session.ping()).await {
            return;
        }
    }
}
