//! Replicas of the CSE-side sidecar sharing their SAs through a real `redis-server` (issue 17):
//! three sidecars started from their configuration with `[store] kind = "redis"`, behind a
//! round-robin load balancer, the AE-side sidecar's peer address pointing at the balancer.
//!
//! Without `redis-server` on the PATH the tests say so and pass, unless `ONEM2M_REQUIRE_REDIS=1`
//! (CI sets it), where they fail.

#[path = "../../crates/store-redis/tests/common/mod.rs"]
mod redis_server;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onem2m_primitive::{Operation, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::secure::{Sealed, decode_compact, decode_jwe, epo_from_content};
use onem2m_sa::table::SaEntry;
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_integration::balancer::{self, Balancer};
use onem2m_sa_integration::relay::{Kind, Message};
use onem2m_sa_integration::{Isolated, free_port, request};
use onem2m_sa_sidecar::config::{Config, StoreSettings};
use onem2m_sa_sidecar::demo::{self, AE_ID, CSE_BASE, CSE_ID, DemoPki};
use onem2m_sa_tower::BoxError;
use redis_server::{Redis, RedisCluster, Sentinel, TlsRedis};
use serde_json::json;
use tower::ServiceExt;

const REPLICAS: usize = 3;

/// A CSE-side replica's configuration: the demo CSE host's (its egress sends the CSE's
/// notifications to the AE host's ingress at `ae_ingress`), its SAs in Redis.
fn replica_config(pki: &DemoPki, cse: &str, ae_ingress: SocketAddr, redis: &Redis) -> Config {
    let mut c = demo::cse_sidecar_config(pki, cse, ae_ingress);
    c.store = onem2m_sa_integration::redis_store(redis.url(), "replicas:", Duration::from_millis(500));
    c
}

struct Cluster {
    cse: onem2m_sa_examples::demo_http::ServedCse,
    /// The AE's notification listener, behind the AE host's sidecar.
    receiver: onem2m_sa_examples::demo_http::NotificationReceiver,
    replicas: Vec<Option<Isolated>>,
    ingresses: Vec<SocketAddr>,
    balancer: Balancer,
    ae: Isolated,
    client: HttpClient,
    /// The replicas' configuration.
    config: Config,
    // Last: the replicas stop before Redis does.
    redis: Redis,
}

impl Cluster {
    async fn start(redis: Redis) -> Self {
        Self::start_with(redis, |_| {}).await
    }

    /// [`Self::start`] with the replicas' configuration changed by `change`.
    async fn start_with(redis: Redis, change: impl FnOnce(&mut Config)) -> Self {
        let pki = DemoPki::new();
        let cse = onem2m_sa_examples::demo_http::serve_demo_cse(
            demo::loopback().await.unwrap(),
            onem2m_sa_examples::demo_cse::DemoCse::new(CSE_ID, CSE_BASE),
        )
        .await
        .unwrap();
        let receiver = onem2m_sa_examples::demo_http::serve_receiver(demo::loopback().await.unwrap()).await.unwrap();
        let ingresses: Vec<SocketAddr> = (0..REPLICAS).map(|_| free_port()).collect();
        let ae_ingress = free_port();
        let mut config = replica_config(&pki, &cse.base(), ae_ingress, &redis);
        change(&mut config);
        // Each replica's own egress: an AE's point of access is mapped to the egress of the
        // replica it registered through.
        let replicas = ingresses.iter().map(|&a| Some(Isolated::start(&config, Some(a), Some(free_port())))).collect();
        let balancer = Balancer::start(ingresses.clone()).await.unwrap();
        let ae_config = demo::ae_sidecar_config(&pki, balancer.addr(), &format!("http://{}", receiver.addr));
        let ae = Isolated::start(&ae_config, Some(ae_ingress), Some(free_port()));
        let egress = ae.addresses().egress_http.unwrap();
        let client = HttpClient::new(&format!("http://{egress}"), ClientConfig::default()).unwrap();
        Self { cse, receiver, replicas, ingresses, balancer, ae, client, config, redis }
    }

    async fn send(
        &self,
        op: Operation,
        to: &str,
        rqi: &str,
        ty: Option<u32>,
        pc: Option<serde_json::Value>,
    ) -> Result<ResponsePrimitive, BoxError> {
        let mut req = request(op, to, AE_ID, rqi);
        req.ty = ty;
        req.pc = pc;
        self.client.clone().oneshot(req).await
    }

