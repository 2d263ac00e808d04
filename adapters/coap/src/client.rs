//! The CoAP client (TS-0008 over RFC 7252 UDP): a Tower service that sends request primitives
//! to one peer as Confirmable (or Non-confirmable) requests, retransmits with exponential
//! back-off, matches answers by message ID and token, moves large payloads block-wise both ways
//! and maps the answer back.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use coap_lite::{CoapOption, MessageType, Packet};
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower::Service;

use crate::block::BlockValue;
use crate::mapping::{code_byte, code_of};
use crate::message::{self, Rng, Transmission};
use crate::options::{MediaType, encode_uint};
use crate::{BindingError, BoxError, Encoding, Limits, packet_to_response, primitive_to_packet};

/// Settings of a [`CoapClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Payload serialization (also asked for with Accept when not JSON), Uri-Host and Uri-Port.
    pub encoding: Encoding,
    /// Limits on the answers received (payload after reassembly, nesting).
    pub limits: Limits,
    /// Retransmission of Confirmable requests (RFC 7252 §4.2, §4.8).
    pub transmission: Transmission,
    /// Time for a whole request: every block, retransmission and the answer.
    pub request_timeout: Duration,
    /// Block size exponent for Block1 uploads and Block2 downloads (6 = 1024-byte blocks); a
    /// payload larger than one block goes block-wise.
    pub block_szx: u8,
    /// Send requests that fit one datagram as Non-confirmable (TS-0008 §6.3.0 allows it when
    /// there is a good reason): no ACK, no retransmission, the answer comes as NON.
    pub non_confirmable: bool,
    /// Token length in bytes, 1..=8 (RFC 7252 §5.3.1: random tokens guard against spoofed answers).
    pub token_bytes: usize,
    /// Seed for message IDs, tokens and retransmission jitter (tests); `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            encoding: Encoding::default(),
            limits: Limits::default(),
            transmission: Transmission::default(),
            request_timeout: Duration::from_secs(30),
            block_szx: 6,
            non_confirmable: false,
            token_bytes: 4,
            seed: None,
        }
    }
}

