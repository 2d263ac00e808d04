//! The node runtime: the functional entities of clause 7.3.1.1 around the sans-I/O core.
//!
//! A [`Node`] holds the Initiator's and the Responder's SA Management of one M2M Node, the two SA
//! tables the data path reads (`outbound`: SAs this node initiated, for its requests;
//! `inbound`: SAs it accepted, for requests it receives), and the single-flight map through
//! which concurrent requests to one peer wait for one establishment. Locks guard only the state
//! machines and are never held across an await, nor during public-key work: establishment
//! messages are admitted under the lock, computed without it (key generation, KEM, signatures,
//! ticket verification) and committed under it again, so the SA messages of a node are handled
//! in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa::establish::{AcceptAll, Initiator, InitiatorConfig, ResponderAgent, ResponderConfig};
use onem2m_sa::flows::{InitiateSaReceivedConfirm, InitiateSaReceivedRequest};
use onem2m_sa::flows::{
    InitiateSaRequest, RejectionCause, RemovalConfirm, RemovalRequest, RemoveSaConfirm, RemoveSaRequest,
    UpdateOperation, UpdateResult, UpdateSaConfirm, UpdateSaRequest,
};
use onem2m_sa::manage::{
    Admitted, Exchange, InitiatorAdmitted, InitiatorEvent, InitiatorSam, KemUpdatePolicy, Limits, ResponderEvent,
    ResponderSam, Timing,
};
use onem2m_sa::rng::SystemRng;
use onem2m_sa::secure::EpochRef;
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::{Capabilities, Now, SaId};
use tokio::sync::OnceCell;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::carriage::Outer;
use crate::executed::{Executed, ExecutedConfig};
use crate::form::{Forms, SecuredForm};
use crate::{BoxError, rb};

/// Everything a node needs to run SAs.
#[derive(Clone)]
pub struct NodeConfig {
    /// The Initiator's side: credentials, trust anchors, offer.
    pub initiator: InitiatorConfig,
    /// The Responder's side: credentials, trust anchors, allowed suites.
    pub responder: ResponderConfig,
    /// Timers of the SA Management.
    pub timing: Timing,
    /// Bounds on half-open establishments.
    pub limits: Limits,
    /// Replay window, usage limits, grace period.
    pub table: TableConfig,
    /// How long to wait for one answer across rb before resending.
    pub rb_timeout: Duration,
}

/// When the Initiator Agent rotates an SA's keys and identifier (none by default: the usage
/// limits alone trigger key updates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Update the keys once they are this old.
    pub keys_after: Option<Duration>,
    /// Update the identifier once it is this old.
    pub identifier_after: Option<Duration>,
}

/// Why no SA could be had with a peer; each maps to the RSC the waiting requests get.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaFailure {
    /// The Responder refused or the establishment failed, with this cause.
    #[error("establishment failed: {0:?}")]
    Rejected(RejectionCause),
    /// The peer could not be reached.
    #[error("peer not reachable")]
    Unreachable,
    /// A hop on the way that is not the peer's SA endpoint (a transit CSE, the peer's CSE
    /// itself) refused the SA message with this code and text (unauthenticated, like any
    /// unsealed answer). Not resent: the same message would be refused again.
    #[error("refused on the way to the peer ({rsc}): {text}")]
    RefusedOnTheWay {
        /// The hop's response status code.
        rsc: Rsc,
        /// The hop's text (its `m2m:dbg`), if any.
        text: String,
    },
}

impl SaFailure {
    /// The response status code for requests that waited on this establishment.
    pub fn rsc(&self) -> Rsc {
        match self {
            Self::Rejected(RejectionCause::NoParametersInCommon | RejectionCause::AdministrativeReasons) => {
                Rsc::SECURITY_ASSOCIATION_REQUIRED
            }
            Self::Rejected(RejectionCause::AuthenticationFailed | RejectionCause::NotAuthorized) => {
                Rsc::ORIGINATOR_NOT_AUTHENTICATED
            }
            Self::Rejected(RejectionCause::Timeout) | Self::Unreachable => Rsc::TARGET_NOT_REACHABLE,
            Self::Rejected(_) => Rsc::SECURITY_ASSOCIATION_REQUIRED,
            Self::RefusedOnTheWay { rsc, .. } => *rsc,
        }
    }
}

/// How the sender recovers when a peer answers, unsealed, that it cannot use the SA (4112
/// "unknown SA", 5211 "sealing refused"). Such an answer is not authenticated: anyone on the
/// path can forge it. The request is resent at most once, over a fresh SA, and only because the
/// receiver's record of executed requests makes the copy harmless; see docs/robustness.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// After an unsealed refusal made this node forget its SA with a peer and establish a new
    /// one, another unsealed refusal within this interval does not do it again: the request
    /// gets an error instead. A forger cannot force more than one establishment per interval.
    pub min_interval: Duration,
    /// No resend once this long has passed since the request was first sent (the receiver keeps
    /// its answers for [`crate::ExecutedConfig::ttl`], which must be longer).
    pub resend_window: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Self { min_interval: Duration::from_secs(5), resend_window: Duration::from_secs(10) }
    }
}

/// How long a replica's claim on an expired SA ([`crate::store::SaStore::claim`]) holds by
/// default ([`Node::set_claim_hold`]).
pub const CLAIM_HOLD: Duration = Duration::from_secs(10);

/// One establishment that concurrent requests to a peer wait on.
type Flight = OnceCell<Result<Arc<SaEntry>, SaFailure>>;

struct Shared {
    id: NodeId,
    initiator: Mutex<InitiatorSam>,
    responder: Mutex<ResponderSam>,
    agent: Mutex<Box<dyn ResponderAgent + Send>>,
    outbound: Arc<SaTable>,
    inbound: Arc<SaTable>,
    flights: Mutex<HashMap<NodeId, Arc<Flight>>>,
    updating: Mutex<HashSet<SaId>>,
    executed: Arc<Executed>,
    recovery: Mutex<Recovery>,
    /// Per peer: when an unsealed refusal last made this node forget its SA (`mono_ms`).
    recovered: Mutex<HashMap<NodeId, u64>>,
    /// Per peer: how outer requests are addressed and carried (default [`Outer::direct`]).
    outer: std::sync::RwLock<HashMap<NodeId, Outer>>,
    events: tokio::sync::broadcast::Sender<ResponderEvent>,
    origin: tokio::time::Instant,
    rb_timeout: Duration,
    max_attempts: u32,
    rqi: std::sync::atomic::AtomicU64,
    /// The secured form of the requests sent to each peer.
    forms: Forms,
    /// This node takes secured primitives in the compact form (it offers `compact`).
    accepts_compact: bool,
    /// Where its inbound SAs are shared with other replicas ([`Node::with_store`]).
    store: Option<Arc<dyn crate::store::SaStore>>,
    /// With a shared store: inbound SAs expired here whose removal from the store is not
    /// settled yet, and until when (`mono_ms`) to keep trying ([`Node::tick_at`]).
    expiring: Mutex<HashMap<SaId, u64>>,
    /// With a shared store: old identifiers of SAs renamed here, and when (`mono_ms`) their
    /// grace period ends and they are removed from the store.
    retiring: Mutex<Vec<(SaId, u64)>>,
    /// [`Node::set_claim_hold`], in milliseconds.
    claim_hold_ms: std::sync::atomic::AtomicU64,
}