    /// The AE host's one SA with the CSE host.
    fn sa(&self) -> Arc<SaEntry> {
        let entries = self.ae.sidecar().node().outbound().entries();
        assert_eq!(entries.len(), 1, "one SA: no re-establishment");
        entries[0].clone()
    }

    /// How many times the CSE executed each request identifier.
    fn executed(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (_, rqi) in self.cse.cse.executed() {
            *counts.entry(rqi).or_insert(0) += 1;
        }
        counts
    }
}

/// `f` of the sealed content of an answer, in either secured form.
fn with_sealed<T>(msg: &Message, f: impl FnOnce(Sealed<'_>) -> T) -> Option<T> {
    if msg.header("content-type").is_some_and(|t| t.eq_ignore_ascii_case(onem2m_primitive::compact::MEDIA_TYPE)) {
        let mut body = msg.body.clone();
        return decode_compact(&mut body).ok().map(f);
    }
    let pc: serde_json::Value = serde_json::from_slice(&msg.body).ok()?;
    let epo = epo_from_content(&pc).ok()?;
    let mut scratch = Vec::new();
    decode_jwe(epo.as_bytes(), &mut scratch).ok().map(f)
}

/// Every (SA, key phase, sequence number) the replicas sealed an answer with: never one twice.
fn assert_nonces_unique(balancer: &Balancer) {
    let mut seen = HashSet::new();
    for sent in balancer.log().into_iter().filter(|s| s.kind == Kind::Secured) {
        let Some(answer) = sent.answer.as_ref() else { continue };
        let Some((sa_id, key_phase, seq)) = with_sealed(answer, |s| (s.header.sa_id, s.header.key_phase, s.header.seq))
        else {
            continue;
        };
        assert!(seen.insert((sa_id, key_phase, seq)), "two answers sealed with the same nonce: {sa_id:?} {seq}");
    }
    assert!(seen.len() > 10, "only {} sealed answers seen", seen.len());
}

/// The AE registered, a container under it: the path of the container.
async fn ae_and_container(c: &Cluster) -> String {
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = json!({"m2m:ae": {"rn": "meter", "api": "Nmeter", "rr": true, "srv": ["3"], "poa": [c.receiver.poa()]}});
    let rsp = c.send(Operation::Create, &base, "reg", Some(2), Some(ae)).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED, "{rsp:?}");
    let rsp = c
        .send(Operation::Create, &format!("{base}/meter"), "cnt", Some(3), Some(json!({"m2m:cnt": {"rn": "data"}})))
        .await
        .unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED, "{rsp:?}");
    format!("{base}/meter/data")
}

/// What each request of a load got: its rqi, and the RSC (or why there was no answer).
type Results = Vec<(String, Result<Rsc, String>)>;

/// `workers` tasks each sending `each` CREATEs of a content instance under `cnt`, one after
/// the other (rqi `w<worker>-<i>`).
fn load(c: &Cluster, cnt: &str, workers: usize, each: usize) -> tokio::task::JoinSet<Results> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (client, cnt) = (c.client.clone(), cnt.to_owned());
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in 0..each {
                let rqi = format!("w{w}-{i}");
                let mut req = request(Operation::Create, &cnt, AE_ID, &rqi);
                req.ty = Some(4);
                req.pc = Some(json!({"m2m:cin": {"rn": format!("w{w}i{i}"), "con": "x"}}));
                let result = client.clone().oneshot(req).await.map(|r| r.rsc).map_err(|e| e.to_string());
                out.push((rqi, result));
            }
            out
        });
    }
    tasks
}

