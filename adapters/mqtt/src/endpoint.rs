//! One MQTT connection for one node: the event-loop task, the dispatcher, the client and the
//! server side.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use onem2m_primitive::{PrimitiveError, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use crate::codec::{DecodeError, Message, decode_message, encode_request, encode_response, scan_rqi};
use crate::topic::{self, Format, Kind, Topic};
use crate::{BoxError, Limits};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(RequestPrimitive) -> BoxFuture<Result<ResponsePrimitive, BoxError>> + Send + Sync>;

tokio::task_local! {
    /// The topic IDs of the request being served: originator, receiver.
    static SERVING: (String, String);
}

/// The topic ID of the originator whose request is being served, inside the service
/// [`Endpoint::serve`] runs; `None` elsewhere.
pub fn current_originator() -> Option<String> {
    SERVING.try_with(|(originator, _)| originator.clone()).ok()
}

/// The topic ID the request being served was addressed to (this node's, or one of
/// [`EndpointConfig::serve_for`]), inside the service [`Endpoint::serve`] runs; `None` elsewhere.
pub fn current_receiver() -> Option<String> {
    SERVING.try_with(|(_, receiver)| receiver.clone()).ok()
}

/// Settings of an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// This node's topic ID ([`encode_id`](crate::encode_id) of its CSE-ID or AE-ID, or a
    /// Credential-ID before registration).
    pub me: String,
    /// The path of the broker's `mqtt://` URI, prepended to every topic ("" for none).
    pub prefix: String,
    /// Limits on received payloads; a larger payload is never published either.
    pub limits: Limits,
    /// Time for a request sent with an [`MqttClient`]: publishing and the answer.
    pub request_timeout: Duration,
    /// Time the service of [`Endpoint::serve`] has to answer; then `REQUEST_TIMEOUT` (4008).
    pub serve_timeout: Duration,
    /// Subscribe to requests to this node (`req/+/<me>/+`, `reg_req/+/<me>/+`).
    pub serve_requests: bool,
    /// Other topic IDs whose requests this endpoint serves too (`req/+/<id>/+`,
    /// `reg_req/+/<id>/+` for each): a gateway answering on behalf of other nodes, such as the
    /// sidecar's MQTT egress for its peers' CSE-IDs. Answers go out on the topic the request
    /// named (`resp/<originator>/<id>/<type>`).
    pub serve_for: Vec<String>,
    /// Other originator topic IDs this endpoint sends requests as ([`Endpoint::client_as`]):
    /// their answers are subscribed to too (`resp/<id>/+/+`, `reg_resp/<id>/+/+`).
    pub answers_for: Vec<String>,
    /// First delay before reconnecting after the connection fails; doubled on each failure.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: Duration,
    /// Messages queued between the event loop and the dispatcher (when it is full the event loop
    /// waits for the dispatcher, which never waits for the event loop), and requests queued
    /// towards rumqttc.
    pub queue: usize,
    /// Requests executing at once; beyond it a request is answered `TARGET_NOT_REACHABLE`
    /// (5103) and not executed.
    pub max_in_flight: usize,
    /// Requests remembered (by originator and `rqi`) to recognise a redelivered duplicate.
    pub dedup_capacity: usize,
    /// While a request waits for its answer and the connection has been re-established since
    /// it was published, it is published again at this interval (and once right after this
    /// node's subscriptions are acknowledged again).
    pub resend_interval: Duration,
}

impl EndpointConfig {
    /// Defaults for the node with topic ID `me`.
    pub fn new(me: impl Into<String>) -> Self {
        Self {
            me: me.into(),
            prefix: String::new(),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(30),
            serve_timeout: Duration::from_secs(30),
            serve_requests: true,
            serve_for: Vec::new(),
            answers_for: Vec::new(),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            queue: 1024,
            max_in_flight: 256,
            dedup_capacity: 16 * 1024,
            resend_interval: Duration::from_millis(500),
        }
    }

    /// The rumqttc options TS-0010 §6.2 asks for: client ID as given (`C::<CSE-ID>` or
    /// `A::<AE-ID>` by convention), Clean Session false, no Will, keep-alive 30 s, and a packet
    /// limit a little above [`Limits::max_payload_bytes`] (the topic and header).
    pub fn options(&self, client_id: &str, host: &str, port: u16) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(30));
        let packet = self.limits.max_payload_bytes.saturating_add(8 * 1024);
        o.set_max_packet_size(packet, packet);
        o
    }
}