/// One M2M Node's SA runtime. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.shared.id).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Responder Agent behind its lock, taken only for the decision itself (not for the
/// public-key work around it).
struct SharedAgent<'a>(&'a Mutex<Box<dyn ResponderAgent + Send>>);

impl ResponderAgent for SharedAgent<'_> {
    fn initiate_sa_received(&mut self, request: &InitiateSaReceivedRequest) -> InitiateSaReceivedConfirm {
        lock(self.0).initiate_sa_received(request)
    }
}

impl Node {
    /// A node with no SA yet; the Responder Agent accepts every authenticated Initiator.
    pub fn new(config: NodeConfig) -> Self {
        let inbound = Arc::new(SaTable::new(config.table));
        Self::with_inbound_table(config, inbound)
    }

    /// [`Self::new`] with the table of inbound SAs given: a replica's table kept in step by a
    /// shared [`crate::store::SaStore`] (answer SA messages with
    /// [`Self::handle_sa_message_stored`] then).
    pub fn with_inbound_table(config: NodeConfig, inbound: Arc<SaTable>) -> Self {
        Self::build(config, inbound, None)
    }

    /// A replica's node: its inbound SAs live in `store`'s table, and [`crate::ReceiveSecure`]
    /// answers SA messages with [`Self::handle_sa_message_stored`] on `store` (every
    /// establishment, update and removal recorded before the answer leaves).
    pub fn with_store(config: NodeConfig, store: Arc<dyn crate::store::SaStore>) -> Self {
        Self::build(config, store.table().clone(), Some(store))
    }

    fn build(config: NodeConfig, inbound: Arc<SaTable>, store: Option<Arc<dyn crate::store::SaStore>>) -> Self {
        let id = config.initiator.credentials.node_id.clone();
        let accepts_compact = config.responder.capabilities.contains(Capabilities::COMPACT);
        let outbound = Arc::new(SaTable::new(config.table));
        let mut initiator = InitiatorSam::new(config.initiator, config.timing);
        initiator.attach_table(outbound.clone());
        let mut responder = ResponderSam::new(config.responder, config.timing, config.limits);
        responder.attach_table(inbound.clone());
        Self {
            shared: Arc::new(Shared {
                id,
                initiator: Mutex::new(initiator),
                responder: Mutex::new(responder),
                agent: Mutex::new(Box::new(AcceptAll)),
                outbound,
                inbound,
                flights: Mutex::new(HashMap::new()),
                updating: Mutex::new(HashSet::new()),
                executed: Arc::new(Executed::new(ExecutedConfig::default())),
                recovery: Mutex::new(Recovery::default()),
                recovered: Mutex::new(HashMap::new()),
                outer: std::sync::RwLock::new(HashMap::new()),
                events: tokio::sync::broadcast::channel(1024).0,
                origin: tokio::time::Instant::now(),
                rb_timeout: config.rb_timeout,
                max_attempts: config.timing.max_attempts.max(1),
                rqi: 0.into(),
                forms: Forms::default(),
                accepts_compact,
                store,
                expiring: Mutex::new(HashMap::new()),
                retiring: Mutex::new(Vec::new()),
                claim_hold_ms: (CLAIM_HOLD.as_millis() as u64).into(),
            }),
        }
    }

    /// The store this node's inbound SAs are shared through ([`Self::with_store`]), if any.
    pub fn store(&self) -> Option<&Arc<dyn crate::store::SaStore>> {
        self.shared.store.as_ref()
    }

