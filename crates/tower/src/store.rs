//! The SA store seam: where a node's SAs live beyond its own memory.
//!
//! A node alone keeps its SAs in its [`SaTable`]s and nothing else; that is
//! [`MemoryStore`], the default. Replicas of a node that serve the same SAs (sidecars behind a
//! load balancer) share them through a store (the Redis store, crate
//! `onem2m-sa-store-redis`): the node tells the store of every establishment, update and
//! removal, and — where the transport cannot route every message of an SA to one replica —
//! asks it whether a sequence number was already accepted by another replica. The hot path
//! never waits for the store: each replica keeps a local table the store keeps in step.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use onem2m_primitive::ResponseStatusCode as Rsc;
use onem2m_sa::table::SaTable;
use onem2m_sa::{EstablishedSa, SaId};

/// Why the store could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached (or answered with an error): replicas keep serving the SAs
    /// they hold and refuse new establishments.
    #[error("SA store unavailable: {0}")]
    Unavailable(String),
    /// A record in the store did not authenticate under the key-encryption key, or is not a
    /// well-formed SA: refused, never installed.
    #[error("SA store record refused: {0}")]
    Refused(&'static str),
}

impl StoreError {
    /// The response status code an establishment refused for this reason answers with: 5000
    /// INTERNAL_SERVER_ERROR, a server-side failure the client may retry later (the SAs a
    /// replica holds keep working meanwhile).
    pub fn rsc(&self) -> Rsc {
        Rsc::INTERNAL_SERVER_ERROR
    }
}

/// A future a store returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the replicas' shared record of executed requests says of a request
/// ([`SaStore::admit_executed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedExecution {
    /// No copy was seen: this replica executes it (the record now says so).
    First,
    /// A copy is executing on a replica, or its replica ended before recording the answer: the
    /// outcome is unknown, and this copy must not execute.
    Running,
    /// A copy was executed: its answer, the serialized response primitive.
    Answered(Vec<u8>),
    /// The same peer, originator and request identifier came with another request (4105).
    Conflict,
}

/// Who sent a request, for the shared record of executed requests: SHA-256 over the
/// authenticated peer node, the inner originator and the request identifier, each
/// length-prefixed (so no two triples share a key).
pub fn execution_key(peer: &str, originator: &str, rqi: &str) -> [u8; 32] {
    let mut framed = Vec::with_capacity(peer.len() + originator.len() + rqi.len() + 12);
    for part in [peer, originator, rqi] {
        framed.extend_from_slice(&(part.len() as u32).to_be_bytes());
        framed.extend_from_slice(part.as_bytes());
    }
    let d = onem2m_sa::crypto::digest(onem2m_sa::crypto::HashAlgorithm::Sha256, &[&framed]);
    d.as_ref().try_into().expect("SHA-256")
}