/// Waits until the CSE executed `n` requests (bounded: 60 s, then the test fails).
async fn until_executed(c: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.cse.cse.executed().len() < n {
        assert!(Instant::now() < deadline, "the load did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// No request executed twice, every 2001 executed once, every request answered: the requests
/// answered with an error code, and the codes.
fn at_most_once(c: &Cluster, results: &Results) -> Vec<(String, Rsc)> {
    let executed = c.executed();
    assert!(executed.values().all(|&n| n == 1), "a request executed twice: {executed:?}");
    let mut failed = Vec::new();
    for (rqi, result) in results {
        match result {
            Ok(Rsc::CREATED) => assert_eq!(executed.get(rqi), Some(&1), "{rqi} answered 2001, executed {executed:?}"),
            Ok(rsc) => failed.push((rqi.clone(), *rsc)),
            Err(e) => panic!("{rqi}: no answer from the AE-side sidecar: {e}"),
        }
    }
    eprintln!("{} requests, {} failed with a code: {failed:?}", results.len(), failed.len());
    failed
}

/// CRUD through every replica over the one SA established through the first; a secured
/// request replayed to another replica is refused before the CSE sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_one_sa_and_refuse_a_replay_sent_to_another() {
    let Some(redis) = Redis::start() else { return };
    let c = Cluster::start(redis).await;
    let cnt = ae_and_container(&c).await;
    for i in 0..6 {
        let cin = json!({"m2m:cin": {"rn": format!("v{i}"), "con": format!("{i}")}});
        let rsp = c.send(Operation::Create, &cnt, &format!("c{i}"), Some(4), Some(cin)).await.unwrap();
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::CREATED, format!("c{i}").as_str()));
    }
    for i in 0..6 {
        let rsp = c.send(Operation::Retrieve, &format!("{cnt}/v{i}"), &format!("g{i}"), None, None).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK);
        assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"], format!("{i}"));
    }
    let rsp = c.send(Operation::Update, &cnt, "u", None, Some(json!({"m2m:cnt": {"lbl": ["hall"]}}))).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::UPDATED);
    let rsp = c.send(Operation::Delete, &format!("{cnt}/v0"), "d", None, None).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::DELETED);

    // One SA, established through the first replica, used on all three.
    let sa = c.sa();
    let log = c.balancer.log();
    assert!(log.iter().filter(|s| s.kind == Kind::SaMessage).all(|s| s.replica == 0));
    for i in 0..REPLICAS {
        let secured = log.iter().filter(|s| s.kind == Kind::Secured && s.replica == i).count();
        assert!(secured >= 4, "replica {i} served {secured} secured requests");
        let node = c.replicas[i].as_ref().unwrap().sidecar().node();
        assert!(node.inbound().get(sa.sa_id()).is_some(), "replica {i} holds the SA");
    }
    assert!(log.iter().all(|s| s.answer.as_ref().and_then(Message::rsc) == Some(2000)), "every exchange answered 2000");
    let executed = c.executed();
    assert!(executed.values().all(|&n| n == 1), "{executed:?}");
    assert_eq!(executed.len(), 2 + 6 + 6 + 1 + 1, "{executed:?}");

    // A request replica 0 accepted, replayed to replica 1 (which never saw it): refused.
    let replayed = log.iter().rev().find(|s| s.kind == Kind::Secured && s.replica == 0).unwrap().request.clone();
    let answer = balancer::forward(c.ingresses[1], &replayed.bytes()).await.unwrap();
    let opened = with_sealed(&answer, |s| {
        let encoding = s.encoding;
        sa.open(s).map(|(plain, _)| (encoding, plain.to_vec()))
    });
    // The compact form seals the answer's binary form (docs/protocol.md §4.5), JWE its JSON.
    let inner = match opened.expect("a sealed answer").expect("opens") {
        (onem2m_sa::secure::Encoding::Compact, plain) => ResponsePrimitive::from_binary_slice(&plain).unwrap(),
        (onem2m_sa::secure::Encoding::Jwe, plain) => ResponsePrimitive::from_json_slice(&plain).unwrap(),
    };
    assert_eq!(inner.rsc, Rsc::ESPRIM_BAD_MAC, "{inner:?}");
    // To replica 0 itself, its own window refuses it.
    let again = balancer::forward(c.ingresses[0], &replayed.bytes()).await.unwrap();
    assert_ne!(again.rsc(), Some(2000), "replayed to the same replica and answered");
    assert_eq!(c.executed(), executed, "nothing executed again");
    assert_nonces_unique(&c.balancer);

    // A reload keeps the store (and the SAs in it); changing [store] needs a restart.
    let runtime = c.replicas[1].as_ref().unwrap().sidecar().runtime().clone();
    let memory = Config { store: StoreSettings::Memory, ..c.config.clone() };
    let refused = runtime.reload(&memory).unwrap_err();
    assert!(refused.contains("[store]"), "{refused}");
    let done = runtime.reload(&c.config).unwrap();
    assert_eq!((done.sas_kept, done.sas_removed), (1, 0), "{done}");
    // The admin endpoint lists the SA once (every generation reads the store's one table).
    let admin = onem2m_sa_sidecar::admin::Admin::new(runtime.clone(), Arc::default(), None);
    let get = http::Request::get("/sa").body(bytes::Bytes::new()).unwrap();
    let listed: serde_json::Value = serde_json::from_slice(admin.oneshot(get).await.unwrap().body()).unwrap();
    assert_eq!(listed["sas"].as_array().unwrap().len(), 1, "{listed}");
    for i in 0..REPLICAS {
        let rsp = c.send(Operation::Retrieve, &cnt, &format!("after-reload-{i}"), None, None).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    }
    let _ = c.sa();

    // A reload that changes the trust anchors ends every SA in the store, on every replica; the
    // Initiator's next request establishes a new one.
    let mut distrusting = c.config.clone();
    distrusting.node.trust_anchors = DemoPki::new().anchors();
    let done = runtime.reload(&distrusting).unwrap();
    assert_eq!(done.sas_removed, 1, "{done}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..REPLICAS).any(|i| c.replicas[i].as_ref().unwrap().sidecar().node().inbound().get(sa.sa_id()).is_some()) {
        assert!(Instant::now() < deadline, "a replica still holds the SA");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rsp = c.send(Operation::Retrieve, &cnt, "after-distrust", None, None).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    let now: Vec<_> =
        c.ae.sidecar().node().outbound().entries().iter().filter(|e| e.is_active()).map(|e| e.sa_id()).collect();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], sa.sa_id(), "a new SA");
}

