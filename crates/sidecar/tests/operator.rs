//! What a real CSE does to the sidecar pair, with the demo topology and stand-ins: paths appended
//! to mapped points of access, no-response requests, relayed and assigned originators.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode as Rsc, ResponseTypeInfo};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_sidecar::demo::{
    AE_ID, AE_NODE, CSE_ID, DemoPki, Topology, ae_sidecar_config, cse_sidecar_config, loopback,
};
use onem2m_sa_sidecar::poa::PoaMap;
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn client(base: &str) -> HttpClient {
    HttpClient::new(base, ClientConfig::default()).unwrap()
}

fn request(op: Operation, to: &str, fr: &str, rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, to, Some(fr.into()), rqi);
    r.rvi = Some("3".into());
    r
}

/// The mapped form of the AE's point of access on the CSE host's egress, as the CSE stores it.
fn mapped_poa(t: &Topology) -> String {
    let egress = t.cse_sidecar.addresses().egress_http.unwrap();
    PoaMap::new(format!("http://{egress}")).map(&AE_NODE.parse().unwrap(), &t.receiver.poa())
}

/// ACME notifies `POST <mapped poa>/Csub2` and forwards retargeted requests to
/// `<mapped poa>/cse-in/capAE`: the path it appends reaches the AE after the registered poa's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_the_cse_appends_to_a_mapped_poa_reaches_the_ae() {
    let mut t = Topology::start(None).await.unwrap();
    let mapped = mapped_poa(&t);

    // A notification to <poa>/Csub2: delivered over the reverse SA to /notify/Csub2.
    let mut notify = request(Operation::Notify, "Csub2", CSE_ID, "n1");
    notify.pc = Some(json!({"m2m:sgn": {"vrq": true, "sur": "/id-in/Csub2"}}));
    let rsp = client(&mapped).oneshot(notify).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), t.receiver.received.recv()).await.unwrap().unwrap();
    assert_eq!((got.op, got.to.as_str()), (Operation::Notify, "notify/Csub2"));
    assert_eq!(got.fr.as_deref(), Some(CSE_ID));

    // The registered poa itself, with nothing appended, still works.
    let egress = t.cse_sidecar.addresses().egress_http.unwrap();
    let as_mapped = onem2m_sa_sidecar::poa::path_of(&mapped).trim_start_matches('/').to_owned();
    let rsp = client(&format!("http://{egress}"))
        .oneshot(request(Operation::Notify, &as_mapped, CSE_ID, "n2"))
        .await
        .unwrap();
    assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), t.receiver.received.recv()).await.unwrap().unwrap();
    assert_eq!(got.to, "notify");

    // A retargeted request (the receiver takes NOTIFY only, so 4005 proves it arrived there),
    // its query carried.
    let mut retrieve = request(Operation::Retrieve, "cse-in/capAE", CSE_ID, "r1");
    retrieve.rcn = Some(1);
    let rsp = client(&mapped).oneshot(retrieve).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OPERATION_NOT_ALLOWED, "{rsp:?}");

    // What cannot be decoded is still refused.
    let rsp = client(&format!("http://{egress}/.sa-poa/!!"))
        .oneshot(request(Operation::Notify, "x", CSE_ID, "bad"))
        .await
        .unwrap();
    assert_eq!(rsp.rsc, Rsc::BAD_REQUEST);
    t.shutdown().await;
}

/// ACME's answer to a no-response (`rt=5`) request: a bare `204 No Content`, no `X-M2M-RSC`, no
/// `X-M2M-RI`, and (as ACME 2026.5.3 sends it) a `text/plain` Content-Type.
const ACME_BARE_204: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";

