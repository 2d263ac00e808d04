//! The CoAP server (TS-0008 over RFC 7252 UDP): receives datagrams, deduplicates them by
//! (peer, message ID), reassembles Block1 requests, hands each request primitive to a Tower
//! service once, answers piggybacked, or separately when the service takes long, serves large
//! answers with Block2, and stops gracefully.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use serde_json::{Map, Value};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::block::{BlockError, BlockLimits, BlockValue, Blocks, Offer};
use crate::mapping::{code_byte, code_of};
use crate::message::{self, Rng, Transmission, request_key};
use crate::options::{self, encode_uint, onem2m};
use crate::{BoxError, ClientError, Limits, MediaType, answer_media, body, packet_to_primitive, response_to_packet};

tokio::task_local! {
    static PEER: SocketAddr;
}

/// The address of the peer whose request is being served, inside the service [`serve`] runs
/// (in its `call` and its future); `None` elsewhere. What the HTTP server passes as the
/// `RemoteAddr` extension, for a primitive that has no extensions.
pub fn current_peer() -> Option<SocketAddr> {
    PEER.try_with(|peer| *peer).ok()
}

/// Limits and timing of [`serve`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits on payloads (after reassembly) and their nesting.
    pub limits: Limits,
    /// Caps on block-wise transfers (reassembly of requests, storage of large answers).
    pub blocks: BlockLimits,
    /// Block size exponent the server prefers (block size `2^(szx+4)`; 6 = 1024 bytes): the
    /// largest Block2 it sends, and the Block1 size it asks for.
    pub block_szx: u8,
    /// Largest datagram accepted; a larger Confirmable one is answered 4.13.
    pub max_datagram_bytes: usize,
    /// Retransmission of separate Confirmable responses.
    pub transmission: Transmission,
    /// How long a (peer, message ID) is remembered to recognize a duplicate:
    /// EXCHANGE_LIFETIME (RFC 7252 §4.8.2).
    pub exchange_lifetime: Duration,
    /// Most exchanges remembered; beyond it the oldest finished ones are forgotten first.
    pub max_exchanges: usize,
    /// Most exchanges remembered for one peer, so that one peer cannot push the others'
    /// exchanges out of the duplicate cache: beyond it the peer's own oldest finished exchange
    /// is forgotten (its duplicate detection then spans its last `max_exchanges_per_peer`
    /// exchanges rather than the whole lifetime); a new request when every one of them is still
    /// executing is answered 5.03 and not executed.
    pub max_exchanges_per_peer: usize,
    /// Most requests executing at once; beyond it requests are answered 5.03.
    pub max_in_flight: usize,
    /// Time the service has to answer; then the answer is `REQUEST_TIMEOUT` (4008, 5.04).
    pub request_timeout: Duration,
    /// Time to wait for the service before acknowledging a Confirmable request with an Empty
    /// ACK and sending the answer separately (RFC 7252 §5.2.2).
    pub piggyback_delay: Duration,
    /// On shutdown, time given to exchanges in flight to complete.
    pub drain_timeout: Duration,
    /// Seed for message IDs (tests); `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let transmission = Transmission::default();
        Self {
            limits: Limits::default(),
            blocks: BlockLimits::default(),
            block_szx: 6,
            max_datagram_bytes: 1280,
            transmission,
            exchange_lifetime: transmission.exchange_lifetime(),
            max_exchanges: 16 * 1024,
            max_exchanges_per_peer: 1024,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(30),
            piggyback_delay: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(10),
            seed: None,
        }
    }
}

/// An exchange: peer, message ID and token. A duplicate (a retransmission) repeats all three;
/// the token is part of the key so that a message ID the peer reuses for a new request within
/// EXCHANGE_LIFETIME (after 65 536 requests, about 265 per second with the default timing) is
/// never taken for a duplicate and answered with another request's answer.
type ExchangeKey = (SocketAddr, u16, Vec<u8>);

