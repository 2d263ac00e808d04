//! The access log as an operator reads it: one line per request on each side, refusals with
//! their reason, nothing of the content. (Its own test binary: it installs the global subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_sidecar::demo::{AE_ID, AE_NODE, COAP_AE_NODE, CSE_BASE, CSE_ID, Topology};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn request(op: Operation, to: &str, fr: &str, rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, to, Some(fr.into()), rqi);
    r.rvi = Some("3".into());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_an_access_line_and_every_refusal_its_reason() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .init();

    let t = Topology::start(None).await.unwrap();
    let c = t.ae_client();
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let mut create = request(Operation::Create, &base, AE_ID, "acc-create");
    create.ty = Some(3);
    create.pc = Some(json!({"m2m:cnt": {"rn": "meter", "lbl": ["secret-label"]}}));
    assert_eq!(c.clone().oneshot(create).await.unwrap().rsc, Rsc::CREATED);
    let rsp = c.clone().oneshot(request(Operation::Retrieve, &format!("{base}/nothing"), AE_ID, "acc-404")).await;
    assert_eq!(rsp.unwrap().rsc, Rsc::NOT_FOUND);
    // Refused by the sidecars: CAdmin outside the AE host's ticket, plaintext at the ingress.
    let rsp = c.clone().oneshot(request(Operation::Retrieve, &base, "CAdmin", "acc-admin")).await;
    assert_eq!(rsp.unwrap().rsc, Rsc::ESPRIM_IMPERSONATION_ERROR);
    let ingress = t.cse_sidecar.addresses().ingress_http.unwrap();
    let plain = HttpClient::new(&format!("http://{ingress}"), ClientConfig::default()).unwrap();
    let rsp = plain.oneshot(request(Operation::Retrieve, &base, AE_ID, "acc-plain")).await;
    assert_eq!(rsp.unwrap().rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);
    // The same over CoAP: a request through the CoAP egress and the CoAP ingress, and plaintext
    // refused at the CoAP ingress.
    let mut coap = t.coap_ae_client().await.unwrap();
    let mut create = request(Operation::Create, &base, "Cacc-coap", "acc-coap");
    create.ty = Some(3);
    create.pc = Some(json!({"m2m:cnt": {"rn": "coap-meter", "lbl": ["secret-label"]}}));
    assert_eq!(coap.call(create).await.unwrap().rsc, Rsc::CREATED);
    let coap_ingress = t.cse_sidecar.coap_addresses().ingress.unwrap();
    let plain = onem2m_sa_coap::CoapClient::connect(coap_ingress, Default::default()).await.unwrap();
    let rsp = plain.send(&request(Operation::Retrieve, &base, AE_ID, "acc-coap-plain")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);
    let sa = |node: onem2m_sa_tower::Node, peer: &str| {
        node.inbound().entries().iter().find(|e| e.peer().as_str() == peer).unwrap().sa_id().to_string()
    };
    let (sa, coap_sa) = (sa(t.cse_sidecar.node(), AE_NODE), sa(t.cse_sidecar.node(), COAP_AE_NODE));
    t.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains('\u{1b}'), "no ANSI colour in a captured log");
    assert!(!text.contains("secret-label"), "content never reaches the log");
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let find = |side: &str, rqi: &str, message: &str| {
        lines
            .iter()
            .find(|l| {
                l["target"] == "onem2m_sa::access" && l["side"] == side && l["rqi"] == rqi && l["message"] == message
            })
            .unwrap_or_else(|| panic!("no {side} {message} line for {rqi} in\n{text}"))
            .clone()
    };
    let line = find("ingress", "acc-create", "request");
    assert_eq!(
        (line["level"].as_str(), line["op"].as_str(), line["fr"].as_str()),
        (Some("INFO"), Some("Create"), Some(AE_ID))
    );
    assert_eq!(
        (line["rsc"].as_u64(), line["peer"].as_str(), line["sa"].as_str()),
        (Some(2001), Some("/id-ae-host"), Some(sa.as_str()))
    );
    assert!(line["to"].as_str().unwrap().ends_with(CSE_BASE) && line["ms"].is_string());
    let line = find("egress", "acc-create", "request");
    assert_eq!(
        (line["rsc"].as_u64(), line["peer"].as_str(), line["fr"].as_str()),
        (Some(2001), Some(CSE_ID), Some(AE_ID))
    );
    assert!(!line["sa"].as_str().unwrap().is_empty());
    assert_eq!(find("ingress", "acc-404", "request")["rsc"], 4004);

    let refused = find("ingress", "acc-plain", "refused");
    assert_eq!((refused["level"].as_str(), refused["rsc"].as_u64()), (Some("WARN"), Some(4107)));
    assert!(!refused["reason"].as_str().unwrap().is_empty(), "{refused}");
    let refused = lines
        .iter()
        .find(|l| l["side"] == "ingress" && l["message"] == "refused" && l["rsc"] == 4116)
        .unwrap_or_else(|| panic!("no 4116 refusal in\n{text}"));
    assert!(!refused["reason"].as_str().unwrap().is_empty(), "{refused}");

    let line = find("ingress", "acc-coap", "request");
    assert_eq!(
        (line["rsc"].as_u64(), line["peer"].as_str(), line["sa"].as_str(), line["fr"].as_str()),
        (Some(2001), Some(COAP_AE_NODE), Some(coap_sa.as_str()), Some("Cacc-coap"))
    );
    let line = find("egress", "acc-coap", "request");
    assert_eq!(
        (line["rsc"].as_u64(), line["peer"].as_str(), line["method"].as_str(), line["fr"].as_str()),
        (Some(2001), Some(CSE_ID), Some("POST"), Some("Cacc-coap"))
    );
    assert!(!line["sa"].as_str().unwrap().is_empty());
    let refused = find("ingress", "acc-coap-plain", "refused");
    assert_eq!((refused["level"].as_str(), refused["rsc"].as_u64()), (Some("WARN"), Some(4107)));
    assert!(!refused["reason"].as_str().unwrap().is_empty(), "{refused}");
}