/// Counters of an [`Endpoint`].
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    malformed_topic: AtomicU64,
    malformed_payload: AtomicU64,
    oversize: AtomicU64,
    unsupported_format: AtomicU64,
    unknown_rqi: AtomicU64,
    duplicates: AtomicU64,
    no_handler: AtomicU64,
    overloaded: AtomicU64,
    executed: AtomicU64,
    connects: AtomicU64,
    connection_errors: AtomicU64,
}

/// A copy of the counters of an [`Endpoint`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// PUBLISH packets received.
    pub received: u64,
    /// Dropped: not a oneM2M topic.
    pub malformed_topic: u64,
    /// Dropped: the payload is not a primitive of the topic's kind.
    pub malformed_payload: u64,
    /// Refused: the payload exceeds the limit (a request whose `rqi` is found is answered
    /// `BAD_REQUEST`, the rest dropped).
    pub oversize: u64,
    /// Dropped: XML or CBOR.
    pub unsupported_format: u64,
    /// Dropped: an answer no request waits for (unknown, late or duplicate `rqi`).
    pub unknown_rqi: u64,
    /// Requests recognised as redelivered duplicates (not executed again).
    pub duplicates: u64,
    /// Dropped: a request while no service is attached.
    pub no_handler: u64,
    /// Requests refused with 5103 because too many were executing.
    pub overloaded: u64,
    /// Requests handed to the service.
    pub executed: u64,
    /// Connections accepted by the broker (CONNACK).
    pub connects: u64,
    /// Connection failures (each followed by a back-off and a reconnection attempt).
    pub connection_errors: u64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: g(&self.received),
            malformed_topic: g(&self.malformed_topic),
            malformed_payload: g(&self.malformed_payload),
            oversize: g(&self.oversize),
            unsupported_format: g(&self.unsupported_format),
            unknown_rqi: g(&self.unknown_rqi),
            duplicates: g(&self.duplicates),
            no_handler: g(&self.no_handler),
            overloaded: g(&self.overloaded),
            executed: g(&self.executed),
            connects: g(&self.connects),
            connection_errors: g(&self.connection_errors),
        }
    }
}

/// Why a request sent with an [`MqttClient`] failed.
///
/// The `Display` texts name no broker, so that they can be relayed to the originator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The primitive cannot be serialized, or its target is not a usable topic ID.
    #[error("the request cannot be sent over MQTT")]
    InvalidRequest(#[source] BoxError),
    /// The serialized request exceeds [`Limits::max_payload_bytes`].
    #[error("the request is too large for MQTT ({size} bytes, limit {limit})")]
    TooLarge {
        /// Serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A request with the same `rqi` to the same receiver is already waiting for its answer.
    #[error("a request with this request identifier is already in flight")]
    DuplicateRequest,
    /// No answer within [`EndpointConfig::request_timeout`] (the broker or the receiver is
    /// down, or the request or its answer was lost).
    #[error("the target did not answer in time")]
    Timeout,
    /// The endpoint is shut down.
    #[error("the MQTT connection is closed")]
    Closed,
}

impl ClientError {
    /// The Response Status Code to answer the originator with: `BAD_REQUEST` (4000) for a
    /// request that cannot be sent or is in flight already, `REQUEST_TIMEOUT` (4008) on
    /// timeout, `TARGET_NOT_REACHABLE` (5103) when the connection is closed.
    pub fn rsc(&self) -> Rsc {
        match self {
            Self::InvalidRequest(_) | Self::TooLarge { .. } | Self::DuplicateRequest => Rsc::BAD_REQUEST,
            Self::Timeout => Rsc::REQUEST_TIMEOUT,
            Self::Closed => Rsc::TARGET_NOT_REACHABLE,
        }
    }
}

/// A request remembered to recognise its duplicates: the digest of its payload (a
/// redelivery repeats it; a new request reusing the `rqi` does not) and its state.
struct Seen {
    digest: u64,
    /// The answer's topic and payload once known.
    answer: Option<(String, Bytes)>,
}

#[derive(Default)]
struct Dedup {
    seen: HashMap<(Kind, String, String), Seen>,
    order: VecDeque<(Kind, String, String)>,
}

type PendingKey = (Kind, String, String);

/// A request waiting for its answer, and what to publish again after a reconnection.
struct Waiter {
    answer: oneshot::Sender<ResponsePrimitive>,
    topic: String,
    payload: Bytes,
}

struct Inner {
    client: AsyncClient,
    config: EndpointConfig,
    pending: Mutex<HashMap<PendingKey, Waiter>>,
    /// The service requests go to; `None` until [`Endpoint::serve`] and after shutdown.
    handler: Mutex<Option<Handler>>,
    dedup: Mutex<Dedup>,
    hasher: RandomState,
    stats: Stats,
    /// Whether the connection is up and subscribed.
    ready: watch::Sender<bool>,
    slots: Arc<Semaphore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops the tasks when the last handle goes.
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.get_mut().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

/// One MQTT connection for one node. Clones share it; it stops when the last clone (and every
/// [`MqttClient`] made from it) is dropped, or on [`Endpoint::shutdown`].
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
    tasks: Arc<Tasks>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("config", &self.inner.config).field("stats", &self.inner.stats).finish()
    }
}

