//! Per-stream flow control that only binds peers which do it.
//!
//! Go's spdystream never sends SETTINGS or WINDOW_UPDATE and ignores both, so a session starts
//! out treating the peer's windows as infinite and relies on pausing the connection reader
//! (TCP back-pressure) to bound memory. Every session advertises its receive window in an
//! initial SETTINGS (INITIAL_WINDOW_SIZE); a peer that sends us that setting or any
//! WINDOW_UPDATE has shown it does flow control. From then on we honour its windows when
//! sending, send it WINDOW_UPDATE as the application consumes data, and reset a stream it
//! overruns with FLOW_CONTROL_ERROR. Two podway sessions thus get real per-stream windows: a
//! stalled stream stops its own sender and never the connection.
//!
//! SPDY/3.1 adds a session window (WINDOW_UPDATE on stream 0), initially 64 KiB, that bounds
//! the DATA of all streams together. We return consumed bytes on it to a peer that does flow
//! control (the first such update also raises the window to our session buffer size), and
//! honour the peer's session window once it has sent one itself: a peer that does only
//! per-stream flow control is never held to 64 KiB per session.
//!
//! WINDOW_UPDATE is never sent to a peer that has not shown flow control: spdystream queues
//! unknown control frames into its bounded per-worker queues, where they could block its reader.

use std::collections::HashMap;
use std::task::Waker;

use crate::frame::{Frame, Setting, Settings, WindowUpdate};

/// The SETTINGS id of INITIAL_WINDOW_SIZE.
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// The initial stream window SPDY/3 assumes before any SETTINGS.
pub(crate) const DEFAULT_WINDOW: i64 = 64 * 1024;
/// The largest window SPDY/3 allows (31 bits).
pub(crate) const MAX_WINDOW: i64 = 0x7FFF_FFFF;
/// The smallest receive window we advertise, whatever the configured buffer.
const MIN_RECV_WINDOW: usize = 4 * 1024;
/// The session window SPDY/3.1 starts every connection with, in both directions.
pub(crate) const DEFAULT_SESSION_WINDOW: i64 = 64 * 1024;

/// The receive window a session advertises for a configured per-stream buffer.
pub(crate) fn recv_window_for(max_stream_buffer: usize) -> u32 {
    // Clamped into 4 KiB..=2^31-1, so the conversion cannot fail.
    u32::try_from(max_stream_buffer.clamp(MIN_RECV_WINDOW, MAX_WINDOW as usize))
        .unwrap_or(MAX_WINDOW as u32)
}

/// The session receive window we grant for a configured session buffer (at least the default).
pub(crate) fn session_window_for(max_session_buffer: usize) -> u32 {
    u32::try_from(max_session_buffer.clamp(DEFAULT_SESSION_WINDOW as usize, MAX_WINDOW as usize))
        .unwrap_or(MAX_WINDOW as u32)
}

/// The SETTINGS frame every session sends first.
pub(crate) fn initial_settings(recv_window: u32) -> Frame {
    Frame::Settings(Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: recv_window,
        }],
    })
}

/// The INITIAL_WINDOW_SIZE a SETTINGS frame carries, if any (the last one wins).
pub(crate) fn initial_window_of(settings: &Settings) -> Option<u32> {
    settings
        .entries
        .iter()
        .rev()
        .find(|s| s.id == SETTINGS_INITIAL_WINDOW_SIZE)
        .map(|s| s.value)
}

/// One stream's windows, in both directions.
#[derive(Debug)]
pub(crate) struct StreamWindows {
    /// Bytes we may still send (may go negative when the peer shrinks its initial window, or
    /// while the peer has not shown flow control and the window is not honoured).
    pub send: i64,
    /// Bytes the peer may still send us before it overruns.
    pub recv: i64,
    /// Bytes consumed (read or discarded) but not yet returned to the peer by WINDOW_UPDATE.
    pub unacked: u32,
}

impl StreamWindows {
    /// Windows for a new stream: `send` as the peer last announced, `recv` as we advertise.
    pub fn new(send: i64, recv: u32) -> Self {
        StreamWindows {
            send,
            recv: i64::from(recv),
            unacked: 0,
        }
    }

    /// Accounts `len` received bytes; `false` if they overran the window we advertised.
    pub fn receive(&mut self, len: usize) -> bool {
        self.recv -= len as i64;
        self.recv >= 0
    }

    /// Records that the application consumed (or we discarded) `len` bytes.
    pub fn consumed(&mut self, len: usize) {
        self.unacked = self
            .unacked
            .saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
    }

