//! Replicas sharing SAs through a Redis Cluster (three masters with one replica each, started
//! per test on free loopback ports and joined with `redis-cli --cluster create`): the store's
//! keys carry its prefix as their hash tag, so they live in one slot, where the Lua scripts and
//! the atomic writes may span them; the catch-up's `SCAN` goes to that slot's master.
//!
//! Without `redis-server` on the PATH the tests say so and pass, unless `ONEM2M_REQUIRE_REDIS=1`
//! (CI sets it), where they fail.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::RedisCluster;
use common::cluster::*;
use onem2m_primitive::{Operation, ResponseStatusCode as Rsc};
use onem2m_sa::crypto::SignatureAlgorithm;
use onem2m_sa::rng::SystemRng;
use onem2m_sa::testkit::TestPki;
use onem2m_sa_store_redis::RedisStoreConfig;
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt};

/// The store on the cluster; a leased block is used once the slot master's replica holds it.
fn store_config(cluster: &RedisCluster) -> RedisStoreConfig {
    RedisStoreConfig {
        cluster: cluster.urls(),
        lease_replicas: 1,
        // Generous: CI runs these six servers beside the rest of the suite on two cores.
        timeout: Duration::from_millis(2_000),
        ..RedisStoreConfig::new("")
    }
}

/// The hash slot of the default prefix's tag, `onem2m-sa:` (what `CLUSTER KEYSLOT` says).
fn store_slot(cluster: &RedisCluster) -> u16 {
    let mut raw = cluster.nodes[0].raw();
    redis::cmd("CLUSTER").arg("KEYSLOT").arg("{onem2m-sa:}sa:00").query(&mut raw).unwrap()
}

/// Polls `cond` until it holds (bounded: 20 s, then the test fails).
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sas_through_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start(3, 1) else { return };
    let pki = TestPki::new(&mut SystemRng, now_unix());
    let anchors = pki.anchors.clone();
    let cse_creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut SystemRng);
    let cse = Cse::default();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica_on(store_config(&cluster), cse_creds.clone(), anchors.clone(), &cse, true).await);
    }
    let relay = Relay::new(&replicas);
    // An attacker on the path who, when asked, swallows a sealed answer and forges 4112.
    let attack = Arc::new(AtomicBool::new(false));
    let path = forger(relay.service(), attack.clone());
    let ae_creds = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut SystemRng);
    let ae = Node::new(config(ae_creds, anchors.clone()));
    ae.set_recovery(Recovery { min_interval: Duration::ZERO, ..Recovery::default() });
    let to_cse = Svc::new(SendSecureLayer::new(ae, route_by_cse_id(None)).layer(path));

    // CRUD over one SA through all three.
    for n in 0..24 {
        let op = OPS[n % 4];
        let rsp = to_cse.clone().oneshot(request(op, n)).await.unwrap();
        assert_eq!(rsp.rsc, expected(op), "request {n}: {rsp:?}");
    }
    assert_eq!(cse.executed().iter().collect::<HashSet<_>>().len(), 24);
    // A request replica 0 accepted, replayed to replica 1: refused by the shared window.
    let replayed = relay.last_request.lock().unwrap()[0].clone().unwrap();
    let rsp = replicas[1].ingress.clone().oneshot(replayed).await.unwrap();
    assert_eq!(cse.executed().len(), 24, "the replay reached the CSE: {rsp:?}");
    // The forged 4112: the resend lands on the next replica and gets the first answer.
    attack.store(true, Ordering::SeqCst);
    let rsp = to_cse.clone().oneshot(request(Operation::Create, 100)).await.unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::CREATED, "r100"));
    assert_eq!(cse.executed().iter().filter(|r| *r == "r100").count(), 1, "executed once");
    relay.assert_nonces_unique();

    // Every key in one slot, on its master; nothing on the other masters.
    let slot = store_slot(&cluster);
    let holder = cluster.master_of(slot);
    let mut raw = cluster.nodes[holder].raw();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert!(keys.iter().any(|k| k.starts_with("{onem2m-sa:}sa:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("{onem2m-sa:}exe:")), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("{onem2m-sa:}")), "{keys:?}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i != holder && cluster.master_of(slot) != i {
            let n: usize = redis::cmd("DBSIZE").query(&mut node.raw()).unwrap();
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut node.raw()).unwrap();
            let is_master = redis::from_redis_value::<String>(&role[0]).unwrap() == "master";
            assert!(!is_master || n == 0, "node {i} (a master) holds {n} keys");
        }
    }
    // A replica started later catches up from the records (the SCAN goes to the slot's master).
    let late = replica_on(store_config(&cluster), cse_creds, anchors, &cse, true).await;
    let sa_id = replicas[0].store.table().entries()[0].sa_id();
    until("a late replica catches up", async || late.store.table().get(sa_id).is_some()).await;
    assert!(replicas.iter().chain([&late]).all(|r| r.store.is_available()));
}

