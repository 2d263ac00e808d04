//! `onem2m-sa demo`: everything on loopback with no setup.
//!
//! A trust anchor and two nodes' keys and tickets are made on the fly; a demo CSE (`/id-in`)
//! runs behind a CSE-side sidecar, and a demo AE's host (`/id-ae-host`) has an AE-side sidecar
//! with the AE's notification listener behind it. A plain HTTP client (the AE) runs a CRUD
//! workload through the AE-side egress; the CSE's notifications come back over an SA in the
//! other direction. Two relays watch the wire: one on the plaintext hop (AE → its sidecar), one
//! on the secured hop (sidecar → sidecar).
//!
//! The same workload runs over CoAP too: a constrained AE host (`/id-ae-coap`) whose sidecar
//! takes plaintext CoAP on its `[egress.coap]` and reaches the CSE-side sidecar's
//! `[ingress.coap]` at a `coap://` address; the CSE stays HTTP behind it (binding bridging).
//! Two counting UDP relays give the bytes on the air per CoAP message beside the HTTP figures.
//!
//! And over MQTT: an MQTT broker runs in-process (`onem2m_sa_mqtt::broker`), the CSE-side
//! sidecar takes secured requests from it (`[ingress.mqtt]`), and a third AE host (`/id-ae-mqtt`)
//! reaches the CSE at an `mqtt://` address; the broker's view of every message gives the bytes
//! per secured MQTT message, and shows the broker never sees the content.
//!
//! The pieces ([`DemoPki`], the config builders, [`Topology`]) are public: the integration
//! tests build the same topology.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::{AuthorizationContext, Credentials, NodeId, OriginatorPattern, Ticket, TrustAnchors};
use onem2m_sa::crypto::{SignatureAlgorithm, SigningKey, Suite};
use onem2m_sa::rng::SystemRng;
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{NotificationReceiver, ServedCse, serve_demo_cse, serve_receiver};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_tower::{PlaintextPolicy, SecuredForm};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower::util::BoxCloneService;

use crate::config::{
    CoapSettings, Config, Egress, HttpSettings, Ingress, Listener, LogSettings, NodeSettings, Peer, SaSettings,
};
use crate::proxy::{Listeners, Sidecar};
use crate::tap::{self, Tap};
use crate::udp_tap::UdpTap;

/// The CSE's node ID.
pub const CSE_ID: &str = "/id-in";
/// The CSEBase's name.
pub const CSE_BASE: &str = "cse-base";
/// The AE host's node ID.
pub const AE_NODE: &str = "/id-ae-host";
/// The demo AE's AE-ID.
pub const AE_ID: &str = "Cdemo-ae";
/// The constrained AE host's node ID (it speaks CoAP).
pub const COAP_AE_NODE: &str = "/id-ae-coap";
/// The AE-ID of the demo AE on CoAP.
pub const COAP_AE_ID: &str = "Cdemo-coap";
/// The AE host whose sidecar reaches the CSE through the MQTT broker.
pub const MQTT_AE_NODE: &str = "/id-ae-mqtt";
/// The AE-ID of the AE behind it.
pub const MQTT_AE_ID: &str = "Cdemo-mqtt";
/// The CSE node's ticket (README, `docs/deploy.md` §1): its own CSE-ID, and the originators it
/// relays under it (`/id-in/Cxyz`, which a CSE puts on requests it retargets to an AE).
pub const CSE_ALLOW: &[&str] = &[CSE_ID, "/id-in/*"];
/// The AE host's ticket: its node ID, AE-IDs the CSE assigns or the AEs choose (`C*`, `S*`),
/// and registration without an originator (`""`); `CAdmin` is excepted from the wildcards.
pub const AE_HOST_ALLOW: &[&str] = &[AE_NODE, "C*", "S*", ""];

/// A trust anchor made on the fly, issuing tickets.
pub struct DemoPki {
    anchor_id: NodeId,
    anchor_key: SigningKey,
    anchors: Arc<TrustAnchors>,
}

impl std::fmt::Debug for DemoPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoPki").field("anchor", &self.anchor_id).finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl DemoPki {
    /// A new anchor `/demo-anchor` with a fresh Ed25519 key.
    pub fn new() -> Self {
        let anchor_id = NodeId::new("/demo-anchor").expect("valid id");
        let anchor_key = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut SystemRng).expect("keygen");
        let mut anchors = TrustAnchors::new();
        anchors.add(anchor_id.clone(), anchor_key.algorithm(), anchor_key.public_key().to_vec());
        Self { anchor_id, anchor_key, anchors: Arc::new(anchors) }
    }

    /// The trust anchors holding this anchor.
    pub fn anchors(&self) -> Arc<TrustAnchors> {
        self.anchors.clone()
    }

    /// A fresh key and a day-long ticket for `id`, allowing `originators` as `ticket issue
    /// --allow` does (the CSE administrator excepted from wildcards).
    pub fn credentials(&self, id: &str, originators: &[&str]) -> Arc<Credentials> {
        let node_id = NodeId::new(id).expect("valid id");
        let key = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut SystemRng).expect("keygen");
        let allow: Vec<OriginatorPattern> = originators.iter().map(|o| o.parse().expect("pattern")).collect();
        let context = AuthorizationContext {
            description: Some("onem2m-sa demo".into()),
            ..crate::keys::authorization_context(&allow, &[])
        };
        let now = unix_now();
        let ticket = Ticket::issue(
            &self.anchor_id,
            &self.anchor_key,
            node_id.clone(),
            (key.algorithm(), key.public_key().to_vec()),
            context,
            now.saturating_sub(300),
            now + 86_400,
        )
        .expect("issue");
        Arc::new(Credentials::new(node_id, key, ticket).expect("matching key and ticket"))
    }

    /// The node settings of `id` under this anchor, with every suite.
    pub fn node(&self, id: &str, originators: &[&str]) -> NodeSettings {
        NodeSettings {
            id: NodeId::new(id).expect("valid id"),
            credentials: self.credentials(id, originators),
            trust_anchors: self.anchors(),
            suites: Suite::ALL.to_vec(),
        }
    }
}

