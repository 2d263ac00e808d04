//! Requests per second and p99 latency through the sidecar pair (AE-side egress → CSE-side
//! ingress, SA-secured) against two references in front of the same upstream, in the same run,
//! as ratios: a plaintext hyper proxy pair (two HTTP forwarders) and a rustls TLS proxy pair (the
//! same forwarders with TLS 1.3 and mutual authentication on the hop between them). Not a test: it
//! asserts nothing about time.
//!
//! Then the same over CoAP (unless `PROXY_BENCH_COAP=0`): the CoAP sidecar pair (AE-side CoAP
//! egress → secured over CoAP → CSE-side CoAP ingress → the HTTP upstream) against a plaintext
//! CoAP forwarding pair (a CoAP forwarder → CoAP → a CoAP forwarder → the HTTP upstream), and
//! the bytes and round trips of one SA establishment over CoAP.
//!
//! `cargo bench -p onem2m-sa-sidecar --bench proxy` (`PROXY_BENCH_SECS`, `PROXY_BENCH_CLIENTS`
//! and `PROXY_BENCH_ROUNDS` change the run length, concurrency and number of alternations;
//! `PROXY_BENCH_HTTP=0` or `PROXY_BENCH_COAP=0` leaves a binding out).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_coap::CoapClient;
use onem2m_sa_examples::demo_http::serve_stand_in;
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient, ServerConfig, serve};
use onem2m_sa_sidecar::config::{CoapSettings, Listener};
use onem2m_sa_sidecar::demo::{
    AE_ID, CSE_ID, DemoPki, ae_sidecar_config, coap_ae_sidecar_config, cse_sidecar_config, loopback,
};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar, coap_client_config, coap_server_config};
use onem2m_sa_sidecar::udp_tap::UdpTap;
use tokio::net::{TcpListener, UdpSocket};
use tower::{Service, ServiceExt, service_fn};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The upstream: answers every request with a small container representation; its base URL.
async fn upstream() -> String {
    let svc = service_fn(|req: RequestPrimitive| async move {
        let mut rsp = ResponsePrimitive::new(Rsc::OK, &req.rqi);
        rsp.rvi = Some("3".into());
        rsp.pc = Some(serde_json::json!({"m2m:cin": {"rn": "v1", "con": "21.5", "cnf": "text/plain:0", "st": 7}}));
        Ok::<_, BoxError>(rsp)
    });
    serve_stand_in(loopback().await.unwrap(), svc).unwrap()
}

/// A plaintext HTTP client as the forwarders use it (pooled, `TCP_NODELAY` like our own client).
fn plain_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends every request unchanged to `base` (scheme and authority) through `client`; 502 on failure.
async fn forward<C>(client: Client<C, Full<Bytes>>, base: Arc<str>, req: http::Request<Bytes>) -> http::Response<Bytes>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{base}{pq}").parse().unwrap();
    match client.request(http::Request::from_parts(parts, Full::new(body))).await {
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
    }
}

/// An HTTP forwarder on our server: every request goes unchanged to `base` through `client`.
async fn forwarder<C>(client: Client<C, Full<Bytes>>, base: String) -> SocketAddr
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base: Arc<str> = base.into();
    let svc = service_fn(move |req: http::Request<Bytes>| {
        let (client, base) = (client.clone(), base.clone());
        async move { Ok::<_, std::convert::Infallible>(forward(client, base, req).await) }
    });
    tokio::spawn(serve(listener, svc, ServerConfig::default(), std::future::pending()));
    addr
}

/// The plaintext pair: two forwarders in front of `upstream` (a base URL); the front's address.
async fn plain_pair(upstream: &str) -> SocketAddr {
    let back = forwarder(plain_client(), upstream.to_owned()).await;
    forwarder(plain_client(), format!("http://{back}")).await
}

