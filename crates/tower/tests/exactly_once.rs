//! At most once, whatever happens to the SA: an attacker on the path who swallows sealed answers
//! and forges unsealed 4112s, SA removal (either side), expiry, key and identifier updates raced
//! against requests in flight, and the hard usage limit. Each request is executed once and its
//! client gets the CSE's answer or a clear error.
//!
//! The races are deterministic: requests are held at a gate in the transport (sealed, not yet
//! opened) or at the CSE (opened, executing) while the SA changes, then released; no sleeps.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::crypto::Suite;
use onem2m_sa::flows::{UpdateOperation, UpdateResult};
use onem2m_sa::manage::{Limits, ResponderEvent, Timing};
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{initiator_config, responder_config};
use onem2m_sa_tower::*;
use tower::{ServiceExt, service_fn};

mod common;
use common::*;

/// A secured request, in either form (JWE in `m2m:seci`, or compact).
fn is_secured(req: &RequestPrimitive) -> bool {
    req.pc.as_ref().is_some_and(|pc| pc.get("m2m:seci").is_some() || onem2m_primitive::compact::is_compact(pc))
}

/// An attacker between the nodes: forwards every message, but for the secured requests `attack`
/// picks it swallows the sealed answer and answers an unsealed 4112 itself.
fn forger(target: Svc, attack: impl Fn(usize) -> bool + Send + Sync + 'static) -> (Svc, Arc<AtomicUsize>) {
    let (secured, attack) = (Arc::new(AtomicUsize::new(0)), Arc::new(attack));
    let count = secured.clone();
    let svc = Svc::new(service_fn(move |req: RequestPrimitive| {
        let (target, count, attack) = (target.clone(), count.clone(), attack.clone());
        async move {
            if !is_secured(&req) {
                return target.oneshot(req).await;
            }
            let n = count.fetch_add(1, Ordering::SeqCst);
            let rqi = req.rqi.clone();
            let answer = target.oneshot(req).await?;
            if attack(n) {
                assert_eq!(answer.rsc, Rsc::OK, "the attacker swallows a sealed answer");
                return Ok(ResponsePrimitive::error(Rsc::ESPRIM_UNKNOWN_KEY_ID, &rqi, "unknown SA"));
            }
            Ok(answer)
        }
    }));
    (svc, secured)
}

fn executions(cse: &Cse) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for rqi in cse.rqis.lock().unwrap().iter() {
        *count.entry(rqi.clone()).or_default() += 1;
    }
    count
}

fn establishments(events: &mut tokio::sync::broadcast::Receiver<ResponderEvent>) -> usize {
    let mut n = 0;
    while let Ok(e) = events.try_recv() {
        n += usize::from(matches!(e, ResponderEvent::SaEstablishmentComplete(_)));
    }
    n
}

fn nodes(w: &World) -> (Node, Node) {
    let (ca, cb) = (creds(w, "/id-asn", &["C*"]), creds(w, "/id-in", &["/id-in"]));
    (node(w, ca, &Suite::ALL, &Suite::ALL), node(w, cb, &Suite::ALL, &Suite::ALL))
}

const OPS: [(Operation, Rsc); 4] = [
    (Operation::Create, Rsc::CREATED),
    (Operation::Update, Rsc::UPDATED),
    (Operation::Delete, Rsc::DELETED),
    (Operation::Notify, Rsc::OK),
];

/// Sends each of [`OPS`] once through `to_b` (request identifiers `<prefix>0`…): the client
/// gets the CSE's own answer each time, whatever happened to the copies on the way.
async fn send_each_op_once(to_b: &Svc, prefix: &str) {
    for (i, (op, expected)) in OPS.into_iter().enumerate() {
        let rqi = format!("{prefix}{i}");
        let rsp = to_b.clone().oneshot(request(op, "/id-in/cb/box", "CAE01", &rqi)).await.unwrap();
        // The CSE's own answer, given to a resend by B's record.
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (expected, rqi.as_str()), "{op:?}: {rsp:?}");
        assert_eq!(rsp.pc.unwrap()["m2m:dbg"], "seen /id-in/cb/box");
    }
}

