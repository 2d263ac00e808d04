//! The SA table: the data path's view of every live SA.
//!
//! Keyed by SA identifier in a `papaya` map, whose reads never block (measured against dashmap
//! and `RwLock<HashMap>` in `benches/table.rs`, figures in `docs/benchmarks.md`). Values are
//! `Arc<SaEntry>`; a reader clones the `Arc` and holds no guard across anything else. Inside an
//! entry the keys of the current and the previous epoch sit behind `ArcSwapOption`s, so an update
//! swaps them without a lock and a message in flight keeps the epoch it started with. The
//! control plane (SA Management) writes here; the hot path only reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::capability::Capabilities;
use crate::credential::{AuthorizationContext, NodeId};
use crate::crypto::Suite;
use crate::establish::{EstablishedSa, Role};
use crate::lease::LeaseProvider;
use crate::replay::DEFAULT_WINDOW;
use crate::schedule::SessionKeys;
use crate::secure::{Encoding, Epoch, EpochRef, SealInfo, Sealed, SecureError, UsageLimits};
use crate::{Now, SaId};

/// Settings of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// Replay window size, in sequence numbers.
    pub window: usize,
    /// Usage limits per key.
    pub limits: UsageLimits,
    /// How long the previous epoch's keys and a previous identifier stay valid after an update.
    pub grace_ms: u64,
    /// How often [`SaTable::sweep`] releases the prepared AEAD keys of epochs no message used
    /// since the last release (so an SA idle for this long, up to twice it, keeps only its raw
    /// keys; its next message rebuilds them, ≈ 0.25 µs). `u64::MAX`: never.
    pub context_idle_ms: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self { window: DEFAULT_WINDOW, limits: UsageLimits::default(), grace_ms: 30_000, context_idle_ms: 10_000 }
    }
}

/// One live SA as the data path sees it.
pub struct SaEntry {
    id: AtomicU64,
    role: Role,
    suite: Suite,
    peer: NodeId,
    peer_context: Arc<AuthorizationContext>,
    capabilities: Capabilities,
    expires_unix: u64,
    removed: AtomicBool,
    update_requested: AtomicBool,
    /// Set by a successful seal or open, cleared by [`SaEntry::take_activity`]: the SA
    /// Managements' idle timeout reads it once per tick.
    used: AtomicBool,
    limits: UsageLimits,
    current: ArcSwapOption<Epoch>,
    previous: ArcSwapOption<Epoch>,
}