impl Default for DemoPki {
    fn default() -> Self {
        Self::new()
    }
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A config with only the node section filled in: no listeners, no peers, default limits.
pub fn base_config(node: NodeSettings) -> Config {
    Config {
        path: "<demo>".into(),
        node,
        ingress: None,
        egress: None,
        peers: Vec::new(),
        admin: None,
        log: LogSettings::default(),
        http: HttpSettings::default(),
        coap: CoapSettings::default(),
        sa: SaSettings::default(),
        store: Default::default(),
        warnings: Vec::new(),
    }
}

/// The CSE host's sidecar: ingress in front of the CSE at `upstream` (every request must come
/// over an SA), egress for the CSE's notifications to the AE host at `ae_ingress`.
pub fn cse_sidecar_config(pki: &DemoPki, upstream: &str, ae_ingress: SocketAddr) -> Config {
    let mut c = base_config(pki.node(CSE_ID, CSE_ALLOW));
    c.ingress = Some(Ingress {
        upstream: upstream.to_owned(),
        plaintext: PlaintextPolicy::default(),
        map_poa: true,
        http: Some(Listener { listen: loopback_any() }),
        coap: None,
        mqtt: None,
    });
    c.egress =
        Some(Egress { default_peer: None, http: Some(Listener { listen: loopback_any() }), coap: None, mqtt: None });
    c.peers = vec![Peer {
        id: NodeId::new(AE_NODE).expect("id"),
        address: format!("http://{ae_ingress}"),
        outer: Default::default(),
        secured_form: Default::default(),
    }];
    c
}

/// The AE host's sidecar: egress for the AE's requests to the CSE at `cse_ingress`, ingress in
/// front of the AE's notification listener at `listener`.
pub fn ae_sidecar_config(pki: &DemoPki, cse_ingress: SocketAddr, listener: &str) -> Config {
    let mut c = base_config(pki.node(AE_NODE, AE_HOST_ALLOW));
    c.ingress = Some(Ingress {
        upstream: listener.to_owned(),
        plaintext: PlaintextPolicy::default(),
        map_poa: false,
        http: Some(Listener { listen: loopback_any() }),
        coap: None,
        mqtt: None,
    });
    let cse = NodeId::new(CSE_ID).expect("id");
    c.egress = Some(Egress {
        default_peer: Some(cse.clone()),
        http: Some(Listener { listen: loopback_any() }),
        coap: None,
        mqtt: None,
    });
    c.peers = vec![Peer {
        id: cse,
        address: format!("http://{cse_ingress}"),
        outer: Default::default(),
        secured_form: Default::default(),
    }];
    c
}

/// Binds a loopback listener on a free port.
pub async fn loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind(loopback_any()).await
}

/// The whole demo on loopback.
pub struct Topology {
    /// The trust anchor.
    pub pki: DemoPki,
    /// The demo CSE on HTTP.
    pub cse: ServedCse,
    /// The AE's notification listener.
    pub receiver: NotificationReceiver,
    /// The CSE host's sidecar.
    pub cse_sidecar: Sidecar,
    /// The AE host's sidecar.
    pub ae_sidecar: Sidecar,
    /// The plaintext hop: AE → AE-side egress.
    pub plain_tap: Tap,
    /// The secured hop: AE-side sidecar → CSE-side ingress.
    pub secured_tap: Tap,
    /// The constrained AE host's sidecar: CoAP egress, the CSE at a `coap://` address.
    pub coap_sidecar: Sidecar,
    /// The plaintext CoAP hop: AE → the CoAP egress.
    pub coap_plain_tap: UdpTap,
    /// The secured CoAP hop: the CoAP host's sidecar → the CSE-side CoAP ingress.
    pub coap_secured_tap: UdpTap,
    /// The MQTT broker (in-process) between the MQTT AE host's sidecar and the CSE-side one.
    pub broker: onem2m_sa_mqtt::broker::Broker,
    /// The MQTT AE host's sidecar: HTTP egress, the CSE at an `mqtt://` address.
    pub mqtt_sidecar: Sidecar,
}

/// The MQTT AE host's sidecar: an HTTP egress for its AE, the CSE at `mqtt://<broker>` (SA
/// flows and secured requests go through the broker).
pub fn mqtt_ae_sidecar_config(pki: &DemoPki, broker: SocketAddr) -> Config {
    let mut c = base_config(pki.node(MQTT_AE_NODE, &[MQTT_AE_NODE, "C*", "S*", ""]));
    let cse = NodeId::new(CSE_ID).expect("id");
    c.egress = Some(Egress {
        default_peer: Some(cse.clone()),
        http: Some(Listener { listen: loopback_any() }),
        coap: None,
        mqtt: None,
    });
    c.peers = vec![Peer {
        id: cse,
        address: format!("mqtt://{broker}"),
        outer: Default::default(),
        secured_form: Default::default(),
    }];
    c
}

/// The constrained AE host's sidecar: a CoAP egress (and no ingress: its AE takes no
/// notifications) for the AE's requests to the CSE at `cse_coap_ingress` over CoAP.
pub fn coap_ae_sidecar_config(pki: &DemoPki, cse_coap_ingress: SocketAddr) -> Config {
    let mut c = base_config(pki.node(COAP_AE_NODE, &[COAP_AE_NODE, "C*", "S*", ""]));
    let cse = NodeId::new(CSE_ID).expect("id");
    c.egress = Some(Egress {
        default_peer: Some(cse.clone()),
        http: None,
        coap: Some(Listener { listen: loopback_any() }),
        mqtt: None,
    });
    c.peers = vec![Peer {
        id: cse,
        address: format!("coap://{cse_coap_ingress}"),
        outer: Default::default(),
        secured_form: Default::default(),
    }];
    c
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology").field("cse", &self.cse.addr).finish_non_exhaustive()
    }
}

