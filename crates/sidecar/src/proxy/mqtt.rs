//! The sidecar's MQTT binding (TS-0010 through a broker, [`onem2m_sa_mqtt`]) beside HTTP and CoAP.
//!
//! * **`[ingress.mqtt]`** — secured primitives in through the broker: the node subscribes to
//!   `/oneM2M/req/+/<node>/+` (the node ID as a topic ID) and hands each request to the same
//!   service as the CoAP ingress (the current generation's [`ReceiveSecure`], the earlier ones
//!   for the SAs they hold); the answer goes out on the matching `resp` topic. The upstream is
//!   HTTP (or the local broker, below).
//! * **`mqtt://` peers** — SA flows and secured requests to the peer are published on
//!   `/oneM2M/req/<node>/<peer>/json` at the peer's broker: the outer NOTIFY carrying the
//!   secured primitive, so the broker sees topic IDs, sizes and timing, never the content.
//!   `[egress.mqtt]` holds the client ID and credentials for those brokers; a peer at the
//!   ingress's broker shares its connection.
//! * **`[egress.mqtt] listen_broker`** — plaintext primitives in from MQTT-only AEs through
//!   their local broker: the node subscribes there to the requests addressed to its peers
//!   (`/oneM2M/req/+/<peer>/+`, `reg_req` too, each peer's ID as a topic ID) and hands each to
//!   the same egress service as the CoAP egress (routing by CSE-ID, sealing, the peer over any
//!   binding); the answer goes out on the matching `resp` topic. The endpoint's limits are the
//!   plaintext ones (`http.max_body_bytes`): a larger request is answered 4000 (its `rqi`
//!   found without decoding it); a redelivered duplicate is answered again, never sent twice.
//! * **an `mqtt://` `ingress.upstream`** — the same local broker the other way: what the ingress
//!   opens for an MQTT-only AE (a CSE's notification) is published on
//!   `/oneM2M/req/<peer>/<AE-ID>/json`, the peer the SA authenticated as the originator, and its
//!   answer awaited on the `resp` topic ([`MqttUpstream`]).
//!
//! One connection per broker for the sidecar's lifetime: a reload that names a new broker
//! connects to it; `[ingress.mqtt]` itself only changes with a restart.
//!
//! [`ReceiveSecure`]: onem2m_sa_tower::ReceiveSecure

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa_http::BoxError;
use onem2m_sa_mqtt::rumqttc::{MqttOptions, TlsConfiguration, Transport};
use onem2m_sa_mqtt::{Endpoint, EndpointConfig, Limits, MqttClient, current_receiver, encode_id};
use tower::ServiceExt;

use super::{BoxFuture, Runtime, StartError, sealed_body_limit};
use crate::access::AccessLevel;
use crate::config::{Config, MqttSettings, is_mqtt_address};

/// A broker's address, split: host, port, TLS, topic prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broker {
    host: String,
    port: u16,
    tls: bool,
    prefix: String,
}

impl Broker {
    /// Parses a normalized `mqtt[s]://host:port[/path]` (see the configuration).
    fn parse(address: &str) -> Option<Self> {
        let (tls, rest) = if let Some(r) = address.strip_prefix("mqtts://") {
            (true, r)
        } else {
            (false, address.strip_prefix("mqtt://")?)
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, String::new()),
        };
        let (host, port) = authority.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Some(Self { host, port: port.parse().ok()?, tls, prefix })
    }
}

/// The sidecar's MQTT connections, one per broker, made when first needed.
pub(super) struct MqttBrokers {
    /// The node ID as a topic ID.
    me: String,
    ingress: Option<MqttSettings>,
    egress: Option<MqttSettings>,
    /// The largest plaintext primitive (`http.max_body_bytes`), for the AEs' local broker.
    plaintext_limit: usize,
    /// The AEs' local broker for their requests (`[egress.mqtt] listen_broker`).
    listen_broker: Option<String>,
    /// The AEs' local broker for the requests to them (an `mqtt://` `ingress.upstream`).
    upstream: Option<String>,
    /// The peers, by topic ID (the receivers of the AEs' requests, the originators of the
    /// requests to them).
    peers: Arc<HashMap<String, NodeId>>,
    /// Appended to the client IDs (a probe must not take over the running sidecar's sessions).
    suffix: &'static str,
    limits: Limits,
    request_timeout: std::time::Duration,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl std::fmt::Debug for MqttBrokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttBrokers").field("me", &self.me).finish_non_exhaustive()
    }
}

