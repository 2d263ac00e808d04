//! The sidecar's configuration: one TOML file, parsed with byte spans so that every error names
//! its file, line and dotted key (`sidecar.toml:12: ingress.http.listen: …`), then resolved into
//! typed settings with the node's key, ticket and trust anchors read and the ticket verified.
//!
//! Transports are one table each (`[ingress.http]`, `[egress.http]`, `[ingress.coap]`,
//! `[egress.coap]`), and peers are `http://` or `coap://` addresses; the CoAP limits and timeouts
//! are the `[coap]` table. `[ingress.mqtt]` names the MQTT broker (TS-0010) secured requests
//! arrive through, `[egress.mqtt]` the settings for the brokers of `mqtt://` peers and, with
//! `listen_broker`, the local broker MQTT-only AEs publish their plaintext requests to.

use std::cell::RefCell;
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onem2m_sa::Capabilities;
use onem2m_sa::credential::{Credentials, NodeId, OriginatorPattern, TicketError, TrustAnchors};
use onem2m_sa::crypto::Suite;
use onem2m_sa::establish::{InitiatorConfig, ResponderConfig};
use onem2m_sa::flows::ChallengeKind;
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::table::TableConfig;
use onem2m_sa_tower::{
    Carriage, ExecutedConfig, KemUpdatePolicy, Node, NodeConfig, Outer, PlaintextPolicy, Recovery, Rotation,
    SecuredForm,
};
use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::keys;

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key is missing, unknown, of the wrong type or has a value that is not allowed (or the
    /// file it names is unusable), or the file is not TOML.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The dotted key, e.g. `ingress.http.listen` or `peer[1].address`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Read { .. } => None,
        }
    }

    /// The line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Read { .. } => None,
        }
    }
}

/// The sidecar's configuration, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// This node's identity and cryptography.
    pub node: NodeSettings,
    /// Secured traffic in, plaintext to the upstream.
    pub ingress: Option<Ingress>,
    /// Plaintext from loopback in, sealed to peers.
    pub egress: Option<Egress>,
    /// Where the peers are.
    pub peers: Vec<Peer>,
    /// The admin listener (metrics, health).
    pub admin: Option<Admin>,
    /// Logging.
    pub log: LogSettings,
    /// HTTP limits and timeouts.
    pub http: HttpSettings,
    /// CoAP limits and timeouts (`[coap]`).
    pub coap: CoapSettings,
    /// SA runtime settings.
    pub sa: SaSettings,
    /// Where the ingress's SAs live (`[store]`): this process, or Redis shared with replicas.
    pub store: StoreSettings,
    /// What in the file works but deserves attention (deprecated keys, a private key others can
    /// read, a plaintext hop off the host): logged at start, printed by `--check`.
    pub warnings: Vec<ConfigWarning>,
}

/// Something in the configuration that is accepted but deserves the operator's attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The configuration file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The dotted key.
    pub key: String,
    /// What deserves attention.
    pub message: String,
}

impl Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.key, self.message)
    }
}

/// This node's identity and cryptography.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The node's ID.
    pub id: NodeId,
    /// Its signing key and ticket (`Debug` never shows the key).
    pub credentials: Arc<Credentials>,
    /// The issuers whose tickets it accepts.
    pub trust_anchors: Arc<TrustAnchors>,
    /// The suites it offers and accepts, most preferred first.
    pub suites: Vec<Suite>,
}

/// Secured traffic in, plaintext to the upstream.
#[derive(Debug, Clone)]
pub struct Ingress {
    /// The protected service's base URL (`http://127.0.0.1:8080`), no trailing slash; or the
    /// local broker of MQTT-only AEs (`mqtt://127.0.0.1:1883`, normalized as a broker address),
    /// where the requests for them (a CSE's notifications) are published on
    /// `/oneM2M/req/<peer>/<AE-ID>/json`.
    pub upstream: String,
    /// Which requests may come without an SA (`ingress.allow_plaintext_from`; none by default).
    pub plaintext: PlaintextPolicy,
    /// Rewrite AE points of access at registration so notifications travel over SAs.
    pub map_poa: bool,
    /// The HTTP listener.
    pub http: Option<Listener>,
    /// The CoAP listener (UDP).
    pub coap: Option<Listener>,
    /// The MQTT broker secured requests to this node arrive through (`[ingress.mqtt]`).
    pub mqtt: Option<MqttSettings>,
}

/// Plaintext from loopback in, sealed to peers.
#[derive(Debug, Clone)]
pub struct Egress {
    /// The peer for targets that name no CSE-ID.
    pub default_peer: Option<NodeId>,
    /// The HTTP listener.
    pub http: Option<Listener>,
    /// The CoAP listener (UDP).
    pub coap: Option<Listener>,
    /// Settings for the connections to the brokers of `mqtt://` peers (`[egress.mqtt]`), and
    /// the local broker of MQTT-only AEs (`listen_broker`).
    pub mqtt: Option<MqttSettings>,
}

/// A connection to an MQTT broker (TS-0010 §6.2).
#[derive(Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// The broker, `mqtt://host:port[/path]` or `mqtts://host:port[/path]` (TLS), normalized;
    /// the path is prepended to every topic. `None` in `[egress.mqtt]`: peers name theirs.
    pub broker: Option<String>,
    /// The MQTT client ID; by default `C::` and the node ID as a topic ID.
    pub client_id: Option<String>,
    /// Username presented to the broker.
    pub username: Option<String>,
    /// Password presented to the broker (read from `password_file`; never printed).
    pub password: Option<String>,
    /// CA certificates (PEM) to verify a `mqtts://` broker with, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `[egress.mqtt]` only: the local broker this node's AEs publish their plaintext requests
    /// to (normalized as `broker`). The egress subscribes there to the requests addressed to its
    /// peers' CSE-IDs (`/oneM2M/req/+/<peer>/json`), sends them sealed to the peer, and
    /// publishes the answers on the matching `resp` topics. `None`: no MQTT egress listener.
    pub listen_broker: Option<String>,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("listen_broker", &self.listen_broker)
            .finish()
    }
}

/// Where the ingress's SAs live (`[store]`). A change needs a restart.
// One value per configuration, read at start: the size of the Redis variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreSettings {
    /// In this process only (`kind = "memory"`, the default).
    #[default]
    Memory,
    /// In Redis, shared with the other replicas of this sidecar (`kind = "redis"`).
    Redis(RedisSettings),
}

/// `[store]` with `kind = "redis"`: replicas of a CSE-side sidecar sharing their SAs.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]` or `redis+unix:///path/to/socket`. With
    /// [`Self::sentinels`]: only its user, password and database apply, to the master (empty:
    /// none, database 0).
    pub url: String,
    /// Redis Sentinel addresses (`redis://host:port`): the master is the one they name
    /// [`Self::master`]. Empty: `url` is the server.
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the master under (with [`Self::sentinels`]).
    pub master: Option<String>,
    /// Redis Cluster: some of its nodes (`redis://[user:password@]host:port`). Empty: not a
    /// cluster. Every key then carries the prefix as its hash tag (one slot).
    pub cluster: Vec<String>,
    /// TLS (`rediss://` addresses): the CA to verify Redis with (PEM file; none: the system's
    /// roots).
    pub ca_file: Option<PathBuf>,
    /// TLS: this replica's certificate chain and private key (PEM files), when Redis asks for
    /// one (`tls-auth-clients`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The key-encryption key the SA records are sealed under in Redis (read from `kek_file`;
    /// never printed).
    pub kek: Arc<zeroize::Zeroizing<[u8; 32]>>,
    /// Prefix of every Redis key and channel: the replicas of one deployment share it.
    pub prefix: String,
    /// Longest wait for one Redis command before Redis counts as unavailable.
    pub timeout: Duration,
    /// Sequence numbers leased per block.
    pub lease_block: u64,
    /// A leased block older than this is replaced.
    pub lease_refresh: Duration,
    /// Replicas of the Redis master that must hold a leased block before it is used (`WAIT`).
    pub lease_replicas: u32,
}

impl PartialEq for RedisSettings {
    fn eq(&self, other: &Self) -> bool {
        let fields = |r: &Self| {
            (
                (r.url.clone(), r.sentinels.clone(), r.master.clone(), r.cluster.clone()),
                (r.ca_file.clone(), r.client_cert.clone(), r.prefix.clone()),
                (r.timeout, r.lease_block, r.lease_refresh, r.lease_replicas),
            )
        };
        fields(self) == fields(other) && self.kek[..] == other.kek[..]
    }
}

impl Eq for RedisSettings {}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redacted_url(&self.url))
            .field("sentinels", &self.sentinels.iter().map(|s| redacted_url(s)).collect::<Vec<_>>())
            .field("master", &self.master)
            .field("cluster", &self.cluster.iter().map(|s| redacted_url(s)).collect::<Vec<_>>())
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("kek", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease_block", &self.lease_block)
            .field("lease_refresh", &self.lease_refresh)
            .field("lease_replicas", &self.lease_replicas)
            .finish()
    }
}

/// `url` with any password in it replaced, for logs.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:<redacted>@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

/// Whether `address` is an `mqtt://` or `mqtts://` address.
pub fn is_mqtt_address(address: &str) -> bool {
    address.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("mqtt://"))
        || address.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("mqtts://"))
}

/// The default MQTT port, and the default MQTT-over-TLS port (TS-0010 §6.6).
pub const MQTT_DEFAULT_PORTS: (u16, u16) = (1883, 8883);

