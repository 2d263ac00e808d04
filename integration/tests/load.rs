//! Load: many SAs established against one ingress sidecar, then many secured primitives across
//! them; no unexpected error, bounded memory, and counters consistent with the Prometheus
//! metrics.
//!
//! The normal suite runs a small version (`load_small`: 200 SAs, 4,000 primitives). The full
//! run is ignored and documented in `docs/benchmarks.md`:
//!
//! ```sh
//! cargo test --release -p onem2m-sa-integration --test load -- --ignored --nocapture
//! ```
//!
//! Everything runs in this one process: the initiators (one node per SA, each with its
//! `SendSecure`), the CSE-side sidecar, and a stand-in upstream that answers every request. The
//! Prometheus recorder is installed once for the process, so the counters add both ends:
//! every primitive is sealed and opened once on the way in and once on the way back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_examples::demo_http::serve_stand_in;
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_integration::request;
use onem2m_sa_sidecar::admin::install_prometheus;
use onem2m_sa_sidecar::demo::{CSE_ID, DemoPki, base_config, cse_sidecar_config, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use onem2m_sa_tower::{Node, Route, SendSecureLayer};
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

type Svc = BoxCloneSyncService<RequestPrimitive, ResponsePrimitive, BoxError>;

/// Resident set size of this process, in bytes (Linux), if known.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The value of an unlabelled counter, or the sum over a labelled one, in a Prometheus text.
fn metric(text: &str, name: &str, label: Option<&str>) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter(|l| label.is_none_or(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[derive(Debug)]
struct Report {
    sas: usize,
    primitives: u64,
    errors: u64,
    establish_secs: f64,
    traffic_secs: f64,
    rss_per_sa: Option<u64>,
}

async fn run_load(sas: usize, per_sa: usize, concurrency: usize) -> Report {
    let render = install_prometheus();
    let before = render();
    let pki = DemoPki::new();

    // The upstream: answers every request at once, and counts them.
    let calls = Arc::new(AtomicU64::new(0));
    let upstream = {
        let calls = calls.clone();
        let svc = service_fn(move |req: RequestPrimitive| {
            calls.fetch_add(1, Ordering::Relaxed);
            let mut rsp = ResponsePrimitive::new(Rsc::OK, &req.rqi);
            rsp.rvi = Some("3".into());
            async move { Ok::<_, BoxError>(rsp) }
        });
        serve_stand_in(loopback().await.unwrap(), svc).unwrap()
    };

    // One ingress sidecar. All initiators share one address here, so the per-source bounds
    // are opened up (a real deployment sees them from many addresses).
    let nowhere = loopback().await.unwrap().local_addr().unwrap();
    let mut config = cse_sidecar_config(&pki, &upstream, nowhere);
    config.egress = None;
    config.sa.limits.max_half_open_per_peer = config.sa.limits.max_half_open;
    config.sa.limits.init_rate_per_source = u32::MAX;
    config.sa.limits.max_sas = sas + 16;
    let listener = loopback().await.unwrap();
    let ingress = listener.local_addr().unwrap();
    let sidecar = Sidecar::start(&config, Listeners { ingress_http: Some(listener), ..Listeners::default() }, None)
        .await
        .unwrap();

    // One initiator node per SA, sharing one connection pool.
    let pool = HttpClient::new(&format!("http://{ingress}"), ClientConfig::default()).unwrap();
    let route: Route = Arc::new(|_: &RequestPrimitive| Some(CSE_ID.parse().unwrap()));
    let clients: Vec<Svc> = (0..sas)
        .map(|i| {
            let node = Node::new(base_config(pki.node(&format!("/id-load{i}"), &["C*"])).node_config());
            Svc::new(SendSecureLayer::new(node, route.clone()).layer(pool.clone()))
        })
        .collect();

    let errors = Arc::new(AtomicU64::new(0));
    let rss0 = rss();
    let started = Instant::now();
    run_all(&clients, 1, concurrency, &errors).await;
    let establish_secs = started.elapsed().as_secs_f64();
    let rss1 = rss();
    assert_eq!(sidecar.node().inbound().entries().len(), sas, "one SA per initiator");

    let started = Instant::now();
    run_all(&clients, per_sa - 1, concurrency, &errors).await;
    let traffic_secs = started.elapsed().as_secs_f64();

    let primitives = (sas * per_sa) as u64;
    assert_eq!(calls.load(Ordering::Relaxed), primitives, "each primitive reached the upstream once");
    let after = render();
    let delta = |name: &str, label: Option<&str>| metric(&after, name, label) - metric(&before, name, label);
    // Both ends live in this process: each primitive is sealed twice (request, answer) and
    // opened twice.
    assert_eq!(delta("onem2m_sa_sealed_total", None), 2 * primitives);
    assert_eq!(delta("onem2m_sa_opened_total", None), 2 * primitives);
    assert_eq!(delta("onem2m_sa_establishments_total", Some("outcome=\"established\"")), sas as u64);
    assert_eq!(delta("onem2m_sa_receive_rejected_total", None), 0);
    assert_eq!(delta("onem2m_sa_send_rejected_total", None), 0);
    assert_eq!(metric(&after, "onem2m_sa_active", Some("direction=\"inbound\"")), sas as u64);

    sidecar.shutdown().await;
    Report {
        sas,
        primitives,
        errors: errors.load(Ordering::Relaxed),
        establish_secs,
        traffic_secs,
        rss_per_sa: rss0.zip(rss1).map(|(a, b)| b.saturating_sub(a) / sas as u64),
    }
}

/// `rounds` requests from every client, `concurrency` clients at a time.
async fn run_all(clients: &[Svc], rounds: usize, concurrency: usize, errors: &Arc<AtomicU64>) {
    let next = Arc::new(AtomicU64::new(0));
    let total = (clients.len() * rounds) as u64;
    let clients: Arc<[Svc]> = clients.into();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (clients, next, errors) = (clients.clone(), next.clone(), errors.clone());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                let svc = clients[(n % clients.len() as u64) as usize].clone();
                let rsp = svc.oneshot(request(Operation::Retrieve, "cse-base", "Cload", &format!("l{n}"))).await;
                match rsp {
                    Ok(r) if r.rsc == Rsc::OK => {}
                    other => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("request {n}: {other:?}");
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

fn print(r: &Report) {
    println!(
        "load: {} SAs established in {:.1} s ({:.0}/s); {} primitives in {:.1} s ({:.0}/s); {} errors; RSS per SA (both ends) {}",
        r.sas,
        r.establish_secs,
        r.sas as f64 / r.establish_secs,
        r.primitives,
        r.traffic_secs,
        r.primitives as f64 / r.traffic_secs.max(1e-9),
        r.errors,
        r.rss_per_sa.map_or("unknown".to_owned(), |b| format!("{b} B")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_small() {
    let r = run_load(200, 20, 32).await;
    print(&r);
    assert_eq!(r.errors, 0);
}

/// The full run: 10,000 SAs, then 1,000,000 secured primitives across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes in release; run it as the module doc says"]
async fn load_full() {
    let r = tokio::time::timeout(Duration::from_secs(3600), run_load(10_000, 100, 64)).await.unwrap();
    print(&r);
    assert_eq!(r.errors, 0);
}
