//! What the tower tests share: two nodes of a test PKI, a counting CSE stand-in, in-memory
//! transports.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::{Credentials, TrustAnchors};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::rng::SystemRng;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa_tower::*;
use tower::{Layer, ServiceExt, service_fn};

pub type Svc = tower::util::BoxCloneSyncService<RequestPrimitive, ResponsePrimitive, BoxError>;

/// A CSE stand-in that counts what reaches it and remembers the authenticated peers.
#[derive(Clone, Default)]
pub struct Cse {
    /// When set, requests wait here before they are executed.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    pub seen: Arc<AtomicUsize>,
    pub peers: Arc<Mutex<Vec<Option<Authenticated>>>>,
    pub rqis: Arc<Mutex<Vec<String>>>,
}

impl Cse {
    pub fn service(&self) -> tower::util::BoxCloneSyncService<InboundRequest, ResponsePrimitive, BoxError> {
        let me = self.clone();
        tower::util::BoxCloneSyncService::new(service_fn(move |req: InboundRequest| {
            let me = me.clone();
            async move {
                // Counted as executed when it arrives (a gate holds it in the middle).
                me.peers.lock().unwrap().push(req.peer.clone());
                me.rqis.lock().unwrap().push(req.primitive.rqi.clone());
                me.seen.fetch_add(1, Ordering::SeqCst);
                if let Some(gate) = &me.gate {
                    gate.acquire().await.unwrap().forget();
                }
                let rsc = match req.primitive.op {
                    Operation::Create => Rsc::CREATED,
                    Operation::Delete => Rsc::DELETED,
                    Operation::Update => Rsc::UPDATED,
                    _ => Rsc::OK,
                };
                let mut rsp = ResponsePrimitive::new(rsc, &req.primitive.rqi);
                rsp.pc = Some(serde_json::json!({"m2m:dbg": format!("seen {}", req.primitive.to)}));
                Ok::<_, BoxError>(rsp)
            }
        }))
    }
}

pub struct World {
    pub pki: TestPki,
    pub anchors: Arc<TrustAnchors>,
}

pub fn world() -> World {
    let pki = TestPki::new(&mut SystemRng, now_unix());
    let anchors = pki.anchors.clone();
    World { pki, anchors }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn creds(w: &World, id: &str, originators: &[&str]) -> Arc<Credentials> {
    w.pki.node(id, SignatureAlgorithm::Ed25519, originators, &mut SystemRng)
}

pub fn node(w: &World, creds: Arc<Credentials>, offer: &[Suite], supported: &[Suite]) -> Node {
    Node::new(node_config(w, creds, offer, supported))
}

/// The configuration [`node`] builds its node with.
pub fn node_config(w: &World, creds: Arc<Credentials>, offer: &[Suite], supported: &[Suite]) -> NodeConfig {
    NodeConfig {
        initiator: initiator_config(creds.clone(), w.anchors.clone(), offer),
        responder: responder_config(creds, w.anchors.clone(), supported),
        // Tests update keys right after establishing: no minimum interval.
        timing: Timing { min_key_update_interval_ms: 0, ..Timing::default() },
        limits: Limits::default(),
        table: TableConfig::default(),
        // Long: a loaded machine must not turn a slow answer into a retransmission (the
        // retransmitted last message of a key update finds the Responder already committed).
        rb_timeout: Duration::from_secs(60),
    }
}

/// The receiving side of `node` in front of `cse`, as a transport other nodes can call.
pub fn ingress(node: &Node, cse: &Cse, policy: PlaintextPolicy) -> Svc {
    Svc::new(ReceiveSecureLayer::new(node.clone(), policy).layer(cse.service()))
}

/// A transport that forwards to whatever service the slot holds (so a peer can be restarted).
pub fn link(slot: Arc<Mutex<Svc>>) -> Svc {
    Svc::new(service_fn(move |req: RequestPrimitive| {
        let svc = slot.lock().unwrap().clone();
        async move { svc.oneshot(req).await }
    }))
}

pub fn sender(node: &Node, transport: Svc) -> Svc {
    Svc::new(SendSecureLayer::new(node.clone(), route_by_cse_id(None)).layer(transport))
}

pub fn request(op: Operation, to: &str, fr: &str, rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, to, Some(fr.to_owned()), rqi);
    r.rvi = Some("3".into());
    if op == Operation::Create {
        r.ty = Some(3);
        r.pc = Some(serde_json::json!({"m2m:cnt": {"rn": "box"}}));
    }
    r
}

pub async fn futures_join_all<F: std::future::Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Yields until `what` holds. Bounded (two minutes, far beyond any healthy run) so that a request
/// that never arrives fails the test with `why` instead of spinning until CI's time runs out.
pub async fn wait_until(what: impl Fn() -> bool, why: &str) {
    let spin = async {
        while !what() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(120), spin).await.is_err() {
        panic!("gave up waiting: {why}");
    }
}
