//! The SA lifecycle leaves nothing behind and never wedges (issue 11, section 2): expiry and
//! idle removal everywhere, per-peer caps, abandoned and half-finished key updates, removal
//! under the previous epoch and its authenticated confirm, forged SaAuth, redacted key material,
//! no automatic downgrade after `cr=1`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use onem2m_sa::credential::{AuthorizationContext, OriginatorPattern};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::*;
use onem2m_sa::manage::{
    DropReason, Footprint, InitiatorEvent, InitiatorSam, Limits, ResponderEvent, ResponderSam, Timing,
};
use onem2m_sa::message::{ControlError, ControlRejection, Message, PROTOCOL_VERSION};
use onem2m_sa::rng::SeededRng;
use onem2m_sa::secure::{Encoding, SecureError, decode_jwe};
use onem2m_sa::table::{SaTable, TableConfig};
use onem2m_sa::testkit::{Fault, Pair, TestPki, initiator_config, responder_config};
use onem2m_sa::{EstablishError, Now, SaId};

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };
/// Lifetime both tickets' authorization contexts allow an SA.
const LIFETIME_SECS: u64 = 60;

struct Duo {
    p: Pair,
    it: Arc<SaTable>,
    rt: Arc<SaTable>,
}

fn context(originators: &[&str], lifetime: Option<u64>) -> AuthorizationContext {
    AuthorizationContext {
        originators: originators.iter().map(|o| o.parse::<OriginatorPattern>().unwrap()).collect(),
        max_sa_lifetime_secs: lifetime,
        description: None,
        ..AuthorizationContext::default()
    }
}