impl MqttBrokers {
    /// The connections of a sidecar configured with `config` (`suffix` "" for the sidecar).
    pub(super) fn new(config: &Config, suffix: &'static str) -> Result<Self, StartError> {
        let me = encode_id(config.node.id.as_str()).map_err(|e| StartError::Address {
            what: "node.id".into(),
            reason: format!("not usable in MQTT topics: {e}"),
        })?;
        Ok(Self {
            me,
            ingress: config.ingress.as_ref().and_then(|i| i.mqtt.clone()),
            egress: config.egress.as_ref().and_then(|e| e.mqtt.clone()),
            suffix,
            plaintext_limit: config.http.max_body_bytes,
            listen_broker: config.egress.as_ref().and_then(|e| e.mqtt.as_ref()).and_then(|m| m.listen_broker.clone()),
            upstream: config.ingress.as_ref().map(|i| i.upstream.clone()).filter(|u| is_mqtt_address(u)),
            // An ID that is no topic ID cannot be reached through topics (and is refused where
            // a peer at an mqtt:// address is built).
            peers: Arc::new(
                config.peers.iter().filter_map(|p| Some((encode_id(p.id.as_str()).ok()?, p.id.clone()))).collect(),
            ),
            limits: Limits { max_payload_bytes: sealed_body_limit(config.http.max_body_bytes), ..Limits::default() },
            request_timeout: config.http.request_timeout,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// The connection to the broker at `address`: the ingress's (which also serves requests)
    /// when it is that broker.
    fn endpoint(&self, address: &str, what: &str) -> Result<Endpoint, StartError> {
        let ingress = self.ingress.as_ref().filter(|i| i.broker.as_deref() == Some(address));
        let serve_requests = ingress.is_some() && self.suffix.is_empty();
        self.connect(address, what, ingress.or(self.egress.as_ref()), |config| config.serve_requests = serve_requests)
    }

    /// The connection to the broker at `address` (made once, then shared), with `settings`'
    /// client ID and credentials, the sealed limits, and what `tweak` changes.
    fn connect(
        &self,
        address: &str,
        what: &str,
        settings: Option<&MqttSettings>,
        tweak: impl FnOnce(&mut EndpointConfig),
    ) -> Result<Endpoint, StartError> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = endpoints.get(address) {
            return Ok(e.clone());
        }
        let bad = |reason: String| StartError::Address { what: what.to_owned(), reason };
        let broker = Broker::parse(address).ok_or_else(|| bad(format!("{address} is not an MQTT address")))?;
        let mut config = EndpointConfig::new(self.me.clone());
        config.prefix = broker.prefix.clone();
        config.limits = self.limits;
        config.request_timeout = self.request_timeout;
        config.serve_timeout = self.request_timeout;
        // A packet up to the sealed limit is read (and refused with an answer if it is larger
        // than the endpoint's own limit) rather than dropping the connection.
        let packet_limit = self.limits.max_payload_bytes.saturating_add(8 * 1024);
        tweak(&mut config);
        let client_id = settings.and_then(|s| s.client_id.clone()).unwrap_or_else(|| format!("C::{}", self.me));
        let mut options: MqttOptions =
            config.options(&format!("{client_id}{}", self.suffix), &broker.host, broker.port);
        options.set_max_packet_size(packet_limit, packet_limit);
        if let Some(s) = settings.filter(|s| s.username.is_some()) {
            options.set_credentials(s.username.clone().unwrap_or_default(), s.password.clone().unwrap_or_default());
        }
        if broker.tls {
            let transport = match settings.and_then(|s| s.ca_file.as_ref()) {
                Some(ca) => {
                    let pem = std::fs::read(ca).map_err(|e| bad(format!("{}: {e}", ca.display())))?;
                    Transport::tls_with_config(TlsConfiguration::Simple { ca: pem, alpn: None, client_auth: None })
                }
                None => Transport::tls_with_default_config(),
            };
            options.set_transport(transport);
        }
        let endpoint = Endpoint::start(options, config);
        endpoints.insert(address.to_owned(), endpoint.clone());
        Ok(endpoint)
    }

    /// Clients for the peers at `mqtt://` addresses.
    pub(super) fn peers(&self, config: &Config) -> Result<HashMap<NodeId, MqttPeer>, StartError> {
        let mut out = HashMap::new();
        for (i, p) in config.peers.iter().enumerate().filter(|(_, p)| p.is_mqtt()) {
            let what = format!("peer[{i}].address");
            let receiver = encode_id(p.id.as_str())
                .map_err(|e| StartError::Address { what: what.clone(), reason: format!("{}: {e}", p.id) })?;
            let endpoint = self.endpoint(&p.address, &what)?;
            out.insert(p.id.clone(), MqttPeer { address: p.address.clone(), client: endpoint.client(receiver) });
        }
        Ok(out)
    }

    /// Connects to the ingress's broker and serves the requests to this node from it.
    pub(super) fn serve_ingress(&self, runtime: &Runtime, level: AccessLevel) -> Result<(), StartError> {
        let Some(address) = self.ingress.as_ref().and_then(|i| i.broker.clone()) else { return Ok(()) };
        let endpoint = self.endpoint(&address, "ingress.mqtt.broker")?;
        endpoint.serve(super::coap::ingress_service(runtime.clone(), level));
        Ok(())
    }

    /// The connection to the AEs' local broker at `address` (`listen_broker`, an `mqtt://`
    /// upstream, or both): the plaintext limits; requests to the peers served when it is the
    /// `listen_broker`; answers to the peers awaited when it is the upstream.
    fn local(&self, address: &str, what: &str) -> Result<Endpoint, StartError> {
        let plaintext = Limits { max_payload_bytes: self.plaintext_limit, ..self.limits };
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        let serve = self.listen_broker.as_deref() == Some(address);
        let upstream = self.upstream.as_deref() == Some(address);
        self.connect(address, what, self.egress.as_ref(), |c| {
            c.serve_requests = false;
            c.limits = plaintext;
            if serve {
                c.serve_for = peers.clone();
            }
            if upstream {
                c.answers_for = peers;
            }
        })
    }

    /// Connects to the AEs' local broker (`[egress.mqtt] listen_broker`) and serves their
    /// requests to the peers from it, with the egress service of the CoAP egress.
    pub(super) fn serve_egress(&self, runtime: &Runtime, config: &Config) -> Result<(), StartError> {
        let Some(address) = self.listen_broker.clone() else { return Ok(()) };
        let endpoint = self.local(&address, "egress.mqtt.listen_broker")?;
        let egress = super::coap::egress_service(runtime.clone(), config.log.access);
        endpoint.serve(AeRequests { egress, peers: self.peers.clone() });
        Ok(())
    }

    /// The ingress's upstream when it is the AEs' local broker (an `mqtt://` `ingress.upstream`).
    pub(super) fn upstream(&self) -> Result<Option<MqttUpstream>, StartError> {
        let Some(address) = self.upstream.clone() else { return Ok(None) };
        let endpoint = self.local(&address, "ingress.upstream")?;
        Ok(Some(MqttUpstream { address, endpoint, me: self.me.clone() }))
    }

    /// Disconnects from every broker and forgets the connections (their services hold the
    /// runtime, which holds this: without it they would outlive the sidecar).
    pub(super) async fn shutdown(&self) {
        let endpoints: Vec<Endpoint> =
            self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, e)| e).collect();
        for endpoint in endpoints {
            endpoint.shutdown().await;
        }
    }

