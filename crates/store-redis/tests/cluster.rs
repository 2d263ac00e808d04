//! Three CSE-side replicas sharing their SAs through Redis, behind a relay that spreads the
//! requests round-robin; an AE-side node sends through the relay.
//!
//! The relay sends SA messages (establishment, update) of a peer to one replica (their dialogue
//! keeps half-open state in that replica's SA Management) and spreads secured requests over
//! all live ones.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Redis;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::{Credentials, TrustAnchors};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::rng::SystemRng;
use onem2m_sa::secure::{decode_jwe, epo_from_content};
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa_store_redis::{Kek, RedisStore, RedisStoreConfig};
use onem2m_sa_tower::store::{SaStore, SharedReplayLayer};
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt, service_fn};

type Svc = tower::util::BoxCloneSyncService<RequestPrimitive, ResponsePrimitive, BoxError>;

/// The CSE stand-in: records the rqi of every request it executes.
#[derive(Clone, Default)]
struct Cse {
    rqis: Arc<Mutex<Vec<String>>>,
}

impl Cse {
    fn service(&self) -> tower::util::BoxCloneSyncService<InboundRequest, ResponsePrimitive, BoxError> {
        let me = self.clone();
        tower::util::BoxCloneSyncService::new(service_fn(move |req: InboundRequest| {
            let me = me.clone();
            async move {
                me.rqis.lock().unwrap().push(req.primitive.rqi.clone());
                let rsc = match req.primitive.op {
                    Operation::Create => Rsc::CREATED,
                    Operation::Delete => Rsc::DELETED,
                    Operation::Update => Rsc::UPDATED,
                    _ => Rsc::OK,
                };
                Ok::<_, BoxError>(ResponsePrimitive::new(rsc, &req.primitive.rqi))
            }
        }))
    }

    fn executed(&self) -> Vec<String> {
        self.rqis.lock().unwrap().clone()
    }
}

fn config(creds: Arc<Credentials>, anchors: Arc<TrustAnchors>) -> NodeConfig {
    NodeConfig {
        initiator: initiator_config(creds.clone(), anchors.clone(), &Suite::ALL),
        responder: responder_config(creds, anchors, &Suite::ALL),
        timing: Timing { min_key_update_interval_ms: 0, ..Timing::default() },
        limits: Limits::default(),
        table: TableConfig::default(),
        rb_timeout: Duration::from_secs(30),
    }
}

/// One CSE-side replica: its store, its node over the store's table, and its ingress.
struct Replica {
    store: RedisStore,
    ingress: Svc,
}

async fn replica(redis: &Redis, creds: Arc<Credentials>, anchors: Arc<TrustAnchors>, cse: &Cse) -> Replica {
    let store_config = RedisStoreConfig { timeout: Duration::from_millis(500), ..RedisStoreConfig::new(redis.url()) };
    let store =
        RedisStore::connect(store_config, Kek::new(&[0x33; 32]).unwrap(), TableConfig::default()).await.unwrap();
    store.spawn_listener(Duration::from_millis(50));
    let node = Node::with_inbound_table(config(creds, anchors), store.table().clone());
    let shared: Arc<dyn SaStore> = Arc::new(store.clone());
    let protected = Svc::new(
        ReceiveSecureLayer::new(node.clone(), PlaintextPolicy::default())
            .layer(SharedReplayLayer::new(shared.clone()).layer(cse.service())),
    );
    let ingress = Svc::new(service_fn(move |req: RequestPrimitive| {
        let (node, shared, protected) = (node.clone(), shared.clone(), protected.clone());
        async move {
            if rb::is_sa_message(&req) {
                Ok(node.handle_sa_message_stored(&req, &*shared).await)
            } else {
                protected.oneshot(req).await
            }
        }
    }));
    Replica { store, ingress }
}

/// The load balancer: SA messages to the first live replica, secured requests round-robin.
/// Remembers the last secured request each replica got, and every sequence number the
/// replicas sealed answers with.
#[derive(Clone)]
struct Relay {
    replicas: Arc<Vec<Mutex<Option<Svc>>>>,
    next: Arc<AtomicUsize>,
    last_request: Arc<Mutex<Vec<Option<RequestPrimitive>>>>,
    sealed: Arc<Mutex<Vec<(onem2m_sa::SaId, u8, u64)>>>,
}

