//! Either sidecar killed (as a crash would: tasks, connections and SA state gone) and started
//! again mid-workload: the workload completes, and nothing is executed twice at the CSE.

use std::collections::HashMap;

use onem2m_primitive::{Operation, ResponseStatusCode as Rsc};
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{serve_demo_cse, serve_receiver};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_integration::{Isolated, free_port, request};
use onem2m_sa_sidecar::demo::{AE_ID, CSE_BASE, CSE_ID, DemoPki, ae_sidecar_config, cse_sidecar_config, loopback};
use serde_json::json;
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_sidecar_restarts_mid_workload_and_nothing_runs_twice() {
    let pki = DemoPki::new();
    let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
    let mut receiver = serve_receiver(loopback().await.unwrap()).await.unwrap();
    // Fixed ports for this test's lifetime, so restarted sidecars are found where they were.
    let (cse_in, cse_out, ae_in, ae_out) = (free_port(), free_port(), free_port(), free_port());
    let cse_config = cse_sidecar_config(&pki, &cse.base(), ae_in);
    let ae_config = ae_sidecar_config(&pki, cse_in, &format!("http://{}", receiver.addr));
    let start_cse = || Isolated::start(&cse_config, Some(cse_in), Some(cse_out));
    let start_ae = || Isolated::start(&ae_config, Some(ae_in), Some(ae_out));
    let (mut cse_side, mut ae_side) = (Some(start_cse()), Some(start_ae()));

    let c = HttpClient::new(&format!("http://{ae_out}"), ClientConfig::default()).unwrap();
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let mut ae = request(Operation::Create, &base, AE_ID, "ae");
    ae.ty = Some(2);
    ae.pc = Some(json!({"m2m:ae": {"rn": "meter", "api": "Nm", "rr": true, "srv": ["3"], "poa": [receiver.poa()]}}));
    assert_eq!(c.clone().oneshot(ae).await.unwrap().rsc, Rsc::CREATED);
    let cnt = format!("{base}/meter/data");
    let mut mk = request(Operation::Create, &format!("{base}/meter"), AE_ID, "cnt");
    mk.ty = Some(3);
    mk.pc = Some(json!({"m2m:cnt": {"rn": "data"}}));
    assert_eq!(c.clone().oneshot(mk).await.unwrap().rsc, Rsc::CREATED);
    let mut sub = request(Operation::Create, &cnt, AE_ID, "sub");
    sub.ty = Some(23);
    sub.pc = Some(json!({"m2m:sub": {"rn": "watch", "nu": [AE_ID]}}));
    assert_eq!(c.clone().oneshot(sub).await.unwrap().rsc, Rsc::CREATED);

    const N: usize = 60;
    let ae_sa = |side: &Option<Isolated>| side.as_ref().unwrap().sidecar().node().outbound().entries()[0].sa_id();
    let cse_sa = |side: &Option<Isolated>| side.as_ref().unwrap().sidecar().node().outbound().entries()[0].sa_id();
    let mut before = (ae_sa(&ae_side), None);
    for i in 0..N {
        match i {
            20 => {
                // The CSE-side sidecar crashes and comes back: every SA it held is gone. The AE
                // side's next request meets "unknown SA" (4112), re-establishes and resends.
                before = (ae_sa(&ae_side), Some(cse_sa(&cse_side)));
                cse_side.take().unwrap().kill();
                cse_side = Some(start_cse());
            }
            40 => {
                // The AE-side sidecar crashes and comes back: it establishes anew; the CSE side's
                // SA for notifications meets 4112 at the restarted AE side and recovers too.
                before = (ae_sa(&ae_side), Some(cse_sa(&cse_side)));
                ae_side.take().unwrap().kill();
                ae_side = Some(start_ae());
            }
            _ => {}
        }
        let mut req = request(Operation::Create, &cnt, AE_ID, &format!("w{i}"));
        req.ty = Some(4);
        req.pc = Some(json!({"m2m:cin": {"rn": format!("c{i}"), "con": i.to_string()}}));
        let rsp = c.clone().oneshot(req).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::CREATED, "request {i}: {:?}", rsp.pc);
        // Every notification arrives (over the reverse SA, also across both restarts).
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), receiver.received.recv())
            .await
            .expect("notification in time")
            .unwrap();
        assert_eq!(n.op, Operation::Notify);
        assert_eq!(n.pc.unwrap()["m2m:sgn"]["nev"]["rep"]["m2m:cin"]["con"], i.to_string());
        if i == 20 {
            // The AE side met 4112 and established a new SA; the restarted CSE side, a new
            // one for notifications.
            assert_ne!(ae_sa(&ae_side), before.0, "the AE host re-established after the CSE side's restart");
            assert_ne!(Some(cse_sa(&cse_side)), before.1);
        }
        if i == 40 {
            assert_ne!(ae_sa(&ae_side), before.0, "the restarted AE host established anew");
            assert_ne!(Some(cse_sa(&cse_side)), before.1, "the CSE side met 4112 and re-established");
        }
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, rqi) in cse.cse.executed() {
        *seen.entry(rqi).or_default() += 1;
    }
    assert!(seen.iter().all(|(_, n)| *n == 1), "executed twice: {seen:?}");
    assert_eq!(seen.len(), 3 + N);
    // Three SAs from the AE host over the test (initial, after each restart).
    let ae_side = ae_side.unwrap();
    assert_eq!(ae_side.sidecar().node().outbound().entries().len(), 1);
    drop(cse_side);
    drop(ae_side);
    receiver.stop();
    cse.shutdown().await;
}
