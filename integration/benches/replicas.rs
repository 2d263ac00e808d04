//! Sidecar replicas sharing SAs through Redis, against one in-memory sidecar, in one run
//! (issue 17's benchmark, with real sidecars: HTTP in and out, the demo CSE behind them).
//!
//! For each setup — one CSE-side sidecar with its SAs in memory; 1, 2 and 3 replicas with
//! `[store] kind = "redis"` over one `redis-server` — a fresh demo CSE, the CSE-side sidecar(s)
//! behind the round-robin balancer of the replica tests (`onem2m_sa_integration::balancer`;
//! the in-memory sidecar behind it too, so every setup has the same hops), and an AE-side
//! sidecar whose peer is the balancer. After the AE's registration and a container (the SA
//! established), 16 tasks send 2,000 requests through the AE-side sidecar's HTTP egress:
//! RETRIEVE of the container and CREATE of a content instance in turn. Requests per second,
//! each setup's ratio against the in-memory sidecar; two rounds, setups interleaved, the better
//! round counts. Then **establishment + first request** through a fresh AE-side sidecar, to the
//! in-memory sidecar and to the three replicas (the SA recorded in Redis before the answer),
//! mean of 10.
//!
//! Everything — CSE, sidecars, balancer, Redis, the load — shares the machine: on one 2-core box
//! replicas cannot add capacity, the figures say what the store costs. Needs `redis-server`.
//!
//! `cargo bench -p onem2m-sa-integration --bench replicas`

#[path = "../../crates/store-redis/tests/common/mod.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use onem2m_primitive::{Operation, ResponseStatusCode as Rsc};
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::serve_demo_cse;
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_integration::balancer::Balancer;
use onem2m_sa_integration::{Isolated, free_port, request};
use onem2m_sa_sidecar::config::{Config, StoreSettings};
use onem2m_sa_sidecar::demo::{self, AE_ID, CSE_BASE, CSE_ID, DemoPki};
use redis_server::Redis;
use serde_json::json;
use tower::ServiceExt;

const REQUESTS: usize = 2_000;
const IN_FLIGHT: usize = 16;
const ESTABLISHMENTS: usize = 10;

/// One setup running: the CSE, its sidecar(s) behind the balancer, the AE host's sidecar.
struct Setup {
    _cse: onem2m_sa_examples::demo_http::ServedCse,
    _replicas: Vec<Isolated>,
    balancer: Balancer,
    ae: Isolated,
    pki: Arc<DemoPki>,
}

fn store(redis: &Redis, prefix: &str) -> StoreSettings {
    onem2m_sa_integration::redis_store(redis.url(), prefix, Duration::from_millis(2_000))
}

async fn setup(replicas: usize, store: StoreSettings) -> Setup {
    let pki = Arc::new(DemoPki::new());
    let cse = serve_demo_cse(demo::loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
    let ingresses: Vec<SocketAddr> = (0..replicas).map(|_| free_port()).collect();
    let ae_ingress = free_port();
    let mut config = demo::cse_sidecar_config(&pki, &cse.base(), ae_ingress);
    config.store = store;
    let started = ingresses.iter().map(|&a| Isolated::start(&config, Some(a), Some(free_port()))).collect();
    let balancer = Balancer::start(ingresses).await.unwrap();
    let ae = ae_sidecar(&pki, &balancer, ae_ingress);
    Setup { _cse: cse, _replicas: started, balancer, ae, pki }
}

fn ae_sidecar(pki: &DemoPki, balancer: &Balancer, ingress: SocketAddr) -> Isolated {
    let config: Config = demo::ae_sidecar_config(pki, balancer.addr(), "http://127.0.0.1:9/");
    Isolated::start(&config, Some(ingress), Some(free_port()))
}

fn client(ae: &Isolated) -> HttpClient {
    HttpClient::new(&format!("http://{}", ae.addresses().egress_http.unwrap()), ClientConfig::default()).unwrap()
}

/// The AE's registration and a container; returns the container's address.
async fn prepare(c: &HttpClient) -> String {
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let mut req = request(Operation::Create, &base, AE_ID, "reg");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "meter", "api": "Nmeter", "rr": false, "srv": ["3"]}}));
    assert_eq!(c.clone().oneshot(req).await.unwrap().rsc, Rsc::CREATED);
    let mut req = request(Operation::Create, &format!("{base}/meter"), AE_ID, "cnt");
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "data"}}));
    assert_eq!(c.clone().oneshot(req).await.unwrap().rsc, Rsc::CREATED);
    format!("{base}/meter/data")
}

/// Requests per second through `c`: RETRIEVE of `cnt` and CREATE of a content instance in turn.
async fn rate(c: &HttpClient, cnt: &str, round: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (c, cnt, next) = (c.clone(), cnt.to_owned(), next.clone());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    return;
                }
                let rqi = format!("b{round}-{n}");
                let (req, want) = if n % 2 == 0 {
                    (request(Operation::Retrieve, &cnt, AE_ID, &rqi), Rsc::OK)
                } else {
                    let mut req = request(Operation::Create, &cnt, AE_ID, &rqi);
                    req.ty = Some(4);
                    req.pc = Some(json!({"m2m:cin": {"con": "21.5"}}));
                    (req, Rsc::CREATED)
                };
                let rsp = c.clone().oneshot(req).await.unwrap();
                assert_eq!(rsp.rsc, want, "{rsp:?}");
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    REQUESTS as f64 / start.elapsed().as_secs_f64()
}

/// Mean time of a fresh AE-side sidecar's first request (its establishment included).
async fn establishment(s: &Setup) -> Duration {
    let mut total = Duration::ZERO;
    for n in 0..ESTABLISHMENTS {
        let ae = ae_sidecar(&s.pki, &s.balancer, free_port());
        let c = client(&ae);
        let start = Instant::now();
        let rsp =
            c.oneshot(request(Operation::Retrieve, &format!("{CSE_ID}/{CSE_BASE}"), AE_ID, &format!("e{n}"))).await;
        total += start.elapsed();
        assert_eq!(rsp.unwrap().rsc, Rsc::OK);
    }
    total / ESTABLISHMENTS as u32
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: only measure when benched.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(redis) = Redis::start() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let names = ["one sidecar, SAs in memory", "1 replica through Redis", "2 replicas", "3 replicas"];
        let mut best = [0f64; 4];
        for round in 0..2 {
            for (i, name) in names.iter().enumerate() {
                let s = match i {
                    0 => setup(1, StoreSettings::Memory).await,
                    n => setup(n, store(&redis, &format!("bench{round}{n}:"))).await,
                };
                let c = client(&s.ae);
                let cnt = prepare(&c).await;
                let r = rate(&c, &cnt, round).await;
                println!("round {round}  {name:<28} {r:>8.0} req/s");
                best[i] = best[i].max(r);
            }
        }
        println!();
        println!("| setup | req/s (better of 2 rounds) | vs in memory |");
        println!("|---|---:|---:|");
        for (name, r) in names.iter().zip(best) {
            println!("| {name} | {r:.0} | {:.2}x |", r / best[0]);
        }
        let memory = setup(1, StoreSettings::Memory).await;
        let m = establishment(&memory).await;
        drop(memory);
        let replicas = setup(3, store(&redis, "bench-est:")).await;
        let r = establishment(&replicas).await;
        println!();
        println!(
            "establishment + first request through a fresh AE-side sidecar: in memory {:.1} ms, \
             3 replicas through Redis {:.1} ms (+{:.1} ms)",
            m.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3,
            (r.as_secs_f64() - m.as_secs_f64()) * 1e3
        );
    });
}