impl Endpoint {
    /// Connects to the broker `options` name (in the background, retrying with back-off) and
    /// subscribes to this node's topics. Must run inside a tokio runtime.
    pub fn start(options: MqttOptions, config: EndpointConfig) -> Self {
        let (client, mut events) = AsyncClient::new(options, config.queue.max(1));
        // Requests and answers are small and latency-bound: no Nagle delay (with delayed ACKs
        // it adds about 40 ms per message).
        let mut network = events.network_options();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let inner = Arc::new(Inner {
            client,
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
            pending: Mutex::new(HashMap::new()),
            handler: Mutex::new(None),
            dedup: Mutex::new(Dedup::default()),
            hasher: RandomState::new(),
            stats: Stats::default(),
            ready: watch::channel(false).0,
        });
        let driver = tokio::spawn(drive(events, inner.clone(), tx));
        let dispatcher = tokio::spawn(dispatch(rx, inner.clone()));
        Self { inner, tasks: Arc::new(Tasks(Mutex::new(vec![driver, dispatcher]))) }
    }

    /// This node's topic ID.
    pub fn me(&self) -> &str {
        &self.inner.config.me
    }

    /// The settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.inner.config
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Waits until the connection is up and this node's subscriptions are acknowledged.
    pub async fn ready(&self) {
        let mut rx = self.inner.ready.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: this cannot fail.
        let _ = rx.wait_for(|up| *up).await;
    }

    /// Whether the connection is up and subscribed now.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// A client sending requests to the node with topic ID `receiver` on `req` topics.
    pub fn client(&self, receiver: impl Into<String>) -> MqttClient {
        MqttClient { endpoint: self.clone(), originator: None, receiver: receiver.into(), kind: Kind::Request }
    }

    /// A client sending requests to `receiver` on `req` topics as the originator with topic ID
    /// `originator` (one of [`EndpointConfig::answers_for`], whose answers this endpoint
    /// receives): a gateway relaying another node's requests, such as the sidecar delivering
    /// a CSE's notifications to an MQTT-only AE.
    pub fn client_as(&self, originator: impl Into<String>, receiver: impl Into<String>) -> MqttClient {
        MqttClient {
            endpoint: self.clone(),
            originator: Some(originator.into()),
            receiver: receiver.into(),
            kind: Kind::Request,
        }
    }

    /// A client sending registration requests (`reg_req`, this node's topic ID being its
    /// Credential-ID) to the node with topic ID `receiver`.
    pub fn registration_client(&self, receiver: impl Into<String>) -> MqttClient {
        MqttClient {
            endpoint: self.clone(),
            originator: None,
            receiver: receiver.into(),
            kind: Kind::RegistrationRequest,
        }
    }

