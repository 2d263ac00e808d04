//! Every rejection cause of the seed, produced by the state machines, and the attacks the
//! transcript binding must defeat: downgrade, unknown key share, key-compromise impersonation,
//! replay, out-of-order flows, expired and foreign tickets.

use std::sync::Arc;

use onem2m_sa::credential::{AuthorizationContext, Credentials, TicketError};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite, SuiteCode};
use onem2m_sa::establish::*;
use onem2m_sa::flows::*;
use onem2m_sa::manage::{
    DropReason, InitiatorEvent, KeyUpdatePolicy, Limits, ResponderEvent, ResponderSam, Timing, UpdateFailure,
};
use onem2m_sa::message::*;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::testkit::{Pair, ScriptedRng, TestPki, initiator_config, responder_config};
use onem2m_sa::{EstablishError, Now, SaId};

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

struct World {
    pki: TestPki,
    i: Arc<Credentials>,
    r: Arc<Credentials>,
    rng: SeededRng,
}

fn world() -> World {
    let mut rng = SeededRng::new([42; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*", "/id-asn"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    World { pki, i, r, rng }
}

fn request(w: &World) -> InitiateSaRequest {
    InitiateSaRequest { initiator: w.i.node_id.clone(), responder: w.r.node_id.clone() }
}

fn decode_init(bytes: &[u8]) -> SaInit {
    match Message::decode(bytes).unwrap() {
        Message::Init(m) => m,
        other => panic!("SaInit expected, got {other:?}"),
    }
}

fn decode_auth(bytes: &[u8]) -> SaAuth {
    match Message::decode(bytes).unwrap() {
        Message::Auth(m) => m,
        other => panic!("SaAuth expected, got {other:?}"),
    }
}

/// Runs the typestates by hand and returns everything a test may want to poke at.
fn handshake(
    w: &mut World,
    offer: &[Suite],
    supported: &[Suite],
) -> Result<(EstablishedSa, EstablishedSa), EstablishError> {
    let (i, m1) =
        Initiator::start(initiator_config(w.i.clone(), w.pki.anchors.clone(), offer), &request(w), &mut w.rng)?;
    let sa_id = SaId::random(&mut w.rng);
    let acc = Responder::accept(
        responder_config(w.r.clone(), w.pki.anchors.clone(), supported),
        &mut AcceptAll,
        &decode_init(&m1),
        sa_id,
        &mut w.rng,
    );
    let acc = match acc {
        Ok(a) => a,
        Err(refusal) => return i.handle(&refusal.reply.unwrap(), T0, &mut w.rng).map(|_| unreachable!()),
    };
    let (i, m3) = i.handle(&acc.reply, T0, &mut w.rng)?;
    let (r_sa, m4, _) = acc.state.handle(&decode_auth(&m3), T0).map_err(|r| r.error)?;
    Ok((i.handle(&m4)?, r_sa))
}

// ---------------------------------------------------------------------------------------------
// Rejection causes of the seed

#[test]
fn no_parameters_in_common() {
    let mut w = world();
    let err = handshake(&mut w, &[Suite::MLKEM768_AES256GCM_SHA384], &[Suite::X25519_AES128GCM_SHA256]).unwrap_err();
    assert_eq!(err, EstablishError::NoParametersInCommon);
    let confirm = err.to_confirm();
    confirm.validate().unwrap();
    assert_eq!(confirm.cause, Some(RejectionCause::NoParametersInCommon));
}

#[test]
fn unable_to_match_security_parameters_reaches_the_responder_agent() {
    let mut w = world();
    let mut p = Pair::new(
        initiator_config(w.i.clone(), w.pki.anchors.clone(), &[Suite::MLKEM768_AES256GCM_SHA384]),
        responder_config(w.r.clone(), w.pki.anchors.clone(), &[Suite::X25519_AES128GCM_SHA256]),
        1,
        T0,
    );
    let ex = p.initiator.initiate(&request(&w), p.now, &mut w.rng).unwrap();
    p.send(ex);
    p.run(10);
    assert!(matches!(&p.responder_events[..], [ResponderEvent::SaEstablishmentComplete(c)]
        if c.failure_cause == Some(EstablishmentFailureCause::UnableToMatchSecurityParameters)));
    assert!(matches!(p.initiator_events.last(), Some(InitiatorEvent::EstablishFailed { confirm, .. })
        if confirm.cause == Some(RejectionCause::NoParametersInCommon)));
}

#[test]
fn administrative_reasons_from_a_pluggable_responder_agent() {
    let w = world();
    let mut p = Pair::new(
        initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL),
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        2,
        T0,
    );
    p.agent = Box::new(|req: &InitiateSaReceivedRequest| {
        if req.initiator.as_str() == "/id-asn" {
            InitiateSaReceivedConfirm::reject(req.sa_id)
        } else {
            InitiateSaReceivedConfirm::accept(req.sa_id)
        }
    });
    let ex = p.initiator.initiate(&request(&w), p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(10);
    assert!(matches!(&p.responder_events[..], [ResponderEvent::InitiateSaReceived(_, c)]
        if c.cause == Some(RejectionCause::AdministrativeReasons)));
    assert!(matches!(p.initiator_events.last(), Some(InitiatorEvent::EstablishFailed { confirm, .. })
        if confirm.cause == Some(RejectionCause::AdministrativeReasons)));
    assert_eq!(p.responder.half_open(), 0, "nothing kept for a rejected initiator");
}

fn established_pair(seed: u8) -> (World, Pair, SaId) {
    let w = world();
    let mut p = Pair::new(
        initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL),
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        seed,
        T0,
    );
    let ex = p.initiator.initiate(&request(&w), p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(20);
    let id = p.initiator.sas().next().expect("established").sa.sa_id;
    (w, p, id)
}

fn responder_sends(p: &Pair) -> Vec<Vec<u8>> {
    p.wire.iter().filter(|(to_r, _)| !*to_r).map(|(_, b)| b.clone()).collect()
}

#[test]
fn unwilling_to_change_key_when_updates_come_too_fast() {
    let (_, mut p, id) = established_pair(3);
    // No time has passed since establishment: the Responder's policy refuses.
    let ex = p
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, p.now, &mut p.rng)
        .unwrap();
    let ex_id = ex.id;
    let reply = p.responder.handle(&ex.bytes, p.now, &mut p.rng, p.agent.as_mut()).reply.unwrap();
    let events = p.initiator.handle_response(ex_id, &reply, p.now, &mut p.rng);
    assert!(matches!(&events[..], [InitiatorEvent::Updated { confirm, reason }]
        if confirm.result == UpdateResult::Rejected
            && *reason == Some(UpdateFailure::KeyUpdate(KeyUpdateRejection::UnwillingToChangeKey))));
    assert_eq!(p.initiator.sa(id).unwrap().sa.keys.epoch, 0, "keys unchanged");
    assert_eq!(p.responder.sa(id).unwrap().sa.keys.epoch, 0);
}

struct Refuse(KeyUpdateRejection);
impl KeyUpdatePolicy for Refuse {
    fn key_update(&mut self, _: SaId, _: bool) -> Option<KeyUpdateRejection> {
        Some(self.0)
    }
}

#[test]
fn unable_to_encrypt_with_initiator_key_from_the_policy() {
    for reason in [KeyUpdateRejection::UnableToEncryptWithInitiatorKey, KeyUpdateRejection::UnwillingToChangeKey] {
        let (_, mut p, id) = established_pair(4);
        p.responder.set_key_update_policy(Refuse(reason));
        p.advance(5_000);
        let ex = p
            .initiator
            .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, p.now, &mut p.rng)
            .unwrap();
        p.send(ex);
        p.run(10);
        assert!(matches!(p.initiator_events.last(), Some(InitiatorEvent::Updated { confirm, reason: Some(r) })
            if confirm.result == UpdateResult::Rejected && *r == UpdateFailure::KeyUpdate(reason)));
        assert_eq!(p.initiator.sa(id).unwrap().sa.keys.epoch, 0);
    }
}