/// What is remembered about an exchange.
enum Exchange {
    /// The request is being processed; `acked`: an Empty ACK was sent.
    Running { acked: bool },
    /// Finished: the datagram to send again for a duplicate (a piggybacked answer, an Empty
    /// ACK, a NON answer), if any.
    Done(Option<Arc<[u8]>>),
}

struct State {
    exchanges: HashMap<ExchangeKey, Exchange>,
    /// Exchanges remembered per peer, oldest first.
    per_peer: HashMap<SocketAddr, VecDeque<ExchangeKey>>,
    order: VecDeque<(Instant, ExchangeKey)>,
    blocks: Blocks,
    /// Separate Confirmable answers waiting for their ACK, by (peer, message ID).
    pending: HashMap<(SocketAddr, u16), oneshot::Sender<()>>,
    rng: Rng,
    draining: bool,
}

struct Shared {
    socket: UdpSocket,
    config: ServerConfig,
    state: Mutex<State>,
    slots: Arc<Semaphore>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn send(&self, bytes: &[u8], peer: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, peer).await {
            tracing::debug!(%peer, error = %e, "send failed");
        }
    }

    fn next_mid(&self) -> u16 {
        self.lock().rng.next_u64() as u16
    }

    /// Records the reply to duplicates of an exchange still remembered.
    fn finish(&self, key: &ExchangeKey, reply: Option<Arc<[u8]>>) {
        if let Some(exchange) = self.lock().exchanges.get_mut(key) {
            *exchange = Exchange::Done(reply);
        }
    }
}

impl State {
    /// Forgets exchanges older than the lifetime, and the oldest finished ones over the cap.
    fn expire(&mut self, now: Instant, config: &ServerConfig) {
        let mut kept = 0;
        while let Some((at, key)) = self.order.front().cloned() {
            let old = now.saturating_duration_since(at) > config.exchange_lifetime;
            let over = self.order.len() - kept > config.max_exchanges;
            if !old && !over {
                break;
            }
            self.order.pop_front();
            if let Some(Exchange::Running { .. }) = self.exchanges.get(&key) {
                if !old {
                    // Still running: keep it, at the back.
                    self.order.push_back((at, key));
                    kept += 1;
                    if kept >= self.order.len() {
                        break;
                    }
                    continue;
                }
            }
            // (A key already forgotten by `make_room` is not there any more.)
            if self.exchanges.remove(&key).is_some() {
                self.unlist(&key);
            }
        }
        self.blocks.expire(now.into_std());
    }

    /// Takes `key` off its peer's list (usually its front: both lists are oldest first).
    fn unlist(&mut self, key: &ExchangeKey) {
        if let Some(keys) = self.per_peer.get_mut(&key.0) {
            if let Some(at) = keys.iter().position(|k| k == key) {
                keys.remove(at);
            }
            if keys.is_empty() {
                self.per_peer.remove(&key.0);
            }
        }
    }

    /// Makes room for one more exchange of `peer`: under its cap there is room; at it, its
    /// oldest finished exchange is forgotten. `false` when every one is still executing.
    fn make_room(&mut self, peer: SocketAddr, cap: usize) -> bool {
        let Some(keys) = self.per_peer.get_mut(&peer) else { return true };
        if keys.len() < cap {
            return true;
        }
        let exchanges = &self.exchanges;
        let Some(at) = keys.iter().position(|k| matches!(exchanges.get(k), Some(Exchange::Done(_)) | None)) else {
            return false;
        };
        if let Some(key) = keys.remove(at) {
            // Its entry in `order` stays behind and is dropped when it comes up.
            self.exchanges.remove(&key);
        }
        true
    }
}

/// Who a request came from and how to answer it.
#[derive(Clone)]
struct Origin {
    peer: SocketAddr,
    message_id: u16,
    token: Vec<u8>,
    confirmable: bool,
}

impl Origin {
    fn key(&self) -> ExchangeKey {
        (self.peer, self.message_id, self.token.clone())
    }
}

