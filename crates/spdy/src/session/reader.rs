//! The reader task: decodes the peer's frames and applies them to the session state. It is the
//! only reader of the socket, so pausing it (a full stream buffer) is TCP back-pressure.

use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

use super::PendingStream;
use super::flow;
use super::inbuf::ReadBuffer;
use super::state::{Shared, StreamEntry};
use crate::codec::FrameDecoder;
use crate::error::Error;
use crate::frame::{
    Data, Frame, FrameError, GoAwayStatus, Ping, RstStatus, RstStream, Settings, SynReply,
    SynStream, WindowUpdate,
};

/// Runs until the peer closes, the connection fails or the session ends.
pub(crate) async fn run<R>(shared: Arc<Shared>, mut io: R, mut decoder: FrameDecoder)
where
    R: AsyncRead + Unpin,
{
    let mut input = ReadBuffer::new();
    loop {
        loop {
            match decoder.decode(&mut input.buf) {
                Ok(Some(frame)) => {
                    shared.touch();
                    shared.peer_spoke.cancel();
                    if handle(&shared, frame).await.is_break() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some((stream_id, status)) = e.stream_error() {
                        shared.touch();
                        shared.peer_spoke.cancel();
                        tracing::debug!(stream_id, error = %e, "SPDY stream refused");
                        stream_failed(&shared, stream_id, status, e).await;
                        continue;
                    }
                    tracing::warn!(error = %e, "SPDY connection failed on a malformed frame");
                    shared.peer_spoke.cancel();
                    shared.fail(GoAwayStatus::ProtocolError, "malformed frame");
                    return;
                }
            }
        }
        input.prepare(crate::codec::frame_len(&input.buf).unwrap_or(0));
        let read = tokio::select! {
            r = io.read_buf(&mut input.buf) => r,
            _ = shared.ended.cancelled() => return,
        };
        match read {
            Ok(0) => {
                shared.terminate("peer closed the connection");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "SPDY read failed");
                shared.terminate("read failed");
                return;
            }
        }
    }
}

async fn handle(shared: &Arc<Shared>, frame: Frame) -> ControlFlow<()> {
    match frame {
        Frame::SynStream(f) => on_syn_stream(shared, f).await,
        Frame::SynReply(f) => on_syn_reply(shared, f),
        Frame::RstStream(f) => on_rst_stream(shared, f),
        Frame::Ping(f) => on_ping(shared, f).await,
        Frame::Data(f) => on_data(shared, f).await,
        Frame::GoAway(f) => {
            tracing::debug!(last_good = f.last_good_stream_id, status = ?f.status, "SPDY peer sent GOAWAY");
            shared.terminate("peer sent GOAWAY");
            return ControlFlow::Break(());
        }
        Frame::Settings(f) => on_settings(shared, &f).await,
        Frame::WindowUpdate(f) => return on_window_update(shared, f).await,
        // HEADERS carry nothing Kubernetes uses; their block was still inflated to keep the zlib
        // stream in step.
        Frame::Headers(_) => {}
    }
    ControlFlow::Continue(())
}

/// A frame's headers were unacceptable: refuse that stream only.
async fn stream_failed(shared: &Arc<Shared>, stream_id: u32, status: RstStatus, error: FrameError) {
    shared.control_backpressure().await;
    let known = {
        let mut st = shared.lock();
        if !shared.is_local_id(stream_id) && stream_id >= st.next_peer_id {
            st.next_peer_id = stream_id.saturating_add(2);
            st.last_peer_id = stream_id;
        }
        match st.streams.get_mut(&stream_id) {
            Some(entry) => {
                if let Some(tx) = entry.reply_tx.take() {
                    let _ = tx.send(Err(Error::Frame(error)));
                }
                true
            }
            None => false,
        }
    };
    if known {
        shared.reset_stream(stream_id, status);
    } else {
        shared.send_rst(stream_id, status);
    }
}