#[test]
fn decryption_failure_on_a_tampered_key_update() {
    let (_, mut p, id) = established_pair(5);
    p.advance(5_000);
    let ex = p
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, p.now, &mut p.rng)
        .unwrap();
    let Message::Control(mut env) = Message::decode(&ex.bytes).unwrap() else { panic!() };
    env.ciphertext[3] ^= 1;
    let tampered = Message::Control(env).encode();
    let out = p.responder.handle(&tampered, p.now, &mut p.rng, p.agent.as_mut());
    let reply = out.reply.unwrap();
    assert!(
        matches!(Message::decode(&reply).unwrap(), Message::ControlError(e) if e.reason == ControlRejection::DecryptionFailure)
    );
    let events = p.initiator.handle_response(ex.id, &reply, p.now, &mut p.rng);
    assert!(matches!(&events[..], [InitiatorEvent::Updated { confirm, reason }]
        if confirm.result == UpdateResult::Rejected
            && *reason == Some(UpdateFailure::Refused(ControlRejection::DecryptionFailure))));
    assert_eq!(p.responder.sa(id).unwrap().sa.keys.epoch, 0);
}

#[test]
fn decryption_failure_reported_by_the_initiator_in_key_update_response() {
    let (_, mut p, id) = established_pair(6);
    p.advance(5_000);
    let ex = p
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, p.now, &mut p.rng)
        .unwrap();
    let reply = p.responder.handle(&ex.bytes, p.now, &mut p.rng, p.agent.as_mut()).reply.unwrap();
    let Message::Control(mut env) = Message::decode(&reply).unwrap() else { panic!() };
    env.ciphertext[0] ^= 0x80; // the confirm is damaged on its way back
    let events = p.initiator.handle_response(ex.id, &Message::Control(env).encode(), p.now, &mut p.rng);
    let [InitiatorEvent::Transmit(skur)] = &events[..] else { panic!("SA Key Update Response expected: {events:?}") };
    // The Responder learns of the failure and drops the keys it had prepared.
    let out = p.responder.handle(&skur.bytes, p.now, &mut p.rng, p.agent.as_mut());
    assert!(out.dropped.is_none());
    assert!(out.events.is_empty(), "no SA Updated");
    let Message::Control(env) = Message::decode(&skur.bytes).unwrap() else { panic!() };
    assert_eq!(env.epoch, 0, "a rejection is sealed under the existing keys");
    let events = p.initiator.handle_response(skur.id, &out.reply.unwrap(), p.now, &mut p.rng);
    assert!(matches!(&events[..], [InitiatorEvent::Updated { confirm, reason }]
        if confirm.result == UpdateResult::Rejected
            && *reason == Some(UpdateFailure::KeyUpdate(KeyUpdateRejection::DecryptionFailure))));
    assert_eq!(p.responder.sa(id).unwrap().sa.keys.epoch, 0);
    assert_eq!(p.initiator.sa(id).unwrap().sa.keys.epoch, 0);
}