fn duo_with(timing: Timing, limits: Limits, lifetime: Option<u64>, offer: &[Suite], supported: &[Suite]) -> Duo {
    let mut rng = SeededRng::new([77; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let (nb, na) = (T0.unix_secs - 3600, T0.unix_secs + 10 * 86_400);
    let i =
        pki.node_with("/id-asn", SignatureAlgorithm::Ed25519, context(&["C*", "/id-asn"], lifetime), nb, na, &mut rng);
    let r = pki.node_with("/id-in", SignatureAlgorithm::Ed25519, context(&["/id-in"], lifetime), nb, na, &mut rng);
    let (ic, rc) =
        (initiator_config(i, pki.anchors.clone(), offer), responder_config(r, pki.anchors.clone(), supported));
    let mut p = Pair::new(ic.clone(), rc.clone(), 7, T0);
    p.initiator = InitiatorSam::new(ic, timing);
    p.responder = ResponderSam::new(rc, timing, limits);
    let (it, rt) = (Arc::new(SaTable::new(TableConfig::default())), Arc::new(SaTable::new(TableConfig::default())));
    p.initiator.attach_table(it.clone());
    p.responder.attach_table(rt.clone());
    Duo { p, it, rt }
}

fn duo(timing: Timing, limits: Limits, lifetime: Option<u64>) -> Duo {
    duo_with(timing, limits, lifetime, &[Suite::X25519_AES128GCM_SHA256], &Suite::ALL)
}

fn request() -> InitiateSaRequest {
    InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() }
}

fn establish(p: &mut Pair) -> SaId {
    let ex = p.initiator.initiate(&request(), p.now, &mut p.rng).expect("starts");
    p.send(ex);
    p.run(100);
    match p.initiator_events.pop() {
        Some(InitiatorEvent::Established { confirm, .. }) => confirm.security_association.unwrap().sa_id,
        other => panic!("not established: {other:?}"),
    }
}

fn last_update(p: &Pair) -> (UpdateSaConfirm, Option<onem2m_sa::manage::UpdateFailure>) {
    p.initiator_events
        .iter()
        .rev()
        .find_map(|e| match e {
            InitiatorEvent::Updated { confirm, reason } => Some((confirm.clone(), *reason)),
            _ => None,
        })
        .expect("an Update SA confirm")
}

fn update(p: &mut Pair, sa_id: SaId, operation: UpdateOperation) -> UpdateSaConfirm {
    let ex = p.initiator.update(&UpdateSaRequest { existing_sa_id: sa_id, operation }, p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(100);
    last_update(p).0
}

fn same_keys(p: &Pair, id: SaId) {
    let i = &p.initiator.sa(id).expect("initiator holds the SA").sa;
    let r = &p.responder.sa(id).expect("responder holds the SA").sa;
    assert_eq!(i.keys.epoch, r.keys.epoch);
    assert_eq!(i.keys.i2r.key(), r.keys.i2r.key());
}

/// Time passes; both SAMs' timers and both tables' sweeps run (as `Node::tick` does).
fn tick(d: &mut Duo, ms: u64) {
    d.p.advance(ms);
    d.it.sweep(d.p.now);
    d.rt.sweep(d.p.now);
}

/// A request sealed by the Initiator's table, opened by the Responder's, answered under the
/// epoch it came in, opened by the Initiator's table.
fn round_trip(d: &Duo, sa_id: SaId) -> Result<(), SecureError> {
    let ei = d.it.get(sa_id).ok_or(SecureError::UnknownSa)?;
    let mut wire = Vec::new();
    ei.seal(Encoding::Jwe, b"{\"op\":1}", &mut wire)?;
    let er = d.rt.get(sa_id).ok_or(SecureError::UnknownSa)?;
    let mut scratch = Vec::new();
    let (_, epoch) = er.open(decode_jwe(&wire, &mut scratch)?)?;
    let mut answer = Vec::new();
    er.seal_with(&epoch, Encoding::Jwe, b"{\"rsc\":2000}", &mut answer)?;
    ei.open(decode_jwe(&answer, &mut scratch)?)?;
    Ok(())
}

/// Passes the first `pass` messages from now on, then applies `then` to the n-th (1-based).
fn plan(p: &mut Pair, armed: Rc<Cell<bool>>, rule: impl Fn(usize) -> Fault + 'static) {
    let seen = Rc::new(Cell::new(0usize));
    p.set_faults(move |_, _| {
        if !armed.get() {
            return Fault::Pass;
        }
        seen.set(seen.get() + 1);
        rule(seen.get())
    });
}

#[test]
fn ten_thousand_establish_expire_cycles_leave_nothing_behind() {
    // max_sas 2: a single expired SA left behind would make the third cycle Busy.
    let limits = Limits { max_sas: 2, ..Limits::default() };
    let mut d = duo(Timing::default(), limits, Some(LIFETIME_SECS));
    let baseline_r = d.p.responder.footprint();
    let baseline_i = d.p.initiator.footprint();
    assert_eq!(baseline_r, Footprint::default());
    let cycles: usize = std::env::var("SA_LIFECYCLE_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    for cycle in 0..cycles {
        let sa_id = establish(&mut d.p);
        assert_eq!(d.p.responder.sas().count(), 1, "cycle {cycle}");
        assert_eq!((d.it.len(), d.rt.len()), (1, 1), "cycle {cycle}");
        // Past the lifetime: the SAMs remove the SA themselves (the tables' sweep runs after).
        d.p.advance((LIFETIME_SECS + 1) * 1000);
        assert!(d.p.responder.sa(sa_id).is_none() && d.p.initiator.sa(sa_id).is_none(), "cycle {cycle}: kept");
        assert!(d.rt.get(sa_id).is_none() && d.it.get(sa_id).is_none(), "cycle {cycle}: still in a table");
        assert!(
            d.p.responder_events.iter().any(|e| matches!(e, ResponderEvent::SaRemoved(r) if r.sa_id == sa_id)),
            "cycle {cycle}: no SA Removed"
        );
        assert!(
            d.p.initiator_events.iter().any(|e| matches!(e, InitiatorEvent::Expired { sa_id: s, .. } if *s == sa_id))
        );
        d.p.responder_events.clear();
        d.p.initiator_events.clear();
        d.p.wire.clear();
        let f = d.p.responder.footprint();
        assert_eq!((f.sas, f.pending, f.peers, f.inits, f.aliases), (0, 0, 0, 0, 0), "cycle {cycle}: {f:?}");
    }
    // Tombstones, nonces and rates are remembered for a while, then gone too.
    tick(&mut d, 600_000);
    assert_eq!(d.p.responder.footprint(), baseline_r);
    assert_eq!(d.p.initiator.footprint(), baseline_i);
    assert_eq!((d.it.len(), d.rt.len()), (0, 0));
}

#[test]
fn seal_and_open_refuse_an_expired_sa_before_any_sweep() {
    let mut d = duo(Timing::default(), Limits::default(), Some(LIFETIME_SECS));
    let sa_id = establish(&mut d.p);
    let (ei, er) = (d.it.get(sa_id).unwrap(), d.rt.get(sa_id).unwrap());
    let live = T0.unix_secs + 10;
    let dead = ei.expires_unix();
    assert_eq!(dead, T0.unix_secs + LIFETIME_SECS);
    let mut wire = Vec::new();
    ei.seal_at(live, Encoding::Jwe, b"{}", &mut wire).unwrap();
    let mut scratch = Vec::new();
    let (_, epoch) = er.open_at(live, decode_jwe(&wire, &mut scratch).unwrap()).unwrap();
    assert_eq!(ei.seal_at(dead, Encoding::Jwe, b"{}", &mut wire).unwrap_err(), SecureError::UnknownSa);
    assert_eq!(er.seal_with_at(dead, &epoch, Encoding::Jwe, b"{}", &mut wire).unwrap_err(), SecureError::UnknownSa);
    ei.seal_at(live, Encoding::Jwe, b"{}", &mut wire).unwrap();
    let sealed = decode_jwe(&wire, &mut scratch).unwrap();
    assert_eq!(er.open_at(dead, sealed).unwrap_err(), SecureError::UnknownSa);
}

#[test]
fn idle_sas_are_removed_busy_ones_are_not() {
    let timing = Timing { idle_timeout_ms: Some(10_000), ..Timing::default() };
    let mut d = duo(timing, Limits::default(), None);
    let sa_id = establish(&mut d.p);
    for _ in 0..6 {
        tick(&mut d, 5_000);
        round_trip(&d, sa_id).expect("in use, so kept");
    }
    // The last use is noticed at the next tick (5 s later); idle from then on.
    tick(&mut d, 5_000);
    tick(&mut d, 9_000);
    assert!(d.p.responder.sa(sa_id).is_some(), "removed before its idle timeout");
    tick(&mut d, 2_000);
    assert!(d.p.responder.sa(sa_id).is_none() && d.p.initiator.sa(sa_id).is_none(), "idle, yet kept");
    assert!(d.rt.get(sa_id).is_none() && d.it.get(sa_id).is_none());
}

#[test]
fn a_peer_over_its_sa_cap_replaces_its_oldest_sa_and_is_never_locked_out() {
    let mut d = duo(Timing::default(), Limits { max_sas: 100, ..Limits::default() }, None);
    d.p.responder.set_max_sas_per_peer(3);
    // A peer that keeps restarting (forgetting its SAs) establishes again and again.
    let mut ids = Vec::new();
    for n in 0..10 {
        d.p.advance(1_000);
        let id = establish(&mut d.p);
        d.p.initiator.forget(id, d.p.now);
        ids.push(id);
        assert_eq!(d.p.responder.sas().count(), (n + 1).min(3));
        assert_eq!(d.rt.len(), (n + 1).min(3));
    }
    let held: Vec<SaId> = ids[7..].to_vec();
    for id in &ids {
        assert_eq!(d.p.responder.sa(*id).is_some(), held.contains(id), "the newest three stay");
    }
    assert!(d.p.responder_events.iter().any(|e| matches!(e, ResponderEvent::SaRemoved(r) if r.sa_id == ids[0])));
}

#[test]
fn an_abandoned_key_update_does_not_block_the_next_one() {
    let mut d = duo(Timing::default(), Limits::default(), None);
    let sa_id = establish(&mut d.p);
    d.p.advance(5_000);
    // The Responder's confirm is lost every time: the Initiator gives up.
    let armed = Rc::new(Cell::new(true));
    plan(&mut d.p, armed.clone(), |n| if n % 2 == 0 { Fault::Drop } else { Fault::Pass });
    let (c, reason) = {
        update(&mut d.p, sa_id, UpdateOperation::Keys);
        last_update(&d.p)
    };
    assert_eq!((c.result, reason), (UpdateResult::Rejected, Some(onem2m_sa::manage::UpdateFailure::Timeout)));
    armed.set(false);
    d.p.advance(5_000);
    let c = update(&mut d.p, sa_id, UpdateOperation::Keys);
    assert_eq!(c.result, UpdateResult::Accepted, "{:?}", last_update(&d.p).1);
    same_keys(&d.p, sa_id);
    round_trip(&d, sa_id).unwrap();
}

#[test]
fn a_lost_final_ack_does_not_break_the_sa_when_grace_ends() {
    let mut d = duo(Timing::default(), Limits::default(), None);
    let sa_id = establish(&mut d.p);
    d.p.advance(5_000);
    // request, confirm, response pass; every Ack (even-numbered from the 4th on) is lost.
    let armed = Rc::new(Cell::new(true));
    plan(&mut d.p, armed.clone(), |n| if n >= 4 && n % 2 == 0 { Fault::Drop } else { Fault::Pass });
    update(&mut d.p, sa_id, UpdateOperation::Keys);
    assert_eq!(last_update(&d.p).0.result, UpdateResult::Rejected);
    armed.set(false);
    assert_eq!(d.p.responder.sa(sa_id).unwrap().sa.keys.epoch, 1, "the Responder committed");
    assert_eq!(d.p.initiator.sa(sa_id).unwrap().sa.keys.epoch, 0, "the Initiator did not");
    // Long after the grace period, traffic under the Initiator's keys still works...
    for _ in 0..3 {
        tick(&mut d, 40_000);
        round_trip(&d, sa_id).expect("the Initiator's epoch still opens");
    }
    // ...and the next key update brings both sides together again.
    let c = update(&mut d.p, sa_id, UpdateOperation::Keys);
    assert_eq!(c.result, UpdateResult::Accepted, "{:?}", last_update(&d.p).1);
    same_keys(&d.p, sa_id);
    tick(&mut d, 1_000);
    round_trip(&d, sa_id).unwrap();
}

#[test]
fn a_removal_sealed_under_the_previous_epoch_removes_the_sa_and_is_confirmed() {
    let mut d = duo(Timing::default(), Limits::default(), None);
    let sa_id = establish(&mut d.p);
    d.p.advance(5_000);
    let armed = Rc::new(Cell::new(true));
    plan(&mut d.p, armed.clone(), |n| if n >= 4 && n % 2 == 0 { Fault::Drop } else { Fault::Pass });
    update(&mut d.p, sa_id, UpdateOperation::Keys);
    armed.set(false);
    // The Responder is on epoch 1, the Initiator seals the removal under epoch 0.
    let ex = d.p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id }), d.p.now).unwrap();
    d.p.send(ex);
    d.p.run(100);
    assert!(
        matches!(d.p.initiator_events.last(), Some(InitiatorEvent::Removed(c)) if c.0.result == UpdateResult::Accepted),
        "{:?}",
        d.p.initiator_events.last()
    );
    assert!(d.p.responder.sa(sa_id).is_none() && d.rt.get(sa_id).is_none(), "the Responder still holds the SA");
}

