//! The sidecar's CoAP binding on real UDP sockets, and binding bridging: the SA carries the
//! primitive, not the binding.
//!
//! * CoAP AE → AE-side egress (CoAP) → secured over **HTTP** → CSE-side ingress (HTTP) → demo CSE (HTTP);
//! * CoAP AE → AE-side egress (CoAP) → secured over **CoAP** → CSE-side ingress (CoAP) → demo CSE (HTTP);
//! * HTTP AE → AE-side egress (HTTP) → secured over **CoAP** → CSE-side ingress (CoAP) → demo CSE (HTTP).
//!
//! Counting UDP relays on the plaintext and the secured CoAP hops give the bytes on the air per
//! secured request and answer (printed; `--nocapture`).

use std::net::SocketAddr;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_coap::{ClientConfig as CoapClientConfig, CoapClient};
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{ServedCse, serve_demo_cse};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_integration::request;
use onem2m_sa_sidecar::config::{Config, Listener};
use onem2m_sa_sidecar::demo::{self, CSE_BASE, CSE_ID, DemoPki, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use onem2m_sa_sidecar::udp_tap::{UdpCounts, UdpTap};
use serde_json::json;
use tower::{Service, ServiceExt};

/// The AE host reaching the CSE over HTTP.
const HTTP_HOST: &str = "/id-ae-host";
/// The AE host reaching the CSE over CoAP.
const COAP_HOST: &str = "/id-ae-coap";

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The demo CSE behind a CSE-side sidecar with an HTTP and a CoAP ingress, and two AE hosts'
/// sidecars with CoAP (and HTTP) egresses: one with the CSE at its HTTP ingress, one at its
/// CoAP ingress through a counting relay.
struct Bridge {
    cse: ServedCse,
    cse_sidecar: Sidecar,
    cse_config: Config,
    via_http: Sidecar,
    via_coap: Sidecar,
    /// The plaintext CoAP hop: AE → the CoAP host's CoAP egress.
    plain: UdpTap,
    /// The secured CoAP hop: the CoAP host's sidecar → the CSE-side CoAP ingress.
    secured: UdpTap,
}

fn ae_host(pki: &DemoPki, id: &str, cse_address: String) -> Config {
    let mut c = demo::ae_sidecar_config(pki, any(), "http://127.0.0.1:9");
    c.node = pki.node(id, &[id, "C*", "S*", ""]);
    c.ingress = None;
    let egress = c.egress.as_mut().unwrap();
    egress.coap = Some(Listener { listen: any() });
    c.peers[0].address = cse_address;
    c
}

impl Bridge {
    async fn start() -> Self {
        let pki = DemoPki::new();
        let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
        let mut cse_config = demo::cse_sidecar_config(&pki, &cse.base(), any());
        cse_config.egress = None;
        cse_config.peers.clear();
        cse_config.ingress.as_mut().unwrap().coap = Some(Listener { listen: any() });
        let cse_sidecar = Sidecar::start(
            &cse_config,
            Listeners { ingress_http: Some(loopback().await.unwrap()), ..Listeners::default() },
            None,
        )
        .await
        .unwrap();
        let cse_http = cse_sidecar.addresses().ingress_http.unwrap();
        let cse_coap = cse_sidecar.coap_addresses().ingress.expect("the CoAP ingress listens");
        let secured = UdpTap::loopback(cse_coap).await.unwrap();

        let start = |config: Config| async move {
            let listeners = Listeners { egress_http: Some(loopback().await.unwrap()), ..Listeners::default() };
            Sidecar::start(&config, listeners, None).await.unwrap()
        };
        let via_http = start(ae_host(&pki, HTTP_HOST, format!("http://{cse_http}"))).await;
        let via_coap = start(ae_host(&pki, COAP_HOST, format!("coap://{}", secured.addr()))).await;
        let plain = UdpTap::loopback(via_coap.coap_addresses().egress.unwrap()).await.unwrap();
        Self { cse, cse_sidecar, cse_config, via_http, via_coap, plain, secured }
    }

    async fn shutdown(self) {
        self.via_http.shutdown().await;
        self.via_coap.shutdown().await;
        self.cse_sidecar.shutdown().await;
        self.cse.shutdown().await;
    }
}

async fn coap_client(to: SocketAddr) -> CoapClient {
    CoapClient::connect(to, CoapClientConfig { seed: Some(7), ..CoapClientConfig::default() }).await.unwrap()
}

/// Sends `req` and checks the answer's code.
async fn expect<S>(svc: &mut S, req: RequestPrimitive, rsc: Rsc) -> ResponsePrimitive
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError>,
{
    let what = format!("{:?} {}", req.op, req.to);
    let rsp = svc.ready().await.unwrap().call(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(rsp.rsc, rsc, "{what}: {:?}", rsp.pc);
    rsp
}

/// Registers AE `rn` as `fr`, makes a container and a content instance, reads it back, and
/// deletes the AE: a CRUD round through whichever binding `svc` speaks.
async fn crud<S>(svc: &mut S, fr: &str, rn: &str)
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError>,
{
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = format!("{base}/{rn}");
    let mut req = request(Operation::Create, &base, fr, &format!("{rn}-1"));
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": rn, "api": "Nbridge", "rr": false, "srv": ["3"]}}));
    let rsp = expect(svc, req, Rsc::CREATED).await;
    assert_eq!(rsp.pc.unwrap()["m2m:ae"]["aei"], fr);
    let mut req = request(Operation::Create, &ae, fr, &format!("{rn}-2"));
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "state"}}));
    expect(svc, req, Rsc::CREATED).await;
    let mut req = request(Operation::Create, &format!("{ae}/state"), fr, &format!("{rn}-3"));
    req.ty = Some(4);
    req.pc = Some(json!({"m2m:cin": {"rn": "c1", "cnf": "text/plain:0", "con": "on"}}));
    expect(svc, req, Rsc::CREATED).await;
    let rsp =
        expect(svc, request(Operation::Retrieve, &format!("{ae}/state/c1"), fr, &format!("{rn}-4")), Rsc::OK).await;
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"], "on");
    expect(svc, request(Operation::Delete, &ae, fr, &format!("{rn}-5")), Rsc::DELETED).await;
}