/// Serves `service` on `socket` until `shutdown` resolves, then answers new requests 5.03 while
/// the exchanges in flight complete (up to [`ServerConfig::drain_timeout`]), and returns.
///
/// Each request is mapped with [`packet_to_primitive`] and given to the service once: a
/// duplicate Confirmable (same peer and message ID within the exchange lifetime) gets the same
/// answer again, or an Empty ACK while the first is still executing. Answers are piggybacked
/// on the ACK when the service answers within [`ServerConfig::piggyback_delay`], else sent as
/// separate Confirmable messages (retransmitted until acknowledged); a Non-confirmable request
/// gets a Non-confirmable answer. Malformed Confirmable datagrams get a RST, unknown critical
/// options 4.02, mapping failures the [`BindingError`](crate::BindingError)'s code with
/// oneM2M-RSC and a `{"m2m:dbg": …}` payload.
pub async fn serve<S, F>(socket: UdpSocket, service: S, config: ServerConfig, shutdown: F) -> io::Result<()>
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()> + Send,
{
    let state = State {
        exchanges: HashMap::new(),
        per_peer: HashMap::new(),
        order: VecDeque::new(),
        blocks: Blocks::new(config.blocks),
        pending: HashMap::new(),
        rng: Rng::new(config.seed),
        draining: false,
    };
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let shared = Arc::new(Shared { socket, config, state: Mutex::new(state), slots });
    let mut buf = vec![0u8; shared.config.max_datagram_bytes + 1];
    let mut tasks = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = sweep.tick() => shared.lock().expire(Instant::now(), &shared.config),
            received = shared.socket.recv_from(&mut buf) => match received {
                Ok((n, peer)) => datagram(&shared, &buf[..n], peer, &service, &mut tasks).await,
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            },
        }
    }
    shared.lock().draining = true;
    let deadline = Instant::now() + shared.config.drain_timeout;
    while !tasks.is_empty() {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = tasks.join_next() => {}
            received = shared.socket.recv_from(&mut buf) => {
                if let Ok((n, peer)) = received {
                    datagram(&shared, &buf[..n], peer, &service, &mut tasks).await;
                }
            }
        }
    }
    tasks.shutdown().await;
    Ok(())
}

async fn datagram<S>(shared: &Arc<Shared>, bytes: &[u8], peer: SocketAddr, service: &S, tasks: &mut JoinSet<()>)
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    if bytes.len() > shared.config.max_datagram_bytes {
        return too_large_datagram(shared, bytes, peer).await;
    }
    let packet = match message::parse(bytes) {
        Ok(packet) => packet,
        Err(m) => {
            tracing::debug!(%peer, "malformed datagram");
            if let (true, Some(mid)) = (m.confirmable, m.message_id) {
                shared.send(&message::empty(MessageType::Reset, mid), peer).await;
            }
            return;
        }
    };
    let kind = packet.header.get_type();
    let mid = packet.header.message_id;
    let code = code_byte(&packet);
    match (kind, code >> 5, code) {
        (MessageType::Acknowledgement | MessageType::Reset, _, _) => {
            if let Some(acked) = shared.lock().pending.remove(&(peer, mid)) {
                let _ = acked.send(());
            }
        }
        (MessageType::Confirmable, _, 0) => shared.send(&message::empty(MessageType::Reset, mid), peer).await,
        (MessageType::Confirmable | MessageType::NonConfirmable, 0, _) => {
            request(shared, packet, peer, service, tasks).await;
        }
        (MessageType::Confirmable, _, _) => shared.send(&message::empty(MessageType::Reset, mid), peer).await,
        _ => {}
    }
}

/// A Confirmable datagram over the size limit: 4.13 with Size1, built from its header and token.
async fn too_large_datagram(shared: &Shared, bytes: &[u8], peer: SocketAddr) {
    let tkl = usize::from(bytes[0] & 0x0f);
    if bytes[0] >> 6 != 1 || (bytes[0] >> 4) & 0x3 != 0 || tkl > 8 || bytes.len() < 4 + tkl {
        return;
    }
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.message_id = u16::from_be_bytes([bytes[2], bytes[3]]);
    p.set_token(bytes[4..4 + tkl].to_vec());
    p.header.code = MessageClass::from(code_of(4, 13));
    p.add_option(CoapOption::Size1, encode_uint(shared.config.max_datagram_bytes as u32));
    if let Ok(bytes) = p.to_bytes_unlimited() {
        shared.send(&bytes, peer).await;
    }
}

