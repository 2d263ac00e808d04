//! The receiver's record of executed requests: what makes a resend safe.
//!
//! RETRIEVE is safe to repeat and not entered (`ReceiveSecure` decides).
//!
//! A sender resends a request (sealed anew, under another SA) when it cannot tell whether the
//! first copy was executed — after an unsealed "unknown SA" (4112) or "sealing refused" (5211),
//! which anyone on the path can forge, or when an SA is lost. The replay window cannot see such
//! a resend: it is a fresh seal. This record can: every request opened over an SA is entered
//! under the **authenticated** peer node, the inner request's originator and its request
//! identifier — not under the SA, so the record outlives SA removal, expiry, update and
//! re-establishment — with a digest of the inner request.
//!
//! * first copy: executed; its answer (the plaintext that is sealed) is kept for
//!   [`ExecutedConfig::ttl`] after it was given;
//! * a copy while the first is still executing: waits for the first one's answer, and gets it;
//! * a copy after it: gets the kept answer, sealed under the SA it came over, without reaching
//!   the protected service;
//! * the same key with a different digest: refused (4105), not executed;
//! * a first execution that ends without an answer (the protected service failed, or the
//!   handling was cancelled) keeps an error answer (5000): a copy is not executed again, because
//!   the first may have been.
//!
//! Bounded: per peer, in total, and in answer bytes. Expired entries go first; at a cap the
//! oldest *answered* entry is evicted (a later resend of that request would be executed again:
//! size the caps for the peak request rate × TTL — the eviction counter says when they are too
//! small); an entry still executing is never evicted, and when the caps are full of them a new
//! request is refused (5000, not executed). Memory only: a restart of the receiving process
//! forgets it (see docs/robustness.md, "At most once").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::{Digest, HashAlgorithm, digest};
use tokio::sync::watch;

/// Bounds of the record of executed requests (see [`crate::Node::set_executed_config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutedConfig {
    /// How long an answer is kept after it was given. Must exceed the longest time a sender may
    /// resend after its first copy ([`crate::Recovery::resend_window`]) plus one establishment.
    pub ttl: Duration,
    /// Entries kept at most, all peers together.
    pub max_entries: usize,
    /// Entries kept at most for one peer node.
    pub max_per_peer: usize,
    /// Bytes of kept answers at most, all peers together.
    pub max_answer_bytes: usize,
}

impl Default for ExecutedConfig {
    /// 60 s (six times the default resend window of 10 s); 262,144 entries (a sustained
    /// 4,000 requests/s for the TTL), 65,536 per peer, 64 MiB of answers.
    fn default() -> Self {
        Self { ttl: Duration::from_secs(60), max_entries: 262_144, max_per_peer: 65_536, max_answer_bytes: 64 << 20 }
    }
}

/// The record is split into this many independently locked shards (by key), so that requests
/// do not queue behind one lock; each shard holds its share of every cap.
const SHARDS: usize = 16;

/// Who sent a request, as far as the record is concerned: the authenticated peer node, the
/// inner originator, the request identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    peer: NodeId,
    originator: String,
    rqi: String,
}

impl Key {
    pub(crate) fn new(peer: NodeId, originator: &str, rqi: &str) -> Self {
        Self { peer, originator: originator.to_owned(), rqi: rqi.to_owned() }
    }
}

/// An answer as kept: the serialized response primitive (what is sealed).
pub(crate) type Answer = Arc<[u8]>;

enum State {
    Running(watch::Receiver<Option<Answer>>),
    Done { answer: Answer, until_ms: u64 },
}

struct Slot {
    serial: u64,
    digest: Digest,
    state: State,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Key, Slot>,
    /// Keys in insertion order, with the serial of the slot they were inserted for (a key whose
    /// slot was replaced or removed is skipped).
    order: VecDeque<(u64, Key)>,
    per_peer: HashMap<NodeId, usize>,
    bytes: usize,
    serial: u64,
}