/// Where a node's SAs are kept. Called by the control plane only (establishment, update,
/// removal, expiry) and, when [`Self::shared`], on each accepted sequence number.
pub trait SaStore: Send + Sync + 'static {
    /// The local table the data path reads (kept in step with the store).
    fn table(&self) -> &Arc<SaTable>;

    /// Whether other replicas share the SAs (replay checks and expiry ownership matter).
    fn shared(&self) -> bool;

    /// Records an established or updated SA so every replica can use it at once.
    fn publish<'a>(&'a self, sa: &'a EstablishedSa) -> StoreFuture<'a, ()>;

    /// Removes an SA on every replica.
    fn remove(&self, sa_id: SaId) -> StoreFuture<'_, ()>;

    /// Marks `seq` of the SA's `epoch` as accepted; false when some replica already accepted it
    /// (or it is older than the shared window): the message is a replay.
    fn accept(&self, sa_id: SaId, epoch: u32, seq: u64) -> StoreFuture<'_, bool>;

    /// Reads the SA `sa_id` from the store into the local table when it is there: a request
    /// under an SA another replica established just now can arrive before this replica saw the
    /// event. True when the SA is now in the table. The default (nothing shared) finds nothing.
    fn learn(&self, _sa_id: SaId) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Makes sure the SA's `epoch` can seal the answers of the requests in flight: a shared
    /// store leases sequence numbers ahead when few are left. Called before the protected
    /// service executes a request, so that an answer is never refused for want of a number
    /// (an unsealed refusal makes the peer resend, and another replica would execute the copy
    /// again).
    fn prepare_seal(&self, _sa_id: SaId, _epoch: u32) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether this replica is the one to remove the expired SA from the store now
    /// ([`crate::Node::tick_at`]): at most one replica gets true for an SA within `hold_ms`
    /// (the holder, asking again, gets true and holds it `hold_ms` from then).
    fn claim(&self, sa_id: SaId, hold_ms: u64) -> StoreFuture<'_, bool>;

    /// Enters a request (by [`execution_key`], and the digest of the request a copy must match)
    /// in the record of executed requests the replicas share, unless a copy is there already:
    /// then says what became of it. Asked by [`SharedReplay`] for every request but RETRIEVE, so
    /// that a copy resent over another SA (after an unauthenticated 4112 or 5211) that lands on
    /// another replica gets the first copy's answer instead of executing again. The default
    /// (nothing shared) admits every request: the node's own record covers it.
    fn admit_executed(&self, _key: [u8; 32], _digest: [u8; 32]) -> StoreFuture<'_, SharedExecution> {
        Box::pin(std::future::ready(Ok(SharedExecution::First)))
    }

    /// Records the answer of a request [`Self::admit_executed`] admitted.
    fn record_executed<'a>(&'a self, _key: [u8; 32], _digest: [u8; 32], _answer: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The default: the SAs live in this process's table only.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    table: Arc<SaTable>,
}

impl MemoryStore {
    /// A store over `table`.
    pub fn new(table: Arc<SaTable>) -> Self {
        Self { table }
    }
}

impl SaStore for MemoryStore {
    fn table(&self) -> &Arc<SaTable> {
        &self.table
    }

    fn shared(&self) -> bool {
        false
    }

    fn publish<'a>(&'a self, _sa: &'a EstablishedSa) -> StoreFuture<'a, ()> {
        // The SA Management installed it in the table already.
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove(&self, sa_id: SaId) -> StoreFuture<'_, ()> {
        self.table.remove(sa_id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn accept(&self, _sa_id: SaId, _epoch: u32, _seq: u64) -> StoreFuture<'_, bool> {
        // The table's own replay window decided already; nobody else sees the SA.
        Box::pin(std::future::ready(Ok(true)))
    }

    fn claim(&self, _sa_id: SaId, _hold_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(true)))
    }
}

/// Refuses, before the protected service sees it, a request that another replica accepted
/// already: each sealed request's `(SA, epoch, sequence number)` is marked in the store's
/// shared replay window ([`SaStore::accept`]). Goes between [`crate::ReceiveSecureLayer`] and
/// the CSE, so only requests whose tag verified reach the shared window (a forgery cannot move
/// it). Nothing happens for a store that is not [`SaStore::shared`] or for plaintext requests.
///
/// Every other operation than RETRIEVE then goes through the replicas' shared record of executed
/// requests ([`SaStore::admit_executed`]): a copy of a request that another replica executed —
/// resent by its sender over a new SA after an unauthenticated 4112 or 5211 — gets the first
/// copy's answer (sealed by [`crate::ReceiveSecure`] under the SA it came over) and is not
/// executed again; a copy whose first copy is still executing, or whose replica ended before
/// its answer was recorded, gets 5000 and is not executed; the same identifiers with another
/// request get 4105. The node's own record (inside `ReceiveSecure`) still answers copies that
/// come back to the same replica without a store round trip.
///
/// While the store is unreachable a RETRIEVE goes through (safe to repeat; the replica's own
/// window still refuses a replay to the same replica) and any other operation is refused with
/// the store's RSC: a replay or a resend to another replica must not execute twice.
#[derive(Clone)]
pub struct SharedReplayLayer {
    store: Arc<dyn SaStore>,
}

