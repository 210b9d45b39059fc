//! State shared by the session's tasks and handles: the stream table, id counters, pending pings,
//! the outgoing queues and the signals between them.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::flow::{self, SessionWindows, StreamWindows};
use super::{Config, PendingStream, Role};
use crate::error::Error;
use crate::frame::{Frame, GoAway, GoAwayStatus, MAX_STREAM_ID, Ping, RstStatus, RstStream};
use crate::headers::Headers;

/// Control frames queued beyond this make the connection reader wait for the writer.
const CONTROL_QUEUE_LIMIT: usize = 1024;

/// One stream's bookkeeping.
#[derive(Debug)]
pub(crate) struct StreamEntry {
    /// Created by us (SYN_STREAM sent) rather than by the peer.
    pub local: bool,
    /// SYN_REPLY sent (peer-created) or received (local-created); DATA before it is dropped.
    pub replied: bool,
    /// Resolves `Session::open` once SYN_REPLY or RST_STREAM arrives.
    pub reply_tx: Option<oneshot::Sender<Result<(), Error>>>,
    /// Received payloads not yet read.
    pub recv_buf: VecDeque<Bytes>,
    /// Total bytes in `recv_buf`.
    pub buffered: usize,
    /// The peer finished sending (FIN or RST) or the session ended: reads hit EOF once drained.
    pub remote_done: bool,
    /// The peer half-closed with FIN (as opposed to a reset or the session's end).
    pub fin_received: bool,
    /// The status of a RST_STREAM from the peer.
    pub reset_by_peer: Option<RstStatus>,
    /// We finished sending (FIN or RST queued).
    pub local_done: bool,
    /// We reset the stream: late DATA from the peer is dropped quietly.
    pub reset_locally: bool,
    /// Task waiting in `poll_read`.
    pub read_waker: Option<Waker>,
    /// The receive half (or the unsplit stream, or the pending stream) is alive.
    pub recv_handle: bool,
    /// The send half (or the unsplit stream, or the pending stream) is alive.
    pub send_handle: bool,
    /// Flow-control windows in both directions.
    pub windows: StreamWindows,
    /// Task waiting in `poll_write` for send window.
    pub write_waker: Option<Waker>,
}

impl StreamEntry {
    pub fn new(local: bool, windows: StreamWindows) -> Self {
        StreamEntry {
            local,
            replied: false,
            reply_tx: None,
            recv_buf: VecDeque::new(),
            buffered: 0,
            remote_done: false,
            fin_received: false,
            reset_by_peer: None,
            local_done: false,
            reset_locally: false,
            read_waker: None,
            recv_handle: true,
            send_handle: true,
            windows,
            write_waker: None,
        }
    }

    /// Wakes a writer waiting for send window (credit arrived or the stream ended).
    pub fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// Marks the receive side finished and wakes a waiting reader.
    pub fn finish_remote(&mut self) {
        self.remote_done = true;
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }
}

/// Mutable session state behind one mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub streams: HashMap<u32, StreamEntry>,
    /// Next id for a stream we open.
    pub next_local_id: u32,
    /// Lowest id the peer may use for its next stream.
    pub next_peer_id: u32,
    /// Highest peer-created stream id seen (GOAWAY's last-good id).
    pub last_peer_id: u32,
    pub next_ping_id: u32,
    pub pings: HashMap<u32, oneshot::Sender<()>>,
    /// Where new peer streams go; `None` once the session stops accepting.
    pub incoming: Option<mpsc::Sender<PendingStream>>,
    /// `close()` ran or GOAWAY was sent: no new streams either way.
    pub closing: bool,
    /// The connection is over.
    pub ended: bool,
    /// The peer has shown it does flow control (sent WINDOW_UPDATE or INITIAL_WINDOW_SIZE):
    /// its windows are honoured and it gets WINDOW_UPDATE as we consume.
    pub peer_flow_control: bool,
    /// The peer's INITIAL_WINDOW_SIZE (the SPDY/3 default until it says otherwise).
    pub peer_initial_window: i64,
    /// The SPDY/3.1 session windows (stream 0).
    pub session: SessionWindows,
}

impl State {
    /// Windows for a stream created now.
    pub fn new_windows(&self, recv_window: u32) -> StreamWindows {
        StreamWindows::new(self.peer_initial_window, recv_window)
    }

    /// Records that `len` bytes of stream `id` were consumed (read or discarded) and returns
    /// the WINDOW_UPDATEs to send, if any are due (only to a peer that does flow control): the
    /// stream's and the session's.
    pub fn consumed(&mut self, id: u32, len: usize, threshold: u32) -> Vec<Frame> {
        let mut updates = Vec::new();
        let aware = self.peer_flow_control;
        if let Some(entry) = self.streams.get_mut(&id) {
            entry.windows.consumed(len);
            if aware
                && !entry.remote_done
                && let Some(update) = entry.windows.take_update(id, threshold)
            {
                updates.push(update);
            }
        }
        self.session.consumed(len);
        if aware {
            updates.extend(self.session.take_update(true));
        }
        updates
    }

