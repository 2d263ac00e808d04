//! The Initiator's and the Responder's Security Association Management (clause 7.3.1.1.2).
//!
//! [`InitiatorSam`] and [`ResponderSam`] own the SAs of one node in one role and drive every
//! flow across rb: establishment (through the typestates of [`crate::establish`]), Update SA
//! (identifier, keys, both) and Remove SA. They are sans-I/O: the caller hands in bytes and the
//! time, and gets back bytes to send, events for the agents (relationships ra and rc), and the
//! next deadline. The Initiator always sends requests and the Responder always answers, so the
//! pair runs over any request/response binding; a lost message is recovered by the Initiator
//! resending the *same bytes*, which the Responder answers with the *same reply*.

use std::collections::HashMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::capability::Capabilities;
use crate::control::{self, ControlError as SealError};
use crate::credential::NodeId;
use crate::crypto::{self, Digest, HashAlgorithm};
use crate::establish::*;
use crate::flows::*;
use crate::message::*;
use crate::rng::{Rng, random_array};
use crate::schedule::SessionKeys;
use crate::table::SaTable;
use crate::{Deadline, Now, SaId};

/// Timers of the SA Management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First retransmission after this many milliseconds without an answer; doubles each time.
    pub retransmit_ms: u64,
    /// Sends of one message (the first one included) before the exchange fails with a timeout.
    pub max_attempts: u32,
    /// How long the Responder keeps a half-open establishment.
    pub half_open_ms: u64,
    /// How long old identifiers and keys stay valid for inbound traffic after an update.
    pub grace_ms: u64,
    /// How long a removed SA is remembered as "already marked invalid".
    pub tombstone_ms: u64,
    /// The Responder refuses ("Unwilling to change key") a key update that comes sooner than this
    /// after the previous one of the same SA.
    pub min_key_update_interval_ms: u64,
    /// An SA with no message sealed or opened under it (data path, seen through the attached
    /// table, or control flows) for this long is removed as if it had expired. `None`: no idle
    /// timeout (the default); the SA still ends at its expiry.
    pub idle_timeout_ms: Option<u64>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            retransmit_ms: 1_000,
            max_attempts: 4,
            half_open_ms: 15_000,
            grace_ms: 30_000,
            tombstone_ms: 300_000,
            min_key_update_interval_ms: 1_000,
            idle_timeout_ms: None,
        }
    }
}

/// Bounds on the state a peer can make the Responder hold, and when it asks for cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Half-open establishments in all.
    pub max_half_open: usize,
    /// Half-open establishments from one source (the transport address the adapter reports),
    /// or, when the transport reports none, claimed by one Initiator.
    pub max_half_open_per_peer: usize,
    /// Established SAs in all.
    pub max_sas: usize,
    /// From this many half-open establishments on, every [`SaInit`] must carry a valid cookie
    /// ([`SaCookie`]) before the Responder does any public-key work or keeps any state for it.
    pub cookie_threshold: usize,
    /// [`SaInit`] messages per second one source may send without a cookie; beyond it, that
    /// source must present cookies. 0: always.
    pub init_rate_per_source: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_half_open: 4096,
            max_half_open_per_peer: 8,
            max_sas: 100_000,
            cookie_threshold: 256,
            init_rate_per_source: 8,
        }
    }
}

/// Established SAs one authenticated Initiator may hold at the Responder unless
/// [`ResponderSam::set_max_sas_per_peer`] says otherwise. A further establishment by that
/// Initiator replaces its oldest SA (it is never refused: a peer that restarted and lost its
/// SAs must be able to establish again).
pub const DEFAULT_MAX_SAS_PER_PEER: usize = 8;

/// [`SaAuth`] messages that fail verification before the Responder gives up a half-open
/// establishment: a forgery does not end it, a flood of them does not cost unbounded work.
pub const MAX_AUTH_FAILURES: u32 = 8;

/// How much state a SA Management holds, for tests and metrics: every count returns to its
/// baseline once the SAs are gone and the timers have run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// SA records.
    pub sas: usize,
    /// Half-open establishments (Responder) or exchanges in flight (Initiator).
    pub pending: usize,
    /// Old identifiers still resolving (Responder).
    pub aliases: usize,
    /// Removed identifiers remembered.
    pub tombstones: usize,
    /// SaInit nonces remembered (Responder).
    pub nonces: usize,
    /// SaInit digests of half-open establishments (Responder).
    pub inits: usize,
    /// Sources whose SaInit rate is tracked (Responder).
    pub sources: usize,
    /// SA records per peer (Responder).
    pub peers: usize,
}

/// How often the Responder draws a new cookie key; cookies of the previous key stay valid.
pub const COOKIE_ROTATION_MS: u64 = 60_000;
/// Sources whose [`SaInit`] rate the Responder tracks; beyond it, new sources need cookies.
const MAX_TRACKED_SOURCES: usize = 4096;

/// The Responder's cookie keys and per-source rates: all it holds for an unproven Initiator.
struct Cookies {
    /// (epoch, key) of the current and the previous key.
    keys: [Option<(u32, Zeroizing<[u8; 32]>)>; 2],
    epoch_started_ms: u64,
    /// Source → (start of its one-second window, SaInits in it).
    rates: HashMap<Vec<u8>, (u64, u32)>,
}

impl Cookies {
    fn new() -> Self {
        Self { keys: [None, None], epoch_started_ms: 0, rates: HashMap::new() }
    }

    /// Counts an SaInit from `source`; whether it passes the rate without a cookie.
    fn within_rate(&mut self, source: &[u8], limit: u32, now: Now) -> bool {
        if source.is_empty() {
            return true;
        }
        if !self.rates.contains_key(source) && self.rates.len() >= MAX_TRACKED_SOURCES {
            self.rates.retain(|_, (start, _)| now.mono_ms < *start + 1_000);
            if self.rates.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let (start, count) = self.rates.entry(source.to_vec()).or_insert((now.mono_ms, 0));
        if now.mono_ms >= *start + 1_000 {
            (*start, *count) = (now.mono_ms, 0);
        }
        *count += 1;
        *count <= limit
    }

    /// The current key, rotated every [`COOKIE_ROTATION_MS`].
    fn current(&mut self, now: Now, rng: &mut dyn Rng) -> (u32, [u8; 32]) {
        let stale = self.keys[0].is_none() || now.mono_ms >= self.epoch_started_ms + COOKIE_ROTATION_MS;
        if stale {
            let epoch = self.keys[0].as_ref().map_or(0, |(e, _)| e.wrapping_add(1));
            let key = Zeroizing::new(random_array::<32>(rng));
            self.keys[1] = self.keys[0].take();
            self.keys[0] = Some((epoch, key));
            self.epoch_started_ms = now.mono_ms;
        }
        let (epoch, key) = self.keys[0].as_ref().expect("drawn above");
        (*epoch, **key)
    }

    fn mac(key: &[u8; 32], epoch: u32, source: &[u8], init: &SaInit) -> Vec<u8> {
        let len = |b: &[u8]| (b.len() as u32).to_be_bytes();
        let ini = init.initiator.as_str().as_bytes();
        let mut tag = crypto::hmac(
            HashAlgorithm::Sha256,
            key,
            &[b"onem2m-sa cookie v1", &epoch.to_be_bytes(), &len(source), source, &len(ini), ini, &init.nonce],
        );
        tag.truncate(16);
        tag
    }

    /// A cookie for this SaInit from this source: the key epoch and a MAC over both.
    fn make(&mut self, source: &[u8], init: &SaInit, now: Now, rng: &mut dyn Rng) -> Vec<u8> {
        let (epoch, key) = self.current(now, rng);
        let mut cookie = epoch.to_be_bytes().to_vec();
        cookie.extend(Self::mac(&key, epoch, source, init));
        cookie
    }

    /// Whether the SaInit carries a cookie made for it and this source, by the current or the
    /// previous key.
    fn valid(&self, source: &[u8], init: &SaInit) -> bool {
        let Some(cookie) = init.cookie.as_deref().filter(|c| c.len() == 20) else { return false };
        let epoch = u32::from_be_bytes(cookie[..4].try_into().expect("4 bytes"));
        self.keys.iter().flatten().filter(|(e, _)| *e == epoch).any(|(_, key)| {
            let expected = Self::mac(key, epoch, source, init);
            crypto::ct_eq(&expected, &cookie[4..])
        })
    }
}

/// Identifies one request/response exchange of the Initiator.
pub type ExchangeId = u64;

/// A message the Initiator must send to a peer as a request; the answer goes back to
/// [`InitiatorSam::handle_response`] with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The exchange.
    pub id: ExchangeId,
    /// The Responder node.
    pub peer: NodeId,
    /// The bytes to send.
    pub bytes: Vec<u8>,
}

/// What the Initiator's SA Management reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitiatorEvent {
    /// Send this request (a first send or a byte-identical retransmission).
    Transmit(Exchange),
    /// Initiate SA confirm, success (table 23).
    Established {
        /// The confirm for the Initiator Agent.
        confirm: InitiateSaConfirm,
        /// The Responder.
        peer: NodeId,
    },
    /// Initiate SA confirm, failure (table 23).
    EstablishFailed {
        /// The confirm for the Initiator Agent.
        confirm: InitiateSaConfirm,
        /// The Responder.
        peer: NodeId,
        /// What went wrong.
        error: EstablishError,
    },
    /// Update SA confirm (table 36).
    Updated {
        /// The confirm for the Initiator Agent.
        confirm: UpdateSaConfirm,
        /// Why a rejected update failed (table 36 has no element for it).
        reason: Option<UpdateFailure>,
    },
    /// Remove SA confirm (table 42).
    Removed(RemoveSaConfirm),
    /// An SA reached its expiry or idle timeout and was removed (keys zeroized, tombstoned).
    Expired {
        /// The SA.
        sa_id: SaId,
        /// The Responder.
        peer: NodeId,
    },
}

/// Why an Update SA was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateFailure {
    /// The Responder refused the key update (table 39), or the Initiator did (table 40).
    KeyUpdate(KeyUpdateRejection),
    /// The Responder could not use the control envelope.
    Refused(ControlRejection),
    /// Neither side could agree on a free new identifier (tables 37 and 38).
    IdentifierUnavailable,
    /// No answer in time.
    Timeout,
    /// The Responder's answer did not fit the request.
    Protocol,
}

/// What the Responder's SA Management reports to the Responder Agent (relationship rc).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResponderEvent {
    /// Initiate SA Received (table 24): the Agent's decision, for the record.
    InitiateSaReceived(InitiateSaReceivedRequest, InitiateSaReceivedConfirm),
    /// SA Establishment Complete (table 35).
    SaEstablishmentComplete(SaEstablishmentComplete),
    /// SA Updated (table 41).
    SaUpdated(SaUpdated),
    /// SA Removed (table 44).
    SaRemoved(SaRemoved),
}

/// Why the Responder dropped a message without answering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// The message did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message only an Initiator receives.
    #[error("message not meant for a responder")]
    WrongDirection,
    /// An [`SaAuth`] for an SA that is neither half-open nor just established by these bytes.
    #[error("no establishment waits for this message")]
    NoSuchEstablishment,
    /// A control envelope replayed or older than the last one accepted.
    #[error("replayed control envelope")]
    Replayed,
    /// A control flow the Responder does not expect now.
    #[error("unexpected control flow")]
    UnexpectedFlow,
    /// A copy of an [`SaInit`] whose first copy is still being computed: the reply to that one
    /// answers it (a retransmission after it gets that reply from the cache).
    #[error("the same SaInit is being processed")]
    InProgress,
    /// An [`SaInit`] whose half-open slot expired while its public-key work ran.
    #[error("the establishment expired while it was processed")]
    Expired,
}

/// The Responder's answer to one incoming message.
#[derive(Debug, Default)]
pub struct ResponderOutput {
    /// The reply to send back, if any.
    pub reply: Option<Vec<u8>>,
    /// Events for the Responder Agent.
    pub events: Vec<ResponderEvent>,
    /// Why nothing was answered, when nothing was.
    pub dropped: Option<DropReason>,
}