impl Relay {
    fn new(replicas: &[Replica]) -> Self {
        Self {
            replicas: Arc::new(replicas.iter().map(|r| Mutex::new(Some(r.ingress.clone()))).collect()),
            next: Arc::default(),
            last_request: Arc::new(Mutex::new(vec![None; replicas.len()])),
            sealed: Arc::default(),
        }
    }

    fn kill(&self, i: usize) {
        *self.replicas[i].lock().unwrap() = None;
    }

    fn service(&self) -> Svc {
        let me = self.clone();
        Svc::new(service_fn(move |req: RequestPrimitive| {
            let me = me.clone();
            async move {
                let n = me.replicas.len();
                let start = if rb::is_sa_message(&req) { 0 } else { me.next.fetch_add(1, Ordering::Relaxed) };
                // The first live replica from `start` (a dead one is skipped, as a health-checking
                // balancer does; a request already sent to a replica that dies fails).
                let picked = (0..n)
                    .map(|k| (start + k) % n)
                    .find_map(|i| me.replicas[i].lock().unwrap().clone().map(|svc| (i, svc)));
                let Some((i, svc)) = picked else { return Err::<ResponsePrimitive, BoxError>("no replica".into()) };
                if !rb::is_sa_message(&req) {
                    me.last_request.lock().unwrap()[i] = Some(req.clone());
                }
                let rsp = svc.oneshot(req).await?;
                if let Some(epo) = rsp.pc.as_ref().and_then(|pc| epo_from_content(pc).ok()) {
                    let mut scratch = Vec::new();
                    if let Ok(sealed) = decode_jwe(epo.as_bytes(), &mut scratch) {
                        let h = sealed.header;
                        me.sealed.lock().unwrap().push((h.sa_id, h.key_phase, h.seq));
                    }
                }
                Ok(rsp)
            }
        }))
    }

    /// Every (SA, key phase, sequence number) was sealed once: no nonce repeated under a key.
    fn assert_nonces_unique(&self) {
        let sealed = self.sealed.lock().unwrap();
        let unique: HashSet<_> = sealed.iter().collect();
        assert_eq!(unique.len(), sealed.len(), "two answers sealed with the same nonce");
        assert!(!sealed.is_empty());
    }
}

fn request(op: Operation, n: usize) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, "/id-in/cb", Some("CAE01".to_owned()), format!("r{n}"));
    r.rvi = Some("3".into());
    if op == Operation::Create {
        r.ty = Some(3);
        r.pc = Some(serde_json::json!({"m2m:cnt": {"rn": format!("box{n}")}}));
    }
    r
}

fn expected(op: Operation) -> Rsc {
    match op {
        Operation::Create => Rsc::CREATED,
        Operation::Delete => Rsc::DELETED,
        Operation::Update => Rsc::UPDATED,
        _ => Rsc::OK,
    }
}

const OPS: [Operation; 4] = [Operation::Create, Operation::Retrieve, Operation::Update, Operation::Delete];

struct Cluster {
    redis: Redis,
    cse: Cse,
    replicas: Vec<Replica>,
    relay: Relay,
    to_cse: Svc,
}