async fn on_syn_stream(shared: &Arc<Shared>, f: SynStream) {
    shared.control_backpressure().await;
    let id = f.stream_id;
    let accepted = {
        let mut st = shared.lock();
        if st.closing {
            Err(RstStatus::RefusedStream)
        } else if let Some(entry) = st.streams.get_mut(&id) {
            // A second SYN_STREAM for an open stream breaks that stream.
            entry.local_done = true;
            entry.reset_locally = true;
            entry.finish_remote();
            entry.wake_writer();
            Err(RstStatus::ProtocolError)
        } else if shared.is_local_id(id) || id < st.next_peer_id {
            Err(RstStatus::ProtocolError)
        } else if let Some(tx) = st.incoming.clone() {
            st.next_peer_id = id.saturating_add(2);
            st.last_peer_id = id;
            let windows = st.new_windows(shared.recv_window);
            let mut entry = StreamEntry::new(false, windows);
            entry.remote_done = f.fin;
            entry.fin_received = f.fin;
            entry.local_done = f.unidirectional;
            st.streams.insert(id, entry);
            Ok(tx)
        } else {
            Err(RstStatus::RefusedStream)
        }
    };
    match accepted {
        Ok(tx) => {
            let pending = PendingStream::new(shared.clone(), id, f.headers);
            // A full or dropped queue refuses the stream (the returned PendingStream resets it).
            if tx.try_send(pending).is_err() {
                tracing::debug!(
                    stream_id = id,
                    "SPDY stream refused: nobody accepts streams"
                );
            }
        }
        Err(status) => {
            tracing::debug!(stream_id = id, ?status, "SPDY SYN_STREAM rejected");
            shared.send_rst(id, status);
            shared.changed.notify_waiters();
        }
    }
}

fn on_syn_reply(shared: &Shared, f: SynReply) {
    let mut st = shared.lock();
    match st.streams.get_mut(&f.stream_id) {
        Some(entry) if entry.local && !entry.replied => {
            entry.replied = true;
            if f.fin {
                entry.fin_received = true;
                entry.finish_remote();
            }
            if let Some(tx) = entry.reply_tx.take() {
                let _ = tx.send(Ok(()));
            }
        }
        _ => tracing::debug!(
            stream_id = f.stream_id,
            "SPDY SYN_REPLY for no waiting stream ignored"
        ),
    }
}

fn on_rst_stream(shared: &Shared, f: RstStream) {
    let mut st = shared.lock();
    if let Some(entry) = st.streams.get_mut(&f.stream_id) {
        entry.reset_by_peer = Some(f.status);
        entry.local_done = true;
        entry.finish_remote();
        entry.wake_writer();
        if let Some(tx) = entry.reply_tx.take() {
            let _ = tx.send(Err(Error::Refused {
                stream_id: f.stream_id,
                status: f.status,
            }));
        }
    }
    drop(st);
    shared.changed.notify_waiters();
}

async fn on_ping(shared: &Shared, f: Ping) {
    if shared.is_local_id(f.id) {
        let waiter = shared.lock().pings.remove(&f.id);
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    } else {
        shared.control_backpressure().await;
        shared.send_control(Frame::Ping(f));
    }
}

/// What to do with a DATA frame after looking at the stream.
enum DataAction {
    Done,
    Reset(RstStatus),
    Overrun,
    Wait,
}