async fn request<S>(shared: &Arc<Shared>, mut packet: Packet, peer: SocketAddr, service: &S, tasks: &mut JoinSet<()>)
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let origin = Origin {
        peer,
        message_id: packet.header.message_id,
        token: packet.get_token().to_vec(),
        confirmable: packet.header.get_type() == MessageType::Confirmable,
    };
    /// What a datagram with this (peer, message ID) calls for.
    enum Seen {
        New {
            draining: bool,
        },
        Again(Option<Arc<[u8]>>),
        /// The peer has as many exchanges executing as it may have remembered.
        Crowded,
    }
    let seen = {
        let mut state = shared.lock();
        match state.exchanges.get_mut(&origin.key()) {
            Some(Exchange::Running { acked }) => {
                // Each duplicate gets the Empty ACK (RFC 7252 §4.5): the first may have been
                // lost. The answer then comes separately.
                let ack = origin.confirmable.then(|| {
                    *acked = true;
                    Arc::from(message::empty(MessageType::Acknowledgement, origin.message_id))
                });
                Seen::Again(ack)
            }
            Some(Exchange::Done(reply)) => Seen::Again(reply.clone()),
            None => {
                let now = Instant::now();
                state.expire(now, &shared.config);
                if !state.make_room(peer, shared.config.max_exchanges_per_peer) {
                    Seen::Crowded
                } else {
                    state.exchanges.insert(origin.key(), Exchange::Running { acked: false });
                    state.per_peer.entry(peer).or_default().push_back(origin.key());
                    state.order.push_back((now, origin.key()));
                    Seen::New { draining: state.draining }
                }
            }
        }
    };
    let draining = match seen {
        Seen::New { draining } => draining,
        Seen::Crowded => {
            let rsc = ResponseStatusCode::INTERNAL_SERVER_ERROR;
            let answer =
                error_packet(rsc, (5, 3), rqi_of(&packet), "too many exchanges from this peer", MediaType::Json);
            // Not remembered (there is no room): a duplicate is refused the same way, never executed.
            return answer_now(shared, &origin, answer).await;
        }
        Seen::Again(reply) => {
            if let Some(reply) = reply {
                shared.send(&reply, peer).await;
            }
            return;
        }
    };
    let rqi = rqi_of(&packet);
    let media = answer_media(&packet).unwrap_or_default();
    let refuse =
        |rsc: ResponseStatusCode, code: (u8, u8), message: &str| error_packet(rsc, code, rqi.clone(), message, media);
    if draining {
        let answer = refuse(ResponseStatusCode::INTERNAL_SERVER_ERROR, (5, 3), "the server is shutting down");
        return answer_now(shared, &origin, answer).await;
    }
    if let Err(e) = options::check(&packet) {
        return answer_now(shared, &origin, refuse(e.rsc(), e.coap_code(), &e.to_string())).await;
    }
    let key = request_key(&packet);
    let block2 = packet.get_first_option(CoapOption::Block2).and_then(|v| BlockValue::decode(v));
    if let Some(b2) = block2.filter(|b| b.num > 0) {
        let stored = shared.lock().blocks.block(peer, key.clone(), b2, Instant::now().into_std());
        let answer =
            match stored.and_then(|(head, chunk, more, _)| Some((Packet::from_bytes(&head).ok()?, chunk, more))) {
                Some((mut answer, chunk, more)) => {
                    answer.payload = chunk;
                    answer.add_option(CoapOption::Block2, BlockValue { more, ..b2 }.encode());
                    answer
                }
                None => refuse(ResponseStatusCode::BAD_REQUEST, (4, 8), "no such block: the answer has expired"),
            };
        return answer_now(shared, &origin, answer).await;
    }
    if let Some(raw) = packet.get_first_option(CoapOption::Block1).cloned() {
        let Some(b1) = BlockValue::decode(&raw) else {
            return answer_now(shared, &origin, refuse(ResponseStatusCode::BAD_REQUEST, (4, 0), "invalid Block1"))
                .await;
        };
        let announced = packet.get_first_option(CoapOption::Size1).map(|v| options::decode_uint(v) as usize);
        let offered = if announced.is_some_and(|size| size > shared.config.blocks.max_body_bytes) {
            // Size1 announces more than will be accepted: refused before anything is held.
            Err(BlockError::TooLarge(shared.config.blocks.max_body_bytes))
        } else {
            shared.lock().blocks.offer(peer, key.clone(), b1, &packet.payload, Instant::now().into_std())
        };
        match offered {
            Ok(Offer::Continue) => {
                let mut answer = Packet::new();
                answer.header.code = MessageClass::from(code_of(2, 31));
                let szx = b1.szx.min(shared.config.block_szx);
                answer.add_option(CoapOption::Block1, BlockValue { num: b1.num, more: true, szx }.encode());
                return answer_now(shared, &origin, answer).await;
            }
            Ok(Offer::Complete(payload)) => {
                packet.payload = payload;
                packet.clear_option(CoapOption::Block1);
                packet.clear_option(CoapOption::Size1);
            }
            Err(e) => {
                let code = match e {
                    BlockError::Incomplete => (4, 8),
                    BlockError::TooLarge(_) => (4, 13),
                    BlockError::Busy => (5, 3),
                    BlockError::BadSize => (4, 0),
                };
                let rsc = match e {
                    BlockError::Busy => ResponseStatusCode::INTERNAL_SERVER_ERROR,
                    _ => ResponseStatusCode::BAD_REQUEST,
                };
                let mut answer = refuse(rsc, code, &e.to_string());
                if let BlockError::TooLarge(limit) = e {
                    answer.add_option(CoapOption::Size1, encode_uint(u32::try_from(limit).unwrap_or(u32::MAX)));
                }
                return answer_now(shared, &origin, answer).await;
            }
        }
    }
    let media = match answer_media(&packet) {
        Ok(media) => media,
        Err(e) => return answer_now(shared, &origin, refuse(e.rsc(), e.coap_code(), &e.to_string())).await,
    };
    let primitive = match packet_to_primitive(&packet, &shared.config.limits) {
        Ok(primitive) => primitive,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "request not mapped to a primitive");
            return answer_now(shared, &origin, refuse(e.rsc(), e.coap_code(), &e.to_string())).await;
        }
    };
    let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
        let answer = refuse(ResponseStatusCode::INTERNAL_SERVER_ERROR, (5, 3), "too many requests in flight");
        return answer_now(shared, &origin, answer).await;
    };
    let szx = block2.map_or(shared.config.block_szx, |b| b.szx.min(shared.config.block_szx));
    let job = Job { shared: shared.clone(), origin, key, szx, media, permit: Some(permit) };
    tasks.spawn(job.run(service.clone(), primitive));
}

