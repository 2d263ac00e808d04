//! Secure by default at the ingress: plaintext is refused unless allow-listed, and the upstream
//! learns from `X-SA-Peer` / `X-SA-Id` which requests came over an SA and from which peer — headers
//! the sidecar sets itself and never lets through from the network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient, ServerConfig, request_to_primitive, response_to_http, serve};
use onem2m_sa_sidecar::demo::{
    AE_ID, AE_NODE, CSE_ID, DemoPki, ae_sidecar_config, base_config, cse_sidecar_config, loopback,
};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use onem2m_sa_tower::{InboundRequest, Node, PlaintextPolicy, ReceiveSecureLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt, service_fn};

const FORGED_PEER: &str = "/id-forged";
const FORGED_SA: &str = "0123456789abcdef";

fn request(fr: Option<&str>, rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(Operation::Retrieve, format!("{CSE_ID}/cse-base"), fr.map(str::to_owned), rqi);
    r.rvi = Some("3".into());
    r
}

/// Runs `fr` through a `ReceiveSecure` with `policy` in front of a counting service: the answer's
/// code, and whether the protected service was called.
async fn through(policy: &PlaintextPolicy, fr: Option<&str>) -> (Rsc, bool) {
    let pki = DemoPki::new();
    let node = Node::new(base_config(pki.node(CSE_ID, &[CSE_ID])).node_config());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |r: InboundRequest| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(ResponsePrimitive::new(Rsc::OK, &r.primitive.rqi)) }
    });
    let rsp = ReceiveSecureLayer::new(node, policy.clone()).layer(inner).oneshot(request(fr, "p")).await.unwrap();
    (rsp.rsc, calls.load(Ordering::SeqCst) == 1)
}

#[tokio::test]
async fn plaintext_is_refused_by_default_whatever_the_originator() {
    let policy = PlaintextPolicy::default();
    // An AE-ID (the old default let these through: identity binding bypassed), an SP-relative
    // AE-ID, a CSE-ID, a made-up ID, an empty and an absent originator.
    for fr in [Some("Cattacker"), Some("Sattacker"), Some("/id-mn"), Some("anything"), Some(""), None] {
        assert_eq!(through(&policy, fr).await, (Rsc::SECURITY_ASSOCIATION_REQUIRED, false), "{fr:?}");
    }
}

#[tokio::test]
async fn the_allow_list_admits_only_what_it_names() {
    let pattern = |p: &str| p.parse().unwrap();
    let legacy = PlaintextPolicy { allow: vec![pattern("Clegacy*"), pattern("/id-old")], allow_anonymous: false };
    for (fr, admitted) in [
        (Some("Clegacy-meter"), true),
        (Some("/id-old"), true),
        (Some("Cother"), false),
        (Some("/id-old/x"), false),
        (Some(""), false),
        (None, false),
    ] {
        let (rsc, called) = through(&legacy, fr).await;
        assert_eq!(called, admitted, "{fr:?}");
        assert_eq!(rsc == Rsc::SECURITY_ASSOCIATION_REQUIRED, !admitted, "{fr:?}");
    }
    // `*` names every originator, but not the absence of one: that takes `allow_anonymous`.
    let star = PlaintextPolicy { allow: vec![pattern("*")], allow_anonymous: false };
    assert!(through(&star, Some("Cx")).await.1 && through(&star, Some("/id-mn")).await.1);
    assert!(!through(&star, None).await.1 && !through(&star, Some("")).await.1);
    let anonymous = PlaintextPolicy { allow: Vec::new(), allow_anonymous: true };
    assert!(through(&anonymous, None).await.1 && through(&anonymous, Some("")).await.1);
    assert!(!through(&anonymous, Some("Cx")).await.1);
}

/// What the upstream saw of one request: its `rqi` and its `X-SA-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    rqi: String,
    peer: Vec<String>,
    sa_id: Vec<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An upstream on raw HTTP (so that it sees every header) answering 2000 to anything.
async fn recording_upstream() -> (String, Log) {
    let listener = loopback().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let rec = log.clone();
    let svc = service_fn(move |req: http::Request<Bytes>| {
        let all = |name: &str| -> Vec<String> {
            req.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
        };
        let prim = request_to_primitive(&req).unwrap();
        rec.lock().unwrap().push(Seen { rqi: prim.rqi.clone(), peer: all("x-sa-peer"), sa_id: all("x-sa-id") });
        let answer = response_to_http(&ResponsePrimitive::new(Rsc::OK, &prim.rqi)).unwrap();
        async move { Ok::<_, std::convert::Infallible>(answer) }
    });
    tokio::spawn(serve(listener, svc, ServerConfig::default(), std::future::pending()));
    (format!("http://{addr}"), log)
}

/// One request written by hand to `addr` with the forged `X-SA-*` headers added; the status.
async fn forged(addr: SocketAddr, req: &RequestPrimitive) -> u16 {
    let http = onem2m_sa_http::primitive_to_request(req, &format!("http://{addr}")).unwrap();
    let target = http.uri().path_and_query().unwrap().as_str();
    let mut head = format!("{} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n", http.method());
    for (name, value) in http.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str(&format!("X-SA-Peer: {FORGED_PEER}\r\nx-sa-peer: {AE_NODE}\r\nX-SA-Id: {FORGED_SA}\r\n"));
    head.push_str(&format!("Content-Length: {}\r\n\r\n", http.body().len()));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(http.body()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    raw.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_learns_the_true_peer_and_never_a_forged_one() {
    let (up, log) = recording_upstream().await;
    let pki = DemoPki::new();
    let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
    let ingress = cse_in.local_addr().unwrap();
    let mut cse_cfg = cse_sidecar_config(&pki, &up, ae_in.local_addr().unwrap());
    // One legacy AE may talk in plaintext.
    cse_cfg.ingress.as_mut().unwrap().plaintext.allow = vec!["Clegacy".parse().unwrap()];
    let ae_cfg = ae_sidecar_config(&pki, ingress, &up);
    let egress = ae_out.local_addr().unwrap();
    let cse =
        Sidecar::start(&cse_cfg, Listeners { ingress_http: Some(cse_in), ..Listeners::default() }, None).await.unwrap();
    let ae =
        Sidecar::start(&ae_cfg, Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None }, None)
            .await
            .unwrap();

    // Over the SA: the AE's request, with forged headers on the plaintext hop to its egress.
    assert_eq!(forged(egress, &request(Some(AE_ID), "secured")).await, 200);
    // A plain client through the egress, no forgery.
    let client = HttpClient::new(&format!("http://{egress}"), ClientConfig::default()).unwrap();
    assert_eq!(client.oneshot(request(Some(AE_ID), "secured-plain")).await.unwrap().rsc, Rsc::OK);
    // Plaintext straight to the ingress, allow-listed, with forged headers.
    assert_eq!(forged(ingress, &request(Some("Clegacy"), "plaintext")).await, 200);
    // Plaintext not allow-listed, with forged headers: refused before the upstream.
    assert_eq!(forged(ingress, &request(Some("Cattacker"), "refused")).await, 403);

    let sa_id = cse.node().inbound().entries()[0].sa_id().to_string();
    let seen = log.lock().unwrap().clone();
    let secured = |rqi: &str| Seen { rqi: rqi.into(), peer: vec![AE_NODE.into()], sa_id: vec![sa_id.clone()] };
    assert_eq!(
        seen,
        [secured("secured"), secured("secured-plain"), Seen { rqi: "plaintext".into(), peer: vec![], sa_id: vec![] },]
    );
    ae.shutdown().await;
    cse.shutdown().await;
}