/// Replicas started while Redis is down start, refuse establishments with 5000 (an SA the other
/// replicas could not see), and establish once Redis is up, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_without_redis_refuse_establishments_until_it_is_up() {
    let Some(mut redis) = Redis::start() else { return };
    redis.stop();
    let mut c = Cluster::start(redis).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = json!({"m2m:ae": {"rn": "meter", "api": "Nmeter", "rr": false, "srv": ["3"]}});
    let rsp = c.send(Operation::Create, &base, "down", Some(2), Some(ae.clone())).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::INTERNAL_SERVER_ERROR, "{rsp:?}");
    assert!(c.cse.cse.executed().is_empty());
    for i in 0..REPLICAS {
        assert!(c.replicas[i].as_ref().unwrap().sidecar().node().inbound().is_empty());
    }
    c.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let rsp = c.send(Operation::Create, &base, &format!("up{n}"), Some(2), Some(ae.clone())).await.unwrap();
        if rsp.rsc == Rsc::CREATED {
            break;
        }
        assert!(Instant::now() < deadline, "no establishment once Redis is up: {rsp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sa = c.sa().sa_id();
    for i in 0..2 * REPLICAS {
        let rsp = c.send(Operation::Retrieve, &format!("{base}/meter"), &format!("r{i}"), None, None).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    }
    for i in 0..REPLICAS {
        assert!(c.replicas[i].as_ref().unwrap().sidecar().node().inbound().get(sa).is_some(), "replica {i}");
    }
}

/// A replica crashes under load: every request completes exactly once on the others, or fails
/// with a clear code (and is executed at most once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_load_loses_no_request_and_executes_none_twice() {
    const WORKERS: usize = 4;
    const EACH: usize = 30;
    let Some(redis) = Redis::start() else { return };
    let mut c = Cluster::start(redis).await;
    let cnt = ae_and_container(&c).await;
    let before = c.cse.cse.executed().len();
    let workers = load(&c, &cnt, WORKERS, EACH);
    // Mid-load, the replica every SA message went to (the SA was established through it) dies
    // as a crash would; the balancer's health check takes it out of service after.
    until_executed(&c, before + WORKERS * EACH / 4).await;
    let killed = c.replicas[0].take().unwrap();
    tokio::task::spawn_blocking(move || killed.kill()).await.unwrap();
    let at_kill = c.balancer.log().len();
    c.balancer.take_out(0);
    let results = workers.join_all().await.concat();

    let failed = at_most_once(&c, &results);
    for (rqi, rsc) in &failed {
        assert!([Rsc::TARGET_NOT_REACHABLE, Rsc::REQUEST_TIMEOUT].contains(rsc), "{rqi}: {rsc} is not a clear code");
    }
    // Those in flight at the crash (one per worker), and those sent to it before it was out.
    assert!(failed.len() <= 2 * WORKERS, "{failed:?}");
    for w in 0..WORKERS {
        let last = format!("w{w}-{}", EACH - 1);
        assert!(results.iter().any(|(rqi, r)| *rqi == last && *r == Ok(Rsc::CREATED)), "{last} failed");
    }
    // The SA lived on: the others served the rest over it, with no re-establishment.
    let _ = c.sa();
    let after = &c.balancer.log()[at_kill..];
    for i in 1..REPLICAS {
        assert!(after.iter().any(|s| s.replica == i && s.answer.is_some()), "replica {i} served after the crash");
    }
    assert_nonces_unique(&c.balancer);
}