impl Topology {
    /// Starts the demo CSE, the notification listener, both sidecars and the two relays.
    pub async fn start(metrics: Option<crate::admin::MetricsRender>) -> Result<Self, Box<dyn std::error::Error>> {
        let pki = DemoPki::new();
        let cse = serve_demo_cse(loopback().await?, DemoCse::new(CSE_ID, CSE_BASE)).await?;
        let receiver = serve_receiver(loopback().await?).await?;

        // Bind both sidecars' sockets first: each config names the other's address.
        let (cse_in, cse_out) = (loopback().await?, loopback().await?);
        let (ae_in, ae_out) = (loopback().await?, loopback().await?);
        let secured_tap = Tap::start(loopback().await?, cse_in.local_addr()?)?;
        let plain_tap = Tap::start(loopback().await?, ae_out.local_addr()?)?;

        let broker =
            onem2m_sa_mqtt::broker::Broker::start(loopback_any(), onem2m_sa_mqtt::broker::BrokerConfig::default())
                .await?;
        let mut cse_config = cse_sidecar_config(&pki, &cse.base(), ae_in.local_addr()?);
        if let Some(ingress) = cse_config.ingress.as_mut() {
            ingress.coap = Some(Listener { listen: loopback_any() });
            ingress.mqtt = Some(crate::config::MqttSettings {
                broker: Some(format!("mqtt://{}", broker.local_addr())),
                client_id: None,
                username: None,
                password: None,
                ca_file: None,
                listen_broker: None,
            });
        }
        let ae_config = ae_sidecar_config(&pki, secured_tap.addr(), &format!("http://{}", receiver.addr));
        let cse_sidecar = Sidecar::start(
            &cse_config,
            Listeners { ingress_http: Some(cse_in), egress_http: Some(cse_out), admin: None },
            metrics.clone(),
        )
        .await?;
        let ae_sidecar = Sidecar::start(
            &ae_config,
            Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None },
            metrics.clone(),
        )
        .await?;
        let cse_coap = cse_sidecar.coap_addresses().ingress.ok_or("the CSE-side CoAP ingress is not listening")?;
        let coap_secured_tap = UdpTap::loopback(cse_coap).await?;
        let coap_sidecar = Sidecar::start(
            &coap_ae_sidecar_config(&pki, coap_secured_tap.addr()),
            Listeners::default(),
            metrics.clone(),
        )
        .await?;
        let mqtt_sidecar = Sidecar::start(
            &mqtt_ae_sidecar_config(&pki, broker.local_addr()),
            Listeners { egress_http: Some(loopback().await?), ..Listeners::default() },
            metrics,
        )
        .await?;
        let ready = async {
            cse_sidecar.mqtt_ready().await;
            mqtt_sidecar.mqtt_ready().await;
        };
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .map_err(|_| "the sidecars did not reach the MQTT broker")?;
        let coap_egress = coap_sidecar.coap_addresses().egress.ok_or("the CoAP egress is not listening")?;
        let coap_plain_tap = UdpTap::loopback(coap_egress).await?;
        Ok(Self {
            pki,
            cse,
            receiver,
            cse_sidecar,
            ae_sidecar,
            plain_tap,
            secured_tap,
            coap_sidecar,
            coap_plain_tap,
            coap_secured_tap,
            broker,
            mqtt_sidecar,
        })
    }

    /// A plain HTTP client for the AE, talking to the AE-side egress through the plaintext relay.
    pub fn ae_client(&self) -> HttpClient {
        HttpClient::new(&format!("http://{}", self.plain_tap.addr()), ClientConfig::default())
            .expect("valid loopback base")
    }

    /// A CoAP client for the constrained AE, talking to its sidecar's CoAP egress through the
    /// plaintext UDP relay.
    pub async fn coap_ae_client(&self) -> std::io::Result<onem2m_sa_coap::CoapClient> {
        onem2m_sa_coap::CoapClient::connect(self.coap_plain_tap.addr(), onem2m_sa_coap::ClientConfig::default()).await
    }

    /// An HTTP client for the MQTT host's AE, talking to its sidecar's egress.
    pub fn mqtt_ae_client(&self) -> HttpClient {
        let egress = self.mqtt_sidecar.addresses().egress_http.expect("the MQTT host's egress listens");
        HttpClient::new(&format!("http://{egress}"), ClientConfig::default()).expect("valid loopback base")
    }

    /// Stops everything gracefully.
    pub async fn shutdown(self) {
        self.mqtt_sidecar.shutdown().await;
        self.coap_sidecar.shutdown().await;
        self.ae_sidecar.shutdown().await;
        self.cse_sidecar.shutdown().await;
        self.receiver.stop();
        self.cse.shutdown().await;
    }
}

/// What the demo saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// SAs established (both directions).
    pub sas_established: usize,
    /// Requests the AE sent.
    pub requests: usize,
    /// Requests whose answer was not the expected one, with what happened.
    pub failures: Vec<String>,
    /// Median latency seen by the AE, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency seen by the AE, milliseconds.
    pub p99_ms: f64,
    /// Notifications the CSE should have sent to the AE.
    pub notifications_expected: usize,
    /// Notifications the AE's listener received (over the SA from the CSE host).
    pub notifications_received: usize,
    /// Bytes the sidecars add on the wire, per request (secured hop minus plaintext hop).
    pub bytes_added_per_request: f64,
    /// Bytes the sidecars add on the wire, per answer.
    pub bytes_added_per_response: f64,
    /// The answer a plaintext request sent straight to the CSE-side ingress got.
    pub plaintext_refused_with: Option<u16>,
    /// Hex dump of a secured request as it crossed the network.
    pub wire_sample_hex: String,
    /// The first bytes of that request's AES-GCM ciphertext, hex.
    pub ciphertext_hex: String,
    /// Bytes on the secured HTTP hop per request (TCP payload: request line, headers, body).
    pub secured_bytes_per_request: f64,
    /// Bytes on the secured HTTP hop per answer.
    pub secured_bytes_per_response: f64,
    /// The same workload over CoAP.
    pub coap: CoapReport,
    /// The same workload over MQTT.
    pub mqtt: MqttReport,
}

