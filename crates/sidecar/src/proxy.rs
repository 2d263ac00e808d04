//! The sidecar runtime: one [`Node`] and its listeners.
//!
//! * **ingress** — secured primitives in from the network: [`ReceiveSecure`]
//!   answers SA flows, opens requests, checks identity binding and the plaintext policy; what
//!   passes goes in plaintext to the upstream (the local CSE, or an AE's listener) and the answer
//!   goes back sealed.
//! * **egress** — plaintext primitives in from loopback (the local CSE's or AE's own requests):
//!   [`SendSecure`](onem2m_sa_tower::SendSecure) establishes SAs on demand with the peer the
//!   target names, seals, sends and opens the answer. Requests on a mapped point of access
//!   (see [`crate::poa`]) go to the peer the mapping names.
//! * **admin** — see [`crate::admin`].
//!
//! **Reload** ([`Runtime::reload`], SIGHUP, `POST /reload`): the node, peers and services of a
//! configuration form a *generation*. A reload builds a new one, which serves new SAs and new
//! requests; earlier generations keep serving the SAs they established — the ingress hands them
//! a sealed request the current generation does not know the SA of (4112), the egress sends a
//! request over an earlier generation's live SA with its peer — until those SAs end.
//!
//! **Replicas** (`[store]` with `kind = "redis"`): the ingress's SAs live in Redis, shared with
//! the other replicas of this sidecar (crate `onem2m-sa-store-redis`). The node's inbound table
//! is the store's, SA messages are recorded in Redis before they are answered, a request under
//! an SA another replica established a moment ago is learnt on the spot (`LearnOnMissLayer`), and
//! each secured request's sequence number is marked in the shared replay window, and each
//! request but RETRIEVE entered in the replicas' shared record of executed requests, before the
//! upstream sees it (`SharedReplayLayer`). The store is made at start and kept across reloads;
//! when Redis cannot be reached (at start too) the sidecar serves the SAs it holds and refuses
//! new establishments with 5000 until it can.
//!
//! The upstream learns which requests came over an SA, and from whom: the ingress sets
//! [`PEER_HEADER`] (`X-SA-Peer`, the authenticated peer's node ID) and [`SA_ID_HEADER`]
//! (`X-SA-Id`) on those, and on no others. Every header whose name starts with `X-SA-` is
//! removed from what arrives at the ingress and at the egress, so no client can forge them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa::credential::TrustAnchors;
use onem2m_sa_http::{
    BoxError, ClientConfig, ClientError, HttpClient, Limits, PrimitiveService, RemoteAddr, ServerConfig,
    refuse_request, serve,
};
use onem2m_sa_tower::store::{LearnOnMiss, LearnOnMissLayer, SaStore, SharedReplay, SharedReplayLayer};
use onem2m_sa_tower::{
    InboundRequest, Node, ReceiveSecure, ReceiveSecureLayer, Route, SendSecureLayer, route_by_cse_id, with_source,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::util::{Either, option_layer};
use tower::{Layer, Service, ServiceExt};

use crate::access::{self, AccessLevel};
use crate::config::{Config, HttpSettings, StoreSettings};
use crate::poa::{self, PoaMap};

mod coap;
mod mqtt;
pub use coap::{CoapAddresses, CoapSockets, client_config as coap_client_config, server_config as coap_server_config};

/// Set by the ingress on each request it forwards to the upstream that came over an SA: the
/// node ID of the peer the SA authenticated (`/id-ae-host`). Absent on plaintext requests.
pub const PEER_HEADER: HeaderName = HeaderName::from_static("x-sa-peer");

/// Set with [`PEER_HEADER`]: the identifier of the SA the request came over, 16 hex digits as
/// `onem2m-sa sa list` shows it.
pub const SA_ID_HEADER: HeaderName = HeaderName::from_static("x-sa-id");

/// Names reserved to the sidecar: headers starting with this never pass from the network.
const RESERVED_PREFIX: &str = "x-sa-";

/// Removes every header whose name starts with `X-SA-` from a request that arrived from a
/// client: only the ingress sets them, and only from an opened SA.
fn strip_reserved(req: &mut http::Request<Bytes>) {
    let headers = req.headers_mut();
    let reserved: Vec<HeaderName> =
        headers.keys().filter(|n| n.as_str().starts_with(RESERVED_PREFIX)).cloned().collect();
    for name in reserved {
        headers.remove(name);
    }
}

/// The headers telling the upstream who an SA authenticated.
fn authenticated_headers(peer: &onem2m_sa_tower::Authenticated) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(PEER_HEADER, HeaderValue::from_str(peer.peer.as_str())?);
    headers.insert(SA_ID_HEADER, HeaderValue::from_str(&peer.sa_id.to_string())?);
    Ok(headers)
}

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A peer or upstream address is not usable.
    #[error("{what}: {reason}")]
    Address {
        /// Which address.
        what: String,
        /// Why.
        reason: String,
    },
    /// The SA store (`[store]`) cannot be used (an unreachable Redis is not this: the sidecar
    /// starts and connects when it can).
    #[error("store: {0}")]
    Store(String),
}

/// The sidecar's sockets, bound before it starts (so port 0 can be used and the addresses
/// learned first).
#[derive(Debug, Default)]
pub struct Listeners {
    /// The HTTP ingress.
    pub ingress_http: Option<TcpListener>,
    /// The HTTP egress.
    pub egress_http: Option<TcpListener>,
    /// The admin endpoint.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener the configuration names.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        async fn one(what: &'static str, addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartError> {
            match addr {
                None => Ok(None),
                Some(addr) => {
                    TcpListener::bind(addr).await.map(Some).map_err(|source| StartError::Bind { what, addr, source })
                }
            }
        }
        Ok(Self {
            ingress_http: one("ingress.http", config.ingress.as_ref().and_then(|i| i.http.as_ref()).map(|l| l.listen))
                .await?,
            egress_http: one("egress.http", config.egress.as_ref().and_then(|e| e.http.as_ref()).map(|l| l.listen))
                .await?,
            admin: one("admin", config.admin.as_ref().map(|a| a.listen)).await?,
        })
    }
}

