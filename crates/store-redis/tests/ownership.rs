//! Who expires, updates and removes an SA that replicas share through a real `redis-server`
//! (issue 17: "expiry is single-owner; Update SA and Remove SA are seen by all"). Each replica
//! is a [`Node::with_store`] over its own [`RedisStore`], as in the sidecar; the Initiator's
//! SA messages reach the replica a test names (as a balancer would hand them on).
//!
//! Without `redis-server` on the PATH the tests say so and pass, unless `ONEM2M_REQUIRE_REDIS=1`
//! (CI sets it), where they fail.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Redis;
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive};
use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::{UpdateOperation, UpdateResult};
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::rng::SystemRng;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};
use onem2m_sa_store_redis::{Kek, RedisStore, RedisStoreConfig};
use onem2m_sa_tower::{BoxError, Node, NodeConfig};

const KEK: [u8; 32] = [0x3c; 32];
const PREFIX: &str = "own-test:";

fn unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn node_config(pki: &TestPki, id: &str, originators: &[&str]) -> NodeConfig {
    let creds = pki.node(id, SignatureAlgorithm::Ed25519, originators, &mut SystemRng);
    NodeConfig {
        initiator: initiator_config(creds.clone(), pki.anchors.clone(), &Suite::ALL),
        responder: responder_config(creds, pki.anchors.clone(), &Suite::ALL),
        timing: Timing { min_key_update_interval_ms: 0, ..Timing::default() },
        limits: Limits::default(),
        table: TableConfig::default(),
        rb_timeout: Duration::from_secs(2),
    }
}

struct Deployment {
    /// The CSE-side replicas, each over its own store.
    replicas: Vec<Node>,
    stores: Vec<RedisStore>,
    ae: Node,
    /// The configuration of another Initiator ([`Deployment::barrier`]).
    other: NodeConfig,
    redis: redis::aio::MultiplexedConnection,
    // Last: the replicas' tasks end before Redis does.
    _server: Redis,
}

async fn deployment(server: Redis, n: usize) -> Deployment {
    let pki = TestPki::new(&mut SystemRng, unix());
    let cse = node_config(&pki, "/id-in", &["/id-in"]);
    let (mut replicas, mut stores) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let config = RedisStoreConfig {
            prefix: PREFIX.into(),
            timeout: Duration::from_millis(500),
            ..RedisStoreConfig::new(server.url())
        };
        let store = RedisStore::connect(config, Kek::new(&KEK).unwrap(), TableConfig::default()).await.unwrap();
        store.spawn_listener(Duration::from_millis(50));
        replicas.push(Node::with_store(cse.clone(), Arc::new(store.clone())));
        stores.push(store);
    }
    let ae = Node::new(node_config(&pki, "/id-asn", &["C*"]));
    let other = node_config(&pki, "/id-asn2", &["C*"]);
    let redis = redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    Deployment { replicas, stores, ae, other, redis, _server: server }
}

/// The Initiator's SA messages, handed to `replica` (as [`onem2m_sa_tower::ReceiveSecure`]
/// does: answered with `handle_sa_message_stored` on the replica's store).
fn via(
    replica: &Node,
) -> impl tower::Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError, Future: Send> + Clone + Send
{
    let node = replica.clone();
    tower::service_fn(move |req: RequestPrimitive| {
        let node = node.clone();
        async move {
            let store = node.store().expect("a replica").clone();
            let req = onem2m_sa_tower::carriage::unwrapped(req);
            Ok::<_, BoxError>(node.handle_sa_message_stored(&req, &*store).await)
        }
    })
}

fn cse() -> NodeId {
    "/id-in".parse().unwrap()
}