    /// Hands every request to this node to `service` (once: a later call is ignored and
    /// returns `false`; [`Endpoint::shutdown`] lets go of it). Its answer — or `INTERNAL_SERVER_ERROR` for an error,
    /// `REQUEST_TIMEOUT` after [`EndpointConfig::serve_timeout`] — is published on the answer
    /// topic; the service learns the requester's topic ID from [`current_originator`].
    pub fn serve<S>(&self, service: S) -> bool
    where
        S: Service<RequestPrimitive, Response = ResponsePrimitive> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| {
            let svc = service.clone();
            Box::pin(async move { svc.oneshot(req).await.map_err(Into::into) })
        });
        let mut slot = lock(&self.inner.handler);
        if slot.is_some() {
            return false;
        }
        *slot = Some(handler);
        true
    }

    /// Disconnects from the broker and stops the tasks; requests in flight fail with
    /// [`ClientError::Closed`] (or time out).
    pub async fn shutdown(&self) {
        let _ = self.inner.client.try_disconnect();
        // Give the event loop a moment to send DISCONNECT, then stop it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for task in lock(&self.tasks.0).drain(..) {
            task.abort();
        }
        lock(&self.inner.pending).clear();
        // The service may hold what holds this endpoint: let go of it.
        lock(&self.inner.handler).take();
        self.inner.ready.send_replace(false);
    }
}

/// The event-loop task: polls rumqttc and only forwards. It never awaits a publish (that
/// deadlocks once rumqttc's request channel is full: rumqttc #263/#1025); subscribing again
/// after a CONNACK happens in a task of its own, and the dispatcher it forwards to only ever
/// spawns what publishes.
async fn drive(mut events: EventLoop, inner: Arc<Inner>, tx: mpsc::Sender<Publish>) {
    let mut backoff = inner.config.reconnect_min;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                Stats::bump(&inner.stats.received);
                // Back-pressure, not a drop: the dispatcher never waits for this loop.
                if tx.send(p).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = inner.config.reconnect_min;
                Stats::bump(&inner.stats.connects);
                let inner = inner.clone();
                tokio::spawn(async move {
                    let c = &inner.config;
                    let filters = topic::filters(&c.prefix, &c.me, c.serve_requests)
                        .into_iter()
                        .chain(c.serve_for.iter().flat_map(|id| topic::request_filters(&c.prefix, id)))
                        .chain(c.answers_for.iter().flat_map(|id| topic::answer_filters(&c.prefix, id)))
                        .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                    if let Err(e) = inner.client.subscribe_many(filters).await {
                        tracing::debug!(error = %e, "MQTT: cannot subscribe");
                    }
                });
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                inner.ready.send_replace(true);
                if inner.stats.connects.load(Ordering::Relaxed) > 1 {
                    // Subscribed again after a reconnection: publish the requests still waiting
                    // once more (the broker may have lost them; a receiver that got them
                    // recognises the duplicate and does not execute it again).
                    let again: Vec<(String, Bytes)> =
                        lock(&inner.pending).values().map(|w| (w.topic.clone(), w.payload.clone())).collect();
                    for (topic, payload) in again {
                        inner.publish(topic, payload);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                inner.ready.send_replace(false);
                Stats::bump(&inner.stats.connection_errors);
                tracing::debug!(error = %e, retry_in = ?backoff, "MQTT: connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(inner.config.reconnect_max);
            }
        }
    }
}

/// The dispatcher: decodes what the event loop forwards and routes it.
async fn dispatch(mut rx: mpsc::Receiver<Publish>, inner: Arc<Inner>) {
    while let Some(p) = rx.recv().await {
        inner.received(p);
    }
}

impl Inner {
    fn received(self: &Arc<Self>, p: Publish) {
        let c = &self.config;
        match decode_message(&p.topic, &p.payload, &c.prefix, &c.limits) {
            Ok(Message::Response(topic, rsp)) => {
                let key = (topic.kind, topic.receiver, rsp.rqi.clone());
                match lock(&self.pending).remove(&key) {
                    Some(waiter) => {
                        let _ = waiter.answer.send(*rsp);
                    }
                    None => Stats::bump(&self.stats.unknown_rqi),
                }
            }
            Ok(Message::Request(topic, req)) => self.request(topic, *req, &p.payload),
            Err(e @ DecodeError::Oversize { .. }) => {
                Stats::bump(&self.stats.oversize);
                tracing::debug!(error = %e, "MQTT: oversize message refused");
                self.refuse_oversize(&p.topic, &p.payload);
            }
            Err(e) => {
                let counter = match e {
                    DecodeError::Topic(_) => &self.stats.malformed_topic,
                    DecodeError::Oversize { .. } => &self.stats.oversize,
                    DecodeError::UnsupportedFormat(_) => &self.stats.unsupported_format,
                    DecodeError::Payload(_) => &self.stats.malformed_payload,
                };
                Stats::bump(counter);
                tracing::debug!(error = %e, "MQTT: message dropped");
            }
        }
    }

