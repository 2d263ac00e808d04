//! Requests per second, p99 latency and bytes per message through the MQTT sidecar pair
//! (AE-side egress → sealed → the broker → CSE-side `[ingress.mqtt]` → upstream) against
//! plaintext oneM2M through the same broker in the same run (an HTTP front whose service is an
//! `MqttClient` → the broker → an MQTT endpoint serving with an HTTP client to the same
//! upstream: the same three hops, nothing sealed). The broker is the in-process one of
//! `onem2m_sa_mqtt`. Not a test: it asserts nothing about time.
//!
//! `cargo bench -p onem2m-sa-sidecar --bench mqtt` (`MQTT_BENCH_SECS`, `MQTT_BENCH_CLIENTS` and
//! `MQTT_BENCH_ROUNDS` change the run length, concurrency and number of alternations).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_examples::demo_http::serve_stand_in;
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_mqtt::broker::{Broker, BrokerConfig};
use onem2m_sa_mqtt::{Endpoint, EndpointConfig};
use onem2m_sa_sidecar::demo::{CSE_ID, DemoPki, MQTT_AE_ID, cse_sidecar_config, loopback, mqtt_ae_sidecar_config};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use tower::{ServiceExt, service_fn};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The upstream: answers every request with a small content instance; its base URL.
async fn upstream() -> String {
    let svc = service_fn(|req: RequestPrimitive| async move {
        let mut rsp = ResponsePrimitive::new(Rsc::OK, &req.rqi);
        rsp.rvi = Some("3".into());
        rsp.pc = Some(serde_json::json!({"m2m:cin": {"rn": "v1", "con": "21.5", "cnf": "text/plain:0", "st": 7}}));
        Ok::<_, BoxError>(rsp)
    });
    serve_stand_in(loopback().await.unwrap(), svc).unwrap()
}

async fn endpoint(broker: SocketAddr, me: &str) -> Endpoint {
    let config = EndpointConfig::new(me);
    let options = config.options(&format!("C::{me}"), "127.0.0.1", broker.port());
    let e = Endpoint::start(options, config);
    e.ready().await;
    e
}

/// Plaintext oneM2M through the broker: its HTTP front.
async fn plain_path(broker: SocketAddr, upstream: &str) -> (SocketAddr, Endpoint, Endpoint) {
    let cse = endpoint(broker, "plain-cse").await;
    cse.serve(HttpClient::new(upstream, ClientConfig::default()).unwrap());
    let ae = endpoint(broker, "plain-ae").await;
    let listener = loopback().await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_stand_in(listener, ae.client("plain-cse")).unwrap();
    (addr, ae, cse)
}

