//! The cluster the replica tests and the benchmark share: CSE-side replicas over one Redis
//! store behind a round-robin relay, an AE-side node sending through it, a CSE stand-in.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::{Credentials, TrustAnchors};
use onem2m_sa::crypto::Suite;
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::secure::{decode_compact, decode_jwe, epo_from_content};
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{initiator_config, responder_config};
use onem2m_sa_store_redis::{Kek, RedisStore, RedisStoreConfig};
use onem2m_sa_tower::store::{LearnOnMissLayer, SaStore, SharedReplayLayer};
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt, service_fn};

use super::Redis;

pub type Svc = tower::util::BoxCloneSyncService<RequestPrimitive, ResponsePrimitive, BoxError>;

/// The CSE stand-in: records the rqi of every request it executes.
#[derive(Clone, Default)]
pub struct Cse {
    pub rqis: Arc<Mutex<Vec<String>>>,
}

impl Cse {
    pub fn service(&self) -> tower::util::BoxCloneSyncService<InboundRequest, ResponsePrimitive, BoxError> {
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

    pub fn executed(&self) -> Vec<String> {
        self.rqis.lock().unwrap().clone()
    }
}

pub fn config(creds: Arc<Credentials>, anchors: Arc<TrustAnchors>) -> NodeConfig {
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
pub struct Replica {
    pub store: RedisStore,
    pub ingress: Svc,
}

pub async fn replica(redis: &Redis, creds: Arc<Credentials>, anchors: Arc<TrustAnchors>, cse: &Cse) -> Replica {
    replica_with(redis, creds, anchors, cse, true).await
}

/// A replica; `listen`: whether it follows the store's events (without, it learns of an SA
/// only when a request under it arrives).
pub async fn replica_with(
    redis: &Redis,
    creds: Arc<Credentials>,
    anchors: Arc<TrustAnchors>,
    cse: &Cse,
    listen: bool,
) -> Replica {
    let store_config = RedisStoreConfig { timeout: Duration::from_millis(500), ..RedisStoreConfig::new(redis.url()) };
    replica_on(store_config, creds, anchors, cse, listen).await
}

/// A replica over the store `store_config` names.
pub async fn replica_on(
    store_config: RedisStoreConfig,
    creds: Arc<Credentials>,
    anchors: Arc<TrustAnchors>,
    cse: &Cse,
    listen: bool,
) -> Replica {
    let store =
        RedisStore::connect(store_config, Kek::new(&[0x33; 32]).unwrap(), TableConfig::default()).await.unwrap();
    if listen {
        store.spawn_listener(Duration::from_millis(50));
    }
    let node = Node::with_inbound_table(config(creds, anchors), store.table().clone());
    let shared: Arc<dyn SaStore> = Arc::new(store.clone());
    let protected = Svc::new(
        LearnOnMissLayer::new(shared.clone()).layer(
            ReceiveSecureLayer::new(node.clone(), PlaintextPolicy::default())
                .layer(SharedReplayLayer::new(shared.clone()).layer(cse.service())),
        ),
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
pub struct Relay {
    pub replicas: Arc<Vec<Mutex<Option<Svc>>>>,
    pub next: Arc<AtomicUsize>,
    pub last_request: Arc<Mutex<Vec<Option<RequestPrimitive>>>>,
    pub sealed: Arc<Mutex<Vec<(onem2m_sa::SaId, u8, u64)>>>,
}

impl Relay {
    pub fn new(replicas: &[Replica]) -> Self {
        Self {
            replicas: Arc::new(replicas.iter().map(|r| Mutex::new(Some(r.ingress.clone()))).collect()),
            next: Arc::default(),
            last_request: Arc::new(Mutex::new(vec![None; replicas.len()])),
            sealed: Arc::default(),
        }
    }

    pub fn kill(&self, i: usize) {
        *self.replicas[i].lock().unwrap() = None;
    }

    pub fn service(&self) -> Svc {
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
                if let Some((sa_id, key_phase, seq)) = rsp.pc.as_ref().and_then(sealed_header) {
                    me.sealed.lock().unwrap().push((sa_id, key_phase, seq));
                }
                Ok(rsp)
            }
        }))
    }

    /// Every (SA, key phase, sequence number) was sealed once: no nonce repeated under a key.
    pub fn assert_nonces_unique(&self) {
        let sealed = self.sealed.lock().unwrap();
        let unique: HashSet<_> = sealed.iter().collect();
        assert_eq!(unique.len(), sealed.len(), "two answers sealed with the same nonce");
        assert!(!sealed.is_empty());
    }
}

/// The (SA, key phase, sequence number) of a sealed answer, in either secured form.
fn sealed_header(pc: &serde_json::Value) -> Option<(onem2m_sa::SaId, u8, u64)> {
    let mut scratch = Vec::new();
    let sealed = match onem2m_primitive::compact::bytes(pc) {
        Some(bytes) => {
            scratch = bytes.ok()?;
            decode_compact(&mut scratch).ok()?
        }
        None => decode_jwe(epo_from_content(pc).ok()?.as_bytes(), &mut scratch).ok()?,
    };
    let h = sealed.header;
    Some((h.sa_id, h.key_phase, h.seq))
}

pub fn request(op: Operation, n: usize) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, "/id-in/cb", Some("CAE01".to_owned()), format!("r{n}"));
    r.rvi = Some("3".into());
    if op == Operation::Create {
        r.ty = Some(3);
        r.pc = Some(serde_json::json!({"m2m:cnt": {"rn": format!("box{n}")}}));
    }
    r
}

pub fn expected(op: Operation) -> Rsc {
    match op {
        Operation::Create => Rsc::CREATED,
        Operation::Delete => Rsc::DELETED,
        Operation::Update => Rsc::UPDATED,
        _ => Rsc::OK,
    }
}

pub const OPS: [Operation; 4] = [Operation::Create, Operation::Retrieve, Operation::Update, Operation::Delete];

/// One node alone, its SAs in memory: the baseline.
pub fn memory_ingress(creds: Arc<Credentials>, anchors: Arc<TrustAnchors>, cse: &Cse) -> Svc {
    let node = Node::new(config(creds, anchors));
    Svc::new(ReceiveSecureLayer::new(node, PlaintextPolicy::default()).layer(cse.service()))
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// An attacker in front of `to`: forwards everything, but while `attack` is set it forwards the
/// next secured request, swallows its sealed answer, answers an unsealed 4112 itself and clears
/// `attack`.
pub fn forger(to: Svc, attack: Arc<std::sync::atomic::AtomicBool>) -> Svc {
    Svc::new(service_fn(move |req: RequestPrimitive| {
        let (to, attack) = (to.clone(), attack.clone());
        async move {
            if rb::is_sa_message(&req) || !attack.swap(false, Ordering::SeqCst) {
                return to.oneshot(req).await;
            }
            let rqi = req.rqi.clone();
            let answer = to.oneshot(req).await?;
            assert_eq!(answer.rsc, Rsc::OK, "the attacker swallows a sealed answer: {answer:?}");
            Ok(ResponsePrimitive::error(Rsc::ESPRIM_UNKNOWN_KEY_ID, &rqi, "unknown SA"))
        }
    }))
}