impl Inner {
    fn remove(&mut self, key: &Key) {
        if let Some(slot) = self.slots.remove(key) {
            if let State::Done { answer, .. } = &slot.state {
                self.bytes -= answer.len();
            }
            if let Some(n) = self.per_peer.get_mut(&key.peer) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&key.peer);
                }
            }
        }
    }

    fn live(&self, serial: u64, key: &Key) -> Option<&Slot> {
        self.slots.get(key).filter(|s| s.serial == serial)
    }

    /// Drops expired answers from the front, and queue items of slots that are gone.
    fn expire_front(&mut self, now_ms: u64) {
        while let Some((serial, key)) = self.order.front() {
            let expired = match self.live(*serial, key).map(|s| &s.state) {
                None => false,
                Some(State::Done { until_ms, .. }) if *until_ms <= now_ms => true,
                Some(_) => return,
            };
            let (_, key) = self.order.pop_front().expect("looked at");
            if expired {
                self.remove(&key);
            }
        }
    }

    /// Drops every expired answer (a full pass: only when a cap is reached).
    fn expire_all(&mut self, now_ms: u64) {
        let expired: Vec<Key> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Done { until_ms, .. } if until_ms <= now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove(key);
        }
        let slots = &self.slots;
        self.order.retain(|(serial, key)| slots.get(key).is_some_and(|s| s.serial == *serial));
    }

    /// Evicts the oldest answered entry (of `peer`, if given); false if there is none.
    fn evict_oldest(&mut self, peer: Option<&NodeId>) -> bool {
        let found = self.order.iter().position(|(serial, key)| {
            peer.is_none_or(|p| *p == key.peer)
                && self.live(*serial, key).is_some_and(|s| matches!(s.state, State::Done { .. }))
        });
        let Some(at) = found else { return false };
        let (_, key) = self.order.remove(at).expect("found");
        self.remove(&key);
        metrics::counter!("onem2m_sa_executed_evicted_total").increment(1);
        true
    }
}

/// What to do with an opened request.
pub(crate) enum Admission {
    /// The first copy: execute it, then give the answer to the ticket.
    Execute(Ticket),
    /// A copy of a request that is still executing: wait for its answer.
    Wait(watch::Receiver<Option<Answer>>),
    /// A copy of a request already answered: this answer.
    Answered(Answer),
    /// The same key was used for a different request.
    Conflict,
    /// The record is full of requests still executing.
    Full,
}