/// Where a running sidecar listens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Addresses {
    /// The HTTP ingress.
    pub ingress_http: Option<SocketAddr>,
    /// The HTTP egress.
    pub egress_http: Option<SocketAddr>,
    /// The admin endpoint.
    pub admin: Option<SocketAddr>,
}

/// The server settings for the configured HTTP limits and timeouts.
pub fn server_config(http: &HttpSettings) -> ServerConfig {
    ServerConfig {
        limits: limits(http),
        max_headers: http.max_headers,
        header_read_timeout: http.header_read_timeout,
        request_timeout: http.request_timeout,
        idle_timeout: http.idle_timeout,
        max_connections: http.max_connections,
        drain_timeout: http.drain_timeout,
        ..ServerConfig::default()
    }
}

/// The client settings for the configured HTTP limits and timeouts.
pub fn client_config(http: &HttpSettings) -> ClientConfig {
    ClientConfig {
        limits: limits(http),
        connect_timeout: http.connect_timeout,
        request_timeout: http.request_timeout,
        ..ClientConfig::default()
    }
}

fn limits(http: &HttpSettings) -> Limits {
    Limits {
        max_body_bytes: http.max_body_bytes,
        max_header_value_bytes: http.max_header_value_bytes,
        ..Limits::default()
    }
}

/// What a primitive may grow by besides its content when it is sealed, before base64url: its
/// other parameters (bounded by the header limits) and the ESPrim envelope.
const SEALING_HEADROOM: usize = 64 * 1024;

/// The largest body of a sealed message between sidecars, for primitives whose HTTP bodies
/// are at most `max_body_bytes`: base64url makes the sealed primitive a third larger, so a
/// primitive the AE or the CSE may send (and would send straight to the other) is not refused
/// once sealed.
pub fn sealed_body_limit(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_add(SEALING_HEADROOM).saturating_mul(4) / 3
}

/// The limits on what travels sealed between sidecars: what the ingress reads, and the answers
/// the egress reads from a peer ([`sealed_body_limit`]); `http.max_body_bytes` bounds the
/// plaintext sides (the egress's requests, the upstream's answers).
fn sealed_limits(http: &HttpSettings) -> Limits {
    Limits { max_body_bytes: sealed_body_limit(http.max_body_bytes), ..limits(http) }
}

/// The transport to the configured peers: a request goes to the peer its `to` names (the
/// node ID itself, or the CSE-ID at the start of an SP-relative target).
#[derive(Clone, Debug)]
pub struct Peers {
    clients: Arc<HashMap<NodeId, HttpClient>>,
    /// The peers at `coap://` addresses (see [`coap`]).
    coap: Arc<HashMap<NodeId, coap::CoapPeer>>,
    /// The peer each configured outer `to` (`peer.to`, e.g. `/id-in/cse-in`) goes to.
    outer_to: Arc<HashMap<String, NodeId>>,
    /// How each peer is reached through transit CSEs, as configured.
    outer: Arc<HashMap<NodeId, crate::config::PeerOuter>>,
    /// The peers at `mqtt://` addresses (see [`mqtt`]).
    mqtt: Arc<HashMap<NodeId, mqtt::MqttPeer>>,
}

impl Peers {
    /// Clients for every configured peer, sharing one connection pool; the peers at `mqtt://`
    /// addresses over connections of their own (client IDs suffixed `:probe`, so that they do
    /// not take over a running sidecar's sessions).
    pub fn new(config: &Config) -> Result<Self, StartError> {
        Self::with_mqtt(config, &mqtt::MqttBrokers::new(config, ":probe")?)
    }

    /// [`Peers::new`] with the sidecar's MQTT connections.
    fn with_mqtt(config: &Config, brokers: &mqtt::MqttBrokers) -> Result<Self, StartError> {
        let cfg = ClientConfig { limits: sealed_limits(&config.http), ..client_config(&config.http) };
        let mut clients = HashMap::new();
        let mut pool: Option<HttpClient> = None;
        let coap = coap::peers(config)?;
        let mqtt = brokers.peers(config)?;
        for (i, p) in config.peers.iter().enumerate().filter(|(_, p)| !p.is_coap() && !p.is_mqtt()) {
            let bad = |e: onem2m_sa_http::BindingError| StartError::Address {
                what: format!("peer[{i}].address"),
                reason: e.to_string(),
            };
            let client = match &pool {
                Some(c) => c.with_base(&p.address).map_err(bad)?,
                None => HttpClient::new(&p.address, cfg.clone()).map_err(bad)?,
            };
            pool.get_or_insert_with(|| client.clone());
            clients.insert(p.id.clone(), client);
        }
        let outer_to = config.peers.iter().filter_map(|p| Some((p.outer.to.clone()?, p.id.clone()))).collect();
        let outer = config.peers.iter().map(|p| (p.id.clone(), p.outer.clone())).collect();
        Ok(Self {
            clients: Arc::new(clients),
            coap: Arc::new(coap),
            outer_to: Arc::new(outer_to),
            outer: Arc::new(outer),
            mqtt: Arc::new(mqtt),
        })
    }

    /// Whether `peer` is configured.
    pub fn knows(&self, peer: &NodeId) -> bool {
        self.clients.contains_key(peer) || self.coap.contains_key(peer) || self.mqtt.contains_key(peer)
    }

    /// The address `peer` is configured at.
    pub fn address(&self, peer: &NodeId) -> Option<&str> {
        self.clients
            .get(peer)
            .map(HttpClient::base)
            .or_else(|| self.coap.get(peer).map(coap::CoapPeer::address))
            .or_else(|| self.mqtt.get(peer).map(mqtt::MqttPeer::address))
    }