async fn cluster() -> Option<Cluster> {
    let redis = Redis::start()?;
    let pki = TestPki::new(&mut SystemRng, now_unix());
    let anchors = pki.anchors.clone();
    // The replicas are one node: one identity, one credential.
    let cse_creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut SystemRng);
    let ae_creds = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut SystemRng);
    let cse = Cse::default();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&redis, cse_creds.clone(), anchors.clone(), &cse).await);
    }
    let relay = Relay::new(&replicas);
    let ae = Node::new(config(ae_creds, anchors));
    let to_cse = Svc::new(SendSecureLayer::new(ae, route_by_cse_id(None)).layer(relay.service()));
    Some(Cluster { redis, cse, replicas, relay, to_cse })
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_through_three_replicas_and_a_replay_to_another_replica_is_refused() {
    let Some(c) = cluster().await else { return };
    for n in 0..24 {
        let op = OPS[n % 4];
        let rsp = c.to_cse.clone().oneshot(request(op, n)).await.unwrap();
        assert_eq!(rsp.rsc, expected(op), "request {n}: {rsp:?}");
    }
    // Every request executed exactly once, and every replica served some.
    let executed = c.cse.executed();
    assert_eq!(executed.len(), 24);
    assert_eq!(executed.iter().collect::<HashSet<_>>().len(), 24);
    for (i, last) in c.relay.last_request.lock().unwrap().iter().enumerate() {
        assert!(last.is_some(), "replica {i} served nothing");
    }
    // A request replica 0 accepted, replayed to replica 1: opened (keys shared) but refused
    // by the shared window before the CSE.
    let replayed = c.relay.last_request.lock().unwrap()[0].clone().unwrap();
    let rsp = c.replicas[1].ingress.clone().oneshot(replayed.clone()).await.unwrap();
    assert_eq!(c.cse.executed().len(), 24, "the replay reached the CSE: {rsp:?}");
    let rsp = c.replicas[0].ingress.clone().oneshot(replayed).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::ESPRIM_BAD_MAC, "the replica's own window");
    assert_eq!(c.cse.executed().len(), 24);
    c.relay.assert_nonces_unique();
    assert!(c.replicas.iter().all(|r| r.store.is_available()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_load_loses_no_request_and_executes_none_twice() {
    let Some(c) = cluster().await else { return };
    // The SA first (the establishment is not what this test is about).
    assert_eq!(c.to_cse.clone().oneshot(request(Operation::Retrieve, 1000)).await.unwrap().rsc, Rsc::OK);
    let mut calls = Vec::new();
    for n in 0..90 {
        let svc = c.to_cse.clone();
        calls.push(tokio::spawn(async move { (n, svc.oneshot(request(OPS[n % 4], n)).await) }));
        if n == 30 {
            c.relay.kill(2);
        }
    }
    let mut ok = 0;
    for call in calls {
        let (n, result) = call.await.unwrap();
        match result {
            Ok(rsp) if rsp.rsc == expected(OPS[n % 4]) => ok += 1,
            // A request that failed says so with an error RSC (or a transport error).
            Ok(rsp) => assert!(rsp.rsc.code() >= 4000, "request {n}: {rsp:?}"),
            Err(_) => {}
        }
    }
    let executed = c.cse.executed();
    assert_eq!(executed.iter().collect::<HashSet<_>>().len(), executed.len(), "a request executed twice");
    assert!(ok >= 60, "only {ok} of 90 completed with a replica of three down");
    c.relay.assert_nonces_unique();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_load_fails_requests_clearly_and_executes_none_twice() {
    let Some(mut c) = cluster().await else { return };
    assert_eq!(c.to_cse.clone().oneshot(request(Operation::Retrieve, 1000)).await.unwrap().rsc, Rsc::OK);
    for n in 0..12 {
        let rsp = c.to_cse.clone().oneshot(request(OPS[n % 4], n)).await.unwrap();
        assert_eq!(rsp.rsc, expected(OPS[n % 4]));
    }
    c.redis.stop();
    // Redis down: RETRIEVE still served from the held SA; other operations refused with 5000
    // (a replay to another replica could not be told apart), never executed twice.
    for n in 12..24 {
        let op = OPS[n % 4];
        let rsp = c.to_cse.clone().oneshot(request(op, n)).await.unwrap();
        if op == Operation::Retrieve {
            assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
        } else {
            assert!(rsp.rsc == expected(op) || rsp.rsc == Rsc::INTERNAL_SERVER_ERROR, "{rsp:?}");
        }
    }
    c.redis.restart();
    // Redis back, empty: the replicas drop the SA recorded before (its counters are gone), the
    // AE re-establishes on the next request, and everything works again.
    let mut n = 24;
    loop {
        let rsp = c.to_cse.clone().oneshot(request(Operation::Create, n)).await;
        n += 1;
        if rsp.is_ok_and(|r| r.rsc == Rsc::CREATED) {
            break;
        }
        assert!(n < 200, "never recovered after Redis came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in n..n + 12 {
        let rsp = c.to_cse.clone().oneshot(request(OPS[k % 4], k)).await.unwrap();
        assert_eq!(rsp.rsc, expected(OPS[k % 4]), "request {k} after recovery: {rsp:?}");
    }
    let executed = c.cse.executed();
    assert_eq!(executed.iter().collect::<HashSet<_>>().len(), executed.len(), "a request executed twice");
}