    /// How long this replica's claim on an expired SA holds (default [`CLAIM_HOLD`]): a replica
    /// that dies between its claim and its tombstone passes the SA on after this long (see
    /// [`Self::tick_at`]). Only with a shared store.
    pub fn set_claim_hold(&self, hold: Duration) {
        let ms = hold.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.shared.claim_hold_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Replaces the Responder Agent (the accept/reject policy of Initiate SA Received).
    pub fn set_responder_agent(&self, agent: impl ResponderAgent + Send + 'static) {
        *lock(&self.shared.agent) = Box::new(agent);
    }

    /// Established SAs one authenticated Initiator may hold at this node's Responder (at least
    /// 1; default [`onem2m_sa::manage::DEFAULT_MAX_SAS_PER_PEER`]): an establishment beyond it
    /// replaces that Initiator's oldest SA. See [`ResponderSam::set_max_sas_per_peer`].
    pub fn set_max_sas_per_peer(&self, max: usize) {
        lock(&self.shared.responder).set_max_sas_per_peer(max);
    }

    /// When this node's key updates of the SAs it initiated run a fresh KEM exchange
    /// (post-compromise security): by default ([`KemUpdatePolicy::Auto`]) with the SAs whose
    /// peer negotiated `kem-update`. See [`InitiatorSam::set_kem_update_policy`].
    pub fn set_kem_update_policy(&self, policy: KemUpdatePolicy) {
        lock(&self.shared.initiator).set_kem_update_policy(policy);
    }

    /// [`Self::set_kem_update_policy`] with `Always` (`true`) or `Off` (`false`).
    pub fn set_fresh_kem_key_updates(&self, yes: bool) {
        lock(&self.shared.initiator).set_fresh_kem_key_updates(yes);
    }

    /// The form of the secured requests this node sends to `peer` (default
    /// [`SecuredForm::Auto`]: compact when the SA negotiated it). Answers always go back in
    /// the form of their request.
    pub fn set_secured_form(&self, peer: NodeId, form: SecuredForm) {
        self.shared.forms.set(peer, form);
    }

    /// The form of the secured requests this node sends to `peer`.
    pub fn secured_form(&self, peer: &NodeId) -> SecuredForm {
        self.shared.forms.get(peer)
    }

    pub(crate) fn forms(&self) -> &Forms {
        &self.shared.forms
    }

    /// Whether this node takes secured primitives in the compact form (its Responder offers the
    /// `compact` capability); one that does not answers them with 4015 (415 / 4.15).
    pub fn accepts_compact(&self) -> bool {
        self.shared.accepts_compact
    }

    /// Sets the bounds of the record of executed requests (entries already kept stay until
    /// they expire or are evicted).
    pub fn set_executed_config(&self, config: ExecutedConfig) {
        self.shared.executed.set_config(config);
    }

    /// The bounds of the record of executed requests.
    pub fn executed_config(&self) -> ExecutedConfig {
        self.shared.executed.config()
    }

    /// Requests in the record of executed requests (executing, or answered and kept).
    pub fn executed_len(&self) -> usize {
        self.shared.executed.len()
    }

    pub(crate) fn executed(&self) -> &Arc<Executed> {
        &self.shared.executed
    }

    /// Sets how the outer requests to `peer` (SA messages and sealed requests) are addressed
    /// and carried; see [`crate::carriage`].
    pub fn set_outer(&self, peer: NodeId, outer: Outer) {
        self.shared.outer.write().unwrap_or_else(|e| e.into_inner()).insert(peer, outer);
    }

    /// How the outer requests to `peer` are addressed and carried: as set with
    /// [`Node::set_outer`], else to the peer's node ID, from this node's, in the standard
    /// carriage.
    pub fn outer(&self, peer: &NodeId) -> Outer {
        let map = self.shared.outer.read().unwrap_or_else(|e| e.into_inner());
        map.get(peer).cloned().unwrap_or_else(|| Outer::direct(peer.as_str(), self.shared.id.as_str()))
    }

    /// Sets how the sender recovers from unsealed refusals.
    pub fn set_recovery(&self, recovery: Recovery) {
        *lock(&self.shared.recovery) = recovery;
    }

    /// How the sender recovers from unsealed refusals.
    pub fn recovery(&self) -> Recovery {
        *lock(&self.shared.recovery)
    }

    /// This node's identifier.
    pub fn id(&self) -> &NodeId {
        &self.shared.id
    }

    /// SAs this node initiated (its requests travel over them).
    pub fn outbound(&self) -> &Arc<SaTable> {
        &self.shared.outbound
    }

    /// SAs this node accepted (requests it receives travel over them).
    pub fn inbound(&self) -> &Arc<SaTable> {
        &self.shared.inbound
    }

    /// The Responder Agent's notifications (Initiate SA Received, SA Establishment Complete,
    /// SA Updated, SA Removed) from now on. A receiver that falls more than 1024 events behind
    /// loses the oldest (and is told so by `recv`).
    pub fn responder_events(&self) -> tokio::sync::broadcast::Receiver<ResponderEvent> {
        self.shared.events.subscribe()
    }

    fn publish(&self, events: Vec<ResponderEvent>) {
        for e in events {
            // No subscriber is not an error: nobody asked to be told.
            let _ = self.shared.events.send(e);
        }
    }

    pub(crate) fn now(&self) -> Now {
        let mono_ms = self.shared.origin.elapsed().as_millis() as u64;
        let unix_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Now::new(mono_ms, unix_secs)
    }

    pub(crate) fn next_rqi(&self, prefix: &str) -> String {
        let n = self.shared.rqi.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{n}")
    }

    /// The live outbound SA with `peer`, establishing one if there is none. Concurrent callers
    /// for one peer wait for the same establishment.
    pub async fn sa_with<T>(&self, peer: &NodeId, transport: T) -> Result<Arc<SaEntry>, SaFailure>
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        T::Future: Send,
    {
        if let Some(entry) = self.live_outbound(peer) {
            return Ok(entry);
        }
        let cell = lock(&self.shared.flights).entry(peer.clone()).or_default().clone();
        let result = cell.get_or_init(|| self.establish(peer.clone(), transport)).await.clone();
        // The flight is over: the next caller looks at the table again (or retries a failure).
        let mut flights = lock(&self.shared.flights);
        if flights.get(peer).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(peer);
        }
        result
    }

    /// The newest active, unexpired outbound SA with `peer` (lock-free: the send path's lookup).
    fn live_outbound(&self, peer: &NodeId) -> Option<Arc<SaEntry>> {
        let unix_secs = self.now().unix_secs;
        self.shared.outbound.live_by_peer(peer).filter(|e| !e.is_expired(unix_secs))
    }

    /// Forgets the outbound SA (the peer no longer knows it), so the next request establishes
    /// anew. Answers already in flight under it still open: the entry lives while they hold it.
    pub fn forget_outbound(&self, entry: &SaEntry) {
        let sa_id = entry.sa_id();
        lock(&self.shared.initiator).forget(sa_id, self.now());
        self.shared.outbound.unmap(sa_id);
    }

    /// Whether `entry` is the SA requests to its peer are sealed under now.
    fn is_current(&self, entry: &Arc<SaEntry>) -> bool {
        self.live_outbound(entry.peer()).is_some_and(|e| Arc::ptr_eq(&e, entry))
    }

    /// The peer answered a request sealed under `entry` with an unsealed refusal saying it
    /// cannot use the SA. Returns whether the request may be resent over another SA: yes if
    /// another request already replaced `entry`; yes, after forgetting `entry`, if no unsealed
    /// refusal did that for this peer within [`Recovery::min_interval`]; no otherwise (a forger
    /// must not be able to force an establishment per request).
    pub(crate) fn recover_from_unsealed(&self, entry: &Arc<SaEntry>) -> bool {
        let now = self.now().mono_ms;
        let interval = self.recovery().min_interval.as_millis() as u64;
        // Check and forget under one lock: a second refusal for the same SA that arrives while
        // the first one is forgetting it must see it replaced (and resend), not take it for a
        // refusal right after a re-establishment (and fail its request).
        let mut recovered = lock(&self.shared.recovered);
        if !self.is_current(entry) {
            return true;
        }
        if recovered.get(entry.peer()).is_some_and(|at| now.saturating_sub(*at) < interval) {
            metrics::counter!("onem2m_sa_recoveries_total", "outcome" => "refused").increment(1);
            return false;
        }
        if recovered.len() >= 4096 {
            recovered.retain(|_, at| now.saturating_sub(*at) < interval);
        }
        recovered.insert(entry.peer().clone(), now);
        metrics::counter!("onem2m_sa_recoveries_total", "outcome" => "re_establish").increment(1);
        self.forget_outbound(entry);
        true
    }

