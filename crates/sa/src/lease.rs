//! Sequence numbers leased in ranges, for replicas that seal under one key.
//!
//! A node alone takes its send sequence numbers from one atomic counter per epoch. Replicas of a
//! node that share an SA (several sidecars behind a load balancer, the SA kept in a shared store)
//! seal under the same key, so their counters must never hand out the same number: a repeated
//! nonce under AES-GCM gives the key away. They lease ranges instead: a replica takes a block of
//! numbers from a counter shared by all replicas (one atomic `INCRBY` in the store, say) and seals
//! only with numbers of blocks it holds. A replica that dies loses only the unused rest of its
//! block; no number is ever used twice.
//!
//! This module is the sans-I/O half: [`SeqLease`] holds the blocks a replica was granted and
//! hands out numbers without a lock (one `ArcSwap` load and one `fetch_add`); whoever talks to
//! the store grants blocks with [`SeqLease::grant`] and learns from [`SeqLease::wants_more`]
//! (or the [`LeaseProvider::low`] call) when to fetch the next one ahead of need. A
//! [`crate::table::SaTable`] built with [`crate::table::SaTable::with_leases`] asks its
//! [`LeaseProvider`] for a lease for every epoch it installs; without one (the default) sealing
//! uses the plain counter and nothing here runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use arc_swap::ArcSwap;

use crate::SaId;

/// Names the counter a lease draws from: the same for every replica that holds the same keys.
///
/// `id` is a hash of the sealing key and IV of the epoch's sending direction (see
/// [`crate::secure::Epoch::lease_key`]), so it follows the key itself: a renamed SA keeps its
/// counter, a new epoch gets a fresh one, and two keys never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    /// The SA (its identifier when the epoch was installed; informational).
    pub sa_id: SaId,
    /// The epoch number.
    pub epoch: u32,
    /// The counter's name: SHA-256 of a label, the sending key and IV, truncated to 16 bytes.
    pub id: [u8; 16],
}

impl LeaseKey {
    /// `id` in lowercase hex, for a store key name.
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Hands out leases for the epochs a table installs; implemented by the shared store.
pub trait LeaseProvider: Send + Sync + 'static {
    /// A lease for the epoch named by `key`. It may start empty (sealing is refused until a
    /// block is granted); the provider grants blocks as it gets them from the store.
    fn lease(&self, key: LeaseKey) -> Arc<SeqLease>;

    /// Called (at most once per block) when a lease's current block runs low: time to fetch the
    /// next one. Must not block; the default does nothing (the provider may poll
    /// [`SeqLease::wants_more`] instead).
    fn low(&self, _key: LeaseKey) {}
}

#[derive(Debug)]
struct Block {
    next: AtomicU64,
    end: u64,
    /// Numbers left when the lease asks for more.
    low_at: u64,
}

/// The blocks of sequence numbers one replica may seal with under one epoch.
pub struct SeqLease {
    key: LeaseKey,
    current: ArcSwap<Block>,
    /// A granted block not yet in use: the next one, fetched ahead.
    queued: std::sync::Mutex<Option<(u64, u64)>>,
    wants: AtomicBool,
    provider: Option<std::sync::Weak<dyn LeaseProvider>>,
}

impl std::fmt::Debug for SeqLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.current.load();
        f.debug_struct("SeqLease")
            .field("key", &self.key)
            .field("next", &b.next.load(Relaxed))
            .field("end", &b.end)
            .finish_non_exhaustive()
    }
}

fn empty_block() -> Block {
    Block { next: AtomicU64::new(0), end: 0, low_at: 0 }
}

impl SeqLease {
    /// An empty lease (every take fails until [`Self::grant`]). `provider`, when given, is told
    /// through [`LeaseProvider::low`] when the lease needs its next block.
    pub fn new(key: LeaseKey, provider: Option<std::sync::Weak<dyn LeaseProvider>>) -> Self {
        Self {
            key,
            current: ArcSwap::from_pointee(empty_block()),
            queued: std::sync::Mutex::new(None),
            wants: AtomicBool::new(true),
            provider,
        }
    }

    /// The counter this lease draws from.
    pub fn key(&self) -> LeaseKey {
        self.key
    }

    /// Adds the block `start..end` (granted by the shared counter, so disjoint from every other
    /// replica's). Used at once when the current block is spent, else kept as the next one.
    pub fn grant(&self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.current.load();
        if cur.next.load(Acquire) >= cur.end {
            // Spent: the oldest granted block goes into use, the other waits.
            let (s, e) = match queued.replace((start, end)) {
                Some(older) => older,
                None => queued.take().expect("just put"),
            };
            self.current.store(Arc::new(Self::block(s, e)));
        } else {
            *queued = Some((start, end));
        }
        // Ask again only once a block runs low.
        self.wants.store(false, Release);
    }