impl std::fmt::Debug for SharedReplayLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReplayLayer").field("shared", &self.store.shared()).finish()
    }
}

impl SharedReplayLayer {
    /// The layer over `store`.
    pub fn new(store: Arc<dyn SaStore>) -> Self {
        Self { store }
    }
}

impl<S> tower::Layer<S> for SharedReplayLayer {
    type Service = SharedReplay<S>;

    fn layer(&self, inner: S) -> SharedReplay<S> {
        SharedReplay { inner, store: self.store.clone() }
    }
}

/// The service of [`SharedReplayLayer`].
#[derive(Clone)]
pub struct SharedReplay<S> {
    inner: S,
    store: Arc<dyn SaStore>,
}

impl<S> std::fmt::Debug for SharedReplay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReplay").finish_non_exhaustive()
    }
}

impl<S> tower::Service<crate::InboundRequest> for SharedReplay<S>
where
    S: tower::Service<crate::InboundRequest, Response = onem2m_primitive::ResponsePrimitive, Error = crate::BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = onem2m_primitive::ResponsePrimitive;
    type Error = crate::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: crate::InboundRequest) -> Self::Future {
        let Some(peer) = req.peer.clone().filter(|_| self.store.shared()) else {
            return Box::pin(self.inner.call(req));
        };
        // The ready service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        Box::pin(async move {
            let error = |rsc: Rsc, why: &str| onem2m_primitive::ResponsePrimitive::error(rsc, &req.primitive.rqi, why);
            match store.accept(peer.sa_id, peer.epoch, peer.seq).await {
                Ok(true) => {
                    if let Err(e) = store.prepare_seal(peer.sa_id, peer.epoch).await {
                        tracing::debug!(error = %e, "no sequence numbers leased ahead");
                    }
                    if req.primitive.op == onem2m_primitive::Operation::Retrieve {
                        return inner.call(req).await;
                    }
                    execute_once(&*store, &peer, req, inner).await
                }
                Ok(false) => {
                    metrics::counter!("onem2m_sa_receive_rejected_total", "reason" => "replayed_shared").increment(1);
                    Ok(error(Rsc::ESPRIM_BAD_MAC, "secured message not authentic"))
                }
                Err(_) if req.primitive.op == onem2m_primitive::Operation::Retrieve => inner.call(req).await,
                Err(e) => {
                    metrics::counter!("onem2m_sa_receive_rejected_total", "reason" => "store_unavailable").increment(1);
                    Ok(error(e.rsc(), &e.to_string()))
                }
            }
        })
    }
}

/// Executes `req` unless the replicas' shared record says a copy of it was (or is being)
/// executed; records the answer.
async fn execute_once<S>(
    store: &dyn SaStore,
    peer: &crate::Authenticated,
    req: crate::InboundRequest,
    mut inner: S,
) -> Result<onem2m_primitive::ResponsePrimitive, crate::BoxError>
where
    S: tower::Service<crate::InboundRequest, Response = onem2m_primitive::ResponsePrimitive, Error = crate::BoxError>,
{
    use onem2m_primitive::ResponsePrimitive;
    let rqi = req.primitive.rqi.clone();
    let key = execution_key(peer.peer.as_str(), req.primitive.fr.as_deref().unwrap_or_default(), &rqi);
    // The request as parsed, serialized again: copies that are the same request match.
    let digest: [u8; 32] = match req.primitive.to_json_vec() {
        Ok(json) => crate::executed::request_digest(&json).as_ref().try_into().expect("SHA-256"),
        Err(e) => return Ok(ResponsePrimitive::error(Rsc::BAD_REQUEST, &rqi, e.to_string())),
    };
    let refused = |rsc: Rsc, why: &str, reason: &'static str| {
        metrics::counter!("onem2m_sa_receive_rejected_total", "reason" => reason).increment(1);
        Ok(ResponsePrimitive::error(rsc, &rqi, why))
    };
    match store.admit_executed(key, digest).await {
        Ok(SharedExecution::First) => {
            let answer = inner.call(req).await?;
            match answer.to_json_vec() {
                Ok(json) => {
                    if let Err(e) = store.record_executed(key, digest, &json).await {
                        // A copy elsewhere finds the request still "executing" and is refused:
                        // never executed twice.
                        tracing::warn!(error = %e, "answer not recorded in the shared record of executed requests");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "answer not serializable for the shared record"),
            }
            Ok(answer)
        }
        Ok(SharedExecution::Answered(json)) => {
            metrics::counter!("onem2m_sa_resends_answered_total").increment(1);
            match ResponsePrimitive::from_json_slice(&json) {
                Ok(answer) if answer.rqi == rqi => Ok(answer),
                _ => refused(Rsc::INTERNAL_SERVER_ERROR, crate::receive::UNKNOWN_OUTCOME, "executed_unreadable"),
            }
        }
        Ok(SharedExecution::Running) => {
            refused(Rsc::INTERNAL_SERVER_ERROR, crate::receive::UNKNOWN_OUTCOME, "executed_elsewhere_unanswered")
        }
        Ok(SharedExecution::Conflict) => refused(
            Rsc::CONFLICT,
            "request identifier already used by this originator for another request",
            "rqi_reused",
        ),
        Err(e) => refused(e.rsc(), &e.to_string(), "store_unavailable"),
    }
}

