//! Anti-replay window for the receive side of an SA (RFC 6479).
//!
//! The sender numbers its messages with a 64-bit counter that starts at 0. The receiver keeps a
//! window of the last `W` sequence numbers as a ring of 64-bit words, as RFC 6479 describes: the bit
//! of number `s` is bit `s % 64` of word `(s / 64) % ring_len`, so the window never shifts bits. When
//! a message moves the window forward, only the whole words it enters are cleared, and at most the
//! whole ring, whatever the size of the jump.
//!
//! # Rule
//!
//! With `h` the highest number marked so far and `W` the window size, a number `s` is accepted iff
//! it was not accepted before and `s + W > h` (computed without overflow), i.e. `s` lies among the
//! last `W` numbers counting `h` itself, or above `h`. Anything with `s + W <= h` is refused as
//! [`ReplayError::TooOld`]: its bit is gone, so a replay could no longer be told apart. Before the
//! first mark every number is accepted, so the first message may carry any number, 0 included.
//!
//! # Two phases: check, then mark after the tag verified
//!
//! [`ReplayWindow::check`] is a cheap pre-check that never changes anything; it lets the receiver
//! drop a stale or replayed message without spending an AEAD open on it. [`ReplayWindow::mark`]
//! records the number and may move the window, and it must only be called once the AEAD tag has
//! verified. A forged message (anyone can write any sequence number into a header) would otherwise
//! move the window far ahead and make every genuine message in flight look too old: one packet
//! would be enough to cut off an SA. Since several receivers may open messages of one SA at once,
//! `mark` re-checks under the lock and reports a number another receiver marked meanwhile, or one
//! the window left meanwhile; the caller then drops the message.
//!
//! # Concurrency
//!
//! One lock per message: [`ReplayWindow::mark`] runs under a small [`std::sync::Mutex`] that
//! serializes the writers, so of any number of concurrent `mark(s)` for the same `s` the first to
//! take the lock succeeds and the others see its bit, exactly as if the calls ran one after the
//! other. The ring words and `h` are atomics, so [`ReplayWindow::check`] reads them without the
//! lock: a writer clears the words a jump enters before it publishes the new `h` (release), and a
//! reader loads `h` (acquire) before the word, so a stale read can only accept a number that
//! `mark` then refuses, never refuse a number `mark` would accept. No code under the lock can
//! panic, so a poisoned lock is simply recovered.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Default window size in sequence numbers.
pub const DEFAULT_WINDOW: usize = 1024;

/// Smallest window size; smaller requests are raised to it.
pub const MIN_WINDOW: usize = 64;

/// Largest window size; larger requests are lowered to it.
pub const MAX_WINDOW: usize = 65536;

/// Bits per ring word.
const WORD_BITS: u64 = u64::BITS as u64;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// This sequence number was already accepted.
    #[error("replayed message")]
    Replayed,
    /// Older than the window: cannot tell, so refused.
    #[error("message too old for the replay window")]
    TooOld,
}

/// An RFC 6479 anti-replay window over 64-bit sequence numbers.
///
/// Safe to share between threads (`Send + Sync`): several receivers may open messages of one SA
/// concurrently. See the [module documentation](self) for the acceptance rule and the check/mark
/// protocol.
pub struct ReplayWindow {
    /// Effective window size in sequence numbers: a multiple of 64 in `MIN_WINDOW..=MAX_WINDOW`.
    size: u64,
    /// Whether anything was marked; `highest` means nothing before.
    started: AtomicBool,
    /// Highest number marked so far.
    highest: AtomicU64,
    /// The ring: `size / 64 + 1` words, so that the words the window spans (up to
    /// `size / 64 + 1` when `h` is not at a word boundary) never alias.
    /// Written only under `writer`; read without it by [`ReplayWindow::check`].
    ring: Box<[AtomicU64]>,
    /// Serializes [`ReplayWindow::mark`].
    writer: Mutex<()>,
}

impl ReplayWindow {
    /// A window of `size` sequence numbers.
    ///
    /// `size` is clamped to `MIN_WINDOW..=MAX_WINDOW` (64 to 65536) and then rounded up to a
    /// multiple of 64; [`size`](Self::size) tells the result. The ring holds `size / 64 + 1`
    /// words: 17 words (136 bytes) for the default 1024, 1025 words (8 KiB) for the maximum.
    pub fn new(size: usize) -> Self {
        let size = size.clamp(MIN_WINDOW, MAX_WINDOW).div_ceil(64) * 64;
        let words = size / 64 + 1;
        Self {
            size: size as u64,
            started: AtomicBool::new(false),
            highest: AtomicU64::new(0),
            ring: (0..words).map(|_| AtomicU64::new(0)).collect(),
            writer: Mutex::new(()),
        }
    }

    /// The effective size, in sequence numbers.
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// Ring slot and bit mask of `seq`.
    #[inline]
    fn locate(&self, seq: u64) -> (usize, u64) {
        // The remainder is below the ring's length (at most 1025), so it fits a usize.
        (((seq / WORD_BITS) % self.ring.len() as u64) as usize, 1u64 << (seq % WORD_BITS))
    }

    /// The window rule, against the highest number `h` (`None` before the first mark).
    #[inline]
    fn check_against(&self, seq: u64, h: Option<u64>) -> Result<(), ReplayError> {
        let Some(h) = h else { return Ok(()) };
        if seq > h {
            return Ok(());
        }
        // seq <= h here, so h - seq cannot underflow; `h - seq >= size` is `seq + size <= h`.
        if h - seq >= self.size {
            return Err(ReplayError::TooOld);
        }
        let (slot, bit) = self.locate(seq);
        if self.ring[slot].load(Acquire) & bit != 0 { Err(ReplayError::Replayed) } else { Ok(()) }
    }