    fn request(self: &Arc<Self>, topic: Topic, req: RequestPrimitive, payload: &[u8]) {
        let Some(handler) = lock(&self.handler).clone() else {
            Stats::bump(&self.stats.no_handler);
            return;
        };
        let answer_topic = topic.answer().to_string_with(&self.config.prefix);
        let key = (topic.kind, topic.originator.clone(), req.rqi.clone());
        let digest = self.hasher.hash_one(payload);
        {
            let mut dedup = lock(&self.dedup);
            if let Some(seen) = dedup.seen.get(&key).filter(|s| s.digest == digest) {
                Stats::bump(&self.stats.duplicates);
                if let Some((topic, payload)) = seen.answer.clone() {
                    self.publish(topic, payload);
                }
                return;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                drop(dedup);
                Stats::bump(&self.stats.overloaded);
                let rsp = ResponsePrimitive::error(Rsc::TARGET_NOT_REACHABLE, &req.rqi, "too many requests in flight");
                if let Ok(bytes) = encode_response(&rsp) {
                    self.publish(answer_topic, bytes.into());
                }
                return;
            };
            match dedup.seen.entry(key.clone()) {
                Entry::Occupied(mut o) => *o.get_mut() = Seen { digest, answer: None },
                Entry::Vacant(v) => {
                    v.insert(Seen { digest, answer: None });
                    dedup.order.push_back(key.clone());
                }
            }
            while dedup.order.len() > self.config.dedup_capacity.max(1) {
                if let Some(old) = dedup.order.pop_front() {
                    dedup.seen.remove(&old);
                }
            }
            Stats::bump(&self.stats.executed);
            let inner = self.clone();
            let rqi = req.rqi.clone();
            let serving = (topic.originator, topic.receiver);
            tokio::spawn(async move {
                let _permit = permit;
                let run = SERVING.scope(serving, handler(req));
                let rsp = match tokio::time::timeout(inner.config.serve_timeout, run).await {
                    Ok(Ok(rsp)) => rsp,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "MQTT: the service failed");
                        ResponsePrimitive::error(Rsc::INTERNAL_SERVER_ERROR, &rqi, "the request could not be processed")
                    }
                    Err(_) => ResponsePrimitive::error(Rsc::REQUEST_TIMEOUT, &rqi, "the request timed out"),
                };
                let bytes: Bytes = match encode_response(&rsp) {
                    Ok(b) => b.into(),
                    Err(e) => {
                        tracing::warn!(error = %e, "MQTT: cannot serialize the answer");
                        return;
                    }
                };
                if let Some(seen) = lock(&inner.dedup).seen.get_mut(&key).filter(|s| s.digest == digest) {
                    seen.answer = Some((answer_topic.clone(), bytes.clone()));
                }
                inner.publish_now(answer_topic, bytes).await;
            });
        }
    }

    /// Answers an oversize request `BAD_REQUEST` (4000) when its request identifier can be found
    /// without decoding it ([`scan_rqi`]); anything else oversize is only dropped. Not executed,
    /// not remembered as a duplicate: a redelivery is refused again.
    fn refuse_oversize(self: &Arc<Self>, topic: &str, payload: &[u8]) {
        let Ok(topic) = Topic::parse(topic, &self.config.prefix) else { return };
        if !topic.kind.is_request() {
            return;
        }
        let Some(rqi) = scan_rqi(payload) else { return };
        let limit = self.config.limits.max_payload_bytes;
        let text = format!("the request is too large ({} bytes, limit {limit})", payload.len());
        let rsp = ResponsePrimitive::error(Rsc::BAD_REQUEST, &rqi, text);
        if let Ok(bytes) = encode_response(&rsp) {
            self.publish(topic.answer().to_string_with(&self.config.prefix), bytes.into());
        }
    }

    /// Publishes from a task of its own (never from the event loop or the dispatcher).
    fn publish(self: &Arc<Self>, topic: String, payload: Bytes) {
        let inner = self.clone();
        tokio::spawn(async move { inner.publish_now(topic, payload).await });
    }

    async fn publish_now(&self, topic: String, payload: Bytes) {
        if let Err(e) = self.client.publish_bytes(topic, QoS::AtLeastOnce, false, payload).await {
            tracing::debug!(error = %e, "MQTT: cannot publish");
        }
    }
}