    /// Where and how `peer` is reached: its address and its outer addressing and carriage.
    fn route(&self, peer: &NodeId) -> (Option<&str>, Option<&crate::config::PeerOuter>) {
        (self.address(peer), self.outer.get(peer))
    }

    /// The client for a transport request: SA messages and secured primitives address the peer
    /// node itself; an SP-relative target (`/id-in/…`) is looked up by its CSE-ID.
    fn client_for(&self, to: &str) -> Option<&HttpClient> {
        peer_for(&self.clients, to)
    }
}

/// The entry of `map` for a transport request's target (see [`Peers::client_for`]).
fn peer_for<'a, T>(map: &'a HashMap<NodeId, T>, to: &str) -> Option<&'a T> {
    let exact = NodeId::new(to).ok().and_then(|id| map.get(&id));
    exact.or_else(|| {
        let cse = to.strip_prefix('/')?.split('/').next()?;
        map.get(&NodeId::new(format!("/{cse}")).ok()?)
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl Service<RequestPrimitive> for Peers {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = BoxFuture<ResponsePrimitive>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        // An outer `to` configured for a peer goes to that peer's address (a transit CSE's).
        let to = self.outer_to.get(&req.to).map_or(req.to.as_str(), NodeId::as_str);
        if let Some(peer) = peer_for(&self.coap, to) {
            return peer.call(req);
        }
        if let Some(peer) = peer_for(&self.mqtt, to) {
            return peer.call(req);
        }
        match self.client_for(to).cloned() {
            Some(client) => Box::pin(client.oneshot(req)),
            None => {
                let rsp = ResponsePrimitive::error(Rsc::TARGET_NOT_REACHABLE, &req.rqi, "no configured peer");
                Box::pin(std::future::ready(Ok(rsp)))
            }
        }
    }
}

/// The ingress's protected service: forwards opened requests to the upstream in plaintext.
#[derive(Clone)]
struct Upstream {
    client: UpstreamClient,
    poa: Option<PoaMap>,
}

/// How the upstream is reached.
#[derive(Clone)]
enum UpstreamClient {
    /// Over HTTP (the CSE, or an AE's listener), with the `X-SA-` headers.
    Http(Box<HttpClient>),
    /// Through the MQTT-only AEs' local broker (see [`mqtt::MqttUpstream`]).
    Mqtt(mqtt::MqttUpstream),
}

impl UpstreamClient {
    fn address(&self) -> &str {
        match self {
            Self::Http(c) => c.base(),
            Self::Mqtt(m) => m.address(),
        }
    }
}

impl Service<InboundRequest> for Upstream {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = BoxFuture<ResponsePrimitive>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, inbound: InboundRequest) -> Self::Future {
        let (client, poa) = (self.client.clone(), self.poa.clone());
        Box::pin(async move {
            let mut req = inbound.primitive;
            let rqi = req.rqi.clone();
            if let (Some(map), Some(peer)) = (&poa, &inbound.peer) {
                map.rewrite_request(&mut req, &peer.peer);
            }
            let headers = match inbound.peer.as_ref().map(authenticated_headers).transpose() {
                Ok(headers) => headers.unwrap_or_default(),
                Err(_) => {
                    return Ok(ResponsePrimitive::error(Rsc::INTERNAL_SERVER_ERROR, &rqi, "unusable peer ID"));
                }
            };
            let sent = match &client {
                UpstreamClient::Http(c) => c.call_with_headers(&req, headers).await,
                UpstreamClient::Mqtt(m) => m.call(req.clone(), inbound.peer.as_ref().map(|p| &p.peer)).await,
            };
            let rsp = match sent {
                Ok(mut rsp) => {
                    // Any AE representation going back shows the points of access as registered.
                    if let Some(map) = &poa {
                        map.restore_response(&mut rsp);
                    }
                    rsp
                }
                // The answer still goes back sealed: the peer learns, authenticated, what
                // happened at the upstream.
                Err(e) => upstream_failure(&*e, &req, client.address()),
            };
            access::record(&req, inbound.peer.as_ref(), rsp.rsc);
            Ok(rsp)
        })
    }
}

/// Whether `req` asked for no response (TS-0004 `rt` 5, noResponse).
fn wants_no_response(req: &RequestPrimitive) -> bool {
    req.rt.as_ref().is_some_and(|rt| rt.rtv == 5)
}