    #[inline]
    fn load_highest(&self) -> Option<u64> {
        self.started.load(Acquire).then(|| self.highest.load(Acquire))
    }

    /// Cheap pre-check before the AEAD is opened: would `seq` be accepted now? Never mutates and
    /// takes no lock.
    ///
    /// A message whose tag later fails to verify must go no further than this: it leaves the
    /// window exactly as it was. Racing a concurrent [`mark`](Self::mark), the answer may be
    /// stale in one direction only: it may accept a number `mark` then refuses, never refuse one
    /// `mark` would accept (a bit it sees set belongs to that number or to a later lap of the
    /// ring, which puts the number out of the window; the words a jump clears are cleared
    /// before the new highest number is published).
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        self.check_against(seq, self.load_highest())
    }

    /// Marks `seq` as received. Call only after the AEAD tag verified.
    ///
    /// Returns [`ReplayError::Replayed`] if `seq` was accepted before (for instance by another
    /// receiver since this one's [`check`](Self::check)), or [`ReplayError::TooOld`] if the window
    /// has moved past it; the caller must then drop the message. Of any number of concurrent
    /// `mark(seq)` calls for the same `seq`, exactly one succeeds.
    pub fn mark(&self, seq: u64) -> Result<(), ReplayError> {
        let _writer = self.lock();
        let h = self.load_highest();
        self.check_against(seq, h)?;
        match h {
            Some(h) if seq > h => {
                // Clear the words entered: those after h's word up to and including seq's word,
                // at most the whole ring. Their previous contents belong to numbers at least a
                // ring's length of words below seq's word, hence below the new window.
                let entered = seq / WORD_BITS - h / WORD_BITS;
                let len = self.ring.len();
                let clear = entered.min(len as u64) as usize;
                let (mut slot, _) = self.locate(h);
                for _ in 0..clear {
                    slot = if slot + 1 == len { 0 } else { slot + 1 };
                    self.ring[slot].store(0, Relaxed);
                }
                // Published after the clears: a reader that sees the new highest number sees
                // them too.
                self.highest.store(seq, Release);
            }
            Some(_) => {}
            // First mark: the ring is all zero, nothing to clear.
            None => {
                self.highest.store(seq, Release);
                self.started.store(true, Release);
            }
        }
        let (slot, bit) = self.locate(seq);
        self.ring[slot].fetch_or(bit, Release);
        Ok(())
    }

    /// Highest sequence number marked so far; `None` before the first mark.
    pub fn highest(&self) -> Option<u64> {
        self.load_highest()
    }

    /// Bytes of memory this window uses: `size_of::<Self>()` plus the ring on the heap.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + size_of_val::<[AtomicU64]>(&self.ring)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data of its own (the ring is atomics), so a poisoned lock is
        // simply recovered.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ReplayWindow {
    /// A window of [`DEFAULT_WINDOW`] numbers.
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("highest", &self.highest())
            .field("ring_words", &self.ring.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped_and_rounded() {
        for (asked, got) in
            [(0, 64), (1, 64), (64, 64), (65, 128), (1000, 1024), (1024, 1024), (65536, 65536), (usize::MAX, 65536)]
        {
            assert_eq!(ReplayWindow::new(asked).size(), got, "asked {asked}");
        }
        assert_eq!(ReplayWindow::default().size(), DEFAULT_WINDOW);
    }

    #[test]
    fn ring_covers_window_plus_one_word() {
        for asked in [64, 128, 192, 1000, 1024, 4096, 65536] {
            let w = ReplayWindow::new(asked);
            let words = w.ring.len();
            assert_eq!(words * 64, w.size() + 64, "{asked}: {words} words");
        }
    }

    #[test]
    fn default_memory_is_small() {
        let w = ReplayWindow::default();
        let bytes = w.memory_bytes();
        assert!(bytes < 256, "{bytes} bytes");
        assert_eq!(bytes, size_of::<ReplayWindow>() + 17 * 8);
    }

    #[test]
    fn send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ReplayWindow>();
    }

    #[test]
    fn jump_clears_only_entered_words() {
        let w = ReplayWindow::new(128);
        assert_eq!(w.ring.len(), 3);
        // 100 in word 1, 130 in word 2; the jump to 200 enters only word 3 (slot 0).
        w.mark(100).unwrap();
        w.mark(130).unwrap();
        w.mark(200).unwrap();
        assert_eq!(w.check(100), Err(ReplayError::Replayed));
        assert_eq!(w.check(130), Err(ReplayError::Replayed));
        assert_eq!(w.check(101), Ok(()));
        // 200 - 72 = 128 = W: out. 73 is the left edge.
        assert_eq!(w.check(72), Err(ReplayError::TooOld));
        assert_eq!(w.check(73), Ok(()));
        // A jump of more than the ring clears the whole ring, and no more is needed: u64::MAX
        // is in word 2^58 - 1, slot (2^58 - 1) % 3 = 0.
        w.mark(u64::MAX).unwrap();
        assert!(
            w.ring.iter().map(|w| w.load(Relaxed)).enumerate().all(|(i, word)| i == 0 && word == 1 << 63 || word == 0)
        );
    }

    #[test]
    fn debug_shows_state() {
        let w = ReplayWindow::new(64);
        w.mark(5).unwrap();
        let s = format!("{w:?}");
        assert!(s.contains("size: 64") && s.contains("Some(5)"), "{s}");
    }
}