/// The TLS pair: a front forwarder that sends over TLS to a back forwarder that terminates it and
/// sends plaintext to `upstream`; the front's address. TLS 1.3 only, AES-128-GCM and X25519 (the SA
/// pair's suite), ECDSA P-256 certificates from one fresh CA, the client authenticated
/// (`WebPkiClientVerifier`), HTTP/1.1 over pooled connections as on the other pairs.
async fn tls_pair(upstream: &str) -> SocketAddr {
    let (client_config, server_config) = tls_configs();
    // Back: accept TLS, serve HTTP/1.1 with hyper, forward in plaintext.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let back = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let (client, base): (_, Arc<str>) = (plain_client(), upstream.into());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let (acceptor, client, base) = (acceptor.clone(), client.clone(), base.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (client, base) = (client.clone(), base.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let rsp = forward(client, base, http::Request::from_parts(parts, body)).await;
                        Ok::<_, hyper::Error>(rsp.map(Full::new))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    // Front: our server, forwarding over TLS.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    forwarder(Client::builder(TokioExecutor::new()).build(https), format!("https://{back}")).await
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, and the configurations.
fn tls_configs() -> (rustls::ClientConfig, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider, kx_group};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![kx_group::X25519],
        ..default_provider()
    });
    let ca_key = KeyPair::generate_for(alg).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let leaf = |eku: ExtendedKeyUsagePurpose| -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(Ipv4Addr::LOCALHOST.into())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &ca).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::from(key))
    };
    let (server_chain, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth);
    let (client_chain, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let versions = &[&rustls::version::TLS13];
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(client_chain, client_key)
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build().unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    (client, Arc::new(server))
}

struct Outcome {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// `clients` concurrent HTTP clients send RETRIEVEs to `front` for `secs` seconds.
async fn load(front: SocketAddr, clients: u64, secs: u64) -> Outcome {
    load_with(HttpClient::new(&format!("http://{front}"), ClientConfig::default()).unwrap(), clients, secs).await
}

/// `clients` concurrent CoAP clients (one socket each) send RETRIEVEs to `front` for `secs` seconds.
async fn load_coap(front: SocketAddr, clients: u64, secs: u64) -> Outcome {
    let client = CoapClient::connect(front, coap_client_config(&CoapSettings::default())).await.unwrap();
    load_with(client, clients, secs).await
}

/// `clients` concurrent users of `client` send RETRIEVEs for `secs` seconds.
async fn load_with<S>(client: S, clients: u64, secs: u64) -> Outcome
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
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
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
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
    if env("PROXY_BENCH_HTTP", 1) != 0 {
        rt.block_on(http_pairs(secs, clients, rounds));
    }
    if env("PROXY_BENCH_COAP", 1) != 0 {
        rt.block_on(coap_pairs(secs, clients, rounds));
    }
}

/// The HTTP pairs: plaintext, TLS and the sidecar pair.
async fn http_pairs(secs: u64, clients: u64, rounds: u64) {
    {
        let target = upstream().await;
        let plain_front = plain_pair(&target).await;
        let tls_front = tls_pair(&target).await;
        // The sidecar pair.
        let pki = DemoPki::new();
        let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
        let cse_cfg = cse_sidecar_config(&pki, &target, ae_in.local_addr().unwrap());
        let ae_cfg = ae_sidecar_config(&pki, cse_in.local_addr().unwrap(), &target);
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
        println!("{:<24} {:>10} {:>10} {:>10} {:>7}", "run", "req/s", "p50 ms", "p99 ms", "errors");
        // Per round: (throughput, p99) of the SA pair over the plaintext pair, then over the TLS pair.
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let plain = load(plain_front, clients, secs).await;
            let tls = load(tls_front, clients, secs).await;
            let sa = load(front, clients, secs).await;
            for (name, o) in [("plaintext hyper pair", &plain), ("rustls TLS pair", &tls), ("sidecar pair (SA)", &sa)] {
                println!(
                    "{:<24} {:>10.0} {:>10.3} {:>10.3} {:>7}",
                    format!("{name} #{round}"),
                    o.rps,
                    o.p50.as_secs_f64() * 1e3,
                    o.p99.as_secs_f64() * 1e3,
                    o.errors
                );
            }
            let p99 = |o: &Outcome| o.p99.as_secs_f64();
            ratios.push([sa.rps / plain.rps, p99(&sa) / p99(&plain), sa.rps / tls.rps, p99(&sa) / p99(&tls)]);
        }
        for (i, r) in ratios.iter().enumerate() {
            println!(
                "round {i}: SA / plaintext throughput {:.2}, p99 {:.2}; SA / TLS throughput {:.2}, p99 {:.2}",
                r[0], r[1], r[2], r[3]
            );
        }
        let mean = |k: usize| ratios.iter().map(|r| r[k]).sum::<f64>() / ratios.len() as f64;
        println!(
            "mean: throughput {:.2}x plaintext, {:.2}x TLS; p99 {:.2}x plaintext, {:.2}x TLS",
            mean(0),
            mean(2),
            mean(1),
            mean(3)
        );
    }
}