/// The answer to `req` when the upstream exchange failed, saying what happened (the text goes
/// to the peer; the log also names the upstream).
///
/// A no-response request (`rt=5`) that the upstream answered with a bare 2xx, without a
/// response primitive — ACME's `204 No Content` — was delivered: it is answered 1000 ACCEPTED,
/// never "not reachable", so that the originator does not send it again. A bare error status
/// is 5000, naming the status, whatever the request asked for.
fn upstream_failure(
    e: &(dyn std::error::Error + Send + Sync + 'static),
    req: &RequestPrimitive,
    upstream: &str,
) -> ResponsePrimitive {
    let source = || e.source().map(|s| format!(": {s}")).unwrap_or_default();
    let (rsc, text) = match e.downcast_ref::<ClientError>() {
        Some(ClientError::NoResponsePrimitive { status }) if status.is_success() && wants_no_response(req) => {
            tracing::debug!(rqi = %req.rqi, %upstream, %status, "no-response request (rt=5) answered without a response primitive: 1000");
            return ResponsePrimitive::new(Rsc::ACCEPTED, &req.rqi);
        }
        Some(c @ ClientError::NoResponsePrimitive { .. }) => {
            (c.rsc(), format!("the upstream's answer could not be mapped: {c}"))
        }
        Some(ClientError::InvalidResponse(m)) => {
            (Rsc::INTERNAL_SERVER_ERROR, format!("the upstream's answer could not be mapped: {m}"))
        }
        Some(ClientError::BodyTooLarge) => {
            (Rsc::INTERNAL_SERVER_ERROR, "the upstream's answer is larger than http.max_body_bytes".to_owned())
        }
        Some(c @ ClientError::InvalidRequest(m)) => {
            (c.rsc(), format!("the request cannot be sent to the upstream: {m}"))
        }
        Some(c @ ClientError::Connect(_)) => (c.rsc(), format!("the upstream is not reachable{}", source())),
        Some(c @ ClientError::Io(_)) => {
            (c.rsc(), format!("the connection to the upstream failed before it answered{}", source()))
        }
        Some(c @ ClientError::Timeout) => (c.rsc(), "the upstream did not answer in time".to_owned()),
        Some(c) => (c.rsc(), format!("the upstream request failed: {c}{}", source())),
        None => match e.downcast_ref::<onem2m_sa_mqtt::ClientError>() {
            Some(c) => (c.rsc(), format!("the request to the AE over MQTT failed: {c}")),
            None => (Rsc::INTERNAL_SERVER_ERROR, format!("the upstream request failed: {e}")),
        },
    };
    tracing::warn!(rqi = %req.rqi, %upstream, %rsc, "{text}");
    ResponsePrimitive::error(rsc, &req.rqi, &text)
}

/// The egress's HTTP service: plaintext in, sealed to the peer.
#[derive(Clone)]
struct Egress {
    node: Node,
    peers: Peers,
    limits: Limits,
    routed: PrimitiveService<onem2m_sa_tower::SendSecure<Peers>>,
    default_peer: Option<NodeId>,
    access: AccessLevel,
}

impl Egress {
    fn new(node: Node, peers: Peers, route: Route, limits: Limits) -> Self {
        let routed = PrimitiveService::new(SendSecureLayer::new(node.clone(), route).layer(peers.clone()), limits);
        Self { node, peers, limits, routed, default_peer: None, access: AccessLevel::default() }
    }

    /// The peer a request on `path` goes to, for the access log: the CSE-ID an SP-relative
    /// (`/~/id-in/…`) or absolute (`/_/sp/id-in/…`) target starts with, else the default peer.
    fn peer_of(&self, path: &str) -> Option<NodeId> {
        let relative = path
            .strip_prefix("/~/")
            .or_else(|| path.strip_prefix("/_/").and_then(|p| p.split_once('/').map(|(_, r)| r)));
        match relative.and_then(|r| r.split('/').next()) {
            Some(cse) => NodeId::new(format!("/{cse}")).ok().filter(|p| self.peers.knows(p)),
            None => self.default_peer.clone(),
        }
    }

    /// `fut`, the handling of one request, with its access line once answered.
    fn logged(&self, seen: access::Seen, peer: Option<NodeId>, fut: HttpFuture) -> HttpFuture {
        let (node, level) = (self.node.clone(), self.access);
        Box::pin(async move {
            let out = fut.await;
            if let Ok(rsp) = &out {
                let sa = || peer.as_ref().and_then(|p| node.outbound().live_by_peer(p)).map(|e| e.sa_id().to_string());
                access::egress(level, &seen, rsp, peer.as_ref(), sa);
            }
            out
        })
    }
}

/// The future of the ingress's and egress's HTTP services.
type HttpFuture = Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, Infallible>> + Send>>;

impl Service<http::Request<Bytes>> for Egress {
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        strip_reserved(&mut req);
        let seen = access::Seen::new(&req);
        if !req.uri().path().starts_with(poa::PREFIX) {
            let peer = self.peer_of(req.uri().path());
            return self.logged(seen, peer, Box::pin(self.routed.clone().oneshot(req)));
        }
        let limits = self.limits;
        let refuse = |req: &http::Request<Bytes>, rsc: Rsc, why: &'static str| {
            tracing::warn!(path = %req.uri().path(), %rsc, reason = why, "egress: request on a mapped poa refused");
            let answer = refuse_request(req, &limits, rsc, why);
            Box::pin(std::future::ready(Ok(answer)))
        };
        let Some(mapped) = poa::decode_path(req.uri().path()) else {
            return refuse(&req, Rsc::BAD_REQUEST, "malformed mapped poa");
        };
        if !self.peers.knows(&mapped.peer) {
            return refuse(&req, Rsc::TARGET_NOT_REACHABLE, "mapped poa names no configured peer");
        }
        // The request goes to the registered point of access's path at the peer, with whatever
        // the CSE appended to it after, and its own query.
        let target = match req.uri().query() {
            Some(q) => format!("{}?{q}", mapped.target_path()),
            None => mapped.target_path(),
        };
        match target.parse::<http::Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return refuse(&req, Rsc::BAD_REQUEST, "unusable mapped poa"),
        }
        let peer = mapped.peer;
        let to = peer.clone();
        let route: Route = Arc::new(move |_: &RequestPrimitive| Some(to.clone()));
        let svc = PrimitiveService::new(
            SendSecureLayer::new(self.node.clone(), route).layer(self.peers.clone()),
            self.limits,
        );
        self.logged(seen, Some(peer), Box::pin(svc.oneshot(req)))
    }
}

/// The ingress's HTTP front: removes the reserved `X-SA-` headers, and handles each request with
/// the peer's IP address as its transport source, for the Responder's per-source flood defences
/// (cookies, half-open bounds).
#[derive(Clone)]
struct Sourced<S>(S, AccessLevel);

impl<S> Service<http::Request<Bytes>> for Sourced<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        strip_reserved(&mut req);
        let (inner, level) = (self.0.clone(), self.1);
        let seen = access::Seen::new(&req);
        let handled: HttpFuture = match req.extensions().get::<RemoteAddr>().map(|a| a.0.ip()) {
            Some(ip) => Box::pin(with_source(ip, inner.oneshot(req))),
            None => Box::pin(inner.oneshot(req)),
        };
        Box::pin(async move {
            let (out, forwarded) = access::scope(level, handled).await;
            if let Ok(rsp) = &out {
                access::ingress(level, &seen, rsp, forwarded);
            }
            out
        })
    }
}

