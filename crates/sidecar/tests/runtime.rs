//! The sidecar runtime in-process: the admin endpoint, graceful shutdown, upstream failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_examples::demo_http::serve_stand_in;
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_sidecar::admin::install_prometheus;
use onem2m_sa_sidecar::admin_client;
use onem2m_sa_sidecar::config::Admin;
use onem2m_sa_sidecar::demo::{AE_ID, CSE_ID, DemoPki, ae_sidecar_config, cse_sidecar_config, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use tokio::sync::Notify;
use tower::{ServiceExt, service_fn};

fn request(rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(Operation::Retrieve, format!("{CSE_ID}/cse-base"), Some(AE_ID.into()), rqi);
    r.rvi = Some("3".into());
    r
}

/// An upstream that answers 2000, after `gate` is notified when `hold` is set.
async fn upstream(hold: bool, gate: Arc<Notify>, calls: Arc<AtomicUsize>) -> String {
    let svc = service_fn(move |req: RequestPrimitive| {
        let (gate, calls) = (gate.clone(), calls.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if hold {
                gate.notified().await;
            }
            Ok::<_, BoxError>(ResponsePrimitive::new(Rsc::OK, &req.rqi))
        }
    });
    serve_stand_in(loopback().await.unwrap(), svc).unwrap()
}

struct Pair {
    cse: Sidecar,
    ae: Sidecar,
    client: HttpClient,
}

async fn pair(upstream: &str, admin: bool) -> Pair {
    let pki = DemoPki::new();
    let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
    let mut cse_cfg = cse_sidecar_config(&pki, upstream, ae_in.local_addr().unwrap());
    let admin_listener = if admin {
        let l = loopback().await.unwrap();
        cse_cfg.admin = Some(Admin { listen: l.local_addr().unwrap() });
        Some(l)
    } else {
        None
    };
    let ae_cfg = ae_sidecar_config(&pki, cse_in.local_addr().unwrap(), upstream);
    let client = HttpClient::new(&format!("http://{}", ae_out.local_addr().unwrap()), ClientConfig::default()).unwrap();
    let metrics = admin.then(install_prometheus);
    let cse = Sidecar::start(
        &cse_cfg,
        Listeners { ingress_http: Some(cse_in), egress_http: None, admin: admin_listener },
        metrics,
    )
    .await
    .unwrap();
    let ae =
        Sidecar::start(&ae_cfg, Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None }, None)
            .await
            .unwrap();
    Pair { cse, ae, client }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_reports_health_metrics_and_sas_and_removes_them() {
    let up = upstream(false, Arc::default(), Arc::default()).await;
    let p = pair(&up, true).await;
    let admin = p.cse.addresses().admin.unwrap();
    assert_eq!(admin_client::request(admin, "GET", "/healthz").await.unwrap().0, 200);
    assert_eq!(admin_client::request(admin, "GET", "/readyz").await.unwrap().0, 200);

    assert_eq!(p.client.clone().oneshot(request("a1")).await.unwrap().rsc, Rsc::OK);
    let (status, metrics) = admin_client::request(admin, "GET", "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("onem2m_sa_opened_total"), "{metrics}");

    let (status, body) = admin_client::request(admin, "GET", "/sa").await.unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["node"], CSE_ID);
    let sas = list["sas"].as_array().unwrap();
    assert_eq!(sas.len(), 1);
    assert_eq!((sas[0]["direction"].as_str(), sas[0]["peer"].as_str()), (Some("inbound"), Some("/id-ae-host")));
    let id = sas[0]["sa_id"].as_str().unwrap().to_owned();
    assert!(admin_client::format_sa_list(&body).unwrap().contains(&id));

    // Removed at the Responder: the AE side's next request meets 4112 and re-establishes.
    assert_eq!(admin_client::request(admin, "DELETE", &format!("/sa/{id}")).await.unwrap().0, 200);
    assert_eq!(admin_client::request(admin, "DELETE", &format!("/sa/{id}")).await.unwrap().0, 404);
    assert_eq!(admin_client::request(admin, "DELETE", "/sa/xyz").await.unwrap().0, 400);
    assert_eq!(p.client.clone().oneshot(request("a2")).await.unwrap().rsc, Rsc::OK);
    let after = p.cse.node().inbound().entries();
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].sa_id().to_string(), id);
    assert_eq!(admin_client::request(admin, "GET", "/nope").await.unwrap().0, 404);
    assert_eq!(admin_client::request(admin, "POST", "/sa").await.unwrap().0, 405);

    // Readiness goes down when the sidecar drains.
    p.ae.shutdown().await;
    p.cse.shutdown().await;
    assert!(admin_client::request(admin, "GET", "/readyz").await.is_err(), "the admin listener is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_request_in_flight() {
    let (gate, calls) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let up = upstream(true, gate.clone(), calls.clone()).await;
    let p = pair(&up, false).await;
    let in_flight = tokio::spawn(p.client.clone().oneshot(request("slow")));
    // Wait until the request is at the upstream.
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let Pair { cse, ae, client } = p;
    let draining = tokio::spawn(async move {
        cse.shutdown().await;
        ae.shutdown().await;
    });
    tokio::task::yield_now().await;
    gate.notify_one();
    let rsp = tokio::time::timeout(Duration::from_secs(10), in_flight).await.unwrap().unwrap().unwrap();
    assert_eq!(rsp.rsc, Rsc::OK, "the request in flight was answered");
    tokio::time::timeout(Duration::from_secs(10), draining).await.unwrap().unwrap();
    // Nothing listens any more.
    let after = client.oneshot(request("late")).await;
    assert!(after.is_err(), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_5103_sealed_back() {
    let dead = loopback().await.unwrap().local_addr().unwrap(); // bound, then closed
    let p = pair(&format!("http://{dead}"), false).await;
    let rsp = p.client.clone().oneshot(request("u1")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::TARGET_NOT_REACHABLE);
    // It came back over the SA: the AE side opened it.
    assert_eq!(p.cse.node().inbound().entries().len(), 1);
    p.ae.shutdown().await;
    p.cse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_points_of_access_that_do_not_decode_or_name_no_peer_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream(false, Arc::default(), Arc::default()).await;
    let p = pair(&up, false).await;
    let egress = p.ae.addresses().egress_http.unwrap();
    let unknown = onem2m_sa_sidecar::poa::PoaMap::new("http://x").map(&"/id-nobody".parse().unwrap(), "http://h/n");
    let unknown_path = onem2m_sa_sidecar::poa::path_of(&unknown).to_owned();
    for (path, rsc) in [("/.sa-poa/!!/x", "4000"), (unknown_path.as_str(), "5103")] {
        let mut s = tokio::net::TcpStream::connect(egress).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-M2M-Origin: /id-in\r\nX-M2M-RI: n1\r\nX-M2M-RVI: 3\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let lower = raw.to_ascii_lowercase();
        assert!(lower.contains(&format!("x-m2m-rsc: {rsc}")), "{path}: {raw}");
        assert!(lower.contains("x-m2m-ri: n1"), "{raw}");
    }
    p.ae.shutdown().await;
    p.cse.shutdown().await;
}
