//! A hyper-based CSE gains SA security by adding two layers.
//!
//! The "CSE" is a tower service of primitives served on the oneM2M HTTP binding (TS-0009, the
//! `onem2m-sa-http` adapter). A client node sends it CRUD requests. The lines marked `SA` are all it
//! takes to secure both sides: every request is sealed, the CSE only ever sees opened,
//! authenticated primitives, and the SA is established on the first request.
//!
//! Run: `cargo run -p onem2m-sa-examples --example secure_cse`

use std::sync::Arc;
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::rng::SystemRng;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa_http::{ClientConfig, HttpClient, PrimitiveService, ServerConfig};
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt, service_fn};

type BoxSvc<Req> = tower::util::BoxCloneSyncService<Req, ResponsePrimitive, BoxError>;

/// The application: a CSE that answers every request, and says who it was from.
fn cse() -> BoxSvc<InboundRequest> {
    BoxSvc::new(service_fn(|req: InboundRequest| async move {
        let rsc = if req.primitive.op == Operation::Create { Rsc::CREATED } else { Rsc::OK };
        let mut rsp = ResponsePrimitive::new(rsc, &req.primitive.rqi);
        let who = req.peer.map(|p| p.peer.to_string()).unwrap_or_else(|| "plaintext".into());
        rsp.pc =
            Some(serde_json::json!({ "m2m:dbg": format!("{:?} {} via {who}", req.primitive.op, req.primitive.to) }));
        Ok::<_, BoxError>(rsp)
    }))
}

/// Serves `svc` on the oneM2M HTTP binding (TS-0009) on 127.0.0.1, a free port.
async fn serve(svc: BoxSvc<RequestPrimitive>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let http = PrimitiveService::new(svc, onem2m_sa_http::Limits::default());
    tokio::spawn(onem2m_sa_http::serve(listener, http, ServerConfig::default(), std::future::pending()));
    addr
}

/// A pooled client of the HTTP binding, sending to `addr`.
fn http_client(addr: std::net::SocketAddr) -> BoxSvc<RequestPrimitive> {
    BoxSvc::new(HttpClient::new(&format!("http://{addr}"), ClientConfig::default()).expect("base"))
}

fn node(pki: &TestPki, id: &str, originators: &[&str]) -> Node {
    let creds = pki.node(id, SignatureAlgorithm::Ed25519, originators, &mut SystemRng);
    Node::new(NodeConfig {
        initiator: initiator_config(creds.clone(), pki.anchors.clone(), &Suite::ALL),
        responder: responder_config(creds, pki.anchors.clone(), &Suite::ALL),
        timing: Timing::default(),
        limits: Limits::default(),
        table: TableConfig::default(),
        rb_timeout: Duration::from_secs(5),
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let pki = Arc::new(TestPki::new(&mut SystemRng, unix)); // demo trust anchor, made on the fly
    let (cse_node, ae_node) = (node(&pki, "/id-in", &["/id-in"]), node(&pki, "/id-asn", &["/id-asn", "C*"]));

    // SA: the CSE side opens, checks and seals; the client side establishes and seals.
    let server = BoxSvc::new(ReceiveSecureLayer::new(cse_node.clone(), PlaintextPolicy::default()).layer(cse()));
    let addr = serve(server).await;
    let client = SendSecureLayer::new(ae_node.clone(), route_by_cse_id(None)).layer(http_client(addr));
    // (end of SA lines)

    for (n, op) in
        [Operation::Create, Operation::Retrieve, Operation::Update, Operation::Delete].into_iter().enumerate()
    {
        let mut req = RequestPrimitive::new(op, "/id-in/cse-base/lamp", Some("CAE01".into()), format!("req-{n}"));
        req.rvi = Some("3".into());
        if op == Operation::Create {
            req.ty = Some(3);
            req.pc = Some(serde_json::json!({ "m2m:cnt": { "rn": "lamp" } }));
        }
        let rsp = client.clone().oneshot(req).await?;
        println!("{:<8?} -> {} {}", op, rsp.rsc, rsp.pc.map(|pc| pc["m2m:dbg"].to_string()).unwrap_or_default());
    }
    let sa = &ae_node.outbound().by_peer(&"/id-in".parse()?)[0];
    println!("requests went over SA {} ({}), established on the first request", sa.sa_id(), sa.suite());
    // Plaintext from a CSE-ID is refused before the CSE sees it.
    let mut plain = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-base", Some("/id-asn".into()), "plain");
    plain.rvi = Some("3".into());
    let rsp = http_client(addr).oneshot(plain).await?;
    println!("plaintext from a CSE-ID -> {}", rsp.rsc);
    if rsp.rsc != Rsc::SECURITY_ASSOCIATION_REQUIRED {
        return Err("plaintext was not refused".into());
    }
    Ok(())
}
