//! `[sa]` settings take effect in the running sidecar, not only in the parsed configuration.

use std::collections::HashSet;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa_examples::demo_http::serve_stand_in;
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_sidecar::demo::{AE_ID, CSE_ID, DemoPki, ae_sidecar_config, cse_sidecar_config, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use tower::{ServiceExt, service_fn};

fn request(rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(Operation::Retrieve, format!("{CSE_ID}/cse-base"), Some(AE_ID.into()), rqi);
    r.rvi = Some("3".into());
    r
}

/// `sa.max_sas_per_peer = 1` at the CSE's sidecar: each time the AE host's sidecar establishes
/// a new SA, the CSE side's SA with it is replaced instead of kept (the default, 8, would keep
/// all three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sas_per_peer_bounds_what_one_peer_holds_at_the_ingress() {
    let svc =
        service_fn(|req: RequestPrimitive| async move { Ok::<_, BoxError>(ResponsePrimitive::new(Rsc::OK, &req.rqi)) });
    let upstream = serve_stand_in(loopback().await.unwrap(), svc).unwrap();
    let pki = DemoPki::new();
    let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
    let mut cse_cfg = cse_sidecar_config(&pki, &upstream, ae_in.local_addr().unwrap());
    cse_cfg.sa.max_sas_per_peer = 1;
    let ae_cfg = ae_sidecar_config(&pki, cse_in.local_addr().unwrap(), &upstream);
    let client = HttpClient::new(&format!("http://{}", ae_out.local_addr().unwrap()), ClientConfig::default()).unwrap();
    let cse = Sidecar::start(&cse_cfg, Listeners { ingress_http: Some(cse_in), egress_http: None, admin: None }, None)
        .await
        .unwrap();
    let ae =
        Sidecar::start(&ae_cfg, Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None }, None)
            .await
            .unwrap();

    let cse_id = NodeId::new(CSE_ID).unwrap();
    let mut established = HashSet::new();
    for i in 0..3 {
        assert_eq!(client.clone().oneshot(request(&format!("m{i}"))).await.unwrap().rsc, Rsc::OK);
        let entry = ae.node().outbound().live_by_peer(&cse_id).expect("an SA with the CSE");
        established.insert(entry.sa_id());
        let inbound = cse.node().inbound().entries();
        assert_eq!(inbound.len(), 1, "request {i}: the CSE side holds one SA with the AE host");
        assert_eq!(inbound[0].sa_id(), entry.sa_id(), "request {i}: the newest");
        // The AE side forgets it: the next request establishes another.
        ae.node().forget_outbound(&entry);
    }
    assert_eq!(established.len(), 3, "three establishments");
    ae.shutdown().await;
    cse.shutdown().await;
}
