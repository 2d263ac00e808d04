//! The sidecar's CoAP binding (TS-0008 over UDP, [`onem2m_sa_coap`]) beside HTTP.
//!
//! * **`[ingress.coap]`** — secured primitives in over CoAP: the same [`ReceiveSecure`](onem2m_sa_tower::ReceiveSecure) service
//!   of the current generation as the HTTP ingress (and the earlier generations for the SAs they
//!   hold), with the datagram's source address as the transport source of the Responder's
//!   per-source flood defences ([`with_source`] with [`current_peer`]). The upstream stays
//!   HTTP: an SA carries the primitive, not the binding, so a peer speaking CoAP reaches a CSE
//!   that speaks HTTP.
//! * **`[egress.coap]`** — plaintext primitives in over CoAP from loopback (a constrained AE's
//!   requests), sealed by the same [`SendSecure`](onem2m_sa_tower::SendSecure) service as the
//!   HTTP egress and sent to the peer over whatever binding its address names.
//! * **`coap://` peers** — SA flows and secured requests to the peer go over a [`CoapClient`]:
//!   a POST (NOTIFY) of the secured primitive to the peer's sidecar: the compact form as the raw
//!   payload (Content-Format 65000) when the SA negotiated it, else the ESPrim JWE inside
//!   `m2m:seci` (docs/protocol.md §4.3, per-peer `secured_form`).
//!
//! Points of access mapped for notifications (`ingress.map_poa`) stay on the HTTP egress.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::task::{Context, Poll};

use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa_coap::block::BlockLimits;
use onem2m_sa_coap::{ClientConfig, CoapClient, Limits, ServerConfig, current_peer};
use onem2m_sa_http::BoxError;
use onem2m_sa_tower::{route_by_cse_id, with_source};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use super::{BoxFuture, Receive, Runtime, StartError};
use crate::access::{self, AccessLevel};
use crate::config::{CoapSettings, Config};

/// The sidecar's CoAP sockets (UDP), bound before it starts.
#[derive(Debug, Default)]
pub struct CoapSockets {
    /// The CoAP ingress (`[ingress.coap]`).
    pub ingress: Option<UdpSocket>,
    /// The CoAP egress (`[egress.coap]`).
    pub egress: Option<UdpSocket>,
}

/// Where a running sidecar's CoAP listeners are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoapAddresses {
    /// The CoAP ingress.
    pub ingress: Option<SocketAddr>,
    /// The CoAP egress.
    pub egress: Option<SocketAddr>,
}

impl CoapAddresses {
    /// The CoAP listen addresses `config` names.
    pub fn configured(config: &Config) -> Self {
        Self {
            ingress: config.ingress.as_ref().and_then(|i| i.coap.as_ref()).map(|l| l.listen),
            egress: config.egress.as_ref().and_then(|e| e.coap.as_ref()).map(|l| l.listen),
        }
    }
}

impl CoapSockets {
    /// Binds every CoAP listener the configuration names.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        async fn one(what: &'static str, addr: Option<SocketAddr>) -> Result<Option<UdpSocket>, StartError> {
            match addr {
                None => Ok(None),
                Some(addr) => {
                    UdpSocket::bind(addr).await.map(Some).map_err(|source| StartError::Bind { what, addr, source })
                }
            }
        }
        let wanted = CoapAddresses::configured(config);
        Ok(Self {
            ingress: one("ingress.coap", wanted.ingress).await?,
            egress: one("egress.coap", wanted.egress).await?,
        })
    }

    /// Where the sockets are bound.
    pub fn addresses(&self) -> CoapAddresses {
        let local = |s: &Option<UdpSocket>| s.as_ref().and_then(|s| s.local_addr().ok());
        CoapAddresses { ingress: local(&self.ingress), egress: local(&self.egress) }
    }
}

/// The server settings for the configured CoAP limits and timeouts, for the plaintext side (the
/// egress): payloads up to `coap.max_payload_bytes`.
pub fn server_config(coap: &CoapSettings) -> ServerConfig {
    server_config_for(coap, coap.max_payload_bytes)
}

/// The server settings for payloads up to `max_payload` bytes: block-wise reassembly takes a
/// body that large, and holds up to two of them per peer (a request's and an answer's blocks).
fn server_config_for(coap: &CoapSettings, max_payload: usize) -> ServerConfig {
    let d = BlockLimits::default();
    let blocks = BlockLimits {
        max_body_bytes: max_payload,
        max_peer_bytes: d.max_peer_bytes.max(max_payload.saturating_mul(2)),
        max_total_bytes: d.max_total_bytes.max(max_payload.saturating_mul(4)),
        ..d
    };
    ServerConfig {
        limits: Limits { max_payload_bytes: max_payload, ..Limits::default() },
        blocks,
        request_timeout: coap.request_timeout,
        drain_timeout: coap.drain_timeout,
        max_in_flight: coap.max_in_flight,
        max_exchanges_per_peer: coap.max_exchanges_per_peer,
        ..ServerConfig::default()
    }
}