/// A listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The address to bind.
    pub listen: SocketAddr,
}

/// A peer node and where to reach its sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node ID.
    pub id: NodeId,
    /// Its sidecar's base URL (`http://cse.example.net:8443`) or CoAP address
    /// (`coap://cse.example.net:5683`, the port always written), no trailing slash; through a
    /// transit CSE, the transit CSE's address.
    pub address: String,
    /// The form of the secured requests sent to it (`secured_form`, default `auto`: the compact
    /// form when the SA negotiated it, the JWE form otherwise).
    pub secured_form: SecuredForm,
    /// How the outer requests to it are addressed and carried (`to`, `from`, `carriage`).
    pub outer: PeerOuter,
}

/// A peer's outer addressing and carriage as configured (`peer.to`, `peer.from`,
/// `peer.carriage`); see `onem2m_sa_tower::carriage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerOuter {
    /// The outer `to`: the peer's `<CSEBase>` or `<AE>` a transit CSE routes
    /// (`/id-in/cse-in`); its node ID when absent.
    pub to: Option<String>,
    /// The outer `fr`: the ID this node is known by on the way (its AE-ID at its registrar,
    /// `Cae-host`); this node's ID when absent.
    pub from: Option<String>,
    /// `standard` (the default) or `notification` (inside `m2m:sgn`, for transit CSEs that
    /// forward only notifications).
    pub carriage: Carriage,
}

impl Peer {
    /// Whether the peer is reached over CoAP (a `coap://` address).
    pub fn is_coap(&self) -> bool {
        is_coap_address(&self.address)
    }

    /// The outer addressing of requests to this peer from the node `me`.
    pub fn outer_from(&self, me: &NodeId) -> Outer {
        Outer {
            to: self.outer.to.clone().unwrap_or_else(|| self.id.as_str().to_owned()),
            from: self.outer.from.clone().unwrap_or_else(|| me.as_str().to_owned()),
            carriage: self.outer.carriage,
        }
    }

    /// Whether the peer is reached through an MQTT broker (an `mqtt://` or `mqtts://` address).
    pub fn is_mqtt(&self) -> bool {
        is_mqtt_address(&self.address)
    }
}

/// Whether `address` is a `coap://` address.
pub fn is_coap_address(address: &str) -> bool {
    address.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("coap://"))
}

/// The default CoAP port (RFC 7252 §6.1).
pub const COAP_DEFAULT_PORT: u16 = 5683;

/// The host of an `http://host:port` URL, without brackets.
fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(uri.host()?.trim_start_matches('[').trim_end_matches(']').to_owned())
}

/// Whether `host` is one of the names reserved for examples (RFC 2606), as the example configs
/// use: `example.net`, `cse.example.net`, `x.example`.
fn is_example_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    ["example.com", "example.net", "example.org"].iter().any(|d| host == *d || host.ends_with(&format!(".{d}")))
        || host == "example"
        || host.ends_with(".example")
}

/// What `--check` finds about the peers beyond the file itself: each peer's host must resolve
/// (looked up with the system resolver; blocking). One message per peer that does not,
/// `<file>: peer[i].address: …`. Example hosts are warned about at load and not looked up.
pub fn unresolved_peers(config: &Config) -> Vec<String> {
    use std::net::ToSocketAddrs as _;
    let mut out = Vec::new();
    for (i, p) in config.peers.iter().enumerate() {
        let Some(host) = host_of(&p.address) else { continue };
        if is_example_host(&host) {
            continue;
        }
        let default_port = if p.is_coap() {
            COAP_DEFAULT_PORT
        } else if p.is_mqtt() {
            MQTT_DEFAULT_PORTS.0
        } else {
            80
        };
        let port = p.address.parse::<http::Uri>().ok().and_then(|u| u.port_u16()).unwrap_or(default_port);
        let found = (host.as_str(), port).to_socket_addrs().map(|mut a| a.next().is_some());
        let why = match found {
            Ok(true) => continue,
            Ok(false) => "no address".to_owned(),
            Err(e) => e.to_string(),
        };
        out.push(format!(
            "{}: peer[{i}].address: {host} does not resolve ({why}): {} cannot reach {}",
            config.path.display(),
            config.node.id,
            p.id
        ));
    }
    out
}

/// The admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin {
    /// The address to bind (loopback).
    pub listen: SocketAddr,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object a line.
    Json,
}

/// Logging. `Default` gives the defaults of the file: human lines at `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// A `tracing` `EnvFilter` directive (`info`, `onem2m_sa_sidecar=debug,info`).
    pub level: String,
    /// The level of the per-request access lines (see [`crate::access`]).
    pub access: crate::access::AccessLevel,
}

/// HTTP limits and timeouts. `Default` gives the defaults of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest request or response body.
    pub max_body_bytes: usize,
    /// Largest header value.
    pub max_header_value_bytes: usize,
    /// Most headers in a message.
    pub max_headers: usize,
    /// Time allowed to receive a request's headers.
    pub header_read_timeout: Duration,
    /// Time allowed for a whole exchange.
    pub request_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// Time allowed to connect to the upstream or a peer.
    pub connect_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub drain_timeout: Duration,
    /// Most open connections per listener.
    pub max_connections: usize,
}

/// CoAP limits and timeouts (`[coap]`), for the CoAP listeners and the clients to `coap://`
/// peers. `Default` gives the defaults of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoapSettings {
    /// Largest payload of a request or answer, after block-wise reassembly.
    pub max_payload_bytes: usize,
    /// Time allowed for a whole exchange (every block, retransmission and the answer).
    pub request_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub drain_timeout: Duration,
    /// Most requests executing at once per listener; beyond it requests are answered 5.03.
    pub max_in_flight: usize,
    /// Most exchanges a listener remembers for one peer (duplicate detection): beyond it the
    /// peer's oldest finished exchange is forgotten; a new request while every one of them is
    /// still executing is answered 5.03.
    pub max_exchanges_per_peer: usize,
}

impl Default for CoapSettings {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            max_exchanges_per_peer: 1024,
        }
    }
}

/// SA runtime settings. `Default` gives the defaults of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaSettings {
    /// How long to wait for one answer across rb before resending.
    pub rb_timeout: Duration,
    /// When SAs get new keys and identifiers, besides the usage limits.
    pub rotation: Rotation,
    /// Replay window, in sequence numbers.
    pub replay_window: usize,
    /// Bounds on the Responder's state.
    pub limits: Limits,
    /// Established SAs one authenticated Initiator may hold at this node's Responder; one more
    /// replaces its oldest.
    pub max_sas_per_peer: usize,
    /// An SA with no traffic for this long is removed (`None`: no idle timeout).
    pub idle_timeout: Option<Duration>,
    /// When this node's key updates run a fresh KEM exchange: `auto` (with peers that
    /// negotiated `kem-update`), `always` or `off`.
    pub fresh_kem_key_updates: KemUpdatePolicy,
    /// Bounds of the receiver's record of executed requests.
    pub executed: ExecutedConfig,
    /// How the sender recovers from an unsealed "unknown SA" or "sealing refused".
    pub recovery: Recovery,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Human, level: "info".to_owned(), access: crate::access::AccessLevel::Info }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_header_value_bytes: 8192,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl Default for SaSettings {
    fn default() -> Self {
        Self {
            rb_timeout: Duration::from_secs(5),
            rotation: Rotation::default(),
            replay_window: onem2m_sa::replay::DEFAULT_WINDOW,
            limits: Limits::default(),
            max_sas_per_peer: onem2m_sa::manage::DEFAULT_MAX_SAS_PER_PEER,
            idle_timeout: None,
            fresh_kem_key_updates: KemUpdatePolicy::Auto,
            executed: ExecutedConfig::default(),
            recovery: Recovery::default(),
        }
    }
}