/// Replicas configured with Redis Sentinel (`sentinels`, `master`) find the master through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_redis_through_sentinel() {
    let Some(redis) = Redis::start() else { return };
    let sentinel = Sentinel::start(&redis);
    let c = Cluster::start_with(redis, |config| {
        if let StoreSettings::Redis(r) = &mut config.store {
            r.url = String::new();
            r.sentinels = vec![sentinel.url()];
            r.master = Some(Sentinel::MASTER.to_owned());
        }
    })
    .await;
    let cnt = ae_and_container(&c).await;
    for i in 0..2 * REPLICAS {
        let rsp = c.send(Operation::Retrieve, &cnt, &format!("s{i}"), None, None).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    }
    let sa = c.sa().sa_id();
    let key = format!("replicas:sa:{}", sa);
    let recorded: bool = redis::cmd("EXISTS").arg(&key).query(&mut c.redis.raw()).unwrap();
    assert!(recorded, "the SA is recorded on the master the Sentinel names");
}

/// Replicas configured with a Redis Cluster (`cluster`, three masters) keep every key of the
/// store in the hash slot of their prefix, and serve the SA through all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sas_through_a_redis_cluster() {
    let Some(mut nodes) = RedisCluster::start(3, 0) else { return };
    let urls = nodes.urls();
    // The harness keeps one node (stopped last); the others live until the end of the test.
    let first = nodes.nodes.remove(0);
    let c = Cluster::start_with(first, |config| {
        if let StoreSettings::Redis(r) = &mut config.store {
            r.url = String::new();
            r.cluster = urls.clone();
        }
    })
    .await;
    let cnt = ae_and_container(&c).await;
    for i in 0..2 * REPLICAS {
        let rsp = c.send(Operation::Retrieve, &cnt, &format!("k{i}"), None, None).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
        let rsp = c
            .send(Operation::Create, &cnt, &format!("kc{i}"), Some(4), Some(json!({"m2m:cin": {"con": "21.5"}})))
            .await
            .unwrap();
        assert_eq!(rsp.rsc, Rsc::CREATED, "{rsp:?}");
    }
    assert!(c.executed().values().all(|n| *n == 1), "{:?}", c.executed());
    // The SA's record is under the prefix as hash tag, on the master of that slot.
    let key = format!("{{replicas:}}sa:{}", c.sa().sa_id());
    let mut raw = c.redis.raw();
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query(&mut raw).unwrap();
    let tag_slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg("replicas:").query(&mut raw).unwrap();
    assert_eq!(slot, tag_slot);
    let all: Vec<&Redis> = std::iter::once(&c.redis).chain(nodes.nodes.iter()).collect();
    let holders: Vec<bool> =
        all.iter().map(|r| redis::cmd("EXISTS").arg(&key).query::<bool>(&mut r.raw()).unwrap_or(false)).collect();
    assert_eq!(holders.iter().filter(|h| **h).count(), 1, "the record is on one master: {holders:?}");
    // `--check --connect` reaches the cluster and opens the records.
    let findings = onem2m_sa_sidecar::doctor::connect_checks(&c.config).await;
    let f = findings.into_iter().find(|f| f.what.starts_with("store:")).expect("a finding about the store");
    assert!(f.ok && f.what.contains("Redis Cluster") && f.what.contains("1 SA records open"), "{f}");
}