/// The client settings for the configured CoAP limits and timeouts: answers up to
/// `coap.max_payload_bytes`.
pub fn client_config(coap: &CoapSettings) -> ClientConfig {
    ClientConfig {
        limits: Limits { max_payload_bytes: coap.max_payload_bytes, ..Limits::default() },
        request_timeout: coap.request_timeout,
        ..ClientConfig::default()
    }
}

/// The largest secured message between sidecars over CoAP: a primitive whose payload is at most
/// `coap.max_payload_bytes`, sealed ([`sealed_body_limit`](super::sealed_body_limit), as over HTTP).
fn sealed_payload_limit(coap: &CoapSettings) -> usize {
    super::sealed_body_limit(coap.max_payload_bytes)
}

/// A peer at a `coap://` address and the client to it.
#[derive(Debug, Clone)]
pub(super) struct CoapPeer {
    address: String,
    client: CoapClient,
}

impl CoapPeer {
    /// The configured address (`coap://host:port`).
    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// Sends a transport request (an SA message or a secured primitive) to the peer.
    pub(super) fn call(&self, req: RequestPrimitive) -> BoxFuture<ResponsePrimitive> {
        Box::pin(self.client.clone().oneshot(req))
    }
}

/// Clients for the peers at `coap://` addresses, each on a socket of its own. Must run inside
/// the tokio runtime. A host name is resolved once, here (blocking).
pub(super) fn peers(config: &Config) -> Result<HashMap<NodeId, CoapPeer>, StartError> {
    let mut out = HashMap::new();
    for (i, p) in config.peers.iter().enumerate().filter(|(_, p)| p.is_coap()) {
        let bad = |reason: String| StartError::Address { what: format!("peer[{i}].address"), reason };
        let authority = &p.address["coap://".len()..];
        let host_port = authority.replace(['[', ']'], "");
        let (host, port) = host_port.rsplit_once(':').ok_or_else(|| bad(format!("{} names no port", p.address)))?;
        let port: u16 = port.parse().map_err(|_| bad(format!("{} has an invalid port", p.address)))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("{host} does not resolve: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("{host} does not resolve")))?;
        let local: SocketAddr =
            if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = std::net::UdpSocket::bind(local)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std)
            .map_err(|e| bad(format!("cannot open a UDP socket: {e}")))?;
        let mut settings = client_config(&config.coap);
        settings.limits.max_payload_bytes = sealed_payload_limit(&config.coap);
        let client = CoapClient::with_socket(socket, addr, settings)
            .map_err(|e| bad(format!("cannot start the CoAP client: {e}")))?;
        out.insert(p.id.clone(), CoapPeer { address: p.address.clone(), client });
    }
    Ok(out)
}

/// Starts the CoAP ingress and egress servers on `sockets`.
pub(super) fn spawn_servers<F, Fut>(
    config: &Config,
    sockets: CoapSockets,
    runtime: &Runtime,
    servers: &mut Vec<JoinHandle<io::Result<()>>>,
    shutdown: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let server = server_config(&config.coap);
    let level = config.log.access;
    if let (Some(_), Some(socket)) = (&config.ingress, sockets.ingress) {
        // The ingress reads sealed messages: a third larger than what they carry.
        let sealed = server_config_for(&config.coap, sealed_payload_limit(&config.coap));
        let svc = CoapIngress(runtime.clone(), level);
        servers.push(tokio::spawn(onem2m_sa_coap::serve(socket, svc, sealed, shutdown())));
    }
    if let (Some(_), Some(socket)) = (&config.egress, sockets.egress) {
        let svc = CoapEgress(runtime.clone(), level);
        servers.push(tokio::spawn(onem2m_sa_coap::serve(socket, svc, server, shutdown())));
    }
}

/// The ingress service of the CoAP server, for the other bindings without an HTTP front (MQTT):
/// the datagram source is not known there, and is not used.
pub(super) fn ingress_service(
    runtime: Runtime,
    level: AccessLevel,
) -> impl Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError, Future = BoxFuture<ResponsePrimitive>>
+ Clone
+ Send
+ Sync
+ 'static {
    CoapIngress(runtime, level)
}

/// The egress service of the CoAP server, for the other bindings without an HTTP front (the
/// AEs' local MQTT broker).
pub(super) fn egress_service(
    runtime: Runtime,
    level: AccessLevel,
) -> impl Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError, Future = BoxFuture<ResponsePrimitive>>
+ Clone
+ Send
+ Sync
+ 'static {
    CoapEgress(runtime, level)
}