impl Config {
    /// Reads and checks the configuration file at `path`; relative file names in it are
    /// resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read as _;
        let read_error = |source| ConfigError::Read { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(read_error)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(read_error(std::io::Error::other("file over 1 MiB")));
        }
        Self::parse(&text, path)
    }

    /// Checks the configuration `text`, read from `origin` (named in errors; relative file names
    /// are resolved against its directory). The ticket is verified at the current time.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self::parse_at(text, origin, now)
    }

    /// [`Config::parse`] with the ticket verified at `unix_now`.
    pub fn parse_at(text: &str, origin: &Path, unix_now: u64) -> Result<Config, ConfigError> {
        let doc = Doc {
            text,
            file: origin,
            base: origin.parent().unwrap_or(Path::new("")).to_owned(),
            warnings: RefCell::default(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| doc.toml_error(&e))?;
        // The file's own rules first, then the files it names.
        let id = doc.node_id(&raw.node.get_ref().id, "node.id")?;
        let suites = doc.suites(raw.node.get_ref().suites.as_ref())?;
        let peers = doc.peers(&raw.peer, &id)?;
        let ingress = raw.ingress.as_ref().map(|i| doc.ingress(i)).transpose()?;
        let egress = raw.egress.as_ref().map(|e| doc.egress(e, &raw.peer, &peers)).transpose()?;
        if let Some(i) = ingress.as_ref().filter(|i| is_mqtt_address(&i.upstream)) {
            let taken = i.mqtt.as_ref().and_then(|m| m.broker.as_ref()) == Some(&i.upstream)
                || peers.iter().any(|p| p.address == i.upstream);
            if taken {
                let at = &raw.ingress.as_ref().expect("parsed").get_ref().upstream;
                return Err(doc.at(
                    at,
                    "ingress.upstream",
                    format!(
                        "{} is where secured requests travel ([ingress.mqtt] or a peer): the AEs' local broker must \
                         be another one",
                        i.upstream
                    ),
                ));
            }
        }
        let ingress_broker = ingress.as_ref().and_then(|i| i.mqtt.as_ref()).and_then(|m| m.broker.as_ref());
        let listen_broker = egress.as_ref().and_then(|e| e.mqtt.as_ref()).and_then(|m| m.listen_broker.as_ref());
        if let (Some(local), true) = (listen_broker, ingress_broker.is_some() && ingress_broker == listen_broker) {
            let raw_mqtt = raw.egress.as_ref().and_then(|e| e.get_ref().mqtt.as_ref());
            let at = raw_mqtt.and_then(|m| m.get_ref().listen_broker.as_ref()).expect("parsed above");
            return Err(doc.at(
                at,
                "egress.mqtt.listen_broker",
                format!(
                    "{local} is also [ingress.mqtt]'s broker, where peers send secured requests: give the AEs' \
                     local broker apart"
                ),
            ));
        }
        if ingress.is_none() && egress.is_none() {
            return Err(doc.err(
                0..0,
                "ingress",
                "neither [ingress] nor [egress] is configured: the sidecar would have nothing to do",
            ));
        }
        let admin = match &raw.admin {
            Some(a) => {
                let listen = doc.socket(&a.get_ref().listen, "admin.listen")?;
                if !listen.ip().is_loopback() {
                    return Err(doc.at(
                        &a.get_ref().listen,
                        "admin.listen",
                        format!("{listen} is not a loopback address: the admin listener must not face the network"),
                    ));
                }
                Some(Admin { listen })
            }
            None => None,
        };
        doc.distinct_listeners(&raw)?;
        let (log, http, sa) = (doc.log(&raw.log)?, doc.http(&raw.http)?, doc.sa(&raw.sa)?);
        let coap = doc.coap(&raw.coap)?;
        let store = raw.store.as_ref().map(|s| doc.store(s, sa.replay_window)).transpose()?.unwrap_or_default();
        if let (Some(raw_store), StoreSettings::Redis(_), None) = (&raw.store, &store, &ingress) {
            doc.warn(
                raw_store,
                "store",
                "without [ingress] the store holds nothing: it keeps the SAs peers establish here",
            );
        }
        let trust_anchors = doc.trust_anchors(&raw)?;
        let credentials = doc.credentials(raw.node.get_ref(), &id, &trust_anchors, unix_now)?;
        let node =
            NodeSettings { id, credentials: Arc::new(credentials), trust_anchors: Arc::new(trust_anchors), suites };
        let warnings = doc.warnings.into_inner();
        Ok(Config {
            path: origin.to_owned(),
            node,
            ingress,
            egress,
            peers,
            admin,
            log,
            http,
            coap,
            sa,
            store,
            warnings,
        })
    }

    /// The SA runtime's settings: the Initiator offers `node.suites` and sends the Responder an
    /// encryption challenge; the Responder supports `node.suites` and sends the Initiator an
    /// authentication challenge; default timers but the configured idle timeout; the configured
    /// replay window and limits. The rest of `[sa]` is set on the running node:
    /// [`Config::build_node`] does both.
    pub fn node_config(&self) -> NodeConfig {
        let credentials = self.node.credentials.clone();
        let trust_anchors = self.node.trust_anchors.clone();
        NodeConfig {
            initiator: InitiatorConfig {
                credentials: credentials.clone(),
                trust_anchors: trust_anchors.clone(),
                offer: self.node.suites.clone(),
                responder_challenge: ChallengeKind::Encryption,
                capabilities: Capabilities::ALL,
            },
            responder: ResponderConfig {
                credentials,
                trust_anchors,
                supported: self.node.suites.clone(),
                initiator_challenge: ChallengeKind::Authentication,
                explicit_context: None,
                context_reference: None,
                capabilities: Capabilities::ALL,
            },
            timing: Timing { idle_timeout_ms: self.sa.idle_timeout.map(|d| d.as_millis() as u64), ..Timing::default() },
            limits: self.sa.limits,
            table: TableConfig { window: self.sa.replay_window, ..TableConfig::default() },
            rb_timeout: self.sa.rb_timeout,
        }
    }

    /// The SA runtime of this configuration: a [`Node`] of [`Config::node_config`] with the
    /// `[sa]` settings that are set on a running node applied (SAs per peer, fresh KEM key
    /// updates, the record of executed requests, recovery) and each peer's secured form.
    pub fn build_node(&self) -> Node {
        self.build_node_on(None)
    }

    /// [`Config::build_node`] for a replica: its inbound SAs in `store`
    /// ([`Node::with_store`]), or in this process with `None`.
    pub fn build_node_on(&self, store: Option<Arc<dyn onem2m_sa_tower::store::SaStore>>) -> Node {
        let node = match store {
            Some(store) => Node::with_store(self.node_config(), store),
            None => Node::new(self.node_config()),
        };
        node.set_max_sas_per_peer(self.sa.max_sas_per_peer);
        node.set_kem_update_policy(self.sa.fresh_kem_key_updates);
        for peer in &self.peers {
            node.set_secured_form(peer.id.clone(), peer.secured_form);
        }
        node.set_executed_config(self.sa.executed);
        node.set_recovery(self.sa.recovery);
        for peer in &self.peers {
            node.set_outer(peer.id.clone(), peer.outer_from(&self.node.id));
        }
        node
    }
}

// The file as written: every value that is checked after parsing keeps its span.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Spanned<RawNode>,
    trust_anchor: Option<Spanned<Vec<Spanned<RawAnchor>>>>,
    ingress: Option<Spanned<RawIngress>>,
    egress: Option<Spanned<RawEgress>>,
    #[serde(default)]
    peer: Vec<Spanned<RawPeer>>,
    admin: Option<Spanned<RawListener>>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    coap: RawCoap,
    #[serde(default)]
    sa: RawSa,
    store: Option<Spanned<RawStore>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<String>,
    key: Spanned<String>,
    ticket: Spanned<String>,
    suites: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnchor {
    id: Spanned<String>,
    public_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngress {
    upstream: Spanned<String>,
    #[serde(default)]
    allow_plaintext_from: Vec<Spanned<String>>,
    /// Deprecated: plaintext is refused unless allow-listed. `true` is accepted with a warning,
    /// `false` refused with the migration.
    require_sa: Option<Spanned<bool>>,
    #[serde(default = "yes")]
    map_poa: bool,
    http: Option<Spanned<RawListener>>,
    coap: Option<Spanned<RawListener>>,
    mqtt: Option<Spanned<RawMqtt>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    default_peer: Option<Spanned<String>>,
    #[serde(default)]
    allow_non_loopback: bool,
    http: Option<Spanned<RawListener>>,
    coap: Option<Spanned<RawListener>>,
    mqtt: Option<Spanned<RawMqtt>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    broker: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    listen_broker: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: Spanned<String>,
    address: Spanned<String>,
    to: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    carriage: Option<Spanned<String>>,
    secured_form: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
    #[serde(default)]
    access: crate::access::AccessLevel,
    level: Option<Spanned<String>>,
}

type Number = Option<Spanned<u64>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    max_body_bytes: Number,
    max_header_value_bytes: Number,
    max_headers: Number,
    header_read_timeout_ms: Number,
    request_timeout_ms: Number,
    idle_timeout_ms: Number,
    connect_timeout_ms: Number,
    drain_timeout_ms: Number,
    max_connections: Number,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCoap {
    max_payload_bytes: Number,
    request_timeout_ms: Number,
    drain_timeout_ms: Number,
    max_in_flight: Number,
    max_exchanges_per_peer: Number,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSa {
    rb_timeout_ms: Number,
    rotate_keys_after_secs: Number,
    rotate_identifier_after_secs: Number,
    replay_window: Number,
    max_half_open: Number,
    max_half_open_per_peer: Number,
    max_sas: Number,
    cookie_threshold: Number,
    init_rate_per_source: Number,
    max_sas_per_peer: Number,
    idle_timeout_secs: Number,
    fresh_kem_key_updates: Option<Spanned<RawKemPolicy>>,
    executed_ttl_secs: Number,
    executed_max_entries: Number,
    executed_max_per_peer: Number,
    executed_max_bytes: Number,
    resend_window_secs: Number,
    reestablish_min_interval_secs: Number,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    sentinels: Option<Spanned<Vec<Spanned<String>>>>,
    master: Option<Spanned<String>>,
    cluster: Option<Spanned<Vec<Spanned<String>>>>,
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    kek_file: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    timeout_ms: Number,
    lease_block: Number,
    lease_refresh_ms: Number,
    lease_replicas: Number,
}

/// `sa.fresh_kem_key_updates`: `"auto"`, `"always"`, `"off"`, or a boolean as written before it
/// was a policy (`true` = always, `false` = off).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawKemPolicy {
    Bool(bool),
    Name(String),
}

/// The text being checked, for turning spans into located errors.
struct Doc<'a> {
    text: &'a str,
    file: &'a Path,
    base: PathBuf,
    warnings: RefCell<Vec<ConfigWarning>>,
}

const HOUR_MS: u64 = 3_600_000;