/// What the ingress's `ReceiveSecure` hands opened requests to: the upstream, behind the shared
/// replay window on a replica.
type Protected = Either<SharedReplay<Upstream>, Upstream>;

/// The ingress's service of one generation without its HTTP front: `ReceiveSecure` (behind the
/// store's learn-on-miss on a replica).
type Receive = Either<LearnOnMiss<ReceiveSecure<Protected>>, ReceiveSecure<Protected>>;

/// The ingress's service of one generation: HTTP in, ReceiveSecure, the upstream.
type IngressService = PrimitiveService<Receive>;

/// The Redis store `[store]` names, not connected yet (see [`onem2m_sa_store_redis::RedisStore::open`]);
/// `None` for the in-memory default. Fails only for an unusable configuration.
pub(crate) fn redis_store(config: &Config) -> Result<Option<onem2m_sa_store_redis::RedisStore>, StartError> {
    use onem2m_sa_store_redis::{Kek, RedisStore, RedisStoreConfig, SentinelAddress};
    let StoreSettings::Redis(r) = &config.store else { return Ok(None) };
    let sentinel =
        r.master.as_ref().map(|master| SentinelAddress { nodes: r.sentinels.clone(), master: master.clone() });
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| StartError::Store(format!("{}: {e}", p.display())));
    let tls = onem2m_sa_store_redis::RedisTls {
        ca_pem: r.ca_file.as_deref().map(read).transpose()?,
        client: match &r.client_cert {
            Some((cert, key)) => Some((read(cert)?, zeroize::Zeroizing::new(read(key)?))),
            None => None,
        },
    };
    let store_config = RedisStoreConfig {
        sentinel,
        cluster: r.cluster.clone(),
        tls,
        prefix: r.prefix.clone(),
        lease_block: r.lease_block,
        window: config.sa.replay_window as u64,
        timeout: r.timeout,
        lease_refresh: r.lease_refresh,
        lease_replicas: r.lease_replicas,
        // The shared record of executed requests keeps answers as long as each node's own.
        executed_ttl: config.sa.executed.ttl,
        ..RedisStoreConfig::new(r.url.clone())
    };
    let kek = Kek::new(&r.kek[..]).map_err(|e| StartError::Store(e.to_string()))?;
    RedisStore::open(store_config, kek, config.node_config().table)
        .map(Some)
        .map_err(|e| StartError::Store(format!("{}: {e}", store_place(config))))
}

/// Where `[store]` says Redis is, for messages (no password).
pub(crate) fn store_place(config: &Config) -> String {
    match &config.store {
        StoreSettings::Redis(r) if !r.cluster.is_empty() => {
            let nodes: Vec<String> = r.cluster.iter().map(|n| crate::config::redacted_url(n)).collect();
            format!("Redis Cluster {}", nodes.join(", "))
        }
        StoreSettings::Redis(r) => match &r.master {
            Some(master) => format!("Sentinel master {master}"),
            None => crate::config::redacted_url(&r.url),
        },
        StoreSettings::Memory => "memory".to_owned(),
    }
}

/// The SA store `[store]` names, made at start and kept for the sidecar's life: `None` for the
/// in-memory default. Redis need not be reachable now (the store connects when it can); only an
/// unusable configuration fails.
async fn open_store(config: &Config) -> Result<Option<(Arc<dyn SaStore>, Aborting)>, StartError> {
    let Some(store) = redis_store(config)? else { return Ok(None) };
    let url = store_place(config);
    // Reached: the store logs it. Not reached: said here, with why.
    if let Err(e) = store.incarnation().await {
        tracing::warn!(url, error = %e, "SA store: Redis is not reachable; serving, establishments refused (5000) until it is");
    }
    let listener = Aborting(store.spawn_listener(Duration::from_millis(500)));
    Ok(Some((Arc::new(store), listener)))
}

/// A task aborted when this is dropped (a start that fails after spawning it, or the sidecar
/// going away).
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One configuration's runtime: its node (SA tables, SA Management), its peers, and the ingress
/// and egress services built from it. A reload builds a new generation; the one before keeps
/// serving the SAs it established until they end.
struct Generation {
    node: Node,
    peers: Peers,
    anchors: Arc<TrustAnchors>,
    ingress: Option<IngressService>,
    egress: Option<Egress>,
    agent: JoinHandle<()>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.agent.abort();
    }
}