/// What the MQTT run of the demo saw: an HTTP AE → its sidecar's egress → secured through the
/// MQTT broker → the CSE-side `[ingress.mqtt]` → the demo CSE (HTTP).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MqttReport {
    /// Requests the AE sent.
    pub requests: usize,
    /// Requests whose answer was not the expected one, with what happened.
    pub failures: Vec<String>,
    /// Median latency seen by the AE, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency seen by the AE, milliseconds.
    pub p99_ms: f64,
    /// PUBLISH payload bytes per request through the broker (the secured primitive).
    pub secured_bytes_per_request: f64,
    /// PUBLISH payload bytes per answer.
    pub secured_bytes_per_response: f64,
    /// Messages the broker saw in which a resource name, an originator or a value of the
    /// workload was readable (must be 0).
    pub readable_at_the_broker: usize,
    /// A secured request as the broker saw it: topic, then the payload's first 128 bytes.
    pub wire_sample_hex: String,
}

impl MqttReport {
    /// Whether the MQTT run went as expected.
    pub fn ok(&self) -> bool {
        self.requests > 0 && self.failures.is_empty() && self.readable_at_the_broker == 0
    }
}

/// What the CoAP run of the demo saw: a CoAP AE → its sidecar's CoAP egress → secured over
/// CoAP → the CSE-side CoAP ingress → the demo CSE (HTTP).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CoapReport {
    /// Requests the AE sent over CoAP.
    pub requests: usize,
    /// Requests whose answer was not the expected one, with what happened.
    pub failures: Vec<String>,
    /// Median latency seen by the AE, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency seen by the AE, milliseconds.
    pub p99_ms: f64,
    /// Bytes on the air per request on the plaintext hop (AE → sidecar; UDP payload).
    pub plain_bytes_per_request: f64,
    /// Bytes on the air per answer on the plaintext hop.
    pub plain_bytes_per_response: f64,
    /// Bytes on the air per request on the secured hop (sidecar → sidecar).
    pub secured_bytes_per_request: f64,
    /// Bytes on the air per answer on the secured hop.
    pub secured_bytes_per_response: f64,
    /// Datagrams per request on the secured hop (more than 1: block-wise or retransmission).
    pub secured_datagrams_per_request: f64,
    /// The form the figures above were measured in (`compact`: negotiated by the sidecars).
    pub secured_form: String,
    /// The same requests in the JWE form (`secured_form = "jwe"`), bytes per request on the
    /// secured hop; 0 when the run was too short to measure it.
    pub jwe_bytes_per_request: f64,
    /// Bytes per answer in the JWE form.
    pub jwe_bytes_per_response: f64,
    /// The plaintext hop's bytes per request during the JWE measurement.
    pub jwe_plain_bytes_per_request: f64,
    /// The plaintext hop's bytes per answer during the JWE measurement.
    pub jwe_plain_bytes_per_response: f64,
    /// Hex dump of a secured CoAP request as it crossed the network.
    pub wire_sample_hex: String,
}

impl CoapReport {
    /// Whether the CoAP run went as expected.
    pub fn ok(&self) -> bool {
        self.requests > 0 && self.failures.is_empty()
    }
}

impl Report {
    /// Whether everything went as expected.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
            && self.sas_established == 2
            && self.notifications_received == self.notifications_expected
            && self.plaintext_refused_with == Some(Rsc::SECURITY_ASSOCIATION_REQUIRED.code())
            && self.coap.ok()
            && self.mqtt.ok()
    }
}

/// A client of either binding, for the workload.
type AeClient = BoxCloneService<RequestPrimitive, ResponsePrimitive, onem2m_sa_http::BoxError>;

struct Run<'a> {
    client: AeClient,
    latencies: Vec<Duration>,
    failures: Vec<String>,
    n: u64,
    progress: &'a (dyn Fn(u64) + Sync),
    /// The AE-ID the requests come from.
    originator: &'static str,
}

impl<'a> Run<'a> {
    fn new(client: AeClient, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        Run { client, latencies: Vec::new(), failures: Vec::new(), n: 0, progress, originator: AE_ID }
    }

    async fn send(
        &mut self,
        op: Operation,
        to: &str,
        ty: Option<u32>,
        pc: Option<Value>,
        expect: Rsc,
    ) -> Option<Value> {
        self.n += 1;
        let mut req = RequestPrimitive::new(op, to, Some(self.originator.to_owned()), format!("demo-{}", self.n));
        req.rvi = Some("3".into());
        req.ty = ty;
        req.pc = pc;
        let started = Instant::now();
        let answer = self.client.clone().oneshot(req).await;
        self.latencies.push(started.elapsed());
        (self.progress)(1);
        match answer {
            Ok(rsp) if rsp.rsc == expect => rsp.pc,
            Ok(rsp) => {
                self.failures.push(format!("{op:?} {to}: expected {expect}, got {} {}", rsp.rsc, dbg_text(&rsp)));
                None
            }
            Err(e) => {
                self.failures.push(format!("{op:?} {to}: {e}"));
                None
            }
        }
    }
}

fn dbg_text(rsp: &ResponsePrimitive) -> String {
    rsp.pc.as_ref().and_then(|pc| pc.get("m2m:dbg")).and_then(|d| d.as_str()).unwrap_or_default().to_owned()
}

/// Requests the workload sends for `contents` content instances.
pub fn workload_size(contents: usize) -> u64 {
    // AE, container, subscription; per instance: create, retrieve; container update and
    // retrieve; delete subscription, container, AE.
    3 + 2 * contents as u64 + 2 + 3
}

