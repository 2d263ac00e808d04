//! Establishments per second through one Node's SA-message path, with 1 and 2 concurrent
//! establishing tasks on a multi-thread tokio runtime with 2 workers.
//!
//! Each task is its own Initiator node (so the Initiators share no lock) establishing SAs with
//! one Responder node over its in-process [`SaEndpoint`]; after each establishment the Initiator
//! forgets its SA, so the next request establishes again. All the Responder's work — SaInit
//! (KEM key generation and encapsulation, ticket signature), SaAuth (ticket and signature
//! verification) — goes through that one node. With the public-key work done outside the SA
//! Management's locks, 2 tasks reach close to twice the rate of 1 on 2 cores; with it done under
//! them, the Responder's half is serialised and the rate does not scale.
//!
//! `sa_init/*` isolates the Responder: the tasks hand pre-built SaInit messages (one per
//! iteration, fresh nonces, built before the clock starts) to one node's `handle_sa_message`,
//! which runs the Responder's KEM key generation, encapsulation and signature for each. There
//! the locked design cannot scale at all; the split one can reach twice the rate of 1 task.
//!
//! `lock_hold/*` measures, on one thread, how long the Responder's SA Management is held per
//! establishment (SaInit and SaAuth): `handle_from` (before: everything ran under the lock) and
//! `admit` + `commit` (now: the public-key work runs between them). Its inverse is the ceiling on
//! establishments per second through one node, whatever the number of cores (Amdahl); unlike
//! the rates above it does not depend on what else the machine runs.
//!
//! `cargo bench -p onem2m-sa-tower --bench sa_path`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::{AcceptAll, Initiator};
use onem2m_sa::flows::{EstablishResult, InitiateSaRequest};
use onem2m_sa::manage::{Admitted, InitiatorEvent, InitiatorSam, Limits, ResponderSam, Timing};
use onem2m_sa::message::Message;
use onem2m_sa::rng::SystemRng;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};
use onem2m_sa_tower::{Node, NodeConfig, SaEndpoint, rb};

fn config(pki: &TestPki, id: &str, originators: &[&str]) -> NodeConfig {
    let creds = pki.node(id, SignatureAlgorithm::Ed25519, originators, &mut SystemRng);
    NodeConfig {
        initiator: initiator_config(creds.clone(), pki.anchors.clone(), &[Suite::ALL[0]]),
        responder: responder_config(creds, pki.anchors.clone(), &[Suite::ALL[0]]),
        timing: Timing::default(),
        // No cookies: every SaInit is answered at once (this measures the crypto path, not the
        // flood defences).
        limits: Limits { init_rate_per_source: u32::MAX, cookie_threshold: usize::MAX, ..Limits::default() },
        table: TableConfig::default(),
        rb_timeout: Duration::from_secs(10),
    }
}