/// The CoAP ingress: the current generation answers; a request sealed under an SA an earlier
/// generation established (4112 from the current one) goes to those — as the HTTP ingress does.
#[derive(Clone)]
struct CoapIngress(Runtime, AccessLevel);

impl Service<RequestPrimitive> for CoapIngress {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = BoxFuture<ResponsePrimitive>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let req_seen = req.clone();
        let (current, previous): (Option<Receive>, Vec<Receive>) = {
            let g = self.0.read();
            let inner = |s: &super::IngressService| s.get_ref().clone();
            (
                g.current.ingress.as_ref().map(inner),
                g.previous_ingresses().filter_map(|p| p.ingress.as_ref().map(inner)).collect(),
            )
        };
        let handled = async move {
            let Some(current) = current else {
                return Ok(ResponsePrimitive::error(Rsc::NOT_FOUND, &req.rqi, "no ingress"));
            };
            if previous.is_empty() {
                return current.oneshot(req).await;
            }
            let answer = current.oneshot(req.clone()).await?;
            if answer.rsc != Rsc::ESPRIM_UNKNOWN_KEY_ID {
                return Ok(answer);
            }
            for earlier in previous {
                let again = earlier.oneshot(req.clone()).await?;
                if again.rsc != Rsc::ESPRIM_UNKNOWN_KEY_ID {
                    return Ok(again);
                }
            }
            Ok(answer)
        };
        // The datagram's source is the transport source of the Responder's flood defences.
        let handled: BoxFuture<ResponsePrimitive> = match current_peer() {
            Some(peer) => Box::pin(with_source(peer.ip(), handled)),
            None => Box::pin(handled),
        };
        let (seen, level) = (access::Seen::of_primitive(&req_seen), self.1);
        Box::pin(async move {
            let (out, forwarded) = access::scope(level, handled).await;
            if let Ok(rsp) = &out {
                access::ingress_primitive(level, &seen, rsp, forwarded);
            }
            out
        })
    }
}

/// The CoAP egress: plaintext primitives in, sealed to the peer the target names (over an
/// earlier generation's live SA with it if there is one, as the HTTP egress does).
#[derive(Clone)]
struct CoapEgress(Runtime, AccessLevel);

impl Service<RequestPrimitive> for CoapEgress {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = BoxFuture<ResponsePrimitive>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let seen = access::Seen::of_primitive(&req);
        let chosen = {
            let g = self.0.read();
            g.current.egress.as_ref().map(|current| {
                let peer = route_by_cse_id(current.default_peer.clone())(&req).filter(|p| current.peers.knows(p));
                let earlier = peer
                    .as_ref()
                    .and_then(|p| g.previous.iter().find(|e| e.has_live_outbound(p)).and_then(|e| e.egress.clone()));
                let egress = earlier.as_ref().unwrap_or(current);
                (egress.routed.get_ref().clone(), egress.node.clone(), peer)
            })
        };
        let Some((send, node, peer)) = chosen else {
            let rsp = ResponsePrimitive::error(Rsc::NOT_FOUND, &req.rqi, "no egress");
            return Box::pin(std::future::ready(Ok(rsp)));
        };
        let level = self.1;
        Box::pin(async move {
            let rqi = req.rqi.clone();
            let rsp = match send.oneshot(req).await {
                Ok(rsp) => rsp,
                Err(e) => peer_failure(&*e, &rqi),
            };
            let live = |p: &NodeId| node.outbound().by_peer(p).into_iter().find(|e| e.is_active());
            let sa = peer.as_ref().and_then(live).map(|e| e.sa_id().to_string());
            access::egress_primitive(level, &seen, &rsp, peer.as_ref(), sa);
            Ok(rsp)
        })
    }
}

/// The answer to a request whose exchange with the peer failed at the transport.
fn peer_failure(e: &(dyn std::error::Error + Send + Sync + 'static), rqi: &str) -> ResponsePrimitive {
    let rsc = if let Some(c) = e.downcast_ref::<onem2m_sa_coap::ClientError>() {
        c.rsc()
    } else if let Some(c) = e.downcast_ref::<onem2m_sa_http::ClientError>() {
        c.rsc()
    } else if let Some(c) = e.downcast_ref::<onem2m_sa_mqtt::ClientError>() {
        c.rsc()
    } else {
        Rsc::INTERNAL_SERVER_ERROR
    };
    tracing::warn!(%rqi, %rsc, error = %e, "egress (CoAP): the exchange with the peer failed");
    ResponsePrimitive::error(rsc, rqi, format!("the exchange with the peer failed: {e}"))
}
