//! A hyper-based CSE gains SA security by adding two layers.
//!
//! The "CSE" is a tower service of primitives behind a plain hyper HTTP/1.1 server that carries
//! one JSON primitive per POST body (a stand-in transport, not the TS-0009 binding: that is the
//! HTTP adapter's job). A client node sends it CRUD requests. The lines marked `SA` are all it
//! takes to secure both sides: every request is sealed, the CSE only ever sees opened,
//! authenticated primitives, and the SA is established on the first request.
//!
//! Run: `cargo run -p onem2m-sa-examples --example secure_cse`

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::rng::SystemRng;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
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

/// Serves `svc` over HTTP/1.1 on 127.0.0.1 (a free port), one JSON primitive per POST.
async fn serve(svc: BoxSvc<RequestPrimitive>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let svc = svc.clone();
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |http: hyper::Request<hyper::body::Incoming>| {
                    let svc = svc.clone();
                    async move {
                        let body = http.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let rsp = match RequestPrimitive::from_json_slice(&body) {
                            Ok(req) => svc.oneshot(req).await.unwrap_or_else(|e| {
                                ResponsePrimitive::error(Rsc::INTERNAL_SERVER_ERROR, "", e.to_string())
                            }),
                            Err(e) => ResponsePrimitive::error(e.rsc(), "", e.to_string()),
                        };
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            rsp.to_json_vec().unwrap_or_default(),
                        ))))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), handler).await;
            });
        }
    });
    addr
}

/// A client transport that POSTs each primitive to `addr`.
fn http_client(addr: std::net::SocketAddr) -> BoxSvc<RequestPrimitive> {
    BoxSvc::new(service_fn(move |req: RequestPrimitive| async move {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let body = Full::new(Bytes::from(req.to_json_vec()?));
        let http = hyper::Request::post("/").header("content-type", "application/json").body(body)?;
        let bytes = sender.send_request(http).await?.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>(ResponsePrimitive::from_json_slice(&bytes)?)
    }))
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
