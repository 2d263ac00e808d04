//! The form of secured primitives between two nodes (docs/protocol.md §4.3, Carriage): compact
//! when both negotiated `compact`, JWE otherwise or when configured; answers in the form of the
//! request; a receiver that does not take the compact form answers 4015; peers of the previous
//! version (no capabilities) keep the JWE form.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa::Capabilities;
use onem2m_sa::crypto::Suite;
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{initiator_config, responder_config};
use onem2m_sa_tower::*;
use serde_json::Value;
use tower::{ServiceExt, service_fn};

mod common;
use common::*;

/// A node whose Initiator offers and whose Responder supports `caps` (`NONE`: a node of the
/// previous version, as far as the other side can tell).
fn node_with(w: &World, id: &str, originators: &[&str], caps: Capabilities) -> Node {
    let creds = creds(w, id, originators);
    let mut initiator = initiator_config(creds.clone(), w.anchors.clone(), &Suite::ALL);
    initiator.capabilities = caps;
    let mut responder = responder_config(creds, w.anchors.clone(), &Suite::ALL);
    responder.capabilities = caps;
    Node::new(NodeConfig {
        initiator,
        responder,
        timing: Timing::default(),
        limits: Limits::default(),
        table: TableConfig::default(),
        rb_timeout: Duration::from_secs(60),
    })
}

type Log = Arc<Mutex<Vec<(Value, ResponsePrimitive)>>>;

/// The transport between the nodes, recording the content of every outer request that carries a
/// secured primitive, with its answer.
fn tapped(to: Svc, log: Log) -> Svc {
    Svc::new(service_fn(move |req: RequestPrimitive| {
        let (to, log) = (to.clone(), log.clone());
        async move {
            let pc = req.pc.clone().unwrap_or_default();
            let rsp = to.oneshot(req).await?;
            if pc.get("sa:msg").is_none() {
                log.lock().unwrap().push((pc, rsp.clone()));
            }
            Ok::<_, BoxError>(rsp)
        }
    }))
}

fn form_of(pc: &Value) -> &'static str {
    if compact::is_compact(pc) {
        "compact"
    } else if pc.get("m2m:seci").is_some() {
        "jwe"
    } else {
        "plain"
    }
}

struct Run {
    sender: Node,
    receiver: Node,
    cse: Cse,
    send: Svc,
    log: Log,
}

fn run(sender_caps: Capabilities, receiver_caps: Capabilities) -> Run {
    let w = world();
    let sender = node_with(&w, "/id-asn", &["/id-asn", "C*"], sender_caps);
    let receiver = node_with(&w, "/id-in", &["/id-in"], receiver_caps);
    let cse = Cse::default();
    let log = Log::default();
    let send = common::sender(&sender, tapped(ingress(&receiver, &cse, PlaintextPolicy::default()), log.clone()));
    Run { sender, receiver, cse, send, log }
}

impl Run {
    /// Sends one request of each kind and returns the (request, answer) forms on the wire.
    async fn crud(&self, tag: &str) -> Vec<(&'static str, &'static str)> {
        self.log.lock().unwrap().clear();
        for (i, op) in
            [Operation::Create, Operation::Retrieve, Operation::Update, Operation::Delete].into_iter().enumerate()
        {
            let rqi = format!("{tag}{i}");
            let rsp = self.send.clone().oneshot(request(op, "/id-in/cb/box", "CAE01", &rqi)).await.unwrap();
            let expected = [Rsc::CREATED, Rsc::OK, Rsc::UPDATED, Rsc::DELETED][i];
            assert_eq!((rsp.rsc, rsp.rqi.as_str()), (expected, rqi.as_str()), "{tag}: {:?}", rsp.pc);
            assert_eq!(rsp.pc.unwrap()["m2m:dbg"], "seen /id-in/cb/box");
        }
        let log = self.log.lock().unwrap();
        log.iter().map(|(pc, rsp)| (form_of(pc), form_of(rsp.pc.as_ref().unwrap_or(&Value::Null)))).collect()
    }

