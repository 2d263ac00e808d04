//! A Redis SA store for replicas of a oneM2M SA node.
//!
//! Several replicas of a CSE-side sidecar serve the same SAs. Each keeps a local
//! [`SaTable`] — the hot path reads only that, lock-free, as a single node does — and this store
//! keeps the tables in step through Redis:
//!
//! * **Records** (`<prefix>sa:<id>`): every established or updated SA, written by
//!   [`RedisStore::publish`] as an [`onem2m_sa::record`] sealed under the key-encryption key
//!   ([`Kek`], AES-256-GCM, bound to the key name, format version and a generation drawn from
//!   `<prefix>gen`). A removal writes a sealed tombstone; a record that does not authenticate, or
//!   whose generation is not above the last one applied, is refused.
//! * **Events** (channel `<prefix>events`): `p <id>` after every write. Each replica's listener
//!   ([`RedisStore::spawn_listener`]) reads the record and installs, rekeys or removes the SA in
//!   its table; after every (re)connection it re-reads all records (catch-up). No round trip per
//!   message.
//! * **Sequence numbers** (`<prefix>seq:<lease id>`): each replica leases blocks of send
//!   sequence numbers with one `INCRBY` ([`onem2m_sa::lease`]), fetched ahead when half a block
//!   is used. No two replicas seal with the same nonce; a replica that dies leaks the unused rest
//!   of its block.
//! * **Replay window** (`<prefix>win:<id>:<epoch>`): where requests of one SA may reach several
//!   replicas, [`RedisStore::accept`] marks each accepted sequence number with one Lua script
//!   (a sorted set trimmed to the window), atomically across replicas.
//! * **Ownership** (`<prefix>own:<id>`): [`RedisStore::claim`] — `SET NX PX`, renewed by the
//!   holder while it holds it — makes one replica the one that removes an expired SA from the
//!   store (`Node::tick_at` claims at expiry; a claim lapses when its holder dies).
//! * **Executed requests** (`<prefix>exe:<key>`, the key a digest of the authenticated peer,
//!   the originator and the request identifier): [`RedisStore::admit_executed`] enters each
//!   request but RETRIEVE with one Lua script (`SET NX PX`, or the entry already there) as
//!   executing, [`RedisStore::record_executed`] replaces that with its answer; both sealed
//!   under a key derived from the key-encryption key for the entry (an answer carries the
//!   CSE's data; [`Kek::seal_per_name`]) and kept for
//!   [`RedisStoreConfig::executed_ttl`]. A copy resent over a new SA that lands on another
//!   replica gets the first copy's answer instead of executing again.
//!
//! Redis can be one server, the master Redis Sentinel names ([`RedisStoreConfig::sentinel`]),
//! or a Redis Cluster ([`RedisStoreConfig::cluster`]: every key then carries the prefix as its
//! hash tag, so the store lives in one slot and its scripts and atomic writes may span keys).
//!
//! When Redis is unreachable (at start too: [`RedisStore::open`] does not wait for it) the local
//! tables keep serving the SAs they hold;
//! [`RedisStore::publish`] fails with [`StoreError::Unavailable`] (new establishments are
//! refused), and the listener catches up when Redis returns.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod kek;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use onem2m_sa::lease::{LeaseKey, LeaseProvider, SeqLease};
use onem2m_sa::record::{from_record, to_record};
use onem2m_sa::table::{SaTable, TableConfig};
use onem2m_sa::{EstablishedSa, Now, SaId};
pub use onem2m_sa_tower::store::{SaStore, StoreError, StoreFuture};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

pub use kek::{Kek, SEALED_VERSION};

/// Where Redis Sentinel says the master is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// The Sentinels, `redis://host:port` each (tried in order).
    pub nodes: Vec<String>,
    /// The name the Sentinels monitor the master under.
    pub master: String,
}

/// Settings of the Redis store. `Debug` shows no password (`<redacted>`).
#[derive(Clone)]
pub struct RedisStoreConfig {
    /// `redis://host:port/db` (or `redis+unix://`). With [`Self::sentinel`], the master's
    /// database and credentials only (its host is whatever the Sentinels name).
    pub url: String,
    /// Redis Sentinel: the master is asked of the Sentinels at each (re)connection, so a
    /// failover moves the replicas to the new master.
    pub sentinel: Option<SentinelAddress>,
    /// Redis Cluster: some of its nodes (`redis://host:port` each; the client learns the rest
    /// and follows failovers and slot moves). Empty: not a cluster. Every key and the event
    /// channel then carry the prefix as their hash tag (`{onem2m-sa:}sa:…`), so they live in
    /// one hash slot: the Lua scripts and the atomic writes span several keys, which Redis
    /// Cluster allows within one slot only. The cluster gives the store failover, not sharding.
    pub cluster: Vec<String>,
    /// TLS to Redis, for `rediss://` addresses (of the server or the cluster's nodes).
    pub tls: RedisTls,
    /// Replicas of the Redis master that must hold a leased block of sequence numbers before
    /// it is used (`WAIT`), of those connected to the master at the time: with Sentinel or a
    /// cluster, a failover may promote a replica that missed the master's latest writes, and a
    /// lost lease would hand the same numbers — the same nonces — to a second replica. 0: no
    /// wait (one server, with persistence). A lease the connected replicas do not acknowledge
    /// in time is not used (answers wait for the next one); a master without a replica
    /// connected is not waited on (nothing could fail over to a copy missing the lease).
    pub lease_replicas: u32,
    /// Prefix of every key and channel: replicas of one deployment share it.
    pub prefix: String,
    /// Sequence numbers per leased block. Keep `replicas × lease_block` well below the peer's
    /// replay window (1024 by default): numbers of one replica's block lag those of the others'
    /// newer blocks by up to that much.
    pub lease_block: u64,
    /// Shared replay window, in sequence numbers.
    pub window: u64,
    /// How long a tombstone and a shared window outlive their last write, in milliseconds.
    pub linger_ms: u64,
    /// Longest wait for one Redis command before the store counts as unavailable.
    pub timeout: Duration,
    /// A leased block older than this is replaced by a fresh one (its unused numbers are
    /// dropped), so an idle replica does not seal with numbers the peer's replay window has
    /// left behind. The rule: a peer window of `W` tolerates `W / 2` messages of an SA per
    /// refresh period on the other replicas.
    pub lease_refresh: Duration,
    /// How long the shared record of executed requests keeps an entry: as long as the node's
    /// own record (`ExecutedConfig::ttl`, longer than a sender may resend).
    pub executed_ttl: Duration,
}

