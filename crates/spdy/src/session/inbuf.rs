//! The reader's receive buffer. Socket reads go into a large buffer that decoded DATA payloads
//! keep pointing into (no copy); an exhausted buffer is set aside and reused once every payload
//! cut from it has been read, so a busy connection reads in large chunks without allocating
//! (and faulting in) fresh memory per read. A new session starts small.

use bytes::BytesMut;

/// The first buffer of a session (an idle session holds little).
const INITIAL: usize = 16 * 1024;
/// Buffers allocated once the connection carries more than that.
const LARGE: usize = 128 * 1024;
/// Free space below which the buffer is replaced before reading.
const MIN_FREE: usize = 8 * 1024;
/// Exhausted buffers kept for reuse: enough to cover a full stream buffer (1 MiB by default)
/// of payloads still waiting to be read, so a busy stream does not fault in fresh memory.
const SPARES: usize = 10;
/// Unreferenced spares kept once the traffic calms down.
const KEEP: usize = 2;

/// The buffer the reader reads into and decodes from.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    /// Undecoded bytes, with room for the next read.
    pub buf: BytesMut,
    spares: Vec<BytesMut>,
}

impl ReadBuffer {
    pub fn new() -> Self {
        ReadBuffer {
            buf: BytesMut::with_capacity(INITIAL),
            spares: Vec::new(),
        }
    }

    /// Makes sure a read has room, moving the undecoded bytes (a partial frame of `frame`
    /// bytes in all, 0 if unknown) to a reused or new buffer when the current one is exhausted
    /// or cannot hold the rest of that frame.
    pub fn prepare(&mut self, frame: usize) {
        self.prune();
        let free = self.buf.capacity() - self.buf.len();
        if free >= MIN_FREE && self.buf.capacity() >= frame {
            return;
        }
        let want = LARGE.max(self.buf.len() + MIN_FREE).max(frame);
        let mut next = self
            .spares
            .iter()
            .position(|s| s.capacity() >= want)
            .map(|i| self.spares.swap_remove(i))
            .unwrap_or_else(|| self.reclaimed(want));
        next.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, next);
        old.clear();
        if self.spares.len() < SPARES {
            self.spares.push(old);
        }
    }

    /// Drops spares beyond [`KEEP`] that no payload references any more: a connection whose
    /// bursts are over gives back what they needed.
    fn prune(&mut self) {
        if self.spares.len() <= KEEP {
            return;
        }
        let mut unused = 0;
        self.spares.retain_mut(|s| {
            // Unreferenced (whatever its size: the session's first, small buffer too).
            if s.try_reclaim(MIN_FREE) {
                unused += 1;
                unused <= KEEP
            } else {
                true
            }
        });
    }

    /// A spare whose payloads have all been dropped, or else a new buffer.
    fn reclaimed(&mut self, want: usize) -> BytesMut {
        for i in 0..self.spares.len() {
            if self.spares[i].try_reclaim(want) {
                return self.spares.swap_remove(i);
            }
        }
        BytesMut::with_capacity(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_buffers_are_reused_once_released_and_keep_partial_frames() {
        let mut r = ReadBuffer::new();
        r.buf.extend_from_slice(&vec![1u8; INITIAL - 10]);
        let held = r.buf.split_to(INITIAL - 20).freeze();
        r.prepare(0);
        // The 10 undecoded bytes moved along.
        assert_eq!(&r.buf[..], &[1u8; 10][..]);
        assert!(r.buf.capacity() >= LARGE);
        let first = r.buf.as_ptr();
        r.buf.clear();
        r.buf.extend_from_slice(&vec![2u8; r.buf.capacity() - 1]);
        let all = r.buf.split().freeze();
        r.prepare(0);
        let second = r.buf.as_ptr();
        assert_ne!(first, second, "a buffer still referenced is not reused");
        drop(all);
        drop(held);
        r.buf.extend_from_slice(&vec![3u8; r.buf.capacity() - 1]);
        let _third = r.buf.split().freeze();
        r.prepare(0);
        assert_eq!(r.buf.as_ptr(), first, "a released buffer is reused");
    }

    #[test]
    fn a_partial_frame_larger_than_the_free_space_moves_to_a_buffer_that_holds_it() {
        let mut r = ReadBuffer::new();
        r.buf.extend_from_slice(&[5u8; 100]);
        r.prepare(INITIAL + 1000);
        assert!(r.buf.capacity() >= INITIAL + 1000);
        assert_eq!(&r.buf[..], &[5u8; 100][..]);
        // Big frames get a buffer of their size in one step.
        r.prepare(4 * LARGE);
        assert!(r.buf.capacity() >= 4 * LARGE);
    }

    #[test]
    fn unreferenced_spares_are_pruned_to_a_few() {
        let mut r = ReadBuffer::new();
        let mut held = Vec::new();
        for _ in 0..SPARES + 2 {
            let n = r.buf.capacity() - r.buf.len();
            r.buf.extend_from_slice(&vec![1u8; n]);
            held.push(r.buf.split().freeze());
            r.prepare(0);
        }
        assert_eq!(r.spares.len(), SPARES);
        drop(held);
        r.prepare(0);
        assert_eq!(r.spares.len(), KEEP);
    }
}