    fn negotiated(&self) -> (Capabilities, Capabilities) {
        let peer = "/id-in".parse().unwrap();
        let out = self.sender.outbound().live_by_peer(&peer).expect("an SA").capabilities();
        let inb = self.receiver.inbound().entries()[0].capabilities();
        (out, inb)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_between_nodes_that_both_offer_it_and_answers_in_kind() {
    let r = run(Capabilities::ALL, Capabilities::ALL);
    assert_eq!(r.crud("c").await, vec![("compact", "compact"); 4]);
    assert_eq!(r.negotiated(), (Capabilities::ALL, Capabilities::ALL));
    assert_eq!(r.cse.seen.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwe_with_a_receiver_that_does_not_offer_compact() {
    let r = run(Capabilities::ALL, Capabilities::KEM_UPDATE);
    assert_eq!(r.crud("j").await, vec![("jwe", "jwe"); 4]);
    assert_eq!(r.negotiated(), (Capabilities::KEM_UPDATE, Capabilities::KEM_UPDATE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_the_previous_version_keep_the_jwe_form() {
    // An Initiator that offers nothing (as the previous version, whose SaInit has no `cap`).
    let r = run(Capabilities::NONE, Capabilities::ALL);
    assert_eq!(r.crud("o").await, vec![("jwe", "jwe"); 4]);
    assert_eq!(r.negotiated(), (Capabilities::NONE, Capabilities::NONE));
    // A Responder that supports nothing answers an offer with `cap: []`.
    let r = run(Capabilities::ALL, Capabilities::NONE);
    assert_eq!(r.crud("n").await, vec![("jwe", "jwe"); 4]);
    assert_eq!(r.negotiated(), (Capabilities::NONE, Capabilities::NONE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_takes_both_forms_on_one_sa() {
    let r = run(Capabilities::ALL, Capabilities::ALL);
    let peer: onem2m_sa::credential::NodeId = "/id-in".parse().unwrap();
    assert_eq!(r.sender.secured_form(&peer), SecuredForm::Auto);
    assert_eq!(r.crud("a").await, vec![("compact", "compact"); 4]);
    r.sender.set_secured_form(peer.clone(), SecuredForm::Jwe);
    assert_eq!(r.crud("b").await, vec![("jwe", "jwe"); 4]);
    r.sender.set_secured_form(peer, SecuredForm::Auto);
    assert_eq!(r.crud("c").await, vec![("compact", "compact"); 4]);
    assert_eq!(r.sender.outbound().len(), 1, "one SA throughout");
    assert_eq!(r.cse.seen.load(Ordering::SeqCst), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_forced_to_a_node_that_does_not_take_it_is_refused_with_4015() {
    let r = run(Capabilities::ALL, Capabilities::NONE);
    let peer = "/id-in".parse().unwrap();
    r.sender.set_secured_form(peer, SecuredForm::Compact);
    let rsp = r.send.clone().oneshot(request(Operation::Retrieve, "/id-in/cb", "CAE01", "f1")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.cse.seen.load(Ordering::SeqCst), 0, "nothing reached the CSE");
    let log = r.log.lock().unwrap();
    assert_eq!(form_of(&log[0].0), "compact");
    assert_eq!(log[0].1.rsc, Rsc::UNSUPPORTED_MEDIA_TYPE);
}

#[test]
fn secured_form_names() {
    for form in [SecuredForm::Auto, SecuredForm::Jwe, SecuredForm::Compact] {
        assert_eq!(form.as_str().parse::<SecuredForm>().unwrap(), form);
    }
    assert!("JWE".parse::<SecuredForm>().is_err());
    let compact_too = Capabilities::ALL;
    assert_eq!(SecuredForm::Auto.encoding(compact_too), onem2m_sa::secure::Encoding::Compact);
    assert_eq!(SecuredForm::Auto.encoding(Capabilities::KEM_UPDATE), onem2m_sa::secure::Encoding::Jwe);
    assert_eq!(SecuredForm::Compact.encoding(Capabilities::NONE), onem2m_sa::secure::Encoding::Compact);
    assert_eq!(SecuredForm::Jwe.encoding(compact_too), onem2m_sa::secure::Encoding::Jwe);
}