/// Polls `cond` until it holds (bounded: 10 s, then the test fails).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Deployment {
    /// Establishes an SA through replica `i` and waits until every replica holds it.
    async fn establish(&self, i: usize) -> SaId {
        let entry = self.ae.sa_with(&cse(), via(&self.replicas[i])).await.expect("established");
        let sa_id = entry.sa_id();
        until("every replica holds the SA", || self.stores.iter().all(|s| s.table().get(sa_id).is_some())).await;
        sa_id
    }

    /// Waits until every replica has applied every event published so far: another Initiator
    /// establishes an SA through replica 0, and the events of one channel arrive in order.
    async fn barrier(&self) {
        let entry = Node::new(self.other.clone()).sa_with(&cse(), via(&self.replicas[0])).await.unwrap();
        let sa_id = entry.sa_id();
        until("every replica holds the SA", || self.stores.iter().all(|s| s.table().get(sa_id).is_some())).await;
    }

    /// Records written to the store so far (each write draws a generation).
    async fn writes(&mut self) -> u64 {
        let n: Option<u64> = redis::cmd("GET").arg(format!("{PREFIX}gen")).query_async(&mut self.redis).await.unwrap();
        n.unwrap_or(0)
    }

    /// Whether the SA's record in Redis is a tombstone (tombstones expire; live records do not).
    async fn tombstoned(&mut self, sa_id: SaId) -> bool {
        let key = self.stores[0].record_key(sa_id);
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut self.redis).await.unwrap();
        ttl > 0
    }

    /// A time past the SA's expiry.
    fn after_expiry(&self, sa_id: SaId) -> Now {
        let expires = self.stores[0].table().get(sa_id).unwrap().expires_unix();
        Now::new(3_600_000, expires + 1)
    }
}

/// (a) An SA expires on every replica: each drops its copy, and exactly one writes the
/// tombstone — whichever runs its timers first, the others find the SA claimed. Nothing
/// removed the SA from Redis before (every replica dropped its copy and the record stayed
/// live for good: a replica started later installed it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sa_is_removed_from_the_store_by_exactly_one_replica() {
    let Some(server) = Redis::start() else { return };
    let mut d = deployment(server, 3).await;
    let sa_id = d.establish(0).await;
    let later = d.after_expiry(sa_id);
    let before = d.writes().await;
    // The replicas that did not establish it run their timers first, then the one that did.
    for i in [1, 2, 0] {
        d.replicas[i].tick_at(later).await;
        assert!(d.stores[i].table().get(sa_id).is_none(), "replica {i} dropped its copy");
    }
    // And again: nobody writes a second time.
    for i in [0, 1, 2] {
        d.replicas[i].tick_at(later).await;
    }
    assert_eq!(d.writes().await - before, 1, "exactly one tombstone");
    assert!(d.tombstoned(sa_id).await, "the record is a tombstone");
    // A replica that starts now does not install it again.
    let config = RedisStoreConfig {
        prefix: PREFIX.into(),
        timeout: Duration::from_millis(500),
        ..RedisStoreConfig::new(d._server.url())
    };
    let late = RedisStore::connect(config, Kek::new(&KEK).unwrap(), TableConfig::default()).await.unwrap();
    late.sync().await.unwrap();
    assert!(late.table().get(sa_id).is_none());
}

/// (c) The replica that established an SA is gone when it expires: another one removes it from
/// the store, once. And where the one that claimed it died before writing the tombstone, its
/// claim lapses and a survivor, still trying, writes it (before, nobody ever removed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sas_of_a_dead_replica_expire_through_the_survivors() {
    let Some(server) = Redis::start() else { return };
    let mut d = deployment(server, 3).await;
    let hold = Duration::from_millis(300);
    for r in &d.replicas {
        r.set_claim_hold(hold);
    }
    let quiet = d.establish(0).await;
    d.ae.forget_outbound(&d.ae.outbound().get(quiet).unwrap());
    let claimed = d.establish(0).await;
    assert_ne!(quiet, claimed);
    // Replica 0 took the claim on `claimed` at its expiry, then died before its tombstone.
    assert!(d.stores[0].claim(claimed, hold.as_millis() as u64).await.unwrap());
    let (_dead, _dead_store) = (d.replicas.remove(0), d.stores.remove(0));
    let later = d.after_expiry(quiet).max(d.after_expiry(claimed));
    let before = d.writes().await;
    for r in &d.replicas {
        r.tick_at(later).await;
    }
    assert!(d.stores.iter().all(|s| s.table().get(quiet).is_none() && s.table().get(claimed).is_none()));
    assert!(d.tombstoned(quiet).await, "a survivor removed the SA nobody claimed");
    assert!(!d.tombstoned(claimed).await, "the dead replica's claim holds for now");
    assert_eq!(d.writes().await - before, 1);
    // The survivors keep trying (the same `now`: within their retry time) until the claim lapses.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.tombstoned(claimed).await {
        assert!(Instant::now() < deadline, "the lapsed claim never passed on");
        tokio::time::sleep(Duration::from_millis(20)).await;
        for r in &d.replicas {
            r.tick_at(later).await;
        }
    }
    for r in &d.replicas {
        r.tick_at(later).await;
    }
    assert_eq!(d.writes().await - before, 2, "one tombstone each");
}