/// The CSE executed each of the four requests exactly once.
fn assert_each_executed_once(cse: &Cse) {
    let executed = executions(cse);
    assert_eq!(executed.len(), 4);
    assert!(executed.values().all(|n| *n == 1), "each executed once: {executed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_answer_and_a_forged_4112_execute_each_operation_once() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    // Every first copy is attacked (the attacker sees the copies in order: the resend of request
    // n is secured message 2n + 1 and passes).
    let (path, secured) = forger(ingress(&b, &cse, PlaintextPolicy::default()), |n| n % 2 == 0);
    let to_b = sender(&a, path);
    // Each request makes the sender re-establish: no rate limit in this test (the next one
    // shows it).
    a.set_recovery(Recovery { min_interval: Duration::ZERO, ..Recovery::default() });
    send_each_op_once(&to_b, "op").await;
    assert_eq!(secured.load(Ordering::SeqCst), 8, "one resend per request");
    assert_each_executed_once(&cse);
}

/// The record of executed requests knows a copy whatever form it comes in: a first copy in the
/// compact form whose answer is swallowed, resent in the JWE form (and the other way round), gets
/// the first copy's answer and is not executed again (the record digests and keeps the binary
/// form, docs/protocol.md §4.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_in_the_other_form_is_answered_from_the_record() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    let peer: onem2m_sa::credential::NodeId = "/id-in".parse().unwrap();
    // What crosses to B: whether each secured request is in the compact form.
    let forms = Arc::new(Mutex::new(Vec::new()));
    let (seen, inner) = (forms.clone(), ingress(&b, &cse, PlaintextPolicy::default()));
    let recorder = Svc::new(service_fn(move |req: RequestPrimitive| {
        if is_secured(&req) {
            let compact = req.pc.as_ref().is_some_and(onem2m_primitive::compact::is_compact);
            seen.lock().unwrap().push(compact);
        }
        inner.clone().oneshot(req)
    }));
    // Every first copy is attacked, and the sender is switched to the other form for its resend.
    let (flip, p) = (a.clone(), peer.clone());
    let (path, _) = forger(recorder, move |n| {
        if n % 2 == 1 {
            return false;
        }
        let other = if flip.secured_form(&p) == SecuredForm::Jwe { SecuredForm::Auto } else { SecuredForm::Jwe };
        flip.set_secured_form(p.clone(), other);
        true
    });
    let to_b = sender(&a, path);
    a.set_recovery(Recovery { min_interval: Duration::ZERO, ..Recovery::default() });
    send_each_op_once(&to_b, "x").await;
    // Compact then JWE, JWE then compact, and so on: each resend in the other form.
    let forms = forms.lock().unwrap().clone();
    assert_eq!(forms, [true, false, false, true, true, false, false, true], "forms on the wire");
    assert_each_executed_once(&cse);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forger_answering_4112_to_everything_gets_one_establishment_and_no_second_execution() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    let mut events = b.responder_events();
    let (path, secured) = forger(ingress(&b, &cse, PlaintextPolicy::default()), |_| true);
    let to_b = sender(&a, path);
    for n in 0..10 {
        let rsp =
            to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", &format!("f{n}"))).await.unwrap();
        // A clear error (the unauthenticated code), never a success and never a second execution.
        assert_eq!(rsp.rsc, Rsc::ESPRIM_UNKNOWN_KEY_ID, "{rsp:?}");
    }
    // The first request re-established and resent once; every later one within the interval
    // was answered with the error at once: one forced establishment, not one per request.
    assert_eq!(establishments(&mut events), 2, "the first SA and one re-establishment");
    assert_eq!(secured.load(Ordering::SeqCst), 11);
    let executed = executions(&cse);
    assert_eq!(executed.len(), 10);
    assert!(executed.values().all(|n| *n == 1), "{executed:?}");
    assert_eq!(b.executed_len(), 10);
}

/// A request whose digest differs from the first copy under the same originator and rqi is
/// refused, sealed, and not executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_request_identifier_for_another_request_is_refused() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    let to_b = sender(&a, ingress(&b, &cse, PlaintextPolicy::default()));
    let rsp = to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", "same")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED);
    // The same request again: the kept answer, not a second execution.
    let rsp = to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", "same")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED);
    let rsp = to_b.clone().oneshot(request(Operation::Delete, "/id-in/cb", "CAE01", "same")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::CONFLICT, "{rsp:?}");
    // Another originator may use the same rqi.
    let rsp = to_b.clone().oneshot(request(Operation::Delete, "/id-in/cb", "CAE02", "same")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::DELETED);
    // RETRIEVE is safe to repeat: not recorded, each executed (a poll with a fixed rqi).
    for _ in 0..2 {
        let rsp = to_b.clone().oneshot(request(Operation::Retrieve, "/id-in/cb", "CAE01", "poll")).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK);
    }
    assert_eq!(cse.seen.load(Ordering::SeqCst), 4);
}

