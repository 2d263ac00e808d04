//! A plain HTTP client → AE-side sidecar → CSE-side sidecar → demo CSE, on real sockets.

use std::sync::{Arc, Mutex};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_integration::request;
use onem2m_sa_sidecar::demo::{self, AE_ID, CSE_BASE, CSE_ID, DemoPki, Topology};
use onem2m_sa_tower::{Node, Route, SecuredForm, SendSecureLayer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt, service_fn};

fn client(addr: std::net::SocketAddr) -> HttpClient {
    HttpClient::new(&format!("http://{addr}"), ClientConfig::default()).unwrap()
}

/// One HTTP/1.1 request written by hand, as any HTTP client would send it.
async fn raw_http(addr: std::net::SocketAddr, head: &str, body: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let msg = format!("{head}Host: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_through_the_sidecar_pair() {
    let t = Topology::start(None).await.unwrap();
    let egress = t.ae_sidecar.addresses().egress_http.unwrap();
    let base = format!("{CSE_ID}/{CSE_BASE}");

    // Register the AE with a request written by hand (TS-0009: POST to /~/<SP-relative>).
    let body =
        format!(r#"{{"m2m:ae":{{"rn":"lamp","api":"Nlamp","rr":true,"srv":["3"],"poa":["{}"]}}}}"#, t.receiver.poa());
    let (status, head, answer) = raw_http(
        egress,
        &format!("POST /~{base} HTTP/1.1\r\nX-M2M-Origin: {AE_ID}\r\nX-M2M-RI: hand-1\r\nX-M2M-RVI: 3\r\nContent-Type: application/json;ty=2\r\n"),
        &body,
    )
    .await;
    assert_eq!(status, 201, "{head}\n{answer}");
    assert!(head.contains("x-m2m-rsc: 2001") && head.contains("x-m2m-ri: hand-1"), "{head}");
    let ae: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(ae["m2m:ae"]["aei"], AE_ID);
    assert_eq!(ae["m2m:ae"]["poa"][0], t.receiver.poa(), "the AE sees the poa it registered");

    let c = client(egress);
    let ae_path = format!("{base}/lamp");
    let mut req = request(Operation::Create, &ae_path, AE_ID, "c1");
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "state"}}));
    let rsp = c.clone().oneshot(req).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED);
    assert_eq!(rsp.pc.as_ref().unwrap()["m2m:cnt"]["rn"], "state");
    let cnt = format!("{ae_path}/state");

    for i in 0..5 {
        let mut req = request(Operation::Create, &cnt, AE_ID, &format!("i{i}"));
        req.ty = Some(4);
        req.pc = Some(json!({"m2m:cin": {"rn": format!("v{i}"), "con": format!("on-{i}")}}));
        let rsp = c.clone().oneshot(req).await.unwrap();
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::CREATED, format!("i{i}").as_str()));
    }
    for i in 0..5 {
        let rsp = c.clone().oneshot(request(Operation::Retrieve, &format!("{cnt}/v{i}"), AE_ID, "g")).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK);
        assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"], format!("on-{i}"));
    }
    let mut up = request(Operation::Update, &cnt, AE_ID, "u1");
    up.pc = Some(json!({"m2m:cnt": {"lbl": ["kitchen"]}}));
    let rsp = c.clone().oneshot(up).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::UPDATED);
    assert_eq!(rsp.pc.unwrap()["m2m:cnt"]["lbl"][0], "kitchen");
    let rsp = c.clone().oneshot(request(Operation::Delete, &format!("{cnt}/v0"), AE_ID, "d0")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::DELETED);
    let rsp = c.clone().oneshot(request(Operation::Retrieve, &format!("{cnt}/v0"), AE_ID, "g0")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::NOT_FOUND, "the CSE's own errors come back too");
    let rsp = c.clone().oneshot(request(Operation::Delete, &ae_path, AE_ID, "d1")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::DELETED);

    // Every request reached the CSE once, over one SA.
    let executed = t.cse.cse.executed();
    assert_eq!(executed.len(), 1 + 1 + 5 + 5 + 1 + 1 + 1 + 1);
    assert_eq!(t.ae_sidecar.node().outbound().entries().len(), 1);
    assert_eq!(t.cse_sidecar.node().inbound().entries().len(), 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_workload_passes_with_notifications_over_the_reverse_sa() {
    let mut t = Topology::start(None).await.unwrap();
    let report = demo::run_workload(&mut t, 10, &|_| {}).await;
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.notifications_received, 10);
    assert_eq!(t.cse.deliveries.delivered.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert!(report.bytes_added_per_request > 0.0);
    assert!(report.wire_sample_hex.contains("m2m:seci") || !report.ciphertext_hex.is_empty(), "{report:#?}");
    // The reverse SA: the CSE host initiated one towards the AE host.
    let reverse = t.cse_sidecar.node().outbound().entries();
    assert_eq!(reverse.len(), 1);
    assert_eq!(reverse[0].peer().as_str(), demo::AE_NODE);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbor_from_the_ae_is_carried() {
    let t = Topology::start(None).await.unwrap();
    let egress = t.ae_sidecar.addresses().egress_http.unwrap();
    let cbor_client = HttpClient::new(
        &format!("http://{egress}"),
        ClientConfig { media: onem2m_sa_http::MediaType::Cbor, ..ClientConfig::default() },
    )
    .unwrap();
    let mut req = request(Operation::Create, &format!("{CSE_ID}/{CSE_BASE}"), AE_ID, "cb1");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "cbor-ae", "api": "Ncbor", "rr": false, "srv": ["3"]}}));
    let rsp = cbor_client.oneshot(req).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED);
    assert_eq!(rsp.pc.unwrap()["m2m:ae"]["rn"], "cbor-ae");
    t.shutdown().await;
}