    /// Records `len` received bytes that no stream buffers (dropped or discarded at once) and
    /// returns the session WINDOW_UPDATE, if one is due.
    pub fn session_consumed(&mut self, len: usize) -> Option<Frame> {
        self.session.consumed(len);
        if self.peer_flow_control {
            self.session.take_update(false)
        } else {
            None
        }
    }

    /// The peer showed flow control: from now on it gets WINDOW_UPDATE; returns the updates
    /// owed for what was already consumed.
    pub fn peer_does_flow_control(&mut self) -> Vec<Frame> {
        if self.peer_flow_control {
            return Vec::new();
        }
        self.peer_flow_control = true;
        let mut updates: Vec<Frame> = self
            .streams
            .iter_mut()
            .filter(|(_, e)| !e.remote_done)
            .filter_map(|(&id, e)| e.windows.take_update(id, 0))
            .collect();
        updates.extend(self.session.take_update(true));
        updates
    }
}

/// What the windows allow a writer now.
pub(crate) enum Allowance {
    /// This many bytes (at least 1).
    Bytes(usize),
    /// The stream's window (of a peer that does flow control) is exhausted.
    StreamBlocked,
    /// The session window (of a peer that does session flow control) is exhausted.
    SessionBlocked,
}

impl State {
    /// How much of a `want`-byte write (want ≥ 1) on stream `id` the windows allow now.
    pub fn send_allowance(&self, id: u32, want: usize) -> Allowance {
        if !self.peer_flow_control {
            return Allowance::Bytes(want);
        }
        let stream = self.streams.get(&id).map_or(0, |e| e.windows.send);
        if stream <= 0 {
            return Allowance::StreamBlocked;
        }
        let mut limit = stream;
        if self.session.binding {
            if self.session.send <= 0 {
                return Allowance::SessionBlocked;
            }
            limit = limit.min(self.session.send);
        }
        Allowance::Bytes(want.min(usize::try_from(limit).unwrap_or(usize::MAX)))
    }
}

/// Why stream `id` cannot be written, if it cannot.
fn write_error(st: &State, id: u32) -> Option<io::Error> {
    let msg = match st.streams.get(&id) {
        _ if st.ended => "SPDY session closed",
        None => "SPDY stream released",
        Some(e) if e.reset_by_peer.is_some() => {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("SPDY stream {id} was reset by the peer"),
            ));
        }
        Some(e) if e.local_done => "SPDY stream already finished",
        Some(_) => return None,
    };
    Some(io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("{msg}: cannot write to stream {id}"),
    ))
}

/// Everything the tasks and handles of one session share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub role: Role,
    pub config: Config,
    state: Mutex<State>,
    control_tx: mpsc::UnboundedSender<Frame>,
    pub data_tx: mpsc::Sender<Frame>,
    control_queued: AtomicUsize,
    /// The writer took frames from the control queue.
    pub writer_progress: Notify,
    /// A stream's receive buffer shrank or went away (the reader may be waiting).
    pub space: Notify,
    /// A stream finished or disappeared (`close()` may be waiting).
    pub changed: Notify,
    /// The connection is over (set once, by [`Shared::terminate`]).
    pub ended: CancellationToken,
    /// The writer task has flushed and shut down the socket.
    pub finished: CancellationToken,
    /// The peer has sent its first frame (a server writes nothing before).
    pub peer_spoke: CancellationToken,
    epoch: Instant,
    last_activity_ms: AtomicU64,
    /// The per-stream receive window we advertise (INITIAL_WINDOW_SIZE).
    pub recv_window: u32,
}