/// What happens to the SA while requests are held.
#[derive(Debug, Clone, Copy)]
enum Race {
    /// The Responder removes its side locally (admin removal).
    RemoveAtResponder,
    /// The Initiator runs Remove SA.
    RemoveAtInitiator,
    /// The Responder's table expires the SA (the sweep).
    Expire,
    /// Update SA (keys).
    Keys,
    /// Update SA (identifier).
    Identifier,
}

/// A transport with a gate in front of the peer's ingress for secured requests, when closed.
#[derive(Clone)]
struct Gate {
    closed: Arc<AtomicBool>,
    permits: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Gate {
    fn new() -> Self {
        Self {
            closed: Arc::new(AtomicBool::new(false)),
            permits: Arc::new(tokio::sync::Semaphore::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn wrap(&self, target: Svc) -> Svc {
        let gate = self.clone();
        Svc::new(service_fn(move |req: RequestPrimitive| {
            let (gate, target) = (gate.clone(), target.clone());
            async move {
                if is_secured(&req) && gate.closed.load(Ordering::SeqCst) {
                    gate.waiting.fetch_add(1, Ordering::SeqCst);
                    gate.permits.acquire().await.unwrap().forget();
                }
                target.oneshot(req).await
            }
        }))
    }
}

async fn until(what: impl Fn() -> bool) {
    while !what() {
        tokio::task::yield_now().await;
    }
}

/// Runs [`race_for`] with a bound, so that a request that never completes fails the test
/// instead of hanging it.
/// (A second execution waits at the CSE's gate for a permit that never comes.)
async fn race(kind: Race, iterations: usize) {
    let cse_gate = Arc::new(tokio::sync::Semaphore::new(0));
    let cse = Cse { gate: Some(cse_gate.clone()), ..Cse::default() };
    let bounded = tokio::time::timeout(Duration::from_secs(60), race_for(kind, iterations, &cse, cse_gate)).await;
    let twice: Vec<_> = executions(&cse).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "{kind:?}: executed more than once: {twice:?}");
    assert!(bounded.is_ok(), "{kind:?}: a request never completed");
}

async fn race_for(kind: Race, iterations: usize, cse: &Cse, cse_gate: Arc<tokio::sync::Semaphore>) {
    let w = world();
    let (a, b) = nodes(&w);
    // Genuine losses in a row: every one may re-establish at once.
    a.set_recovery(Recovery { min_interval: Duration::ZERO, ..Recovery::default() });
    let ingress_b = ingress(&b, cse, PlaintextPolicy::default());
    let gate = Gate::new();
    let to_b = sender(&a, gate.wrap(ingress_b.clone()));
    let peer = "/id-in".parse().unwrap();
    cse_gate.add_permits(1);
    let rsp = to_b.clone().oneshot(request(Operation::Retrieve, "/id-in/cb", "CAE01", "warm")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    let mut expected = 1;
    for i in 0..iterations {
        // Request `x` is opened and executing at the CSE; request `y` is sealed and held on
        // the way (released after the SA changed).
        let x = tokio::spawn(to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", &format!("x{i}"))));
        until(|| cse.seen.load(Ordering::SeqCst) > expected).await;
        gate.closed.store(true, Ordering::SeqCst);
        let y = tokio::spawn(to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", &format!("y{i}"))));
        until(|| gate.waiting.load(Ordering::SeqCst) == i + 1).await;
        gate.closed.store(false, Ordering::SeqCst);
        let entry = a.outbound().by_peer(&peer)[0].clone();
        let sa_id = entry.sa_id();
        match kind {
            Race::RemoveAtResponder => assert_eq!(b.remove_inbound(sa_id).0.result, UpdateResult::Accepted),
            Race::RemoveAtInitiator => {
                assert_eq!(a.remove(sa_id, ingress_b.clone()).await.0.result, UpdateResult::Accepted);
            }
            Race::Expire => {
                let far = onem2m_sa::Now::new(u64::MAX / 2, u64::MAX);
                assert_eq!(b.inbound().sweep(far), vec![sa_id]);
            }
            Race::Keys => {
                assert_eq!(
                    a.update(sa_id, UpdateOperation::Keys, ingress_b.clone()).await.result,
                    UpdateResult::Accepted
                );
            }
            Race::Identifier => {
                let confirm = a.update(sa_id, UpdateOperation::Identifier, ingress_b.clone()).await;
                assert_eq!(confirm.result, UpdateResult::Accepted);
            }
        }
        gate.permits.add_permits(1);
        cse_gate.add_permits(2);
        for (name, call) in [("x", x), ("y", y)] {
            let rsp = call.await.unwrap().unwrap();
            assert_eq!(rsp.rsc, Rsc::CREATED, "{kind:?} iteration {i}, request {name}: {rsp:?}");
        }
        expected += 2;
    }
    assert_eq!(executions(cse).len(), 2 * iterations + 1);
}

const ITERATIONS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responder_removal_raced_against_requests_in_flight() {
    race(Race::RemoveAtResponder, ITERATIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiator_removal_raced_against_requests_in_flight() {
    race(Race::RemoveAtInitiator, ITERATIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_raced_against_requests_in_flight() {
    race(Race::Expire, ITERATIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_update_raced_against_requests_in_flight() {
    race(Race::Keys, ITERATIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifier_update_raced_against_requests_in_flight() {
    race(Race::Identifier, ITERATIONS).await;
}

fn limited_node(w: &World, id: &str, orig: &[&str], hard_messages: u64) -> Node {
    let limits = onem2m_sa::secure::UsageLimits {
        soft_messages: u64::MAX,
        hard_messages,
        soft_bytes: u64::MAX,
        hard_bytes: u64::MAX,
    };
    let c = creds(w, id, orig);
    Node::new(NodeConfig {
        initiator: initiator_config(c.clone(), w.anchors.clone(), &Suite::ALL),
        responder: responder_config(c, w.anchors.clone(), &Suite::ALL),
        timing: Timing::default(),
        limits: Limits::default(),
        table: TableConfig { limits, ..TableConfig::default() },
        // Long: a loaded machine must not turn a slow answer into a retransmission (the
        // retransmitted last message of a key update finds the Responder already committed).
        rb_timeout: Duration::from_secs(60),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sa_at_its_hard_usage_limit_is_replaced_not_wedged() {
    let w = world();
    let a = limited_node(&w, "/id-asn", &["C*"], 5);
    let b = limited_node(&w, "/id-in", &["/id-in"], 5);
    let cse = Cse::default();
    let mut events = b.responder_events();
    let to_b = sender(&a, ingress(&b, &cse, PlaintextPolicy::default()));
    for n in 0..12 {
        let rsp =
            to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", &format!("h{n}"))).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::CREATED, "request {n}: {rsp:?}");
    }
    // Five messages per key: three SAs for twelve requests.
    assert_eq!(establishments(&mut events), 3);
    assert_eq!(cse.seen.load(Ordering::SeqCst), 12);
    // The retired SAs are removed at the Responder too (in the background).
    until(|| b.inbound().len() == 1).await;
}

/// After Remove SA, an update that was in flight on the SA stops instead of resending its
/// (now unanswerable) envelope until its attempts run out.
#[tokio::test(start_paused = true)]
async fn an_update_in_flight_stops_when_the_sa_is_removed() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    let ingress_b = ingress(&b, &cse, PlaintextPolicy::default());
    let to_b = sender(&a, ingress_b.clone());
    assert_eq!(to_b.oneshot(request(Operation::Retrieve, "/id-in/cb", "CAE01", "r")).await.unwrap().rsc, Rsc::OK);
    let sa_id = a.outbound().entries()[0].sa_id();
    // A transport that holds the first update message and counts every copy of it.
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    let copies = Arc::new(Mutex::new(Vec::<String>::new()));
    let (h, c, target) = (hold.clone(), copies.clone(), ingress_b.clone());
    let held = Svc::new(service_fn(move |req: RequestPrimitive| {
        let (h, c, target) = (h.clone(), c.clone(), target.clone());
        async move {
            let first = {
                let mut c = c.lock().unwrap();
                c.push(req.rqi.clone());
                c.len() == 1
            };
            if first {
                h.acquire().await.unwrap().forget();
            }
            target.oneshot(req).await
        }
    }));
    let updater = a.clone();
    let update = tokio::spawn(async move { updater.update(sa_id, UpdateOperation::Keys, held).await });
    until(|| copies.lock().unwrap().len() == 1).await;
    assert_eq!(a.remove(sa_id, ingress_b).await.0.result, UpdateResult::Accepted);
    hold.add_permits(1);
    assert_eq!(update.await.unwrap().result, UpdateResult::Rejected);
    let copies = copies.lock().unwrap().clone();
    assert_eq!(copies.len(), 1, "no resend of an update whose SA was removed: {copies:?}");
    let unique: HashSet<_> = copies.iter().collect();
    assert_eq!(unique.len(), 1);
}

/// A request sealed under epoch n and held on the way while two key updates pass meets epoch
/// n + 2, whose key phase bit is the same: the peer cannot open it (4115). The sender sees that
/// its epoch was overtaken and resends once under the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_overtaken_by_two_key_updates_is_resent_once() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    let ingress_b = ingress(&b, &cse, PlaintextPolicy::default());
    let gate = Gate::new();
    let to_b = sender(&a, gate.wrap(ingress_b.clone()));
    assert_eq!(
        to_b.clone().oneshot(request(Operation::Retrieve, "/id-in/cb", "CAE01", "w")).await.unwrap().rsc,
        Rsc::OK
    );
    let entry = a.outbound().entries()[0].clone();
    gate.closed.store(true, Ordering::SeqCst);
    let held = tokio::spawn(to_b.clone().oneshot(request(Operation::Create, "/id-in/cb", "CAE01", "held")));
    until(|| gate.waiting.load(Ordering::SeqCst) == 1).await;
    gate.closed.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        let confirm = a.update(entry.sa_id(), UpdateOperation::Keys, ingress_b.clone()).await;
        assert_eq!(confirm.result, UpdateResult::Accepted);
    }
    assert_eq!(entry.current_epoch().unwrap().number, 2);
    gate.permits.add_permits(1);
    let rsp = held.await.unwrap().unwrap();
    assert_eq!(rsp.rsc, Rsc::CREATED, "{rsp:?}");
    assert_eq!(executions(&cse).get("held"), Some(&1));
}

/// The attacker answers 4112 at once, while the first copy is still executing at the CSE: the
/// resend waits for the first copy's answer instead of executing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_arriving_while_the_first_copy_executes_waits_for_its_answer() {
    use tower::Service;
    let w = world();
    let (a, b) = nodes(&w);
    let cse_gate = Arc::new(tokio::sync::Semaphore::new(0));
    let cse = Cse { gate: Some(cse_gate.clone()), ..Cse::default() };
    let ingress_b = ingress(&b, &cse, PlaintextPolicy::default());
    // Counts secured requests once B's ReceiveSecure has taken them (admission is in `call`).
    let admitted = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(AtomicBool::new(true));
    let (count, once) = (admitted.clone(), first.clone());
    let path = Svc::new(service_fn(move |req: RequestPrimitive| {
        let (mut target, count, once) = (ingress_b.clone(), count.clone(), once.clone());
        async move {
            target.ready().await?;
            let secured = is_secured(&req);
            let rqi = req.rqi.clone();
            let answer = target.call(req);
            if !secured {
                return answer.await;
            }
            count.fetch_add(1, Ordering::SeqCst);
            if once.swap(false, Ordering::SeqCst) {
                tokio::spawn(answer);
                return Ok(ResponsePrimitive::error(Rsc::ESPRIM_UNKNOWN_KEY_ID, &rqi, "unknown SA"));
            }
            answer.await
        }
    }));
    let to_b = sender(&a, path);
    let call = tokio::spawn(to_b.oneshot(request(Operation::Create, "/id-in/cb", "CAE01", "slow")));
    // The first copy is held at the CSE and the resend admitted: it is waiting.
    until(|| admitted.load(Ordering::SeqCst) == 2 && cse.seen.load(Ordering::SeqCst) == 1).await;
    cse_gate.add_permits(1);
    let rsp = call.await.unwrap().unwrap();
    assert_eq!((rsp.rsc, rsp.pc.unwrap()["m2m:dbg"].as_str()), (Rsc::CREATED, Some("seen /id-in/cb")));
    assert_eq!(executions(&cse).get("slow"), Some(&1));
}

/// An attacker who withholds the answer past the resend window before forging 4112 gets no
/// resend: the client is told the outcome is unknown (4008), and the request ran once.
#[tokio::test(start_paused = true)]
async fn no_resend_after_the_resend_window() {
    let w = world();
    let (a, b) = nodes(&w);
    let cse = Cse::default();
    let target = ingress(&b, &cse, PlaintextPolicy::default());
    let late = Svc::new(service_fn(move |req: RequestPrimitive| {
        let target = target.clone();
        async move {
            if !is_secured(&req) {
                return target.oneshot(req).await;
            }
            let rqi = req.rqi.clone();
            target.oneshot(req).await?;
            // The paused clock jumps: the forged answer comes after the window.
            tokio::time::sleep(Recovery::default().resend_window + Duration::from_secs(1)).await;
            Ok(ResponsePrimitive::error(Rsc::ESPRIM_UNKNOWN_KEY_ID, &rqi, "unknown SA"))
        }
    }));
    let rsp = sender(&a, late).oneshot(request(Operation::Create, "/id-in/cb", "CAE01", "late")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::REQUEST_TIMEOUT, "{rsp:?}");
    assert_eq!(executions(&cse).get("late"), Some(&1));
}