impl Doc<'_> {
    fn line(&self, pos: usize) -> usize {
        let pos = pos.min(self.text.len());
        self.text.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn err(&self, span: Range<usize>, key: impl Into<String>, message: impl Display) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.into(),
            message: message.to_string(),
        }
    }

    fn at<T>(&self, value: &Spanned<T>, key: impl Into<String>, message: impl Display) -> ConfigError {
        self.err(value.span(), key, message)
    }

    fn warn<T>(&self, value: &Spanned<T>, key: impl Into<String>, message: impl Display) {
        self.warnings.borrow_mut().push(ConfigWarning {
            file: self.file.to_owned(),
            line: self.line(value.span().start),
            key: key.into(),
            message: message.to_string(),
        });
    }

    /// A toml or serde error, located: the key is recovered from the error's span.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let mut key = match DeTable::parse(self.text) {
            Ok(root) => key_in_tree(root.get_ref(), self.text, &span),
            Err(_) => key_on_line(self.text, span.start),
        };
        let mut message = e.message().trim_end().to_owned();
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            key = join(&key, field);
            message = "missing key".to_owned();
        } else if message.starts_with("unknown field") {
            message = message.replacen("unknown field", "unknown key", 1);
        }
        if key.is_empty() {
            key = "(top level)".to_owned();
        }
        self.err(span, key, message)
    }

    /// A file name from the configuration, relative to the configuration's directory, made
    /// absolute so that messages show exactly which file was meant.
    fn resolve(&self, name: &str) -> PathBuf {
        let path = self.base.join(name);
        std::path::absolute(&path).unwrap_or(path)
    }

    fn node_id(&self, v: &Spanned<String>, key: &str) -> Result<NodeId, ConfigError> {
        NodeId::new(v.get_ref().as_str()).map_err(|_| {
            self.at(
                v,
                key,
                format!("invalid node ID {:?}: 1 to 256 printable ASCII characters, no spaces", v.get_ref()),
            )
        })
    }

    fn socket(&self, v: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        v.get_ref().parse().map_err(|_| self.at(v, key, format!("invalid socket address {:?}", v.get_ref())))
    }

    /// An `http://host[:port][/path]` URL; other schemes are refused by name.
    fn url(&self, v: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let s = v.get_ref();
        let uri: http::Uri = s.parse().map_err(|e| self.at(v, key, format!("invalid URL {s:?}: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(scheme @ ("https" | "coap" | "coaps" | "mqtt" | "mqtts")) => {
                return Err(self.at(v, key, format!("{scheme}:// is not supported in this build (use http://)")));
            }
            Some(scheme) => return Err(self.at(v, key, format!("unknown URL scheme {scheme:?} (use http://)"))),
            None => return Err(self.at(v, key, format!("{s:?} is not an absolute http:// URL"))),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(self.at(v, key, format!("{s:?} names no host")));
        }
        if uri.query().is_some() {
            return Err(self.at(v, key, format!("{s:?} has a query: give the base URL only")));
        }
        Ok(s.trim_end_matches('/').to_owned())
    }

    /// A peer's address: an `http://` URL ([`Doc::url`]) or `coap://host[:port]` (the port
    /// written out, 5683 when left out); `coaps://` and other schemes are refused by name.
    fn peer_address(&self, v: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let s = v.get_ref();
        if is_mqtt_address(s) {
            return self.mqtt_address(v, key);
        }
        if !is_coap_address(s) {
            if s.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("coaps://")) {
                return Err(self.at(
                    v,
                    key,
                    "coaps:// (DTLS) is not supported in this build: the SA secures the primitive end to end; use \
                     coap://",
                ));
            }
            return self.url(v, key);
        }
        let uri: http::Uri = s.parse().map_err(|e| self.at(v, key, format!("invalid CoAP address {s:?}: {e}")))?;
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(self.at(v, key, format!("{s:?} names no host")));
        };
        if uri.query().is_some() || !matches!(uri.path(), "" | "/") {
            return Err(self.at(v, key, format!("{s:?} has a path or query: give coap://host:port only")));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(self.at(v, key, format!("{s:?} has user information: give coap://host:port only")));
        }
        let port = match uri.port_u16() {
            Some(0) => return Err(self.at(v, key, format!("{s:?}: port 0 is not a peer's port"))),
            Some(p) => p,
            None => COAP_DEFAULT_PORT,
        };
        Ok(format!("coap://{host}:{port}"))
    }

    /// A broker's address: `mqtt://host[:port][/path]` or `mqtts://…` (the port written out,
    /// 1883 or 8883 when left out; the path without a trailing `/`).
    fn mqtt_address(&self, v: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let s = v.get_ref();
        let uri: http::Uri = s.parse().map_err(|e| self.at(v, key, format!("invalid MQTT address {s:?}: {e}")))?;
        let tls = uri.scheme_str().is_some_and(|p| p.eq_ignore_ascii_case("mqtts"));
        if !tls && !uri.scheme_str().is_some_and(|p| p.eq_ignore_ascii_case("mqtt")) {
            return Err(self.at(v, key, format!("{s:?} is not an mqtt:// or mqtts:// address")));
        }
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(self.at(v, key, format!("{s:?} names no host")));
        };
        if uri.query().is_some() || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(self.at(
                v,
                key,
                format!("{s:?} has a query or user information: give mqtt://host:port[/path]"),
            ));
        }
        let path = uri.path().trim_end_matches('/');
        if path.contains(['+', '#']) {
            return Err(self.at(v, key, format!("{s:?}: the path is a topic prefix and may hold no wildcard")));
        }
        let port = match uri.port_u16() {
            Some(0) => return Err(self.at(v, key, format!("{s:?}: port 0 is not a broker's port"))),
            Some(p) => p,
            None if tls => MQTT_DEFAULT_PORTS.1,
            None => MQTT_DEFAULT_PORTS.0,
        };
        Ok(format!("{}://{host}:{port}{path}", if tls { "mqtts" } else { "mqtt" }))
    }

    /// `[ingress.mqtt]` (`broker` required) or `[egress.mqtt]` (no `broker`).
    fn mqtt(&self, raw: &Spanned<RawMqtt>, key: &str, with_broker: bool) -> Result<MqttSettings, ConfigError> {
        let m = raw.get_ref();
        let broker = match (&m.broker, with_broker) {
            (Some(b), true) => Some(self.mqtt_address(b, &format!("{key}.broker"))?),
            (None, true) => {
                return Err(self.at(raw, key, "no broker: add broker = \"mqtt://host:1883\""));
            }
            (Some(b), false) => {
                return Err(self.at(b, format!("{key}.broker"), "peers name their broker in their mqtt:// address"));
            }
            (None, false) => None,
        };
        let listen_broker = match (&m.listen_broker, with_broker) {
            (Some(b), false) => Some(self.mqtt_address(b, &format!("{key}.listen_broker"))?),
            (Some(b), true) => {
                return Err(self.at(
                    b,
                    format!("{key}.listen_broker"),
                    "the local broker of MQTT-only AEs belongs in [egress.mqtt]",
                ));
            }
            (None, _) => None,
        };
        let text = |v: &Option<Spanned<String>>, name: &str| -> Result<Option<String>, ConfigError> {
            match v {
                Some(v) if v.get_ref().is_empty() || v.get_ref().len() > 256 => {
                    Err(self.at(v, format!("{key}.{name}"), "must be 1 to 256 characters"))
                }
                Some(v) => Ok(Some(v.get_ref().clone())),
                None => Ok(None),
            }
        };
        let password = match &m.password_file {
            Some(f) => {
                let path = self.resolve(f.get_ref());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| self.at(f, format!("{key}.password_file"), format!("{}: {e}", path.display())))?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            None => None,
        };
        if password.is_some() && m.username.is_none() {
            return Err(self.at(raw, key, "password_file without username"));
        }
        Ok(MqttSettings {
            broker,
            client_id: text(&m.client_id, "client_id")?,
            username: text(&m.username, "username")?,
            password,
            ca_file: m.ca_file.as_ref().map(|f| self.resolve(f.get_ref())),
            listen_broker,
        })
    }

    /// An egress listener's address: a loopback address, or any with `allow_non_loopback` (and a
    /// warning then).
    fn listener(
        &self,
        v: &Spanned<String>,
        key: &str,
        allow_non_loopback: bool,
        protocol: &str,
    ) -> Result<Listener, ConfigError> {
        let listen = self.socket(v, key)?;
        if !listen.ip().is_loopback() && !allow_non_loopback {
            return Err(self.at(
                v,
                key,
                format!(
                    "{listen} is not a loopback address: whoever reaches the egress speaks as this node \
                     (set egress.allow_non_loopback = true if that is intended)"
                ),
            ));
        }
        if !listen.ip().is_loopback() {
            self.warn(
                v,
                key,
                format!(
                    "{listen} is not a loopback address (egress.allow_non_loopback = true): whoever reaches \
                     the {protocol} egress speaks as this node; keep it behind a firewall"
                ),
            );
        }
        Ok(Listener { listen })
    }

    fn number(&self, v: &Number, key: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(self.at(v, key, format!("{n} is out of range: must be from {} to {}", range.start(), range.end())))
        }
    }

    /// Reads node.key and node.ticket and checks that the ticket is this node's, for this key,
    /// and verifies against the trust anchors at `unix_now`.
    fn credentials(
        &self,
        n: &RawNode,
        id: &NodeId,
        trust_anchors: &TrustAnchors,
        unix_now: u64,
    ) -> Result<Credentials, ConfigError> {
        let key_path = self.resolve(n.key.get_ref());
        let signing_key = keys::read_private_key(&key_path).map_err(|e| self.at(&n.key, "node.key", e))?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&key_path) {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                self.warn(
                    &n.key,
                    "node.key",
                    format!("{} can be read by other users (mode {mode:03o}): chmod 600 it", key_path.display()),
                );
            }
        }
        let ticket_path = self.resolve(n.ticket.get_ref());
        let ticket = keys::read_ticket(&ticket_path).map_err(|e| self.at(&n.ticket, "node.ticket", e))?;
        let ticket_error = |message: String| self.at(&n.ticket, "node.ticket", message);
        if ticket.subject != *id {
            return Err(ticket_error(format!("the ticket is for {}, not for node.id {id}", ticket.subject)));
        }
        if ticket.algorithm != signing_key.algorithm() || ticket.public_key != signing_key.public_key() {
            return Err(ticket_error(format!(
                "the ticket carries another key ({} {}) than node.key ({} {})",
                ticket.algorithm,
                keys::key_fingerprint(&ticket.public_key),
                signing_key.algorithm(),
                keys::key_fingerprint(signing_key.public_key()),
            )));
        }
        if let Err(e) = trust_anchors.verify(&ticket, id, unix_now) {
            return Err(ticket_error(match e {
                TicketError::Expired => {
                    format!("the ticket expired at {}: issue a new one", keys::format_unix(ticket.not_after))
                }
                TicketError::NotYetValid => {
                    format!("the ticket is not valid before {}", keys::format_unix(ticket.not_before))
                }
                TicketError::UnknownIssuer => {
                    format!("the ticket's issuer {} is not a configured [[trust_anchor]]", ticket.issuer)
                }
                TicketError::BadSignature => format!(
                    "the ticket's signature does not verify with the public key of trust anchor {}",
                    ticket.issuer
                ),
                other => format!("the ticket does not verify: {other}"),
            }));
        }
        Credentials::new(id.clone(), signing_key, ticket).map_err(|e| ticket_error(e.to_string()))
    }

    fn suites(&self, raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Result<Vec<Suite>, ConfigError> {
        let Some(list) = raw else { return Ok(Suite::ALL.to_vec()) };
        if list.get_ref().is_empty() {
            return Err(self.at(list, "node.suites", "empty: name at least one suite, or leave the key out for all"));
        }
        let mut suites = Vec::new();
        for (i, name) in list.get_ref().iter().enumerate() {
            let key = format!("node.suites[{i}]");
            let suite: Suite = name.get_ref().parse().map_err(|_| {
                let known: Vec<&str> = Suite::ALL.iter().map(|s| s.name()).collect();
                self.at(name, &key, format!("unknown suite {:?} (known: {})", name.get_ref(), known.join(", ")))
            })?;
            if suites.contains(&suite) {
                return Err(self.at(name, key, format!("{suite} is listed twice")));
            }
            suites.push(suite);
        }
        Ok(suites)
    }

    fn trust_anchors(&self, raw: &RawConfig) -> Result<TrustAnchors, ConfigError> {
        let list = match &raw.trust_anchor {
            Some(list) if !list.get_ref().is_empty() => list.get_ref(),
            other => {
                let span = other.as_ref().map_or(0..0, |l| l.span());
                return Err(self.err(span, "trust_anchor", "at least one [[trust_anchor]] is required"));
            }
        };
        let mut anchors = TrustAnchors::new();
        let mut seen: Vec<(NodeId, usize)> = Vec::new();
        for (i, a) in list.iter().enumerate() {
            let a = a.get_ref();
            let id = self.node_id(&a.id, &format!("trust_anchor[{i}].id"))?;
            if let Some((_, line)) = seen.iter().find(|(s, _)| *s == id) {
                return Err(self.at(
                    &a.id,
                    format!("trust_anchor[{i}].id"),
                    format!("{id} is listed twice (first on line {line})"),
                ));
            }
            seen.push((id.clone(), self.line(a.id.span().start)));
            let path = self.resolve(a.public_key.get_ref());
            let (alg, public) = keys::read_public_key(&path)
                .map_err(|e| self.at(&a.public_key, format!("trust_anchor[{i}].public_key"), e))?;
            anchors.add(id, alg, public);
        }
        Ok(anchors)
    }

    fn peers(&self, raw: &[Spanned<RawPeer>], me: &NodeId) -> Result<Vec<Peer>, ConfigError> {
        let mut peers: Vec<Peer> = Vec::with_capacity(raw.len());
        for (i, p) in raw.iter().enumerate() {
            let p = p.get_ref();
            let key = format!("peer[{i}].id");
            let id = self.node_id(&p.id, &key)?;
            if &id == me {
                return Err(self.at(&p.id, key, format!("{id} is this node (node.id), not a peer")));
            }
            if let Some(j) = peers.iter().position(|q| q.id == id) {
                let line = self.line(raw[j].get_ref().id.span().start);
                return Err(self.at(&p.id, key, format!("{id} is listed twice (first on line {line})")));
            }
            let address = self.peer_address(&p.address, &format!("peer[{i}].address"))?;
            if let Some(host) = host_of(&address).filter(|h| is_example_host(h)) {
                self.warn(
                    &p.address,
                    format!("peer[{i}].address"),
                    format!("{host} is an example host (from examples/): put the address of {id}'s sidecar ingress"),
                );
            }
            let secured_form = match &p.secured_form {
                None => SecuredForm::Auto,
                Some(v) => v.get_ref().parse().map_err(|e| self.at(v, format!("peer[{i}].secured_form"), e))?,
            };
            let outer = self.peer_outer(p, i)?;
            peers.push(Peer { id, address, outer, secured_form });
        }
        // The outer `to` tells the transport which peer a request goes to: one per peer.
        let to = |q: &Peer| q.outer.to.clone().unwrap_or_else(|| q.id.as_str().to_owned());
        for (i, p) in raw.iter().enumerate() {
            let Some(v) = p.get_ref().to.as_ref() else { continue };
            if let Some(j) = (0..peers.len()).find(|&j| j != i && to(&peers[j]) == to(&peers[i])) {
                let why = format!("{} is also how peer[{j}] is addressed", to(&peers[i]));
                return Err(self.at(v, format!("peer[{i}].to"), why));
            }
        }
        Ok(peers)
    }

    /// `peer[i].to`, `.from` and `.carriage`: `to` and `from` are oneM2M IDs (a transit CSE
    /// routes `to`: an SP-relative `/<cse-id>/<resource>`, or a CSE-ID or AE-ID).
    fn peer_outer(&self, p: &RawPeer, i: usize) -> Result<PeerOuter, ConfigError> {
        let id = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, ConfigError> {
            v.as_ref()
                .map(|v| self.node_id(v, &format!("peer[{i}].{key}")).map(|id| id.as_str().to_owned()))
                .transpose()
        };
        let carriage = match &p.carriage {
            None => Carriage::default(),
            Some(c) => c.get_ref().parse().map_err(|e: String| self.at(c, format!("peer[{i}].carriage"), e))?,
        };
        Ok(PeerOuter { to: id(&p.to, "to")?, from: id(&p.from, "from")?, carriage })
    }

    fn ingress(&self, raw: &Spanned<RawIngress>) -> Result<Ingress, ConfigError> {
        let i = raw.get_ref();
        let upstream = if is_mqtt_address(i.upstream.get_ref()) {
            self.mqtt_address(&i.upstream, "ingress.upstream")?
        } else {
            self.url(&i.upstream, "ingress.upstream")?
        };
        if !is_loopback_url(&upstream) {
            self.warn(
                &i.upstream,
                "ingress.upstream",
                format!(
                    "{upstream} is not on loopback: the hop to it is plaintext, and its X-SA-Peer header can be \
                     trusted only if nothing but this sidecar reaches it (keep it on the host or in the pod)"
                ),
            );
        }
        let mut plaintext = PlaintextPolicy::default();
        for (n, p) in i.allow_plaintext_from.iter().enumerate() {
            if p.get_ref().is_empty() {
                plaintext.allow_anonymous = true;
                continue;
            }
            let pattern = p.get_ref().parse::<OriginatorPattern>().map_err(|_| {
                self.at(
                    p,
                    format!("ingress.allow_plaintext_from[{n}]"),
                    format!(
                        "invalid originator pattern {:?}: an ID, a prefix ending in *, *, or \"\" (no originator)",
                        p.get_ref()
                    ),
                )
            })?;
            plaintext.allow.push(pattern);
        }
        match &i.require_sa {
            Some(v) if !*v.get_ref() => {
                return Err(self.at(
                    v,
                    "ingress.require_sa",
                    "plaintext is now refused unless allow-listed, so `false` no longer admits AEs: remove the \
                     key and list who may talk in plaintext in ingress.allow_plaintext_from (the old behaviour was \
                     about [\"C*\", \"S*\", \"\"]; see docs/deploy.md §5)",
                ));
            }
            Some(v) => self.warn(
                v,
                "ingress.require_sa",
                "deprecated and now the default (plaintext is refused unless in ingress.allow_plaintext_from): \
                 remove the key",
            ),
            None => {}
        }
        let http = match &i.http {
            Some(l) => Some(Listener { listen: self.socket(&l.get_ref().listen, "ingress.http.listen")? }),
            None => None,
        };
        let coap = match &i.coap {
            Some(l) => Some(Listener { listen: self.socket(&l.get_ref().listen, "ingress.coap.listen")? }),
            None => None,
        };
        let mqtt = match &i.mqtt {
            Some(m) => Some(self.mqtt(m, "ingress.mqtt", true)?),
            None => None,
        };
        if http.is_none() && coap.is_none() && mqtt.is_none() {
            return Err(self.at(
                raw,
                "ingress",
                "no listener: add [ingress.http] with listen = \"0.0.0.0:8443\" (or [ingress.coap] with listen = \
                 \"0.0.0.0:5683\")",
            ));
        }
        Ok(Ingress { upstream, plaintext, map_poa: i.map_poa, http, coap, mqtt })
    }

    fn egress(
        &self,
        raw: &Spanned<RawEgress>,
        raw_peers: &[Spanned<RawPeer>],
        peers: &[Peer],
    ) -> Result<Egress, ConfigError> {
        let e = raw.get_ref();
        let mqtt = match &e.mqtt {
            Some(m) => Some(self.mqtt(m, "egress.mqtt", false)?),
            None => None,
        };
        let http = match &e.http {
            Some(l) => Some(self.listener(&l.get_ref().listen, "egress.http.listen", e.allow_non_loopback, "HTTP")?),
            None => None,
        };
        let coap = match &e.coap {
            Some(l) => Some(self.listener(&l.get_ref().listen, "egress.coap.listen", e.allow_non_loopback, "CoAP")?),
            None => None,
        };
        let listen_broker = mqtt.as_ref().and_then(|m| m.listen_broker.as_deref());
        if http.is_none() && coap.is_none() && listen_broker.is_none() {
            return Err(self.at(
                raw,
                "egress",
                "no listener: add [egress.http] with listen = \"127.0.0.1:8081\" (or [egress.coap] with listen = \
                 \"127.0.0.1:5684\", or listen_broker = \"mqtt://127.0.0.1:1883\" in [egress.mqtt])",
            ));
        }
        if let Some(local) = listen_broker {
            // A peer's sidecar at that broker subscribes to the same request topics (those to its
            // CSE-ID): both would answer the AEs, one of them in the clear.
            if let Some(i) = peers.iter().position(|p| p.address == local) {
                let at = e.mqtt.as_ref().and_then(|m| m.get_ref().listen_broker.as_ref()).expect("parsed above");
                return Err(self.at(
                    at,
                    "egress.mqtt.listen_broker",
                    format!(
                        "{local} is where peer {} is reached: the AEs' local broker must be another one (the peer \
                         would receive their plaintext requests too)",
                        peers[i].id
                    ),
                ));
            }
        }
        if peers.is_empty() {
            return Err(self.at(
                raw,
                "egress",
                "no [[peer]] to send to: add at least one [[peer]] with id and address",
            ));
        }
        let default_peer = match &e.default_peer {
            Some(v) => {
                let id = self.node_id(v, "egress.default_peer")?;
                if !peers.iter().any(|p| p.id == id) {
                    let ids: Vec<&str> = raw_peers.iter().map(|p| p.get_ref().id.get_ref().as_str()).collect();
                    return Err(self.at(
                        v,
                        "egress.default_peer",
                        format!("{id} is not a [[peer]] (peers: {})", ids.join(", ")),
                    ));
                }
                Some(id)
            }
            None => None,
        };
        Ok(Egress { default_peer, http, coap, mqtt })
    }

    /// No two listeners on one address (an unspecified address overlaps every address).
    /// TCP (HTTP, admin) and UDP (CoAP) listeners are checked apart: a port number of each may
    /// be the same.
    fn distinct_listeners(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        let tcp = [
            ("ingress.http.listen", raw.ingress.as_ref().and_then(|i| i.get_ref().http.as_ref())),
            ("egress.http.listen", raw.egress.as_ref().and_then(|e| e.get_ref().http.as_ref())),
            ("admin.listen", raw.admin.as_ref()),
        ];
        let udp = [
            ("ingress.coap.listen", raw.ingress.as_ref().and_then(|i| i.get_ref().coap.as_ref())),
            ("egress.coap.listen", raw.egress.as_ref().and_then(|e| e.get_ref().coap.as_ref())),
        ];
        self.distinct(&tcp)?;
        self.distinct(&udp)
    }

    fn distinct(&self, listeners: &[(&str, Option<&Spanned<RawListener>>)]) -> Result<(), ConfigError> {
        let mut seen: Vec<(&str, &Spanned<String>, SocketAddr)> = Vec::new();
        for &(key, l) in listeners {
            let Some(l) = l else { continue };
            let v = &l.get_ref().listen;
            let addr = self.socket(v, key)?;
            for (other_key, other, other_addr) in &seen {
                let overlap =
                    addr.ip() == other_addr.ip() || addr.ip().is_unspecified() || other_addr.ip().is_unspecified();
                if addr.port() != 0 && addr.port() == other_addr.port() && overlap {
                    let line = self.line(other.span().start);
                    return Err(self.at(v, key, format!("{addr} overlaps {other_key} {other_addr} (line {line})")));
                }
            }
            seen.push((key, v, addr));
        }
        Ok(())
    }

    fn log(&self, raw: &RawLog) -> Result<LogSettings, ConfigError> {
        let level = match &raw.level {
            Some(v) => {
                tracing_subscriber::EnvFilter::try_new(v.get_ref())
                    .map_err(|e| self.at(v, "log.level", format!("invalid filter directive {:?}: {e}", v.get_ref())))?;
                v.get_ref().clone()
            }
            None => LogSettings::default().level,
        };
        Ok(LogSettings { format: raw.format, level, access: raw.access })
    }

    fn http(&self, h: &RawHttp) -> Result<HttpSettings, ConfigError> {
        let d = HttpSettings::default();
        let size = |v: &Number, key: &str, default: usize, range| {
            self.number(v, key, default as u64, range).map(|n| n as usize)
        };
        let ms = |v: &Number, key: &str, default: Duration, range| {
            self.number(v, key, default.as_millis() as u64, range).map(Duration::from_millis)
        };
        Ok(HttpSettings {
            max_body_bytes: size(&h.max_body_bytes, "http.max_body_bytes", d.max_body_bytes, 1..=64 << 20)?,
            max_header_value_bytes: size(
                &h.max_header_value_bytes,
                "http.max_header_value_bytes",
                d.max_header_value_bytes,
                256..=1 << 20,
            )?,
            max_headers: size(&h.max_headers, "http.max_headers", d.max_headers, 1..=10_000)?,
            header_read_timeout: ms(
                &h.header_read_timeout_ms,
                "http.header_read_timeout_ms",
                d.header_read_timeout,
                1..=HOUR_MS,
            )?,
            request_timeout: ms(&h.request_timeout_ms, "http.request_timeout_ms", d.request_timeout, 1..=HOUR_MS)?,
            idle_timeout: ms(&h.idle_timeout_ms, "http.idle_timeout_ms", d.idle_timeout, 1..=24 * HOUR_MS)?,
            connect_timeout: ms(&h.connect_timeout_ms, "http.connect_timeout_ms", d.connect_timeout, 1..=600_000)?,
            drain_timeout: ms(&h.drain_timeout_ms, "http.drain_timeout_ms", d.drain_timeout, 0..=HOUR_MS)?,
            max_connections: size(&h.max_connections, "http.max_connections", d.max_connections, 1..=1_000_000)?,
        })
    }

    fn coap(&self, c: &RawCoap) -> Result<CoapSettings, ConfigError> {
        let d = CoapSettings::default();
        let size = |v: &Number, key: &str, default: usize, range| {
            self.number(v, key, default as u64, range).map(|n| n as usize)
        };
        let ms = |v: &Number, key: &str, default: Duration, range| {
            self.number(v, key, default.as_millis() as u64, range).map(Duration::from_millis)
        };
        Ok(CoapSettings {
            max_payload_bytes: size(&c.max_payload_bytes, "coap.max_payload_bytes", d.max_payload_bytes, 1..=64 << 20)?,
            request_timeout: ms(&c.request_timeout_ms, "coap.request_timeout_ms", d.request_timeout, 1..=HOUR_MS)?,
            drain_timeout: ms(&c.drain_timeout_ms, "coap.drain_timeout_ms", d.drain_timeout, 0..=HOUR_MS)?,
            max_in_flight: size(&c.max_in_flight, "coap.max_in_flight", d.max_in_flight, 1..=100_000)?,
            max_exchanges_per_peer: size(
                &c.max_exchanges_per_peer,
                "coap.max_exchanges_per_peer",
                d.max_exchanges_per_peer,
                1..=1_000_000,
            )?,
        })
    }

    /// A period that can be off (a rotation, the idle timeout): 0 (off) or at least a minute, at
    /// most ten years.
    /// `[store]`: `kind = "memory"` (the default; no other key) or `"redis"` with `url` and
    /// `kek_file` required.
    fn store(&self, raw: &Spanned<RawStore>, window: usize) -> Result<StoreSettings, ConfigError> {
        let s = raw.get_ref();
        let redis = match &s.kind {
            None => false,
            Some(k) if k.get_ref() == "memory" => false,
            Some(k) if k.get_ref() == "redis" => true,
            Some(k) => {
                return Err(self.at(
                    k,
                    "store.kind",
                    format!("unknown store {:?}: \"memory\" or \"redis\"", k.get_ref()),
                ));
            }
        };
        if !redis {
            let set = [
                ("url", s.url.as_ref().map(|v| v.span())),
                ("sentinels", s.sentinels.as_ref().map(|v| v.span())),
                ("master", s.master.as_ref().map(|v| v.span())),
                ("cluster", s.cluster.as_ref().map(|v| v.span())),
                ("ca_file", s.ca_file.as_ref().map(|v| v.span())),
                ("cert_file", s.cert_file.as_ref().map(|v| v.span())),
                ("key_file", s.key_file.as_ref().map(|v| v.span())),
                ("kek_file", s.kek_file.as_ref().map(|v| v.span())),
                ("prefix", s.prefix.as_ref().map(|v| v.span())),
                ("timeout_ms", s.timeout_ms.as_ref().map(|v| v.span())),
                ("lease_block", s.lease_block.as_ref().map(|v| v.span())),
                ("lease_refresh_ms", s.lease_refresh_ms.as_ref().map(|v| v.span())),
                ("lease_replicas", s.lease_replicas.as_ref().map(|v| v.span())),
            ];
            if let Some((name, span)) = set.into_iter().find_map(|(n, sp)| Some((n, sp?))) {
                return Err(self.err(
                    span,
                    format!("store.{name}"),
                    "only with kind = \"redis\" (the SAs are in memory)",
                ));
            }
            return Ok(StoreSettings::Memory);
        }
        let mut cluster = Vec::new();
        if let Some(list) = &s.cluster {
            let other = match (&s.sentinels, &s.master) {
                (Some(v), _) => Some((v.span(), "store.sentinels")),
                (None, Some(v)) => Some((v.span(), "store.master")),
                (None, None) => None,
            };
            if let Some((span, key)) = other {
                return Err(self.err(span, key, "not with cluster: a store is a server, Sentinels or a cluster"));
            }
            if let Some(url) = &s.url {
                return Err(self.at(
                    url,
                    "store.url",
                    "not with cluster: give each node's address (and credentials) in cluster",
                ));
            }
            if list.get_ref().is_empty() {
                return Err(self.at(list, "store.cluster", "name at least one node (\"redis://host:7000\")"));
            }
            for (i, v) in list.get_ref().iter().enumerate() {
                let key = format!("store.cluster[{i}]");
                let url = self.redis_url(v, &key)?;
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(self.at(v, key, "a cluster node is reached at redis://host:port (or rediss://)"));
                }
                cluster.push(url);
            }
        }
        let (url, sentinels, master) = match (&s.sentinels, &s.master) {
            (None, None) if !cluster.is_empty() => (String::new(), Vec::new(), None),
            (None, None) => {
                let Some(url) = &s.url else {
                    return Err(self.at(
                        raw,
                        "store",
                        "no url: add url = \"redis://host:6379/0\" (or sentinels and master, or cluster)",
                    ));
                };
                (self.redis_url(url, "store.url")?, Vec::new(), None)
            }
            (Some(list), Some(master)) => {
                if list.get_ref().is_empty() {
                    return Err(self.at(
                        list,
                        "store.sentinels",
                        "name at least one Sentinel (\"redis://host:26379\")",
                    ));
                }
                let mut sentinels = Vec::new();
                for (i, v) in list.get_ref().iter().enumerate() {
                    let key = format!("store.sentinels[{i}]");
                    let url = self.redis_url(v, &key)?;
                    if !url.starts_with("redis://") {
                        return Err(self.at(v, key, "a Sentinel is reached at redis://host:port"));
                    }
                    sentinels.push(url);
                }
                let name = master.get_ref();
                if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(self.at(master, "store.master", "must be 1 to 128 characters, no spaces"));
                }
                // The master's credentials and database, if any: its host is whatever the
                // Sentinels name.
                let url = match &s.url {
                    Some(url) => self.redis_url(url, "store.url")?,
                    None => String::new(),
                };
                (url, sentinels, Some(name.clone()))
            }
            (Some(list), None) => {
                return Err(self.at(list, "store.sentinels", "sentinels without master: add master = \"mymaster\""));
            }
            (None, Some(master)) => return Err(self.at(master, "store.master", "master without sentinels")),
        };
        let (ca_file, client_cert) = self.store_tls(s, &url, &cluster)?;
        let failover = u8::from(!cluster.is_empty() || !sentinels.is_empty());
        let Some(kek_file) = &s.kek_file else {
            return Err(self.at(
                raw,
                "store",
                "no kek_file: the SA records in Redis are sealed under a key-encryption key (64 hex digits, \
                 `openssl rand -hex 32 > store.kek`)",
            ));
        };
        let kek = self.kek(kek_file)?;
        let prefix = match &s.prefix {
            Some(p)
                if p.get_ref().is_empty()
                    || p.get_ref().len() > 128
                    || p.get_ref().chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err(self.at(p, "store.prefix", "must be 1 to 128 characters, no spaces"));
            }
            Some(p) => p.get_ref().clone(),
            None => "onem2m-sa:".to_owned(),
        };
        let ms =
            |v: &Number, key: &str, default: u64, range| self.number(v, key, default, range).map(Duration::from_millis);
        // Blocks of every replica interleave within the peer's replay window: a quarter of it
        // at most (with the default window, 3 replicas of blocks of 32 use a tenth).
        let max_block = (window as u64 / 4).max(1);
        Ok(StoreSettings::Redis(RedisSettings {
            url,
            sentinels,
            master,
            cluster,
            ca_file,
            client_cert,
            kek,
            prefix,
            timeout: ms(&s.timeout_ms, "store.timeout_ms", 2_000, 10..=60_000)?,
            lease_block: self.number(&s.lease_block, "store.lease_block", 32.min(max_block), 1..=max_block)?,
            lease_refresh: ms(&s.lease_refresh_ms, "store.lease_refresh_ms", 250, 10..=60_000)?,
            // Sentinel and cluster deployments fail over to a replica: leases wait for one.
            lease_replicas: self.number(&s.lease_replicas, "store.lease_replicas", failover.into(), 0..=16)? as u32,
        }))
    }

    /// A Redis address: `redis://[user:password@]host[:port][/db]`, the same with `rediss://`
    /// (TLS), or `redis+unix:///path` (`unix:///path`).
    fn redis_url(&self, v: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let s = v.get_ref();
        let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
        match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" => {
                let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if host.is_empty() || host.starts_with(':') {
                    return Err(self.at(v, key, format!("{:?} names no host", redacted_url(s))));
                }
                if !db.is_empty() && db.parse::<u16>().is_err() {
                    return Err(self.at(v, key, format!("{:?}: the path is the database number", redacted_url(s))));
                }
                Ok(s.clone())
            }
            "redis+unix" | "unix" if rest.starts_with('/') => Ok(s.clone()),
            "redis+unix" | "unix" => Err(self.at(v, key, format!("{s:?}: give the socket's absolute path"))),
            _ => Err(self.at(
                v,
                key,
                format!("{:?} is not a redis://, rediss:// or redis+unix:// address", redacted_url(s)),
            )),
        }
    }

    /// `store.ca_file`, `cert_file`, `key_file`: TLS to Redis, only with `rediss://` addresses
    /// (not through Sentinel); the files must be readable now; a key file others can read is
    /// warned about.
    #[allow(clippy::type_complexity)]
    fn store_tls(
        &self,
        s: &RawStore,
        url: &str,
        cluster: &[String],
    ) -> Result<(Option<PathBuf>, Option<(PathBuf, PathBuf)>), ConfigError> {
        let tls = |u: &str| u.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("rediss://"));
        if tls(url) && s.sentinels.is_some() {
            let at = s.url.as_ref().expect("a url was given");
            return Err(self.at(at, "store.url", "rediss:// through Sentinel is not supported: a server or a cluster"));
        }
        let any_tls = tls(url) || cluster.iter().any(|n| tls(n));
        let file = |v: &Spanned<String>, key: &str| -> Result<PathBuf, ConfigError> {
            if !any_tls {
                return Err(self.at(v, key, "only with rediss:// addresses (TLS to Redis)"));
            }
            let path = self.resolve(v.get_ref());
            std::fs::File::open(&path).map_err(|e| self.at(v, key, format!("{}: {e}", path.display())))?;
            Ok(path)
        };
        let ca = s.ca_file.as_ref().map(|v| file(v, "store.ca_file")).transpose()?;
        let client = match (&s.cert_file, &s.key_file) {
            (Some(cert), Some(key)) => {
                let (cert, key_path) = (file(cert, "store.cert_file")?, file(key, "store.key_file")?);
                #[cfg(unix)]
                if let Ok(meta) = std::fs::metadata(&key_path) {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        self.warn(
                            key,
                            "store.key_file",
                            format!(
                                "{} can be read by other users (mode {mode:03o}): chmod 600 it",
                                key_path.display()
                            ),
                        );
                    }
                }
                Some((cert, key_path))
            }
            (Some(v), None) => return Err(self.at(v, "store.cert_file", "cert_file without key_file")),
            (None, Some(v)) => return Err(self.at(v, "store.key_file", "key_file without cert_file")),
            (None, None) => None,
        };
        Ok((ca, client))
    }

    /// Reads `store.kek_file`: the key-encryption key as 64 hex digits (surrounding whitespace
    /// ignored). Its content is never shown; a file others can read is warned about.
    fn kek(&self, v: &Spanned<String>) -> Result<Arc<zeroize::Zeroizing<[u8; 32]>>, ConfigError> {
        use std::io::Read as _;
        let path = self.resolve(v.get_ref());
        let bad = |why: String| self.at(v, "store.kek_file", format!("{}: {why}", path.display()));
        let mut text = zeroize::Zeroizing::new(String::new());
        std::fs::File::open(&path)
            .and_then(|f| f.take(1024).read_to_string(&mut text))
            .map_err(|e| bad(e.to_string()))?;
        let mut kek = zeroize::Zeroizing::new([0u8; 32]);
        if hex::decode_to_slice(text.trim(), &mut kek[..]).is_err() {
            return Err(bad("must hold the key-encryption key as 64 hex digits (`openssl rand -hex 32`)".to_owned()));
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                self.warn(
                    v,
                    "store.kek_file",
                    format!("{} can be read by other users (mode {mode:03o}): chmod 600 it", path.display()),
                );
            }
        }
        Ok(Arc::new(kek))
    }

    fn rotation(&self, v: &Number, key: &str) -> Result<Option<Duration>, ConfigError> {
        let secs = self.number(v, key, 0, 0..=10 * 365 * 86_400)?;
        match (secs, v) {
            (0, _) => Ok(None),
            (1..60, Some(v)) => Err(self.at(v, key, format!("{secs} is too short: 0 (off) or at least 60 seconds"))),
            _ => Ok(Some(Duration::from_secs(secs))),
        }
    }

    fn sa(&self, s: &RawSa) -> Result<SaSettings, ConfigError> {
        let d = SaSettings::default();
        let count = |v: &Number, key: &str, default: usize, range| {
            self.number(v, key, default as u64, range).map(|n| n as usize)
        };
        let max_half_open = count(&s.max_half_open, "sa.max_half_open", d.limits.max_half_open, 1..=1_000_000)?;
        let max_sas = count(&s.max_sas, "sa.max_sas", d.limits.max_sas, 1..=10_000_000)?;
        let window = onem2m_sa::replay::MIN_WINDOW as u64..=onem2m_sa::replay::MAX_WINDOW as u64;
        let secs = |v: &Number, key: &str, default: Duration, range| {
            self.number(v, key, default.as_secs(), range).map(Duration::from_secs)
        };
        let ttl = secs(&s.executed_ttl_secs, "sa.executed_ttl_secs", d.executed.ttl, 1..=86_400)?;
        let resend_window = secs(&s.resend_window_secs, "sa.resend_window_secs", d.recovery.resend_window, 0..=3600)?;
        if resend_window >= ttl {
            let message = format!(
                "the resend window ({} s) must be shorter than sa.executed_ttl_secs ({} s): a resend must reach \
                 the peer while it still keeps the first copy's answer",
                resend_window.as_secs(),
                ttl.as_secs()
            );
            // At the key that was set (the defaults agree, so one of them was).
            return Err(match (&s.resend_window_secs, &s.executed_ttl_secs) {
                (Some(v), _) => self.at(v, "sa.resend_window_secs", message),
                (None, Some(v)) => self.at(v, "sa.executed_ttl_secs", message),
                (None, None) => self.err(0..0, "sa.resend_window_secs", message),
            });
        }
        let max_entries =
            count(&s.executed_max_entries, "sa.executed_max_entries", d.executed.max_entries, 1..=10_000_000)?;
        let executed = ExecutedConfig {
            ttl,
            max_entries,
            max_per_peer: count(
                &s.executed_max_per_peer,
                "sa.executed_max_per_peer",
                d.executed.max_per_peer.min(max_entries),
                1..=max_entries as u64,
            )?,
            max_answer_bytes: count(
                &s.executed_max_bytes,
                "sa.executed_max_bytes",
                d.executed.max_answer_bytes,
                1 << 20..=1 << 34,
            )?,
        };
        Ok(SaSettings {
            rb_timeout: self
                .number(&s.rb_timeout_ms, "sa.rb_timeout_ms", d.rb_timeout.as_millis() as u64, 1..=600_000)
                .map(Duration::from_millis)?,
            rotation: Rotation {
                keys_after: self.rotation(&s.rotate_keys_after_secs, "sa.rotate_keys_after_secs")?,
                identifier_after: self.rotation(&s.rotate_identifier_after_secs, "sa.rotate_identifier_after_secs")?,
            },
            replay_window: count(&s.replay_window, "sa.replay_window", d.replay_window, window)?,
            limits: Limits {
                max_half_open,
                max_half_open_per_peer: count(
                    &s.max_half_open_per_peer,
                    "sa.max_half_open_per_peer",
                    d.limits.max_half_open_per_peer.min(max_half_open),
                    1..=max_half_open as u64,
                )?,
                max_sas,
                cookie_threshold: count(
                    &s.cookie_threshold,
                    "sa.cookie_threshold",
                    d.limits.cookie_threshold.min(max_half_open),
                    0..=max_half_open as u64,
                )?,
                init_rate_per_source: count(
                    &s.init_rate_per_source,
                    "sa.init_rate_per_source",
                    d.limits.init_rate_per_source as usize,
                    0..=1_000_000,
                )? as u32,
            },
            max_sas_per_peer: count(
                &s.max_sas_per_peer,
                "sa.max_sas_per_peer",
                d.max_sas_per_peer.min(max_sas),
                1..=max_sas as u64,
            )?,
            idle_timeout: self.rotation(&s.idle_timeout_secs, "sa.idle_timeout_secs")?,
            fresh_kem_key_updates: match &s.fresh_kem_key_updates {
                None => d.fresh_kem_key_updates,
                Some(v) => match v.get_ref() {
                    RawKemPolicy::Bool(true) => KemUpdatePolicy::Always,
                    RawKemPolicy::Bool(false) => KemUpdatePolicy::Off,
                    RawKemPolicy::Name(n) if n == "auto" => KemUpdatePolicy::Auto,
                    RawKemPolicy::Name(n) if n == "always" => KemUpdatePolicy::Always,
                    RawKemPolicy::Name(n) if n == "off" => KemUpdatePolicy::Off,
                    RawKemPolicy::Name(n) => {
                        let why = format!(
                            "`{n}` is not a policy: \"auto\" (with peers that negotiated kem-update), \"always\" or \"off\""
                        );
                        return Err(self.at(v, "sa.fresh_kem_key_updates", why));
                    }
                },
            },
            executed,
            recovery: Recovery {
                min_interval: secs(
                    &s.reestablish_min_interval_secs,
                    "sa.reestablish_min_interval_secs",
                    d.recovery.min_interval,
                    1..=3600,
                )?,
                resend_window,
            },
        })
    }
}