/// The record (one per node, shared by every `ReceiveSecure` of it).
pub(crate) struct Executed {
    config: Mutex<ExecutedConfig>,
    shards: Box<[Mutex<Inner>]>,
    hasher: std::hash::RandomState,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The digest a copy must match: SHA-256 of the inner request as opened.
pub(crate) fn request_digest(plaintext: &[u8]) -> Digest {
    digest(HashAlgorithm::Sha256, &[plaintext])
}

impl Executed {
    pub(crate) fn new(config: ExecutedConfig) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Inner::default())).collect();
        Self { config: Mutex::new(config), shards, hasher: std::hash::RandomState::new() }
    }

    fn shard(&self, key: &Key) -> &Mutex<Inner> {
        use std::hash::BuildHasher;
        &self.shards[self.hasher.hash_one(key) as usize % self.shards.len()]
    }

    pub(crate) fn set_config(&self, config: ExecutedConfig) {
        *lock(&self.config) = config;
    }

    pub(crate) fn config(&self) -> ExecutedConfig {
        *lock(&self.config)
    }

    /// Number of entries (executing or answered).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).slots.len()).sum()
    }

    /// Looks `key` up and, if it is new, enters it as executing.
    pub(crate) fn admit(self: &Arc<Self>, key: Key, digest: Digest, now_ms: u64) -> Admission {
        let config = self.config();
        // This shard's share of the caps (at least one entry each).
        let share = |cap: usize| cap.div_ceil(self.shards.len()).max(1);
        let (max_entries, max_per_peer, max_bytes) =
            (share(config.max_entries), share(config.max_per_peer), share(config.max_answer_bytes));
        let mut inner = lock(self.shard(&key));
        inner.expire_front(now_ms);
        if let Some(slot) = inner.slots.get(&key) {
            let expired = matches!(slot.state, State::Done { until_ms, .. } if until_ms <= now_ms);
            if !expired {
                if slot.digest != digest {
                    return Admission::Conflict;
                }
                return match &slot.state {
                    State::Running(rx) => Admission::Wait(rx.clone()),
                    State::Done { answer, .. } => Admission::Answered(answer.clone()),
                };
            }
            inner.remove(&key);
        }
        let peer_full = |inner: &Inner| inner.per_peer.get(&key.peer).copied().unwrap_or(0) >= max_per_peer;
        let full = |inner: &Inner| inner.slots.len() >= max_entries || inner.bytes > max_bytes;
        if peer_full(&inner) || full(&inner) {
            inner.expire_all(now_ms);
        }
        while peer_full(&inner) {
            if !inner.evict_oldest(Some(&key.peer)) {
                return Admission::Full;
            }
        }
        while full(&inner) {
            if !inner.evict_oldest(None) {
                return Admission::Full;
            }
        }
        inner.serial += 1;
        let serial = inner.serial;
        let (tx, rx) = watch::channel(None);
        *inner.per_peer.entry(key.peer.clone()).or_default() += 1;
        inner.order.push_back((serial, key.clone()));
        inner.slots.insert(key.clone(), Slot { serial, digest, state: State::Running(rx) });
        Admission::Execute(Ticket { record: self.clone(), key, serial, tx: Some(tx), unanswered: None })
    }

    fn finish(&self, key: &Key, serial: u64, answer: Answer, now_ms: u64) {
        let until_ms = now_ms.saturating_add(self.config().ttl.as_millis() as u64);
        let mut inner = lock(self.shard(key));
        let bytes = answer.len();
        if let Some(slot) = inner.slots.get_mut(key).filter(|s| s.serial == serial) {
            slot.state = State::Done { answer, until_ms };
            inner.bytes += bytes;
        }
    }
}

/// The right (and duty) to record the answer of a first copy. Dropped without an answer (the
/// protected service failed or the handling was cancelled), it records `unanswered`, so a copy
/// is never executed after a first execution whose outcome is unknown.
pub(crate) struct Ticket {
    record: Arc<Executed>,
    key: Key,
    serial: u64,
    tx: Option<watch::Sender<Option<Answer>>>,
    /// What a copy gets if this ticket is dropped unanswered, and the clock to stamp it with.
    unanswered: Option<(Answer, Box<dyn Fn() -> u64 + Send + Sync>)>,
}

impl Ticket {
    /// What to record if the ticket is dropped without an answer; `now_ms` is read then.
    pub(crate) fn if_unanswered(&mut self, answer: Answer, now_ms: impl Fn() -> u64 + Send + Sync + 'static) {
        self.unanswered = Some((answer, Box::new(now_ms)));
    }

    /// Records the answer and hands it to the copies waiting for it.
    pub(crate) fn answer(mut self, answer: Answer, now_ms: u64) {
        self.give(answer, now_ms);
    }