    /// The connections open now, by broker address.
    pub(super) fn endpoints(&self) -> Vec<(String, Endpoint)> {
        let endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        endpoints.iter().map(|(a, e)| (a.clone(), e.clone())).collect()
    }
}

/// A peer at an `mqtt://` address and the client to it.
#[derive(Debug, Clone)]
pub(super) struct MqttPeer {
    address: String,
    client: MqttClient,
}

impl MqttPeer {
    /// The configured address (`mqtt://host:port[/path]`).
    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// Sends a transport request (an SA message or a secured primitive) to the peer. Failures
    /// are [`onem2m_sa_mqtt::ClientError`]s (boxed), which name the RSC to answer with.
    pub(super) fn call(&self, req: RequestPrimitive) -> BoxFuture<ResponsePrimitive> {
        Box::pin(self.client.clone().oneshot(req))
    }
}

/// The egress service for requests from the AEs' local broker: a CSE-relative target
/// (`cse-in/…`, TS-0010's usual request from an AE to its registrar) is made SP-relative with
/// the CSE-ID the topic named (`/id-in/cse-in/…`), so that it reaches that peer.
#[derive(Clone)]
struct AeRequests<S> {
    egress: S,
    /// The peers by topic ID.
    peers: Arc<HashMap<String, NodeId>>,
}