/// The master of the store's slot dies: the cluster promotes its replica, and the replicas go
/// on through it (the cluster client follows the new slot map, the event subscriptions move to
/// live nodes). Requests during the failover fail clearly or succeed; none but a RETRIEVE
/// executes twice, and every request after it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_go_on_when_the_master_of_the_store_slot_fails_over() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else { return };
    let pki = TestPki::new(&mut SystemRng, now_unix());
    let anchors = pki.anchors.clone();
    let cse_creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut SystemRng);
    let cse = Cse::default();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(replica_on(store_config(&cluster), cse_creds.clone(), anchors.clone(), &cse, true).await);
    }
    let relay = Relay::new(&replicas);
    let ae_creds = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut SystemRng);
    let to_cse = Svc::new(
        SendSecureLayer::new(Node::new(config(ae_creds, anchors)), route_by_cse_id(None)).layer(relay.service()),
    );
    for n in 0..8 {
        let op = OPS[n % 4];
        assert_eq!(to_cse.clone().oneshot(request(op, n)).await.unwrap().rsc, expected(op), "request {n}");
    }
    // Let the replica of the slot's master catch up with what was written, then kill the master.
    let slot = store_slot(&cluster);
    let old = cluster.master_of(slot);
    let mut raw = cluster.nodes[old].raw();
    until("the master's replica acknowledges the writes", async || {
        redis::cmd("WAIT").arg(1).arg(100).query::<u32>(&mut raw).unwrap() >= 1
    })
    .await;
    cluster.nodes[old].stop();
    // Requests go on meanwhile: each either succeeds or fails with a clear code.
    let mut n = 8;
    let promoted = async || {
        cluster.nodes.iter().enumerate().any(|(i, r)| i != old && r.raw_checked().is_some())
            && cluster.master_of(slot) != old
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !promoted().await {
        assert!(Instant::now() < deadline, "no failover");
        let op = OPS[n % 4];
        let rsp = to_cse.clone().oneshot(request(op, n)).await.unwrap();
        assert!(rsp.rsc == expected(op) || rsp.rsc.is_error(), "request {n}: {rsp:?}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // After the failover, every request succeeds (the first ones may find the stores still
    // reconnecting: retried until they do, bounded).
    for _ in 0..8 {
        let op = OPS[n % 4];
        let mut tries = 0;
        loop {
            let rsp = to_cse.clone().oneshot(request(op, n)).await.unwrap();
            if rsp.rsc == expected(op) {
                break;
            }
            tries += 1;
            assert!(tries < 200 && rsp.rsc.is_error(), "request {n} after the failover: {rsp:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += 1;
    }
    // None executed twice — but RETRIEVE, which is safe to repeat and not recorded: the retries
    // above repeat a RETRIEVE whose first copy may have executed before its answer failed.
    let executed: Vec<String> = cse
        .executed()
        .into_iter()
        .filter(|r| OPS[r[1..].parse::<usize>().unwrap() % 4] != Operation::Retrieve)
        .collect();
    assert_eq!(executed.iter().collect::<HashSet<_>>().len(), executed.len(), "a request executed twice: {executed:?}");
    until("the stores are available again", async || replicas.iter().all(|r| r.store.is_available())).await;
}