struct Outcome {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// `clients` concurrent clients send RETRIEVEs to `front` for `secs` seconds.
async fn load(front: SocketAddr, clients: u64, secs: u64) -> Outcome {
    let client = HttpClient::new(&format!("http://{front}"), ClientConfig::default()).unwrap();
    for i in 0..50 {
        let _ = client.clone().oneshot(retrieve(i)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut n) = (Vec::new(), 0u64, (c + 1) * 1_000_000);
            while Instant::now() < deadline {
                n += 1;
                let t = Instant::now();
                match client.clone().oneshot(retrieve(n)).await {
                    Ok(rsp) if rsp.rsc == Rsc::OK => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied();
    Outcome {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.5).unwrap_or_default(),
        p99: pct(0.99).unwrap_or_default(),
        errors,
    }
}

fn retrieve(n: u64) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(
        Operation::Retrieve,
        format!("{CSE_ID}/cse-base/meter/data/v1"),
        Some(MQTT_AE_ID.into()),
        format!("b{n}"),
    );
    r.rvi = Some("3".into());
    r
}

/// What the broker received for one path: requests, and PUBLISH payload bytes of requests and
/// answers.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    request_bytes: AtomicU64,
    answer_bytes: AtomicU64,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env("MQTT_BENCH_SECS", 5);
    let clients = env("MQTT_BENCH_CLIENTS", 16);
    let rounds = env("MQTT_BENCH_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let target = upstream().await;
        let broker = Broker::start(([127, 0, 0, 1], 0).into(), BrokerConfig::default()).await.unwrap();
        let addr = broker.local_addr();
        let (plain_front, _plain_ae, _plain_cse) = plain_path(addr, &target).await;

        let pki = DemoPki::new();
        let mut cse_cfg = cse_sidecar_config(&pki, &target, ([127, 0, 0, 1], 9).into());
        cse_cfg.egress = None;
        cse_cfg.peers.clear();
        let ingress = cse_cfg.ingress.as_mut().unwrap();
        ingress.http = None;
        ingress.map_poa = false;
        ingress.mqtt = Some(onem2m_sa_sidecar::config::MqttSettings {
            broker: Some(format!("mqtt://{addr}")),
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            listen_broker: None,
        });
        let cse_sidecar = Sidecar::start(&cse_cfg, Listeners::default(), None).await.unwrap();
        let ae_out = loopback().await.unwrap();
        let sa_front = ae_out.local_addr().unwrap();
        let ae = Sidecar::start(
            &mqtt_ae_sidecar_config(&pki, addr),
            Listeners { egress_http: Some(ae_out), ..Listeners::default() },
            None,
        )
        .await
        .unwrap();
        cse_sidecar.mqtt_ready().await;
        ae.mqtt_ready().await;

        // Bytes per message, from the broker's view of one request each way.
        let (plain_seen, sa_seen) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let mut tap = broker.tap();
        let (p, s) = (plain_seen.clone(), sa_seen.clone());
        let watcher = tokio::spawn(async move {
            while let Ok((topic, payload)) = tap.recv().await {
                let seen = if topic.contains("/plain-cse/") { &p } else { &s };
                let len = payload.len() as u64;
                if topic.starts_with("/oneM2M/req/") {
                    seen.requests.fetch_add(1, Ordering::Relaxed);
                    seen.request_bytes.fetch_add(len, Ordering::Relaxed);
                } else {
                    seen.answer_bytes.fetch_add(len, Ordering::Relaxed);
                }
            }
        });
        for (front, n) in [(plain_front, 100), (sa_front, 100)] {
            let client = HttpClient::new(&format!("http://{front}"), ClientConfig::default()).unwrap();
            for i in 0..n {
                let _ = client.clone().oneshot(retrieve(10_000_000 + i)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        watcher.abort();
        let per = |s: &Seen| {
            let n = s.requests.load(Ordering::Relaxed).max(1) as f64;
            (s.request_bytes.load(Ordering::Relaxed) as f64 / n, s.answer_bytes.load(Ordering::Relaxed) as f64 / n)
        };
        let (pq, pa) = per(&plain_seen);
        let (sq, sa) = per(&sa_seen);
        println!("PUBLISH payload bytes per RETRIEVE: plaintext {pq:.0} request, {pa:.0} answer;");
        println!("                                    SA pair   {sq:.0} request, {sa:.0} answer");

        println!("MQTT: {clients} clients, {secs} s per run, {rounds} alternations, RETRIEVE with a small answer");
        println!("{:<28} {:>10} {:>10} {:>10} {:>7}", "run", "req/s", "p50 ms", "p99 ms", "errors");
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let plain = load(plain_front, clients, secs).await;
            let sa = load(sa_front, clients, secs).await;
            for (name, o) in [("plaintext through the broker", &plain), ("MQTT sidecar pair (SA)", &sa)] {
                println!(
                    "{:<28} {:>10.0} {:>10.3} {:>10.3} {:>7}",
                    format!("{name} #{round}"),
                    o.rps,
                    o.p50.as_secs_f64() * 1e3,
                    o.p99.as_secs_f64() * 1e3,
                    o.errors
                );
            }
            ratios.push([sa.rps / plain.rps, sa.p99.as_secs_f64() / plain.p99.as_secs_f64()]);
        }
        let mean = |k: usize| ratios.iter().map(|r| r[k]).sum::<f64>() / ratios.len() as f64;
        println!("mean: SA pair throughput {:.2}x plaintext, p99 {:.2}x plaintext", mean(0), mean(1));
    });
}