/// Each binding in and out of each sidecar, on one SA per AE host: the CSE executes every
/// request once, and the CSE-side sidecar holds an inbound SA with each host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_and_http_bridge_through_the_sidecars() {
    let b = Bridge::start().await;

    // CoAP AE → CoAP egress → secured over HTTP → HTTP ingress → CSE.
    let mut coap_ae = coap_client(b.via_http.coap_addresses().egress.unwrap()).await;
    crud(&mut coap_ae, "Cbridge-a", "bridge-a").await;

    // CoAP AE → CoAP egress → secured over CoAP → CoAP ingress → CSE.
    let mut coap_ae = coap_client(b.plain.addr()).await;
    crud(&mut coap_ae, "Cbridge-b", "bridge-b").await;
    assert!(b.secured.counts().up_datagrams > 0, "the secured hop is CoAP");

    // HTTP AE → HTTP egress → secured over CoAP → CoAP ingress → CSE.
    let before = b.secured.counts();
    let egress = b.via_coap.addresses().egress_http.unwrap();
    let mut http_ae = HttpClient::new(&format!("http://{egress}"), ClientConfig::default()).unwrap();
    crud(&mut http_ae, "Cbridge-c", "bridge-c").await;
    let during = b.secured.counts() - before;
    assert!(during.up_datagrams >= 5 && during.down_datagrams >= 5, "{during:?}");

    // Each request ran once at the CSE (5 per round), from the right AE host, over one SA each.
    let executed = b.cse.cse.executed();
    assert_eq!(executed.len(), 15, "{executed:?}");
    let inbound: Vec<String> = b.cse_sidecar.node().inbound().entries().iter().map(|e| e.peer().to_string()).collect();
    assert!(inbound.contains(&HTTP_HOST.to_owned()) && inbound.contains(&COAP_HOST.to_owned()), "{inbound:?}");
    assert_eq!(inbound.len(), 2, "one SA per AE host, whatever binding carried it: {inbound:?}");
    b.shutdown().await;
}

/// A plaintext request straight to the CSE-side CoAP ingress is refused (4110-style: an SA is
/// required) before the CSE sees it, as on HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_the_coap_ingress_is_refused() {
    let b = Bridge::start().await;
    let mut direct = coap_client(b.cse_sidecar.coap_addresses().ingress.unwrap()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    expect(&mut direct, request(Operation::Retrieve, &base, "Cplain", "p1"), Rsc::SECURITY_ASSOCIATION_REQUIRED).await;
    assert!(b.cse.cse.executed().is_empty());
    b.shutdown().await;
}