/// Whether an `http://` URL's host is a loopback address or `localhost`.
fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

/// One key or array element of the document, with where its key and value are.
struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

fn walk(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        push(join(prefix, k.get_ref()), k.span(), v, out);
    }
}

fn push(path: String, key: Range<usize>, v: &Spanned<DeValue<'_>>, out: &mut Vec<Entry>) {
    out.push(Entry { path: path.clone(), key, value: v.span() });
    match v.get_ref() {
        DeValue::Table(t) => walk(t, &path, out),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                push(format!("{path}[{i}]"), e.span(), e, out);
            }
        }
        _ => {}
    }
}

/// The dotted key a deserialization error at `span` is about: the tightest key or value around
/// it in the (well-formed) document; the document's own span (`0..0`) is the top.
fn key_in_tree(root: &DeTable<'_>, text: &str, span: &Range<usize>) -> String {
    if *span == (0..0) {
        return String::new();
    }
    let mut entries = Vec::new();
    walk(root, "", &mut entries);
    let around = |r: &Range<usize>| r.start <= span.start && span.end <= r.end;
    entries
        .iter()
        .flat_map(|e| [(e, &e.key), (e, &e.value)])
        .filter(|(_, r)| around(r))
        .min_by_key(|(e, r)| (r.len(), std::cmp::Reverse(e.path.len())))
        .map_or_else(|| key_on_line(text, span.start), |(e, _)| e.path.clone())
}