/// A CoAP forwarder: every request it receives goes to `next` (a primitive service); its address.
async fn coap_forwarder<S>(next: S) -> SocketAddr
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let config = coap_server_config(&CoapSettings::default());
    tokio::spawn(onem2m_sa_coap::serve(socket, next, config, std::future::pending()));
    addr
}

/// The plaintext CoAP pair in front of `upstream` (an HTTP base URL): the back forwarder sends
/// over HTTP, the front one over CoAP to the back; the front's address.
async fn plain_coap_pair(upstream: &str) -> SocketAddr {
    let back = coap_forwarder(HttpClient::new(upstream, ClientConfig::default()).unwrap()).await;
    let to_back = CoapClient::connect(back, coap_client_config(&CoapSettings::default())).await.unwrap();
    coap_forwarder(to_back).await
}

/// The CoAP sidecar pair in front of `upstream`, the secured hop through a counting relay if
/// `tapped`: the AE side's CoAP egress, the two sidecars, the relay.
async fn coap_sidecar_pair(upstream: &str, tapped: bool) -> (SocketAddr, Sidecar, Sidecar, Option<UdpTap>) {
    let pki = DemoPki::new();
    let mut cse_cfg = cse_sidecar_config(&pki, upstream, "127.0.0.1:9".parse().unwrap());
    cse_cfg.egress = None;
    cse_cfg.peers.clear();
    let ingress = cse_cfg.ingress.as_mut().unwrap();
    ingress.http = None;
    ingress.coap = Some(Listener { listen: "127.0.0.1:0".parse().unwrap() });
    let cse = Sidecar::start(&cse_cfg, Listeners::default(), None).await.unwrap();
    let cse_coap = cse.coap_addresses().ingress.unwrap();
    let tap = if tapped { Some(UdpTap::loopback(cse_coap).await.unwrap()) } else { None };
    let to = tap.as_ref().map_or(cse_coap, UdpTap::addr);
    let ae = Sidecar::start(&coap_ae_sidecar_config(&pki, to), Listeners::default(), None).await.unwrap();
    (ae.coap_addresses().egress.unwrap(), ae, cse, tap)
}

/// The CoAP pairs: requests/s and p99 of the sidecar pair against the plaintext CoAP pair, and
/// the establishment over CoAP.
async fn coap_pairs(secs: u64, clients: u64, rounds: u64) {
    let target = upstream().await;

    // One establishment on the secured hop, counted: the first request carries it; the second,
    // the same request over the SA, is what a request costs without it.
    let (front, ae, cse, tap) = coap_sidecar_pair(&target, true).await;
    let tap = tap.unwrap();
    let client = CoapClient::connect(front, coap_client_config(&CoapSettings::default())).await.unwrap();
    let first = {
        let rsp = client.send(&retrieve(1)).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK);
        tap.counts()
    };
    let rsp = client.send(&retrieve(2)).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    let second = tap.counts() - first;
    let (up, down) = (first.up_bytes - second.up_bytes, first.down_bytes - second.down_bytes);
    let trips = first.up_datagrams - second.up_datagrams;
    println!("SA establishment over CoAP (Ed25519 tickets, the demo PKI), on the secured hop:");
    println!(
        "  {trips} CoAP round trips (a Confirmable datagram and its answer each, blocks included), \
         {up} B up + {down} B down = {} B; the request after it: {} B up, {} B down",
        up + down,
        second.up_bytes,
        second.down_bytes
    );
    ae.shutdown().await;
    cse.shutdown().await;

    let plain_front = plain_coap_pair(&target).await;
    let (sa_front, _ae, _cse, _) = coap_sidecar_pair(&target, false).await;
    println!("CoAP pairs: {clients} clients, {secs} s per run, {rounds} alternations, RETRIEVE with a small answer");
    println!("{:<28} {:>10} {:>10} {:>10} {:>7}", "run", "req/s", "p50 ms", "p99 ms", "errors");
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let plain = load_coap(plain_front, clients, secs).await;
        let sa = load_coap(sa_front, clients, secs).await;
        for (name, o) in [("plaintext CoAP pair", &plain), ("CoAP sidecar pair (SA)", &sa)] {
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
    for (i, r) in ratios.iter().enumerate() {
        println!("round {i}: CoAP SA / plaintext CoAP throughput {:.2}, p99 {:.2}", r[0], r[1]);
    }
    let mean = |k: usize| ratios.iter().map(|r| r[k]).sum::<f64>() / ratios.len() as f64;
    println!("mean: CoAP SA pair throughput {:.2}x the plaintext CoAP pair, p99 {:.2}x", mean(0), mean(1));
}
