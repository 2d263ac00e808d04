//! Replicas sharing SAs through Redis, against one node with its SAs in memory, in one run.
//!
//! * `requests/s`: secured requests (CREATE, RETRIEVE, UPDATE, DELETE in turn) from one AE-side
//!   node through in-process transports, 16 in flight, to one in-memory node, then to 1, 2 and
//!   3 replicas behind the round-robin relay (each request's sequence number marked in the
//!   shared window, each but RETRIEVE entered in the shared record of executed requests,
//!   numbers leased by blocks).
//! * `establishment`: a fresh AE node's first request (establishment + the request), in memory
//!   and through Redis (the Responder records the SA before it answers).
//! * `shared window`: one `accept` (the Lua script) per call, sequential.
//! * `shared record`: what each CREATE, UPDATE, DELETE and NOTIFY adds on a replica — one
//!   `admit_executed` (Lua) and one `record_executed` (`SET`), sealed — sequential.
//!
//! Needs `redis-server` on the PATH (started on a free loopback port, no persistence).
//! `cargo bench -p onem2m-sa-store-redis --bench replicas` (`RUST_LOG=onem2m_sa_store_redis=debug` shows
//! what the stores log).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Redis;
use common::cluster::*;
use onem2m_primitive::ResponseStatusCode as Rsc;
use onem2m_sa::credential::{Credentials, TrustAnchors};
use onem2m_sa::crypto::SignatureAlgorithm;
use onem2m_sa::rng::SystemRng;
use onem2m_sa::testkit::TestPki;
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt};

const REQUESTS: usize = 3_000;
const IN_FLIGHT: usize = 16;
const ESTABLISHMENTS: usize = 20;

fn ae(pki: &TestPki, anchors: &Arc<TrustAnchors>, to: Svc) -> Svc {
    let creds = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut SystemRng);
    let node = Node::new(config(creds, anchors.clone()));
    Svc::new(SendSecureLayer::new(node, route_by_cse_id(None)).layer(to))
}

/// Requests per second through `to`, after one warm-up request (the establishment).
async fn rate(to: &Svc) -> f64 {
    let first = to.clone().oneshot(request(onem2m_primitive::Operation::Retrieve, 0)).await.unwrap();
    assert_eq!(first.rsc, Rsc::OK);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let start = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (to, next) = (to.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n > REQUESTS {
                        return;
                    }
                    let op = OPS[n % 4];
                    let rsp = to.clone().oneshot(request(op, n)).await.unwrap();
                    assert_eq!(rsp.rsc, expected(op), "{rsp:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    REQUESTS as f64 / start.elapsed().as_secs_f64()
}

/// Mean time of a fresh AE node's first request (establishment included) through `to`.
async fn establishment(pki: &TestPki, anchors: &Arc<TrustAnchors>, to: &Svc) -> Duration {
    let mut total = Duration::ZERO;
    for n in 0..ESTABLISHMENTS {
        let sender = ae(pki, anchors, to.clone());
        let start = Instant::now();
        let rsp = sender.oneshot(request(onem2m_primitive::Operation::Retrieve, n)).await.unwrap();
        total += start.elapsed();
        assert_eq!(rsp.rsc, Rsc::OK);
    }
    total / ESTABLISHMENTS as u32
}

async fn replicas(
    redis: &Redis,
    n: usize,
    creds: &Arc<Credentials>,
    anchors: &Arc<TrustAnchors>,
) -> (Svc, Vec<Replica>) {
    let cse = Cse::default();
    let mut rs = Vec::new();
    for _ in 0..n {
        rs.push(replica(redis, creds.clone(), anchors.clone(), &cse).await);
    }
    (Relay::new(&rs).service(), rs)
}

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let Some(redis) = Redis::start() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let pki = TestPki::new(&mut SystemRng, now_unix());
        let anchors = pki.anchors.clone();
        let cse_creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut SystemRng);

        let memory = memory_ingress(cse_creds.clone(), anchors.clone(), &Cse::default());
        let base = rate(&ae(&pki, &anchors, memory.clone())).await;
        println!("requests/s  memory (one node)   {base:>8.0}   1.00x");
        for n in 1..=3 {
            let (relay, _rs) = replicas(&redis, n, &cse_creds, &anchors).await;
            let r = rate(&ae(&pki, &anchors, relay)).await;
            println!("requests/s  redis, {n} replica(s) {r:>8.0}   {:.2}x", r / base);
        }

        let mem = establishment(&pki, &anchors, &memory).await;
        let (relay, rs) = replicas(&redis, 3, &cse_creds, &anchors).await;
        let red = establishment(&pki, &anchors, &relay).await;
        println!(
            "establishment + first request  memory {:>7.0} µs   redis {:>7.0} µs   (+{:.0} µs)",
            mem.as_secs_f64() * 1e6,
            red.as_secs_f64() * 1e6,
            (red.as_secs_f64() - mem.as_secs_f64()) * 1e6
        );

        // The shared window alone: an SA the store recorded, one accept per call.
        let sa_id = rs[0].store.table().entries()[0].sa_id();
        let start = Instant::now();
        let calls = 5_000u64;
        for seq in 1_000_000..1_000_000 + calls {
            assert!(rs[0].store.accept(sa_id, 0, seq).await.unwrap());
        }
        let accept = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
        println!("shared window accept (Lua)  {accept:.1} µs per call");

        // The shared record of executed requests alone: what a CREATE, UPDATE, DELETE or NOTIFY
        // adds on a replica (admit, then the answer written), sequential.
        let answer = br#"{"rsc":2001,"rqi":"r1","rvi":"3"}"#;
        let start = Instant::now();
        for n in 0..calls {
            let key = onem2m_sa_tower::store::execution_key("/id-asn", "CAE01", &format!("bench-{n}"));
            let first = rs[0].store.admit_executed(key, [7; 32]).await.unwrap();
            assert_eq!(first, onem2m_sa_tower::store::SharedExecution::First);
            rs[0].store.record_executed(key, [7; 32], answer).await.unwrap();
        }
        let record = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
        println!(
            "shared record of executed requests (admit + answer)  {record:.1} µs per request ({:.2}x accept)",
            record / accept
        );
    });
}
