//! SETTINGS: connection parameters. Sessions send and honour only INITIAL_WINDOW_SIZE (Go never
//! sends SETTINGS).

use bytes::{Buf, BufMut, BytesMut};

use super::{FrameError, kind, put_control_head};

/// SETTINGS flag: the receiver should clear persisted settings.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// One SETTINGS entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Entry flags (PERSIST_VALUE 0x1, PERSISTED 0x2).
    pub flags: u8,
    /// Setting id (24 bits), e.g. 7 = INITIAL_WINDOW_SIZE.
    pub id: u32,
    /// Setting value.
    pub value: u32,
}

/// A SETTINGS frame.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// CLEAR_SETTINGS flag.
    pub clear: bool,
    /// The entries in wire order.
    pub entries: Vec<Setting>,
}

impl Settings {
    /// Decodes the payload after the frame header.
    pub fn decode(flags: u8, mut payload: &[u8]) -> Result<Self, FrameError> {
        let bad = FrameError::BadLength {
            frame: "SETTINGS",
            len: payload.len(),
        };
        if payload.len() < 4 {
            return Err(bad);
        }
        let count = payload.get_u32() as usize;
        if count.checked_mul(8) != Some(payload.len()) {
            return Err(bad);
        }
        let entries = (0..count)
            .map(|_| {
                let word = payload.get_u32();
                Setting {
                    flags: (word >> 24) as u8,
                    id: word & 0x00FF_FFFF,
                    value: payload.get_u32(),
                }
            })
            .collect();
        Ok(Settings {
            clear: flags & FLAG_CLEAR_SETTINGS != 0,
            entries,
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let flags = if self.clear { FLAG_CLEAR_SETTINGS } else { 0 };
        put_control_head(dst, kind::SETTINGS, flags, 4 + 8 * self.entries.len());
        dst.put_u32(self.entries.len() as u32);
        for e in &self.entries {
            dst.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00FF_FFFF));
            dst.put_u32(e.value);
        }
    }
}
