//! Three CSE-side replicas sharing their SAs through Redis, behind a relay that spreads the
//! requests round-robin; an AE-side node sends through the relay.
//!
//! The relay sends SA messages (establishment, update) of a peer to one replica (their dialogue
//! keeps half-open state in that replica's SA Management) and spreads secured requests over
//! all live ones.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Redis;
use common::cluster::*;
use onem2m_primitive::{Operation, ResponseStatusCode as Rsc};
use onem2m_sa::crypto::SignatureAlgorithm;
use onem2m_sa::rng::SystemRng;
use onem2m_sa::testkit::TestPki;
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sa_established_on_one_replica_works_on_another_before_its_event_arrives() {
    let Some(redis) = Redis::start() else { return };
    let pki = TestPki::new(&mut SystemRng, now_unix());
    let anchors = pki.anchors.clone();
    let cse_creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut SystemRng);
    let cse = Cse::default();
    // Replica 1 follows no events: it can only learn the SA when a request under it arrives.
    let replicas = vec![
        replica(&redis, cse_creds.clone(), anchors.clone(), &cse).await,
        replica_with(&redis, cse_creds, anchors.clone(), &cse, false).await,
    ];
    let relay = Relay::new(&replicas);
    let ae_creds = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut SystemRng);
    let to_cse = Svc::new(
        SendSecureLayer::new(Node::new(config(ae_creds, anchors)), route_by_cse_id(None)).layer(relay.service()),
    );
    for n in 0..6 {
        let op = OPS[n % 4];
        let rsp = to_cse.clone().oneshot(request(op, n)).await.unwrap();
        assert_eq!(rsp.rsc, expected(op), "request {n}: {rsp:?}");
    }
    assert_eq!(replicas[1].store.table().len(), 1, "replica 1 learnt the SA from the store");
    assert_eq!(cse.executed().len(), 6);
}

/// Issue 11's attack across replicas: an attacker on the path forwards a secured request,
/// swallows its sealed answer and answers an unsealed 4112 itself; the sender establishes a new
/// SA and resends, and the round-robin relay takes the copy to the next replica (secured
/// requests go round-robin, so the copy never lands where the first copy did). The replicas'
/// shared record of executed requests gives the copy the first copy's answer: each CREATE,
/// UPDATE, DELETE and NOTIFY executes once, and the client gets the CSE's answer. (With the
/// record per replica, every copy executed again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_a_forged_4112_that_lands_on_another_replica_executes_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let Some(redis) = Redis::start() else { return };
    let pki = TestPki::new(&mut SystemRng, now_unix());
    let anchors = pki.anchors.clone();
    let cse_creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut SystemRng);
    let cse = Cse::default();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&redis, cse_creds.clone(), anchors.clone(), &cse).await);
    }
    let relay = Relay::new(&replicas);
    let attack = Arc::new(AtomicBool::new(false));
    let path = forger(relay.service(), attack.clone());
    let ae_creds = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut SystemRng);
    let ae = Node::new(config(ae_creds, anchors));
    // Each attacked request makes the sender establish again: no rate limit here.
    ae.set_recovery(Recovery { min_interval: Duration::ZERO, ..Recovery::default() });
    let to_cse = Svc::new(SendSecureLayer::new(ae, route_by_cse_id(None)).layer(path));
    // The SA first, unattacked.
    assert_eq!(to_cse.clone().oneshot(request(Operation::Retrieve, 0)).await.unwrap().rsc, Rsc::OK);
    for (k, op) in [Operation::Create, Operation::Update, Operation::Delete, Operation::Notify].into_iter().enumerate()
    {
        let n = 100 + k;
        let before = relay.next.load(Ordering::SeqCst);
        attack.store(true, Ordering::SeqCst);
        let rsp = to_cse.clone().oneshot(request(op, n)).await.unwrap();
        assert!(!attack.load(Ordering::SeqCst), "the attack ran");
        assert_eq!(relay.next.load(Ordering::SeqCst) - before, 2, "{op:?}: the first copy and one resend");
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (expected(op), format!("r{n}").as_str()), "{op:?}: {rsp:?}");
    }
    let executed = cse.executed();
    for n in 100..104 {
        let times = executed.iter().filter(|r| **r == format!("r{n}")).count();
        assert_eq!(times, 1, "r{n} executed {times} times: {executed:?}");
    }
    relay.assert_nonces_unique();
}