/// oneM2M-RQI of a request, to echo in an error answer.
fn rqi_of(packet: &Packet) -> Option<String> {
    [onem2m::RQI, options::legacy::RQI]
        .iter()
        .find_map(|&n| packet.get_first_option(CoapOption::from(n)))
        .and_then(|v| String::from_utf8(v.clone()).ok())
        .filter(|s| !s.is_empty() && s.len() <= 255)
}

/// Longest `m2m:dbg` text an error answer carries.
const MAX_DEBUG_TEXT: usize = 128;

/// An error answer: `code`, oneM2M-RSC, oneM2M-RQI when known, `{"m2m:dbg": …}` in `media`.
fn error_packet(
    rsc: ResponseStatusCode,
    code: (u8, u8),
    rqi: Option<String>,
    message: &str,
    media: MediaType,
) -> Packet {
    let mut end = message.len().min(MAX_DEBUG_TEXT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Packet::new();
    p.header.code = MessageClass::from(code_of(code.0, code.1));
    p.add_option(CoapOption::from(onem2m::RSC), encode_uint(rsc.code().into()));
    if let Some(rqi) = rqi {
        p.add_option(CoapOption::from(onem2m::RQI), rqi.into_bytes());
    }
    let mut pc = Map::new();
    pc.insert("m2m:dbg".to_owned(), Value::String(message[..end].to_owned()));
    if let Ok(payload) = body::encode(Some(&Value::Object(pc)), media) {
        p.add_option(CoapOption::ContentFormat, encode_uint(media.content_format().into()));
        p.payload = payload;
    }
    p
}

/// Sends an answer at once: piggybacked on the ACK of a Confirmable request, as a NON answer to
/// a Non-confirmable one; remembered for duplicates.
async fn answer_now(shared: &Shared, origin: &Origin, mut answer: Packet) {
    answer.set_token(origin.token.clone());
    if origin.confirmable {
        answer.header.set_type(MessageType::Acknowledgement);
        answer.header.message_id = origin.message_id;
    } else {
        answer.header.set_type(MessageType::NonConfirmable);
        answer.header.message_id = shared.next_mid();
    }
    let Ok(bytes) = answer.to_bytes_unlimited() else { return };
    let bytes: Arc<[u8]> = bytes.into();
    shared.finish(&origin.key(), Some(bytes.clone()));
    shared.send(&bytes, origin.peer).await;
}

/// One request being executed.
struct Job {
    shared: Arc<Shared>,
    origin: Origin,
    key: Vec<u8>,
    szx: u8,
    media: MediaType,
    /// One of [`ServerConfig::max_in_flight`], held until the answer is ready (not while a
    /// separate answer waits for its ACK).
    permit: Option<OwnedSemaphorePermit>,
}

impl Job {
    async fn run<S>(mut self, service: S, primitive: RequestPrimitive)
    where
        S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Send,
        S::Future: Send,
    {
        let op = primitive.op;
        let rqi = primitive.rqi.clone();
        let timeout = self.shared.config.request_timeout;
        let work = tokio::time::timeout(timeout, PEER.scope(self.origin.peer, service.oneshot(primitive)));
        let mut work = pin!(work);
        let mut separate = false;
        let outcome = if self.origin.confirmable {
            tokio::select! {
                outcome = &mut work => {
                    // A duplicate may have been acknowledged already: then the answer is separate.
                    separate = matches!(
                        self.shared.lock().exchanges.get(&self.origin.key()),
                        Some(Exchange::Running { acked: true })
                    );
                    outcome
                }
                () = tokio::time::sleep(self.shared.config.piggyback_delay) => {
                    separate = true;
                    self.acknowledge().await;
                    work.await
                }
            }
        } else {
            work.await
        };
        let refuse = |rsc: ResponseStatusCode, message: &str| {
            error_packet(rsc, rsc.coap_code(), Some(rqi.clone()), message, self.media)
        };
        let answer = match outcome {
            Ok(Ok(rsp)) => response_to_packet(&rsp, op, self.media).unwrap_or_else(|e| {
                tracing::warn!(error = %e, rsc = %rsp.rsc, "answer cannot be carried over CoAP");
                refuse(ResponseStatusCode::INTERNAL_SERVER_ERROR, "the answer cannot be carried over CoAP")
            }),
            Ok(Err(e)) => {
                let (rsc, message) = match client_error(&*e) {
                    Some(c) => (c.rsc(), c.to_string()),
                    None => (ResponseStatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned()),
                };
                tracing::debug!(error = %e, %rsc, "inner service failed");
                refuse(rsc, &message)
            }
            Err(_) => refuse(ResponseStatusCode::REQUEST_TIMEOUT, "request not completed in time"),
        };
        let answer = self.first_block(answer);
        drop(self.permit.take());
        if separate {
            self.send_separate(answer).await;
        } else {
            answer_now(&self.shared, &self.origin, answer).await;
        }
    }

    /// An Empty ACK for a request whose answer will come separately (unless a duplicate
    /// already got one); remembered as the reply to further duplicates.
    async fn acknowledge(&self) {
        let ack: Arc<[u8]> = message::empty(MessageType::Acknowledgement, self.origin.message_id).into();
        let already = {
            let mut state = self.shared.lock();
            match state.exchanges.get_mut(&self.origin.key()) {
                Some(Exchange::Running { acked }) => std::mem::replace(acked, true),
                _ => false,
            }
        };
        if !already {
            self.shared.send(&ack, self.origin.peer).await;
        }
    }

    /// The answer itself when it fits in one block, else its first block with the rest stored
    /// for Block2 requests (5.03 when the caps do not allow storing it).
    fn first_block(&self, mut answer: Packet) -> Packet {
        let block = BlockValue { num: 0, more: true, szx: self.szx };
        if answer.payload.len() <= block.size() {
            return answer;
        }
        let payload = std::mem::take(&mut answer.payload);
        let total = payload.len();
        let head = answer.to_bytes_unlimited().unwrap_or_default();
        let now = Instant::now().into_std();
        if !self.shared.lock().blocks.store(self.origin.peer, self.key.clone(), head, payload.clone(), now) {
            let rsc = ResponseStatusCode::INTERNAL_SERVER_ERROR;
            return error_packet(rsc, (5, 3), None, "answer too large to hold now", self.media);
        }
        answer.payload = payload[..block.size()].to_vec();
        answer.add_option(CoapOption::Block2, block.encode());
        answer.add_option(CoapOption::Size2, encode_uint(u32::try_from(total).unwrap_or(u32::MAX)));
        answer
    }

    /// Sends a separate Confirmable answer (RFC 7252 §5.2.2) and retransmits it with
    /// exponential back-off until it is acknowledged (or reset), at most MAX_RETRANSMIT times.
    async fn send_separate(&self, mut answer: Packet) {
        let shared = &self.shared;
        let mid = shared.next_mid();
        answer.set_token(self.origin.token.clone());
        answer.header.set_type(MessageType::Confirmable);
        answer.header.message_id = mid;
        let ack = message::empty(MessageType::Acknowledgement, self.origin.message_id);
        shared.finish(&self.origin.key(), Some(ack.into()));
        let Ok(bytes) = answer.to_bytes_unlimited() else { return };
        let (tx, mut rx) = oneshot::channel();
        let (mut timeout, transmission) = {
            let mut state = shared.lock();
            state.pending.insert((self.origin.peer, mid), tx);
            let unit = state.rng.unit();
            (shared.config.transmission.initial_timeout(unit), shared.config.transmission)
        };
        for attempt in 0..=transmission.max_retransmit {
            shared.send(&bytes, self.origin.peer).await;
            if attempt == transmission.max_retransmit {
                break;
            }
            if tokio::time::timeout(timeout, &mut rx).await.is_ok() {
                return;
            }
            timeout *= 2;
        }
        let _ = tokio::time::timeout(timeout, &mut rx).await;
        shared.lock().pending.remove(&(self.origin.peer, mid));
    }
}

/// The first [`ClientError`] in the source chain of `e`.
fn client_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientError> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<ClientError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_short_and_carry_the_rsc() {
        let p =
            error_packet(ResponseStatusCode::BAD_REQUEST, (4, 2), Some("r1".into()), &"é".repeat(200), MediaType::Json);
        assert_eq!(code_byte(&p), code_of(4, 2));
        let rsp = crate::packet_to_response(&p, &Limits::default()).unwrap();
        assert_eq!(rsp.rsc, ResponseStatusCode::BAD_REQUEST);
        assert_eq!(rsp.rqi, "r1");
        assert!(rsp.pc.unwrap()["m2m:dbg"].as_str().unwrap().len() <= MAX_DEBUG_TEXT);
    }
}