    /// Retires an outbound SA that can no longer seal (its key reached the hard usage limit):
    /// new requests establish a fresh SA at once, and the peer is told to remove it in the
    /// background. Requests already sealed under it still get their answers.
    pub(crate) fn retire_outbound<T>(&self, entry: &Arc<SaEntry>, transport: T)
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send + 'static,
        T::Future: Send,
    {
        let sa_id = entry.sa_id();
        if !self.shared.outbound.unmap(sa_id) {
            return; // another request retired it
        }
        tracing::debug!(sa = %sa_id, "SA retired (hard usage limit); establishing a fresh one");
        let node = self.clone();
        tokio::spawn(async move {
            node.remove(sa_id, transport).await;
        });
    }

    async fn establish<T>(&self, peer: NodeId, transport: T) -> Result<Arc<SaEntry>, SaFailure>
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        T::Future: Send,
    {
        let started = tokio::time::Instant::now();
        let request = InitiateSaRequest { initiator: self.shared.id.clone(), responder: peer.clone() };
        // The key generation runs without the SA Management's lock.
        let config = lock(&self.shared.initiator).config().clone();
        let first = Initiator::start(config, &request, &mut SystemRng)
            .map(|(state, bytes)| lock(&self.shared.initiator).begin(state, bytes, self.now()))
            .map_err(|e| e.to_confirm());
        let outcome = match first {
            Err(c) => Err(SaFailure::Rejected(c.cause.unwrap_or(RejectionCause::ProtocolViolation))),
            Ok(exchange) => match self
                .drive(exchange, transport)
                .instrument(tracing::debug_span!("sa.establish", peer = %peer))
                .await
            {
                Err(refused) => {
                    tracing::debug!(peer = %peer, "SA establishment refused on the way: {refused}");
                    Err(refused)
                }
                Ok(Some(InitiatorEvent::Established { confirm, .. })) => {
                    let sa_id = confirm.security_association.expect("success carries the SA").sa_id;
                    tracing::debug!(peer = %peer, sa = %sa_id, "SA established");
                    self.shared.outbound.get(sa_id).ok_or(SaFailure::Unreachable)
                }
                Ok(Some(InitiatorEvent::EstablishFailed { confirm, .. })) => {
                    tracing::debug!(peer = %peer, cause = ?confirm.cause, "SA establishment failed");
                    Err(SaFailure::Rejected(confirm.cause.unwrap_or(RejectionCause::ProtocolViolation)))
                }
                _ => Err(SaFailure::Unreachable),
            },
        };
        let label = match &outcome {
            Ok(_) => "established",
            Err(SaFailure::Unreachable) => "unreachable",
            Err(SaFailure::Rejected(RejectionCause::NoParametersInCommon)) => "no_parameters_in_common",
            Err(SaFailure::Rejected(RejectionCause::AdministrativeReasons)) => "administrative_reasons",
            Err(SaFailure::Rejected(RejectionCause::AuthenticationFailed)) => "authentication_failed",
            Err(SaFailure::Rejected(RejectionCause::Timeout)) => "timeout",
            Err(SaFailure::Rejected(_)) => "rejected",
            Err(SaFailure::RefusedOnTheWay { .. }) => "refused_on_the_way",
        };
        metrics::counter!("onem2m_sa_establishments_total", "outcome" => label).increment(1);
        metrics::histogram!("onem2m_sa_establishment_seconds").record(started.elapsed().as_secs_f64());
        metrics::gauge!("onem2m_sa_active", "direction" => "outbound").set(self.shared.outbound.len() as f64);
        outcome
    }

    /// Update SA (table 36) of the outbound SA `sa_id`, over `transport`.
    pub async fn update<T>(&self, sa_id: SaId, operation: UpdateOperation, transport: T) -> UpdateSaConfirm
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        T::Future: Send,
    {
        let request = UpdateSaRequest { existing_sa_id: sa_id, operation };
        let first = lock(&self.shared.initiator).update(&request, self.now(), &mut SystemRng);
        let rejected =
            UpdateSaConfirm { existing_sa_id: sa_id, new_sa_id: None, result: UpdateResult::Rejected, operation };
        let confirm = match first {
            Err(confirm) => confirm,
            Ok(exchange) => match self.drive(exchange, transport).await {
                Ok(Some(InitiatorEvent::Updated { confirm, reason })) => {
                    tracing::debug!(sa = %sa_id, result = ?confirm.result, ?reason, "Update SA");
                    confirm
                }
                _ => rejected,
            },
        };
        let outcome = if confirm.result == UpdateResult::Accepted { "accepted" } else { "rejected" };
        metrics::counter!("onem2m_sa_updates_total", "outcome" => outcome).increment(1);
        confirm
    }

    /// Remove SA (table 42) of the outbound SA `sa_id`: it is marked invalid at once (no
    /// request is sealed under it any more) and the Responder is told over `transport`.
    pub async fn remove<T>(&self, sa_id: SaId, transport: T) -> RemoveSaConfirm
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        T::Future: Send,
    {
        let first = lock(&self.shared.initiator).remove(&RemoveSaRequest(RemovalRequest { sa_id }), self.now());
        let confirm = match first {
            Err(confirm) => confirm,
            // The SA is already gone locally; an unanswered removal only means the Responder
            // learns of it on the next use (4112).
            Ok(exchange) => match self.drive(exchange, transport).await {
                Ok(Some(InitiatorEvent::Removed(confirm))) => confirm,
                _ => RemoveSaConfirm(RemovalConfirm::accepted(sa_id)),
            },
        };
        let outcome = if confirm.0.result == UpdateResult::Accepted { "accepted" } else { "rejected" };
        metrics::counter!("onem2m_sa_removals_total", "outcome" => outcome).increment(1);
        metrics::gauge!("onem2m_sa_active", "direction" => "outbound").set(self.shared.outbound.len() as f64);
        confirm
    }

    /// Removes the inbound SA `sa_id` locally (the Responder's side has no removal flow): the
    /// Initiator's next message under it is refused with 4112 and it establishes a new SA.
    pub fn remove_inbound(&self, sa_id: SaId) -> RemoveSaConfirm {
        let confirm = lock(&self.shared.responder).remove_local(sa_id, self.now());
        metrics::gauge!("onem2m_sa_active", "direction" => "inbound").set(self.shared.inbound.len() as f64);
        confirm
    }