impl RedisStoreConfig {
    /// Defaults for `url`: prefix `onem2m-sa:`, blocks of 32, window 1024, one-hour linger,
    /// 2 s timeout, blocks refreshed every 250 ms, executed requests kept 60 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            sentinel: None,
            cluster: Vec::new(),
            tls: RedisTls::default(),
            lease_replicas: 0,
            prefix: "onem2m-sa:".into(),
            lease_block: 32,
            window: 1024,
            linger_ms: 3_600_000,
            timeout: Duration::from_secs(2),
            lease_refresh: Duration::from_millis(250),
            executed_ttl: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("url", &redacted(&self.url))
            .field(
                "sentinel",
                &self.sentinel.as_ref().map(|s| (s.nodes.iter().map(|n| redacted(n)).collect::<Vec<_>>(), &s.master)),
            )
            .field("cluster", &self.cluster.iter().map(|n| redacted(n)).collect::<Vec<_>>())
            .field("tls", &self.tls)
            .field("lease_replicas", &self.lease_replicas)
            .field("prefix", &self.prefix)
            .field("lease_block", &self.lease_block)
            .field("window", &self.window)
            .field("linger_ms", &self.linger_ms)
            .field("timeout", &self.timeout)
            .field("lease_refresh", &self.lease_refresh)
            .field("executed_ttl", &self.executed_ttl)
            .finish()
    }
}

/// A Redis address with its password, if any, replaced by `<redacted>`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:<redacted>@{host}{}", &rest[end..])
        }
        None => url.to_owned(),
    }
}

/// How a replica talks TLS to Redis (`rediss://`): the CA that signed Redis's certificate, and
/// this replica's own certificate when Redis asks for one (`tls-auth-clients`). The default:
/// the system's root certificates, no client certificate.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM certificate(s) to verify Redis with instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// This replica's certificate chain and private key, PEM.
    pub client: Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<given>"))
            .field("client", &self.client.as_ref().map(|_| "<certificate and key>"))
            .finish()
    }
}