/// Replicas configured with `rediss://`, the CA that signed Redis's certificate and a client
/// certificate (`ca_file`, `cert_file`, `key_file`) reach Redis over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_redis_over_tls() {
    let Some(tls) = TlsRedis::start() else { return };
    let files = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls.client_files(files.path());
    let port = tls.tls_port;
    let c = Cluster::start_with(tls.redis, |config| {
        if let StoreSettings::Redis(r) = &mut config.store {
            r.url = format!("rediss://127.0.0.1:{port}/");
            r.ca_file = Some(ca.clone());
            r.client_cert = Some((cert.clone(), key.clone()));
        }
    })
    .await;
    let cnt = ae_and_container(&c).await;
    for i in 0..2 * REPLICAS {
        let rsp = c.send(Operation::Retrieve, &cnt, &format!("t{i}"), None, None).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    }
    let key = format!("replicas:sa:{}", c.sa().sa_id());
    let recorded: bool = redis::cmd("EXISTS").arg(&key).query(&mut c.redis.raw()).unwrap();
    assert!(recorded, "the SA is recorded, over TLS");
    let findings = onem2m_sa_sidecar::doctor::connect_checks(&c.config).await;
    let f = findings.into_iter().find(|f| f.what.starts_with("store:")).expect("a finding about the store");
    assert!(f.ok, "{f}");
}

/// `sidecar --check --connect` with a Redis store: Redis reachable and its records opening under
/// the KEK; another KEK, or Redis down, reported as problems with what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_check_reports_the_store() {
    use onem2m_sa_sidecar::doctor::connect_checks;
    let Some(redis) = Redis::start() else { return };
    let mut c = Cluster::start(redis).await;
    ae_and_container(&c).await;
    let store_finding = async |config: &Config| {
        let findings = connect_checks(config).await;
        findings.into_iter().find(|f| f.what.starts_with("store:")).expect("a finding about the store")
    };
    let f = store_finding(&c.config).await;
    assert!(f.ok && f.what.contains("1 SA records open"), "{f}");
    let mut other = c.config.clone();
    if let StoreSettings::Redis(r) = &mut other.store {
        r.kek = Arc::new(zeroize::Zeroizing::new([0x4c; 32]));
    }
    let f = store_finding(&other).await;
    assert!(!f.ok && f.what.contains("1 of 1 SA records") && f.to_string().contains("same kek_file"), "{f}");
    c.redis.stop();
    let f = store_finding(&c.config).await;
    assert!(!f.ok && f.what.contains("not reachable"), "{f}");
}

/// Redis restarts under load, its data lost (no persistence): the replicas refuse what they
/// cannot check with a clear code meanwhile, drop the SAs of the lost store, and the AE host
/// establishes a new SA; every request is executed at most once, and answered 2001 only when it
/// was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_load_executes_no_request_twice() {
    const WORKERS: usize = 4;
    const EACH: usize = 30;
    let Some(redis) = Redis::start() else { return };
    let mut c = Cluster::start(redis).await;
    let cnt = ae_and_container(&c).await;
    let first_sa = c.sa().sa_id();
    let before = c.cse.cse.executed().len();
    let workers = load(&c, &cnt, WORKERS, EACH);
    until_executed(&c, before + WORKERS * EACH / 4).await;
    let mut redis = std::mem::replace(&mut c.redis, Redis::start().unwrap());
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    drop(std::mem::replace(&mut c.redis, redis));
    let results = workers.join_all().await.concat();
    // After the load: requests go through again (over a new SA once the replicas caught up).
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        let rsp = c.send(Operation::Retrieve, &cnt, &format!("after{n}"), None, None).await.unwrap();
        if rsp.rsc == Rsc::OK {
            break;
        }
        assert!(Instant::now() < deadline, "nothing works after Redis came back: {rsp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let failed = at_most_once(&c, &results);
    for (rqi, rsc) in &failed {
        assert!(rsc.is_error(), "{rqi}: {rsc}");
    }
    // Those refused while Redis was away (one command each, not a timeout's worth), and the one
    // per worker that met the SA of the lost store before the Initiator established a new one.
    assert!(failed.len() <= 3 * WORKERS, "{failed:?}");
    let now = c.ae.sidecar().node().outbound().entries();
    assert!(now.iter().any(|e| e.is_active() && e.sa_id() != first_sa), "a new SA after Redis lost the first");
    assert_nonces_unique(&c.balancer);
}