#[test]
fn unknown_sa_identifier_and_already_marked_invalid() {
    let (_, mut p, id) = established_pair(7);
    // Locally (Remove SA, table 42).
    let unknown = SaId([9; 8]);
    let c = p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: unknown }), p.now).unwrap_err();
    assert_eq!(c.0.rejection_reason, Some(RemovalRejection::UnknownSaIdentifier));
    c.validate().unwrap();
    let ex = p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: id }), p.now).unwrap();
    let c = p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: id }), p.now).unwrap_err();
    assert_eq!(c.0.rejection_reason, Some(RemovalRejection::AlreadyMarkedInvalid));
    // Across rb (SA Removal, table 43): the first removal goes through, a second one (say a
    // replay with a later sequence number is impossible without keys, so a resend of the
    // request) gets the cached confirm, and a forged one for the removed SA gets "already
    // marked invalid".
    let first = p.responder.handle(&ex.bytes, p.now, &mut p.rng, p.agent.as_mut()).reply.unwrap();
    let again = p.responder.handle(&ex.bytes, p.now, &mut p.rng, p.agent.as_mut()).reply.unwrap();
    assert_eq!(first, again);
    let Message::Control(mut env) = Message::decode(&ex.bytes).unwrap() else { panic!() };
    env.seq += 1;
    let forged = p.responder.handle(&Message::Control(env.clone()).encode(), p.now, &mut p.rng, p.agent.as_mut());
    assert!(matches!(Message::decode(&forged.reply.unwrap()).unwrap(),
        Message::ControlError(e) if e.reason == ControlRejection::AlreadyMarkedInvalid));
    env.sa_id = unknown;
    let stranger = p.responder.handle(&Message::Control(env).encode(), p.now, &mut p.rng, p.agent.as_mut());
    let reply = stranger.reply.unwrap();
    assert!(matches!(Message::decode(&reply).unwrap(),
        Message::ControlError(e) if e.reason == ControlRejection::UnknownSaIdentifier));
    // The Responder that removed locally answers the Initiator's removal with "unknown" after
    // the tombstone is gone, and the Initiator reports the reason.
    let (_, mut p, id) = established_pair(8);
    assert_eq!(p.responder.remove_local(id, p.now).0.result, UpdateResult::Accepted);
    assert_eq!(p.responder.remove_local(id, p.now).0.rejection_reason, Some(RemovalRejection::AlreadyMarkedInvalid));
    p.advance(400_000);
    let ex = p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: id }), p.now).unwrap();
    p.send(ex);
    p.run(10);
    assert!(matches!(p.initiator_events.last(), Some(InitiatorEvent::Removed(c))
        if c.0.rejection_reason == Some(RemovalRejection::UnknownSaIdentifier)));
}