    /// A WINDOW_UPDATE returning the consumed bytes, once they reach `threshold` (or any amount
    /// when `threshold` is 0).
    pub fn take_update(&mut self, stream_id: u32, threshold: u32) -> Option<Frame> {
        if self.unacked == 0 || self.unacked < threshold {
            return None;
        }
        let delta = self.unacked.min(MAX_WINDOW as u32);
        self.unacked -= delta;
        self.recv += i64::from(delta);
        Some(Frame::WindowUpdate(WindowUpdate { stream_id, delta }))
    }

    /// Adds the peer's credit; `false` if the window would exceed 2^31-1 (a protocol violation).
    pub fn credit(&mut self, delta: u32) -> bool {
        self.send += i64::from(delta);
        self.send <= MAX_WINDOW
    }
}

/// The session-level windows (stream 0) of SPDY/3.1.
#[derive(Debug)]
pub(crate) struct SessionWindows {
    /// Bytes we may still send on the whole session; counted from the start, binding only
    /// once `binding`.
    pub send: i64,
    /// The peer sent a session WINDOW_UPDATE: it does session flow control.
    pub binding: bool,
    /// Writers of streams waiting for session window, by stream id.
    pub waiters: HashMap<u32, Waker>,
    /// The receive window we grant the peer.
    recv_window: u32,
    /// Bytes consumed (or discarded) and not yet returned to the peer.
    unacked: u64,
    /// Our first session WINDOW_UPDATE (which raises 64 KiB to `recv_window`) went out.
    raised: bool,
}

impl SessionWindows {
    /// Fresh windows; we grant `recv_window` once the peer shows flow control.
    pub fn new(recv_window: u32) -> Self {
        SessionWindows {
            send: DEFAULT_SESSION_WINDOW,
            binding: false,
            waiters: HashMap::new(),
            recv_window,
            unacked: 0,
            raised: false,
        }
    }

    /// Records that `len` received bytes were consumed or discarded.
    pub fn consumed(&mut self, len: usize) {
        self.unacked = self.unacked.saturating_add(len as u64);
    }

    /// The session WINDOW_UPDATE due now, if any: the first one (raising the window) as soon
    /// as anything was consumed (`eager`, for bytes the application read) or half the default
    /// window was dropped; later ones once half the window is consumed.
    pub fn take_update(&mut self, eager: bool) -> Option<Frame> {
        if self.unacked == 0
            || (!self.raised && !eager && self.unacked < DEFAULT_SESSION_WINDOW as u64 / 2)
        {
            return None;
        }
        let extra = if self.raised {
            if self.unacked < u64::from(self.recv_window / 2) {
                return None;
            }
            0
        } else {
            u64::from(self.recv_window) - DEFAULT_SESSION_WINDOW as u64
        };
        let delta = (self.unacked + extra).min(MAX_WINDOW as u64);
        // The raise goes out first, so what is left of `unacked` is only ever consumed bytes.
        self.unacked -= delta - extra.min(delta);
        self.raised = true;
        Some(Frame::WindowUpdate(WindowUpdate {
            stream_id: 0,
            delta: u32::try_from(delta).unwrap_or(MAX_WINDOW as u32),
        }))
    }

    /// The peer's session credit; `false` if its window would exceed 2^31-1.
    pub fn credit(&mut self, delta: u32) -> bool {
        self.binding = true;
        self.send += i64::from(delta);
        for (_, w) in self.waiters.drain() {
            w.wake();
        }
        self.send <= MAX_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(f: Option<Frame>) -> Option<u32> {
        match f {
            Some(Frame::WindowUpdate(w)) => {
                assert_eq!(w.stream_id, 0);
                Some(w.delta)
            }
            None => None,
            Some(other) => panic!("not a WINDOW_UPDATE: {other:?}"),
        }
    }

    #[test]
    fn session_updates_raise_once_then_return_half_windows() {
        let mut s = SessionWindows::new(1 << 20);
        assert_eq!(
            delta(s.take_update(true)),
            None,
            "nothing consumed, nothing sent"
        );
        s.consumed(10);
        assert_eq!(
            delta(s.take_update(false)),
            None,
            "a few dropped bytes wait"
        );
        assert_eq!(delta(s.take_update(true)), Some((1 << 20) - 65536 + 10));
        s.consumed((1 << 19) - 1);
        assert_eq!(delta(s.take_update(true)), None);
        s.consumed(1);
        assert_eq!(delta(s.take_update(false)), Some(1 << 19));
        assert_eq!(delta(s.take_update(true)), None);
    }

    #[test]
    fn session_credit_binds_and_overflow_is_reported() {
        let mut s = SessionWindows::new(1 << 20);
        assert!(!s.binding);
        assert!(s.credit(1000));
        assert!(s.binding);
        assert_eq!(s.send, DEFAULT_SESSION_WINDOW + 1000);
        assert!(!s.credit(MAX_WINDOW as u32));
    }
}