type Recorded = Arc<Mutex<Vec<RequestPrimitive>>>;

/// A second, legitimate AE host (`/id-ae2`, AE-IDs `Cae2*`) whose outer requests are recorded:
/// the attacker's raw material.
fn recording_peer(
    pki: &DemoPki,
    ingress: std::net::SocketAddr,
) -> (Node, tower::util::BoxCloneSyncService<RequestPrimitive, ResponsePrimitive, BoxError>, Recorded) {
    let config = demo::base_config(pki.node("/id-ae2", &["Cae2*"]));
    let node = Node::new(config.node_config());
    let recorded: Recorded = Arc::default();
    let log = recorded.clone();
    let http = client(ingress);
    let transport = service_fn(move |req: RequestPrimitive| {
        log.lock().unwrap().push(req.clone());
        http.clone().oneshot(req)
    });
    let route: Route = Arc::new(|_: &RequestPrimitive| Some(CSE_ID.parse().unwrap()));
    let svc = tower::util::BoxCloneSyncService::new(SendSecureLayer::new(node.clone(), route).layer(transport));
    (node, svc, recorded)
}

fn is_secured(req: &RequestPrimitive) -> bool {
    req.pc.as_ref().is_some_and(|pc| pc.get("m2m:seci").is_some() || compact::is_compact(pc))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_tampered_replayed_and_spoofed_requests_never_reach_the_cse() {
    let t = Topology::start(None).await.unwrap();
    let ingress = t.cse_sidecar.addresses().ingress_http.unwrap();
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let executed = || t.cse.cse.executed().len();

    // Plaintext straight to the ingress, from an AE-ID and from a CSE-ID: 4107.
    for fr in [AE_ID, "/id-mn"] {
        let rsp = client(ingress).oneshot(request(Operation::Retrieve, &base, fr, "plain")).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED, "{fr}");
    }
    assert_eq!(executed(), 0);

    // A legitimate request over an SA from another AE host works (in the compact form the two
    // negotiated) …
    let (node, svc, recorded) = recording_peer(&t.pki, ingress);
    let rsp = svc.clone().oneshot(request(Operation::Retrieve, &base, "Cae2-meter", "legit")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    assert_eq!(executed(), 1);
    let sealed = recorded.lock().unwrap().iter().rev().find(|r| is_secured(r)).cloned().unwrap();
    let wire = compact::bytes(sealed.pc.as_ref().unwrap()).expect("the compact form").unwrap();

    // … its bytes replayed are refused (4115) …
    let rsp = client(ingress).oneshot(sealed.clone()).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::ESPRIM_BAD_MAC, "compact replay");

    // … and so is every tampered copy (one bit of the header, the ciphertext or the tag).
    for at in [0, 3, 9, 12, wire.len() - 1] {
        let mut bytes = wire.clone();
        bytes[at] ^= 0x01;
        let mut forged = sealed.clone();
        forged.rqi = format!("forged-compact-{at}");
        forged.pc = Some(compact::content(&bytes));
        let rsp = client(ingress).oneshot(forged).await.unwrap();
        assert!(
            [Rsc::ESPRIM_BAD_MAC, Rsc::BAD_REQUEST, Rsc::ESPRIM_UNKNOWN_KEY_ID, Rsc::ESPRIM_UNSUPPORTED_OPTION]
                .contains(&rsp.rsc),
            "compact tampered at {at}: {}",
            rsp.rsc
        );
    }

    // The same in the JWE form.
    node.set_secured_form(CSE_ID.parse().unwrap(), SecuredForm::Jwe);
    let rsp = svc.clone().oneshot(request(Operation::Retrieve, &base, "Cae2-meter", "legit-jwe")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    assert_eq!(executed(), 2);
    let sealed = recorded.lock().unwrap().iter().rev().find(|r| is_secured(r)).cloned().unwrap();

    // … its bytes replayed are refused (4115) …
    let rsp = client(ingress).oneshot(sealed.clone()).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::ESPRIM_BAD_MAC, "replay");

    // … and so is every tampered copy (one character of the JWE changed, within base64url).
    let epo = sealed.pc.as_ref().unwrap()["m2m:seci"]["epo"].as_str().unwrap().to_owned();
    let ct_start = epo.match_indices('.').nth(2).unwrap().0 + 1;
    for at in [0, 10, ct_start, ct_start + 5, epo.len() - 3] {
        let mut bytes = epo.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let mut forged = sealed.clone();
        forged.rqi = format!("forged-{at}");
        forged.pc = Some(json!({"m2m:seci": {"sit": 5, "epo": String::from_utf8(bytes).unwrap()}}));
        let rsp = client(ingress).oneshot(forged).await.unwrap();
        assert!(
            [Rsc::ESPRIM_BAD_MAC, Rsc::BAD_REQUEST, Rsc::ESPRIM_UNKNOWN_KEY_ID, Rsc::ESPRIM_UNSUPPORTED_OPTION]
                .contains(&rsp.rsc),
            "tampered at {at}: {}",
            rsp.rsc
        );
    }

    // A sealed request whose originator is outside the peer's ticket: 4116.
    let rsp = svc.clone().oneshot(request(Operation::Retrieve, &base, AE_ID, "spoof")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::ESPRIM_IMPERSONATION_ERROR);
    let rsp = svc.clone().oneshot(request(Operation::Retrieve, &base, "/id-in", "spoof-cse")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::ESPRIM_IMPERSONATION_ERROR);

    // A node whose ticket another anchor signed gets no SA at all.
    let stranger = DemoPki::new();
    let (_n, svc, _) = recording_peer(&stranger, ingress);
    let rsp = svc.oneshot(request(Operation::Retrieve, &base, "Cae2-meter", "stranger")).await.unwrap();
    assert!(rsp.rsc.is_error(), "{}", rsp.rsc);

    assert_eq!(executed(), 2, "only the legitimate requests were executed");
    t.shutdown().await;
}
