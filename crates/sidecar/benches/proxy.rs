//! Requests per second and p99 latency through the sidecar pair (AE-side egress → CSE-side
//! ingress, SA-secured) against a plaintext hyper proxy pair (two HTTP forwarders) in front of
//! the same upstream, in the same run, as ratios. Not a test: it asserts nothing about time.
//!
//! `cargo bench -p onem2m-sa-sidecar --bench proxy` (`PROXY_BENCH_SECS`, `PROXY_BENCH_CLIENTS`
//! and `PROXY_BENCH_ROUNDS` change the run length, concurrency and number of alternations).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient, Limits, PrimitiveService, ServerConfig, serve};
use onem2m_sa_sidecar::demo::{AE_ID, CSE_ID, DemoPki, ae_sidecar_config, cse_sidecar_config, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use tokio::net::TcpListener;
use tower::{ServiceExt, service_fn};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The upstream: answers every request with a small container representation.
async fn upstream() -> SocketAddr {
    let listener = loopback().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service_fn(|req: RequestPrimitive| async move {
        let mut rsp = ResponsePrimitive::new(Rsc::OK, &req.rqi);
        rsp.rvi = Some("3".into());
        rsp.pc = Some(serde_json::json!({"m2m:cin": {"rn": "v1", "con": "21.5", "cnf": "text/plain:0", "st": 7}}));
        Ok::<_, BoxError>(rsp)
    });
    tokio::spawn(serve(
        listener,
        PrimitiveService::new(svc, Limits::default()),
        ServerConfig::default(),
        std::future::pending(),
    ));
    addr
}

/// A plaintext HTTP forwarder: every request goes unchanged to `target`.
async fn forwarder(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let svc = service_fn(move |req: http::Request<Bytes>| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            parts.uri = format!("http://{target}{pq}").parse().unwrap();
            let rsp = match client.request(http::Request::from_parts(parts, Full::new(body))).await {
                Ok(rsp) => {
                    let (parts, body) = rsp.into_parts();
                    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    http::Response::from_parts(parts, bytes)
                }
                Err(_) => {
                    let mut r = http::Response::new(Bytes::new());
                    *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                    r
                }
            };
            Ok::<_, std::convert::Infallible>(rsp)
        }
    });
    tokio::spawn(serve(listener, svc, ServerConfig::default(), std::future::pending()));
    addr
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
    // Warm up: connections and (for the sidecars) the SA.
    for i in 0..50 {
        let _ = client.clone().oneshot(retrieve(i)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut n) = (Vec::new(), 0u64, c * 1_000_000);
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
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Outcome { rps: all.len() as f64 / elapsed, p50: pct(0.5), p99: pct(0.99), errors }
}

fn retrieve(n: u64) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(
        Operation::Retrieve,
        format!("{CSE_ID}/cse-base/meter/data/v1"),
        Some(AE_ID.into()),
        format!("b{n}"),
    );
    r.rvi = Some("3".into());
    r
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less args; only run when benched.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env("PROXY_BENCH_SECS", 5);
    let clients = env("PROXY_BENCH_CLIENTS", 16);
    let rounds = env("PROXY_BENCH_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let target = upstream().await;
        // The plaintext pair.
        let plain_front = forwarder(forwarder(target).await).await;
        // The sidecar pair.
        let pki = DemoPki::new();
        let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
        let cse_cfg = cse_sidecar_config(&pki, &format!("http://{target}"), ae_in.local_addr().unwrap());
        let ae_cfg = ae_sidecar_config(&pki, cse_in.local_addr().unwrap(), &format!("http://{target}"));
        let front = ae_out.local_addr().unwrap();
        let _cse = Sidecar::start(&cse_cfg, Listeners { ingress_http: Some(cse_in), ..Listeners::default() }, None)
            .await
            .unwrap();
        let _ae = Sidecar::start(
            &ae_cfg,
            Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None },
            None,
        )
        .await
        .unwrap();

        println!(
            "proxy pair: {clients} clients, {secs} s per run, {rounds} alternations, RETRIEVE with a small answer"
        );
        println!("{:<22} {:>10} {:>10} {:>10} {:>7}", "run", "req/s", "p50 ms", "p99 ms", "errors");
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let plain = load(plain_front, clients, secs).await;
            let sa = load(front, clients, secs).await;
            for (name, o) in [("plaintext hyper pair", &plain), ("sidecar pair (SA)", &sa)] {
                println!(
                    "{:<22} {:>10.0} {:>10.3} {:>10.3} {:>7}",
                    format!("{name} #{round}"),
                    o.rps,
                    o.p50.as_secs_f64() * 1e3,
                    o.p99.as_secs_f64() * 1e3,
                    o.errors
                );
            }
            ratios.push((sa.rps / plain.rps, sa.p99.as_secs_f64() / plain.p99.as_secs_f64()));
        }
        for (i, (r, p)) in ratios.iter().enumerate() {
            println!("round {i}: throughput ratio (SA / plaintext) {r:.2}, p99 ratio {p:.2}");
        }
        let mean = |f: fn(&(f64, f64)) -> f64| ratios.iter().map(f).sum::<f64>() / ratios.len() as f64;
        println!("mean: throughput {:.2}x plaintext, p99 {:.2}x plaintext", mean(|r| r.0), mean(|r| r.1));
    });
}
