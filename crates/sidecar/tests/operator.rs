//! What a real CSE does to the sidecar pair, with the demo topology and stand-ins: paths appended
//! to mapped points of access, no-response requests, relayed and assigned originators.

use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_sidecar::demo::{AE_NODE, CSE_ID, Topology};
use onem2m_sa_sidecar::poa::PoaMap;
use serde_json::json;
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

#[allow(dead_code)]
fn unused(_: ResponsePrimitive) {}