/// The epoch each replica seals under for `sa_id` (`None`: it does not hold the SA).
fn epochs(d: &Deployment, sa_id: SaId) -> Vec<Option<u32>> {
    d.stores.iter().map(|s| s.table().get(sa_id).and_then(|e| e.current_epoch()).map(|e| e.number)).collect()
}

/// (b) The documented setup: the balancer keeps a peer's SA messages on the replica that
/// established its SA. Update SA (keys, then identifier) and Remove SA handled there are seen by
/// every replica; the old identifier ends on every replica with its grace period (it stayed
/// on the others until the SA expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_remove_sa_handled_by_the_establishing_replica_are_seen_by_all() {
    let Some(server) = Redis::start() else { return };
    let d = deployment(server, 3).await;
    let old = d.establish(1).await;
    let confirm = d.ae.update(old, UpdateOperation::Keys, via(&d.replicas[1])).await;
    assert_eq!(confirm.result, UpdateResult::Accepted);
    until("every replica seals under the new keys", || epochs(&d, old) == [Some(1); 3]).await;

    let confirm = d.ae.update(old, UpdateOperation::Identifier, via(&d.replicas[1])).await;
    assert_eq!(confirm.result, UpdateResult::Accepted);
    let new = confirm.new_sa_id.expect("a new identifier");
    until("every replica knows the new identifier", || epochs(&d, new) == [Some(1); 3]).await;
    // Past the grace period, the old identifier names nothing on any replica.
    let grace = d.stores[0].table().config().grace_ms;
    let later = Now::new(3_600_000 + grace, unix());
    for r in &d.replicas {
        r.tick_at(later).await;
    }
    until("the old identifier is gone everywhere", || epochs(&d, old) == [None; 3]).await;
    assert_eq!(epochs(&d, new), [Some(1); 3], "the SA itself stays");

    let confirm = d.ae.remove(new, via(&d.replicas[1])).await;
    assert_eq!(confirm.0.result, UpdateResult::Accepted);
    until("every replica removed the SA", || epochs(&d, new) == [None; 3]).await;
}

/// (b) Without that affinity: an Update SA or Remove SA handed to a replica whose SA Management
/// did not establish the SA is refused there (it has the SA's traffic keys from the store, not
/// its control state), and nothing changes on any replica — no two replicas ever both act on
/// one SA's update. The removal ends the SA at the Initiator only; the replicas keep it until
/// it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sa_message_handed_to_another_replica_is_refused_and_changes_nothing() {
    let Some(server) = Redis::start() else { return };
    let d = deployment(server, 3).await;
    let sa_id = d.establish(0).await;
    let confirm = d.ae.update(sa_id, UpdateOperation::Keys, via(&d.replicas[2])).await;
    assert_eq!(confirm.result, UpdateResult::Rejected);
    let confirm = d.ae.update(sa_id, UpdateOperation::Identifier, via(&d.replicas[2])).await;
    assert_eq!(confirm.result, UpdateResult::Rejected);
    d.barrier().await;
    assert_eq!(epochs(&d, sa_id), [Some(0); 3]);
    let confirm = d.ae.remove(sa_id, via(&d.replicas[2])).await;
    assert_ne!(confirm.0.result, UpdateResult::Accepted);
    d.barrier().await;
    assert_eq!(epochs(&d, sa_id), [Some(0); 3], "kept until it expires");
}