#[test]
fn only_an_authenticated_confirm_reports_a_removal_accepted() {
    let mut d = duo(Timing::default(), Limits::default(), None);
    let sa_id = establish(&mut d.p);
    let ex = d.p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id }), d.p.now).unwrap();
    let mut agent = onem2m_sa::establish::AcceptAll;
    let genuine = d.p.responder.handle(&ex.bytes, d.p.now, &mut d.p.rng, &mut agent).reply.unwrap();
    // A tampered confirm is no answer at all: nothing concludes.
    let mut tampered = genuine.clone();
    let at = tampered.len() - 5;
    tampered[at] ^= 1;
    assert!(d.p.initiator.handle_response(ex.id, &tampered, d.p.now, &mut d.p.rng).is_empty());
    // An unauthenticated "decryption failure" says the Responder did NOT remove it.
    let forged = Message::ControlError(ControlError {
        version: PROTOCOL_VERSION,
        sa_id,
        reason: ControlRejection::DecryptionFailure,
    })
    .encode();
    match d.p.initiator.handle_response(ex.id, &forged, d.p.now, &mut d.p.rng).as_slice() {
        [InitiatorEvent::Removed(c)] => {
            assert_eq!(
                (c.0.result, c.0.rejection_reason),
                (UpdateResult::Rejected, Some(RemovalRejection::NotConfirmed))
            )
        }
        other => panic!("{other:?}"),
    }
    // The genuine confirm (to a second removal exchange of another SA) is Accepted.
    let sa2 = establish(&mut d.p);
    let ex = d.p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: sa2 }), d.p.now).unwrap();
    let reply = d.p.responder.handle(&ex.bytes, d.p.now, &mut d.p.rng, &mut agent).reply.unwrap();
    match d.p.initiator.handle_response(ex.id, &reply, d.p.now, &mut d.p.rng).as_slice() {
        [InitiatorEvent::Removed(c)] => assert_eq!(c.0.result, UpdateResult::Accepted),
        other => panic!("{other:?}"),
    }
    // No answer at all: not confirmed either.
    let sa3 = establish(&mut d.p);
    let ex = d.p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: sa3 }), d.p.now).unwrap();
    assert!(matches!(d.p.initiator.abandon(ex.id).as_slice(),
        [InitiatorEvent::Removed(c)] if c.0.rejection_reason == Some(RemovalRejection::NotConfirmed)));
}