impl Generation {
    /// Builds the generation of `config` for a sidecar listening at `addresses`.
    fn build(
        config: &Config,
        addresses: &Addresses,
        mqtt: &mqtt::MqttBrokers,
        store: Option<&Arc<dyn SaStore>>,
    ) -> Result<Self, StartError> {
        let node = config.build_node_on(store.cloned());
        let peers = Peers::with_mqtt(config, mqtt)?;
        let limits = server_config(&config.http).limits;
        // Built whenever configured: the ingress and egress serve HTTP and CoAP listeners alike.
        let ingress = match &config.ingress {
            Some(ingress) => {
                // The upstream gets a little less time than the request as a whole, so that a
                // slow upstream is answered by a sealed 4008 from here rather than by the
                // server's own (unsealed) timeout.
                let upstream = ClientConfig {
                    request_timeout: config.http.request_timeout.mul_f64(0.9),
                    ..client_config(&config.http)
                };
                let client = match mqtt.upstream()? {
                    Some(local) => UpstreamClient::Mqtt(local),
                    None => {
                        let http = HttpClient::new(&ingress.upstream, upstream).map_err(|e| StartError::Address {
                            what: "ingress.upstream".into(),
                            reason: e.to_string(),
                        })?;
                        UpstreamClient::Http(Box::new(http))
                    }
                };
                let poa = match (ingress.map_poa, addresses.egress_http) {
                    (true, Some(egress)) => Some(PoaMap::new(format!("http://{egress}"))),
                    (true, None) => {
                        tracing::info!(
                            "ingress.map_poa is on but there is no egress: AE points of access are not mapped"
                        );
                        None
                    }
                    (false, _) => None,
                };
                // On a replica: the shared replay window before the upstream, and the SAs other
                // replicas established a moment ago learnt on a miss.
                let protected =
                    option_layer(store.cloned().map(SharedReplayLayer::new)).layer(Upstream { client, poa });
                let receive = ReceiveSecureLayer::new(node.clone(), ingress.plaintext.clone()).layer(protected);
                let receive = option_layer(store.cloned().map(LearnOnMissLayer::new)).layer(receive);
                Some(PrimitiveService::new(receive, sealed_limits(&config.http)))
            }
            None => None,
        };
        let egress = match &config.egress {
            Some(egress) => {
                let known = peers.clone();
                let by_cse = route_by_cse_id(egress.default_peer.clone());
                let route: Route = Arc::new(move |req: &RequestPrimitive| by_cse(req).filter(|p| known.knows(p)));
                Some(Egress {
                    default_peer: egress.default_peer.clone(),
                    access: config.log.access,
                    ..Egress::new(node.clone(), peers.clone(), route, limits)
                })
            }
            None => None,
        };
        let agent = node.spawn_agent(peers.clone(), Duration::from_secs(1), config.sa.rotation);
        Ok(Self { node, peers, anchors: config.node.trust_anchors.clone(), ingress, egress, agent })
    }

    /// Whether it holds SAs of its own. With a store the inbound SAs are not its own: every
    /// generation shares the store's table, and the current one serves them all.
    fn holds_sas(&self) -> bool {
        self.sa_count() > 0
    }

    /// Its SAs: outbound, and inbound unless they live in the shared store's table.
    fn sa_count(&self) -> usize {
        let inbound = if self.node.store().is_some() { 0 } else { self.node.inbound().len() };
        inbound + self.node.outbound().len()
    }

    fn has_live_outbound(&self, peer: &NodeId) -> bool {
        self.node.outbound().by_peer(peer).iter().any(|e| e.is_active())
    }
}

/// The current generation, and the earlier ones that still hold SAs (newest first).
struct Generations {
    current: Arc<Generation>,
    previous: Vec<Arc<Generation>>,
}

impl Generations {
    /// The earlier generations whose ingress may know an SA the current one does not: none with
    /// a store (every generation reads the store's table, and asking again would only ask
    /// Redis again).
    fn previous_ingresses(&self) -> impl Iterator<Item = &Arc<Generation>> {
        self.previous.iter().filter(|p| p.node.store().is_none())
    }
}

/// What a running sidecar reloads: its generations, and what a reload may not change.
#[derive(Clone)]
pub struct Runtime {
    generations: Arc<std::sync::RwLock<Generations>>,
    addresses: Addresses,
    fixed: Arc<Fixed>,
    /// The MQTT connections, kept across reloads.
    mqtt: Arc<mqtt::MqttBrokers>,
    /// The SA store (`[store]`), kept across reloads; `None`: SAs in memory.
    store: Option<Arc<dyn SaStore>>,
}

/// What only a restart changes.
#[derive(Debug, PartialEq, Eq)]
struct Fixed {
    path: std::path::PathBuf,
    node: NodeId,
    ingress: Option<SocketAddr>,
    egress: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    coap: CoapAddresses,
    mqtt: (Option<crate::config::MqttSettings>, Option<crate::config::MqttSettings>),
    /// An `mqtt://` `ingress.upstream` (the AEs' local broker).
    mqtt_upstream: Option<String>,
    store: StoreSettings,
}