impl std::fmt::Debug for SaEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaEntry")
            .field("sa_id", &self.sa_id())
            .field("role", &self.role)
            .field("suite", &self.suite.name())
            .field("peer", &self.peer)
            .field("capabilities", &self.capabilities)
            .field("removed", &self.removed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

fn make_epoch(
    sa_id: SaId,
    suite: Suite,
    keys: &SessionKeys,
    role: Role,
    window: usize,
    leases: Option<&Arc<dyn LeaseProvider>>,
) -> Epoch {
    match leases {
        None => Epoch::new(suite, keys, role, window),
        Some(p) => Epoch::with_lease(suite, keys, role, window, p.lease(Epoch::lease_key(sa_id, suite, keys, role))),
    }
}

impl SaEntry {
    fn new(sa: &EstablishedSa, config: &TableConfig, leases: Option<&Arc<dyn LeaseProvider>>) -> Self {
        Self {
            id: AtomicU64::new(sa.sa_id.to_u64()),
            role: sa.role,
            suite: sa.suite,
            peer: sa.peer.clone(),
            peer_context: sa.peer_context.clone(),
            capabilities: sa.capabilities,
            expires_unix: sa.expires_unix(),
            removed: AtomicBool::new(false),
            update_requested: AtomicBool::new(false),
            used: AtomicBool::new(false),
            limits: config.limits,
            current: ArcSwapOption::from_pointee(make_epoch(
                sa.sa_id,
                sa.suite,
                &sa.keys,
                sa.role,
                config.window,
                leases,
            )),
            previous: ArcSwapOption::empty(),
        }
    }

    /// The SA's current identifier.
    pub fn sa_id(&self) -> SaId {
        SaId(self.id.load(Acquire).to_be_bytes())
    }

    /// This node's role in the SA.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The peer node.
    pub fn peer(&self) -> &NodeId {
        &self.peer
    }

    /// The capabilities both sides negotiated at establishment (e.g. whether the peer accepts
    /// the compact form).
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// When the SA expires (UNIX seconds): the peer's ticket expiry or the context's lifetime.
    pub fn expires_unix(&self) -> u64 {
        self.expires_unix
    }

    /// Whether the SA is still usable.
    pub fn is_active(&self) -> bool {
        !self.removed.load(Acquire)
    }

    /// Whether the SA is past its expiry at `unix_secs`.
    pub fn is_expired(&self, unix_secs: u64) -> bool {
        self.expires_unix <= unix_secs
    }

    /// Whether a message was sealed or opened under the SA since the last call; clears the
    /// mark. The SA Managements' idle timeout calls it once per tick.
    pub fn take_activity(&self) -> bool {
        self.used.swap(false, Relaxed)
    }

    #[inline]
    fn mark_used(&self) {
        // Load first: a store on every message would bounce the cache line between cores.
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
    }

    /// The current epoch's keys.
    pub fn current_epoch(&self) -> Option<EpochRef> {
        self.current.load_full()
    }

    /// Whether a soft usage limit was passed since the last key update.
    pub fn update_requested(&self) -> bool {
        self.update_requested.load(Relaxed)
    }

    /// Seals a primitive under the current epoch (an Initiator's request).
    ///
    /// Expiry is left to [`SaTable::sweep`]; [`Self::seal_at`] also refuses an SA past its
    /// expiry by itself.
    pub fn seal(&self, encoding: Encoding, plaintext: &[u8], out: &mut Vec<u8>) -> Result<SealInfo, SecureError> {
        let epoch = self.current.load();
        let epoch = epoch.as_ref().ok_or(SecureError::UnknownSa)?;
        self.seal_with(epoch, encoding, plaintext, out)
    }

    /// [`Self::seal`] at `unix_secs`: an SA past its expiry is refused ([`SecureError::UnknownSa`])
    /// even before the sweep removed it.
    pub fn seal_at(
        &self,
        unix_secs: u64,
        encoding: Encoding,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<SealInfo, SecureError> {
        if self.is_expired(unix_secs) {
            return Err(SecureError::UnknownSa);
        }
        self.seal(encoding, plaintext, out)
    }

    /// [`Self::seal_with`] at `unix_secs`: an SA past its expiry is refused.
    pub fn seal_with_at(
        &self,
        unix_secs: u64,
        epoch: &Epoch,
        encoding: Encoding,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<SealInfo, SecureError> {
        if self.is_expired(unix_secs) {
            return Err(SecureError::UnknownSa);
        }
        self.seal_with(epoch, encoding, plaintext, out)
    }

    /// [`Self::open`] at `unix_secs`: an SA past its expiry is refused before any work.
    pub fn open_at<'a>(&self, unix_secs: u64, sealed: Sealed<'a>) -> Result<(&'a mut [u8], EpochRef), SecureError> {
        if self.is_expired(unix_secs) {
            return Err(SecureError::UnknownSa);
        }
        self.open(sealed)
    }

    /// Seals under a given epoch: the Responder answers a request under the epoch it came in.
    pub fn seal_with(
        &self,
        epoch: &Epoch,
        encoding: Encoding,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<SealInfo, SecureError> {
        if !self.is_active() {
            return Err(SecureError::UnknownSa);
        }
        let info = epoch.seal(self.sa_id(), self.suite, encoding, plaintext, &self.limits, out)?;
        // Only the current epoch's usage asks for an update: a message sealed under an epoch an
        // update just replaced must not ask for another one at once (two updates in a row bring
        // back the key phase of messages still in flight, which then fail as forgeries).
        if info.update_due && self.current.load().as_deref().is_some_and(|c| c.same_epoch(epoch)) {
            self.update_requested.store(true, Relaxed);
        }
        self.mark_used();
        Ok(info)
    }

    /// Opens a sealed object under the epoch its key phase names; returns the plaintext and
    /// that epoch (to seal the answer with).
    pub fn open<'a>(&self, sealed: Sealed<'a>) -> Result<(&'a mut [u8], EpochRef), SecureError> {
        if !self.is_active() {
            return Err(SecureError::UnknownSa);
        }
        let phase = sealed.header.key_phase;
        // Almost every message is under the current epoch: look at the previous one only when
        // the key phase says so.
        let current = self.current.load();
        let epoch = match current.as_ref() {
            Some(e) if e.key_phase() == phase => e.clone(),
            _ => self
                .previous
                .load()
                .as_ref()
                .filter(|e| e.key_phase() == phase)
                .cloned()
                .ok_or(SecureError::UnknownSa)?,
        };
        let plaintext = epoch.open(sealed)?;
        self.mark_used();
        Ok((plaintext, epoch))
    }

    /// Identity binding: `originator` (the inner primitive's `fr`) must lie inside the peer's
    /// authorization context.
    pub fn authorize(&self, originator: &str) -> Result<(), SecureError> {
        if self.peer_context.covers(originator) { Ok(()) } else { Err(SecureError::Impersonation) }
    }

    fn install_epoch(&self, suite: Suite, keys: &SessionKeys, window: usize, leases: Option<&Arc<dyn LeaseProvider>>) {
        let epoch = make_epoch(self.sa_id(), suite, keys, self.role, window, leases);
        // Previous first: a reader between the two stores finds the old epoch in both slots,
        // never in neither (a message under it would be refused as for an unknown SA).
        self.previous.store(self.current.load_full());
        self.current.store(Some(Arc::new(epoch)));
        self.update_requested.store(false, Relaxed);
    }

    /// Whether a message has opened under the current epoch: proof that the peer uses it.
    pub fn current_epoch_in_use(&self) -> bool {
        self.current.load().as_ref().is_some_and(|e| e.has_opened())
    }

    /// The previous epoch becomes current again (the peer never took the new one).
    fn roll_back_epoch(&self) -> bool {
        // Current first, for the same reason as in `install_epoch`.
        let Some(previous) = self.previous.load_full() else { return false };
        self.current.store(Some(previous));
        self.previous.store(None);
        true
    }

    /// Releases the prepared AEAD keys of its epochs that carried no message since the last
    /// call (see [`Epoch::idle_copy`]).
    pub fn release_idle_contexts(&self) {
        for slot in [&self.current, &self.previous] {
            let held = slot.load_full();
            if let Some(copy) = held.as_deref().and_then(Epoch::idle_copy) {
                // Unless an update or a removal changed the slot meanwhile.
                slot.compare_and_swap(&held, Some(Arc::new(copy)));
            }
        }
    }

    fn wipe(&self) {
        self.removed.store(true, Release);
        self.current.store(None);
        self.previous.store(None);
    }
}

#[derive(Default)]
struct Control {
    /// Identifier (old or previous-epoch holder) → when its grace ends.
    aliases: HashMap<SaId, u64>,
    previous_until: HashMap<SaId, u64>,
}

/// The entries of one peer, oldest first. Replaced as a whole (under the control lock) on
/// every change, so a reader gets a consistent list without a lock.
type PeerList = Arc<[Arc<SaEntry>]>;

/// Every live SA of a node, shared by the data path (lock-free reads) and the SA Management.
pub struct SaTable {
    map: papaya::HashMap<SaId, Arc<SaEntry>>,
    peers: papaya::HashMap<NodeId, PeerList>,
    control: Mutex<Control>,
    config: TableConfig,
    /// Replicas sharing SAs: where every installed epoch gets its sequence-number lease.
    leases: Option<Arc<dyn LeaseProvider>>,
    /// When [`Self::sweep`] last released idle AEAD contexts (monotonic milliseconds).
    released_ms: AtomicU64,
}

impl std::fmt::Debug for SaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaTable").field("entries", &self.map.len()).finish_non_exhaustive()
    }
}