    fn give(&mut self, answer: Answer, now_ms: u64) {
        if let Some(tx) = self.tx.take() {
            self.record.finish(&self.key, self.serial, answer.clone(), now_ms);
            tx.send_replace(Some(answer));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.tx.is_some() {
            match self.unanswered.take() {
                Some((answer, now)) => {
                    let now = now();
                    self.give(answer, now);
                }
                // Nothing to say: forget the entry (a copy is executed).
                None => {
                    lock(self.record.shard(&self.key)).remove(&self.key);
                }
            }
        }
    }
}

impl std::fmt::Debug for Executed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executed").field("entries", &self.len()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(peer: &str, rqi: &str) -> Key {
        Key::new(peer.parse().unwrap(), "CAE01", rqi)
    }

    /// A record of one shard, with these caps.
    fn record(max_entries: usize, max_per_peer: usize) -> Arc<Executed> {
        let mut r = Executed::new(ExecutedConfig {
            ttl: Duration::from_millis(1_000),
            max_entries,
            max_per_peer,
            max_answer_bytes: 1 << 20,
        });
        r.shards = vec![Mutex::new(Inner::default())].into_boxed_slice();
        Arc::new(r)
    }

    fn execute(a: Admission) -> Ticket {
        match a {
            Admission::Execute(t) => t,
            _ => panic!("expected a first execution"),
        }
    }

    #[test]
    fn a_copy_waits_then_gets_the_answer_and_a_different_request_is_refused() {
        let r = record(10, 10);
        let d = request_digest(b"create");
        let t = execute(r.admit(key("/id-asn", "1"), d.clone(), 0));
        let Admission::Wait(mut rx) = r.admit(key("/id-asn", "1"), d.clone(), 1) else { panic!("must wait") };
        assert!(matches!(r.admit(key("/id-asn", "1"), request_digest(b"other"), 1), Admission::Conflict));
        t.answer(Arc::from(&b"2001"[..]), 2);
        assert_eq!(rx.borrow_and_update().as_deref(), Some(&b"2001"[..]));
        let Admission::Answered(a) = r.admit(key("/id-asn", "1"), d.clone(), 3) else { panic!("answered") };
        assert_eq!(&*a, b"2001");
        // Another peer's request with the same originator and rqi is another request.
        assert!(matches!(r.admit(key("/id-mn", "1"), d.clone(), 3), Admission::Execute(_)));
        // After the TTL the entry is gone.
        assert!(matches!(r.admit(key("/id-asn", "1"), d, 1_003), Admission::Execute(_)));
    }

    #[test]
    fn a_dropped_ticket_keeps_its_unknown_outcome_or_forgets() {
        let r = record(10, 10);
        let d = request_digest(b"x");
        let mut t = execute(r.admit(key("/id-asn", "1"), d.clone(), 0));
        t.if_unanswered(Arc::from(&b"5000"[..]), || 5);
        drop(t);
        assert!(matches!(r.admit(key("/id-asn", "1"), d.clone(), 6), Admission::Answered(a) if &*a == b"5000"));
        let t = execute(r.admit(key("/id-asn", "2"), d.clone(), 0));
        drop(t);
        assert!(matches!(r.admit(key("/id-asn", "2"), d, 6), Admission::Execute(_)));
    }

    #[test]
    fn caps_evict_answered_entries_only_and_refuse_when_all_are_running() {
        let r = record(4, 2);
        let d = request_digest(b"x");
        let t1 = execute(r.admit(key("/id-a", "1"), d.clone(), 0));
        let t2 = execute(r.admit(key("/id-a", "2"), d.clone(), 0));
        // Per-peer cap, both running: refused.
        assert!(matches!(r.admit(key("/id-a", "3"), d.clone(), 0), Admission::Full));
        t1.answer(Arc::from(&b"a"[..]), 0);
        // Now the oldest answered one makes room.
        let t3 = execute(r.admit(key("/id-a", "3"), d.clone(), 0));
        assert!(matches!(r.admit(key("/id-a", "2"), d.clone(), 0), Admission::Wait(_)));
        // "1" was evicted: it is new again, and the peer's two slots are running.
        assert!(matches!(r.admit(key("/id-a", "1"), d.clone(), 0), Admission::Full));
        // The global cap counts every peer.
        let _b1 = execute(r.admit(key("/id-b", "1"), d.clone(), 0));
        let _b2 = execute(r.admit(key("/id-b", "2"), d.clone(), 0));
        assert!(matches!(r.admit(key("/id-c", "1"), d.clone(), 0), Admission::Full));
        t2.answer(Arc::from(&b"b"[..]), 0);
        drop(t3);
        assert!(matches!(r.admit(key("/id-c", "1"), d, 0), Admission::Execute(_)));
        assert!(r.len() <= 4);
    }
}