#[test]
fn identifier_collision_gets_a_counter_proposal() {
    let (w, mut p, id) = established_pair(10);
    // Another Initiator holds a half-open establishment at the Responder under identifier X.
    let other = w.pki.node("/id-mn", SignatureAlgorithm::Ed25519, &["C*"], &mut p.rng);
    let req = InitiateSaRequest { initiator: other.node_id.clone(), responder: w.r.node_id.clone() };
    let (_, m1) =
        Initiator::start(initiator_config(other, w.pki.anchors.clone(), &Suite::ALL), &req, &mut p.rng).unwrap();
    let out = p.responder.handle(&m1, p.now, &mut p.rng, p.agent.as_mut());
    let Message::InitReply(reply) = Message::decode(&out.reply.unwrap()).unwrap() else { panic!() };
    let taken = reply.parameters.sa_id.unwrap();
    // The Initiator is forced to propose X.
    let mut forced = ScriptedRng::new(vec![taken.0.to_vec()], 77);
    let ex = p
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Identifier }, p.now, &mut forced)
        .unwrap();
    let cnf = p.responder.handle(&ex.bytes, p.now, &mut p.rng, p.agent.as_mut());
    assert!(cnf.events.is_empty(), "nothing renamed yet");
    let events = p.initiator.handle_response(ex.id, &cnf.reply.unwrap(), p.now, &mut p.rng);
    let [InitiatorEvent::Transmit(siur)] = &events[..] else { panic!("SA Identifier Update Response expected") };
    let ack = p.responder.handle(&siur.bytes, p.now, &mut p.rng, p.agent.as_mut());
    let [ResponderEvent::SaUpdated(updated)] = &ack.events[..] else { panic!("SA Updated expected") };
    updated.validate().unwrap();
    let events = p.initiator.handle_response(siur.id, &ack.reply.unwrap(), p.now, &mut p.rng);
    let [InitiatorEvent::Updated { confirm: c, .. }] = &events[..] else { panic!() };
    assert_eq!(c.result, UpdateResult::Accepted);
    let new = c.new_sa_id.unwrap();
    assert_ne!(new, taken, "the counter-proposal, not the colliding identifier");
    assert_eq!(updated.new_sa_id, Some(new));
    assert_eq!(p.responder.sa(new).unwrap().sa.sa_id, new);
    assert!(p.initiator.sa(new).is_some());
}

// ---------------------------------------------------------------------------------------------
// Attacks

#[test]
fn downgrade_stripping_the_strongest_suite_aborts() {
    let mut w = world();
    let offer = [Suite::X25519MLKEM768_AES256GCM_SHA384, Suite::X25519_AES128GCM_SHA256];
    let (i, m1) =
        Initiator::start(initiator_config(w.i.clone(), w.pki.anchors.clone(), &offer), &request(&w), &mut w.rng)
            .unwrap();
    let mut init = decode_init(&m1);
    init.parameters.possible.retain(|c| *c != SuiteCode::from(Suite::X25519MLKEM768_AES256GCM_SHA384));
    init.key_shares.retain(|k| k.kem == 1);
    let acc = Responder::accept(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        &mut AcceptAll,
        &init,
        SaId([1; 8]),
        &mut w.rng,
    )
    .expect("the responder sees a plausible offer");
    assert!(matches!(i.handle(&acc.reply, T0, &mut w.rng), Err(EstablishError::BadAuthorizationCode)));
}