/// An established SA and its management state, as a SAM holds it.
#[derive(Debug)]
pub struct SaRecord {
    /// The SA: identifier, peer, suite, current keys.
    pub sa: EstablishedSa,
    /// Keys and identifier of the previous epoch, valid for inbound traffic until the deadline.
    pub previous: Option<Box<Previous>>,
    /// When the current keys were installed.
    pub keys_since_ms: u64,
    /// When the current identifier was taken.
    pub id_since_ms: u64,
    ctl_out: u64,
    ctl_in: Option<u64>,
    /// Responder: the next epoch's keys, installed when the Initiator confirms.
    next_keys: Option<Box<SessionKeys>>,
    /// Responder: until when `next_keys` wait for the Initiator's response.
    next_keys_until_ms: u64,
    /// Responder: the Initiator is known to use the current keys (a message opened under them).
    /// Until then the previous epoch is kept, and an authenticated message under it shows the
    /// Initiator never committed the update: the Responder rolls back.
    current_confirmed: bool,
    /// Responder: the identifier this SA had before a rename that a key update may complete
    /// (table 41's "identifier and keys").
    renamed_from: Option<SaId>,
    /// When the SA expires (UNIX seconds), see [`EstablishedSa::expires_unix`].
    expires_unix: u64,
    /// When the SA was established (monotonic milliseconds).
    established_ms: u64,
    /// Last time a message was seen under the SA (monotonic milliseconds), for the idle timeout.
    last_active_ms: u64,
    /// Responder: a counter-proposed identifier waiting for SA Identifier Update Response.
    proposed_id: Option<SaId>,
    /// Responder: the last control reply, for retransmitted requests.
    last_reply: Option<Box<CachedReply>>,
    /// Responder: digest of the [`SaAuth`] that established the SA and the reply, for
    /// retransmissions: kept while the Initiator may still retransmit (its half-open time) and
    /// has not used the SA yet, not for the SA's lifetime.
    established_by: Option<Box<(Digest, Vec<u8>)>>,
    busy: bool,
}

/// A control reply kept for a byte-identical resend of the request: (sequence number, digest of
/// the request, reply).
type CachedReply = (u64, Digest, Vec<u8>);

/// What remains of an SA's previous epoch or identifier during the grace period.
#[derive(Debug)]
pub struct Previous {
    /// The identifier it was known by.
    pub sa_id: SaId,
    /// Its keys.
    pub keys: SessionKeys,
    /// Until when it stays valid (monotonic milliseconds).
    pub until_ms: u64,
}

impl SaRecord {
    fn new(sa: EstablishedSa, now: Now) -> Self {
        Self {
            expires_unix: sa.expires_unix(),
            established_ms: now.mono_ms,
            last_active_ms: now.mono_ms,
            next_keys_until_ms: 0,
            current_confirmed: true,
            renamed_from: None,
            sa,
            previous: None,
            keys_since_ms: now.mono_ms,
            id_since_ms: now.mono_ms,
            ctl_out: 0,
            ctl_in: None,
            next_keys: None,
            proposed_id: None,
            last_reply: None,
            established_by: None,
            busy: false,
        }
    }

    fn seal(&mut self, sender: Role, flow: &ControlFlow) -> Vec<u8> {
        self.ctl_out += 1;
        control::seal(self.sa.suite.aead(), &self.sa.keys, self.sa.sa_id, self.ctl_out, sender, flow)
    }

    fn retire(&mut self, old_id: SaId, old_keys: SessionKeys, now: Now, grace_ms: u64) {
        self.previous = Some(Box::new(Previous { sa_id: old_id, keys: old_keys, until_ms: now.mono_ms + grace_ms }));
    }

    /// When the SA is over at `now`: past its expiry, or idle for longer than `idle_ms`.
    fn is_over(&self, now: Now, idle_ms: Option<u64>) -> bool {
        self.expires_unix <= now.unix_secs || idle_ms.is_some_and(|idle| now.mono_ms >= self.last_active_ms + idle)
    }

    /// Takes the data path's activity mark of the SA into account.
    fn note_activity(&mut self, table: Option<&Arc<SaTable>>, now: Now) {
        if table.and_then(|t| t.get(self.sa.sa_id)).is_some_and(|e| e.take_activity()) {
            self.last_active_ms = now.mono_ms;
        }
    }
}

fn digest_of(bytes: &[u8]) -> Digest {
    crypto::digest(HashAlgorithm::Sha256, &[bytes])
}

// =============================================================================================
// Initiator

enum Step {
    Init(Box<InitiatorAwaitingReply>),
    Auth(Box<InitiatorAwaitingAuthReply>),
    IdUpdate {
        request: UpdateSaRequest,
        sa_id: SaId,
        proposal: SaId,
    },
    IdUpdateResponse {
        request: UpdateSaRequest,
        sa_id: SaId,
        new_id: SaId,
        accepted: bool,
    },
    KeyUpdate {
        request: UpdateSaRequest,
        sa_id: SaId,
        material: KeyMaterial,
        rkm_requested: bool,
        /// The fresh KEM key of the update, when it runs one.
        kem: Option<Box<crypto::KemDecapsulationKey>>,
    },
    KeyUpdateResponse {
        request: UpdateSaRequest,
        sa_id: SaId,
        accepted: Option<SessionKeys>,
    },
    /// The removal keys stay until the confirm is checked or the exchange ends (then zeroized).
    Removal {
        sa_id: SaId,
        suite: crate::crypto::Suite,
        keys: SessionKeys,
    },
}

struct Pending {
    peer: NodeId,
    step: Step,
    bytes: Vec<u8>,
    attempts: u32,
    next_send_ms: u64,
}

/// The Initiator's Security Association Management.
pub struct InitiatorSam {
    config: InitiatorConfig,
    timing: Timing,
    next_exchange: ExchangeId,
    pending: HashMap<ExchangeId, Pending>,
    sas: HashMap<SaId, Box<SaRecord>>,
    tombstones: HashMap<SaId, u64>,
    request_responder_keying_material: bool,
    kem_updates: KemUpdatePolicy,
    table: Option<Arc<SaTable>>,
}

/// When the Initiator's key updates run a fresh KEM exchange (`kpk`, docs/protocol.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KemUpdatePolicy {
    /// With every SA whose peer negotiated the `kem-update` capability at establishment; the
    /// previous key update with the others (the default).
    #[default]
    Auto,
    /// With every SA, negotiated or not (for peers of the version that accepted `kpk` before
    /// capabilities were negotiated).
    Always,
    /// Never.
    Off,
}

impl KemUpdatePolicy {
    /// Whether a key update of `sa` runs a fresh KEM exchange under this policy.
    pub fn applies_to(self, sa: &EstablishedSa) -> bool {
        match self {
            Self::Auto => sa.capabilities.contains(Capabilities::KEM_UPDATE),
            Self::Always => true,
            Self::Off => false,
        }
    }
}

impl InitiatorSam {
    /// A SAM with no SA yet.
    pub fn new(config: InitiatorConfig, timing: Timing) -> Self {
        Self {
            config,
            timing,
            next_exchange: 1,
            pending: HashMap::new(),
            sas: HashMap::new(),
            tombstones: HashMap::new(),
            request_responder_keying_material: true,
            kem_updates: KemUpdatePolicy::Auto,
            table: None,
        }
    }

    /// When SA Key Update runs a fresh KEM exchange (post-compromise security): the next
    /// epoch's keys then mix a secret that whoever held this epoch's secrets and only listened
    /// cannot know. [`KemUpdatePolicy::Auto`] by default: with the SAs whose peer negotiated
    /// `kem-update` (a Responder that predates it refuses `kpk` as an unknown member).
    pub fn set_kem_update_policy(&mut self, policy: KemUpdatePolicy) {
        self.kem_updates = policy;
    }

    /// [`Self::set_kem_update_policy`] with `Always` (`true`) or `Off` (`false`).
    pub fn set_fresh_kem_key_updates(&mut self, yes: bool) {
        self.set_kem_update_policy(if yes { KemUpdatePolicy::Always } else { KemUpdatePolicy::Off });
    }

    /// Keeps `table` (the data path's view) in step with every SA this SAM establishes,
    /// updates and removes.
    pub fn attach_table(&mut self, table: Arc<SaTable>) {
        self.table = Some(table);
    }

    /// Whether SA Key Update asks the Responder for keying material of its own (the default).
    pub fn set_request_responder_keying_material(&mut self, yes: bool) {
        self.request_responder_keying_material = yes;
    }

    /// The SA with this identifier.
    pub fn sa(&self, sa_id: SaId) -> Option<&SaRecord> {
        self.sas.get(&sa_id).map(|r| &**r)
    }

    /// All SAs.
    pub fn sas(&self) -> impl Iterator<Item = &SaRecord> {
        self.sas.values().map(|r| &**r)
    }

    fn id_in_use(&self, id: SaId) -> bool {
        let establishing = self.pending.values().any(|p| matches!(&p.step, Step::Auth(s) if s.sa_id() == id));
        establishing
            || self.sas.contains_key(&id)
            || self.tombstones.contains_key(&id)
            || self.table.as_ref().is_some_and(|t| t.get(id).is_some())
    }

    /// Number of exchanges in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether exchange `id` is still in flight: a driver that got no event from
    /// [`Self::handle_response`] resends only while it is (an update abandoned because its SA was
    /// removed or expired is not).
    pub fn is_pending(&self, id: ExchangeId) -> bool {
        self.pending.contains_key(&id)
    }

    fn start(&mut self, peer: NodeId, step: Step, bytes: Vec<u8>, now: Now) -> Exchange {
        let id = self.next_exchange;
        self.next_exchange += 1;
        self.send(id, peer, step, bytes, now)
    }

    /// Records `step` as waiting on exchange `id` and returns the message to send. A new message
    /// of the same dialogue keeps the exchange id (so the transport keeps its correlation) and
    /// starts its own retransmission budget.
    fn send(&mut self, id: ExchangeId, peer: NodeId, step: Step, bytes: Vec<u8>, now: Now) -> Exchange {
        let next_send_ms = now.mono_ms + self.timing.retransmit_ms;
        self.pending.insert(id, Pending { peer: peer.clone(), step, bytes: bytes.clone(), attempts: 1, next_send_ms });
        Exchange { id, peer, bytes }
    }

    fn continue_with(&mut self, id: ExchangeId, peer: NodeId, step: Step, bytes: Vec<u8>, now: Now) -> InitiatorEvent {
        InitiatorEvent::Transmit(self.send(id, peer, step, bytes, now))
    }

    /// Initiate SA (table 23): starts an establishment with `request.responder`.
    ///
    /// The one-call form of [`Initiator::start`] (with [`Self::config`]) and [`Self::begin`].
    pub fn initiate(
        &mut self,
        request: &InitiateSaRequest,
        now: Now,
        rng: &mut dyn Rng,
    ) -> Result<Exchange, InitiateSaConfirm> {
        let (state, bytes) = Initiator::start(self.config.clone(), request, rng).map_err(|e| e.to_confirm())?;
        Ok(self.begin(state, bytes, now))
    }

    /// The Initiator's configuration, for an [`Initiator::start`] run outside the SAM.
    pub fn config(&self) -> &InitiatorConfig {
        &self.config
    }

    /// Starts the exchange of an establishment whose [`SaInit`] `bytes` and state
    /// [`Initiator::start`] produced (the key generation ran without the SAM).
    pub fn begin(&mut self, state: InitiatorAwaitingReply, bytes: Vec<u8>, now: Now) -> Exchange {
        let peer = state.responder().clone();
        self.start(peer, Step::Init(Box::new(state)), bytes, now)
    }

    /// Update SA (table 36): starts an identifier and/or key update of an SA.
    pub fn update(
        &mut self,
        request: &UpdateSaRequest,
        now: Now,
        rng: &mut dyn Rng,
    ) -> Result<Exchange, UpdateSaConfirm> {
        let reject = UpdateSaConfirm {
            existing_sa_id: request.existing_sa_id,
            new_sa_id: None,
            result: UpdateResult::Rejected,
            operation: request.operation,
        };
        let Some(record) = self.sas.get_mut(&request.existing_sa_id) else { return Err(reject) };
        if record.busy {
            return Err(reject);
        }
        record.busy = true;
        let peer = record.sa.peer.clone();
        let sa_id = request.existing_sa_id;
        let (step, bytes) = if request.operation.changes_identifier() {
            let proposal = fresh_id(rng, |id| self.id_in_use(id));
            let record = self.sas.get_mut(&sa_id).expect("checked");
            let flow = ControlFlow::SaIdentifierUpdateRequest(SaIdentifierUpdateRequest {
                existing_sa_id: sa_id,
                new_sa_id: proposal,
            });
            (Step::IdUpdate { request: request.clone(), sa_id, proposal }, record.seal(Role::Initiator, &flow))
        } else {
            self.key_update_step(request.clone(), sa_id, rng)
        };
        Ok(self.start(peer, step, bytes, now))
    }

    fn key_update_step(&mut self, request: UpdateSaRequest, sa_id: SaId, rng: &mut dyn Rng) -> (Step, Vec<u8>) {
        let material = KeyMaterial::from(Zeroizing::new(random_array::<KEY_UPDATE_MATERIAL_LEN>(rng)).as_slice());
        let rkm_requested = self.request_responder_keying_material;
        let sa = &self.sas.get(&sa_id).expect("caller checked").sa;
        let suite = sa.suite;
        // A fresh KEM key per update (post-compromise security); a key generation failure (never
        // seen in practice) falls back to an update without it.
        let kem = if self.kem_updates.applies_to(sa) {
            crypto::KemDecapsulationKey::generate(suite.kem(), rng).ok().map(Box::new)
        } else {
            None
        };
        let flow = ControlFlow::SaKeyUpdateRequest(SaKeyUpdateRequest {
            sa_id,
            new_keying_material: material.clone(),
            responder_keying_material_requested: rkm_requested,
            fresh_kem_public_key: kem.as_ref().map(|k| k.public_key().to_vec()),
        });
        let record = self.sas.get_mut(&sa_id).expect("caller checked");
        let bytes = record.seal(Role::Initiator, &flow);
        (Step::KeyUpdate { request, sa_id, material, rkm_requested, kem }, bytes)
    }