/// A CSE stand-in that answers every request with `answer` (an HTTP answer without a response
/// primitive); counts requests.
async fn bare_upstream(count: Arc<AtomicUsize>, answer: &'static [u8]) -> String {
    let listener = loopback().await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // One whole request: its head, and as much body as Content-Length says.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    buf.drain(..end + 4 + len);
                    count.fetch_add(1, Ordering::SeqCst);
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Both sidecars of the demo in front of `upstream` (the AE host's ingress in front of it too);
/// returns them and a client of the AE host's egress.
async fn pair(upstream: &str) -> (Sidecar, Sidecar, HttpClient) {
    let pki = DemoPki::new();
    let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
    let cse_cfg = cse_sidecar_config(&pki, upstream, ae_in.local_addr().unwrap());
    let ae_cfg = ae_sidecar_config(&pki, cse_in.local_addr().unwrap(), upstream);
    let egress = ae_out.local_addr().unwrap();
    let cse =
        Sidecar::start(&cse_cfg, Listeners { ingress_http: Some(cse_in), ..Listeners::default() }, None).await.unwrap();
    let ae =
        Sidecar::start(&ae_cfg, Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None }, None)
            .await
            .unwrap();
    (cse, ae, client(&format!("http://{egress}")))
}

/// TS-0004 `rt=5` (noResponse): ACME executes the request and answers a bare HTTP 204. Through
/// the pair that is not "upstream not reachable" (the client would retry and execute it twice):
/// the AE learns that the CSE took the request, 1000 ACCEPTED, and the CSE saw it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_response_request_the_cse_answered_with_a_bare_204_is_accepted_not_unreachable() {
    let count = Arc::new(AtomicUsize::new(0));
    let up = bare_upstream(count.clone(), ACME_BARE_204).await;
    let (cse, ae, c) = pair(&up).await;

    let mut req = request(Operation::Create, &format!("{CSE_ID}/cse-in/cnt"), AE_ID, "nr1");
    req.ty = Some(4);
    req.rt = Some(ResponseTypeInfo::new(5));
    req.pc = Some(json!({"m2m:cin": {"con": "x"}}));
    let rsp = c.clone().oneshot(req).await.unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::ACCEPTED, "nr1"), "{rsp:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1, "executed once");

    // The same bare answer to a request that asked for a response is the CSE's fault, and the
    // error says so: not "not reachable".
    let rsp = c.clone().oneshot(request(Operation::Retrieve, &format!("{CSE_ID}/cse-in"), AE_ID, "r1")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::INTERNAL_SERVER_ERROR);
    let text = rsp.pc.as_ref().and_then(|pc| pc["m2m:dbg"].as_str()).unwrap_or_default().to_owned();
    assert!(text.contains("could not be mapped") && text.contains("X-M2M-RSC"), "{text}");
    assert!(!text.contains("not reachable"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    ae.shutdown().await;
    cse.shutdown().await;
}

/// Only a bare 2xx tells that the CSE took a no-response request: a bare error status (a proxy's
/// `502`, a CSE failing before it mapped the request) is not 1000 ACCEPTED but 5000, saying
/// which status came without a response primitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_response_request_answered_with_a_bare_error_status_is_not_accepted() {
    let count = Arc::new(AtomicUsize::new(0));
    let up = bare_upstream(count.clone(), b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
    let (cse, ae, c) = pair(&up).await;

    let mut req = request(Operation::Create, &format!("{CSE_ID}/cse-in/cnt"), AE_ID, "nr2");
    req.ty = Some(4);
    req.rt = Some(ResponseTypeInfo::new(5));
    req.pc = Some(json!({"m2m:cin": {"con": "x"}}));
    let rsp = c.clone().oneshot(req).await.unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::INTERNAL_SERVER_ERROR, "nr2"), "{rsp:?}");
    let text = rsp.pc.as_ref().and_then(|pc| pc["m2m:dbg"].as_str()).unwrap_or_default().to_owned();
    assert!(text.contains("502") && text.contains("X-M2M-RSC"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    ae.shutdown().await;
    cse.shutdown().await;
}

/// An AE registering without an originator (absent `fr`, legal in oneM2M: the CSE assigns the
/// AE-ID) passes the pair with the documented AE-host ticket; so does the `C`-prefixed form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ae_registration_without_an_originator_or_with_c_or_s_passes_the_pair() {
    let t = Topology::start(None).await.unwrap();
    let egress = t.ae_sidecar.addresses().egress_http.unwrap();
    for (i, origin) in ["", "X-M2M-Origin: \r\n", "X-M2M-Origin: C\r\n", "X-M2M-Origin: S\r\n"].iter().enumerate() {
        let body = format!(r#"{{"m2m:ae":{{"rn":"anon{i}","api":"Nanon","rr":false,"srv":["3"]}}}}"#);
        let (status, head, answer) = raw_http(
            egress,
            &format!(
                "POST /~{CSE_ID}/cse-base HTTP/1.1\r\n{origin}X-M2M-RI: reg-{i}\r\nX-M2M-RVI: 3\r\n\
                 Content-Type: application/json;ty=2\r\n"
            ),
            &body,
        )
        .await;
        assert_eq!(status, 201, "{origin:?}: {head}\n{answer}");
        let ae: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let aei = ae["m2m:ae"]["aei"].as_str().unwrap();
        assert!(aei.starts_with('C') || aei.starts_with('S'), "assigned {aei}");
        // The assigned AE-ID then speaks through the same SA.
        let rsp = client(&format!("http://{egress}"))
            .oneshot(request(Operation::Retrieve, &format!("{CSE_ID}/cse-base/anon{i}"), aei, &format!("g{i}")))
            .await
            .unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "{aei}");
    }
    t.shutdown().await;
}