fn sa_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let pki = TestPki::new(&mut SystemRng, unix);
    let responder_id: NodeId = "/id-in".parse().unwrap();
    let responder = config(&pki, "/id-in", &["/id-in"]);
    let initiators: Vec<NodeConfig> = (0..2).map(|i| config(&pki, &format!("/id-asn{i}"), &["C*"])).collect();
    let mut group = c.benchmark_group("sa_path");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for tasks in [1usize, 2] {
        group.bench_function(BenchmarkId::new("establishments", format!("{tasks}-tasks")), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    // Fresh nodes per sample: the Responder's record of nonces seen (a bound of
                    // its flood defences) does not fill up across samples.
                    let endpoint = SaEndpoint::new(Node::new(responder.clone()));
                    let initiators: Vec<Node> = initiators.iter().map(|c| Node::new(c.clone())).collect();
                    let start = Instant::now();
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (a, peer, endpoint) = (initiators[t].clone(), responder_id.clone(), endpoint.clone());
                            // This task's share of the iterations.
                            let n = iters / tasks as u64 + u64::from((t as u64) < iters % tasks as u64);
                            tokio::spawn(async move {
                                for _ in 0..n {
                                    let entry = a.sa_with(&peer, endpoint.clone()).await.expect("established");
                                    a.forget_outbound(&entry);
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// SaInit messages each task sends to one node before moving on to the next node.
const CHUNK: u64 = 256;

fn sa_init(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let pki = TestPki::new(&mut SystemRng, unix);
    let mut responder = config(&pki, "/id-in", &["/id-in"]);
    // Room for every half-open establishment a sample leaves behind.
    responder.limits =
        Limits { max_half_open: 1 << 20, max_half_open_per_peer: usize::MAX, max_sas: 1 << 21, ..responder.limits };
    let initiator = config(&pki, "/id-asn", &["C*"]).initiator;
    let request = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
    let mut group = c.benchmark_group("sa_init");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for tasks in [1usize, 2] {
        group.bench_function(BenchmarkId::new("responder", format!("{tasks}-tasks")), |b| {
            b.iter_custom(|iters| {
                // A fresh node per CHUNK messages of each task, so the half-open establishments
                // a sample leaves behind stay few (the per-source bound scans them).
                let nodes: Vec<Node> = rt.block_on(async {
                    (0..iters.div_ceil(CHUNK * tasks as u64)).map(|_| Node::new(responder.clone())).collect()
                });
                let messages: Vec<Vec<_>> = (0..tasks as u64)
                    .map(|t| {
                        let n = iters / tasks as u64 + u64::from(t < iters % tasks as u64);
                        (0..n)
                            .map(|i| {
                                let (_, bytes) = Initiator::start(initiator.clone(), &request, &mut SystemRng).unwrap();
                                rb::request("/id-in", "/id-asn", format!("{t}-{i}"), &bytes)
                            })
                            .collect()
                    })
                    .collect();
                rt.block_on(async {
                    let start = Instant::now();
                    let handles: Vec<_> = messages
                        .into_iter()
                        .map(|batch| {
                            let nodes = nodes.clone();
                            tokio::spawn(async move {
                                for (i, req) in batch.into_iter().enumerate() {
                                    let rsp = nodes[i / CHUNK as usize].handle_sa_message(&req);
                                    let reply = rb::message_of(rsp.pc.as_ref()).expect("an SA message");
                                    let Ok(Message::InitReply(r)) = Message::decode(&reply) else {
                                        panic!("no SaInitReply")
                                    };
                                    assert_eq!(r.parameters.result, EstablishResult::Success);
                                    tokio::task::yield_now().await;
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn lock_hold(c: &mut Criterion) {
    let now = Now::new(1_000, SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs());
    let pki = TestPki::new(&mut SystemRng, now.unix_secs);
    let responder = config(&pki, "/id-in", &["/id-in"]);
    let limits = Limits { max_half_open: 1 << 20, max_half_open_per_peer: usize::MAX, ..responder.limits };
    let initiator = config(&pki, "/id-asn", &["C*"]);
    let request = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
    let mut group = c.benchmark_group("lock_hold");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    for split in [false, true] {
        let name = if split { "admit+commit" } else { "handle_from" };
        group.bench_function(BenchmarkId::new("responder", name), |b| {
            b.iter_custom(|iters| {
                let mut held = Duration::ZERO;
                let mut i = InitiatorSam::new(initiator.initiator.clone(), Timing::default());
                let mut r = ResponderSam::new(responder.responder.clone(), Timing::default(), limits);
                for k in 0..iters {
                    if k % CHUNK == 0 {
                        r = ResponderSam::new(responder.responder.clone(), Timing::default(), limits);
                    }
                    let ex = i.initiate(&request, now, &mut SystemRng).unwrap();
                    let mut message = ex.bytes;
                    loop {
                        let out = if split {
                            let start = Instant::now();
                            let Admitted::Work(work) = r.admit(&[], &message, now, &mut SystemRng) else {
                                panic!("not admitted")
                            };
                            held += start.elapsed();
                            let computed = work.compute(now, &mut SystemRng, &mut AcceptAll);
                            let start = Instant::now();
                            let out = r.commit(computed, now);
                            held += start.elapsed();
                            out
                        } else {
                            let start = Instant::now();
                            let out = r.handle_from(&[], &message, now, &mut SystemRng, &mut AcceptAll);
                            held += start.elapsed();
                            out
                        };
                        match i.handle_response(ex.id, &out.reply.unwrap(), now, &mut SystemRng).pop() {
                            Some(InitiatorEvent::Transmit(next)) => message = next.bytes,
                            Some(InitiatorEvent::Established { confirm, .. }) => {
                                let sa_id: SaId = confirm.security_association.unwrap().sa_id;
                                i.forget(sa_id, now);
                                break;
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                }
                held
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sa_path, sa_init, lock_hold);
criterion_main!(benches);