/// Requests the CoAP run of the workload sends for `contents` content instances.
pub fn coap_workload_size(contents: usize) -> u64 {
    // AE, container; per instance: create, retrieve; container update and retrieve; delete AE.
    2 + 2 * contents as u64 + 2 + 1
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// The AES-GCM ciphertext inside a sampled secured HTTP request: the compact form's (the body is
/// the compact bytes, docs/protocol.md §4.3) or the JWE's, decoded.
fn ciphertext_of(wire: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = wire.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&wire[..start]).to_ascii_lowercase();
    if head.contains(onem2m_primitive::compact::MEDIA_TYPE) {
        // Byte 0, the 8-byte SA identifier, the varint sequence number; the tag at the end.
        let body = &wire[start..];
        let varint = body.get(9..)?.iter().position(|b| b & 0x80 == 0)? + 1;
        return body.get(9 + varint..body.len().checked_sub(16)?).map(<[u8]>::to_vec);
    }
    let body: Value = serde_json::from_slice(&wire[start..]).ok()?;
    let epo = body.get("m2m:seci")?.get("epo")?.as_str()?;
    let ct = epo.split('.').nth(3)?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(ct).ok()
}

/// The request line and a hex dump of the start of the body of a sampled request.
fn wire_sample(wire: &[u8]) -> String {
    let line_end = wire.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let start = wire.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
    format!(
        "{} … ({} header bytes)\n{}",
        String::from_utf8_lossy(&wire[..line_end]),
        start,
        tap::hex_dump(&wire[start..], 256)
    )
}