/// Sends request primitives to one receiver over MQTT, as a Tower service. Clones share the
/// [`Endpoint`].
///
/// Publishes the request (JSON, QoS 1) on `req/<me>/<receiver>/json` — `reg_req` for a
/// [registration client](Endpoint::registration_client) — and resolves with the response
/// received on the matching answer topic with the same `rqi`. Failures are
/// [`ClientError`]s (boxed).
#[derive(Clone)]
pub struct MqttClient {
    endpoint: Endpoint,
    /// The originator's topic ID when not the endpoint's own.
    originator: Option<String>,
    receiver: String,
    kind: Kind,
}

impl fmt::Debug for MqttClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttClient").field("me", &self.endpoint.me()).field("receiver", &self.receiver).finish()
    }
}

impl MqttClient {
    /// The receiver's topic ID.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The endpoint it sends through.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn send(
        inner: Arc<Inner>,
        originator: Option<String>,
        receiver: String,
        kind: Kind,
        req: RequestPrimitive,
    ) -> Result<ResponsePrimitive, ClientError> {
        let c = &inner.config;
        let me = originator.as_deref().unwrap_or(&c.me);
        let topic = Topic::new(kind, me, &receiver, Format::Json).map_err(|e| ClientError::InvalidRequest(e.into()))?;
        let payload = encode_request(&req).map_err(|e: PrimitiveError| ClientError::InvalidRequest(e.into()))?;
        if payload.len() > c.limits.max_payload_bytes {
            return Err(ClientError::TooLarge { size: payload.len(), limit: c.limits.max_payload_bytes });
        }
        let key = (kind.answer(), receiver, req.rqi.clone());
        let (tx, rx) = oneshot::channel();
        let (topic, payload) = (topic.to_string_with(&c.prefix), Bytes::from(payload));
        match lock(&inner.pending).entry(key.clone()) {
            Entry::Occupied(_) => return Err(ClientError::DuplicateRequest),
            Entry::Vacant(v) => {
                v.insert(Waiter { answer: tx, topic: topic.clone(), payload: payload.clone() });
            }
        }
        /// Forgets the exchange however it ends.
        struct Waiting<'a>(&'a Inner, PendingKey);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                lock(&self.0.pending).remove(&self.1);
            }
        }
        let _waiting = Waiting(&inner, key);
        let exchange = async {
            let connects = inner.stats.connects.load(Ordering::Relaxed);
            let publish = |payload: Bytes| inner.client.publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload);
            publish(payload.clone()).await.map_err(|_| ClientError::Closed)?;
            let mut rx = rx;
            loop {
                match tokio::time::timeout(c.resend_interval, &mut rx).await {
                    Ok(answer) => return answer.map_err(|_| ClientError::Closed),
                    // The connection was re-established since the request went out: the broker
                    // may have lost it, or the receiver may have been unsubscribed when it
                    // passed. Publish it again (the receiver recognises a duplicate).
                    Err(_) if inner.stats.connects.load(Ordering::Relaxed) != connects => {
                        publish(payload.clone()).await.map_err(|_| ClientError::Closed)?;
                    }
                    Err(_) => {}
                }
            }
        };
        tokio::time::timeout(c.request_timeout, exchange).await.map_err(|_| ClientError::Timeout)?
    }
}

impl Service<RequestPrimitive> for MqttClient {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = BoxFuture<Result<ResponsePrimitive, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let send =
            Self::send(self.endpoint.inner.clone(), self.originator.clone(), self.receiver.clone(), self.kind, req);
        // The endpoint (and its tasks) stay alive while a request is in flight.
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            let out = send.await.map_err(|e| Box::new(e) as BoxError);
            drop(endpoint);
            out
        })
    }
}