    /// Remove SA (table 42): marks the SA invalid at once and informs the Responder.
    ///
    /// Returns the exchange that carries SA Removal, or the confirm when the SA is unknown or
    /// already marked invalid.
    pub fn remove(&mut self, request: &RemoveSaRequest, now: Now) -> Result<Exchange, RemoveSaConfirm> {
        let sa_id = request.0.sa_id;
        if self.tombstones.contains_key(&sa_id) {
            return Err(RemoveSaConfirm(RemovalConfirm::rejected(sa_id, RemovalRejection::AlreadyMarkedInvalid)));
        }
        let Some(mut record) = self.discard(sa_id, now) else {
            return Err(RemoveSaConfirm(RemovalConfirm::rejected(sa_id, RemovalRejection::UnknownSaIdentifier)));
        };
        if let Some(t) = &self.table {
            t.remove(sa_id);
        }
        let bytes =
            record.seal(Role::Initiator, &ControlFlow::SaRemovalRequest(SaRemovalRequest(RemovalRequest { sa_id })));
        let peer = record.sa.peer.clone();
        // The keys stay with the exchange, to authenticate the Responder's confirm; they are
        // zeroized when it ends (the rest of the record now).
        let step = Step::Removal { sa_id, suite: record.sa.suite, keys: record.sa.keys.clone() };
        drop(record);
        Ok(self.start(peer, step, bytes, now))
    }

    /// Takes an SA's record out (tombstoned) and abandons any update in flight on it.
    fn discard(&mut self, sa_id: SaId, now: Now) -> Option<Box<SaRecord>> {
        let record = self.sas.remove(&sa_id)?;
        self.pending.retain(|_, p| {
            !matches!(&p.step,
            Step::IdUpdate { sa_id: s, .. } | Step::IdUpdateResponse { sa_id: s, .. }
            | Step::KeyUpdate { sa_id: s, .. } | Step::KeyUpdateResponse { sa_id: s, .. } if *s == sa_id)
        });
        self.tombstones.insert(sa_id, now.mono_ms + self.timing.tombstone_ms);
        Some(record)
    }

    /// Forgets an SA the Responder no longer knows (it answered "unknown SA"): the record is
    /// dropped and its keys zeroized, without a message to the peer and without touching the
    /// attached table (the caller decides what the data path does with in-flight traffic).
    pub fn forget(&mut self, sa_id: SaId, now: Now) -> bool {
        self.discard(sa_id, now).is_some()
    }

