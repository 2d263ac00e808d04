//! The Responder's and the Initiator's establishment steps split into admit, compute (the
//! public-key work, which a runtime runs without holding the SAM) and commit: the races a
//! runtime creates by computing outside the lock end as a sequential SAM would have ended them.

use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::AcceptAll;
use onem2m_sa::flows::{EstablishResult, InitiateSaRequest, RejectionCause};
use onem2m_sa::manage::{
    Admitted, DropReason, InitiatorEvent, InitiatorSam, Limits, ResponderEvent, ResponderOutput, ResponderSam,
    ResponderWork, Timing,
};
use onem2m_sa::message::Message;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

struct World {
    initiators: Vec<InitiatorSam>,
    responder: ResponderSam,
    rng: SeededRng,
}

/// Two Initiators and a Responder with these limits (cookies off unless the limits say so).
fn world(limits: Limits) -> World {
    let mut rng = SeededRng::new([9; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let initiators = ["/id-asn1", "/id-asn2"]
        .iter()
        .map(|id| {
            let c = pki.node(id, SignatureAlgorithm::Ed25519, &["C*"], &mut rng);
            InitiatorSam::new(initiator_config(c, pki.anchors.clone(), &[Suite::ALL[0]]), Timing::default())
        })
        .collect();
    let responder = ResponderSam::new(responder_config(r, pki.anchors.clone(), &Suite::ALL), Timing::default(), limits);
    World { initiators, responder, rng }
}

fn no_cookies() -> Limits {
    Limits { cookie_threshold: usize::MAX, init_rate_per_source: u32::MAX, ..Limits::default() }
}

/// Initiator `i`'s SaInit: (exchange id, bytes).
fn sa_init(w: &mut World, i: usize) -> (u64, Vec<u8>) {
    let responder = "/id-in".parse().unwrap();
    let initiator = w.initiators[i].config().credentials.node_id.clone();
    let ex = w.initiators[i].initiate(&InitiateSaRequest { initiator, responder }, T0, &mut w.rng).unwrap();
    (ex.id, ex.bytes)
}

fn admit(w: &mut World, source: &[u8], bytes: &[u8], now: Now) -> Admitted {
    w.responder.admit(source, bytes, now, &mut w.rng)
}

fn work(a: Admitted) -> ResponderWork {
    match a {
        Admitted::Work(work) => work,
        Admitted::Done(out) => panic!("handled at once: {out:?}"),
    }
}

fn done(a: Admitted) -> ResponderOutput {
    match a {
        Admitted::Done(out) => out,
        Admitted::Work(work) => panic!("work to do: {work:?}"),
    }
}

fn compute_and_commit(w: &mut World, work: ResponderWork, now: Now) -> ResponderOutput {
    let computed = work.compute(now, &mut w.rng, &mut AcceptAll);
    w.responder.commit(computed, now)
}

fn init_reply_cause(out: &ResponderOutput) -> (EstablishResult, Option<RejectionCause>) {
    match Message::decode(out.reply.as_deref().expect("a reply")).unwrap() {
        Message::InitReply(r) => (r.parameters.result, r.parameters.cause),
        other => panic!("{other:?}"),
    }
}

/// Runs an SaInit through the Responder and the reply through Initiator `i`: the SaAuth bytes.
fn sa_auth(w: &mut World, i: usize, source: &[u8]) -> (u64, Vec<u8>) {
    let (id, m1) = sa_init(w, i);
    let out = w.responder.handle_from(source, &m1, T0, &mut w.rng, &mut AcceptAll);
    let events = w.initiators[i].handle_response(id, &out.reply.unwrap(), T0, &mut w.rng);
    match events.into_iter().next() {
        Some(InitiatorEvent::Transmit(ex)) => (id, ex.bytes),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_sa_inits_racing_for_the_last_half_open_slot_take_it_once() {
    let mut w = world(Limits { max_half_open: 1, ..no_cookies() });
    let (_, a) = sa_init(&mut w, 0);
    let (_, b) = sa_init(&mut w, 1);
    // A is admitted; while its public-key work runs, B finds the slot taken.
    let a_work = work(admit(&mut w, b"a", &a, T0));
    assert_eq!(w.responder.half_open(), 1);
    let b_out = done(admit(&mut w, b"b", &b, T0));
    assert_eq!(init_reply_cause(&b_out), (EstablishResult::Failure, Some(RejectionCause::Busy)));
    let a_out = compute_and_commit(&mut w, a_work, T0);
    assert_eq!(init_reply_cause(&a_out).0, EstablishResult::Success);
    assert_eq!(w.responder.half_open(), 1);
}

#[test]
fn two_sa_inits_racing_for_the_last_sa_take_it_once() {
    let mut w = world(Limits { max_sas: 1, ..no_cookies() });
    let (_, a) = sa_init(&mut w, 0);
    let (_, b) = sa_init(&mut w, 1);
    let a_work = work(admit(&mut w, b"a", &a, T0));
    let b_out = done(admit(&mut w, b"b", &b, T0));
    assert_eq!(init_reply_cause(&b_out), (EstablishResult::Failure, Some(RejectionCause::Busy)));
    assert_eq!(init_reply_cause(&compute_and_commit(&mut w, a_work, T0)).0, EstablishResult::Success);
    assert_eq!(w.responder.half_open() + w.responder.sas().count(), 1);
}

#[test]
fn the_per_source_bound_counts_sa_inits_being_computed() {
    let mut w = world(Limits { max_half_open_per_peer: 1, ..no_cookies() });
    let (_, a) = sa_init(&mut w, 0);
    let (_, b) = sa_init(&mut w, 1);
    let a_work = work(admit(&mut w, b"same", &a, T0));
    let b_out = done(admit(&mut w, b"same", &b, T0));
    assert_eq!(init_reply_cause(&b_out), (EstablishResult::Failure, Some(RejectionCause::Busy)));
    assert_eq!(init_reply_cause(&compute_and_commit(&mut w, a_work, T0)).0, EstablishResult::Success);
}

#[test]
fn a_copy_of_an_sa_init_being_computed_makes_no_second_half_open() {
    let mut w = world(no_cookies());
    let (_, a) = sa_init(&mut w, 0);
    let first = work(admit(&mut w, b"a", &a, T0));
    // The retransmission arrives while the first copy is computed: dropped, nothing reserved.
    let copy = done(admit(&mut w, b"a", &a, T0));
    assert_eq!((copy.reply, copy.dropped), (None, Some(DropReason::InProgress)));
    assert_eq!(w.responder.half_open(), 1);
    let out = compute_and_commit(&mut w, first, T0);
    assert_eq!(out.events.len(), 1, "one Initiate SA Received");
    assert_eq!(w.responder.half_open(), 1);
    // One arriving after the commit gets the same reply, from the cache.
    let again = done(admit(&mut w, b"a", &a, T0));
    assert_eq!(again.reply, out.reply);
    assert!(again.events.is_empty());
    assert_eq!(w.responder.half_open(), 1);
}

#[test]
fn an_sa_init_whose_reservation_expired_while_computed_is_not_installed() {
    let mut w = world(no_cookies());
    let (_, a) = sa_init(&mut w, 0);
    let first = work(admit(&mut w, b"a", &a, T0));
    let computed = first.compute(T0, &mut w.rng, &mut AcceptAll);
    let late = Now { mono_ms: T0.mono_ms + Timing::default().half_open_ms, ..T0 };
    w.responder.handle_timeout(late);
    assert_eq!(w.responder.half_open(), 0, "the sweep gave the slot back");
    let out = w.responder.commit(computed, late);
    assert_eq!((out.reply, out.dropped), (None, Some(DropReason::Expired)));
    assert_eq!(w.responder.half_open(), 0);
    assert_eq!(w.responder.footprint().inits, 0);
}

#[test]
fn an_sa_auth_whose_half_open_expired_while_verified_is_not_installed() {
    let mut w = world(no_cookies());
    let (_, m3) = sa_auth(&mut w, 0, b"a");
    let verifying = work(admit(&mut w, b"a", &m3, T0));
    let computed = verifying.compute(T0, &mut w.rng, &mut AcceptAll);
    let late = Now { mono_ms: T0.mono_ms + Timing::default().half_open_ms, ..T0 };
    let events = w.responder.handle_timeout(late);
    assert_eq!(events.len(), 1, "the half-open establishment timed out: {events:?}");
    let out = w.responder.commit(computed, late);
    assert_eq!(out.dropped, Some(DropReason::NoSuchEstablishment));
    assert_eq!(w.responder.sas().count(), 0);
}

#[test]
fn two_copies_of_an_sa_auth_verified_concurrently_establish_one_sa_with_one_reply() {
    let mut w = world(no_cookies());
    let (id, m3) = sa_auth(&mut w, 0, b"a");
    let one = work(admit(&mut w, b"a", &m3, T0));
    let two = work(admit(&mut w, b"a", &m3, T0));
    let (one, two) = (one.compute(T0, &mut w.rng, &mut AcceptAll), two.compute(T0, &mut w.rng, &mut AcceptAll));
    let first = w.responder.commit(one, T0);
    let second = w.responder.commit(two, T0);
    assert!(first.events.iter().any(|e| matches!(e, ResponderEvent::SaEstablishmentComplete(_))));
    assert!(second.events.is_empty(), "{second:?}");
    assert_eq!(first.reply, second.reply);
    assert_eq!(w.responder.sas().count(), 1);
    let events = w.initiators[0].handle_response(id, &first.reply.unwrap(), T0, &mut w.rng);
    assert!(matches!(events.as_slice(), [InitiatorEvent::Established { .. }]), "{events:?}");
}

#[test]
fn a_forged_sa_auth_verified_concurrently_with_the_genuine_one_does_not_end_it() {
    let mut w = world(no_cookies());
    let (id, m3) = sa_auth(&mut w, 0, b"a");
    let Message::Auth(mut forged) = Message::decode(&m3).unwrap() else { unreachable!() };
    forged.responder_keying_material.0.response[0] ^= 1;
    let forged = Message::Auth(forged).encode();
    let bad = work(admit(&mut w, b"x", &forged, T0));
    let good = work(admit(&mut w, b"a", &m3, T0));
    let (bad, good) = (bad.compute(T0, &mut w.rng, &mut AcceptAll), good.compute(T0, &mut w.rng, &mut AcceptAll));
    // The genuine one commits first; the forgery's verdict then finds no establishment waiting.
    let good = w.responder.commit(good, T0);
    let bad = w.responder.commit(bad, T0);
    assert_eq!(bad.dropped, Some(DropReason::NoSuchEstablishment));
    assert_eq!(w.responder.sas().count(), 1);
    let events = w.initiators[0].handle_response(id, &good.reply.unwrap(), T0, &mut w.rng);
    assert!(matches!(events.as_slice(), [InitiatorEvent::Established { .. }]), "{events:?}");
}

#[test]
fn the_initiator_refuses_an_identifier_taken_while_its_answer_was_computed() {
    let mut w = world(no_cookies());
    let (id, m1) = sa_init(&mut w, 0);
    let out = w.responder.handle_from(b"a", &m1, T0, &mut w.rng, &mut AcceptAll);
    let reply = out.reply.unwrap();
    let Message::InitReply(r) = Message::decode(&reply).unwrap() else { unreachable!() };
    let sa_id: SaId = r.parameters.sa_id.unwrap();
    let admitted = match w.initiators[0].admit_response(id, &reply, T0, &mut w.rng) {
        onem2m_sa::manage::InitiatorAdmitted::Work(work) => work,
        other => panic!("{other:?}"),
    };
    assert!(!w.initiators[0].is_pending(id), "taken out while computed");
    let computed = admitted.compute(&reply, T0, &mut w.rng);
    // Meanwhile another establishment of this node got the same identifier.
    let table = std::sync::Arc::new(onem2m_sa::table::SaTable::new(Default::default()));
    w.initiators[0].attach_table(table.clone());
    let (id2, m1b) = sa_init(&mut w, 0);
    let out2 = w.responder.handle_from(b"a", &m1b, T0, &mut w.rng, &mut AcceptAll);
    let ev = w.initiators[0].handle_response(id2, &out2.reply.unwrap(), T0, &mut w.rng);
    let Some(InitiatorEvent::Transmit(ex)) = ev.into_iter().next() else { panic!() };
    let out3 = w.responder.handle_from(b"a", &ex.bytes, T0, &mut w.rng, &mut AcceptAll);
    let ev = w.initiators[0].handle_response(id2, &out3.reply.unwrap(), T0, &mut w.rng);
    let Some(InitiatorEvent::Established { confirm, .. }) = ev.into_iter().next() else { panic!() };
    let mut other = w.initiators[0].sa(confirm.security_association.unwrap().sa_id).unwrap().sa.clone();
    other.sa_id = sa_id;
    table.install(&other);
    let events = w.initiators[0].commit_response(computed, T0);
    assert!(matches!(events.as_slice(), [InitiatorEvent::EstablishFailed { .. }]), "{events:?}");
}