#[test]
fn responder_picks_the_initiators_most_preferred_suite_it_allows() {
    let mut w = world();
    let offer =
        [Suite::X25519MLKEM768_AES256GCM_SHA384, Suite::MLKEM768_AES256GCM_SHA384, Suite::X25519_AES128GCM_SHA256];
    let (i_sa, r_sa) =
        handshake(&mut w, &offer, &[Suite::X25519_AES128GCM_SHA256, Suite::MLKEM768_AES256GCM_SHA384]).unwrap();
    assert_eq!(i_sa.suite, Suite::MLKEM768_AES256GCM_SHA384);
    assert_eq!(r_sa.suite, Suite::MLKEM768_AES256GCM_SHA384);
}

#[test]
fn unknown_key_share_relay_through_a_third_identity_aborts_both_sides() {
    let mut w = world();
    let mallory = w.pki.node("/id-mallory", SignatureAlgorithm::Ed25519, &["C*"], &mut w.rng);
    // Mallory relays the Initiator's SaInit to the Responder under her own name.
    let (i, m1) =
        Initiator::start(initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL), &request(&w), &mut w.rng)
            .unwrap();
    let mut init = decode_init(&m1);
    init.initiator = mallory.node_id.clone();
    let acc = Responder::accept(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        &mut AcceptAll,
        &init,
        SaId([2; 8]),
        &mut w.rng,
    )
    .ok()
    .unwrap();
    // The Initiator's transcript names itself: the Responder's signature does not verify.
    assert!(matches!(i.handle(&acc.reply, T0, &mut w.rng), Err(EstablishError::BadAuthorizationCode)));

    // The other way: the Initiator's own SaInit reaches the Responder, and Mallory swaps the
    // Initiator's ticket and signature in SaAuth for her own.
    let (i, m1) =
        Initiator::start(initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL), &request(&w), &mut w.rng)
            .unwrap();
    let acc = Responder::accept(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        &mut AcceptAll,
        &decode_init(&m1),
        SaId([3; 8]),
        &mut w.rng,
    )
    .ok()
    .unwrap();
    let (_, m3) = i.handle(&acc.reply, T0, &mut w.rng).unwrap();
    let mut auth = decode_auth(&m3);
    auth.send_initiator_key.0.key_authorization_ticket = mallory.ticket.clone();
    auth.send_initiator_authorization_key.0.authorization_ticket_reference = Some(mallory.ticket.digest().to_vec());
    let refusal = acc.state.handle(&auth, T0).expect_err("refused");
    assert_eq!(refusal.error, EstablishError::Ticket(TicketError::WrongSubject));
    assert_eq!(refusal.complete.result, EstablishResult::Failure);
}

#[test]
fn key_compromise_impersonation_of_the_initiator_fails() {
    let mut w = world();
    // The attacker holds the Responder's long-term key and the Initiator's public ticket, and
    // runs the Initiator's side against the Responder claiming to be /id-asn.
    let stolen = Arc::new(Credentials {
        node_id: w.i.node_id.clone(),
        signing_key: w.r.signing_key.clone(),
        ticket: w.i.ticket.clone(),
    });
    let (i, m1) =
        Initiator::start(initiator_config(stolen, w.pki.anchors.clone(), &Suite::ALL), &request(&w), &mut w.rng)
            .unwrap();
    let acc = Responder::accept(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        &mut AcceptAll,
        &decode_init(&m1),
        SaId([4; 8]),
        &mut w.rng,
    )
    .ok()
    .unwrap();
    let (_, m3) = i.handle(&acc.reply, T0, &mut w.rng).unwrap();
    let refusal = acc.state.handle(&decode_auth(&m3), T0).expect_err("refused");
    assert_eq!(refusal.error, EstablishError::BadAuthorizationCode);
    assert!(
        matches!(Message::decode(&refusal.reply).unwrap(), Message::AuthReply(r) if r.cause == Some(RejectionCause::AuthenticationFailed))
    );
}