impl Shared {
    pub fn new(
        role: Role,
        config: Config,
        incoming: mpsc::Sender<PendingStream>,
        control_tx: mpsc::UnboundedSender<Frame>,
        data_tx: mpsc::Sender<Frame>,
    ) -> Arc<Self> {
        let (next_local_id, next_peer_id, next_ping_id) = match role {
            Role::Client => (1, 2, 1),
            Role::Server => (2, 1, 2),
        };
        let recv_window = flow::recv_window_for(config.max_stream_buffer);
        let session = SessionWindows::new(flow::session_window_for(config.max_session_buffer));
        Arc::new(Shared {
            role,
            config,
            recv_window,
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_local_id,
                next_peer_id,
                last_peer_id: 0,
                next_ping_id,
                pings: HashMap::new(),
                incoming: Some(incoming),
                closing: false,
                ended: false,
                peer_flow_control: false,
                peer_initial_window: flow::DEFAULT_WINDOW,
                session,
            }),
            control_tx,
            data_tx,
            control_queued: AtomicUsize::new(0),
            writer_progress: Notify::new(),
            space: Notify::new(),
            changed: Notify::new(),
            ended: CancellationToken::new(),
            finished: CancellationToken::new(),
            peer_spoke: CancellationToken::new(),
            epoch: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        })
    }

    /// Locks the state; a poisoned lock (a panic elsewhere) still yields the data.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Consumed bytes gathered before a WINDOW_UPDATE returns them.
    pub fn update_threshold(&self) -> u32 {
        self.recv_window / 2
    }

    /// Whether `id` has the parity of streams this side creates.
    pub fn is_local_id(&self, id: u32) -> bool {
        match self.role {
            Role::Client => id % 2 == 1,
            Role::Server => id.is_multiple_of(2),
        }
    }

    /// Queues a control frame; it overtakes queued DATA.
    pub fn send_control(&self, frame: Frame) {
        // Counted before it is queued: the writer may take it (and count it out) at once, and
        // a count that dipped below zero would read as a full queue and stall the reader.
        self.control_queued.fetch_add(1, Ordering::Relaxed);
        if self.control_tx.send(frame).is_err() {
            self.control_queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Queues RST_STREAM for `id`.
    pub fn send_rst(&self, stream_id: u32, status: RstStatus) {
        self.send_control(Frame::RstStream(RstStream { stream_id, status }));
    }

    /// Queues a frame behind the DATA already queued (from a synchronous context such as `Drop`).
    pub fn send_ordered(&self, frame: Frame) {
        match self.data_tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(frame)) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        let tx = self.data_tx.clone();
                        rt.spawn(async move {
                            let _ = tx.send(frame).await;
                        });
                    }
                    Err(_) => self.send_control(frame),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Called by the writer for each control frame it took.
    pub fn control_taken(&self) {
        self.control_queued.fetch_sub(1, Ordering::Relaxed);
        self.writer_progress.notify_waiters();
    }

    /// Waits until the control queue is short enough (or the session ended).
    pub async fn control_backpressure(&self) {
        loop {
            let progress = self.writer_progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.control_queued.load(Ordering::Relaxed) <= CONTROL_QUEUE_LIMIT
                || self.ended.is_cancelled()
            {
                return;
            }
            tokio::select! {
                _ = progress => {}
                _ = self.ended.cancelled() => return,
            }
        }
    }

    /// Records that a frame was read or written (resets the idle timer).
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// The instant of the last frame read or written.
    pub fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Why stream `id` cannot be written, if it cannot.
    pub fn write_error(&self, id: u32) -> Option<io::Error> {
        write_error(&self.lock(), id)
    }

    /// Whether some of a `want`-byte write on stream `id` may be sent now: an error if the
    /// stream cannot be written, `Pending` (waker registered) while a window that binds us is
    /// exhausted.
    pub fn poll_send_window(
        &self,
        id: u32,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        if let Some(e) = write_error(&st, id) {
            return Poll::Ready(Err(e));
        }
        match st.send_allowance(id, want) {
            Allowance::Bytes(_) => Poll::Ready(Ok(())),
            Allowance::StreamBlocked => {
                if let Some(entry) = st.streams.get_mut(&id) {
                    entry.write_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Allowance::SessionBlocked => {
                st.session.waiters.insert(id, cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Deducts what the windows allow of a `want`-byte write on stream `id` from them and
    /// returns it; `None` if nothing is allowed now.
    pub fn take_send_window(&self, id: u32, want: usize) -> Option<usize> {
        let mut st = self.lock();
        let Allowance::Bytes(n) = st.send_allowance(id, want) else {
            return None;
        };
        // Counted even when not binding, so that the windows are right once they bind.
        st.session.send -= n as i64;
        if let Some(entry) = st.streams.get_mut(&id) {
            entry.windows.send -= n as i64;
        }
        Some(n)
    }

    /// Allocates the next ping id and registers its waiter.
    pub fn start_ping(&self) -> Result<oneshot::Receiver<()>, Error> {
        let mut st = self.lock();
        if st.ended {
            return Err(Error::SessionClosed);
        }
        let id = st.next_ping_id;
        st.next_ping_id = st.next_ping_id.wrapping_add(2);
        let (tx, rx) = oneshot::channel();
        st.pings.insert(id, tx);
        self.send_control(Frame::Ping(Ping { id }));
        Ok(rx)
    }

    /// Registers a new local stream and queues its SYN_STREAM (under the lock, so ids go out in
    /// increasing order).
    pub fn start_open(
        &self,
        headers: Headers,
    ) -> Result<(u32, oneshot::Receiver<Result<(), Error>>), Error> {
        let mut st = self.lock();
        if st.ended || st.closing {
            return Err(Error::SessionClosed);
        }
        let id = st.next_local_id;
        if id > MAX_STREAM_ID {
            return Err(Error::StreamIdsExhausted);
        }
        st.next_local_id += 2;
        let (tx, rx) = oneshot::channel();
        let windows = st.new_windows(self.recv_window);
        let mut entry = StreamEntry::new(true, windows);
        entry.reply_tx = Some(tx);
        st.streams.insert(id, entry);
        self.send_control(Frame::SynStream(crate::frame::SynStream::new(id, headers)));
        Ok((id, rx))
    }

    /// Resets a stream from our side (if not finished yet): RST_STREAM is queued and both
    /// directions end.
    pub fn reset_stream(&self, id: u32, status: RstStatus) {
        let mut st = self.lock();
        let ended = st.ended;
        if let Some(entry) = st.streams.get_mut(&id) {
            if !entry.local_done && !ended {
                // Behind the DATA already written, as in Go where writes are synchronous.
                self.send_ordered(Frame::RstStream(RstStream {
                    stream_id: id,
                    status,
                }));
            }
            entry.local_done = true;
            entry.reset_locally = true;
            entry.finish_remote();
            entry.wake_writer();
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Drops a handle's claim on a stream, removing the stream once no handle is left.
    pub fn release(&self, id: u32, recv: bool, send: bool) {
        let mut st = self.lock();
        let mut discarded = 0;
        if let Some(entry) = st.streams.get_mut(&id) {
            if recv {
                entry.recv_handle = false;
                entry.recv_buf.clear();
                discarded = std::mem::take(&mut entry.buffered);
            }
            if send {
                entry.send_handle = false;
                entry.write_waker = None;
            }
            if !entry.recv_handle && !entry.send_handle {
                st.streams.remove(&id);
            } else if discarded > 0 {
                // The peer's window must not stay eaten by bytes nobody will read.
                let updates = st.consumed(id, discarded, 0);
                if !st.ended {
                    for update in updates {
                        self.send_control(update);
                    }
                }
            }
        }
        drop(st);
        self.space.notify_waiters();
        self.changed.notify_waiters();
    }

    /// Begins an orderly close: marks the session closing and returns the frames to send, in
    /// order — RST CANCEL for every stream we have not finished, then GOAWAY. Returns `None` if
    /// the session had already ended or was already closing.
    pub fn begin_close(&self) -> Option<Vec<Frame>> {
        let mut st = self.lock();
        if st.ended || st.closing {
            return None;
        }
        st.closing = true;
        st.incoming = None;
        let mut frames = Vec::new();
        for (&id, entry) in st.streams.iter_mut() {
            if !entry.local_done {
                entry.local_done = true;
                entry.reset_locally = true;
                frames.push(Frame::RstStream(RstStream {
                    stream_id: id,
                    status: RstStatus::Cancel,
                }));
                entry.finish_remote();
            }
        }
        frames.push(Frame::GoAway(GoAway {
            last_good_stream_id: st.last_peer_id,
            status: GoAwayStatus::Ok,
        }));
        drop(st);
        self.changed.notify_waiters();
        Some(frames)
    }

    /// Whether every remaining stream is finished in both directions.
    pub fn all_streams_done(&self) -> bool {
        self.lock()
            .streams
            .values()
            .all(|e| e.local_done && e.remote_done)
    }

    /// Queues GOAWAY with `status` (once) and ends the session.
    pub fn fail(&self, status: GoAwayStatus, reason: &str) {
        let last_good_stream_id = {
            let mut st = self.lock();
            if st.ended || st.closing {
                None
            } else {
                st.closing = true;
                Some(st.last_peer_id)
            }
        };
        if let Some(last_good_stream_id) = last_good_stream_id {
            self.send_control(Frame::GoAway(GoAway {
                last_good_stream_id,
                status,
            }));
        }
        self.terminate(reason);
    }

    /// Ends the connection: every stream reads EOF and refuses writes, pending opens and pings
    /// fail, the incoming queue closes, and the tasks stop (the writer after flushing what is
    /// queued).
    pub fn terminate(&self, reason: &str) {
        let mut st = self.lock();
        if st.ended {
            return;
        }
        tracing::debug!(role = ?self.role, reason, "SPDY session ended");
        st.ended = true;
        st.closing = true;
        st.incoming = None;
        st.pings.clear();
        for entry in st.streams.values_mut() {
            if let Some(tx) = entry.reply_tx.take() {
                let _ = tx.send(Err(Error::SessionClosed));
            }
            entry.finish_remote();
            entry.wake_writer();
        }
        for (_, w) in st.session.waiters.drain() {
            w.wake();
        }
        drop(st);
        self.ended.cancel();
        self.space.notify_waiters();
        self.changed.notify_waiters();
        self.writer_progress.notify_waiters();
    }
}