impl SaTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> Self {
        Self {
            map: papaya::HashMap::new(),
            peers: papaya::HashMap::new(),
            control: Mutex::new(Control::default()),
            config,
            leases: None,
            released_ms: AtomicU64::new(0),
        }
    }

    /// An empty table whose epochs seal with sequence numbers leased from `leases` (replicas
    /// that share SAs through a store, see [`crate::lease`]). The hot path stays lock-free.
    pub fn with_leases(config: TableConfig, leases: Arc<dyn LeaseProvider>) -> Self {
        Self { leases: Some(leases), ..Self::new(config) }
    }

    /// The table's settings.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The hot-path lookup: takes no lock.
    pub fn get(&self, sa_id: SaId) -> Option<Arc<SaEntry>> {
        self.map.pin().get(&sa_id).cloned()
    }

    /// Number of identifiers mapped (an SA under update counts twice during its grace period).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a freshly established SA. An entry already mapped under its identifier (the
    /// SA Managements never ask for that) is taken out first, so no index keeps pointing at it.
    pub fn install(&self, sa: &EstablishedSa) -> Arc<SaEntry> {
        if let Some(old) = self.get(sa.sa_id) {
            old.wipe();
            self.unmap_entry(&old, sa.sa_id);
        }
        let entry = Arc::new(SaEntry::new(sa, &self.config, self.leases.as_ref()));
        let _control = self.control();
        self.map.pin().insert(sa.sa_id, entry.clone());
        let peers = self.peers.pin();
        let list: PeerList = peers
            .get(&sa.peer)
            .map_or_else(|| Arc::from([entry.clone()]), |old| old.iter().cloned().chain([entry.clone()]).collect());
        peers.insert(sa.peer.clone(), list);
        entry
    }

    /// Installs the keys of a new epoch; the previous epoch stays valid for inbound traffic for
    /// the grace period, and beyond it until a message opened under the new epoch (so a peer
    /// that never learnt the update was confirmed keeps working, see [`Self::roll_back`]).
    pub fn rekey(&self, sa_id: SaId, keys: &SessionKeys, now: Now) {
        if let Some(entry) = self.get(sa_id) {
            entry.install_epoch(entry.suite, keys, self.config.window, self.leases.as_ref());
            self.control().previous_until.insert(entry.sa_id(), now.mono_ms + self.config.grace_ms);
        }
    }

    /// Undoes the last [`Self::rekey`] of an SA: its previous epoch becomes current again, the
    /// newer one is dropped. For a Responder whose Initiator shows (by an authenticated
    /// message under the previous epoch) that it never committed the update.
    pub fn roll_back(&self, sa_id: SaId) -> bool {
        let Some(entry) = self.get(sa_id) else { return false };
        let mut control = self.control();
        control.previous_until.remove(&entry.sa_id());
        entry.roll_back_epoch()
    }

    /// Renames an SA; the old identifier keeps resolving for the grace period. Refused (false)
    /// when `new` already names another SA, or `old` names none.
    pub fn rename(&self, old: SaId, new: SaId, now: Now) -> bool {
        let Some(entry) = self.get(old) else { return false };
        let mut control = self.control();
        let map = self.map.pin();
        if map.get(&new).is_some_and(|e| !Arc::ptr_eq(e, &entry)) {
            return false;
        }
        entry.id.store(new.to_u64(), Release);
        map.insert(new, entry.clone());
        control.aliases.remove(&new);
        control.aliases.insert(old, now.mono_ms + self.config.grace_ms);
        if let Some(until) = control.previous_until.remove(&old) {
            control.previous_until.insert(new, until);
        }
        true
    }

    /// Removes an SA: every message under it is refused from now on and its keys are dropped.
    pub fn remove(&self, sa_id: SaId) -> bool {
        match self.get(sa_id) {
            Some(entry) => {
                entry.wipe();
                self.unmap_entry(&entry, sa_id);
                true
            }
            None => false,
        }
    }

    /// Takes an SA out of the table without wiping it: new lookups miss it, while holders of
    /// the entry (answers still in flight) keep using its keys until they drop it.
    pub fn unmap(&self, sa_id: SaId) -> bool {
        match self.get(sa_id) {
            Some(entry) => {
                self.unmap_entry(&entry, sa_id);
                true
            }
            None => false,
        }
    }

    fn unmap_entry(&self, entry: &Arc<SaEntry>, sa_id: SaId) {
        let entry = entry.clone();
        let current = entry.sa_id();
        let mut control = self.control();
        // The SA is mapped under its current identifier and, during a grace period, under old
        // ones: remove exactly those (no scan of the whole table). An identifier that names
        // another SA (or an alias of another SA) is left alone.
        let map = self.map.pin();
        let ours = |id: &SaId| map.get(id).is_some_and(|e| Arc::ptr_eq(e, &entry));
        let old: Vec<SaId> = control.aliases.keys().copied().filter(&ours).collect();
        for id in old.iter().chain([&current, &sa_id]) {
            if ours(id) {
                map.remove(id);
                control.aliases.remove(id);
            }
        }
        drop(map);
        let peers = self.peers.pin();
        if let Some(list) = peers.get(&entry.peer) {
            let rest: Vec<Arc<SaEntry>> = list.iter().filter(|e| !Arc::ptr_eq(e, &entry)).cloned().collect();
            if rest.is_empty() {
                peers.remove(&entry.peer);
            } else if rest.len() != list.len() {
                peers.insert(entry.peer.clone(), rest.into());
            }
        }
        control.previous_until.remove(&current);
    }

    /// Every SA in the table, once each: an SA still mapped under an old identifier during its
    /// grace period is listed under its current one. A snapshot for administration (it walks
    /// the whole map); the data path uses [`Self::get`].
    pub fn entries(&self) -> Vec<Arc<SaEntry>> {
        let map = self.map.pin();
        map.iter().filter(|(id, entry)| **id == entry.sa_id()).map(|(_, entry)| entry.clone()).collect()
    }

    /// The SAs with a peer, oldest first. Takes no lock.
    pub fn by_peer(&self, peer: &NodeId) -> Vec<Arc<SaEntry>> {
        self.peers.pin().get(peer).map(|list| list.to_vec()).unwrap_or_default()
    }

    /// The newest active SA with a peer: the send path's lookup. Takes no lock and allocates
    /// nothing but the `Arc` clone.
    pub fn live_by_peer(&self, peer: &NodeId) -> Option<Arc<SaEntry>> {
        self.peers.pin().get(peer).and_then(|list| list.iter().rev().find(|e| e.is_active()).cloned())
    }

    /// Ends grace periods, removes SAs past their expiry, and every
    /// [`TableConfig::context_idle_ms`] releases the prepared AEAD keys of epochs that carried no
    /// message since the last release; returns the SAs it removed.
    pub fn sweep(&self, now: Now) -> Vec<SaId> {
        let (aliases, previous): (Vec<SaId>, Vec<SaId>) = {
            let mut control = self.control();
            let aliases = control.aliases.iter().filter(|(_, u)| **u <= now.mono_ms).map(|(id, _)| *id).collect();
            let previous =
                control.previous_until.iter().filter(|(_, u)| **u <= now.mono_ms).map(|(id, _)| *id).collect();
            for id in &aliases {
                control.aliases.remove(id);
            }
            for id in &previous {
                control.previous_until.remove(id);
            }
            (aliases, previous)
        };
        let map = self.map.pin();
        for id in aliases {
            map.remove(&id);
        }
        let mut kept = Vec::new();
        for id in previous {
            match map.get(&id) {
                // The peer has not been seen under the new epoch yet: keep the previous one
                // (it may never have learnt that the update was confirmed), and look again
                // at the next sweep.
                Some(e) if !e.current_epoch_in_use() => kept.push(id),
                Some(e) => e.previous.store(None),
                None => {}
            }
        }
        if !kept.is_empty() {
            let mut control = self.control();
            for id in kept {
                control.previous_until.entry(id).or_insert(now.mono_ms);
            }
        }
        let last = self.released_ms.load(Relaxed);
        let release = now.mono_ms.saturating_sub(last) >= self.config.context_idle_ms
            && self.released_ms.compare_exchange(last, now.mono_ms, Relaxed, Relaxed).is_ok();
        let mut expired = Vec::new();
        for (id, e) in map.iter() {
            // An SA mapped under an old identifier too is visited once, under its own.
            if e.sa_id() != *id {
                continue;
            }
            if e.expires_unix <= now.unix_secs {
                expired.push(*id);
            } else if release {
                e.release_idle_contexts();
            }
        }
        drop(map);
        for id in &expired {
            self.remove(*id);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Suite;
    use crate::testkit::linked;

    const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

    #[test]
    fn rename_never_takes_another_sas_identifier() {
        let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 3, T0);
        let sa = l.pair.initiator.sa(l.sa_id).unwrap().sa.clone();
        let table = SaTable::new(TableConfig::default());
        let a = table.install(&sa);
        let mut other = sa.clone();
        other.sa_id = SaId([9; 8]);
        let b = table.install(&other);
        assert!(!table.rename(sa.sa_id, other.sa_id, T0), "renamed over another SA");
        assert!(Arc::ptr_eq(&table.get(other.sa_id).unwrap(), &b));
        assert!(Arc::ptr_eq(&table.get(sa.sa_id).unwrap(), &a));
        assert_eq!(a.sa_id(), sa.sa_id);
        // Removing one leaves the other whole.
        assert!(table.remove(sa.sa_id));
        assert!(Arc::ptr_eq(&table.get(other.sa_id).unwrap(), &b) && b.is_active());
        assert_eq!(table.by_peer(&sa.peer).len(), 1);
    }

    #[test]
    fn a_message_sealed_under_a_replaced_epoch_does_not_ask_for_another_update() {
        let limits = UsageLimits { soft_messages: 2, ..UsageLimits::default() };
        let config = TableConfig { limits, ..TableConfig::default() };
        let l = linked(Suite::X25519_AES128GCM_SHA256, config, 5, T0);
        let entry = l.initiator_table.get(l.sa_id).unwrap();
        let mut out = Vec::new();
        let epoch0 = entry.current_epoch().unwrap();
        for _ in 0..3 {
            entry.seal(Encoding::Jwe, b"{}", &mut out).unwrap();
        }
        assert!(entry.update_requested());
        // The update commits while a request is being sealed under the old epoch.
        let next = l.pair.initiator.sa(l.sa_id).unwrap().sa.keys.next_epoch(
            Suite::X25519_AES128GCM_SHA256,
            l.sa_id,
            &[1; 32],
            None,
            None,
        );
        l.initiator_table.rekey(l.sa_id, &next, T0);
        assert!(!entry.update_requested());
        let info = entry.seal_with(&epoch0, Encoding::Jwe, b"{}", &mut out).unwrap();
        assert!(info.update_due);
        assert!(!entry.update_requested(), "the replaced epoch asked for a second update");
        // The current epoch's own usage still does.
        for _ in 0..3 {
            entry.seal(Encoding::Jwe, b"{}", &mut out).unwrap();
        }
        assert!(entry.update_requested());
    }

    #[test]
    fn removing_an_sa_keeps_the_old_identifiers_of_others() {
        let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 4, T0);
        let sa = l.pair.initiator.sa(l.sa_id).unwrap().sa.clone();
        let table = SaTable::new(TableConfig::default());
        let mut other = sa.clone();
        other.sa_id = SaId([9; 8]);
        table.install(&sa);
        let b = table.install(&other);
        let b_new = SaId([10; 8]);
        assert!(table.rename(other.sa_id, b_new, T0));
        table.remove(sa.sa_id);
        // B's old identifier still resolves during its grace, and ends with it.
        assert!(Arc::ptr_eq(&table.get(other.sa_id).unwrap(), &b));
        table.sweep(T0.after_ms(TableConfig::default().grace_ms));
        assert!(table.get(other.sa_id).is_none() && Arc::ptr_eq(&table.get(b_new).unwrap(), &b));
    }

    /// A counter shared by "replicas" in one process: what the Redis store's INCRBY does.
    struct SharedCounter {
        next: Mutex<HashMap<[u8; 16], u64>>,
        leases: Mutex<Vec<Arc<crate::lease::SeqLease>>>,
        block: u64,
    }

    impl SharedCounter {
        fn grant(&self, lease: &crate::lease::SeqLease) {
            let mut next = self.next.lock().unwrap();
            let n = next.entry(lease.key().id).or_insert(0);
            lease.grant(*n, *n + self.block);
            *n += self.block;
        }
    }

    impl LeaseProvider for SharedCounter {
        fn lease(&self, key: crate::lease::LeaseKey) -> Arc<crate::lease::SeqLease> {
            let lease = Arc::new(crate::lease::SeqLease::new(key, None));
            self.grant(&lease);
            self.leases.lock().unwrap().push(lease.clone());
            lease
        }
    }

    #[test]
    fn replicas_with_leases_never_seal_with_the_same_sequence_number() {
        let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 6, T0);
        let sa = l.pair.responder.sa(l.sa_id).unwrap().sa.clone();
        let shared = Arc::new(SharedCounter { next: Mutex::default(), leases: Mutex::default(), block: 5 });
        let replicas: Vec<SaTable> =
            (0..3).map(|_| SaTable::with_leases(TableConfig::default(), shared.clone())).collect();
        let entries: Vec<_> = replicas.iter().map(|t| t.install(&sa)).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for round in 0..40 {
            let e = &entries[round % 3];
            let seq = match e.seal(Encoding::Compact, b"{}", &mut out) {
                Ok(info) => info.seq,
                Err(_) => {
                    // Out of numbers: the store grants the next block, as its refill task does.
                    let epoch = e.current_epoch().unwrap();
                    shared.grant(epoch.lease().unwrap());
                    e.seal(Encoding::Compact, b"{}", &mut out).unwrap().seq
                }
            };
            assert!(seen.insert(seq), "sequence number {seq} sealed twice");
        }
        // Without leases the three would have reused 0, 1, 2, ...
        let plain: Vec<SaTable> = (0..2).map(|_| SaTable::new(TableConfig::default())).collect();
        let a = plain[0].install(&sa).seal(Encoding::Compact, b"{}", &mut out).unwrap().seq;
        let b = plain[1].install(&sa).seal(Encoding::Compact, b"{}", &mut out).unwrap().seq;
        assert_eq!(a, b);
    }
}