/// `C*` on an AE host's ticket does not make it the CSE's administrator: `CAdmin` is excepted
/// unless the ticket names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_wildcard_does_not_grant_the_cse_admin() {
    let t = Topology::start(None).await.unwrap();
    let c = t.ae_client();
    for admin in ["CAdmin", "/id-in/CAdmin"] {
        let rsp = c.clone().oneshot(request(Operation::Retrieve, &format!("{CSE_ID}/cse-base"), admin, "adm")).await;
        assert_eq!(rsp.unwrap().rsc, Rsc::ESPRIM_IMPERSONATION_ERROR, "{admin}");
    }
    let rsp = c.clone().oneshot(request(Operation::Retrieve, &format!("{CSE_ID}/cse-base"), "CAdmin2", "ok")).await;
    assert_eq!(rsp.unwrap().rsc, Rsc::OK);
    assert_eq!(t.cse.cse.executed().len(), 1, "only CAdmin2 reached the CSE");
    t.shutdown().await;
}

/// A request the CSE retargets to an AE's point of access carries its original originator
/// (`/id-in/Cxyz`): the AE host accepts it from the CSE node, whose ticket relays `/id-in/*`;
/// an originator of another CSE is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_cse_retargets_keeps_its_relayed_originator() {
    let mut t = Topology::start(None).await.unwrap();
    let mapped = mapped_poa(&t);
    let mut notify = request(Operation::Notify, "capAE", "/id-in/Cxyz", "rt1");
    notify.pc = Some(json!({"m2m:sgn": {"sur": "/id-in/Csub"}}));
    let rsp = client(&mapped).oneshot(notify.clone()).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), t.receiver.received.recv()).await.unwrap().unwrap();
    assert_eq!(got.fr.as_deref(), Some("/id-in/Cxyz"));

    notify.fr = Some("/id-mn/Cabc".into());
    notify.rqi = "rt2".into();
    let rsp = client(&mapped).oneshot(notify).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::ESPRIM_IMPERSONATION_ERROR);
    t.shutdown().await;
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