    /// [`Self::remove_inbound`] on every replica: with a store ([`Self::with_store`]) the removal
    /// is recorded there too, so the SA ends wherever it was established and wherever it is
    /// held. Without a store, the same as [`Self::remove_inbound`].
    pub async fn remove_inbound_everywhere(&self, sa_id: SaId) -> RemoveSaConfirm {
        let local = self.remove_inbound(sa_id);
        let Some(store) = self.store() else { return local };
        match store.remove(sa_id).await {
            Ok(()) => RemoveSaConfirm(onem2m_sa::flows::RemovalConfirm::accepted(sa_id)),
            Err(e) => {
                tracing::warn!(error = %e, "SA removal not recorded in the store: the other replicas keep the SA");
                local
            }
        }
    }

    /// Starts Update SA (keys) in the background for an SA whose key passed a soft usage limit
    /// (the Initiator Agent's decision); at most one at a time per SA, and only if `sealed_under`
    /// — the epoch whose use passed the limit — is still the current one. A message sealed under
    /// an epoch just replaced also reports the limit; updating again would run two updates in a
    /// row, and a message still in flight under the first epoch would then meet a third epoch
    /// with the same key phase bit and be refused as not authentic (4115).
    pub(crate) fn update_if_due<T>(&self, entry: &SaEntry, sealed_under: &EpochRef, transport: T)
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send + 'static,
        T::Future: Send,
    {
        let sa_id = entry.sa_id();
        let current = entry.current_epoch().is_some_and(|e| Arc::ptr_eq(&e, sealed_under));
        if !current || !entry.update_requested() || !lock(&self.shared.updating).insert(sa_id) {
            return;
        }
        // The update may have completed between the check above and the insert.
        if !entry.current_epoch().is_some_and(|e| Arc::ptr_eq(&e, sealed_under)) {
            lock(&self.shared.updating).remove(&sa_id);
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            node.update(sa_id, UpdateOperation::Keys, transport).await;
            lock(&node.shared.updating).remove(&sa_id);
        });
    }

    /// Runs one Initiator exchange to its final event, resending on transport failures. An
    /// exchange the SA Management no longer has stops at once: Remove SA, forgetting or expiring
    /// an SA drops its pending updates, and their answers then produce no event, which must not
    /// be taken for a stale answer and resent. A hop that refuses the message (an error answer
    /// that is not the peer's SA endpoint's) ends the exchange at once with that refusal.
    async fn drive<T>(&self, mut exchange: Exchange, mut transport: T) -> Result<Option<InitiatorEvent>, SaFailure>
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        T::Future: Send,
    {
        let mut stale = 0;
        loop {
            let reply = match self.exchange(&mut transport, &exchange).await {
                Ok(reply) => reply,
                Err(refused) => {
                    lock(&self.shared.initiator).abandon(exchange.id);
                    return Err(refused);
                }
            };
            let (events, gone) = {
                let admitted = {
                    let mut sam = lock(&self.shared.initiator);
                    match &reply {
                        Some(bytes) => sam.admit_response(exchange.id, bytes, self.now(), &mut SystemRng),
                        None => InitiatorAdmitted::Done(sam.abandon(exchange.id)),
                    }
                };
                let events = match (admitted, &reply) {
                    (InitiatorAdmitted::Done(events), _) => events,
                    // The public-key work runs without the lock.
                    (InitiatorAdmitted::Work(work), Some(bytes)) => {
                        let computed = work.compute(bytes, self.now(), &mut SystemRng);
                        lock(&self.shared.initiator).commit_response(computed, self.now())
                    }
                    (InitiatorAdmitted::Work(_), None) => unreachable!("work comes from an answer"),
                };
                (events, !lock(&self.shared.initiator).is_pending(exchange.id))
            };
            match events.into_iter().next() {
                Some(InitiatorEvent::Transmit(next)) => exchange = next,
                Some(done) => return Ok(Some(done)),
                None if gone => {
                    tracing::debug!(exchange = exchange.id, "the exchange was dropped by SA Management");
                    return Ok(None);
                }
                // A stale or unusable answer: the exchange is still pending; resend it, within
                // the same budget as timeouts.
                None if reply.is_some() && stale + 1 < self.shared.max_attempts => stale += 1,
                None => {
                    lock(&self.shared.initiator).abandon(exchange.id);
                    return Ok(None);
                }
            }
        }
    }

    /// Sends one rb message and returns the SA message of the answer, resending the same bytes
    /// on timeouts, transport errors and the peer's own drops up to the attempt budget (`None`
    /// once it is spent). An error answer from another hop ([`rb::is_hop_refusal`]) is returned
    /// at once, with its code and text.
    async fn exchange<T>(&self, transport: &mut T, exchange: &Exchange) -> Result<Option<Vec<u8>>, SaFailure>
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        T::Future: Send,
    {
        let rqi = format!("sa-{}", exchange.id);
        for attempt in 0..self.shared.max_attempts {
            if attempt > 0 {
                // Back off before resending: 100 ms, 200 ms, 400 ms, … (a peer that answers
                // errors at once is not hammered).
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(6))).await;
            }
            let req = self.outer(&exchange.peer).sa_request(rqi.clone(), &exchange.bytes);
            let call = async {
                let svc = transport.ready().await?;
                svc.call(req).await
            };
            match tokio::time::timeout(self.shared.rb_timeout, call).await {
                Ok(Ok(rsp)) => {
                    if let Some(bytes) = rb::message_of(rsp.pc.as_ref()) {
                        return Ok(Some(bytes));
                    }
                    if rb::is_hop_refusal(&rsp) {
                        let text = rb::error_text(&rsp);
                        tracing::debug!(rsc = %rsp.rsc, %text, "rb message refused on the way");
                        return Err(SaFailure::RefusedOnTheWay { rsc: rsp.rsc, text });
                    }
                    tracing::debug!(rsc = %rsp.rsc, "rb answer without an SA message");
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "rb transport error"),
                Err(_) => tracing::debug!("rb answer timed out"),
            }
        }
        Ok(None)
    }

    /// The Responder's SA Management endpoint: answers an SA message received across rb. It
    /// does not record anything in the node's store ([`Self::with_store`]): a replica's SA
    /// messages go through [`Self::handle_sa_message_stored`] ([`crate::ReceiveSecure`] picks).
    pub fn handle_sa_message(&self, req: &RequestPrimitive) -> ResponsePrimitive {
        let (rsp, events) = self.answer_sa_message(req);
        self.publish(events);
        rsp
    }

    /// [`Self::handle_sa_message`] for replicas sharing their SAs through `store`: an SA this
    /// message establishes or updates is recorded in the store before the answer leaves (so it
    /// is usable on every replica by the time the Initiator uses it), a removal is recorded too.
    /// When the store cannot record an establishment, the SA is dropped here and the message
    /// is answered with the store's RSC (5000) instead: no SA that other replicas cannot see.
    pub async fn handle_sa_message_stored(
        &self,
        req: &RequestPrimitive,
        store: &dyn crate::store::SaStore,
    ) -> ResponsePrimitive {
        let (rsp, events) = self.answer_sa_message(req);
        for event in &events {
            let (sa_id, established) = match event {
                ResponderEvent::SaEstablishmentComplete(c) => (c.sa_id, true),
                ResponderEvent::SaUpdated(u) => {
                    if let Some(new) = u.new_sa_id.filter(|new| *new != u.existing_sa_id && store.shared()) {
                        // The other replicas hold the old identifier as an SA of its own: it
                        // ends there with its grace period here (`tick_at`).
                        // (Reported twice for "identifier and keys": noted once.)
                        let until = self.now().mono_ms.saturating_add(self.shared.inbound.config().grace_ms);
                        let mut retiring = lock(&self.shared.retiring);
                        if !retiring.iter().any(|(id, _)| *id == u.existing_sa_id) {
                            retiring.push((u.existing_sa_id, until));
                        }
                        (new, false)
                    } else {
                        (u.new_sa_id.unwrap_or(u.existing_sa_id), false)
                    }
                }
                ResponderEvent::SaRemoved(r) => {
                    if let Err(e) = store.remove(r.sa_id).await {
                        tracing::warn!(error = %e, "SA removal not recorded in the store");
                    }
                    continue;
                }
                _ => continue,
            };
            let sa = lock(&self.shared.responder).sa(sa_id).map(|r| r.sa.clone());
            let Some(sa) = sa else { continue };
            if let Err(e) = store.publish(&sa).await {
                tracing::warn!(error = %e, "SA not recorded in the store");
                if established {
                    self.remove_inbound(sa_id);
                    return ResponsePrimitive::error(e.rsc(), &req.rqi, e.to_string());
                }
            }
        }
        self.publish(events);
        rsp
    }

    fn answer_sa_message(&self, req: &RequestPrimitive) -> (ResponsePrimitive, Vec<ResponderEvent>) {
        // Either carriage: the standard content, or the notification that carries it.
        let pc = req.pc.as_ref().map(|pc| crate::carriage::unwrap(pc).unwrap_or(pc));
        let Some(bytes) = rb::message_of(pc) else {
            return (ResponsePrimitive::error(Rsc::BAD_REQUEST, &req.rqi, "no SA message"), Vec::new());
        };
        let source = crate::source::current();
        let admitted = lock(&self.shared.responder).admit(&source, &bytes, self.now(), &mut SystemRng);
        let out = match admitted {
            Admitted::Done(out) => out,
            // The public-key work runs without the SA Management's lock: the SA messages of the
            // node are handled in parallel; the commit re-checks what changed meanwhile.
            Admitted::Work(work) => {
                let computed = work.compute(self.now(), &mut SystemRng, &mut SharedAgent(&self.shared.agent));
                lock(&self.shared.responder).commit(computed, self.now())
            }
        };
        metrics::gauge!("onem2m_sa_half_open").set(lock(&self.shared.responder).half_open() as f64);
        metrics::gauge!("onem2m_sa_active", "direction" => "inbound").set(self.shared.inbound.len() as f64);
        let rsp = match out.reply {
            Some(reply) => rb::response(&req.rqi, &reply),
            None => {
                let why = out.dropped.map(|d| d.to_string()).unwrap_or_default();
                ResponsePrimitive::error(Rsc::BAD_REQUEST, &req.rqi, format!("{}{why}", rb::DROPPED))
            }
        };
        (rsp, out.events)
    }

    /// Runs the Initiator Agent in the background: every `period` it runs the timers
    /// ([`Self::tick`]) and starts Update SA for outbound SAs whose keys are older than
    /// `rotation.keys_after` (and whose identifier is older than `rotation.identifier_after`).
    /// The task ends when the returned handle is aborted or the node is dropped.
    pub fn spawn_agent<T>(&self, transport: T, period: Duration, rotation: Rotation) -> tokio::task::JoinHandle<()>
    where
        T: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
        T::Future: Send,
    {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let node = Node { shared };
                node.tick_at(node.now()).await;
                for (sa_id, operation) in node.rotations_due(&rotation) {
                    if lock(&node.shared.updating).insert(sa_id) {
                        let (node, transport) = (node.clone(), transport.clone());
                        tokio::spawn(async move {
                            node.update(sa_id, operation, transport).await;
                            lock(&node.shared.updating).remove(&sa_id);
                        });
                    }
                }
            }
        })
    }

    fn rotations_due(&self, rotation: &Rotation) -> Vec<(SaId, UpdateOperation)> {
        let now = self.now().mono_ms;
        let older = |since: u64, after: Option<Duration>| {
            after.is_some_and(|a| now.saturating_sub(since) >= a.as_millis() as u64)
        };
        lock(&self.shared.initiator)
            .sas()
            .filter_map(|r| {
                let keys = older(r.keys_since_ms, rotation.keys_after);
                let id = older(r.id_since_ms, rotation.identifier_after);
                let op = match (id, keys) {
                    (true, true) => UpdateOperation::IdentifierAndKeys,
                    (true, false) => UpdateOperation::Identifier,
                    (false, true) => UpdateOperation::Keys,
                    (false, false) => return None,
                };
                Some((r.sa.sa_id, op))
            })
            .collect()
    }

    /// Runs both SA Managements' timers: retransmission budgets, half-open expiry, grace
    /// periods, tombstones, SA expiry. Call it periodically (e.g. every second).
    ///
    /// With a shared store ([`Self::with_store`]) the store's part of the expiry (see
    /// [`Self::tick_at`]) runs in a task of its own.
    pub fn tick(&self) {
        let now = self.now();
        let expired = self.run_timers(now);
        if let Some(store) = self.shared_store() {
            let node = self.clone();
            tokio::spawn(async move { node.expire_in_store(&*store, expired, now).await });
        }
    }

    /// [`Self::tick`] at `now`, waiting for the store's part of the expiry. With a shared store,
    /// an inbound SA past its expiry is dropped from this replica's table (every replica does
    /// that by itself) and removed from the store — a tombstone every replica applies — by
    /// exactly one replica: the one whose [`crate::store::SaStore::claim`] on the SA succeeds.
    /// The others find it claimed and leave it, but try again, for twice the claim's hold, in
    /// case the holder dies before it writes the tombstone (its claim then lapses and passes
    /// on). The holder keeps its claim for four holds after the tombstone, so no late replica
    /// writes a second one. The idle timeout is applied by the SA Management that established
    /// the SA alone, on the requests that reach this replica, and drops the SA here only.
    pub async fn tick_at(&self, now: Now) {
        let expired = self.run_timers(now);
        if let Some(store) = self.shared_store() {
            self.expire_in_store(&*store, expired, now).await;
        }
    }

    /// The node's store when other replicas share it.
    fn shared_store(&self) -> Option<Arc<dyn crate::store::SaStore>> {
        self.shared.store.clone().filter(|s| s.shared())
    }

    /// Runs the timers; with a shared store, returns the inbound SAs removed for their expiry.
    fn run_timers(&self, now: Now) -> Vec<SaId> {
        let shared = self.shared.store.as_ref().is_some_and(|s| s.shared());
        // Exchanges in flight are retransmitted by their own drivers (`exchange`).
        lock(&self.shared.initiator).expire(now);
        let (events, mut expired) = {
            let mut responder = lock(&self.shared.responder);
            // The SA Management removes an SA for its expiry or for its idle timeout; only the
            // first is the same on every replica.
            let expired: Vec<SaId> = match shared {
                true => responder.sas().filter(|r| r.sa.expires_unix() <= now.unix_secs).map(|r| r.sa.sa_id).collect(),
                false => Vec::new(),
            };
            (responder.handle_timeout(now), expired)
        };
        if shared {
            let removed =
                |id: &SaId| events.iter().any(|e| matches!(e, ResponderEvent::SaRemoved(r) if r.sa_id == *id));
            expired.retain(removed);
        }
        self.publish(events);
        self.shared.outbound.sweep(now);
        let swept = self.shared.inbound.sweep(now);
        if shared {
            expired.extend(swept);
        }
        expired
    }

    /// The store's part of the expiry of `expired` (see [`Self::tick_at`]).
    async fn expire_in_store(&self, store: &dyn crate::store::SaStore, expired: Vec<SaId>, now: Now) {
        // Old identifiers past their grace period, and gone from this replica's table (its
        // sweep ended their alias): removing one from the store cannot touch the SA here.
        let retired: Vec<SaId> = {
            let mut retiring = lock(&self.shared.retiring);
            let over = |(id, until): &(SaId, u64)| *until <= now.mono_ms && self.shared.inbound.get(*id).is_none();
            let retired = retiring.iter().filter(|r| over(r)).map(|(id, _)| *id).collect();
            retiring.retain(|r| !over(r));
            retired
        };
        for old in retired {
            if let Err(e) = store.remove(old).await {
                tracing::warn!(error = %e, sa = %old, "old SA identifier not removed from the store");
            }
        }
        let hold_ms = self.shared.claim_hold_ms.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let due: Vec<(SaId, u64)> = {
            let mut pending = lock(&self.shared.expiring);
            for sa_id in expired {
                pending.entry(sa_id).or_insert(now.mono_ms.saturating_add(2 * hold_ms));
            }
            pending.iter().map(|(id, until)| (*id, *until)).collect()
        };
        for (sa_id, until) in due {
            let done = match store.claim(sa_id, hold_ms).await {
                Ok(true) => match store.remove(sa_id).await {
                    Ok(()) => {
                        tracing::debug!(sa = %sa_id, "expired SA removed from the store");
                        // Kept while the other replicas may still try.
                        if let Err(e) = store.claim(sa_id, 4 * hold_ms).await {
                            tracing::debug!(error = %e, "claim on an expired SA not extended");
                        }
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, sa = %sa_id, "expired SA not removed from the store yet");
                        now.mono_ms >= until
                    }
                },
                // Another replica holds it: it writes the tombstone (or its claim lapses).
                Ok(false) => now.mono_ms >= until,
                Err(e) => {
                    tracing::debug!(error = %e, sa = %sa_id, "expired SA not claimed yet");
                    now.mono_ms >= until
                }
            };
            if done {
                lock(&self.shared.expiring).remove(&sa_id);
            }
        }
    }
}