    /// Puts the block `start..end` in use at once, dropping the rest of the current block and
    /// any queued one (those numbers are never used). A holder refreshes an old block this way
    /// so that its numbers do not fall behind the other replicas' by more than the peer's
    /// replay window.
    pub fn replace(&self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        *queued = None;
        self.current.store(Arc::new(Self::block(start, end)));
        self.wants.store(false, Release);
    }

    fn block(start: u64, end: u64) -> Block {
        let len = end - start;
        Block { next: AtomicU64::new(start), end, low_at: end - len.div_ceil(2) }
    }

    /// Whether the lease has no block queued and its current one is at least half used: the
    /// holder should fetch the next block.
    pub fn wants_more(&self) -> bool {
        self.wants.load(Acquire)
    }

    /// Numbers left in the current block and the queued one.
    pub fn available(&self) -> u64 {
        let queued = self.queued.lock().unwrap_or_else(|e| e.into_inner()).map_or(0, |(s, e)| e - s);
        self.remaining() + queued
    }

    /// Numbers left in the current block.
    pub fn remaining(&self) -> u64 {
        let b = self.current.load();
        b.end.saturating_sub(b.next.load(Relaxed))
    }

    /// Takes the next sequence number, `None` when every granted number is used. Lock-free
    /// unless the current block is spent and a queued one must be swapped in.
    pub fn take(&self) -> Option<u64> {
        loop {
            let block = self.current.load();
            let seq = block.next.fetch_add(1, Relaxed);
            if seq < block.end {
                if seq == block.low_at {
                    self.ask();
                }
                return Some(seq);
            }
            // Spent: move to the queued block, if any (under the lock, so only one thread does).
            let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
            let now = self.current.load();
            if !Arc::ptr_eq(&now, &block) {
                continue; // another thread already moved on
            }
            match queued.take() {
                Some((start, end)) => {
                    self.current.store(Arc::new(Self::block(start, end)));
                    drop(queued);
                    self.ask();
                }
                None => {
                    drop(queued);
                    self.ask();
                    return None;
                }
            }
        }
    }

    fn ask(&self) {
        let queued = self.queued.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        if queued {
            return;
        }
        if self.wants.swap(true, AcqRel) {
            return;
        }
        if let Some(p) = self.provider.as_ref().and_then(|p| p.upgrade()) {
            p.low(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key() -> LeaseKey {
        LeaseKey { sa_id: SaId([1; 8]), epoch: 0, id: [7; 16] }
    }

    #[test]
    fn an_empty_lease_refuses_and_blocks_are_used_in_order() {
        let l = SeqLease::new(key(), None);
        assert_eq!(l.take(), None);
        assert!(l.wants_more());
        l.grant(100, 104);
        assert!(!l.wants_more());
        l.grant(200, 202); // queued
        assert_eq!(l.available(), 6);
        let got: Vec<_> = std::iter::from_fn(|| l.take()).collect();
        assert_eq!(got, [100, 101, 102, 103, 200, 201]);
        assert!(l.wants_more());
    }

    #[test]
    fn a_replaced_block_is_used_at_once_and_the_old_numbers_never() {
        let l = SeqLease::new(key(), None);
        l.grant(0, 10);
        l.grant(10, 20);
        assert_eq!(l.take(), Some(0));
        l.replace(50, 52);
        let got: Vec<_> = std::iter::from_fn(|| l.take()).collect();
        assert_eq!(got, [50, 51]);
    }

    #[test]
    fn a_lease_asks_for_more_at_half_its_block() {
        let l = SeqLease::new(key(), None);
        l.grant(0, 8);
        for _ in 0..4 {
            l.take();
        }
        assert!(!l.wants_more());
        l.take();
        assert!(l.wants_more(), "half the block used and nothing queued");
    }

    #[test]
    fn concurrent_takes_never_repeat_a_number() {
        let l = Arc::new(SeqLease::new(key(), None));
        let mut start = 0;
        let granted: Vec<(u64, u64)> = (0..50)
            .map(|i| {
                let s = start;
                start += 10 + i;
                (s, start)
            })
            .collect();
        l.grant(granted[0].0, granted[0].1);
        let taken = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let l = l.clone();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for _ in 0..2000 {
                            if let Some(n) = l.take() {
                                mine.push(n);
                            }
                        }
                        mine
                    })
                })
                .collect();
            for g in &granted[1..] {
                l.grant(g.0, g.1);
                std::thread::yield_now();
            }
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect::<Vec<_>>()
        });
        let set: HashSet<u64> = taken.iter().copied().collect();
        assert_eq!(set.len(), taken.len(), "a number was handed out twice");
        assert!(taken.iter().all(|n| granted.iter().any(|(s, e)| n >= s && n < e)));
    }
}