/// Why an exchange with the peer failed.
///
/// The `Display` texts name no address, so that they can be relayed to the originator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The primitive cannot be carried over CoAP.
    #[error("the request cannot be sent over CoAP")]
    InvalidRequest(#[source] BindingError),
    /// No acknowledgement after every retransmission (RFC 7252 §4.2), or the peer reset the
    /// exchange.
    #[error("the target is not reachable")]
    Unreachable,
    /// No complete answer within [`ClientConfig::request_timeout`].
    #[error("the target did not answer in time")]
    Timeout,
    /// Sending or receiving failed.
    #[error("the exchange with the target failed")]
    Io(#[source] io::Error),
    /// The answer is not a usable oneM2M CoAP response.
    #[error("the target's answer is invalid")]
    InvalidResponse(#[source] BindingError),
    /// The answer's payload exceeds [`Limits::max_payload_bytes`], or its blocks do not fit
    /// together.
    #[error("the target's answer is too large or incomplete")]
    BadBlocks,
}

impl ClientError {
    /// The Response Status Code to answer the originator with: `TARGET_NOT_REACHABLE` (5103)
    /// when the target did not acknowledge or reset the exchange, `REQUEST_TIMEOUT` (4008) on
    /// timeout, the mapping error's code for a request that cannot be sent,
    /// `INTERNAL_SERVER_ERROR` (5000) for an unusable answer or a local I/O failure.
    pub fn rsc(&self) -> ResponseStatusCode {
        match self {
            Self::InvalidRequest(e) => e.rsc(),
            Self::Unreachable => ResponseStatusCode::TARGET_NOT_REACHABLE,
            Self::Timeout => ResponseStatusCode::REQUEST_TIMEOUT,
            Self::Io(_) | Self::InvalidResponse(_) | Self::BadBlocks => ResponseStatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Most recently acknowledged separate answers remembered, to acknowledge their duplicates.
const RECENT_ACKS: usize = 256;

struct State {
    rng: Rng,
    next_mid: u16,
    /// Exchanges waiting for an ACK or RST, by message ID.
    by_mid: HashMap<u16, mpsc::UnboundedSender<Packet>>,
    /// Exchanges waiting for an answer, by token.
    by_token: HashMap<Vec<u8>, mpsc::UnboundedSender<Packet>>,
    /// Message IDs of separate Confirmable answers already acknowledged.
    recent: VecDeque<u16>,
}

struct Inner {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    config: ClientConfig,
    state: Arc<Mutex<State>>,
    receiver: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.receiver.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends request primitives to one CoAP peer, as a Tower service. Clones share the socket.
///
/// Each request is built with [`primitive_to_packet`]; a payload larger than one block goes
/// with Block1, an answer with Block2 is fetched block by block up to
/// [`Limits::max_payload_bytes`], and the whole is mapped with [`packet_to_response`] (an
/// answer without oneM2M-RQI, from the CoAP layer, gets the request's `rqi`). Failures are
/// [`ClientError`]s (boxed).
#[derive(Clone)]
pub struct CoapClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for CoapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoapClient").field("peer", &self.inner.peer).field("config", &self.inner.config).finish()
    }
}

/// Unregisters an exchange when it ends, however it ends.
struct Registration<'a> {
    inner: &'a Inner,
    mid: u16,
    token: Vec<u8>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.by_mid.remove(&self.mid);
        state.by_token.remove(&self.token);
    }
}

impl CoapClient {
    /// A client for `peer`, on a new UDP socket bound to an ephemeral port.
    pub async fn connect(peer: SocketAddr, config: ClientConfig) -> io::Result<Self> {
        let local: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        Self::with_socket(UdpSocket::bind(local).await?, peer, config)
    }

    /// A client for `peer` on `socket` (which it then owns: everything it receives is read).
    pub fn with_socket(socket: UdpSocket, peer: SocketAddr, config: ClientConfig) -> io::Result<Self> {
        let mut rng = Rng::new(config.seed);
        let next_mid = rng.next_u64() as u16;
        let state = State { rng, next_mid, by_mid: HashMap::new(), by_token: HashMap::new(), recent: VecDeque::new() };
        let (socket, state) = (Arc::new(socket), Arc::new(Mutex::new(state)));
        let task = tokio::spawn(receive(socket.clone(), state.clone(), peer));
        let inner = Inner { socket, peer, config, state, receiver: Mutex::new(Some(task)) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// The peer requests go to.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Sends `req` and returns the answer (see [`CoapClient`]).
    pub async fn send(&self, req: &RequestPrimitive) -> Result<ResponsePrimitive, ClientError> {
        let config = &self.inner.config;
        let mut template = primitive_to_packet(req, &config.encoding).map_err(ClientError::InvalidRequest)?;
        if config.encoding.media != MediaType::Json {
            template.add_option(CoapOption::Accept, encode_uint(config.encoding.media.content_format().into()));
        }
        let exchange = async {
            let answer = self.upload(template.clone()).await?;
            let answer = self.download(answer, template).await?;
            let mut rsp = packet_to_response(&answer, &config.limits).map_err(ClientError::InvalidResponse)?;
            if rsp.rqi.is_empty() {
                rsp.rqi = req.rqi.clone();
            }
            Ok(rsp)
        };
        tokio::time::timeout(config.request_timeout, exchange).await.unwrap_or(Err(ClientError::Timeout))
    }

    /// Sends the request, block-wise (Block1) when its payload exceeds one block; the answer
    /// to the last block (or the first answer that is not 2.31 Continue).
    async fn upload(&self, mut template: Packet) -> Result<Packet, ClientError> {
        let payload = std::mem::take(&mut template.payload);
        let mut szx = self.inner.config.block_szx.min(6);
        if payload.len() <= 16 << szx {
            template.payload = payload;
            return self.exchange(template, self.inner.config.non_confirmable).await;
        }
        let mut offset = 0;
        loop {
            let size = 16usize << szx;
            let end = (offset + size).min(payload.len());
            let block = BlockValue { num: (offset / size) as u32, more: end < payload.len(), szx };
            let mut p = template.clone();
            p.add_option(CoapOption::Block1, block.encode());
            if offset == 0 {
                p.add_option(CoapOption::Size1, encode_uint(u32::try_from(payload.len()).unwrap_or(u32::MAX)));
            }
            p.payload = payload[offset..end].to_vec();
            let answer = self.exchange(p, false).await?;
            if !block.more || code_byte(&answer) != code_of(2, 31) {
                return Ok(answer);
            }
            // The server may ask for smaller blocks (RFC 7959 §2.5); offsets stay aligned.
            if let Some(asked) = answer.get_first_option(CoapOption::Block1).and_then(|v| BlockValue::decode(v)) {
                szx = szx.min(asked.szx);
            }
            offset = end;
        }
    }

    /// Fetches the rest of an answer that came with Block2 (RFC 7959 §2.4), re-sending the
    /// request's options without payload for each following block.
    async fn download(&self, mut answer: Packet, mut template: Packet) -> Result<Packet, ClientError> {
        let Some(mut block) = answer.get_first_option(CoapOption::Block2).and_then(|v| BlockValue::decode(v)) else {
            return Ok(answer);
        };
        let limit = self.inner.config.limits.max_payload_bytes;
        template.payload.clear();
        template.clear_option(CoapOption::Block1);
        template.clear_option(CoapOption::Size1);
        let mut payload = std::mem::take(&mut answer.payload);
        while block.more {
            if payload.len() > limit || payload.len() != block.offset() + block.size() {
                return Err(ClientError::BadBlocks);
            }
            let next = BlockValue { num: (payload.len() / block.size()) as u32, more: false, szx: block.szx };
            let mut p = template.clone();
            p.add_option(CoapOption::Block2, next.encode());
            let part = self.exchange(p, false).await?;
            let got = part.get_first_option(CoapOption::Block2).and_then(|v| BlockValue::decode(v));
            match got {
                Some(b) if b.num == next.num && b.szx == next.szx && code_byte(&part) == code_byte(&answer) => {
                    payload.extend_from_slice(&part.payload);
                    block = b;
                }
                _ => return Err(ClientError::BadBlocks),
            }
        }
        if payload.len() > limit {
            return Err(ClientError::BadBlocks);
        }
        answer.payload = payload;
        answer.clear_option(CoapOption::Block2);
        answer.clear_option(CoapOption::Size2);
        Ok(answer)
    }

    /// One request message and its answer: CON with retransmission until ACK (piggybacked answer,
    /// or an Empty ACK and then the separate answer), or NON and its answer.
    async fn exchange(&self, mut packet: Packet, non: bool) -> Result<Packet, ClientError> {
        let inner = &*self.inner;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (mid, token, mut timeout) = {
            let mut state = inner.lock();
            let mid = state.next_mid;
            state.next_mid = mid.wrapping_add(1);
            let mut token;
            loop {
                token = state.rng.next_u64().to_be_bytes()[..inner.config.token_bytes.clamp(1, 8)].to_vec();
                if !state.by_token.contains_key(&token) {
                    break;
                }
            }
            state.by_mid.insert(mid, tx.clone());
            state.by_token.insert(token.clone(), tx);
            let unit = state.rng.unit();
            (mid, token, inner.config.transmission.initial_timeout(unit))
        };
        let _registration = Registration { inner, mid, token: token.clone() };
        packet.header.message_id = mid;
        packet.set_token(token.clone());
        packet.header.set_type(if non { MessageType::NonConfirmable } else { MessageType::Confirmable });
        let bytes = packet.to_bytes_unlimited().map_err(|e| {
            ClientError::InvalidRequest(BindingError::Unmappable { element: "message".into(), reason: e.to_string() })
        })?;
        inner.socket.send_to(&bytes, inner.peer).await.map_err(ClientError::Io)?;
        let mut acked = non;
        let mut retransmissions = 0;
        loop {
            let received = if acked {
                rx.recv().await
            } else {
                match tokio::time::timeout(timeout, rx.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        if retransmissions == inner.config.transmission.max_retransmit {
                            return Err(ClientError::Unreachable);
                        }
                        retransmissions += 1;
                        timeout *= 2;
                        tracing::trace!(mid, retransmissions, "retransmitting");
                        inner.socket.send_to(&bytes, inner.peer).await.map_err(ClientError::Io)?;
                        continue;
                    }
                }
            };
            let Some(p) = received else { return Err(ClientError::Unreachable) };
            let own_mid = p.header.message_id == mid;
            let own_token = p.get_token() == token.as_slice();
            match (p.header.get_type(), code_byte(&p)) {
                (MessageType::Reset, _) if own_mid => return Err(ClientError::Unreachable),
                (MessageType::Acknowledgement, 0) if own_mid => acked = true,
                (MessageType::Acknowledgement, code) if own_mid && own_token && code >> 5 >= 2 => return Ok(p),
                (MessageType::Confirmable | MessageType::NonConfirmable, code) if own_token && code >> 5 >= 2 => {
                    return Ok(p);
                }
                _ => {}
            }
        }
    }
}

/// The client's receive loop: hands ACK/RST to the exchange of their message ID, answers to the
/// exchange of their token, acknowledges separate Confirmable answers (again for duplicates)
/// and resets unexpected Confirmable messages.
/// It runs until the last clone of the client is dropped, which aborts it.
async fn receive(socket: Arc<UdpSocket>, state: Arc<Mutex<State>>, peer: SocketAddr) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if from != peer {
            continue;
        }
        let packet = match message::parse(&buf[..n]) {
            Ok(packet) => packet,
            Err(m) => {
                if let (true, Some(mid)) = (m.confirmable, m.message_id) {
                    let _ = socket.send_to(&message::empty(MessageType::Reset, mid), from).await;
                }
                continue;
            }
        };
        let mid = packet.header.message_id;
        let kind = packet.header.get_type();
        let is_answer = code_byte(&packet) >> 5 >= 2;
        let reply = {
            let mut state = lock(&state);
            match kind {
                MessageType::Acknowledgement | MessageType::Reset => {
                    if let Some(tx) = state.by_mid.get(&mid) {
                        let _ = tx.send(packet);
                    }
                    None
                }
                MessageType::Confirmable | MessageType::NonConfirmable => {
                    let delivered = is_answer
                        && state.by_token.get(packet.get_token()).is_some_and(|tx| tx.send(packet.clone()).is_ok());
                    match kind {
                        MessageType::NonConfirmable => None,
                        _ if delivered || state.recent.contains(&mid) => {
                            if !state.recent.contains(&mid) {
                                if state.recent.len() == RECENT_ACKS {
                                    state.recent.pop_front();
                                }
                                state.recent.push_back(mid);
                            }
                            Some(message::empty(MessageType::Acknowledgement, mid))
                        }
                        _ => Some(message::empty(MessageType::Reset, mid)),
                    }
                }
            }
        };
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<ResponsePrimitive, BoxError>> + Send>>;

impl Service<RequestPrimitive> for CoapClient {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.send(&req).await.map_err(BoxError::from) })
    }
}