/// The rb endpoint as a service of its own: answers establishment, update and removal flows
/// (for adapters that route SA messages separately from the protected traffic).
#[derive(Debug, Clone)]
pub struct SaEndpoint {
    node: Node,
}

impl SaEndpoint {
    /// The endpoint of `node`.
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

impl Service<RequestPrimitive> for SaEndpoint {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = std::future::Ready<Result<ResponsePrimitive, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let req = crate::carriage::unwrapped(req);
        std::future::ready(Ok(if rb::is_sa_message(&req) {
            self.node.handle_sa_message(&req)
        } else {
            ResponsePrimitive::error(Rsc::BAD_REQUEST, &req.rqi, "not an SA message")
        }))
    }
}

#[cfg(test)]
mod tests {
    use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
    use onem2m_sa::secure::{Encoding, UsageLimits};
    use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};

    use super::*;

    fn node(pki: &TestPki, id: &str, originators: &[&str], table: TableConfig) -> Node {
        let creds = pki.node(id, SignatureAlgorithm::Ed25519, originators, &mut SystemRng);
        Node::new(NodeConfig {
            initiator: initiator_config(creds.clone(), pki.anchors.clone(), &Suite::ALL),
            responder: responder_config(creds, pki.anchors.clone(), &Suite::ALL),
            timing: Timing { min_key_update_interval_ms: 0, ..Timing::default() },
            limits: Limits::default(),
            table,
            rb_timeout: Duration::from_secs(2),
        })
    }

    /// The Responder's public-key work runs without the SA Management's lock (it ran under it,
    /// and every SA message of a node waited for the one being handled): the Responder Agent,
    /// consulted in the middle of that work, finds the lock free, and so does the establishment
    /// of another SA.
    #[tokio::test]
    async fn establishment_crypto_runs_without_the_sa_management_lock() {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let pki = TestPki::new(&mut SystemRng, unix);
        let table = TableConfig::default();
        let (a, b) = (node(&pki, "/id-asn", &["C*"], table), node(&pki, "/id-in", &["/id-in"], table));
        let weak = Arc::downgrade(&b.shared);
        let free = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = free.clone();
        b.set_responder_agent(move |req: &InitiateSaReceivedRequest| {
            let shared = weak.upgrade().expect("node alive");
            seen.store(shared.responder.try_lock().is_ok(), std::sync::atomic::Ordering::SeqCst);
            InitiateSaReceivedConfirm::accept(req.sa_id)
        });
        a.sa_with(&"/id-in".parse().unwrap(), SaEndpoint::new(b.clone())).await.unwrap();
        assert!(free.load(std::sync::atomic::Ordering::SeqCst), "the SA Management was locked during the work");
    }

    /// The soft usage limit reported by a message sealed under an epoch that an update has just
    /// replaced does not start a second update (it did, now and then under load, and a request
    /// still in flight under the first epoch then met a third one with the same key phase:
    /// `soft_usage_limit_triggers_a_key_update` got 4115).
    #[tokio::test]
    async fn a_limit_reported_under_a_replaced_epoch_starts_no_second_update() {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let pki = TestPki::new(&mut SystemRng, unix);
        let limits = UsageLimits { soft_messages: 2, hard_messages: 1_000, soft_bytes: u64::MAX, hard_bytes: u64::MAX };
        let table = TableConfig { limits, ..TableConfig::default() };
        let (a, b) = (node(&pki, "/id-asn", &["C*"], table), node(&pki, "/id-in", &["/id-in"], table));
        let endpoint = SaEndpoint::new(b);
        let entry = a.sa_with(&"/id-in".parse().unwrap(), endpoint.clone()).await.unwrap();
        let first = entry.current_epoch().unwrap();
        let mut out = Vec::new();
        for _ in 0..3 {
            entry.seal_with(&first, Encoding::Jwe, b"{}", &mut out).unwrap();
        }
        assert!(entry.update_requested());
        let confirm = a.update(entry.sa_id(), UpdateOperation::Keys, endpoint.clone()).await;
        assert_eq!((confirm.result, entry.current_epoch().unwrap().number), (UpdateResult::Accepted, 1));
        // A request sealed under the first epoch just before the update reports the limit now.
        let info = entry.seal_with(&first, Encoding::Jwe, b"{}", &mut out).unwrap();
        assert!(info.update_due);
        a.update_if_due(&entry, &first, endpoint.clone());
        assert!(lock(&a.shared.updating).is_empty(), "no second update started");
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(entry.current_epoch().unwrap().number, 1);
        // Under the current epoch, it does.
        let current = entry.current_epoch().unwrap();
        for _ in 0..3 {
            entry.seal_with(&current, Encoding::Jwe, b"{}", &mut out).unwrap();
        }
        a.update_if_due(&entry, &current, endpoint);
        assert!(!lock(&a.shared.updating).is_empty(), "the update for the current epoch starts");
    }

    /// A transport that answers every request with `answer` and counts them.
    fn answering(
        answer: ResponsePrimitive,
        calls: Arc<std::sync::atomic::AtomicUsize>,
    ) -> impl Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError, Future: Send> + Clone + Send
    {
        tower::service_fn(move |req: RequestPrimitive| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut rsp = answer.clone();
            rsp.rqi = req.rqi;
            std::future::ready(Ok::<_, BoxError>(rsp))
        })
    }

    /// A hop that is not the peer's SA endpoint — a transit CSE that does not route the
    /// request — refuses the SaInit with 4000 and its text: the establishment fails at once with
    /// that code and text. It was resent four times and reported as a timeout (5103 to the AE).
    #[tokio::test]
    async fn a_refusal_on_the_way_ends_the_establishment_with_its_code_and_text() {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let pki = TestPki::new(&mut SystemRng, unix);
        let a = node(&pki, "/id-mn/Cae-host", &["C*"], TableConfig::default());
        let text = "invalid arguments/attributes: \"to\": SP-relative ID is too short: \"/id-in\"";
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refusal = ResponsePrimitive::error(Rsc::BAD_REQUEST, "", text);
        let failure = a.sa_with(&"/id-in".parse().unwrap(), answering(refusal, calls.clone())).await.unwrap_err();
        assert_eq!(failure, SaFailure::RefusedOnTheWay { rsc: Rsc::BAD_REQUEST, text: text.to_owned() });
        assert_eq!(failure.rsc(), Rsc::BAD_REQUEST);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "a refused SaInit is not resent");
    }

    /// The peer's own drop (an SaInit still being processed, say) is still resent.
    #[tokio::test(start_paused = true)]
    async fn the_peers_own_drop_is_resent() {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let pki = TestPki::new(&mut SystemRng, unix);
        let a = node(&pki, "/id-asn", &["C*"], TableConfig::default());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let attempts = Timing::default().max_attempts.max(1) as usize;
        // Marked as the peer's own (this version), or a transient drop of the previous version.
        let marked = format!("{}no establishment waits for this message", rb::DROPPED);
        for (n, why) in [marked.as_str(), "the same SaInit is being processed"].into_iter().enumerate() {
            let drop = ResponsePrimitive::error(Rsc::BAD_REQUEST, "", why);
            let failure = a.sa_with(&"/id-in".parse().unwrap(), answering(drop, calls.clone())).await.unwrap_err();
            assert!(!matches!(failure, SaFailure::RefusedOnTheWay { .. }), "{failure:?}");
            let sent = calls.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(sent, attempts * (n + 1), "{why}: resent up to the attempt budget");
        }
    }

    /// The outer requests to a peer are addressed and carried as set for it: the SaInit goes to
    /// its `<CSEBase>`, from the AE-ID this node has at its registrar, inside an `m2m:sgn`; the
    /// Responder takes it out of the notification.
    #[tokio::test]
    async fn outer_addressing_and_the_notification_carriage_reach_the_responder() {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let pki = TestPki::new(&mut SystemRng, unix);
        let table = TableConfig::default();
        let (a, b) = (node(&pki, "/id-mn/Cae-host", &["C*"], table), node(&pki, "/id-in", &["/id-in"], table));
        let peer: NodeId = "/id-in".parse().unwrap();
        let outer = Outer {
            to: "/id-in/cse-in".into(),
            from: "Cae-host".into(),
            carriage: crate::carriage::Carriage::Notification,
        };
        a.set_outer(peer.clone(), outer);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, endpoint) = (seen.clone(), SaEndpoint::new(b));
        let transport = tower::service_fn(move |req: RequestPrimitive| {
            log.lock().unwrap().push((req.to.clone(), req.fr.clone(), req.pc.clone()));
            endpoint.clone().oneshot(req)
        });
        a.sa_with(&peer, transport).await.expect("established through the notification carriage");
        for (to, fr, pc) in seen.lock().unwrap().iter() {
            assert_eq!((to.as_str(), fr.as_deref()), ("/id-in/cse-in", Some("Cae-host")));
            assert!(pc.as_ref().unwrap()["m2m:sgn"]["nev"]["rep"]["sa:msg"].is_object());
        }
    }
}
