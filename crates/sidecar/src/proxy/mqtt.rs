//! The sidecar's MQTT binding (TS-0010 through a broker, [`onem2m_sa_mqtt`]) beside HTTP and CoAP.
//!
//! * **`[ingress.mqtt]`** — secured primitives in through the broker: the node subscribes to
//!   `/oneM2M/req/+/<node>/+` (the node ID as a topic ID) and hands each request to the same
//!   service as the CoAP ingress (the current generation's [`ReceiveSecure`], the earlier ones
//!   for the SAs they hold); the answer goes out on the matching `resp` topic. The upstream stays
//!   HTTP.
//! * **`mqtt://` peers** — SA flows and secured requests to the peer are published on
//!   `/oneM2M/req/<node>/<peer>/json` at the peer's broker: the outer NOTIFY carrying the
//!   secured primitive, so the broker sees topic IDs, sizes and timing, never the content.
//!   `[egress.mqtt]` holds the client ID and credentials for those brokers; a peer at the
//!   ingress's broker shares its connection.
//!
//! One connection per broker for the sidecar's lifetime: a reload that names a new broker
//! connects to it; `[ingress.mqtt]` itself only changes with a restart.
//!
//! [`ReceiveSecure`]: onem2m_sa_tower::ReceiveSecure

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use onem2m_primitive::{RequestPrimitive, ResponsePrimitive};
use onem2m_sa::credential::NodeId;
use onem2m_sa_mqtt::rumqttc::{MqttOptions, TlsConfiguration, Transport};
use onem2m_sa_mqtt::{Endpoint, EndpointConfig, Limits, MqttClient, encode_id};
use tower::ServiceExt;

use super::{BoxFuture, Runtime, StartError, sealed_body_limit};
use crate::access::AccessLevel;
use crate::config::{Config, MqttSettings};

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
            limits: Limits { max_payload_bytes: sealed_body_limit(config.http.max_body_bytes), ..Limits::default() },
            request_timeout: config.http.request_timeout,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// The connection to the broker at `address`: the ingress's (which also serves requests)
    /// when it is that broker.
    fn endpoint(&self, address: &str, what: &str) -> Result<Endpoint, StartError> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = endpoints.get(address) {
            return Ok(e.clone());
        }
        let bad = |reason: String| StartError::Address { what: what.to_owned(), reason };
        let broker = Broker::parse(address).ok_or_else(|| bad(format!("{address} is not an MQTT address")))?;
        let ingress = self.ingress.as_ref().filter(|i| i.broker.as_deref() == Some(address));
        let settings = ingress.or(self.egress.as_ref());
        let mut config = EndpointConfig::new(self.me.clone());
        config.prefix = broker.prefix.clone();
        config.limits = self.limits;
        config.request_timeout = self.request_timeout;
        config.serve_timeout = self.request_timeout;
        config.serve_requests = ingress.is_some() && self.suffix.is_empty();
        let client_id = settings.and_then(|s| s.client_id.clone()).unwrap_or_else(|| format!("C::{}", self.me));
        let mut options: MqttOptions =
            config.options(&format!("{client_id}{}", self.suffix), &broker.host, broker.port);
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
}