/// The ingress's upstream on the AEs' local broker: a request for an AE (a CSE's notification)
/// is published on `/oneM2M/req/<peer>/<AE-ID>/json` — the peer the SA authenticated as the
/// originator, as TS-0010 has a CSE address its AEs — and its answer awaited on the `resp` topic.
#[derive(Debug, Clone)]
pub(super) struct MqttUpstream {
    address: String,
    endpoint: Endpoint,
    /// This node's topic ID: the originator of what came without an SA.
    me: String,
}

impl MqttUpstream {
    /// The broker's address.
    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// Publishes `req` for the AE its target names (`Cae`, `/id-in/Cae/…`, `//sp/id-in/Cae/…`:
    /// the AE-ID is the first level after the CSE-ID), as `peer`. Failures are
    /// [`onem2m_sa_mqtt::ClientError`]s (boxed); a target naming no AE is answered 4004.
    pub(super) fn call(&self, req: RequestPrimitive, peer: Option<&NodeId>) -> BoxFuture<ResponsePrimitive> {
        let Some(receiver) = ae_topic_id(&req.to) else {
            let rsp = ResponsePrimitive::error(Rsc::NOT_FOUND, &req.rqi, "the target names no AE on the local broker");
            return Box::pin(std::future::ready(Ok(rsp)));
        };
        let originator = peer.and_then(|p| encode_id(p.as_str()).ok()).unwrap_or_else(|| self.me.clone());
        Box::pin(self.endpoint.client_as(originator, receiver).oneshot(req))
    }
}

/// The topic ID of the AE a target names: its first level after the CSE-ID (SP-relative and
/// absolute targets) or its first level (CSE-relative), `None` when that is no AE-ID (an AE-ID
/// starts with `C` or `S`, TS-0001 §7.2).
fn ae_topic_id(to: &str) -> Option<String> {
    let rest = if let Some(r) = to.strip_prefix("//") {
        r.splitn(3, '/').nth(2)?
    } else if let Some(r) = to.strip_prefix('/') {
        r.split_once('/')?.1
    } else {
        to
    };
    let ae = rest.split('/').next().filter(|a| a.starts_with(['C', 'S']))?;
    encode_id(ae).ok()
}

impl<S> tower::Service<RequestPrimitive> for AeRequests<S>
where
    S: tower::Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = BoxFuture<ResponsePrimitive>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.egress.poll_ready(cx)
    }

    fn call(&mut self, mut req: RequestPrimitive) -> Self::Future {
        if !req.to.starts_with('/') {
            let peer = current_receiver().and_then(|r| self.peers.get(&r));
            // Only a CSE-ID (`/id-in`) prefixes a CSE-relative target.
            if let Some(cse) =
                peer.map(NodeId::as_str).filter(|c| c.len() > 1 && c.starts_with('/') && !c[1..].contains('/'))
            {
                req.to = format!("{cse}/{}", req.to);
            }
        }
        Box::pin(self.egress.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::Broker;

    #[test]
    fn broker_addresses_split() {
        let b = Broker::parse("mqtt://127.0.0.1:1883").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls, b.prefix.as_str()), ("127.0.0.1", 1883, false, ""));
        let b = Broker::parse("mqtts://[::1]:8883/site/a").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls, b.prefix.as_str()), ("::1", 8883, true, "/site/a"));
        assert!(Broker::parse("coap://x:1").is_none());
    }

    #[test]
    fn the_ae_a_target_names_is_its_receiver() {
        use super::ae_topic_id;
        assert_eq!(ae_topic_id("Cae1").as_deref(), Some("Cae1"));
        assert_eq!(ae_topic_id("/id-ae-host/Cae1").as_deref(), Some("Cae1"));
        assert_eq!(ae_topic_id("/id-in/Smeter/cnt").as_deref(), Some("Smeter"));
        assert_eq!(ae_topic_id("//sp.org/id-in/Cae1").as_deref(), Some("Cae1"));
        for none in ["/id-in", "/id-in/cse-base", "cse-base/x", "//sp.org/id-in"] {
            assert_eq!(ae_topic_id(none), None, "{none}");
        }
    }
}