#[test]
fn a_forged_sa_auth_does_not_abort_the_establishment() {
    let mut d = duo(Timing::default(), Limits::default(), None);
    let mut agent = onem2m_sa::establish::AcceptAll;
    let p = &mut d.p;
    let ex = p.initiator.initiate(&request(), p.now, &mut p.rng).unwrap();
    let init_reply = p.responder.handle(&ex.bytes, p.now, &mut p.rng, &mut agent).reply.unwrap();
    let auth = match p.initiator.handle_response(ex.id, &init_reply, p.now, &mut p.rng).pop() {
        Some(InitiatorEvent::Transmit(auth)) => auth,
        other => panic!("{other:?}"),
    };
    let Ok(Message::Auth(mut forged)) = Message::decode(&auth.bytes) else { panic!("an SaAuth") };
    forged.responder_keying_material.0.response[0] ^= 1;
    let forged = Message::Auth(forged).encode();
    for _ in 0..3 {
        let out = p.responder.handle(&forged, p.now, &mut p.rng, &mut agent);
        assert!(out.events.is_empty(), "a forgery ended the establishment: {:?}", out.events);
        assert_eq!(p.responder.half_open(), 1);
    }
    let reply = p.responder.handle(&auth.bytes, p.now, &mut p.rng, &mut agent).reply.expect("answered");
    assert!(matches!(
        p.initiator.handle_response(auth.id, &reply, p.now, &mut p.rng).pop(),
        Some(InitiatorEvent::Established { .. })
    ));
    assert_eq!(p.responder.half_open(), 0);
    // A flood of forgeries ends a half-open establishment after a bounded number.
    let ex = p.initiator.initiate(&request(), p.now, &mut p.rng).unwrap();
    let init_reply = p.responder.handle(&ex.bytes, p.now, &mut p.rng, &mut agent).reply.unwrap();
    let Some(InitiatorEvent::Transmit(auth)) = p.initiator.handle_response(ex.id, &init_reply, p.now, &mut p.rng).pop()
    else {
        panic!("an SaAuth")
    };
    let Ok(Message::Auth(mut forged)) = Message::decode(&auth.bytes) else { panic!("an SaAuth") };
    forged.responder_keying_material.0.response[0] ^= 1;
    let forged = Message::Auth(forged).encode();
    for _ in 0..onem2m_sa::manage::MAX_AUTH_FAILURES {
        p.responder.handle(&forged, p.now, &mut p.rng, &mut agent);
    }
    assert_eq!(p.responder.half_open(), 0);
}

