//! Between two sidecars that both negotiated `compact`, secured primitives cross the network in
//! the compact form (docs/protocol.md §4.3, Carriage) — over HTTP as the raw body with
//! `Content-Type: application/vnd.onem2m-sa.compact`, over CoAP as the raw payload with
//! Content-Format 65000 — and in the JWE form when the peer is configured `secured_form = "jwe"`.
//! Checked on the wire with the demo's counting relays.

use onem2m_primitive::{Operation, ResponseStatusCode as Rsc, compact};
use onem2m_sa::Capabilities;
use onem2m_sa::credential::NodeId;
use onem2m_sa_integration::request;
use onem2m_sa_sidecar::demo::{self, AE_ID, COAP_AE_ID, CSE_BASE, CSE_ID, Topology};
use onem2m_sa_tower::SecuredForm;
use tower::ServiceExt;

fn cse() -> NodeId {
    NodeId::new(CSE_ID).unwrap()
}

/// The head of a sampled HTTP request, lower-cased.
fn head(sample: &[u8]) -> String {
    let end = sample.windows(4).position(|w| w == b"\r\n\r\n").map_or(sample.len(), |p| p + 4);
    String::from_utf8_lossy(&sample[..end]).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_pair_uses_the_compact_form_when_both_negotiated_it() {
    let t = Topology::start(None).await.unwrap();
    let c = t.ae_client();
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let send = |rqi: &str| c.clone().oneshot(request(Operation::Retrieve, &base, AE_ID, rqi));
    // The first request establishes the SA.
    assert_eq!(send("e0").await.unwrap().rsc, Rsc::OK);
    let sa = &t.ae_sidecar.node().outbound().entries()[0];
    assert_eq!(sa.capabilities(), Capabilities::ALL, "negotiated by the two sidecars");
    assert_eq!(t.cse_sidecar.node().inbound().entries()[0].capabilities(), Capabilities::ALL);

    t.secured_tap.arm();
    let rsp = send("c1").await.unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::OK, "c1"));
    let sample = t.secured_tap.sample().expect("a request crossed the secured hop");
    let h = head(&sample);
    assert!(h.starts_with("post /"), "{h}");
    assert!(h.contains(&format!("content-type: {}", compact::MEDIA_TYPE)), "{h}");
    assert!(!String::from_utf8_lossy(&sample).contains("m2m:seci"), "no JWE on the wire");
    // Byte 0 of the body: version 2, key phase 0, the suite's code.
    let body = &sample[h.len()..];
    assert_eq!(body[0] >> 5, 2, "compact version");
    assert_eq!(&body[1..9], sa.sa_id().as_bytes(), "the SA identifier in the clear header");

    // Configured JWE for this peer: the same SA, the JWE form.
    t.ae_sidecar.node().set_secured_form(cse(), SecuredForm::Jwe);
    t.secured_tap.arm();
    assert_eq!(send("j1").await.unwrap().rsc, Rsc::OK);
    let sample = t.secured_tap.sample().unwrap();
    assert!(head(&sample).contains("content-type: application/json"), "{}", head(&sample));
    assert!(String::from_utf8_lossy(&sample).contains("m2m:seci"));
    assert_eq!(t.ae_sidecar.node().outbound().entries().len(), 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coap_pair_uses_the_compact_form_when_both_negotiated_it() {
    let t = Topology::start(None).await.unwrap();
    let ae = t.coap_ae_client().await.unwrap();
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let send = |rqi: &str| ae.clone().oneshot(request(Operation::Retrieve, &base, COAP_AE_ID, rqi));
    assert_eq!(send("e0").await.unwrap().rsc, Rsc::OK);
    let sa = t.coap_sidecar.node().outbound().entries()[0].clone();
    assert_eq!(sa.capabilities(), Capabilities::ALL);

    t.coap_secured_tap.arm();
    let before = t.coap_secured_tap.counts();
    assert_eq!(send("c1").await.unwrap().rsc, Rsc::OK);
    let compact_bytes = t.coap_secured_tap.counts() - before;
    let sample = t.coap_secured_tap.sample().expect("a datagram crossed the secured hop");
    // The bare compact request: a POST whose only content is the sealed object.
    assert_eq!(demo::coap_secured_form(&sample), Some("compact"));
    let (options, payload) = demo::coap_options(&sample).unwrap();
    assert!(options.is_empty(), "no Uri-Path, no Content-Format, no oneM2M option: {options:?}");
    assert_eq!((payload[0] >> 5, &payload[1..9]), (2, sa.sa_id().as_bytes().as_slice()), "version 2, the SA id");
    assert!(!String::from_utf8_lossy(&sample).contains("m2m:seci"));

    t.coap_sidecar.node().set_secured_form(cse(), SecuredForm::Jwe);
    t.coap_secured_tap.arm();
    let before = t.coap_secured_tap.counts();
    assert_eq!(send("j1").await.unwrap().rsc, Rsc::OK);
    let jwe_bytes = t.coap_secured_tap.counts() - before;
    let sample = t.coap_secured_tap.sample().unwrap();
    assert_eq!(demo::coap_content_format(&sample), Some(50), "JSON");
    assert_eq!(demo::coap_secured_form(&sample), Some("jwe"));
    assert!(String::from_utf8_lossy(&sample).contains("m2m:seci"));
    // The same request and answer, smaller in the compact form both ways.
    assert!(compact_bytes.up_bytes < jwe_bytes.up_bytes, "{compact_bytes:?} vs {jwe_bytes:?}");
    assert!(compact_bytes.down_bytes < jwe_bytes.down_bytes, "{compact_bytes:?} vs {jwe_bytes:?}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reports_the_compact_and_the_jwe_figure_over_coap() {
    let mut t = Topology::start(None).await.unwrap();
    let report = demo::run_workload(&mut t, 8, &|_| {}).await;
    assert!(report.ok(), "{report:#?}");
    let c = &report.coap;
    assert_eq!(c.secured_form, "compact", "{c:#?}");
    assert!(c.jwe_bytes_per_request > c.secured_bytes_per_request, "{c:#?}");
    assert!(c.jwe_bytes_per_response > c.secured_bytes_per_response, "{c:#?}");
    assert!(!report.ciphertext_hex.is_empty(), "the compact HTTP sample's ciphertext is found: {report:#?}");
    t.shutdown().await;
}