fn per_message(label: &str, c: UdpCounts, n: u64) -> (f64, f64) {
    let (up, down) = (c.up_bytes as f64 / n as f64, c.down_bytes as f64 / n as f64);
    println!(
        "{label:<28} {up:>7.1} B/request ({:.2} datagrams), {down:>7.1} B/answer ({:.2} datagrams)",
        c.up_datagrams as f64 / n as f64,
        c.down_datagrams as f64 / n as f64
    );
    (up, down)
}

/// Bytes on the air per secured request and answer over CoAP (the SA established first), in the
/// form the sidecars negotiate (compact: the raw sealed bytes as the payload, Content-Format
/// 65000): printed beside the plaintext CoAP hop's, and the overhead is bounded so that a
/// regression shows. `sidecar_compact` compares it with the JWE form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_on_the_air_per_secured_coap_message() {
    let b = Bridge::start().await;
    let mut ae = coap_client(b.plain.addr()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae_path = format!("{base}/meter");
    let mut req = request(Operation::Create, &base, "Cmeter", "m0");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "meter", "api": "Nmeter", "rr": false, "srv": ["3"]}}));
    expect(&mut ae, req, Rsc::CREATED).await;
    let mut req = request(Operation::Create, &ae_path, "Cmeter", "m1");
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "t"}}));
    expect(&mut ae, req, Rsc::CREATED).await;

    // A small sensor reading and a small read, as a constrained device sends them.
    const N: u64 = 20;
    let (plain0, secured0) = (b.plain.counts(), b.secured.counts());
    for i in 0..N / 2 {
        let mut req = request(Operation::Create, &format!("{ae_path}/t"), "Cmeter", &format!("w{i}"));
        req.ty = Some(4);
        req.pc = Some(json!({"m2m:cin": {"rn": format!("v{i}"), "con": "21.5"}}));
        expect(&mut ae, req, Rsc::CREATED).await;
        expect(
            &mut ae,
            request(Operation::Retrieve, &format!("{ae_path}/t/v{i}"), "Cmeter", &format!("r{i}")),
            Rsc::OK,
        )
        .await;
    }
    let plain = b.plain.counts() - plain0;
    let secured = b.secured.counts() - secured0;
    println!("CoAP, {N} requests (10 CREATE cin, 10 RETRIEVE cin), SA established, compact form:");
    let (pu, pd) = per_message("plaintext hop (AE→egress)", plain, N);
    let (su, sd) = per_message("secured hop (sidecar→sidecar)", secured, N);
    println!("{:<28} {:>7.1} B/request, {:>7.1} B/answer", "added by the SA", su - pu, sd - pd);
    // Every request crossed the secured hop (no request short-cut it) as at least one datagram,
    // and the secured form costs more than the plaintext, but stays under the block size: one
    // datagram each way, no block-wise transfer.
    assert_eq!(secured.up_datagrams, N, "{secured:?}");
    assert_eq!(secured.down_datagrams, N, "{secured:?}");
    assert!(su > pu && sd > pd, "{secured:?} vs {plain:?}");
    b.shutdown().await;
}

/// A bare POST with a payload (the CoAP carriage of a sealed compact object, docs/protocol.md
/// §4.3) sent by an AE to its sidecar's plaintext CoAP egress names no target: refused 4000, and
/// nothing crosses the secured hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_compact_post_from_an_ae_is_refused_at_the_egress() {
    let b = Bridge::start().await;
    let mut ae = coap_client(b.plain.addr()).await;
    let mut req = RequestPrimitive::new(Operation::Notify, format!("{CSE_ID}/{CSE_BASE}"), Some("Cbare".into()), "b1");
    req.pc = Some(onem2m_primitive::compact::content(&[0x41; 40]));
    let before = b.secured.counts();
    let rsp = expect(&mut ae, req, Rsc::BAD_REQUEST).await;
    assert!(rsp.debug_info().unwrap_or_default().contains("names no target"), "{:?}", rsp.pc);
    let crossed = b.secured.counts() - before;
    assert_eq!(crossed.up_datagrams, 0, "nothing sent to the CSE's sidecar: {crossed:?}");
    b.shutdown().await;
}