#[test]
fn expired_unknown_and_foreign_tickets() {
    let mut w = world();
    // Expired Responder ticket.
    let old = w.pki.node_with(
        "/id-in",
        SignatureAlgorithm::Ed25519,
        AuthorizationContext::default(),
        T0.unix_secs - 100,
        T0.unix_secs - 10,
        &mut w.rng,
    );
    w.r = old;
    assert_eq!(handshake(&mut w, &Suite::ALL, &Suite::ALL).unwrap_err(), EstablishError::Ticket(TicketError::Expired));
    // A ticket from an anchor the Initiator does not trust.
    let mut w = world();
    let other = TestPki::named("/rogue-anchor", &mut w.rng, T0.unix_secs);
    w.r = other.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut w.rng);
    assert_eq!(
        handshake(&mut w, &Suite::ALL, &Suite::ALL).unwrap_err(),
        EstablishError::Ticket(TicketError::UnknownIssuer)
    );
    // A ticket forged under the trusted anchor's name with another key.
    let mut w = world();
    let forger = TestPki::new(&mut w.rng, T0.unix_secs);
    w.r = forger.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut w.rng);
    assert_eq!(
        handshake(&mut w, &Suite::ALL, &Suite::ALL).unwrap_err(),
        EstablishError::Ticket(TicketError::BadSignature)
    );
    // A genuine ticket for another node.
    let mut w = world();
    w.r = w.pki.node("/id-other", SignatureAlgorithm::Ed25519, &["/id-in"], &mut w.rng);
    let r_id = w.r.node_id.clone();
    let mut cfg_i = initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL);
    cfg_i.offer = Suite::ALL.to_vec();
    let wanted = InitiateSaRequest { initiator: w.i.node_id.clone(), responder: "/id-in".parse().unwrap() };
    let (i, m1) = Initiator::start(cfg_i, &wanted, &mut w.rng).unwrap();
    let mut init = decode_init(&m1);
    init.responder = r_id; // a relay that forwards to the wrong node
    let acc = Responder::accept(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        &mut AcceptAll,
        &init,
        SaId([5; 8]),
        &mut w.rng,
    )
    .ok()
    .unwrap();
    assert_eq!(i.handle(&acc.reply, T0, &mut w.rng).err(), Some(EstablishError::Ticket(TicketError::WrongSubject)));
}

#[test]
fn replayed_establishment_flows_are_rejected() {
    let (w, mut p, id) = established_pair(11);
    let m1 = p.wire[0].1.clone();
    let m3 = p.wire.iter().filter(|(to_r, _)| *to_r).nth(1).unwrap().1.clone();
    // Replays against the live Responder.
    let out = p.responder.handle(&m1, p.now, &mut p.rng, p.agent.as_mut());
    assert_eq!(out.dropped, Some(DropReason::Replayed));
    assert_eq!(p.responder.half_open(), 0, "no state for a replayed SaInit");
    let before = responder_sends(&p).last().cloned().unwrap();
    let out = p.responder.handle(&m3, p.now, &mut p.rng, p.agent.as_mut());
    assert_eq!(out.reply.as_ref(), Some(&before), "a resent SaAuth gets the same reply, no new SA");
    assert_eq!(p.responder.sas().count(), 1);
    // Against a restarted Responder: SaAuth has no establishment to continue.
    let mut fresh = ResponderSam::new(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        Timing::default(),
        Limits::default(),
    );
    let out = fresh.handle(&m3, p.now, &mut p.rng, &mut AcceptAll);
    assert_eq!(out.dropped, Some(DropReason::NoSuchEstablishment));
    // A replayed SaInit at the restarted Responder opens a half-open SA that the replayer
    // cannot complete: the old SaAuth does not fit it.
    let out = fresh.handle(&m1, p.now, &mut p.rng, &mut AcceptAll);
    let Message::InitReply(reply) = Message::decode(&out.reply.unwrap()).unwrap() else { panic!() };
    let new_id = reply.parameters.sa_id.unwrap();
    assert_ne!(new_id, id);
    let mut auth = decode_auth(&m3);
    auth.sa_id = new_id;
    for f in [
        &mut auth.responder_keying_material.0.sa_id,
        &mut auth.send_initiator_key.0.sa_id,
        &mut auth.initiator_keying_material.0.sa_id,
        &mut auth.send_initiator_authorization_key.0.sa_id,
        &mut auth.initiator_authorization_challenge.0.sa_id,
        &mut auth.responder_authorization_challenge.0.sa_id,
    ] {
        *f = new_id;
    }
    let out = fresh.handle(&Message::Auth(auth).encode(), p.now, &mut p.rng, &mut AcceptAll);
    assert!(
        matches!(Message::decode(&out.reply.unwrap()).unwrap(), Message::AuthReply(r) if r.result == EstablishResult::Failure)
    );
    assert_eq!(fresh.sas().count(), 0);
}