impl Fixed {
    fn of(config: &Config) -> Self {
        Self {
            path: config.path.clone(),
            node: config.node.id.clone(),
            ingress: config.ingress.as_ref().and_then(|i| i.http.as_ref()).map(|l| l.listen),
            egress: config.egress.as_ref().and_then(|e| e.http.as_ref()).map(|l| l.listen),
            admin: config.admin.as_ref().map(|a| a.listen),
            coap: CoapAddresses::configured(config),
            mqtt: (
                config.ingress.as_ref().and_then(|i| i.mqtt.clone()),
                config.egress.as_ref().and_then(|e| e.mqtt.clone()),
            ),
            mqtt_upstream: config
                .ingress
                .as_ref()
                .map(|i| i.upstream.clone())
                .filter(|u| crate::config::is_mqtt_address(u)),
            store: config.store.clone(),
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// SAs kept from earlier configurations (they serve until they end).
    pub sas_kept: usize,
    /// SAs removed: with peers no longer configured, or all of them when a trust anchor was
    /// removed or changed.
    pub sas_removed: usize,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration reloaded: {} SAs kept, {} removed", self.sas_kept, self.sas_removed)
    }
}

impl Runtime {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Generations> {
        self.generations.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Generations> {
        self.generations.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current node.
    pub fn node(&self) -> Node {
        self.read().current.node.clone()
    }

    /// Every node with SAs, the current one first, with its peers.
    pub fn nodes(&self) -> Vec<(Node, Peers)> {
        let g = self.read();
        std::iter::once(&g.current).chain(&g.previous).map(|g| (g.node.clone(), g.peers.clone())).collect()
    }

    /// Applies `config` without a restart: new keys, tickets, trust anchors, peers, policy and
    /// limits take effect for new SAs and new requests. SAs already established stay, served
    /// by the configuration that established them, unless their peer is no longer configured at
    /// the same address, reached the same way (outbound; `peer.to`, `from`, `carriage`) or a
    /// trust anchor was removed or changed (every earlier SA:
    /// peers establish again and are judged by the new anchors). Requests in flight finish where
    /// they started.
    /// Refused, with the running configuration kept, when it changes what needs a restart.
    pub fn reload(&self, config: &Config) -> Result<Reloaded, String> {
        let fixed = Fixed::of(config);
        if fixed != *self.fixed {
            return Err(format!(
                "{}: node.id, the listen addresses, [ingress.mqtt], [egress.mqtt], an mqtt:// ingress.upstream, [store] and the config file need a restart; the running configuration stays",
                config.path.display()
            ));
        }
        let next = Arc::new(
            Generation::build(config, &self.addresses, &self.mqtt, self.store.as_ref()).map_err(|e| e.to_string())?,
        );
        let mut g = self.write();
        let trust_kept = g.current.anchors.is_subset_of(&next.anchors);
        let before = std::mem::replace(&mut g.current, next);
        g.previous.insert(0, before);
        let mut removed = 0;
        if !trust_kept {
            removed = g.previous.iter().map(|p| p.sa_count()).sum();
            g.previous.clear();
            removed += self.remove_stored();
        }
        let peers = g.current.peers.clone();
        for p in &g.previous {
            for sa in p.node.outbound().entries() {
                // A peer no longer listed, or listed at another address or reached another way
                // (outer `to`, `from`, carriage), is reached anew.
                if peers.route(sa.peer()) != p.peers.route(sa.peer()) {
                    p.node.forget_outbound(&sa);
                    removed += 1;
                }
            }
        }
        g.previous.retain(|p| p.holds_sas());
        let shared = self.store.as_ref().map_or(0, |s| s.table().len());
        let kept = g.previous.iter().map(|p| p.sa_count()).sum::<usize>() + shared;
        Ok(Reloaded { sas_kept: kept, sas_removed: removed })
    }

    /// Removes every SA of the shared store, here and (in the background) on every replica:
    /// after a trust anchor was removed or changed, peers establish again and are judged by the
    /// new anchors. Returns how many.
    fn remove_stored(&self) -> usize {
        let Some(store) = self.store.clone() else { return 0 };
        let ids: Vec<_> = store.table().entries().iter().map(|e| e.sa_id()).collect();
        for &sa_id in &ids {
            store.table().remove(sa_id);
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let removing = ids.clone();
                handle.spawn(async move {
                    for sa_id in removing {
                        if let Err(e) = store.remove(sa_id).await {
                            tracing::warn!(sa = %sa_id, error = %e, "SA removal not recorded in the store");
                        }
                    }
                });
            }
            Err(_) => tracing::warn!("no runtime: SA removals not recorded in the store"),
        }
        ids.len()
    }

    /// Loads the config file the sidecar started with and applies it ([`Runtime::reload`]).
    pub fn reload_from_file(&self) -> Result<Reloaded, String> {
        let config = Config::load(&self.fixed.path).map_err(|e| e.to_string())?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        self.reload(&config)
    }

    /// Drops earlier generations whose SAs have all ended.
    fn prune(&self) {
        if self.read().previous.iter().any(|p| !p.holds_sas()) {
            self.write().previous.retain(|p| p.holds_sas());
        }
    }

    /// Stops every generation's SA agent and drops the earlier generations.
    fn stop_agents(&self) {
        let mut g = self.write();
        g.current.agent.abort();
        g.previous.clear();
    }
}

/// The ingress: the current generation answers; a request sealed under an SA an earlier
/// generation established (4112 from the current one, which did not open it) goes to those.
#[derive(Clone)]
struct IngressFront(Runtime);

/// An identical copy of a request (its body is shared).
fn copy_request(req: &http::Request<Bytes>) -> http::Request<Bytes> {
    let mut copy = http::Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    if let Some(addr) = req.extensions().get::<RemoteAddr>() {
        copy.extensions_mut().insert(*addr);
    }
    copy
}

/// `X-M2M-RSC`, as HTTP/1.1 carries it (a constant: a `&str` name is parsed on every lookup).
pub(crate) const RSC_HEADER: HeaderName = HeaderName::from_static("x-m2m-rsc");

fn unknown_sa(rsp: &http::Response<Bytes>) -> bool {
    rsp.headers()
        .get(RSC_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .is_some_and(|rsc| rsc == Rsc::ESPRIM_UNKNOWN_KEY_ID.code())
}

impl Service<http::Request<Bytes>> for IngressFront {
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let (current, previous): (Option<IngressService>, Vec<IngressService>) = {
            let g = self.0.read();
            (g.current.ingress.clone(), g.previous_ingresses().filter_map(|p| p.ingress.clone()).collect())
        };
        Box::pin(async move {
            let Some(current) = current else {
                return Ok(http::Response::builder().status(404).body(Bytes::new()).expect("static response"));
            };
            if previous.is_empty() {
                return current.oneshot(req).await;
            }
            let copy = copy_request(&req);
            let answer = current.oneshot(req).await?;
            if !unknown_sa(&answer) {
                return Ok(answer);
            }
            for earlier in previous {
                let again = earlier.oneshot(copy_request(&copy)).await?;
                if !unknown_sa(&again) {
                    return Ok(again);
                }
            }
            Ok(answer)
        })
    }
}

/// The egress: a request to a peer that an earlier generation holds a live SA with goes over
/// that SA (while the peer is still configured); every other request goes through the current
/// generation, which establishes SAs under the current keys and tickets.
#[derive(Clone)]
struct EgressFront(Runtime);

impl Service<http::Request<Bytes>> for EgressFront {
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let chosen = {
            let g = self.0.read();
            g.current.egress.clone().map(|current| {
                if g.previous.is_empty() {
                    // No earlier generation: the common case, with no peer to work out.
                    return current;
                }
                let path = req.uri().path();
                let peer = match poa::decode_path(path) {
                    Some(m) => Some(m.peer),
                    None => current.peer_of(path),
                };
                let earlier = peer
                    .filter(|p| current.peers.knows(p))
                    .and_then(|p| g.previous.iter().find(|e| e.has_live_outbound(&p)).and_then(|e| e.egress.clone()));
                earlier.unwrap_or(current)
            })
        };
        match chosen {
            Some(mut egress) => egress.call(req),
            None => Box::pin(std::future::ready(Ok(http::Response::builder()
                .status(404)
                .body(Bytes::new())
                .expect("static response")))),
        }
    }
}

/// A running sidecar.
pub struct Sidecar {
    runtime: Runtime,
    addresses: Addresses,
    coap_addresses: CoapAddresses,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    pruner: JoinHandle<()>,
    /// The SA store's listener (events and catch-up from Redis), with `[store]`.
    store_listener: Option<Aborting>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar").field("node", &self.runtime.fixed.node).field("addresses", &self.addresses).finish()
    }
}