#[test]
fn key_update_material_is_redacted_in_debug() {
    let material = vec![0xA5u8; KEY_UPDATE_MATERIAL_LEN];
    let sa_id = SaId([1; 8]);
    let req = SaKeyUpdateRequest {
        sa_id,
        new_keying_material: material.clone().into(),
        responder_keying_material_requested: true,
        fresh_kem_public_key: None,
    };
    let cnf = SaKeyUpdateConfirm {
        sa_id,
        responder_keying_material: Some(material.into()),
        result: UpdateResult::Accepted,
        rejection_reason: None,
        fresh_kem_ciphertext: None,
    };
    for text in [
        format!("{req:?}"),
        format!("{cnf:?}"),
        format!("{:?}", onem2m_sa::message::ControlFlow::SaKeyUpdateRequest(req.clone())),
    ] {
        assert!(!text.contains("165") && !text.contains("a5") && !text.contains("A5"), "key material printed: {text}");
        assert!(text.contains("redacted"), "{text}");
    }
    // The wire form is unchanged: base64url.
    let json = serde_json::to_value(&req).unwrap();
    assert_eq!(json["nkm"], "paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU");
    let back: SaKeyUpdateRequest = serde_json::from_value(json).unwrap();
    assert_eq!(back, req);
}

#[test]
fn no_parameters_in_common_is_never_retried_with_a_smaller_offer() {
    // cr=1 travels unauthenticated: an Initiator that retried with a smaller offer would let
    // anyone on the path downgrade the suite. The SAM reports the failure and sends nothing more.
    let mut d = duo_with(
        Timing::default(),
        Limits::default(),
        None,
        &[Suite::X25519_AES256GCM_SHA384, Suite::X25519_AES128GCM_SHA256],
        &[Suite::MLKEM768_AES256GCM_SHA384],
    );
    let p = &mut d.p;
    let ex = p.initiator.initiate(&request(), p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(100);
    assert_eq!(p.wire.len(), 2, "one SaInit, one SaInitReply, nothing after");
    assert!(
        matches!(
            p.initiator_events.as_slice(),
            [InitiatorEvent::EstablishFailed { error: EstablishError::NoParametersInCommon, .. }]
        ),
        "{:?}",
        p.initiator_events
    );
    assert_eq!(p.initiator.in_flight(), 0);
    p.advance(600_000);
    p.run(100);
    assert_eq!(p.wire.len(), 2);
}

#[test]
fn live_by_peer_is_the_newest_active_sa() {
    let mut d = duo(Timing::default(), Limits::default(), None);
    let peer = "/id-in".parse().unwrap();
    assert!(d.it.live_by_peer(&peer).is_none());
    let a = establish(&mut d.p);
    d.p.advance(1_000);
    let b = establish(&mut d.p);
    assert_eq!(d.it.live_by_peer(&peer).unwrap().sa_id(), b);
    assert_eq!(d.it.by_peer(&peer).iter().map(|e| e.sa_id()).collect::<Vec<_>>(), [a, b]);
    d.it.remove(b);
    assert_eq!(d.it.live_by_peer(&peer).unwrap().sa_id(), a);
    // Renamed: still found, under its new identifier.
    d.p.advance(5_000);
    let c = update(&mut d.p, a, UpdateOperation::Identifier);
    let a2 = c.new_sa_id.unwrap();
    assert_eq!(d.it.live_by_peer(&peer).unwrap().sa_id(), a2);
    d.it.remove(a2);
    assert!(d.it.live_by_peer(&peer).is_none() && d.it.by_peer(&peer).is_empty());
}

#[test]
fn key_updates_with_a_fresh_kem_exchange_work_on_every_suite() {
    for suite in Suite::ALL {
        let mut d = duo_with(Timing::default(), Limits::default(), None, &[suite], &Suite::ALL);
        d.p.initiator.set_fresh_kem_key_updates(true);
        let sa_id = establish(&mut d.p);
        for _ in 0..2 {
            d.p.advance(5_000);
            let c = update(&mut d.p, sa_id, UpdateOperation::Keys);
            assert_eq!(c.result, UpdateResult::Accepted, "{}: {:?}", suite.name(), last_update(&d.p).1);
            same_keys(&d.p, sa_id);
            round_trip(&d, sa_id).unwrap();
        }
        d.p.advance(5_000);
        let c = update(&mut d.p, sa_id, UpdateOperation::IdentifierAndKeys);
        assert_eq!(c.result, UpdateResult::Accepted, "{}", suite.name());
        same_keys(&d.p, c.new_sa_id.unwrap());
    }
}

#[test]
fn a_full_responder_makes_room_from_expired_sas_before_refusing() {
    let mut d = duo(Timing::default(), Limits { max_sas: 1, ..Limits::default() }, Some(LIFETIME_SECS));
    let old = establish(&mut d.p);
    // Past the expiry, before any timer ran: the next establishment is not refused Busy.
    d.p.now = d.p.now.after_ms((LIFETIME_SECS + 1) * 1000);
    let new = establish(&mut d.p);
    assert_ne!(new, old);
    assert!(d.p.responder.sa(old).is_none() && d.rt.get(old).is_none());
    assert!(d.p.responder_events.iter().any(|e| matches!(e, ResponderEvent::SaRemoved(r) if r.sa_id == old)));
}

#[test]
fn removing_or_expiring_an_sa_ends_its_update_in_flight() {
    let mut d = duo(Timing::default(), Limits::default(), Some(LIFETIME_SECS));
    let a = establish(&mut d.p);
    let b = establish(&mut d.p);
    d.p.advance(5_000);
    let update = |p: &mut Pair, sa_id| {
        p.initiator.update(
            &UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::Keys },
            p.now,
            &mut p.rng,
        )
    };
    let ua = update(&mut d.p, a).unwrap();
    let ub = update(&mut d.p, b).unwrap();
    assert!(d.p.initiator.is_pending(ua.id) && d.p.initiator.is_pending(ub.id));
    d.p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: a }), d.p.now).unwrap();
    assert!(!d.p.initiator.is_pending(ua.id), "an update of a removed SA is still in flight");
    // A stale answer to it is ignored, and no resend is asked for.
    assert!(d.p.initiator.handle_response(ua.id, b"{}", d.p.now, &mut d.p.rng).is_empty());
    d.p.now = d.p.now.after_ms((LIFETIME_SECS + 1) * 1000);
    d.p.initiator.expire(d.p.now);
    assert!(!d.p.initiator.is_pending(ub.id), "an update of an expired SA is still in flight");
}