async fn on_data(shared: &Shared, mut d: Data) {
    let id = d.stream_id;
    let threshold = shared.update_threshold();
    let len = d.payload.len();
    loop {
        let space = shared.space.notified();
        tokio::pin!(space);
        space.as_mut().enable();
        let action = {
            let mut st = shared.lock();
            let aware = st.peer_flow_control;
            let known_old = if shared.is_local_id(id) {
                id < st.next_local_id
            } else {
                id < st.next_peer_id
            };
            let mut discarded = 0;
            let mut buffered = false;
            let action = match st.streams.get_mut(&id) {
                // The late FIN of a stream we already dropped is harmless.
                None if d.payload.is_empty() && known_old => DataAction::Done,
                None => DataAction::Reset(RstStatus::InvalidStream),
                // spdystream drops DATA before SYN_REPLY; so do we.
                Some(entry) if !entry.replied => DataAction::Done,
                Some(entry) if entry.remote_done => {
                    if entry.reset_locally || entry.reset_by_peer.is_some() {
                        DataAction::Done
                    } else {
                        // The peer already sent FIN on this stream.
                        DataAction::Reset(RstStatus::StreamAlreadyClosed)
                    }
                }
                Some(_) if d.payload.is_empty() && !d.fin => DataAction::Done,
                Some(entry) if aware && len as i64 > entry.windows.recv => DataAction::Overrun,
                Some(entry) if !entry.recv_handle => {
                    entry.windows.receive(len);
                    discarded = len;
                    if d.fin {
                        entry.remote_done = true;
                        entry.fin_received = true;
                    }
                    DataAction::Done
                }
                Some(entry) => {
                    if entry.buffered == 0
                        || entry.buffered + len <= shared.config.max_stream_buffer
                    {
                        entry.windows.receive(len);
                        if len > 0 {
                            entry.recv_buf.push_back(std::mem::take(&mut d.payload));
                            entry.buffered += len;
                            buffered = true;
                        }
                        if d.fin {
                            entry.remote_done = true;
                            entry.fin_received = true;
                        }
                        if let Some(w) = entry.read_waker.take() {
                            w.wake();
                        }
                        DataAction::Done
                    } else {
                        DataAction::Wait
                    }
                }
            };
            if discarded > 0 {
                for update in st.consumed(id, discarded, threshold) {
                    shared.send_control(update);
                }
            } else if !buffered
                && len > 0
                && !matches!(action, DataAction::Wait)
                && let Some(update) = st.session_consumed(len)
            {
                // Dropped at once: it still used the session window.
                shared.send_control(update);
            }
            action
        };
        match action {
            DataAction::Done => {
                if d.fin {
                    shared.changed.notify_waiters();
                }
                return;
            }
            DataAction::Reset(status) => {
                tracing::debug!(
                    stream_id = id,
                    ?status,
                    "SPDY DATA for an unknown or closed stream"
                );
                shared.control_backpressure().await;
                shared.send_rst(id, status);
                return;
            }
            DataAction::Overrun => {
                tracing::debug!(stream_id = id, "SPDY peer overran the stream window");
                flow_error(shared, id).await;
                return;
            }
            DataAction::Wait => {
                tokio::select! {
                    _ = space => {}
                    _ = shared.ended.cancelled() => return,
                }
            }
        }
    }
}

/// The peer broke flow control on stream `id`: RST_STREAM FLOW_CONTROL_ERROR; the stream reads
/// EOF after what was buffered and refuses writes.
async fn flow_error(shared: &Shared, id: u32) {
    shared.control_backpressure().await;
    {
        let mut st = shared.lock();
        if let Some(entry) = st.streams.get_mut(&id) {
            entry.local_done = true;
            entry.reset_locally = true;
            entry.finish_remote();
            entry.wake_writer();
        }
    }
    shared.send_rst(id, RstStatus::FlowControlError);
    shared.changed.notify_waiters();
}

/// SETTINGS: only INITIAL_WINDOW_SIZE matters; it also shows that the peer does flow control.
async fn on_settings(shared: &Shared, f: &Settings) {
    let Some(value) = flow::initial_window_of(f) else {
        return;
    };
    let value = i64::from(value);
    if value > flow::MAX_WINDOW {
        tracing::debug!(value, "SPDY INITIAL_WINDOW_SIZE above 2^31-1 ignored");
        return;
    }
    shared.control_backpressure().await;
    let updates = {
        let mut st = shared.lock();
        let delta = value - st.peer_initial_window;
        st.peer_initial_window = value;
        for entry in st.streams.values_mut() {
            entry.windows.send += delta;
            entry.wake_writer();
        }
        st.peer_does_flow_control()
    };
    for update in updates {
        shared.send_control(update);
    }
}

/// WINDOW_UPDATE: credit for one stream, or on stream 0 for the SPDY/3.1 session window (from
/// then on it binds us). Either shows that the peer does flow control.
async fn on_window_update(shared: &Shared, f: WindowUpdate) -> ControlFlow<()> {
    shared.control_backpressure().await;
    let (updates, overflow) = {
        let mut st = shared.lock();
        let updates = st.peer_does_flow_control();
        let mut overflow = false;
        if f.stream_id == 0 {
            if !st.session.credit(f.delta) {
                drop(st);
                tracing::debug!("SPDY session WINDOW_UPDATE beyond 2^31-1");
                shared.fail(GoAwayStatus::ProtocolError, "session window overflow");
                return ControlFlow::Break(());
            }
        } else if let Some(entry) = st.streams.get_mut(&f.stream_id) {
            overflow = !entry.windows.credit(f.delta) && !entry.local_done;
            entry.wake_writer();
        }
        (updates, overflow)
    };
    for update in updates {
        shared.send_control(update);
    }
    if overflow {
        tracing::debug!(stream_id = f.stream_id, "SPDY WINDOW_UPDATE beyond 2^31-1");
        flow_error(shared, f.stream_id).await;
    }
    ControlFlow::Continue(())
}