/// The Responder's per-source flood defence sees the datagram's source over CoAP: with a rate of
/// one SaInit per second per source, three Initiators with their own node IDs but one address
/// (127.0.0.1) are not each given a fresh budget — a later one is asked for a cookie (one more
/// SaInit on the wire). Keyed by the claimed node ID instead, none would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_ingress_flood_defences_key_on_the_datagram_source() {
    use std::sync::{Arc, Mutex};

    use onem2m_sa_tower::Node;
    use tower::service_fn;

    let pki = DemoPki::new();
    let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
    let mut config = demo::cse_sidecar_config(&pki, &cse.base(), any());
    config.egress = None;
    config.peers.clear();
    let ingress = config.ingress.as_mut().unwrap();
    ingress.http = None;
    ingress.coap = Some(Listener { listen: any() });
    config.sa.limits.init_rate_per_source = 1;
    let sidecar = Sidecar::start(&config, Listeners::default(), None).await.unwrap();
    let at = sidecar.coap_addresses().ingress.unwrap();

    let mut sent = Vec::new();
    for i in 1..=3 {
        let id = format!("/id-f{i}");
        let node = Node::new(demo::base_config(pki.node(&id, &[id.as_str()])).node_config());
        let count = Arc::new(Mutex::new(0usize));
        let (seen, client) = (count.clone(), coap_client(at).await);
        let transport = service_fn(move |req: RequestPrimitive| {
            *seen.lock().unwrap() += 1;
            client.clone().oneshot(req)
        });
        node.sa_with(&CSE_ID.parse().unwrap(), transport).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        sent.push(*count.lock().unwrap());
    }
    let first = sent[0];
    assert!(sent[1] + sent[2] > 2 * first, "SA messages per establishment {sent:?}: no cookie was asked for");
    sidecar.shutdown().await;
    cse.shutdown().await;
}

/// A reload of the CSE-side sidecar: the CoAP ingress keeps serving the SA the earlier
/// configuration established (the AE host does not establish again), and a reload that moves the
/// CoAP listener is refused (it needs a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coap_ingress_serves_earlier_generations_sas_after_a_reload() {
    let b = Bridge::start().await;
    let mut ae = coap_client(b.plain.addr()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    expect(&mut ae, request(Operation::Retrieve, &base, "Creload", "g1"), Rsc::OK).await;
    let sa_of = || b.via_coap.node().outbound().entries().iter().map(|e| e.sa_id().to_string()).collect::<Vec<_>>();
    let before = sa_of();
    assert_eq!(before.len(), 1);

    b.cse_sidecar.runtime().reload(&b.cse_config).unwrap();
    expect(&mut ae, request(Operation::Retrieve, &base, "Creload", "g2"), Rsc::OK).await;
    assert_eq!(sa_of(), before, "served over the SA established before the reload");

    let mut moved = b.cse_config.clone();
    moved.ingress.as_mut().unwrap().coap = Some(Listener { listen: "127.0.0.1:1".parse().unwrap() });
    let refused = b.cse_sidecar.runtime().reload(&moved).unwrap_err();
    assert!(refused.contains("need a restart"), "{refused}");
    b.shutdown().await;
}

/// SA update and removal travel over CoAP to a `coap://` peer like establishment: the CoAP
/// host's sidecar updates its SA's identifier (a key update right after establishment is refused
/// by the Responder's minimum interval, whatever the binding), then removes it, and the CSE-side
/// sidecar follows each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_removal_travel_over_coap() {
    use onem2m_sa::flows::{UpdateOperation, UpdateResult};

    let b = Bridge::start().await;
    let mut ae = coap_client(b.plain.addr()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    expect(&mut ae, request(Operation::Retrieve, &base, "Cupdate", "u1"), Rsc::OK).await;
    let (node, peers) = b.via_coap.runtime().nodes().remove(0);
    let sa = node.outbound().entries()[0].sa_id();
    let inbound = || b.cse_sidecar.node().inbound().entries().iter().map(|e| e.sa_id()).collect::<Vec<_>>();
    assert_eq!(inbound(), [sa]);
    let before = b.secured.counts();

    let updated = node.update(sa, UpdateOperation::Identifier, peers.clone()).await;
    assert_eq!(updated.result, UpdateResult::Accepted, "{updated:?}");
    let new = updated.new_sa_id.expect("a new identifier");
    assert_eq!(inbound(), [new], "the CSE side follows the update");
    expect(&mut ae, request(Operation::Retrieve, &base, "Cupdate", "u2"), Rsc::OK).await;

    let removed = node.remove(new, peers).await;
    assert_eq!(removed.0.result, UpdateResult::Accepted, "{removed:?}");
    assert!(inbound().is_empty(), "the CSE side removed it too");
    let carried = b.secured.counts() - before;
    assert!(carried.up_datagrams >= 3, "update, request and removal crossed the CoAP hop: {carried:?}");
    b.shutdown().await;
}