/// The Responder remembers the nonces of the SaInits it admitted (a replayed SaInit is dropped)
/// for a tombstone period, but at most 16 × `max_half_open` of them (here 32): more
/// establishments than that within one period are served, the oldest nonces forgotten first.
/// Before, the full record answered every SaInit Busy until nonces aged out — a ceiling of
/// 65,536 establishments per five minutes (≈ 218/s) per node with the default limits.
#[test]
fn establishments_past_the_nonce_record_are_served() {
    let limits = Limits { max_half_open: 2, max_half_open_per_peer: 2, ..Limits::default() };
    let mut d = duo(Timing::default(), limits, None);
    for i in 0..100 {
        d.p.advance(1_000);
        establish(&mut d.p);
        let f = d.p.responder.footprint();
        assert!(f.nonces <= 32, "establishment {i}: {f:?}");
    }
    // The newest nonces are still remembered: a copy of the last SaInit is dropped as a replay.
    let inits: Vec<Vec<u8>> =
        d.p.wire
            .iter()
            .filter(|(to_r, bytes)| *to_r && matches!(Message::decode(bytes), Ok(Message::Init(_))))
            .map(|(_, bytes)| bytes.clone())
            .collect();
    assert!(inits.len() >= 100);
    let out = d.p.responder.handle(inits.last().unwrap(), d.p.now, &mut d.p.rng, d.p.agent.as_mut());
    assert_eq!(out.dropped, Some(DropReason::Replayed));
}