/// Runs the CRUD workload with `contents` content instances; `progress` is told of each request.
pub async fn run_workload(t: &mut Topology, contents: usize, progress: &(dyn Fn(u64) + Sync)) -> Report {
    let mut run = Run::new(BoxCloneService::new(t.ae_client()), progress);
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = format!("{base}/demo-ae");
    let cnt = format!("{ae}/readings");

    // Register the AE (its point of access is the listener behind the AE-side sidecar): the
    // first request establishes the SA towards the CSE.
    let poa = t.receiver.poa();
    let ae_rep = json!({"m2m:ae": {"rn": "demo-ae", "api": "Ndemo", "rr": true, "srv": ["3"], "poa": [poa]}});
    let created = run.send(Operation::Create, &base, Some(2), Some(ae_rep), Rsc::CREATED).await;
    let poa_seen = created.as_ref().and_then(|pc| pc["m2m:ae"]["poa"][0].as_str().map(str::to_owned));
    if poa_seen.as_deref() != Some(poa.as_str()) {
        run.failures.push(format!("the AE saw its poa as {poa_seen:?}, not {poa}"));
    }
    run.send(Operation::Create, &ae, Some(3), Some(json!({"m2m:cnt": {"rn": "readings"}})), Rsc::CREATED).await;

    // Measure the wire from here on (the SA towards the CSE exists).
    let (plain0, secured0) = (t.plain_tap.bytes(), t.secured_tap.bytes());
    let sub = json!({"m2m:sub": {"rn": "watch", "nu": [AE_ID], "enc": {"net": [3]}}});
    run.send(Operation::Create, &cnt, Some(23), Some(sub), Rsc::CREATED).await;
    for i in 0..contents {
        if i == contents / 2 {
            t.secured_tap.arm();
        }
        let cin = json!({"m2m:cin": {"rn": format!("r{i}"), "cnf": "text/plain:0", "con": format!("{}", 20.0 + i as f64 / 10.0)}});
        run.send(Operation::Create, &cnt, Some(4), Some(cin), Rsc::CREATED).await;
        run.send(Operation::Retrieve, &format!("{cnt}/r{i}"), None, None, Rsc::OK).await;
    }
    run.send(Operation::Update, &cnt, None, Some(json!({"m2m:cnt": {"lbl": ["demo"]}})), Rsc::UPDATED).await;
    run.send(Operation::Retrieve, &cnt, None, None, Rsc::OK).await;
    run.send(Operation::Delete, &format!("{cnt}/watch"), None, None, Rsc::DELETED).await;
    let (plain1, secured1) = (t.plain_tap.bytes(), t.secured_tap.bytes());
    let measured = (run.n - 2) as f64;
    run.send(Operation::Delete, &cnt, None, None, Rsc::DELETED).await;
    run.send(Operation::Delete, &ae, None, None, Rsc::DELETED).await;

    // Notifications come back over the SA the CSE host established towards the AE host.
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received < contents {
        match tokio::time::timeout_at(deadline, t.receiver.received.recv()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }

    // A plaintext request straight to the CSE-side ingress is refused before the CSE sees it.
    let executed_before = t.cse.cse.executed().len();
    let ingress = t.cse_sidecar.addresses().ingress_http.expect("ingress");
    let direct = HttpClient::new(&format!("http://{ingress}"), ClientConfig::default()).expect("base");
    let mut plain = RequestPrimitive::new(Operation::Retrieve, &base, Some(AE_ID.into()), "demo-plain");
    plain.rvi = Some("3".into());
    let refused = direct.oneshot(plain).await.ok().map(|r| r.rsc.code());
    if t.cse.cse.executed().len() != executed_before {
        run.failures.push("a plaintext request reached the CSE".into());
    }

    let coap = run_coap_workload(t, contents, progress).await;
    let mqtt = run_mqtt_workload(t, contents, progress).await;
    let mut sorted = run.latencies.clone();
    sorted.sort();
    let sample = t.secured_tap.sample().unwrap_or_default();
    let sas = t.ae_sidecar.node().outbound().entries().len() + t.cse_sidecar.node().outbound().entries().len();
    Report {
        sas_established: sas,
        requests: run.n as usize,
        failures: run.failures,
        p50_ms: percentile(&sorted, 0.50),
        p99_ms: percentile(&sorted, 0.99),
        notifications_expected: contents,
        notifications_received: received,
        bytes_added_per_request: ((secured1.0 - secured0.0) as f64 - (plain1.0 - plain0.0) as f64) / measured,
        bytes_added_per_response: ((secured1.1 - secured0.1) as f64 - (plain1.1 - plain0.1) as f64) / measured,
        plaintext_refused_with: refused,
        wire_sample_hex: wire_sample(&sample),
        ciphertext_hex: ciphertext_of(&sample).map(|c| hex::encode(&c[..c.len().min(48)])).unwrap_or_default(),
        secured_bytes_per_request: (secured1.0 - secured0.0) as f64 / measured,
        secured_bytes_per_response: (secured1.1 - secured0.1) as f64 / measured,
        coap,
        mqtt,
    }
}

/// What the broker saw during the MQTT run, gathered by a task reading its tap.
#[derive(Default)]
struct BrokerView {
    /// Counting the bytes now (after the SA exists, before the final DELETE).
    measuring: bool,
    request_bytes: usize,
    response_bytes: usize,
    readable: usize,
    sample: Option<(String, bytes::Bytes)>,
}

/// The MQTT run: the CoAP run's workload ([`mqtt_workload_size`]) from an HTTP AE whose sidecar
/// reaches the CSE through the broker; every PUBLISH the broker receives is checked for the
/// workload's names and values.
async fn run_mqtt_workload(t: &mut Topology, contents: usize, progress: &(dyn Fn(u64) + Sync)) -> MqttReport {
    use std::sync::Mutex;
    use tokio::sync::broadcast::error::RecvError;

    let view = Arc::new(Mutex::new(BrokerView::default()));
    fn lock(v: &Mutex<BrokerView>) -> std::sync::MutexGuard<'_, BrokerView> {
        v.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    let mut tap = t.broker.tap();
    let watching = view.clone();
    let watcher = tokio::spawn(async move {
        let secrets = ["demo-mqtt", MQTT_AE_ID, "readings", "Ndemo", CSE_BASE, "m2m:cin", "m2m:cnt", "m2m:ae"];
        loop {
            let (topic, payload) = match tap.recv().await {
                Ok(m) => m,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let text = String::from_utf8_lossy(&payload);
            let mut v = lock(&watching);
            if secrets.iter().any(|s| text.contains(s)) {
                v.readable += 1;
            }
            if v.measuring {
                if topic.starts_with("/oneM2M/req/") {
                    v.request_bytes += payload.len();
                    if v.sample.is_none() {
                        v.sample = Some((topic, payload));
                    }
                } else if topic.starts_with("/oneM2M/resp/") {
                    v.response_bytes += payload.len();
                }
            }
        }
    });
    let mut run = Run { originator: MQTT_AE_ID, ..Run::new(BoxCloneService::new(t.mqtt_ae_client()), progress) };
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = format!("{base}/demo-mqtt");
    let cnt = format!("{ae}/readings");
    let ae_rep = json!({"m2m:ae": {"rn": "demo-mqtt", "api": "Ndemo", "rr": false, "srv": ["3"]}});
    run.send(Operation::Create, &base, Some(2), Some(ae_rep), Rsc::CREATED).await;
    run.send(Operation::Create, &ae, Some(3), Some(json!({"m2m:cnt": {"rn": "readings"}})), Rsc::CREATED).await;

    // Measured from here on (the SA towards the CSE exists). Every answer has been published
    // before the AE sees it, so the tap holds a request's messages once `send` returns; the
    // watcher is given a moment to read them.
    let settle = || tokio::time::sleep(Duration::from_millis(50));
    settle().await;
    lock(&view).measuring = true;
    let n0 = run.n;
    for i in 0..contents {
        let cin = json!({"m2m:cin": {"rn": format!("r{i}"), "cnf": "text/plain:0", "con": format!("{}", 20.0 + i as f64 / 10.0)}});
        run.send(Operation::Create, &cnt, Some(4), Some(cin), Rsc::CREATED).await;
        run.send(Operation::Retrieve, &format!("{cnt}/r{i}"), None, None, Rsc::OK).await;
    }
    run.send(Operation::Update, &cnt, None, Some(json!({"m2m:cnt": {"lbl": ["demo"]}})), Rsc::UPDATED).await;
    run.send(Operation::Retrieve, &cnt, None, None, Rsc::OK).await;
    let measured = (run.n - n0) as f64;
    settle().await;
    lock(&view).measuring = false;
    run.send(Operation::Delete, &ae, None, None, Rsc::DELETED).await;
    settle().await;
    watcher.abort();

    let v = lock(&view);
    let mut sorted = run.latencies.clone();
    sorted.sort();
    MqttReport {
        requests: run.n as usize,
        failures: run.failures,
        p50_ms: percentile(&sorted, 0.50),
        p99_ms: percentile(&sorted, 0.99),
        secured_bytes_per_request: v.request_bytes as f64 / measured,
        secured_bytes_per_response: v.response_bytes as f64 / measured,
        readable_at_the_broker: v.readable,
        wire_sample_hex: v
            .sample
            .as_ref()
            .map(|(t, p)| format!("topic {t}\n{}", tap::hex_dump(p, 128)))
            .unwrap_or_default(),
    }
}

/// Requests the MQTT run of the workload sends for `contents` content instances (as the CoAP run).
pub fn mqtt_workload_size(contents: usize) -> u64 {
    coap_workload_size(contents)
}

/// The CoAP run: a constrained AE registers, makes a container, creates and reads `contents`
/// content instances, updates and reads the container, and deletes itself, over CoAP to its
/// sidecar and over CoAP between the sidecars.
async fn run_coap_workload(t: &mut Topology, contents: usize, progress: &(dyn Fn(u64) + Sync)) -> CoapReport {
    let client = match t.coap_ae_client().await {
        Ok(c) => c,
        Err(e) => return CoapReport { failures: vec![format!("no CoAP client: {e}")], ..CoapReport::default() },
    };
    let mut run = Run { originator: COAP_AE_ID, ..Run::new(BoxCloneService::new(client), progress) };
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = format!("{base}/demo-coap");
    let cnt = format!("{ae}/readings");
    let ae_rep = json!({"m2m:ae": {"rn": "demo-coap", "api": "Ndemo", "rr": false, "srv": ["3"]}});
    run.send(Operation::Create, &base, Some(2), Some(ae_rep), Rsc::CREATED).await;
    run.send(Operation::Create, &ae, Some(3), Some(json!({"m2m:cnt": {"rn": "readings"}})), Rsc::CREATED).await;

    // Measured from here on (the SA towards the CSE exists): the first half of the content
    // instances in the form the sidecars negotiated (compact), the second in the JWE form.
    let cse = NodeId::new(CSE_ID).expect("id");
    let negotiated = t.coap_sidecar.node().secured_form(&cse);
    let half = contents.div_ceil(2);
    let mut segments = Vec::new();
    let (mut plain0, mut secured0, mut n0) = (t.coap_plain_tap.counts(), t.coap_secured_tap.counts(), run.n);
    for i in 0..contents {
        if i == half {
            segments.push((t.coap_plain_tap.counts() - plain0, t.coap_secured_tap.counts() - secured0, run.n - n0));
            t.coap_sidecar.node().set_secured_form(cse.clone(), SecuredForm::Jwe);
            (plain0, secured0, n0) = (t.coap_plain_tap.counts(), t.coap_secured_tap.counts(), run.n);
        }
        if i == half / 2 {
            t.coap_secured_tap.arm();
        }
        let cin = json!({"m2m:cin": {"rn": format!("r{i}"), "cnf": "text/plain:0", "con": format!("{}", 20.0 + i as f64 / 10.0)}});
        run.send(Operation::Create, &cnt, Some(4), Some(cin), Rsc::CREATED).await;
        run.send(Operation::Retrieve, &format!("{cnt}/r{i}"), None, None, Rsc::OK).await;
    }
    segments.push((t.coap_plain_tap.counts() - plain0, t.coap_secured_tap.counts() - secured0, run.n - n0));
    t.coap_sidecar.node().set_secured_form(cse, negotiated);
    run.send(Operation::Update, &cnt, None, Some(json!({"m2m:cnt": {"lbl": ["demo"]}})), Rsc::UPDATED).await;
    run.send(Operation::Retrieve, &cnt, None, None, Rsc::OK).await;
    run.send(Operation::Delete, &ae, None, None, Rsc::DELETED).await;
    let (plain, secured, measured) = segments[0];
    let measured = measured.max(1) as f64;
    let jwe = segments.get(1).filter(|s| s.2 > 0).map(|&(p, s, n)| (p, s, n as f64));
    let per = |bytes: u64, n: f64| bytes as f64 / n;
    let wire_sample = t.coap_secured_tap.sample();
    let form = wire_sample.as_deref().and_then(coap_secured_form).unwrap_or("unknown");

    let mut sorted = run.latencies.clone();
    sorted.sort();
    CoapReport {
        requests: run.n as usize,
        failures: run.failures,
        p50_ms: percentile(&sorted, 0.50),
        p99_ms: percentile(&sorted, 0.99),
        plain_bytes_per_request: per(plain.up_bytes, measured),
        plain_bytes_per_response: per(plain.down_bytes, measured),
        secured_bytes_per_request: per(secured.up_bytes, measured),
        secured_bytes_per_response: per(secured.down_bytes, measured),
        secured_datagrams_per_request: per(secured.up_datagrams, measured),
        wire_sample_hex: wire_sample.map(|d| tap::hex_dump(&d, 128)).unwrap_or_default(),
        secured_form: form.to_owned(),
        jwe_bytes_per_request: jwe.map_or(0.0, |(_, s, n)| per(s.up_bytes, n)),
        jwe_bytes_per_response: jwe.map_or(0.0, |(_, s, n)| per(s.down_bytes, n)),
        jwe_plain_bytes_per_request: jwe.map_or(0.0, |(p, _, n)| per(p.up_bytes, n)),
        jwe_plain_bytes_per_response: jwe.map_or(0.0, |(p, _, n)| per(p.down_bytes, n)),
    }
}

/// The option numbers of a CoAP datagram and its payload (the CoAP adapter's strict parser);
/// `None` when it does not parse.
pub fn coap_options(datagram: &[u8]) -> Option<(Vec<u16>, Vec<u8>)> {
    let packet = onem2m_sa_coap::message::parse(datagram).ok()?;
    Some((packet.options().map(|(n, _)| *n).collect(), packet.payload))
}

/// The Content-Format of a CoAP datagram, if it has one.
pub fn coap_content_format(datagram: &[u8]) -> Option<u16> {
    let packet = onem2m_sa_coap::message::parse(datagram).ok()?;
    let value = packet.get_option(onem2m_sa_coap::coap_lite::CoapOption::ContentFormat)?.front()?;
    Some(value.iter().fold(0u32, |acc, v| (acc << 8) | u32::from(*v)) as u16)
}

/// The secured form a CoAP request datagram carries: `compact` for the bare compact request
/// (a payload and no option but Uri-Host/Port, docs/protocol.md §4.3) or Content-Format 65000,
/// `jwe` for another Content-Format, `None` without a payload.
pub fn coap_secured_form(datagram: &[u8]) -> Option<&'static str> {
    let (options, payload) = coap_options(datagram)?;
    if payload.is_empty() {
        return None;
    }
    match coap_content_format(datagram) {
        Some(onem2m_primitive::compact::CONTENT_FORMAT) => Some("compact"),
        Some(_) => Some("jwe"),
        None if options.iter().all(|n| matches!(n, 3 | 7)) => Some("compact"),
        None => None,
    }
}

/// Prints the report for people.
pub fn print_report(r: &Report) {
    let mark = |ok: bool| if ok { "ok " } else { "FAIL" };
    println!();
    println!("onem2m-sa demo — AE ⇄ AE-side sidecar ⇄ (network) ⇄ CSE-side sidecar ⇄ demo CSE, all on loopback");
    println!();
    println!(
        "  [{}] SAs established         {} (AE host → CSE, CSE → AE host)",
        mark(r.sas_established == 2),
        r.sas_established
    );
    println!(
        "  [{}] requests                {} ({} failed)",
        mark(r.failures.is_empty()),
        r.requests,
        r.failures.len()
    );
    println!("       latency                 p50 {:.2} ms, p99 {:.2} ms", r.p50_ms, r.p99_ms);
    println!(
        "  [{}] notifications           {}/{} delivered over the SA from the CSE host",
        mark(r.notifications_received == r.notifications_expected),
        r.notifications_received,
        r.notifications_expected
    );
    println!(
        "       bytes added per message {:.0} per request, {:.0} per answer (secured hop minus plaintext hop)",
        r.bytes_added_per_request, r.bytes_added_per_response
    );
    let c = &r.coap;
    println!();
    println!("  over CoAP — AE ⇄ AE-side sidecar (CoAP) ⇄ (network, CoAP) ⇄ CSE-side sidecar ⇄ demo CSE (HTTP)");
    println!("  [{}] requests                {} ({} failed)", mark(c.ok()), c.requests, c.failures.len());
    println!("       latency                 p50 {:.2} ms, p99 {:.2} ms", c.p50_ms, c.p99_ms);
    println!("       bytes on the air per message, secured hop (plaintext hop):");
    println!(
        "         HTTP                  {:.0} per request ({:.0}), {:.0} per answer ({:.0})",
        r.secured_bytes_per_request,
        r.secured_bytes_per_request - r.bytes_added_per_request,
        r.secured_bytes_per_response,
        r.secured_bytes_per_response - r.bytes_added_per_response
    );
    println!(
        "         CoAP, {:<7}         {:.0} per request ({:.0}), {:.0} per answer ({:.0}); {:.2} datagrams per request",
        c.secured_form,
        c.secured_bytes_per_request,
        c.plain_bytes_per_request,
        c.secured_bytes_per_response,
        c.plain_bytes_per_response,
        c.secured_datagrams_per_request
    );
    if c.jwe_bytes_per_request > 0.0 {
        println!(
            "         CoAP, jwe             {:.0} per request ({:.0}), {:.0} per answer ({:.0})",
            c.jwe_bytes_per_request,
            c.jwe_plain_bytes_per_request,
            c.jwe_bytes_per_response,
            c.jwe_plain_bytes_per_response
        );
    }
    println!(
        "         added by the SA        compact {:+.0} / {:+.0} B (request / answer), JWE {:+.0} / {:+.0} B; OSCORE adds 13-15 B per request",
        c.secured_bytes_per_request - c.plain_bytes_per_request,
        c.secured_bytes_per_response - c.plain_bytes_per_response,
        c.jwe_bytes_per_request - c.jwe_plain_bytes_per_request,
        c.jwe_bytes_per_response - c.jwe_plain_bytes_per_response
    );
    for f in &c.failures {
        println!("       CoAP failure: {f}");
    }
    let m = &r.mqtt;
    println!();
    println!(
        "  over MQTT — AE ⇄ AE-side sidecar (HTTP) ⇄ MQTT broker (in-process) ⇄ CSE-side sidecar ⇄ demo CSE (HTTP)"
    );
    println!("  [{}] requests                {} ({} failed)", mark(m.ok()), m.requests, m.failures.len());
    println!("       latency                 p50 {:.2} ms, p99 {:.2} ms", m.p50_ms, m.p99_ms);
    println!(
        "         MQTT                  {:.0} per request, {:.0} per answer (PUBLISH payload through the broker)",
        m.secured_bytes_per_request, m.secured_bytes_per_response
    );
    println!(
        "  [{}] the broker read nothing  {} messages with a name or value of the workload",
        mark(m.readable_at_the_broker == 0),
        m.readable_at_the_broker
    );
    for f in &m.failures {
        println!("       MQTT failure: {f}");
    }
    let refused = r.plaintext_refused_with == Some(Rsc::SECURITY_ASSOCIATION_REQUIRED.code());
    println!(
        "  [{}] plaintext to the ingress refused with {}",
        mark(refused),
        r.plaintext_refused_with.map_or("no answer".to_owned(), |c| c.to_string())
    );
    for f in &r.failures {
        println!("       failure: {f}");
    }
    println!();
    println!("A secured request on the wire (sidecar → sidecar): request line, then the body's first 256 bytes:");
    print!("{}", r.wire_sample_hex);
    if !r.ciphertext_hex.is_empty() {
        println!("its AES-GCM ciphertext starts: {}", r.ciphertext_hex);
    }
    if !c.wire_sample_hex.is_empty() {
        println!();
        println!("A secured CoAP request on the air (sidecar → sidecar), the datagram's first 128 bytes:");
        print!("{}", c.wire_sample_hex);
    }
    if !m.wire_sample_hex.is_empty() {
        println!();
        println!("A secured request as the MQTT broker saw it, the payload's first 128 bytes:");
        print!("{}", m.wire_sample_hex);
    }
    println!();
    println!("{}", if r.ok() { "demo passed" } else { "demo FAILED" });
}

/// The demo's options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Content instances to create (each is one CREATE, one RETRIEVE and one notification).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub contents: u32,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo; `Ok(false)` when something went wrong (the process exits non-zero).
pub async fn run(args: &DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let mut topology = Topology::start(None).await?;
    let total = workload_size(args.contents as usize)
        + coap_workload_size(args.contents as usize)
        + mqtt_workload_size(args.contents as usize);
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg:<12} [{bar:40}] {pos}/{len} requests")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message("CRUD");
        bar
    };
    let tick = bar.clone();
    let report = run_workload(&mut topology, args.contents as usize, &move |n| tick.inc(n)).await;
    bar.finish_and_clear();
    topology.shutdown().await;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["ok"] = json!(report.ok());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_report(&report);
    }
    Ok(report.ok())
}