    /// How much state the SAM holds.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            sas: self.sas.len(),
            pending: self.pending.len(),
            tombstones: self.tombstones.len(),
            ..Footprint::default()
        }
    }

    /// Processes the Responder's answer to exchange `id`.
    ///
    /// The one-call form of [`Self::admit_response`], [`InitiatorWork::compute`] and
    /// [`Self::commit_response`].
    pub fn handle_response(
        &mut self,
        id: ExchangeId,
        bytes: &[u8],
        now: Now,
        rng: &mut dyn Rng,
    ) -> Vec<InitiatorEvent> {
        match self.admit_response(id, bytes, now, rng) {
            InitiatorAdmitted::Done(events) => events,
            InitiatorAdmitted::Work(work) => {
                let computed = work.compute(bytes, now, rng);
                self.commit_response(computed, now)
            }
        }
    }

    /// The cheap first part of processing the Responder's answer to exchange `id` (see
    /// [`Self::handle_response`]). An answer to an establishment message ([`SaInitReply`],
    /// [`SaAuthReply`]) takes the exchange's state out of the SAM: its public-key work is
    /// [`InitiatorWork::compute`], run without holding the SAM, and [`Self::commit_response`]
    /// puts the result back. Meanwhile [`Self::is_pending`] is false for `id`. Everything else is
    /// handled here in full.
    pub fn admit_response(&mut self, id: ExchangeId, bytes: &[u8], now: Now, rng: &mut dyn Rng) -> InitiatorAdmitted {
        let Some(pending) = self.pending.remove(&id) else { return InitiatorAdmitted::Done(Vec::new()) };
        if !self.answers(&pending.step, bytes) {
            // A duplicate or stale answer (to an earlier message of this exchange), or junk: it
            // neither advances nor ends the exchange, which retransmits as usual.
            self.pending.insert(id, pending);
            return InitiatorAdmitted::Done(Vec::new());
        }
        let peer = pending.peer.clone();
        match pending.step {
            Step::Init(mut state) => {
                if let Ok(Message::Cookie(c)) = Message::decode(bytes) {
                    // The Responder is under load: the same SaInit again, with its cookie, as a
                    // new message of the exchange.
                    return InitiatorAdmitted::Done(match state.set_cookie(c.cookie).map(<[u8]>::to_vec) {
                        Some(out) => vec![self.continue_with(id, peer, Step::Init(state), out, now)],
                        None => {
                            let error = EstablishError::Rejected(RejectionCause::Busy);
                            vec![InitiatorEvent::EstablishFailed { confirm: error.to_confirm(), peer, error }]
                        }
                    });
                }
                InitiatorAdmitted::Work(InitiatorWork { id, peer, step: Box::new(Step::Init(state)) })
            }
            step @ Step::Auth(_) => InitiatorAdmitted::Work(InitiatorWork { id, peer, step: Box::new(step) }),
            step => InitiatorAdmitted::Done(self.handle_control_response(id, peer, step, bytes, now, rng)),
        }
    }

    /// The last part of processing an answer admitted by [`Self::admit_response`]: re-checks
    /// what may have changed while [`InitiatorWork::compute`] ran (the identifier the Responder
    /// chose taken meanwhile by another establishment) and records the next step or the SA.
    pub fn commit_response(&mut self, computed: InitiatorComputed, now: Now) -> Vec<InitiatorEvent> {
        let InitiatorComputed { id, peer, result } = computed;
        // The Responder picks the identifier: one this node already uses (with another peer, or
        // as a tombstone; or taken by another establishment while this one was computed) would
        // let that peer's SA be replaced. Refused.
        let result = result.and_then(|step| match step.sa_id() {
            sa_id if self.id_in_use(sa_id) => {
                Err(EstablishError::Protocol("the responder chose an SA identifier already in use"))
            }
            _ => Ok(step),
        });
        match result {
            Ok(InitiatorStep::Auth(next, out)) => vec![self.continue_with(id, peer, Step::Auth(next), out, now)],
            Ok(InitiatorStep::Established(sa)) => {
                let confirm = sa.to_confirm();
                if let Some(t) = &self.table {
                    t.install(&sa);
                }
                self.sas.insert(sa.sa_id, Box::new(SaRecord::new(*sa, now)));
                vec![InitiatorEvent::Established { confirm, peer }]
            }
            Err(error) => vec![InitiatorEvent::EstablishFailed { confirm: error.to_confirm(), peer, error }],
        }
    }

    /// Whether `bytes` can be the answer to the message `step` sent.
    fn answers(&self, step: &Step, bytes: &[u8]) -> bool {
        let Ok(msg) = Message::decode(bytes) else { return false };
        let sa_id = match step {
            Step::Init(_) => return matches!(msg, Message::InitReply(_) | Message::Cookie(_)),
            Step::Auth(s) => return matches!(msg, Message::AuthReply(r) if r.sa_id == s.sa_id()),
            Step::IdUpdate { sa_id, .. }
            | Step::IdUpdateResponse { sa_id, .. }
            | Step::KeyUpdate { sa_id, .. }
            | Step::KeyUpdateResponse { sa_id, .. }
            | Step::Removal { sa_id, .. } => *sa_id,
        };
        match msg {
            Message::ControlError(e) => e.sa_id == sa_id,
            // Only the Responder can seal the confirm: anything else is not an answer.
            Message::Control(env) if matches!(step, Step::Removal { .. }) => {
                env.sa_id == sa_id && Self::removal_confirm(step, &env).is_some()
            }
            Message::Control(env) => {
                env.sa_id == sa_id && self.sas.get(&sa_id).is_some_and(|r| r.ctl_in.is_none_or(|last| env.seq > last))
            }
            _ => false,
        }
    }

    fn handle_control_response(
        &mut self,
        id: ExchangeId,
        peer: NodeId,
        step: Step,
        bytes: &[u8],
        now: Now,
        rng: &mut dyn Rng,
    ) -> Vec<InitiatorEvent> {
        let (sa_id, request) = match &step {
            Step::IdUpdate { sa_id, request, .. }
            | Step::IdUpdateResponse { sa_id, request, .. }
            | Step::KeyUpdate { sa_id, request, .. }
            | Step::KeyUpdateResponse { sa_id, request, .. } => (*sa_id, Some(request.clone())),
            Step::Removal { sa_id, .. } => (*sa_id, None),
            Step::Init(_) | Step::Auth(_) => unreachable!("handled by the caller"),
        };
        let msg = Message::decode(bytes);
        if let Step::Removal { .. } = step {
            // The SA is gone on this side whatever the answer. Only a confirm sealed under the
            // removal keys says "accepted"; the unauthenticated ctlErr say what they say, and a
            // Responder that could not authenticate the request (ctlErr 3) did not remove it.
            let confirm = match msg {
                Ok(Message::Control(env)) => match Self::removal_confirm(&step, &env) {
                    Some(c) => c,
                    None => RemovalConfirm::rejected(sa_id, RemovalRejection::NotConfirmed),
                },
                Ok(Message::ControlError(e)) => RemovalConfirm::rejected(
                    sa_id,
                    match e.reason {
                        ControlRejection::UnknownSaIdentifier => RemovalRejection::UnknownSaIdentifier,
                        ControlRejection::AlreadyMarkedInvalid => RemovalRejection::AlreadyMarkedInvalid,
                        _ => RemovalRejection::NotConfirmed,
                    },
                ),
                _ => RemovalConfirm::rejected(sa_id, RemovalRejection::NotConfirmed),
            };
            drop(step); // the removal keys are zeroized here
            return vec![InitiatorEvent::Removed(RemoveSaConfirm(confirm))];
        }
        let request = request.expect("update steps carry their request");
        let rejected = |this: &mut Self, reason: UpdateFailure| {
            if let Some(r) = this.sas.get_mut(&sa_id) {
                r.busy = false;
            }
            vec![InitiatorEvent::Updated {
                confirm: UpdateSaConfirm {
                    existing_sa_id: request.existing_sa_id,
                    new_sa_id: None,
                    result: UpdateResult::Rejected,
                    operation: request.operation,
                },
                reason: Some(reason),
            }]
        };
        let Some(record) = self.sas.get_mut(&sa_id) else { return rejected(self, UpdateFailure::Protocol) };
        let flow = match msg {
            Ok(Message::Control(env)) if env.sa_id == sa_id => {
                // The Responder seals with the epoch the request used, or the next one after a
                // confirmed key update.
                let keys = match &step {
                    Step::KeyUpdateResponse { accepted: Some(k), .. } if env.epoch == k.epoch => k,
                    _ if env.epoch == record.sa.keys.epoch => &record.sa.keys,
                    _ => return rejected(self, UpdateFailure::Protocol),
                };
                if record.ctl_in.is_some_and(|last| env.seq <= last) {
                    return rejected(self, UpdateFailure::Protocol);
                }
                match control::open(record.sa.suite.aead(), keys, &env, Role::Responder) {
                    Ok(flow) => {
                        record.ctl_in = Some(env.seq);
                        record.last_active_ms = now.mono_ms;
                        Ok(flow)
                    }
                    Err(e) => Err(e),
                }
            }
            // The Responder could not use our request: nothing was installed there.
            Ok(Message::ControlError(e)) => return rejected(self, UpdateFailure::Refused(e.reason)),
            _ => return rejected(self, UpdateFailure::Protocol),
        };
        match (step, flow) {
            (Step::IdUpdate { request, sa_id, proposal }, Ok(ControlFlow::SaIdentifierUpdateConfirm(c))) => {
                let req = SaIdentifierUpdateRequest { existing_sa_id: sa_id, new_sa_id: proposal };
                if c.validate_against(&req).is_err() {
                    return rejected(self, UpdateFailure::Protocol);
                }
                if c.result == UpdateResult::Accepted {
                    self.rename(sa_id, proposal, now);
                    return self.after_id_update(id, peer, request, proposal, now, rng);
                }
                // A counter-proposal: take it if it is free here too.
                let accepted = !self.id_in_use(c.new_sa_id);
                let flow = ControlFlow::SaIdentifierUpdateResponse(SaIdentifierUpdateResponse {
                    existing_sa_id: accepted.then_some(sa_id),
                    new_sa_id: c.new_sa_id,
                    result: if accepted { UpdateResult::Accepted } else { UpdateResult::Rejected },
                });
                let bytes = self.sas.get_mut(&sa_id).expect("present").seal(Role::Initiator, &flow);
                vec![self.continue_with(
                    id,
                    peer,
                    Step::IdUpdateResponse { request, sa_id, new_id: c.new_sa_id, accepted },
                    bytes,
                    now,
                )]
            }
            (Step::IdUpdateResponse { request, sa_id, new_id, accepted }, Ok(ControlFlow::Ack { .. })) => {
                if !accepted {
                    return rejected(self, UpdateFailure::IdentifierUnavailable);
                }
                self.rename(sa_id, new_id, now);
                self.after_id_update(id, peer, request, new_id, now, rng)
            }
            (Step::KeyUpdate { request, sa_id, material, rkm_requested, kem }, flow) => {
                let req = SaKeyUpdateRequest {
                    sa_id,
                    new_keying_material: material.clone(),
                    responder_keying_material_requested: rkm_requested,
                    fresh_kem_public_key: kem.as_ref().map(|k| k.public_key().to_vec()),
                };
                let confirm = match flow {
                    Ok(ControlFlow::SaKeyUpdateConfirm(c)) if c.validate_against(&req).is_ok() => Some(c),
                    _ => None,
                };
                if let Some(c) = confirm.as_ref().filter(|c| c.result == UpdateResult::Rejected) {
                    let reason = c.rejection_reason.expect("validated: present when rejected");
                    return rejected(self, UpdateFailure::KeyUpdate(reason));
                }
                // The secret of the fresh KEM exchange; a ciphertext that does not decapsulate
                // fails the update like a confirm that does not open.
                let kem_secret = match (&kem, confirm.as_ref().and_then(|c| c.fresh_kem_ciphertext.as_deref())) {
                    (Some(k), Some(ct)) => k.decapsulate(ct).map(Some).map_err(|_| ()),
                    _ => Ok(None),
                };
                drop(kem); // the fresh KEM private key is zeroized here
                let (response, new_keys) = match (confirm, kem_secret) {
                    (Some(c), Ok(kem_secret)) => {
                        let record = self.sas.get(&sa_id).expect("present");
                        let keys = record.sa.keys.next_epoch(
                            record.sa.suite,
                            sa_id,
                            &material,
                            c.responder_keying_material.as_deref(),
                            kem_secret.as_ref().map(|s| s.as_bytes()),
                        );
                        (
                            SaKeyUpdateResponse { sa_id, result: UpdateResult::Accepted, rejection_reason: None },
                            Some(keys),
                        )
                    }
                    // Anything else (a tag that does not verify, a confirm that breaks a NOTE)
                    // is a decryption failure; say so, so the Responder drops its next keys.
                    _ => (
                        SaKeyUpdateResponse {
                            sa_id,
                            result: UpdateResult::Rejected,
                            rejection_reason: Some(KeyUpdateRejection::DecryptionFailure),
                        },
                        None,
                    ),
                };
                // An accepted response is sealed under the new keys: it proves the Initiator
                // derived them. A rejection is sealed under the existing keys.
                let record = self.sas.get_mut(&sa_id).expect("present");
                let flow = ControlFlow::SaKeyUpdateResponse(response);
                let bytes = match &new_keys {
                    Some(keys) => {
                        record.ctl_out += 1;
                        control::seal(record.sa.suite.aead(), keys, sa_id, record.ctl_out, Role::Initiator, &flow)
                    }
                    None => record.seal(Role::Initiator, &flow),
                };
                vec![self.continue_with(
                    id,
                    peer,
                    Step::KeyUpdateResponse { request, sa_id, accepted: new_keys },
                    bytes,
                    now,
                )]
            }
            (Step::KeyUpdateResponse { request, sa_id, accepted }, Ok(ControlFlow::Ack { .. })) => {
                let Some(keys) = accepted else {
                    return rejected(self, UpdateFailure::KeyUpdate(KeyUpdateRejection::DecryptionFailure));
                };
                let grace = self.timing.grace_ms;
                let record = self.sas.get_mut(&sa_id).expect("present");
                let old = std::mem::replace(&mut record.sa.keys, keys);
                record.retire(sa_id, old, now, grace);
                record.keys_since_ms = now.mono_ms;
                record.busy = false;
                if let Some(t) = &self.table {
                    t.rekey(sa_id, &record.sa.keys, now);
                }
                let new_sa_id = request.operation.changes_identifier().then_some(sa_id);
                vec![InitiatorEvent::Updated {
                    confirm: UpdateSaConfirm {
                        existing_sa_id: request.existing_sa_id,
                        new_sa_id,
                        result: UpdateResult::Accepted,
                        operation: request.operation,
                    },
                    reason: None,
                }]
            }
            _ => rejected(self, UpdateFailure::Protocol),
        }
    }

    /// The Responder's SA Removal confirm in `env`, when it opens under the removal keys and
    /// names the SA.
    fn removal_confirm(step: &Step, env: &ControlEnvelope) -> Option<RemovalConfirm> {
        let Step::Removal { sa_id, suite, keys } = step else { return None };
        if env.epoch != keys.epoch {
            return None;
        }
        match control::open(suite.aead(), keys, env, Role::Responder) {
            Ok(ControlFlow::SaRemovalConfirm(SaRemovalConfirm(c))) if c.sa_id == *sa_id => Some(c),
            _ => None,
        }
    }

    fn rename(&mut self, old: SaId, new: SaId, now: Now) {
        let mut record = self.sas.remove(&old).expect("present");
        record.sa.sa_id = new;
        record.id_since_ms = now.mono_ms;
        let keys = record.sa.keys.clone();
        record.retire(old, keys, now, self.timing.grace_ms);
        self.sas.insert(new, record);
        if let Some(t) = &self.table {
            t.rename(old, new, now);
        }
    }

    fn after_id_update(
        &mut self,
        id: ExchangeId,
        peer: NodeId,
        request: UpdateSaRequest,
        new_id: SaId,
        now: Now,
        rng: &mut dyn Rng,
    ) -> Vec<InitiatorEvent> {
        if request.operation.changes_keys() {
            let (step, bytes) = self.key_update_step(request, new_id, rng);
            return vec![self.continue_with(id, peer, step, bytes, now)];
        }
        self.sas.get_mut(&new_id).expect("present").busy = false;
        vec![InitiatorEvent::Updated {
            confirm: UpdateSaConfirm {
                existing_sa_id: request.existing_sa_id,
                new_sa_id: Some(new_id),
                result: UpdateResult::Accepted,
                operation: request.operation,
            },
            reason: None,
        }]
    }

    /// Gives up exchange `id` now (its transport failed for good): reports the failure of the
    /// procedure it carried, as a timeout would.
    pub fn abandon(&mut self, id: ExchangeId) -> Vec<InitiatorEvent> {
        match self.pending.remove(&id) {
            Some(p) => self.give_up(p),
            None => Vec::new(),
        }
    }

    /// The earliest time [`Self::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Deadline> {
        let sends = self.pending.values().map(|p| p.next_send_ms);
        let graces = self.sas.values().filter_map(|r| r.previous.as_ref().map(|p| p.until_ms));
        let idle = self.timing.idle_timeout_ms;
        let idles = self.sas.values().filter_map(|r| idle.map(|i| r.last_active_ms + i));
        sends.chain(graces).chain(idles).chain(self.tombstones.values().copied()).min()
    }

    /// Retransmits what is due, fails exchanges out of attempts, ends grace periods.
    pub fn handle_timeout(&mut self, now: Now) -> Vec<InitiatorEvent> {
        let mut events = Vec::new();
        let due: Vec<ExchangeId> =
            self.pending.iter().filter(|(_, p)| p.next_send_ms <= now.mono_ms).map(|(id, _)| *id).collect();
        for id in due {
            let p = self.pending.get_mut(&id).expect("listed");
            if p.attempts < self.timing.max_attempts {
                p.next_send_ms = now.mono_ms + (self.timing.retransmit_ms << p.attempts.min(16));
                p.attempts += 1;
                events.push(InitiatorEvent::Transmit(Exchange { id, peer: p.peer.clone(), bytes: p.bytes.clone() }));
                continue;
            }
            let p = self.pending.remove(&id).expect("listed");
            events.extend(self.give_up(p));
        }
        let expired = self.expire(now);
        events.extend(expired.into_iter().map(|(sa_id, peer)| InitiatorEvent::Expired { sa_id, peer }));
        events
    }

    /// Ends grace periods, removes the SAs past their expiry or idle timeout (everywhere: record
    /// zeroized, attached table, tombstoned, updates in flight abandoned) and forgets old
    /// tombstones, without touching other exchanges in flight (for a driver that runs its own
    /// retransmissions, see [`Self::abandon`]). Returns the SAs it removed, with their peers.
    pub fn expire(&mut self, now: Now) -> Vec<(SaId, NodeId)> {
        let table = self.table.clone();
        for record in self.sas.values_mut() {
            if record.previous.as_ref().is_some_and(|p| p.until_ms <= now.mono_ms) {
                record.previous = None;
            }
            record.note_activity(table.as_ref(), now);
        }
        self.tombstones.retain(|_, until| *until > now.mono_ms);
        let over: Vec<SaId> =
            self.sas.values().filter(|r| r.is_over(now, self.timing.idle_timeout_ms)).map(|r| r.sa.sa_id).collect();
        let mut removed = Vec::new();
        for sa_id in over {
            if let Some(record) = self.discard(sa_id, now) {
                if let Some(t) = &table {
                    t.remove(sa_id);
                }
                removed.push((sa_id, record.sa.peer.clone()));
            }
        }
        removed
    }

    fn give_up(&mut self, p: Pending) -> Vec<InitiatorEvent> {
        let update_timeout = |this: &mut Self, sa_id: SaId, request: UpdateSaRequest| {
            if let Some(r) = this.sas.get_mut(&sa_id) {
                r.busy = false;
            }
            InitiatorEvent::Updated {
                confirm: UpdateSaConfirm {
                    existing_sa_id: request.existing_sa_id,
                    new_sa_id: None,
                    result: UpdateResult::Rejected,
                    operation: request.operation,
                },
                reason: Some(UpdateFailure::Timeout),
            }
        };
        vec![match p.step {
            Step::Init(_) | Step::Auth(_) => {
                let error = EstablishError::Timeout;
                InitiatorEvent::EstablishFailed { confirm: error.to_confirm(), peer: p.peer, error }
            }
            Step::IdUpdate { request, sa_id, .. }
            | Step::IdUpdateResponse { request, sa_id, .. }
            | Step::KeyUpdate { request, sa_id, .. }
            | Step::KeyUpdateResponse { request, sa_id, .. } => update_timeout(self, sa_id, request),
            // The SA is already invalid here; the Responder will learn on its next use of it.
            Step::Removal { sa_id, .. } => InitiatorEvent::Removed(RemoveSaConfirm(RemovalConfirm::rejected(
                sa_id,
                RemovalRejection::NotConfirmed,
            ))),
        }]
    }
}

/// The outcome of [`InitiatorSam::admit_response`].
#[derive(Debug)]
pub enum InitiatorAdmitted {
    /// Handled: these are the events.
    Done(Vec<InitiatorEvent>),
    /// Public-key work to run before [`InitiatorSam::commit_response`].
    Work(InitiatorWork),
}

/// The public-key work of an answer to an establishment message: pure, no SAM state.
pub struct InitiatorWork {
    id: ExchangeId,
    peer: NodeId,
    step: Box<Step>,
}

impl std::fmt::Debug for InitiatorWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorWork").field("exchange", &self.id).field("peer", &self.peer).finish_non_exhaustive()
    }
}

/// The result of [`InitiatorWork::compute`], to hand to [`InitiatorSam::commit_response`].
pub struct InitiatorComputed {
    id: ExchangeId,
    peer: NodeId,
    result: Result<InitiatorStep, EstablishError>,
}