impl Sidecar {
    /// Starts the sidecar on already bound `listeners`, binding the CoAP listeners the
    /// configuration names itself (see [`Sidecar::coap_addresses`]). `metrics` renders
    /// `/metrics` on the admin endpoint.
    pub async fn start(
        config: &Config,
        listeners: Listeners,
        metrics: Option<crate::admin::MetricsRender>,
    ) -> Result<Self, StartError> {
        let coap = CoapSockets::bind(config).await?;
        Self::start_with_coap(config, listeners, coap, metrics).await
    }

    /// [`Sidecar::start`] on already bound CoAP sockets too.
    pub async fn start_with_coap(
        config: &Config,
        listeners: Listeners,
        coap: CoapSockets,
        metrics: Option<crate::admin::MetricsRender>,
    ) -> Result<Self, StartError> {
        let server = server_config(&config.http);
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let addresses = Addresses {
            ingress_http: local(&listeners.ingress_http),
            egress_http: local(&listeners.egress_http),
            admin: local(&listeners.admin),
        };
        let mqtt = Arc::new(mqtt::MqttBrokers::new(config, "")?);
        let (store, store_listener) = open_store(config).await?.unzip();
        let first = Generation::build(config, &addresses, &mqtt, store.as_ref())?;
        let runtime = Runtime {
            generations: Arc::new(std::sync::RwLock::new(Generations {
                current: Arc::new(first),
                previous: Vec::new(),
            })),
            addresses,
            fixed: Arc::new(Fixed::of(config)),
            mqtt,
            store,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let mut servers = Vec::new();
        if let (Some(_), Some(listener)) = (&config.ingress, listeners.ingress_http) {
            let svc = Sourced(IngressFront(runtime.clone()), config.log.access);
            // The ingress reads sealed messages (and what the allow-list admits in plaintext).
            let sealed = ServerConfig { limits: sealed_limits(&config.http), ..server.clone() };
            servers.push(tokio::spawn(serve(listener, svc, sealed, shutdown())));
        }
        if let (Some(_), Some(listener)) = (&config.egress, listeners.egress_http) {
            servers.push(tokio::spawn(serve(listener, EgressFront(runtime.clone()), server.clone(), shutdown())));
        }
        if let Some(listener) = listeners.admin {
            let admin = crate::admin::Admin::new(runtime.clone(), ready.clone(), metrics);
            // The admin endpoint answers small requests only.
            let admin_server = ServerConfig { drain_timeout: Duration::from_secs(1), ..server.clone() };
            servers.push(tokio::spawn(serve(listener, admin, admin_server, shutdown())));
        }
        let coap_addresses = coap.addresses();
        coap::spawn_servers(config, coap, &runtime, &mut servers, shutdown);
        runtime.mqtt.serve_ingress(&runtime, config.log.access)?;
        runtime.mqtt.serve_egress(&runtime, config)?;
        let pruning = runtime.clone();
        let pruner = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                every.tick().await;
                pruning.prune();
            }
        });
        ready.store(true, Ordering::Release);
        tracing::info!(
            node = %config.node.id,
            ingress = ?addresses.ingress_http,
            egress = ?addresses.egress_http,
            admin = ?addresses.admin,
            ingress_coap = ?coap_addresses.ingress,
            egress_coap = ?coap_addresses.egress,
            "sidecar started"
        );
        Ok(Self { runtime, addresses, coap_addresses, ready, stop, servers, pruner, store_listener })
    }

    /// The current node runtime (SA tables, SA Management).
    pub fn node(&self) -> Node {
        self.runtime.node()
    }

    /// What reloads the configuration ([`Runtime::reload`]).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Where it listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Where its CoAP listeners are (UDP).
    pub fn coap_addresses(&self) -> CoapAddresses {
        self.coap_addresses
    }

    /// Its MQTT connections (the `[ingress.mqtt]` broker's, those to `mqtt://` peers' brokers),
    /// by broker address.
    pub fn mqtt_endpoints(&self) -> Vec<(String, onem2m_sa_mqtt::Endpoint)> {
        self.runtime.mqtt.endpoints()
    }

    /// Waits until every MQTT connection is up and subscribed.
    pub async fn mqtt_ready(&self) {
        for (_, endpoint) in self.mqtt_endpoints() {
            endpoint.ready().await;
        }
    }

    /// Graceful shutdown: readiness goes down, listeners stop accepting, requests in flight are
    /// answered (up to the drain timeout), then the SA agents stop.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "listener ended with an error"),
                Err(e) => tracing::warn!(error = %e, "listener task failed"),
            }
        }
        self.pruner.abort();
        drop(self.store_listener);
        self.runtime.mqtt.shutdown().await;
        self.runtime.stop_agents();
        tracing::info!(node = %self.runtime.fixed.node, "sidecar stopped");
    }
}