/// `--check --connect`: a good config passes every check; a wrong upstream, a peer address
/// that is the CSE rather than its sidecar, a dead peer and a peer of another trust anchor are
/// each reported with what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_finds_what_to_fix() {
    use onem2m_sa_sidecar::config::Peer;
    use onem2m_sa_sidecar::doctor::connect_checks;
    let t = Topology::start(None).await.unwrap();
    let ae_ingress = t.ae_sidecar.addresses().ingress_http.unwrap();
    let good = cse_sidecar_config(&t.pki, &t.cse.base(), ae_ingress);
    let findings = connect_checks(&good).await;
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert!(findings.iter().all(|f| f.ok), "{findings:#?}");
    assert!(findings[0].what.contains("answers like oneM2M"), "{}", findings[0]);
    assert!(findings[1].what.contains("a sidecar ingress") && findings[2].what.contains("SA established"));

    // The upstream answers HTTP but not oneM2M; a peer is the CSE itself; a peer is dead.
    let bare = bare_upstream(Arc::default(), ACME_BARE_204).await;
    let dead = loopback().await.unwrap().local_addr().unwrap();
    let mut bad = cse_sidecar_config(&t.pki, &bare, ae_ingress);
    bad.peers.push(Peer {
        id: "/id-mn".parse().unwrap(),
        address: t.cse.base(),
        outer: Default::default(),
        secured_form: Default::default(),
    });
    bad.peers.push(Peer {
        id: "/id-gone".parse().unwrap(),
        address: format!("http://{dead}"),
        outer: Default::default(),
        secured_form: Default::default(),
    });
    let findings = connect_checks(&bad).await;
    let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
    let problem = |needle: &str| {
        findings
            .iter()
            .find(|f| !f.ok && f.what.contains(needle))
            .unwrap_or_else(|| panic!("no problem with {needle:?} in {text:#?}"))
            .clone()
    };
    assert!(problem("not like oneM2M").fix.unwrap().contains("ingress.upstream"));
    assert!(problem("/id-mn").fix.unwrap().contains("sidecar's ingress"));
    assert!(problem("/id-gone").what.contains("not reachable"));

    // A node whose ticket another anchor signed: reachable, but no SA.
    let stranger = DemoPki::new();
    let other = cse_sidecar_config(&stranger, &t.cse.base(), ae_ingress);
    let findings = connect_checks(&other).await;
    let sa = findings.iter().find(|f| f.what.contains("no SA could be established")).expect("SA problem");
    assert!(sa.fix.as_ref().unwrap().contains("trust_anchor"), "{sa}");
    t.shutdown().await;
}

/// `http.max_body_bytes` bounds the primitives the AE and the CSE exchange, not their sealed
/// form, which base64url makes a third larger: a contentInstance just under the limit (in its
/// plaintext HTTP request, and in the CSE's answer) passes the pair both ways, as it passes
/// straight to the CSE. Before, the CSE-side ingress refused the sealed request (4000) from
/// about 3/4 of the limit on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_just_under_the_limit_passes_the_pair_sealed() {
    let t = Topology::start(None).await.unwrap();
    let c = t.ae_client();
    let base = format!("{CSE_ID}/cse-base");
    let mut ae = request(Operation::Create, &base, AE_ID, "b1");
    ae.ty = Some(2);
    ae.pc = Some(json!({"m2m:ae": {"rn": "big-ae", "api": "Nbig", "rr": false, "srv": ["3"]}}));
    assert_eq!(c.clone().oneshot(ae).await.unwrap().rsc, Rsc::CREATED);
    let mut cnt = request(Operation::Create, &format!("{base}/big-ae"), AE_ID, "b2");
    cnt.ty = Some(3);
    cnt.pc = Some(json!({"m2m:cnt": {"rn": "c"}}));
    assert_eq!(c.clone().oneshot(cnt).await.unwrap().rsc, Rsc::CREATED);

    // The HTTP body of this CREATE is 1 KiB under the default limit (1 MiB).
    let limit = onem2m_sa_sidecar::config::HttpSettings::default().max_body_bytes;
    let con = "x".repeat(limit - 1024 - r#"{"m2m:cin":{"con":"","rn":"big"}}"#.len());
    let mut cin = request(Operation::Create, &format!("{base}/big-ae/c"), AE_ID, "b3");
    cin.ty = Some(4);
    cin.pc = Some(json!({"m2m:cin": {"rn": "big", "con": con}}));
    let rsp = c.clone().oneshot(cin).await.unwrap();
    assert_eq!(
        rsp.rsc,
        Rsc::CREATED,
        "{:?}",
        rsp.pc.as_ref().map(|pc| pc.to_string().chars().take(300).collect::<String>())
    );
    let rsp =
        c.clone().oneshot(request(Operation::Retrieve, &format!("{base}/big-ae/c/big"), AE_ID, "b4")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"].as_str().map(str::len), Some(con.len()));

    // Over the limit is still refused, by the AE host's egress, before anything is sealed.
    let mut over = request(Operation::Create, &format!("{base}/big-ae/c"), AE_ID, "b5");
    over.ty = Some(4);
    over.pc = Some(json!({"m2m:cin": {"rn": "over", "con": "x".repeat(limit)}}));
    let sealed_before = t.secured_tap.bytes();
    assert_eq!(c.clone().oneshot(over).await.unwrap().rsc, Rsc::BAD_REQUEST);
    assert_eq!(t.secured_tap.bytes(), sealed_before, "nothing sent to the CSE host");
    t.shutdown().await;
}
