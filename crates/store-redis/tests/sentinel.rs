//! The store behind Redis Sentinel: replicas find the master through the Sentinels and follow
//! it through a failover (real `redis-server` processes: a master, its replica, a Sentinel).
//!
//! Without `redis-server` on the PATH the test says so and passes, unless
//! `ONEM2M_REQUIRE_REDIS=1` (CI sets it), where it fails.

mod common;

use std::time::{Duration, Instant};

use common::{Redis, Sentinel};
use onem2m_sa::Now;
use onem2m_sa::crypto::Suite;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::linked;
use onem2m_sa_store_redis::{Kek, RedisStore, RedisStoreConfig, SentinelAddress};

/// Polls `cond` until it holds (bounded: 30 s, then the test fails).
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn established(seed: u8) -> onem2m_sa::EstablishedSa {
    let now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), seed, now);
    l.pair.responder.sa(l.sa_id).unwrap().sa.clone()
}

async fn through(sentinel: &Sentinel) -> RedisStore {
    let config = RedisStoreConfig {
        sentinel: Some(SentinelAddress { nodes: vec![sentinel.url()], master: Sentinel::MASTER.into() }),
        timeout: Duration::from_millis(500),
        ..RedisStoreConfig::new("")
    };
    let store = RedisStore::connect(config, Kek::new(&[0x21; 32]).unwrap(), TableConfig::default()).await.unwrap();
    store.spawn_listener(Duration::from_millis(50));
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_find_the_master_through_sentinel_and_follow_a_failover() {
    // Replicas are synced at once (not after the default 5 s wait for more of them).
    let Some(master) = Redis::start_with(&["--repl-diskless-sync-delay", "0"]) else { return };
    let standby = Redis::replica_of(&master);
    let sentinel = Sentinel::start(&master);
    until("the Sentinel knows the master and its replica", async || {
        sentinel.master_port() == Some(master.port()) && sentinel.replicas() == 1
    })
    .await;
    let (a, b) = (through(&sentinel).await, through(&sentinel).await);
    let first = established(81);
    a.publish(&first).await.unwrap();
    let exists = |redis: &Redis, key: &str| -> bool {
        redis::cmd("EXISTS").arg(key).query::<bool>(&mut redis.raw()).unwrap_or(false)
    };
    assert!(exists(&master, &a.record_key(first.sa_id)), "written to the master the Sentinel named");
    until("the other replica learns the SA", async || b.table().get(first.sa_id).is_some()).await;
    // Replication is asynchronous: a failover before the standby has the records loses them
    // (the replicas would notice — the store's incarnation changes — and drop their SAs).
    until("the standby has the record", async || exists(&standby, &a.record_key(first.sa_id))).await;

    // Failover: the standby becomes the master; the replicas follow it without a restart.
    // Refused (NOGOODSLAVE) until the Sentinel has heard from the standby itself.
    until("the Sentinel starts the failover", async || {
        redis::cmd("SENTINEL").arg("failover").arg(Sentinel::MASTER).query::<()>(&mut sentinel.raw()).is_ok()
    })
    .await;
    until("the Sentinel names the standby", async || sentinel.master_port() == Some(standby.port())).await;
    let second = established(82);
    until("a record reaches the new master", async || {
        a.publish(&second).await.is_ok() && exists(&standby, &a.record_key(second.sa_id))
    })
    .await;
    until("the other replica learns it", async || b.table().get(second.sa_id).is_some()).await;
    // The first command after the failover may meet the connection the Sentinel closed.
    until("the other replica reaches the new master", async || b.accept(second.sa_id, 0, 1).await.is_ok()).await;
    assert!(!b.accept(second.sa_id, 0, 1).await.unwrap(), "accepted once");
    // The SA recorded before the failover goes on (the standby had its record and counters).
    assert!(a.accept(first.sa_id, 0, 1).await.unwrap());
    a.refill(first.sa_id).await.unwrap();
    assert!(!a.accept(second.sa_id, 0, 1).await.unwrap(), "one shared window, on the new master");
}