/// The dotted key a syntax error at byte `pos` is about, from the text alone (a document that
/// does not parse has no reliable tree): the header on the error's line, or the table the line
/// is in and the bare key the line starts with.
fn key_on_line(text: &str, pos: usize) -> String {
    let pos = pos.min(text.len());
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    // The header on this line, else the nearest one above it.
    let mut table = String::new();
    let mut end = line_start + line.len();
    loop {
        let start = text[..end].rfind('\n').map_or(0, |i| i + 1);
        if let Some(h) = header(&text[..start], &text[start..end]) {
            if start == line_start {
                return h;
            }
            table = h;
            break;
        }
        if start == 0 {
            break;
        }
        end = start - 1;
    }
    let bare: String =
        line.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).collect();
    join(&table, &bare)
}

/// The key a `[table]` or `[[array]]` header line opens (`peer[2]` for the third `[[peer]]`),
/// given the text before the line.
fn header(before: &str, line: &str) -> Option<String> {
    let line = line.trim();
    let array = line.starts_with("[[");
    let name: String =
        line.strip_prefix('[')?.trim_start_matches('[').chars().take_while(|&c| c != ']' && c != '#').collect();
    let name = name.split('.').map(str::trim).collect::<Vec<_>>().join(".");
    if !array {
        return Some(name);
    }
    let same = |l: &str| {
        let l = l.trim();
        l.starts_with("[[")
            && l.trim_start_matches('[')
                .split(']')
                .next()
                .is_some_and(|n| n.split('.').map(str::trim).eq(name.split('.')))
    };
    Some(format!("{name}[{}]", before.lines().filter(|l| same(l)).count()))
}