#[test]
fn out_of_order_flows_are_rejected() {
    let mut w = world();
    let (i, m1) =
        Initiator::start(initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL), &request(&w), &mut w.rng)
            .unwrap();
    // The Initiator waiting for SaInitReply is handed its own SaInit (reflection) and junk.
    let mut sam = ResponderSam::new(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        Timing::default(),
        Limits::default(),
    );
    let out = sam.handle(&m1, T0, &mut w.rng, &mut AcceptAll);
    let m2 = out.reply.unwrap();
    // SaInitReply sent to the Responder: wrong direction.
    assert_eq!(sam.handle(&m2, T0, &mut w.rng, &mut AcceptAll).dropped, Some(DropReason::WrongDirection));
    let (i2, m3) = i.handle(&m2, T0, &mut w.rng).unwrap();
    // SaInitReply again to the Initiator that now waits for SaAuthReply.
    assert!(matches!(i2.handle(&m2), Err(EstablishError::UnexpectedMessage)));
    // SaAuth first, at a Responder that never saw SaInit.
    let mut other = ResponderSam::new(
        responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL),
        Timing::default(),
        Limits::default(),
    );
    assert_eq!(other.handle(&m3, T0, &mut w.rng, &mut AcceptAll).dropped, Some(DropReason::NoSuchEstablishment));
    // Garbage and oversize.
    assert!(matches!(
        sam.handle(b"{\"init\":{}}", T0, &mut w.rng, &mut AcceptAll).dropped,
        Some(DropReason::Decode(_))
    ));
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        sam.handle(&big, T0, &mut w.rng, &mut AcceptAll).dropped,
        Some(DropReason::Decode(DecodeError::TooLarge(_)))
    ));
}

#[test]
fn half_open_bounds_per_peer_and_overall() {
    let mut w = world();
    let limits = Limits { max_half_open: 5, max_half_open_per_peer: 3, max_sas: 10, ..Limits::default() };
    let mut sam =
        ResponderSam::new(responder_config(w.r.clone(), w.pki.anchors.clone(), &Suite::ALL), Timing::default(), limits);
    let busy = |bytes: &[u8]| matches!(Message::decode(bytes).unwrap(), Message::InitReply(r) if r.parameters.cause == Some(RejectionCause::Busy));
    let mut replies = Vec::new();
    for _ in 0..4 {
        let (_, m1) = Initiator::start(
            initiator_config(w.i.clone(), w.pki.anchors.clone(), &Suite::ALL),
            &request(&w),
            &mut w.rng,
        )
        .unwrap();
        replies.push(sam.handle(&m1, T0, &mut w.rng, &mut AcceptAll).reply.unwrap());
    }
    assert_eq!(replies.iter().filter(|r| busy(r)).count(), 1, "the fourth from one peer is refused");
    assert_eq!(sam.half_open(), 3);
    for n in 0..4 {
        let other = w.pki.node(&format!("/id-mn{n}"), SignatureAlgorithm::Ed25519, &["C*"], &mut w.rng);
        let req = InitiateSaRequest { initiator: other.node_id.clone(), responder: w.r.node_id.clone() };
        let (_, m1) =
            Initiator::start(initiator_config(other, w.pki.anchors.clone(), &Suite::ALL), &req, &mut w.rng).unwrap();
        sam.handle(&m1, T0, &mut w.rng, &mut AcceptAll);
    }
    assert_eq!(sam.half_open(), 5, "the global bound holds");
}