impl RedisTls {
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.to_vec() }),
            root_cert: self.ca_pem.clone(),
        }
    }

    /// A client for `url`: with these certificates when it is a `rediss://` address.
    fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        if url.get(..9).is_some_and(|s| s.eq_ignore_ascii_case("rediss://")) {
            redis::Client::build_with_tls(url, self.certificates())
        } else {
            redis::Client::open(url)
        }
    }
}

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` ms unless it exists: nil when set, the value
/// there otherwise.
const ADMIT_LUA: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"#;

/// An entry of the shared record of executed requests, before sealing: one byte of state, the
/// request's digest, and (when answered) the answer.
const EXECUTING: u8 = 0;
const ANSWERED: u8 = 1;

/// What [`RedisStore::note_applied`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noted {
    /// A newer record than any applied here: apply it.
    New,
    /// The record applied here already.
    Same,
    /// Older than one applied here.
    Older,
}

const KIND_TOMBSTONE: u8 = 0;
const KIND_LIVE: u8 = 1;

/// Marks `ARGV[1]` in the window at `KEYS[1]` (sorted set of accepted numbers, trimmed to the
/// last `ARGV[2]`): 0 accepted, 1 already accepted, 2 older than the window, 3 the store's
/// incarnation (`KEYS[2]`) is no longer `ARGV[4]`, the one the SA was recorded in (Redis lost
/// the window).
const ACCEPT_LUA: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return 3 end
local s = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local h = -1
if top[2] then h = tonumber(top[2]) end
if h >= 0 and s + w <= h then return 2 end
if redis.call('ZADD', KEYS[1], 'NX', s, ARGV[1]) == 0 then return 1 end
if s > h then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (s - w + 1)) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"#;

/// Returns the store's incarnation (`KEYS[1]`), setting it to `ARGV[1]` when absent (a
/// fresh or emptied Redis).
const INCARNATION_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#;

/// Leases `ARGV[1]` numbers from the counter `KEYS[2]`, only while the store's incarnation
/// (`KEYS[1]`) is still `ARGV[2]`, the one the SA was recorded in: -1 otherwise (Redis lost
/// its counters, so numbers may have been used already).
const FILL_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
return redis.call('INCRBY', KEYS[2], ARGV[1])
"#;

/// Takes or renews the ownership of `KEYS[1]` for `ARGV[1]` during `ARGV[2]` ms: 1 owned.
const CLAIM_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Where Redis is: one address, the master the Sentinels name, or a cluster.
enum Source {
    Direct(redis::Client),
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
    Cluster {
        client: redis::cluster::ClusterClient,
        /// The configured nodes, one after the other for the event subscription (Redis
        /// Cluster delivers a `PUBLISH` to the subscribers of every node).
        nodes: Vec<redis::Client>,
        next: std::sync::atomic::AtomicUsize,
    },
}

/// A connection to Redis: one server (through Sentinel or not), or a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis Cluster hash slot of `tag` (CRC16-XMODEM mod 16384).
fn hash_slot(tag: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag) % 16384
}

/// The prefix keys are written under: on a cluster, `prefix` as the hash tag of every key
/// (unless it has one already).
fn effective_prefix(config: &RedisStoreConfig) -> String {
    let p = &config.prefix;
    let tagged = p.find('{').is_some_and(|open| p[open + 1..].find('}').is_some_and(|len| len > 0));
    if config.cluster.is_empty() || tagged { p.clone() } else { format!("{{{p}}}") }
}

/// A lease a replica holds, and when its current block was granted.
type HeldLease = (Weak<SeqLease>, Instant);

/// Grants leases from the shared counters: the [`LeaseProvider`] of every replica's table.
struct LeaseHub {
    me: Weak<LeaseHub>,
    /// Every live lease and when its current block was granted.
    leases: Mutex<HashMap<[u8; 16], HeldLease>>,
    wanted: mpsc::UnboundedSender<Weak<SeqLease>>,
}

impl LeaseHub {
    fn granted(&self, id: [u8; 16]) {
        if let Some((_, at)) = self.leases.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
            *at = Instant::now();
        }
    }

    /// Leases whose block was granted before `before`.
    fn older_than(&self, before: Instant) -> Vec<Arc<SeqLease>> {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.values().filter(|(_, at)| *at < before).filter_map(|(l, _)| l.upgrade()).collect()
    }
}

impl LeaseProvider for LeaseHub {
    fn lease(&self, key: LeaseKey) -> Arc<SeqLease> {
        let me: Weak<dyn LeaseProvider> = self.me.clone();
        let lease = Arc::new(SeqLease::new(key, Some(me)));
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.retain(|_, (l, _)| l.strong_count() > 0);
        leases.insert(key.id, (Arc::downgrade(&lease), Instant::now()));
        drop(leases);
        let _ = self.wanted.send(Arc::downgrade(&lease));
        lease
    }

    fn low(&self, key: LeaseKey) {
        let lease = self.leases.lock().unwrap_or_else(|e| e.into_inner()).get(&key.id).map(|(l, _)| l.clone());
        if let Some(l) = lease {
            let _ = self.wanted.send(l);
        }
    }
}

struct Inner {
    config: RedisStoreConfig,
    kek: Kek,
    /// Where Redis is.
    source: Source,
    /// Made on first use (see [`RedisStore::open`]), then kept until a command fails; made anew
    /// then (with Sentinel, for the master the Sentinels name then).
    conn: Mutex<Option<Conn>>,
    /// What every key and the event channel start with ([`effective_prefix`]).
    prefix: String,
    /// Held while a connection is being made (one attempt at a time).
    connecting: tokio::sync::Mutex<()>,
    table: Arc<SaTable>,
    hub: Arc<LeaseHub>,
    replica: String,
    /// Incarnation and highest generation applied per SA: an older record put back is refused.
    applied: Mutex<HashMap<SaId, (String, u64)>>,
    /// Held while a record is noted in `applied` and put in the table (see
    /// [`RedisStore::applying`]).
    applying: Mutex<()>,
    /// The incarnation each lease's SA was recorded in (lease id → incarnation).
    incarnations: Mutex<HashMap<[u8; 16], String>>,
    available: AtomicBool,
    started: Instant,
    accept: redis::Script,
    claim: redis::Script,
    incarnation: redis::Script,
    fill: redis::Script,
    admit: redis::Script,
}

/// The Redis store of one replica. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects to Redis and builds this replica's table (its epochs seal with leased sequence
    /// numbers): [`Self::open`], failing when Redis cannot be reached now.
    pub async fn connect(config: RedisStoreConfig, kek: Kek, table: TableConfig) -> Result<Self, StoreError> {
        let store = Self::open(config, kek, table)?;
        store.connection().await?;
        store.set_available(true);
        Ok(store)
    }

    /// Builds this replica's table and the store without waiting for Redis: the connection is
    /// made on first use, and tried again on each command until it is up (meanwhile every
    /// command fails with [`StoreError::Unavailable`]: establishments are refused, the listener
    /// keeps trying). Fails only for an unusable `config.url`. Spawns the lease task on the
    /// current Tokio runtime; call [`Self::spawn_listener`] to follow the other replicas.
    pub fn open(config: RedisStoreConfig, kek: Kek, table: TableConfig) -> Result<Self, StoreError> {
        let source = match &config.sentinel {
            None if !config.cluster.is_empty() => {
                let mut builder = redis::cluster::ClusterClient::builder(config.cluster.iter().map(String::as_str))
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    .retries(1);
                if config.cluster.iter().any(|n| n.get(..9).is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))) {
                    builder = builder.certs(config.tls.certificates());
                }
                let client = builder.build().map_err(unavailable)?;
                let nodes = config
                    .cluster
                    .iter()
                    .map(|n| config.tls.client(n))
                    .collect::<Result<_, _>>()
                    .map_err(unavailable)?;
                Source::Cluster { client, nodes, next: Default::default() }
            }
            None => Source::Direct(config.tls.client(&config.url).map_err(unavailable)?),
            Some(sentinel) => {
                use redis::IntoConnectionInfo as _;
                let master = match config.url.as_str() {
                    "" => None,
                    url => Some(url.into_connection_info().map_err(unavailable)?.redis),
                };
                let info =
                    redis::sentinel::SentinelNodeConnectionInfo { tls_mode: None, redis_connection_info: master };
                let client = redis::sentinel::SentinelClient::build(
                    sentinel.nodes.iter().map(String::as_str).collect(),
                    sentinel.master.clone(),
                    Some(info),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(unavailable)?;
                Source::Sentinel(tokio::sync::Mutex::new(client))
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new_cyclic(|me| LeaseHub { me: me.clone(), leases: Mutex::default(), wanted: tx });
        let table = Arc::new(SaTable::with_leases(table, hub.clone()));
        let mut id = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| StoreError::Refused("no randomness"))?;
        let prefix = effective_prefix(&config);
        let store = Self {
            inner: Arc::new(Inner {
                prefix,
                config,
                kek,
                source,
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                table,
                hub,
                replica: hex::encode(id),
                applied: Mutex::default(),
                applying: Mutex::default(),
                incarnations: Mutex::default(),
                available: AtomicBool::new(false),
                started: Instant::now(),
                accept: redis::Script::new(ACCEPT_LUA),
                claim: redis::Script::new(CLAIM_LUA),
                incarnation: redis::Script::new(INCARNATION_LUA),
                fill: redis::Script::new(FILL_LUA),
                admit: redis::Script::new(ADMIT_LUA),
            }),
        };
        tokio::spawn(lease_task(Arc::downgrade(&store.inner), rx));
        metrics::gauge!("onem2m_sa_store_available").set(0.0);
        Ok(store)
    }

    /// A client for Redis: with Sentinel, for the master the Sentinels name now; on a cluster,
    /// for the next of the configured nodes (the event subscription).
    async fn client(&self) -> Result<redis::Client, StoreError> {
        match &self.inner.source {
            Source::Direct(client) => Ok(client.clone()),
            Source::Cluster { nodes, next, .. } => {
                let i = next.fetch_add(1, Relaxed);
                Ok(nodes[i % nodes.len()].clone())
            }
            Source::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                match tokio::time::timeout(self.inner.config.timeout, sentinel.async_get_client()).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(unavailable(format!("Sentinel: {e}"))),
                    Err(_) => Err(unavailable("Sentinel: no answer in time")),
                }
            }
        }
    }

    /// The connection to Redis, made now if it is not yet (bounded by the configured timeout).
    async fn connection(&self) -> Result<Conn, StoreError> {
        let inner = &self.inner;
        let held = || inner.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(conn) = held() {
            return Ok(conn);
        }
        let _one = inner.connecting.lock().await;
        if let Some(conn) = held() {
            return Ok(conn);
        }
        let made = async {
            if let Source::Cluster { client, .. } = &inner.source {
                return match tokio::time::timeout(inner.config.timeout, client.get_async_connection()).await {
                    Ok(Ok(conn)) => Ok(Conn::Cluster(conn)),
                    Ok(Err(e)) => Err(unavailable(e)),
                    Err(_) => Err(unavailable("connection timed out")),
                };
            }
            let client = self.client().await?;
            let manager_config = ConnectionManagerConfig::new()
                .set_response_timeout(inner.config.timeout)
                .set_connection_timeout(inner.config.timeout)
                .set_number_of_retries(1);
            let manager = ConnectionManager::new_with_config(client, manager_config);
            match tokio::time::timeout(inner.config.timeout, manager).await {
                Ok(Ok(conn)) => Ok(Conn::Single(conn)),
                Ok(Err(e)) => Err(unavailable(e)),
                Err(_) => Err(unavailable("connection timed out")),
            }
        };
        match made.await {
            Ok(conn) => {
                *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                self.set_available(false);
                Err(e)
            }
        }
    }

    /// This replica's table: the data path reads it.
    pub fn table(&self) -> &Arc<SaTable> {
        &self.inner.table
    }

    /// This replica's random name (the holder of the claims it takes).
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// Notes whether the last command reached Redis: the gauge `onem2m_sa_store_available`
    /// (1 or 0) and a log line when it changes.
    fn set_available(&self, ok: bool) {
        if self.inner.available.swap(ok, Relaxed) == ok {
            return;
        }
        metrics::gauge!("onem2m_sa_store_available").set(if ok { 1.0 } else { 0.0 });
        if ok {
            tracing::info!("SA store: Redis reachable");
        } else {
            tracing::warn!("SA store: Redis unreachable; serving the SAs held, establishments refused (5000)");
        }
    }

    /// Whether the last command reached Redis.
    pub fn is_available(&self) -> bool {
        self.inner.available.load(Relaxed)
    }

    /// The Redis key of an SA's record.
    pub fn record_key(&self, sa_id: SaId) -> String {
        format!("{}sa:{}", self.inner.prefix, hex::encode(sa_id.as_bytes()))
    }

    fn now(&self) -> Now {
        Now {
            mono_ms: self.inner.started.elapsed().as_millis() as u64,
            unix_secs: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let r = tokio::time::timeout(self.inner.config.timeout, cmd.query_async::<T>(&mut conn)).await;
        self.settle(r)
    }

    fn settle<T>(&self, r: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>) -> Result<T, StoreError> {
        let r = match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("command timed out")),
        };
        self.set_available(r.is_ok());
        if r.is_err() {
            // A fresh connection next time: one that reconnects by itself still makes commands
            // wait out its backoff after Redis is back (measured: a second of timeouts after a
            // 25 ms restart), and with Sentinel the master may have moved (a failover).
            *self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        r
    }

    async fn script<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let r = tokio::time::timeout(self.inner.config.timeout, inv.invoke_async::<T>(&mut conn)).await;
        self.settle(r)
    }

    fn key(&self, what: &str) -> String {
        format!("{}{what}", self.inner.prefix)
    }

    /// The store's incarnation: a random name Redis keeps until it loses its data (a restart
    /// without persistence), set by the first replica that asks.
    pub async fn incarnation(&self) -> Result<String, StoreError> {
        let mut fresh = [0u8; 16];
        aws_lc_rs::rand::fill(&mut fresh).map_err(|_| StoreError::Refused("no randomness"))?;
        let mut inv = self.inner.incarnation.key(self.key("inc"));
        inv.arg(hex::encode(fresh));
        self.script(&inv).await
    }

    /// Writes a record; returns the incarnation and generation it was written under (the
    /// caller notes it applied, with what it does to the table, under [`Inner::applying`]).
    async fn write(
        &self,
        sa_id: SaId,
        kind: u8,
        record: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(String, u64), StoreError> {
        let incarnation = self.incarnation().await?;
        let generation: u64 = self.run(redis::cmd("INCR").arg(self.key("gen"))).await?;
        let name = self.record_key(sa_id);
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(record.len() + 33));
        plain.push(kind);
        plain.extend_from_slice(incarnation.as_bytes());
        plain.extend_from_slice(record);
        let sealed = self.inner.kek.seal(&name, generation, &plain);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match ttl_ms {
            Some(ms) => pipe.cmd("SET").arg(&name).arg(sealed).arg("PX").arg(ms).ignore(),
            None => pipe.cmd("SET").arg(&name).arg(sealed).ignore(),
        };
        pipe.cmd("PUBLISH").arg(self.key("events")).arg(format!("p {}", hex::encode(sa_id.as_bytes()))).ignore();
        let mut conn = self.connection().await?;
        let r = tokio::time::timeout(self.inner.config.timeout, pipe.query_async::<()>(&mut conn)).await;
        self.settle(r)?;
        Ok((incarnation, generation))
    }

    /// Holds [`Inner::applying`]: a record is noted applied and put in the table in one step,
    /// so a concurrent reader of the same record (the listener and a request's
    /// [`SaStore::learn`]) that finds it applied also finds it in the table.
    fn applying(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.applying.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the record `generation` of `sa_id` is applied here, unless this replica
    /// applied it (or a newer one) already: [`Noted::Same`] for the record already applied (the
    /// replica's own write, or the listener and a `learn` reading it both), [`Noted::Older`] for
    /// an older one (put back: refused).
    fn note_applied(&self, sa_id: SaId, incarnation: &str, generation: u64) -> Noted {
        let mut applied = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner());
        match applied.get(&sa_id) {
            Some((inc, last)) if inc == incarnation && generation == *last => return Noted::Same,
            Some((inc, last)) if inc == incarnation && generation < *last => return Noted::Older,
            _ => {}
        }
        applied.insert(sa_id, (incarnation.to_owned(), generation));
        Noted::New
    }

    /// Records an established or updated SA for every replica, and installs it here.
    pub async fn publish(&self, sa: &EstablishedSa) -> Result<(), StoreError> {
        let (incarnation, generation) = self.write(sa.sa_id, KIND_LIVE, &to_record(sa), None).await?;
        let empty = {
            let _applying = self.applying();
            self.note_applied(sa.sa_id, &incarnation, generation);
            self.install(sa, &incarnation)
        };
        if let Some(lease) = empty {
            let _ = self.fill(&lease, false).await;
        }
        Ok(())
    }

    /// Removes an SA on every replica (a sealed tombstone, kept `linger_ms`), and here.
    pub async fn remove(&self, sa_id: SaId) -> Result<(), StoreError> {
        self.inner.table.remove(sa_id);
        let (incarnation, generation) =
            self.write(sa_id, KIND_TOMBSTONE, sa_id.as_bytes(), Some(self.inner.config.linger_ms)).await?;
        let _applying = self.applying();
        self.note_applied(sa_id, &incarnation, generation);
        Ok(())
    }

    /// Installs (or rekeys) `sa` in this replica's table; returns its epoch's lease when that
    /// has no sequence numbers yet (the caller fills it, outside [`Inner::applying`]).
    fn install(&self, sa: &EstablishedSa, incarnation: &str) -> Option<Arc<SeqLease>> {
        let table = &self.inner.table;
        let entry = match table.get(sa.sa_id) {
            None => table.install(sa),
            Some(e) => {
                let current = e.current_epoch();
                if current.as_ref().is_none_or(|c| c.number < sa.keys.epoch) {
                    table.rekey(sa.sa_id, &sa.keys, self.now());
                } else if current.is_some_and(|c| c.number == sa.keys.epoch && !same_keys(&c, sa)) {
                    // A newer record of the same epoch number with other keys: the Responder
                    // rolled back an update its Initiator never committed (no record says so)
                    // and updated again. The abandoned epoch goes; the one before it stays the
                    // previous one, as on the replica that made the update.
                    table.roll_back(sa.sa_id);
                    table.rekey(sa.sa_id, &sa.keys, self.now());
                }
                e
            }
        };
        let lease = entry.current_epoch().and_then(|e| e.lease().cloned())?;
        self.inner
            .incarnations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(lease.key().id)
            .or_insert_with(|| incarnation.to_owned());
        (lease.remaining() == 0).then_some(lease)
    }

    /// Leases the next block of sequence numbers for `lease`, from the counter of the
    /// incarnation its SA was recorded in only; `replace`: in place of the current block.
    async fn fill(&self, lease: &SeqLease, replace: bool) -> Result<(), StoreError> {
        let id = lease.key().id;
        let incarnation = self.inner.incarnations.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
        let Some(incarnation) = incarnation else {
            // Installed by the SA Management before the record was written: the write fills it.
            return Err(StoreError::Refused("SA not recorded in the store yet"));
        };
        let block = self.inner.config.lease_block.max(1);
        let mut inv = self.inner.fill.key(self.key("inc"));
        inv.key(self.key(&format!("seq:{}", lease.key().id_hex()))).arg(block).arg(&incarnation);
        let end: i64 = self.script(&inv).await?;
        if end < 0 {
            tracing::error!(sa_id = ?lease.key().sa_id, "Redis lost its sequence counters: the SA cannot seal here until its keys are updated");
            return Err(StoreError::Refused("the store lost the sequence counters of this SA's keys"));
        }
        // Used only once the master's replicas hold it: a failover cannot hand it out again.
        if let Err(e) = self.replicated().await {
            tracing::warn!(error = %e, "sequence-number block not used");
            return Err(e);
        }
        let end = end as u64;
        if replace {
            lease.replace(end - block, end);
        } else {
            lease.grant(end - block, end);
        }
        self.inner.hub.granted(id);
        Ok(())
    }

    /// Leases the next block of sequence numbers for the current epoch of `sa_id` now (queued
    /// behind the current block). The lease task does this by itself when a block runs low; a
    /// caller that must be able to seal at once may ask directly. Refused when the SA is not in
    /// this replica's table, or when Redis lost its counters since the SA was recorded (its
    /// numbers could repeat: it needs new keys).
    pub async fn refill(&self, sa_id: SaId) -> Result<(), StoreError> {
        let lease = self.inner.table.get(sa_id).and_then(|e| e.current_epoch()).and_then(|e| e.lease().cloned());
        let lease = lease.ok_or(StoreError::Refused("no such SA here"))?;
        self.fill(&lease, false).await
    }

    /// Leases the next block for the SA's `epoch` now when fewer than half a block of numbers
    /// is left (see [`SaStore::prepare_seal`]).
    pub async fn prepare_seal(&self, sa_id: SaId, epoch: u32) -> Result<(), StoreError> {
        let lease = self.inner.table.get(sa_id).and_then(|e| e.current_epoch()).filter(|e| e.number == epoch);
        let Some(lease) = lease.and_then(|e| e.lease().cloned()) else { return Ok(()) };
        if lease.available() * 2 < self.inner.config.lease_block.max(1) {
            self.fill(&lease, false).await?;
        }
        Ok(())
    }

    /// Reads the record of `sa_id` and applies it: installs, rekeys or removes the SA here.
    /// Returns whether anything changed (false for the record applied here already); a record
    /// that does not authenticate, or is older than one applied, is refused.
    pub async fn load(&self, sa_id: SaId) -> Result<bool, StoreError> {
        let name = self.record_key(sa_id);
        let (value, current): (Option<Vec<u8>>, Option<String>) =
            self.run(redis::cmd("MGET").arg(&name).arg(self.key("inc"))).await?;
        let Some(value) = value else { return Ok(false) };
        let (generation, plain) = self.inner.kek.open(&name, &value)?;
        let (kind, rest) = plain.split_first().ok_or(StoreError::Refused("malformed SA record"))?;
        if rest.len() < 32 {
            return Err(StoreError::Refused("malformed SA record"));
        }
        let (incarnation, body) = rest.split_at(32);
        let incarnation = std::str::from_utf8(incarnation).map_err(|_| StoreError::Refused("malformed SA record"))?;
        if current.as_deref() != Some(incarnation) {
            return Err(StoreError::Refused("record of an earlier incarnation of the store"));
        }
        match *kind {
            KIND_LIVE => {
                let sa = from_record(body).map_err(|_| StoreError::Refused("malformed SA record"))?;
                if sa.sa_id != sa_id {
                    return Err(StoreError::Refused("record names another SA"));
                }
                let empty = {
                    let _applying = self.applying();
                    match self.note_applied(sa_id, incarnation, generation) {
                        Noted::New => {}
                        Noted::Same => return Ok(false),
                        Noted::Older => return Err(StoreError::Refused("record older than one applied")),
                    }
                    self.install(&sa, incarnation)
                };
                if let Some(lease) = empty {
                    let _ = self.fill(&lease, false).await;
                }
                Ok(true)
            }
            KIND_TOMBSTONE if body == sa_id.as_bytes() => {
                let _applying = self.applying();
                match self.note_applied(sa_id, incarnation, generation) {
                    Noted::New => Ok(self.inner.table.remove(sa_id)),
                    Noted::Same => Ok(false),
                    Noted::Older => Err(StoreError::Refused("record older than one applied")),
                }
            }
            _ => Err(StoreError::Refused("malformed SA record")),
        }
    }

    /// Reads every record (startup, and catch-up after Redis was unreachable); returns how many
    /// changed this replica's table. Refused records are skipped (and logged).
    pub async fn sync(&self) -> Result<usize, StoreError> {
        // SAs recorded before Redis lost its data (a restart without persistence) cannot go on:
        // their sequence counters and shared windows are gone, so numbers could repeat. They
        // are dropped here; their Initiators' next request gets 4112 and establishes anew.
        let current = self.incarnation().await?;
        let lost: Vec<SaId> = {
            let mut applied = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner());
            let lost = applied.iter().filter(|(_, (inc, _))| *inc != current).map(|(id, _)| *id).collect();
            applied.retain(|_, (inc, _)| *inc == current);
            lost
        };
        for sa_id in &lost {
            tracing::warn!(?sa_id, "SA recorded before Redis lost its data: dropped");
            self.inner.table.remove(*sa_id);
        }
        let mut changed = lost.len();
        for id in self.recorded().await? {
            match self.load(id).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(StoreError::Refused(why)) => tracing::warn!(sa_id = ?id, why, "SA store record refused"),
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Runs a key-less command where the keys are: on a cluster, on the master of the prefix's
    /// hash slot (a key-less command would go to any node).
    async fn run_at_keys<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let r = match &mut conn {
            Conn::Single(c) => tokio::time::timeout(self.inner.config.timeout, cmd.query_async(c)).await,
            Conn::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let tag = self.inner.prefix.split_once('{').and_then(|(_, t)| t.split_once('}')).map(|(t, _)| t);
                let slot = hash_slot(tag.unwrap_or(&self.inner.prefix).as_bytes());
                let to =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
                let routed = async { redis::from_redis_value(&c.route_command(cmd, to).await?) };
                tokio::time::timeout(self.inner.config.timeout, routed).await
            }
        };
        self.settle(r)
    }

    /// Runs a `SCAN` over the store's keys.
    async fn scan(&self, cmd: &redis::Cmd) -> Result<(u64, Vec<String>), StoreError> {
        self.run_at_keys(cmd).await
    }

    /// Waits (`WAIT`, at most half the command timeout) until the master's replicas —
    /// [`RedisStoreConfig::lease_replicas`] of them at most, as many as are connected to it
    /// now — acknowledged this connection's writes so far. A master with no replica connected
    /// has none to fail over to that could miss them (one that connects later copies its data).
    async fn replicated(&self) -> Result<(), StoreError> {
        let most = self.inner.config.lease_replicas;
        if most == 0 {
            return Ok(());
        }
        let info: String = self.run_at_keys(redis::cmd("INFO").arg("replication")).await?;
        let connected = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let want = most.min(connected);
        if want == 0 {
            return Ok(());
        }
        let wait_ms = (self.inner.config.timeout.as_millis() / 2).max(1) as u64;
        let acked: u32 = self.run_at_keys(redis::cmd("WAIT").arg(want).arg(wait_ms)).await?;
        if acked < want {
            return Err(StoreError::Unavailable(format!(
                "a leased block reached {acked} of the {want} connected Redis replicas in time"
            )));
        }
        Ok(())
    }

    /// The SAs that have a record (or a tombstone) in Redis.
    async fn recorded(&self) -> Result<Vec<SaId>, StoreError> {
        let pattern = format!("{}sa:*", self.inner.prefix);
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let scan = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500).to_owned();
            let (next, batch): (u64, Vec<String>) = self.scan(&scan).await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let prefix_len = pattern.len() - 1;
        Ok(keys
            .iter()
            .filter_map(|key| hex::decode(&key[prefix_len..]).ok().and_then(|b| <[u8; 8]>::try_from(b).ok()))
            .map(SaId)
            .collect())
    }

    /// Checks the records in Redis without applying any: how many open under this replica's
    /// key-encryption key, and how many do not (another KEK wrote them, or they were altered).
    /// For an operator's check of a deployment (`--check --connect`).
    pub async fn verify(&self) -> Result<(usize, usize), StoreError> {
        let (mut good, mut bad) = (0, 0);
        for id in self.recorded().await? {
            let name = self.record_key(id);
            let value: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(&name)).await?;
            match value.map(|v| self.inner.kek.open(&name, &v)) {
                Some(Ok(_)) => good += 1,
                Some(Err(_)) => bad += 1,
                None => {}
            }
        }
        Ok((good, bad))
    }

    /// Follows the other replicas: subscribes to the event channel, catches up with
    /// [`Self::sync`] after every (re)connection, and applies each event. Runs until the store
    /// is dropped; reconnects (every `backoff`) while Redis is unreachable.
    pub fn spawn_listener(&self, backoff: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let channel = format!("{}events", self.inner.prefix);
        tokio::spawn(async move {
            loop {
                // With Sentinel: the master named now.
                let client = match weak.upgrade() {
                    Some(inner) => RedisStore { inner }.client().await,
                    None => return,
                };
                let pubsub = async {
                    let client = client.map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
                    let mut ps = client.get_async_pubsub().await?;
                    ps.subscribe(&channel).await?;
                    redis::RedisResult::Ok(ps)
                };
                let ps = match tokio::time::timeout(backoff.max(Duration::from_millis(500)), pubsub).await {
                    Ok(Ok(ps)) => ps,
                    _ => {
                        if weak.strong_count() == 0 {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                };
                {
                    let Some(inner) = weak.upgrade() else { return };
                    let store = RedisStore { inner };
                    if let Err(e) = store.sync().await {
                        // Not caught up: events alone would miss what changed meanwhile (and
                        // SAs of a lost incarnation would stay). Start over.
                        tracing::warn!(error = %e, "SA store catch-up failed");
                        drop(store);
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
                let mut messages = ps.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    let store = RedisStore { inner };
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    let Some(id) = payload
                        .strip_prefix("p ")
                        .and_then(|h| hex::decode(h).ok())
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    else {
                        continue;
                    };
                    if let Err(e) = store.load(SaId(id)).await {
                        tracing::warn!(error = %e, "SA store event not applied");
                    }
                }
                // The connection dropped: reconnect and catch up.
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(backoff).await;
            }
        })
    }

    /// Marks `seq` of the SA's `epoch` accepted in the shared window; false for a number some
    /// replica accepted already, or one older than the window. Refused for an SA this replica
    /// did not learn from the store, and when Redis lost its data since the SA was recorded
    /// (its window is gone: the SA is dropped from this replica's table at once, as the next
    /// catch-up would, see [`Self::sync`]).
    pub async fn accept(&self, sa_id: SaId, epoch: u32, seq: u64) -> Result<bool, StoreError> {
        let incarnation = self.inner.applied.lock().unwrap_or_else(|e| e.into_inner()).get(&sa_id).map(|a| a.0.clone());
        let incarnation = incarnation.ok_or(StoreError::Refused("SA not recorded in the store"))?;
        let c = &self.inner.config;
        let mut inv = self.inner.accept.key(self.key(&format!("win:{}:{epoch}", hex::encode(sa_id.as_bytes()))));
        inv.key(self.key("inc")).arg(seq).arg(c.window).arg(c.linger_ms).arg(incarnation);
        match self.script::<u8>(&inv).await? {
            0 => Ok(true),
            3 => {
                // Its counters and window are gone: it cannot go on anywhere. Dropped here now
                // (the catch-up would), so its next request gets 4112 and its Initiator
                // establishes a new SA at once.
                tracing::warn!(?sa_id, "SA recorded before Redis lost its data: dropped");
                self.inner.table.remove(sa_id);
                Err(StoreError::Refused("the store lost this SA's replay window"))
            }
            _ => Ok(false),
        }
    }

    /// Whether this replica holds (now takes, or renews) the ownership of an SA for `hold_ms`.
    pub async fn claim(&self, sa_id: SaId, hold_ms: u64) -> Result<bool, StoreError> {
        let key = format!("{}own:{}", self.inner.prefix, hex::encode(sa_id.as_bytes()));
        let mut inv = self.inner.claim.key(key);
        inv.arg(&self.inner.replica).arg(hold_ms.max(1));
        Ok(self.script::<u8>(&inv).await? == 1)
    }
}

impl RedisStore {
    fn executed_key(&self, key: &[u8; 32]) -> String {
        format!("{}exe:{}", self.inner.prefix, hex::encode(key))
    }

    fn executed_entry(&self, name: &str, state: u8, digest: &[u8; 32], answer: &[u8]) -> Vec<u8> {
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(33 + answer.len()));
        plain.push(state);
        plain.extend_from_slice(digest);
        plain.extend_from_slice(answer);
        self.inner.kek.seal_per_name(name, &plain)
    }

    /// Enters a request in the replicas' shared record of executed requests unless a copy is
    /// there: see [`SaStore::admit_executed`]. An entry that does not authenticate under the
    /// key-encryption key is refused ([`StoreError::Refused`]): the request is not executed.
    pub async fn admit_executed(
        &self,
        key: [u8; 32],
        digest: [u8; 32],
    ) -> Result<onem2m_sa_tower::store::SharedExecution, StoreError> {
        use onem2m_sa_tower::store::SharedExecution;
        let name = self.executed_key(&key);
        let entry = self.executed_entry(&name, EXECUTING, &digest, &[]);
        let mut inv = self.inner.admit.key(&name);
        inv.arg(entry).arg(self.inner.config.executed_ttl.as_millis().max(1) as u64);
        let Some(there) = self.script::<Option<Vec<u8>>>(&inv).await? else {
            return Ok(SharedExecution::First);
        };
        let plain = self.inner.kek.open_per_name(&name, &there)?;
        let (state, rest) = plain.split_first().ok_or(StoreError::Refused("executed-request entry is empty"))?;
        let (was, answer) = rest.split_at_checked(32).ok_or(StoreError::Refused("executed-request entry is short"))?;
        Ok(match *state {
            _ if was != digest => SharedExecution::Conflict,
            EXECUTING => SharedExecution::Running,
            ANSWERED => SharedExecution::Answered(answer.to_vec()),
            _ => return Err(StoreError::Refused("executed-request entry in an unknown state")),
        })
    }

    /// Records the answer of a request [`Self::admit_executed`] admitted.
    pub async fn record_executed(&self, key: [u8; 32], digest: [u8; 32], answer: &[u8]) -> Result<(), StoreError> {
        let name = self.executed_key(&key);
        let entry = self.executed_entry(&name, ANSWERED, &digest, answer);
        let ttl = self.inner.config.executed_ttl.as_millis().max(1) as u64;
        self.run(redis::cmd("SET").arg(&name).arg(entry).arg("PX").arg(ttl)).await
    }
}

/// Whether `epoch` seals with the sending keys of `sa`'s current epoch (same lease counter name,
/// which hashes the key and IV; an epoch without a lease is taken as the same).
fn same_keys(epoch: &onem2m_sa::secure::EpochRef, sa: &EstablishedSa) -> bool {
    let key = onem2m_sa::secure::Epoch::lease_key(sa.sa_id, sa.suite, &sa.keys, sa.role);
    epoch.lease().is_none_or(|l| l.key().id == key.id)
}

/// Grants blocks to the leases that ask, and replaces blocks older than the refresh period,
/// until the store is dropped.
async fn lease_task(store: Weak<Inner>, mut wanted: mpsc::UnboundedReceiver<Weak<SeqLease>>) {
    let refresh = match store.upgrade() {
        Some(inner) => inner.config.lease_refresh.max(Duration::from_millis(1)),
        None => return,
    };
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            lease = wanted.recv() => {
                let Some(lease) = lease else { return };
                let Some(lease) = lease.upgrade() else { continue };
                let Some(inner) = store.upgrade() else { return };
                let store = RedisStore { inner };
                if lease.wants_more() {
                    if let Err(e) = store.fill(&lease, false).await {
                        tracing::debug!(error = %e, "sequence-number lease not granted");
                    }
                }
            }
            _ = tick.tick() => {
                let Some(inner) = store.upgrade() else { return };
                let store = RedisStore { inner };
                let Some(before) = Instant::now().checked_sub(refresh) else { continue };
                for lease in store.inner.hub.older_than(before) {
                    if let Err(e) = store.fill(&lease, true).await {
                        tracing::debug!(error = %e, "sequence-number lease not refreshed");
                    }
                }
            }
        }
    }
}

impl SaStore for RedisStore {
    fn table(&self) -> &Arc<SaTable> {
        &self.inner.table
    }

    fn shared(&self) -> bool {
        true
    }

    fn publish<'a>(&'a self, sa: &'a EstablishedSa) -> StoreFuture<'a, ()> {
        Box::pin(RedisStore::publish(self, sa))
    }

    fn remove(&self, sa_id: SaId) -> StoreFuture<'_, ()> {
        Box::pin(RedisStore::remove(self, sa_id))
    }

    fn accept(&self, sa_id: SaId, epoch: u32, seq: u64) -> StoreFuture<'_, bool> {
        Box::pin(RedisStore::accept(self, sa_id, epoch, seq))
    }

    fn claim(&self, sa_id: SaId, hold_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(RedisStore::claim(self, sa_id, hold_ms))
    }

    fn learn(&self, sa_id: SaId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            // Ok(false) when this replica applied the record already (its listener, or a
            // concurrent request's learn, got there first): the table says whether it is here.
            self.load(sa_id).await?;
            Ok(self.inner.table.get(sa_id).is_some())
        })
    }

    fn prepare_seal(&self, sa_id: SaId, epoch: u32) -> StoreFuture<'_, ()> {
        Box::pin(RedisStore::prepare_seal(self, sa_id, epoch))
    }

    fn admit_executed(
        &self,
        key: [u8; 32],
        digest: [u8; 32],
    ) -> StoreFuture<'_, onem2m_sa_tower::store::SharedExecution> {
        Box::pin(RedisStore::admit_executed(self, key, digest))
    }

    fn record_executed<'a>(&'a self, key: [u8; 32], digest: [u8; 32], answer: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(RedisStore::record_executed(self, key, digest, answer))
    }
}