impl std::fmt::Debug for InitiatorComputed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorComputed")
            .field("exchange", &self.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

enum InitiatorStep {
    /// SaInitReply accepted: the state waiting for SaAuthReply and the SaAuth bytes.
    Auth(Box<InitiatorAwaitingAuthReply>, Vec<u8>),
    Established(Box<EstablishedSa>),
}

impl InitiatorStep {
    fn sa_id(&self) -> SaId {
        match self {
            Self::Auth(next, _) => next.sa_id(),
            Self::Established(sa) => sa.sa_id,
        }
    }
}

impl InitiatorWork {
    /// Runs the public-key work on the Responder's answer `bytes` (the same bytes given to
    /// [`InitiatorSam::admit_response`]): for [`SaInitReply`], decapsulation, ticket and
    /// signature verification and the Initiator's own signature; for [`SaAuthReply`], its
    /// verification. Touches no SAM state.
    pub fn compute(self, bytes: &[u8], now: Now, rng: &mut dyn Rng) -> InitiatorComputed {
        let result = match *self.step {
            Step::Init(state) => {
                state.handle(bytes, now, rng).map(|(next, out)| InitiatorStep::Auth(Box::new(next), out))
            }
            Step::Auth(state) => state.handle(bytes).map(|sa| InitiatorStep::Established(Box::new(sa))),
            _ => unreachable!("admit_response hands out establishment steps only"),
        };
        InitiatorComputed { id: self.id, peer: self.peer, result }
    }
}

fn fresh_id(rng: &mut dyn Rng, taken: impl Fn(SaId) -> bool) -> SaId {
    loop {
        let id = SaId::random(rng);
        if !taken(id) {
            return id;
        }
    }
}

// =============================================================================================
// Responder

struct HalfOpen {
    /// Shared with a verification of an [`SaAuth`] running outside the SAM
    /// ([`ResponderSam::admit`]); the commit installs only if this very state is still here.
    state: Arc<ResponderAwaitingAuth>,
    /// The transport source of its SaInit (empty when the transport reports none).
    source: Vec<u8>,
    init_digest: Digest,
    reply: Vec<u8>,
    until_ms: u64,
    /// [`SaAuth`] messages for it that failed verification so far.
    failures: u32,
}

/// An [`SaInit`] admitted by [`ResponderSam::admit`] whose public-key work runs outside the SAM:
/// it holds its identifier, a half-open slot and its per-source share until committed or expired.
struct Reserved {
    source: Vec<u8>,
    initiator: NodeId,
    init_digest: Digest,
    nonce: Vec<u8>,
    until_ms: u64,
    token: u64,
}

/// The outcome of [`ResponderSam::admit`]: the message is handled, or its public-key work is to
/// be done — by [`ResponderWork::compute`], which needs no SAM and so runs without its lock —
/// and then committed with [`ResponderSam::commit`].
#[derive(Debug)]
pub enum Admitted {
    /// Handled (a retransmission answered from the cache, a cookie, Busy, a drop, a control
    /// flow): nothing more to do.
    Done(ResponderOutput),
    /// Public-key work to run before [`ResponderSam::commit`].
    Work(ResponderWork),
}

/// The public-key work of an admitted [`SaInit`] or [`SaAuth`]: pure, no SAM state.
pub struct ResponderWork(Work);

enum Work {
    Init { init: Box<SaInit>, config: ResponderConfig, sa_id: SaId, token: u64 },
    Auth { auth: Box<SaAuth>, digest: Digest, state: Arc<ResponderAwaitingAuth> },
}

impl std::fmt::Debug for ResponderWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, sa_id) = match &self.0 {
            Work::Init { sa_id, .. } => ("SaInit", sa_id),
            Work::Auth { auth, .. } => ("SaAuth", &auth.sa_id),
        };
        f.debug_struct("ResponderWork").field("message", &kind).field("sa_id", sa_id).finish_non_exhaustive()
    }
}

/// The result of [`ResponderWork::compute`], to hand to [`ResponderSam::commit`].
pub struct ResponderComputed(Computed);

type Verified = Result<(EstablishedSa, Vec<u8>, SaEstablishmentComplete), AuthRefusal>;

enum Computed {
    Init { init: SaInit, sa_id: SaId, token: u64, result: Box<Result<Accepted, InitRefusal>> },
    Auth { sa_id: SaId, digest: Digest, state: Arc<ResponderAwaitingAuth>, result: Box<Verified> },
}

impl std::fmt::Debug for ResponderComputed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, sa_id) = match &self.0 {
            Computed::Init { sa_id, .. } => ("SaInit", sa_id),
            Computed::Auth { sa_id, .. } => ("SaAuth", sa_id),
        };
        f.debug_struct("ResponderComputed").field("message", &kind).field("sa_id", sa_id).finish_non_exhaustive()
    }
}

impl ResponderWork {
    /// Runs the public-key work: for [`SaInit`], SA Parameter Establishment, the Responder
    /// Agent's decision, the Responder's key share, keying material and signature
    /// ([`Responder::accept`]); for [`SaAuth`], the Initiator's confirmation, ticket and
    /// signatures ([`ResponderAwaitingAuth::verify`]). Touches no SAM state.
    pub fn compute(self, now: Now, rng: &mut dyn Rng, agent: &mut dyn ResponderAgent) -> ResponderComputed {
        ResponderComputed(match self.0 {
            Work::Init { init, config, sa_id, token } => {
                let result = Box::new(Responder::accept(config, agent, &init, sa_id, rng));
                Computed::Init { init: *init, sa_id, token, result }
            }
            Work::Auth { auth, digest, state } => {
                let result = Box::new(state.verify(&auth, now));
                Computed::Auth { sa_id: auth.sa_id, digest, state, result }
            }
        })
    }
}

/// Hook for the Responder's decisions on key updates.
pub trait KeyUpdatePolicy {
    /// Returns the reason to reject an SA Key Update of `sa_id`, or `None` to accept it.
    fn key_update(&mut self, sa_id: SaId, responder_keying_material_requested: bool) -> Option<KeyUpdateRejection>;
}

/// Accepts every key update the timing rules allow.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptKeyUpdates;

impl KeyUpdatePolicy for AcceptKeyUpdates {
    fn key_update(&mut self, _: SaId, _: bool) -> Option<KeyUpdateRejection> {
        None
    }
}

/// The nonces of the [`SaInit`]s a Responder admitted, each until its tombstone time, so that
/// a replayed SaInit is dropped. Bounded: when full, the oldest nonce is forgotten (a replay of
/// an SaInit that old costs the Responder one establishment's work, as a fresh SaInit would,
/// and cannot complete without the Initiator's private key); it never refuses an establishment.
#[derive(Default)]
struct NonceRecord {
    /// Keyed by the nonce itself, inline (an SaInit's nonce is exactly [`NONCE_LEN`] bytes):
    /// no allocation per remembered nonce.
    until: HashMap<Nonce, u64>,
    /// Nonces in the order they were taken, with the time they were taken until: deadlines
    /// grow with the monotonic clock, so the front is the first to expire. An entry whose
    /// nonce was given back or taken again is skipped when it reaches the front.
    order: std::collections::VecDeque<(u64, Nonce)>,
}

/// An SaInit nonce as the Responder remembers it.
type Nonce = [u8; crate::message::NONCE_LEN];

impl NonceRecord {
    fn len(&self) -> usize {
        self.until.len()
    }

    fn get(&self, nonce: &[u8]) -> Option<&u64> {
        self.until.get(&Nonce::try_from(nonce).ok()?)
    }

    /// Forgets the front entry; its nonce only if it still holds that deadline.
    fn pop(&mut self) {
        if let Some((until, nonce)) = self.order.pop_front()
            && self.until.get(&nonce) == Some(&until)
        {
            self.until.remove(&nonce);
        }
    }

    /// Remembers `nonce` until `until`, forgetting the oldest ones beyond `cap` (the queue,
    /// with the entries it skips, holds at most twice that). A nonce of another length (never
    /// admitted: `SaInit` validation checks it) is not remembered.
    fn insert(&mut self, nonce: &[u8], until: u64, cap: usize) {
        let Ok(nonce) = Nonce::try_from(nonce) else { return };
        let cap = cap.max(1);
        while self.until.len() >= cap || self.order.len() >= 2 * cap {
            if self.order.is_empty() {
                self.until.clear();
                break;
            }
            self.pop();
        }
        self.until.insert(nonce, until);
        self.order.push_back((until, nonce));
    }

    fn remove(&mut self, nonce: &[u8]) {
        if let Ok(nonce) = Nonce::try_from(nonce) {
            self.until.remove(&nonce);
        }
    }

    /// Forgets the nonces whose time is up at `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        while self.order.front().is_some_and(|(until, _)| *until <= now_ms) {
            self.pop();
        }
    }
}

/// The Responder's Security Association Management.
pub struct ResponderSam {
    config: ResponderConfig,
    timing: Timing,
    limits: Limits,
    half_open: HashMap<SaId, HalfOpen>,
    by_init: HashMap<Digest, SaId>,
    sas: HashMap<SaId, Box<SaRecord>>,
    aliases: HashMap<SaId, (SaId, u64)>,
    tombstones: HashMap<SaId, (u64, Option<Box<CachedReply>>)>,
    seen_nonces: NonceRecord,
    cookies: Cookies,
    key_policy: Box<dyn KeyUpdatePolicy + Send>,
    table: Option<Arc<SaTable>>,
    /// SA records per authenticated Initiator.
    per_peer: HashMap<NodeId, usize>,
    /// [`SaInit`]s admitted and being computed, by the identifier reserved for them.
    reserved: HashMap<SaId, Reserved>,
    next_token: u64,
    max_sas_per_peer: usize,
    /// Events of SAs removed while handling a message (expired ones pruned to make room),
    /// reported with that message's output.
    deferred: Vec<ResponderEvent>,
}

impl ResponderSam {
    /// A SAM with no SA yet.
    pub fn new(config: ResponderConfig, timing: Timing, limits: Limits) -> Self {
        Self {
            config,
            timing,
            limits,
            half_open: HashMap::new(),
            by_init: HashMap::new(),
            sas: HashMap::new(),
            aliases: HashMap::new(),
            tombstones: HashMap::new(),
            seen_nonces: NonceRecord::default(),
            cookies: Cookies::new(),
            key_policy: Box::new(AcceptKeyUpdates),
            table: None,
            per_peer: HashMap::new(),
            reserved: HashMap::new(),
            next_token: 0,
            max_sas_per_peer: DEFAULT_MAX_SAS_PER_PEER,
            deferred: Vec::new(),
        }
    }

    /// Established SAs one authenticated Initiator may hold (at least 1; default
    /// [`DEFAULT_MAX_SAS_PER_PEER`]). An establishment beyond it replaces that Initiator's
    /// oldest SA, which is removed as by [`Self::remove_local`].
    pub fn set_max_sas_per_peer(&mut self, max: usize) {
        self.max_sas_per_peer = max.max(1);
    }