/// The CSE's notifications reach the AE over an SA from the replica the AE registered through
/// (its point of access names that replica's egress), while the AE's requests spread over all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_the_ae_through_the_replicas() {
    const CONTENTS: usize = 6;
    let Some(redis) = Redis::start() else { return };
    let mut c = Cluster::start(redis).await;
    let cnt = ae_and_container(&c).await;
    let sub = json!({"m2m:sub": {"rn": "watch", "nu": [AE_ID], "enc": {"net": [3]}}});
    let rsp = c.send(Operation::Create, &cnt, "sub", Some(23), Some(sub)).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED, "{rsp:?}");
    for i in 0..CONTENTS {
        let cin = json!({"m2m:cin": {"rn": format!("n{i}"), "con": format!("{i}")}});
        let rsp = c.send(Operation::Create, &cnt, &format!("n{i}"), Some(4), Some(cin)).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::CREATED, "{rsp:?}");
    }
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received < CONTENTS {
        match tokio::time::timeout_at(deadline, c.receiver.received.recv()).await {
            Ok(Some(_)) => received += 1,
            _ => panic!("{received} of {CONTENTS} notifications received"),
        }
    }
    // Over one SA from one replica towards the AE host (the AE's own SA is another).
    let senders: Vec<usize> =
        (0..REPLICAS).filter(|&i| !c.replicas[i].as_ref().unwrap().sidecar().node().outbound().is_empty()).collect();
    assert_eq!(senders.len(), 1, "{senders:?}");
    let _ = c.sa();
}

/// Waits until every running replica's inbound table satisfies `cond` for `sa_id`.
async fn until_replicas(c: &Cluster, what: &str, sa_id: onem2m_sa::SaId, cond: impl Fn(Option<Arc<SaEntry>>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let holds = || c.replicas.iter().flatten().all(|r| cond(r.sidecar().node().inbound().get(sa_id)));
    while !holds() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The documented setup (docs/deploy.md §12): the balancer sends every SA message to one
/// replica (the first in service, where the SA was established). The AE host's Update SA
/// (identifier, then keys) and Remove SA go through it, and every replica applies each: requests
/// spread over all three go on under the new identifier and keys, and after the removal the
/// next request establishes a new SA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_remove_sa_through_the_balancer_reach_every_replica() {
    use onem2m_sa::flows::{UpdateOperation, UpdateResult};
    let Some(redis) = Redis::start() else { return };
    let c = Cluster::start(redis).await;
    let cnt = ae_and_container(&c).await;
    let sa_id = c.sa().sa_id();
    let (node, peers) = c.ae.sidecar().runtime().nodes().remove(0);
    let retrieve_on_all = async |tag: &str| {
        for i in 0..REPLICAS {
            let rsp = c.send(Operation::Retrieve, &cnt, &format!("{tag}-{i}"), None, None).await.unwrap();
            assert_eq!(rsp.rsc, Rsc::OK, "{tag}: {rsp:?}");
        }
    };

    let confirm = node.update(sa_id, UpdateOperation::Identifier, peers.clone()).await;
    assert_eq!(confirm.result, UpdateResult::Accepted);
    let new = confirm.new_sa_id.expect("a new identifier");
    until_replicas(&c, "every replica knows the new identifier", new, |e| e.is_some()).await;
    retrieve_on_all("identifier").await;
    assert_eq!(c.sa().sa_id(), new, "still one SA, renamed");

    // The Responder refuses a key update within a second of the SA's keys
    // (`Timing::min_key_update_interval_ms`): asked again until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.update(new, UpdateOperation::Keys, peers.clone()).await.result != UpdateResult::Accepted {
        assert!(Instant::now() < deadline, "the key update was never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_replicas(&c, "every replica under the new keys", new, |e| {
        e.and_then(|e| e.current_epoch()).is_some_and(|e| e.number == 1)
    })
    .await;
    retrieve_on_all("keys").await;

    let confirm = node.remove(new, peers).await;
    assert_eq!(confirm.0.result, UpdateResult::Accepted);
    until_replicas(&c, "every replica removed the SA", new, |e| e.is_none()).await;
    retrieve_on_all("removed").await;
    assert_ne!(c.sa().sa_id(), new, "a new SA");

    let log = c.balancer.log();
    assert!(log.iter().filter(|s| s.kind == Kind::SaMessage).all(|s| s.replica == 0));
    let executed = c.executed();
    assert!(executed.values().all(|&n| n == 1), "{executed:?}");
}
