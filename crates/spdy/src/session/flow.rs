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
//! WINDOW_UPDATE is never sent to a peer that has not shown flow control: spdystream queues
//! unknown control frames into its bounded per-worker queues, where they could block its reader.

use crate::frame::{Frame, Setting, Settings, WindowUpdate};

/// The SETTINGS id of INITIAL_WINDOW_SIZE.
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// The initial stream window SPDY/3 assumes before any SETTINGS.
pub(crate) const DEFAULT_WINDOW: i64 = 64 * 1024;
/// The largest window SPDY/3 allows (31 bits).
pub(crate) const MAX_WINDOW: i64 = 0x7FFF_FFFF;
/// The smallest receive window we advertise, whatever the configured buffer.
const MIN_RECV_WINDOW: usize = 4 * 1024;

/// The receive window a session advertises for a configured per-stream buffer.
pub(crate) fn recv_window_for(max_stream_buffer: usize) -> u32 {
    // Clamped into 4 KiB..=2^31-1, so the conversion cannot fail.
    u32::try_from(max_stream_buffer.clamp(MIN_RECV_WINDOW, MAX_WINDOW as usize))
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