/// Goes in front of [`crate::ReceiveSecureLayer`] on a replica: a request refused for an unknown
/// SA (4112) is given a second chance after the SA is read from the store
/// ([`SaStore::learn`]), so an SA established on another replica a moment ago works here at
/// once, without waiting for the store's event. Costs nothing on the path of known SAs but a
/// clone of each request; a request refused with 4112 never reached the CSE, so trying it again
/// is safe.
#[derive(Clone)]
pub struct LearnOnMissLayer {
    store: Arc<dyn SaStore>,
}

impl std::fmt::Debug for LearnOnMissLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnOnMissLayer").finish_non_exhaustive()
    }
}

impl LearnOnMissLayer {
    /// The layer over `store`.
    pub fn new(store: Arc<dyn SaStore>) -> Self {
        Self { store }
    }
}

impl<S> tower::Layer<S> for LearnOnMissLayer {
    type Service = LearnOnMiss<S>;

    fn layer(&self, inner: S) -> LearnOnMiss<S> {
        LearnOnMiss { inner, store: self.store.clone() }
    }
}

/// The service of [`LearnOnMissLayer`].
#[derive(Clone)]
pub struct LearnOnMiss<S> {
    inner: S,
    store: Arc<dyn SaStore>,
}

impl<S> std::fmt::Debug for LearnOnMiss<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnOnMiss").finish_non_exhaustive()
    }
}

/// The SA a sealed request names, read from its header in either secured form (only on the
/// 4112 path).
fn sa_of(req: &onem2m_primitive::RequestPrimitive) -> Option<SaId> {
    let mut scratch = Vec::new();
    crate::form::decode(req.pc.as_ref()?, &mut scratch).ok().map(|s| s.header.sa_id)
}

impl<S> tower::Service<onem2m_primitive::RequestPrimitive> for LearnOnMiss<S>
where
    S: tower::Service<
            onem2m_primitive::RequestPrimitive,
            Response = onem2m_primitive::ResponsePrimitive,
            Error = crate::BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = onem2m_primitive::ResponsePrimitive;
    type Error = crate::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: onem2m_primitive::RequestPrimitive) -> Self::Future {
        if !self.store.shared() {
            return Box::pin(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut again = self.inner.clone();
        let store = self.store.clone();
        let copy = req.clone();
        Box::pin(async move {
            let rsp = inner.call(req).await?;
            if rsp.rsc != Rsc::ESPRIM_UNKNOWN_KEY_ID {
                return Ok(rsp);
            }
            let Some(sa_id) = sa_of(&copy) else { return Ok(rsp) };
            match store.learn(sa_id).await {
                Ok(true) => {
                    use tower::ServiceExt as _;
                    again.ready().await?.call(copy).await
                }
                _ => Ok(rsp),
            }
        })
    }
}