    /// How much state the SAM holds.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            sas: self.sas.len(),
            pending: self.half_open.len() + self.reserved.len(),
            aliases: self.aliases.len(),
            tombstones: self.tombstones.len(),
            nonces: self.seen_nonces.len(),
            inits: self.by_init.len(),
            sources: self.cookies.rates.len(),
            peers: self.per_peer.len(),
        }
    }

    /// Keeps `table` (the data path's view) in step with every SA this SAM establishes,
    /// updates and removes.
    pub fn attach_table(&mut self, table: Arc<SaTable>) {
        self.table = Some(table);
    }

    /// Replaces the key update policy.
    pub fn set_key_update_policy(&mut self, policy: impl KeyUpdatePolicy + Send + 'static) {
        self.key_policy = Box::new(policy);
    }

    /// The SA known by this identifier (current or, during the grace period, previous).
    pub fn sa(&self, sa_id: SaId) -> Option<&SaRecord> {
        self.sas.get(&sa_id).or_else(|| self.aliases.get(&sa_id).and_then(|(cur, _)| self.sas.get(cur))).map(|r| &**r)
    }

    /// All SAs.
    pub fn sas(&self) -> impl Iterator<Item = &SaRecord> {
        self.sas.values().map(|r| &**r)
    }

    /// Half-open establishments (with the [`SaInit`]s admitted and still being computed).
    pub fn half_open(&self) -> usize {
        self.half_open.len() + self.reserved.len()
    }

    fn id_taken(&self, id: SaId) -> bool {
        self.sas.contains_key(&id)
            || self.half_open.contains_key(&id)
            || self.reserved.contains_key(&id)
            || self.aliases.contains_key(&id)
            || self.tombstones.contains_key(&id)
            || self.table.as_ref().is_some_and(|t| t.get(id).is_some())
    }

    /// Takes an SA out everywhere: its record (returned, zeroized when dropped), its old
    /// identifiers, the per-peer count and the attached table. The caller tombstones it.
    fn discard(&mut self, sa_id: SaId) -> Option<Box<SaRecord>> {
        let record = self.sas.remove(&sa_id)?;
        if let Some(t) = &self.table {
            t.remove(sa_id);
        }
        self.aliases.retain(|_, (cur, _)| *cur != sa_id);
        if let Some(n) = self.per_peer.get_mut(&record.sa.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&record.sa.peer);
            }
        }
        Some(record)
    }

    /// [`Self::discard`] and a tombstone without a cached reply.
    fn remove_now(&mut self, sa_id: SaId, now: Now) -> bool {
        let known = self.discard(sa_id).is_some();
        if known {
            self.tombstones.insert(sa_id, (now.mono_ms + self.timing.tombstone_ms, None));
        }
        known
    }

    /// Removes an SA locally, without telling the Initiator (its next use of the SA is refused).
    pub fn remove_local(&mut self, sa_id: SaId, now: Now) -> RemoveSaConfirm {
        if self.tombstones.contains_key(&sa_id) {
            return RemoveSaConfirm(RemovalConfirm::rejected(sa_id, RemovalRejection::AlreadyMarkedInvalid));
        }
        if self.remove_now(sa_id, now) {
            RemoveSaConfirm(RemovalConfirm::accepted(sa_id))
        } else {
            RemoveSaConfirm(RemovalConfirm::rejected(sa_id, RemovalRejection::UnknownSaIdentifier))
        }
    }

    /// Removes the SAs past their expiry or idle timeout; the events for the Agent.
    fn expire_sas(&mut self, now: Now) -> Vec<ResponderEvent> {
        let table = self.table.clone();
        for record in self.sas.values_mut() {
            record.note_activity(table.as_ref(), now);
        }
        let over: Vec<SaId> =
            self.sas.values().filter(|r| r.is_over(now, self.timing.idle_timeout_ms)).map(|r| r.sa.sa_id).collect();
        over.into_iter()
            .filter(|id| self.remove_now(*id, now))
            .map(|sa_id| ResponderEvent::SaRemoved(SaRemoved { sa_id }))
            .collect()
    }

    /// Processes one message from an Initiator, from a transport that reports no source.
    pub fn handle(
        &mut self,
        bytes: &[u8],
        now: Now,
        rng: &mut dyn Rng,
        agent: &mut dyn ResponderAgent,
    ) -> ResponderOutput {
        self.handle_from(&[], bytes, now, rng, agent)
    }

    /// Processes one message from an Initiator that arrived from `source`: the transport's view
    /// of where it came from (an IP address, without the port), as opaque bytes. Cookies and the
    /// per-source bounds are tied to it.
    ///
    /// The one-call form of [`Self::admit`], [`ResponderWork::compute`] and [`Self::commit`].
    pub fn handle_from(
        &mut self,
        source: &[u8],
        bytes: &[u8],
        now: Now,
        rng: &mut dyn Rng,
        agent: &mut dyn ResponderAgent,
    ) -> ResponderOutput {
        match self.admit(source, bytes, now, rng) {
            Admitted::Done(out) => out,
            Admitted::Work(work) => {
                let computed = work.compute(now, rng, agent);
                self.commit(computed, now)
            }
        }
    }

    /// The cheap first part of handling a message from `source` (see [`Self::handle_from`]):
    /// decoding, the retransmission caches, the replay, cookie, rate and capacity checks. An
    /// [`SaInit`] that passes reserves its identifier and a half-open slot (a copy of it that
    /// arrives before the commit is dropped: the reply to the first copy answers it); an
    /// [`SaAuth`] for a half-open establishment takes a share of its state. Their public-key work
    /// is then [`ResponderWork::compute`], which a runtime runs without holding the SAM, so that
    /// establishments proceed in parallel. Control flows are handled here in full.
    pub fn admit(&mut self, source: &[u8], bytes: &[u8], now: Now, rng: &mut dyn Rng) -> Admitted {
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => return Admitted::Done(ResponderOutput { dropped: Some(e.into()), ..Default::default() }),
        };
        let admitted = match msg {
            Message::Init(init) => self.admit_init(source, init, bytes, now, rng),
            Message::Auth(auth) => self.admit_auth(auth, bytes),
            Message::Control(env) => Admitted::Done(self.on_control(&env, bytes, now, rng)),
            _ => Admitted::Done(ResponderOutput { dropped: Some(DropReason::WrongDirection), ..Default::default() }),
        };
        match admitted {
            Admitted::Done(out) => Admitted::Done(self.with_deferred(out)),
            work => work,
        }
    }

    /// Prepends the events of SAs removed to make room.
    fn with_deferred(&mut self, mut out: ResponderOutput) -> ResponderOutput {
        if !self.deferred.is_empty() {
            out.events.splice(0..0, self.deferred.drain(..));
        }
        out
    }

    /// The last part of handling a message admitted by [`Self::admit`]: installs what
    /// [`ResponderWork::compute`] produced, if it still applies. An [`SaInit`] whose reservation
    /// expired meanwhile ([`Self::handle_timeout`]) is dropped ([`DropReason::Expired`]); an
    /// [`SaAuth`] whose half-open establishment ended meanwhile (timeout, too many failures,
    /// completed by a concurrent copy) gets what a sequential SAM would have answered: the same
    /// reply as that copy, or a drop.
    pub fn commit(&mut self, computed: ResponderComputed, now: Now) -> ResponderOutput {
        let out = match computed.0 {
            Computed::Init { init, sa_id, token, result } => self.commit_init(&init, sa_id, token, *result, now),
            Computed::Auth { sa_id, digest, state, result } => self.commit_auth(sa_id, digest, &state, *result, now),
        };
        self.with_deferred(out)
    }

    fn admit_init(&mut self, source: &[u8], init: SaInit, bytes: &[u8], now: Now, rng: &mut dyn Rng) -> Admitted {
        let done = Admitted::Done;
        let digest = digest_of(bytes);
        if let Some(id) = self.by_init.get(&digest) {
            if let Some(h) = self.half_open.get(id) {
                // A retransmitted SaInit: the same reply, no new state, no new signature.
                return done(ResponderOutput { reply: Some(h.reply.clone()), ..Default::default() });
            }
            if self.reserved.contains_key(id) {
                // Its first copy is being computed: the reply to that one answers this one too.
                return done(ResponderOutput { dropped: Some(DropReason::InProgress), ..Default::default() });
            }
        }
        if self.seen_nonces.get(&init.nonce).is_some_and(|until| *until > now.mono_ms) {
            // The nonce of an establishment that already ran: a replayed SaInit.
            return done(ResponderOutput { dropped: Some(DropReason::Replayed), ..Default::default() });
        }
        // Under load, or from a source over its rate, the SaInit must prove that its sender
        // receives at its address before anything is spent on it: a cookie, made and checked
        // without state.
        let within_rate = self.cookies.within_rate(source, self.limits.init_rate_per_source, now);
        let half_open = self.half_open();
        if (!within_rate || half_open >= self.limits.cookie_threshold) && !self.cookies.valid(source, &init) {
            let cookie = self.cookies.make(source, &init, now, rng);
            let reply = Message::Cookie(SaCookie { version: PROTOCOL_VERSION, cookie });
            return done(ResponderOutput { reply: Some(reply.encode()), ..Default::default() });
        }
        if self.sas.len() + half_open >= self.limits.max_sas {
            // Full: SAs past their expiry may not have been swept yet.
            let pruned = self.expire_sas(now);
            self.deferred.extend(pruned);
        }
        self.seen_nonces.expire(now.mono_ms);
        // The per-peer bound counts what one source holds: a claimed Initiator ID proves
        // nothing yet, so counting by it would let anyone lock a node out.
        let per_peer = if source.is_empty() {
            self.half_open.values().filter(|h| h.state.initiator() == &init.initiator).count()
                + self.reserved.values().filter(|r| r.initiator == init.initiator).count()
        } else {
            self.half_open.values().filter(|h| h.source == source).count()
                + self.reserved.values().filter(|r| r.source == source).count()
        };
        // Reserved SaInits count as half-open: two admitted concurrently cannot both take the
        // last slot.
        let half_open = self.half_open();
        if half_open >= self.limits.max_half_open
            || per_peer >= self.limits.max_half_open_per_peer
            // A half-open establishment may become an SA: it holds one of max_sas already.
            || self.sas.len() + half_open >= self.limits.max_sas
        {
            let reply = Message::InitReply(SaInitReply {
                version: PROTOCOL_VERSION,
                parameters: SaParameterEstablishmentConfirm {
                    result: EstablishResult::Failure,
                    security_association: None,
                    sa_id: None,
                    cause: Some(RejectionCause::Busy),
                },
                send_responder_key: None,
                responder_keying_material: None,
                responder_authorization_context: None,
                send_responder_authorization_key: None,
                initiator_authorization_challenge: None,
                capabilities: None,
            });
            return done(ResponderOutput { reply: Some(reply.encode()), ..Default::default() });
        }
        let sa_id = fresh_id(rng, |id| self.id_taken(id));
        let token = self.next_token;
        self.next_token += 1;
        // The digest and the nonce are taken now, so a copy of this SaInit is recognised while
        // it is computed; a refusal gives the nonce back.
        self.by_init.insert(digest.clone(), sa_id);
        let nonce_cap = self.limits.max_half_open.saturating_mul(16);
        self.seen_nonces.insert(&init.nonce, now.mono_ms + self.timing.tombstone_ms, nonce_cap);
        self.reserved.insert(
            sa_id,
            Reserved {
                source: source.to_vec(),
                initiator: init.initiator.clone(),
                init_digest: digest,
                nonce: init.nonce.clone(),
                until_ms: now.mono_ms + self.timing.half_open_ms,
                token,
            },
        );
        Admitted::Work(ResponderWork(Work::Init { init: Box::new(init), config: self.config.clone(), sa_id, token }))
    }

    fn commit_init(
        &mut self,
        init: &SaInit,
        sa_id: SaId,
        token: u64,
        result: Result<Accepted, InitRefusal>,
        now: Now,
    ) -> ResponderOutput {
        if self.reserved.get(&sa_id).is_none_or(|r| r.token != token) {
            // Expired while it was computed (the sweep gave its slot back): nothing is kept.
            return ResponderOutput { dropped: Some(DropReason::Expired), ..Default::default() };
        }
        let reserved = self.reserved.remove(&sa_id).expect("checked");
        match result {
            Ok(accepted) => {
                let (req, cnf) = accepted.received;
                self.half_open.insert(
                    sa_id,
                    HalfOpen {
                        state: Arc::new(accepted.state),
                        source: reserved.source,
                        init_digest: reserved.init_digest,
                        reply: accepted.reply.clone(),
                        until_ms: now.mono_ms + self.timing.half_open_ms,
                        failures: 0,
                    },
                );
                ResponderOutput {
                    reply: Some(accepted.reply),
                    events: vec![ResponderEvent::InitiateSaReceived(req, cnf)],
                    dropped: None,
                }
            }
            Err(refusal) => {
                self.by_init.remove(&reserved.init_digest);
                self.seen_nonces.remove(&reserved.nonce);
                let mut events = Vec::new();
                match refusal.error {
                    EstablishError::AdministrativeReasons => events.push(ResponderEvent::InitiateSaReceived(
                        InitiateSaReceivedRequest { initiator: init.initiator.clone(), sa_id },
                        InitiateSaReceivedConfirm::reject(sa_id),
                    )),
                    EstablishError::NoParametersInCommon => {
                        events.push(ResponderEvent::SaEstablishmentComplete(unmatched_parameters(sa_id)))
                    }
                    _ => {}
                }
                ResponderOutput { reply: refusal.reply, events, dropped: None }
            }
        }
    }

    /// The answer to an [`SaAuth`] for an SA that is established already: the same reply to a
    /// retransmission of the message that established it, a drop for anything else (a replay).
    fn established_reply(&self, sa_id: SaId, digest: &Digest) -> Option<ResponderOutput> {
        let record = self.sas.get(&sa_id)?;
        Some(match record.established_by.as_deref() {
            Some((d, reply)) if d == digest => ResponderOutput { reply: Some(reply.clone()), ..Default::default() },
            _ => ResponderOutput { dropped: Some(DropReason::NoSuchEstablishment), ..Default::default() },
        })
    }

    fn admit_auth(&mut self, auth: SaAuth, bytes: &[u8]) -> Admitted {
        let digest = digest_of(bytes);
        if let Some(out) = self.established_reply(auth.sa_id, &digest) {
            return Admitted::Done(out);
        }
        let Some(half) = self.half_open.get(&auth.sa_id) else {
            return Admitted::Done(ResponderOutput {
                dropped: Some(DropReason::NoSuchEstablishment),
                ..Default::default()
            });
        };
        // Verify first: the identifier travelled in the clear, so anyone can send an SaAuth for
        // it; one that fails leaves the establishment waiting for the genuine one (until its
        // timeout, or MAX_AUTH_FAILURES failures).
        let state = half.state.clone();
        Admitted::Work(ResponderWork(Work::Auth { auth: Box::new(auth), digest, state }))
    }

    fn commit_auth(
        &mut self,
        sa_id: SaId,
        digest: Digest,
        state: &Arc<ResponderAwaitingAuth>,
        result: Verified,
        now: Now,
    ) -> ResponderOutput {
        let mut events = Vec::new();
        // A concurrent copy of this SaAuth may have established the SA meanwhile.
        if let Some(out) = self.established_reply(sa_id, &digest) {
            return out;
        }
        // The establishment this SaAuth was verified against must still be waiting: not timed
        // out, not given up, not replaced.
        let Some(half) = self.half_open.get_mut(&sa_id).filter(|h| Arc::ptr_eq(&h.state, state)) else {
            return ResponderOutput { dropped: Some(DropReason::NoSuchEstablishment), ..Default::default() };
        };
        match result {
            Ok((sa, reply, complete)) => {
                let half = self.half_open.remove(&sa_id).expect("present");
                self.by_init.remove(&half.init_digest);
                // The Initiator is authenticated now: over its cap, its oldest SA makes room.
                let peer = sa.peer.clone();
                while self.per_peer.get(&peer).is_some_and(|n| *n >= self.max_sas_per_peer) {
                    let oldest = self
                        .sas
                        .values()
                        .filter(|r| r.sa.peer == peer)
                        .min_by_key(|r| (r.established_ms, r.sa.sa_id.to_u64()))
                        .map(|r| r.sa.sa_id)
                        .expect("counted");
                    self.remove_now(oldest, now);
                    events.push(ResponderEvent::SaRemoved(SaRemoved { sa_id: oldest }));
                }
                if let Some(t) = &self.table {
                    t.install(&sa);
                }
                let mut record = Box::new(SaRecord::new(sa, now));
                record.established_by = Some(Box::new((digest, reply.clone())));
                self.sas.insert(sa_id, record);
                *self.per_peer.entry(peer).or_default() += 1;
                events.push(ResponderEvent::SaEstablishmentComplete(complete));
                ResponderOutput { reply: Some(reply), events, dropped: None }
            }
            Err(refusal) => {
                half.failures += 1;
                if half.failures >= MAX_AUTH_FAILURES {
                    let half = self.half_open.remove(&sa_id).expect("present");
                    self.by_init.remove(&half.init_digest);
                    events.push(ResponderEvent::SaEstablishmentComplete(refusal.complete));
                }
                ResponderOutput { reply: Some(refusal.reply), events, dropped: None }
            }
        }
    }

    fn control_error(sa_id: SaId, reason: ControlRejection) -> ResponderOutput {
        let reply =
            Message::ControlError(crate::message::ControlError { version: PROTOCOL_VERSION, sa_id, reason }).encode();
        ResponderOutput { reply: Some(reply), ..Default::default() }
    }

    fn on_control(&mut self, env: &ControlEnvelope, bytes: &[u8], now: Now, rng: &mut dyn Rng) -> ResponderOutput {
        let digest = digest_of(bytes);
        let current = if self.sas.contains_key(&env.sa_id) {
            env.sa_id
        } else if let Some((cur, _)) = self.aliases.get(&env.sa_id) {
            *cur
        } else if let Some((_, last)) = self.tombstones.get(&env.sa_id) {
            return match last.as_deref() {
                Some((seq, d, reply)) if *seq == env.seq && *d == digest => {
                    ResponderOutput { reply: Some(reply.clone()), ..Default::default() }
                }
                _ => Self::control_error(env.sa_id, ControlRejection::AlreadyMarkedInvalid),
            };
        } else {
            return Self::control_error(env.sa_id, ControlRejection::UnknownSaIdentifier);
        };
        let in_use = self.table.as_ref().and_then(|t| t.get(current)).is_some_and(|e| e.current_epoch_in_use());
        let record = self.sas.get_mut(&current).expect("resolved");
        if let Some((seq, d, reply)) = record.last_reply.as_deref() {
            if *seq == env.seq && *d == digest {
                return ResponderOutput { reply: Some(reply.clone()), ..Default::default() };
            }
        }
        if record.ctl_in.is_some_and(|last| env.seq <= last) {
            return ResponderOutput { dropped: Some(DropReason::Replayed), ..Default::default() };
        }
        record.current_confirmed |= in_use;
        let aead = record.sa.suite.aead();
        // The current keys; the next epoch's during a key update; the previous epoch's while the
        // Initiator has not been seen under the current one, or for a removal during the grace
        // period.
        let previous =
            record.previous.as_ref().filter(|p| p.keys.epoch == env.epoch && p.keys.epoch != record.sa.keys.epoch);
        let (opened, under_previous) = if env.epoch == record.sa.keys.epoch {
            (control::open(aead, &record.sa.keys, env, Role::Initiator), false)
        } else if let Some(next) = record.next_keys.as_ref().filter(|k| k.epoch == env.epoch) {
            (control::open(aead, next, env, Role::Initiator), false)
        } else if let Some(p) = previous {
            (control::open(aead, &p.keys, env, Role::Initiator), true)
        } else {
            (Err(SealError::BadTag), false)
        };
        let flow = match opened {
            Ok(flow) => flow,
            Err(SealError::BadTag) => return Self::control_error(env.sa_id, ControlRejection::DecryptionFailure),
            Err(_) => return ResponderOutput { dropped: Some(DropReason::UnexpectedFlow), ..Default::default() },
        };
        // Keys to seal the answer under: those of the request (the previous epoch's only for a
        // removal the Initiator sealed during the grace period).
        let mut reply_keys = None;
        if under_previous {
            if !record.current_confirmed {
                // An authenticated message under the previous epoch, and none yet under the
                // current one: the Initiator never committed the key update (it lost our Ack).
                // Roll back to the keys it uses.
                let previous = record.previous.take().expect("matched");
                record.sa.keys = previous.keys;
                if let Some(t) = &self.table {
                    t.roll_back(current);
                }
            } else if matches!(flow, ControlFlow::SaRemovalRequest(_)) {
                reply_keys = record.previous.as_ref().map(|p| p.keys.clone());
            } else {
                return Self::control_error(env.sa_id, ControlRejection::DecryptionFailure);
            }
        }
        if env.epoch == record.sa.keys.epoch {
            record.current_confirmed = true;
        }
        record.ctl_in = Some(env.seq);
        record.last_active_ms = now.mono_ms;
        if !matches!(flow, ControlFlow::SaKeyUpdateRequest(_) | ControlFlow::SaKeyUpdateResponse(_)) {
            record.renamed_from = None;
        }
        let mut events = Vec::new();
        let answer = match flow {
            ControlFlow::SaIdentifierUpdateRequest(req) if req.existing_sa_id == current => {
                let taken = self.id_taken(req.new_sa_id);
                let cnf = if taken {
                    let alternative = fresh_id(rng, |id| self.id_taken(id) || id == req.new_sa_id);
                    self.sas.get_mut(&current).expect("resolved").proposed_id = Some(alternative);
                    SaIdentifierUpdateConfirm {
                        existing_sa_id: Some(current),
                        new_sa_id: alternative,
                        result: UpdateResult::Rejected,
                    }
                } else {
                    SaIdentifierUpdateConfirm {
                        existing_sa_id: None,
                        new_sa_id: req.new_sa_id,
                        result: UpdateResult::Accepted,
                    }
                };
                let reply = self
                    .sas
                    .get_mut(&current)
                    .expect("resolved")
                    .seal(Role::Responder, &ControlFlow::SaIdentifierUpdateConfirm(cnf));
                if !taken {
                    events.push(self.rename(current, req.new_sa_id, now));
                }
                reply
            }
            ControlFlow::SaIdentifierUpdateResponse(rsp) => {
                let record = self.sas.get_mut(&current).expect("resolved");
                let proposed = record.proposed_id.take();
                if proposed != Some(rsp.new_sa_id) {
                    return ResponderOutput { dropped: Some(DropReason::UnexpectedFlow), ..Default::default() };
                }
                let reply = record.seal(Role::Responder, &ControlFlow::Ack { seq: env.seq });
                if rsp.result == UpdateResult::Accepted {
                    events.push(self.rename(current, rsp.new_sa_id, now));
                }
                reply
            }
            ControlFlow::SaKeyUpdateRequest(req) if req.sa_id == current => {
                let record = self.sas.get_mut(&current).expect("resolved");
                // A newer authenticated request shows that the Initiator abandoned any update
                // still pending here (it commits only after our Ack): its keys are dropped.
                record.next_keys = None;
                let too_soon = now.mono_ms < record.keys_since_ms + self.timing.min_key_update_interval_ms;
                let reason = if too_soon {
                    Some(KeyUpdateRejection::UnwillingToChangeKey)
                } else {
                    self.key_policy.key_update(current, req.responder_keying_material_requested)
                };
                let half_open_ms = self.timing.half_open_ms;
                let record = self.sas.get_mut(&current).expect("resolved");
                // The fresh KEM exchange, when the Initiator asks for one: a key that does not fit
                // the suite is "Unable to encrypt with Initiator key".
                let kem = match (&reason, &req.fresh_kem_public_key) {
                    (None, Some(pk)) => match crypto::encapsulate(record.sa.suite.kem(), pk, rng) {
                        Ok(pair) => Ok(Some(pair)),
                        Err(_) => Err(KeyUpdateRejection::UnableToEncryptWithInitiatorKey),
                    },
                    _ => Ok(None),
                };
                let cnf = match (reason, kem) {
                    (Some(reason), _) | (None, Err(reason)) => {
                        record.renamed_from = None;
                        SaKeyUpdateConfirm {
                            sa_id: current,
                            responder_keying_material: None,
                            result: UpdateResult::Rejected,
                            rejection_reason: Some(reason),
                            fresh_kem_ciphertext: None,
                        }
                    }
                    (None, Ok(kem)) => {
                        let rkm = req.responder_keying_material_requested.then(|| {
                            KeyMaterial::from(Zeroizing::new(random_array::<KEY_UPDATE_MATERIAL_LEN>(rng)).as_slice())
                        });
                        let (ct, ss) = kem.unzip();
                        record.next_keys = Some(Box::new(record.sa.keys.next_epoch(
                            record.sa.suite,
                            current,
                            &req.new_keying_material,
                            rkm.as_deref(),
                            ss.as_ref().map(|s| s.as_bytes()),
                        )));
                        record.next_keys_until_ms = now.mono_ms + half_open_ms;
                        SaKeyUpdateConfirm {
                            sa_id: current,
                            responder_keying_material: rkm,
                            result: UpdateResult::Accepted,
                            rejection_reason: None,
                            fresh_kem_ciphertext: ct,
                        }
                    }
                };
                record.seal(Role::Responder, &ControlFlow::SaKeyUpdateConfirm(cnf))
            }
            ControlFlow::SaKeyUpdateResponse(rsp) if rsp.sa_id == current => {
                let grace = self.timing.grace_ms;
                let record = self.sas.get_mut(&current).expect("resolved");
                let Some(next) = record.next_keys.take() else {
                    return ResponderOutput { dropped: Some(DropReason::UnexpectedFlow), ..Default::default() };
                };
                let accepted = rsp.result == UpdateResult::Accepted && env.epoch == next.epoch;
                let renamed_from = record.renamed_from.take();
                if accepted {
                    let old = std::mem::replace(&mut record.sa.keys, *next);
                    record.retire(current, old, now, grace);
                    record.keys_since_ms = now.mono_ms;
                    // The Initiator commits when our Ack arrives: until it is seen under the new
                    // keys, the previous ones stay and a message under them rolls back.
                    record.current_confirmed = false;
                    if let Some(t) = &self.table {
                        t.rekey(current, &record.sa.keys, now);
                    }
                    events.push(ResponderEvent::SaUpdated(match renamed_from {
                        // The key half of an Update SA "identifier and keys" (table 41).
                        Some(old_id) => SaUpdated {
                            existing_sa_id: old_id,
                            operation: SaUpdatedOperation::IdentifierAndKeysUpdated,
                            new_sa_id: Some(current),
                        },
                        None => SaUpdated {
                            existing_sa_id: current,
                            operation: SaUpdatedOperation::KeysUpdated,
                            new_sa_id: None,
                        },
                    }));
                }
                record.seal(Role::Responder, &ControlFlow::Ack { seq: env.seq })
            }
            // Only this SA's own identifiers (current, or an old one in its grace period).
            ControlFlow::SaRemovalRequest(req)
                if req.0.sa_id == current || self.aliases.get(&req.0.sa_id).is_some_and(|(cur, _)| *cur == current) =>
            {
                let mut record = self.discard(current).expect("resolved");
                let flow = ControlFlow::SaRemovalConfirm(SaRemovalConfirm(RemovalConfirm::accepted(current)));
                let reply = match &reply_keys {
                    Some(keys) => {
                        record.ctl_out += 1;
                        control::seal(record.sa.suite.aead(), keys, current, record.ctl_out, Role::Responder, &flow)
                    }
                    None => record.seal(Role::Responder, &flow),
                };
                drop(reply_keys);
                drop(record); // keys zeroized here
                let cached =
                    (now.mono_ms + self.timing.tombstone_ms, Some(Box::new((env.seq, digest.clone(), reply.clone()))));
                self.tombstones.insert(current, cached.clone());
                if env.sa_id != current {
                    self.tombstones.insert(env.sa_id, cached);
                }
                events.push(ResponderEvent::SaRemoved(SaRemoved { sa_id: current }));
                return ResponderOutput { reply: Some(reply), events, dropped: None };
            }
            _ => return ResponderOutput { dropped: Some(DropReason::UnexpectedFlow), ..Default::default() },
        };
        let record_id = self.aliases.get(&current).map(|(c, _)| *c).unwrap_or(current);
        let record_id = if self.sas.contains_key(&record_id) { record_id } else { current };
        if let Some(record) = self.sas.get_mut(&record_id) {
            record.last_reply = Some(Box::new((env.seq, digest, answer.clone())));
        }
        ResponderOutput { reply: Some(answer), events, dropped: None }
    }

    fn rename(&mut self, old: SaId, new: SaId, now: Now) -> ResponderEvent {
        let mut record = self.sas.remove(&old).expect("present");
        record.sa.sa_id = new;
        record.id_since_ms = now.mono_ms;
        record.renamed_from = Some(old);
        let keys = record.sa.keys.clone();
        record.retire(old, keys, now, self.timing.grace_ms);
        self.sas.insert(new, record);
        let until = now.mono_ms + self.timing.grace_ms;
        for (_, (cur, _)) in self.aliases.iter_mut().filter(|(_, (cur, _))| *cur == old) {
            *cur = new;
        }
        self.aliases.insert(old, (new, until));
        if let Some(t) = &self.table {
            t.rename(old, new, now);
        }
        ResponderEvent::SaUpdated(SaUpdated {
            existing_sa_id: old,
            operation: SaUpdatedOperation::IdentifierUpdated,
            new_sa_id: Some(new),
        })
    }

    /// The earliest time [`Self::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Deadline> {
        let half = self.half_open.values().map(|h| h.until_ms).chain(self.reserved.values().map(|r| r.until_ms));
        let alias = self.aliases.values().map(|(_, u)| *u);
        let tomb = self.tombstones.values().map(|(u, _)| *u);
        let grace = self.sas.values().filter_map(|r| r.previous.as_ref().map(|p| p.until_ms));
        let next = self.sas.values().filter(|r| r.next_keys.is_some()).map(|r| r.next_keys_until_ms);
        let idle = self.timing.idle_timeout_ms;
        let idles = self.sas.values().filter_map(|r| idle.map(|i| r.last_active_ms + i));
        // The reply that established an SA answers retransmissions of its SaAuth for the
        // half-open time (the Initiator retransmits no longer).
        let half_open = self.timing.half_open_ms;
        let replies = self.sas.values().filter(|r| r.established_by.is_some()).map(|r| r.established_ms + half_open);
        half.chain(alias).chain(tomb).chain(grace).chain(next).chain(idles).chain(replies).min()
    }

    /// Expires half-open establishments, grace periods, pending key updates and tombstones, and
    /// removes the SAs past their expiry or idle timeout (reported as SA Removed).
    pub fn handle_timeout(&mut self, now: Now) -> Vec<ResponderEvent> {
        let t = now.mono_ms;
        let expired: Vec<SaId> = self.half_open.iter().filter(|(_, h)| h.until_ms <= t).map(|(id, _)| *id).collect();
        let by_init = &mut self.by_init;
        self.reserved.retain(|_, r| {
            let keep = r.until_ms > t;
            if !keep {
                by_init.remove(&r.init_digest);
            }
            keep
        });
        let mut events = Vec::new();
        for id in expired {
            let h = self.half_open.remove(&id).expect("listed");
            self.by_init.remove(&h.init_digest);
            events.push(ResponderEvent::SaEstablishmentComplete(SaEstablishmentComplete {
                sa_id: id,
                result: EstablishResult::Failure,
                failure_cause: Some(EstablishmentFailureCause::Timeout),
            }));
        }
        self.aliases.retain(|_, (_, until)| *until > t);
        self.tombstones.retain(|_, (until, _)| *until > t);
        self.seen_nonces.expire(t);
        self.cookies.rates.retain(|_, (start, _)| t < *start + 1_000);
        let grace = self.timing.grace_ms;
        for record in self.sas.values_mut() {
            let in_use =
                self.table.as_ref().and_then(|tb| tb.get(record.sa.sa_id)).is_some_and(|e| e.current_epoch_in_use());
            record.current_confirmed |= in_use;
            // The Initiator has the reply once it uses the SA, and retransmits for the half-open
            // time at most: the reply is not kept beyond either.
            if in_use || record.established_ms + self.timing.half_open_ms <= t {
                record.established_by = None;
            }
            if let Some(p) = record.previous.as_mut().filter(|p| p.until_ms <= t) {
                if record.current_confirmed {
                    record.previous = None;
                } else {
                    // The Initiator has not been seen under the current keys yet: keep the
                    // previous ones, look again after another grace period.
                    p.until_ms = t + grace;
                }
            }
            if record.next_keys.is_some() && record.next_keys_until_ms <= t {
                // The Initiator never answered the key update: its keys are dropped.
                record.next_keys = None;
            }
        }
        events.extend(self.expire_sas(now));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SignatureAlgorithm, Suite};
    use crate::rng::SeededRng;
    use crate::table::TableConfig;
    use crate::testkit::{Pair, TestPki, initiator_config, responder_config};

    const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

    fn pair() -> Pair {
        let mut rng = SeededRng::new([5; 32]);
        let pki = TestPki::new(&mut rng, T0.unix_secs);
        let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*", "/id-asn"], &mut rng);
        let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
        Pair::new(
            initiator_config(i, pki.anchors.clone(), &[Suite::X25519_AES128GCM_SHA256]),
            responder_config(r, pki.anchors.clone(), &Suite::ALL),
            5,
            T0,
        )
    }

    fn establish(p: &mut Pair) -> SaId {
        let request = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
        let ex = p.initiator.initiate(&request, p.now, &mut p.rng).unwrap();
        p.send(ex);
        p.run(100);
        match p.initiator_events.pop() {
            Some(InitiatorEvent::Established { confirm, .. }) => confirm.security_association.unwrap().sa_id,
            other => panic!("{other:?}"),
        }
    }

    /// Seals `flow` as the Initiator of `sa_id` would, with its next control sequence number.
    fn seal_as_initiator(p: &mut Pair, sa_id: SaId, flow: &ControlFlow) -> Vec<u8> {
        p.initiator.sas.get_mut(&sa_id).unwrap().seal(Role::Initiator, flow)
    }

    #[test]
    fn a_removal_naming_another_sas_old_identifier_is_refused() {
        let mut p = pair();
        let a = establish(&mut p);
        let b = establish(&mut p);
        p.advance(5_000);
        let ex = p
            .initiator
            .update(&UpdateSaRequest { existing_sa_id: b, operation: UpdateOperation::Identifier }, p.now, &mut p.rng)
            .unwrap();
        p.send(ex);
        p.run(100);
        let b2 = p.responder.sa(b).expect("b's old identifier still resolves").sa.sa_id;
        assert_ne!(b2, b);
        // SA Removal under A's keys, naming B's old identifier inside.
        let flow = ControlFlow::SaRemovalRequest(SaRemovalRequest(RemovalRequest { sa_id: b }));
        let bytes = seal_as_initiator(&mut p, a, &flow);
        let out = p.responder.handle(&bytes, p.now, &mut p.rng, &mut crate::establish::AcceptAll);
        assert!(out.reply.is_none() && out.events.is_empty(), "{out:?}");
        assert!(p.responder.sa(a).is_some() && p.responder.sa(b2).is_some(), "an SA was removed");
    }

    #[test]
    fn a_counter_proposed_identifier_the_table_holds_is_refused() {
        let mut p = pair();
        let table = Arc::new(SaTable::new(TableConfig::default()));
        p.initiator.attach_table(table.clone());
        let a = establish(&mut p);
        // Another SA of this node is mapped under X in the table (not in the SAM's records).
        let x = SaId([0x42; 8]);
        let mut other = p.initiator.sa(a).unwrap().sa.clone();
        other.sa_id = x;
        table.install(&other);
        p.advance(5_000);
        let ex = p
            .initiator
            .update(&UpdateSaRequest { existing_sa_id: a, operation: UpdateOperation::Identifier }, p.now, &mut p.rng)
            .unwrap();
        // The Responder counter-proposes X.
        let record = p.initiator.sa(a).unwrap();
        let cnf = ControlFlow::SaIdentifierUpdateConfirm(SaIdentifierUpdateConfirm {
            existing_sa_id: Some(a),
            new_sa_id: x,
            result: UpdateResult::Rejected,
        });
        let reply = control::seal(record.sa.suite.aead(), &record.sa.keys, a, 1, Role::Responder, &cnf);
        let events = p.initiator.handle_response(ex.id, &reply, p.now, &mut p.rng);
        let [InitiatorEvent::Transmit(next)] = events.as_slice() else { panic!("{events:?}") };
        let Ok(Message::Control(env)) = Message::decode(&next.bytes) else { panic!("a control envelope") };
        let record = p.initiator.sa(a).unwrap();
        match control::open(record.sa.suite.aead(), &record.sa.keys, &env, Role::Initiator) {
            Ok(ControlFlow::SaIdentifierUpdateResponse(r)) => assert_eq!(r.result, UpdateResult::Rejected),
            other => panic!("{other:?}"),
        }
        assert_eq!(table.get(x).unwrap().sa_id(), x, "the other SA lost its identifier");
        assert_eq!(p.initiator.sa(a).unwrap().sa.sa_id, a);
    }

    /// Every update flow on the wire that opens under `keys`.
    fn opened_under(p: &Pair, keys: &SessionKeys, suite: Suite) -> Vec<ControlFlow> {
        p.wire
            .iter()
            .filter_map(|(to_responder, bytes)| match Message::decode(bytes) {
                Ok(Message::Control(env)) if env.epoch == keys.epoch => {
                    let sender = if *to_responder { Role::Initiator } else { Role::Responder };
                    control::open(suite.aead(), keys, &env, sender).ok()
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_passive_holder_of_an_epochs_secrets_cannot_derive_the_next_one() {
        for fresh_kem in [true, false] {
            let mut p = pair();
            p.initiator.set_fresh_kem_key_updates(fresh_kem);
            let a = establish(&mut p);
            let record = p.initiator.sa(a).unwrap();
            let (stolen, suite) = (record.sa.keys.clone(), record.sa.suite);
            p.advance(5_000);
            p.wire.clear();
            let ex = p
                .initiator
                .update(&UpdateSaRequest { existing_sa_id: a, operation: UpdateOperation::Keys }, p.now, &mut p.rng)
                .unwrap();
            p.send(ex);
            p.run(100);
            let actual = p.initiator.sa(a).unwrap().sa.keys.clone();
            assert_eq!(actual.epoch, 1);
            assert_eq!(actual.i2r.key(), p.responder.sa(a).unwrap().sa.keys.i2r.key());
            // The attacker reads nkm and rkm with the stolen keys, and sees kpk and kct.
            let flows = opened_under(&p, &stolen, suite);
            let req = flows.iter().find_map(|f| match f {
                ControlFlow::SaKeyUpdateRequest(r) => Some(r.clone()),
                _ => None,
            });
            let cnf = flows.iter().find_map(|f| match f {
                ControlFlow::SaKeyUpdateConfirm(c) => Some(c.clone()),
                _ => None,
            });
            let (req, cnf) = (req.expect("request read"), cnf.expect("confirm read"));
            assert_eq!(req.fresh_kem_public_key.is_some(), fresh_kem);
            assert_eq!(cnf.fresh_kem_ciphertext.is_some(), fresh_kem);
            let guess =
                stolen.next_epoch(suite, a, &req.new_keying_material, cnf.responder_keying_material.as_deref(), None);
            assert_eq!(guess.i2r.key() == actual.i2r.key(), !fresh_kem, "fresh KEM: {fresh_kem}");
        }
    }

    #[test]
    fn a_fresh_kem_key_that_does_not_fit_the_suite_is_refused() {
        let mut p = pair();
        let a = establish(&mut p);
        p.advance(5_000);
        let flow = ControlFlow::SaKeyUpdateRequest(SaKeyUpdateRequest {
            sa_id: a,
            new_keying_material: vec![1; KEY_UPDATE_MATERIAL_LEN].into(),
            responder_keying_material_requested: true,
            fresh_kem_public_key: Some(vec![9; 5]),
        });
        let bytes = seal_as_initiator(&mut p, a, &flow);
        let reply = p.responder.handle(&bytes, p.now, &mut p.rng, &mut crate::establish::AcceptAll).reply.unwrap();
        let Ok(Message::Control(env)) = Message::decode(&reply) else { panic!("a control reply") };
        let record = p.responder.sa(a).unwrap();
        match control::open(record.sa.suite.aead(), &record.sa.keys, &env, Role::Responder) {
            Ok(ControlFlow::SaKeyUpdateConfirm(c)) => {
                assert_eq!(c.result, UpdateResult::Rejected);
                assert_eq!(c.rejection_reason, Some(KeyUpdateRejection::UnableToEncryptWithInitiatorKey));
                assert!(c.fresh_kem_ciphertext.is_none() && c.responder_keying_material.is_none());
            }
            other => panic!("{other:?}"),
        }
    }
}
