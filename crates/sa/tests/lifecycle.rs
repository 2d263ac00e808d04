//! Two peers in one process: establish, update (identifier, keys, both) and remove SAs, with
//! every suite and both signature algorithms, over perfect and lossy links.

use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::*;
use onem2m_sa::manage::{InitiatorEvent, ResponderEvent};
use onem2m_sa::message::Message;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::testkit::{Fault, Pair, TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

fn pair_with(suite: Suite, alg: SignatureAlgorithm, seed: u8) -> Pair {
    let mut rng = SeededRng::new([seed.wrapping_add(100); 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let i = pki.node("/id-asn", alg, &["C*", "/id-asn"], &mut rng);
    let r = pki.node("/id-in", alg, &["/id-in"], &mut rng);
    Pair::new(
        initiator_config(i, pki.anchors.clone(), &[suite]),
        responder_config(r, pki.anchors.clone(), &Suite::ALL),
        seed,
        T0,
    )
}

fn request() -> InitiateSaRequest {
    InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() }
}

/// Establishes one SA and returns its identifier.
fn establish(p: &mut Pair) -> SaId {
    let ex = p.initiator.initiate(&request(), p.now, &mut p.rng).expect("starts");
    p.send(ex);
    p.run(100);
    let confirm = p
        .initiator_events
        .iter()
        .rev()
        .find_map(|e| match e {
            InitiatorEvent::Established { confirm, .. } => Some(confirm.clone()),
            InitiatorEvent::EstablishFailed { error, .. } => panic!("establishment failed: {error}"),
            _ => None,
        })
        .expect("an Initiate SA confirm");
    confirm.validate().unwrap();
    let sa_id = confirm.security_association.unwrap().sa_id;
    assert!(p.responder_events.iter().any(|e| matches!(e,
        ResponderEvent::SaEstablishmentComplete(c) if c.sa_id == sa_id && c.result == EstablishResult::Success)));
    sa_id
}

fn last_update(p: &Pair) -> UpdateSaConfirm {
    p.initiator_events
        .iter()
        .rev()
        .find_map(|e| match e {
            InitiatorEvent::Updated { confirm, .. } => Some(confirm.clone()),
            _ => None,
        })
        .expect("an Update SA confirm")
}

fn update(p: &mut Pair, sa_id: SaId, operation: UpdateOperation) -> UpdateSaConfirm {
    p.advance(5_000); // past the minimum interval between key updates
    let ex =
        p.initiator.update(&UpdateSaRequest { existing_sa_id: sa_id, operation }, p.now, &mut p.rng).expect("starts");
    p.send(ex);
    p.run(100);
    let c = last_update(p);
    c.validate().unwrap();
    c
}

fn same_keys(p: &Pair, id: SaId) {
    let i = &p.initiator.sa(id).expect("initiator holds the SA").sa;
    let r = &p.responder.sa(id).expect("responder holds the SA").sa;
    assert_eq!(i.sa_id, r.sa_id);
    assert_eq!(i.keys.epoch, r.keys.epoch);
    assert_eq!(i.keys.i2r.key(), r.keys.i2r.key());
    assert_eq!(i.keys.r2i.iv(), r.keys.r2i.iv());
    assert_ne!(i.keys.i2r.key(), i.keys.r2i.key(), "one key per direction");
    assert_eq!(i.peer.as_str(), "/id-in");
    assert_eq!(r.peer.as_str(), "/id-asn");
}

#[test]
fn full_lifecycle_every_suite_and_signature() {
    for (n, suite) in Suite::ALL.into_iter().enumerate() {
        for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256] {
            let mut p = pair_with(suite, alg, n as u8);
            let id = establish(&mut p);
            same_keys(&p, id);
            assert_eq!(p.initiator.sa(id).unwrap().sa.suite, suite);

            let keys_before = p.initiator.sa(id).unwrap().sa.keys.i2r.key().to_vec();
            let c = update(&mut p, id, UpdateOperation::Keys);
            assert_eq!((c.result, c.new_sa_id), (UpdateResult::Accepted, None));
            same_keys(&p, id);
            assert_eq!(p.initiator.sa(id).unwrap().sa.keys.epoch, 1);
            assert_ne!(p.initiator.sa(id).unwrap().sa.keys.i2r.key(), keys_before.as_slice());

            let c = update(&mut p, id, UpdateOperation::Identifier);
            assert_eq!(c.result, UpdateResult::Accepted);
            let id2 = c.new_sa_id.expect("new identifier");
            assert_ne!(id2, id);
            same_keys(&p, id2);
            assert!(p.initiator.sa(id).is_none());

            let c = update(&mut p, id2, UpdateOperation::IdentifierAndKeys);
            assert_eq!(c.result, UpdateResult::Accepted);
            let id3 = c.new_sa_id.expect("new identifier");
            same_keys(&p, id3);
            assert_eq!(p.initiator.sa(id3).unwrap().sa.keys.epoch, 2);

            let ex =
                p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: id3 }), p.now).expect("removal starts");
            assert!(p.initiator.sa(id3).is_none(), "marked invalid at once");
            p.send(ex);
            p.run(100);
            assert!(matches!(p.initiator_events.last(), Some(InitiatorEvent::Removed(c))
                if c.0.result == UpdateResult::Accepted && c.0.sa_id == id3));
            assert!(p.responder.sa(id3).is_none());
            assert!(p.responder_events.iter().any(|e| matches!(e, ResponderEvent::SaRemoved(r) if r.sa_id == id3)));
            let updated: Vec<_> = p
                .responder_events
                .iter()
                .filter_map(|e| match e {
                    ResponderEvent::SaUpdated(u) => Some(u.operation),
                    _ => None,
                })
                .collect();
            assert_eq!(
                updated,
                [
                    SaUpdatedOperation::KeysUpdated,
                    SaUpdatedOperation::IdentifierUpdated,
                    SaUpdatedOperation::IdentifierUpdated,
                    // Table 41: the key half of "identifier and keys" reports both, old and new
                    // identifier.
                    SaUpdatedOperation::IdentifierAndKeysUpdated,
                ]
            );
            assert!(p.responder_events.iter().any(|e| matches!(e, ResponderEvent::SaUpdated(u)
                if u.operation == SaUpdatedOperation::IdentifierAndKeysUpdated
                    && u.existing_sa_id == id2 && u.new_sa_id == Some(id3))));
        }
    }
}

#[test]
fn both_challenge_kinds_both_ways() {
    for (ic, rc) in [
        (ChallengeKind::Encryption, ChallengeKind::Encryption),
        (ChallengeKind::Authentication, ChallengeKind::Authentication),
        (ChallengeKind::Encryption, ChallengeKind::Authentication),
        (ChallengeKind::Authentication, ChallengeKind::Encryption),
    ] {
        let mut rng = SeededRng::new([7; 32]);
        let pki = TestPki::new(&mut rng, T0.unix_secs);
        let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut rng);
        let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
        let mut icfg = initiator_config(i, pki.anchors.clone(), &[Suite::X25519_AES128GCM_SHA256]);
        icfg.responder_challenge = ic;
        let mut rcfg = responder_config(r, pki.anchors.clone(), &Suite::ALL);
        rcfg.initiator_challenge = rc;
        rcfg.explicit_context = Some("CSE /id-in serves the AEs registered with it".into());
        let mut p = Pair::new(icfg, rcfg, 3, T0);
        let id = establish(&mut p);
        same_keys(&p, id);
        // The message shapes follow the challenge kinds.
        let m3 = &p.wire.iter().filter(|(to_r, _)| *to_r).nth(1).unwrap().1;
        let Ok(Message::Auth(auth)) = Message::decode(m3) else { panic!("SaAuth expected") };
        assert_eq!(auth.responder_authorization_challenge.0.kind(), ic);
        assert_eq!(auth.initiator_authorization_challenge.0.response.is_some(), rc == ChallengeKind::Encryption);
        let m2 = &p.wire.iter().find(|(to_r, _)| !*to_r).unwrap().1;
        let Ok(Message::InitReply(reply)) = Message::decode(m2) else { panic!("SaInitReply expected") };
        assert!(reply.responder_authorization_context.is_some());
    }
}

#[test]
fn lossy_link_drop_duplicate_reorder() {
    type Plan = fn(usize) -> Fault;
    let plans: [(&str, Plan); 4] = [
        ("drop every third", |n| if n % 3 == 1 { Fault::Drop } else { Fault::Pass }),
        ("duplicate all", |_| Fault::Duplicate),
        ("reorder", |n| if n % 2 == 0 { Fault::Reorder } else { Fault::Pass }),
        ("drop the first reply", |n| if n == 1 { Fault::Drop } else { Fault::Pass }),
    ];
    for (name, plan) in plans {
        let mut p = pair_with(Suite::X25519_AES128GCM_SHA256, SignatureAlgorithm::Ed25519, 9);
        p.set_faults(move |n, _| plan(n));
        let id = establish(&mut p);
        same_keys(&p, id);
        let c = update(&mut p, id, UpdateOperation::IdentifierAndKeys);
        assert_eq!(c.result, UpdateResult::Accepted, "{name}");
        same_keys(&p, c.new_sa_id.unwrap());
        assert_eq!(p.responder.sas().count(), 1, "{name}: no duplicate SA");
    }
}

#[test]
fn retransmissions_are_byte_identical_and_answered_identically() {
    let mut p = pair_with(Suite::X25519_AES128GCM_SHA256, SignatureAlgorithm::EcdsaP256Sha256, 4);
    // Lose the first SaInitReply and the first SaAuthReply.
    p.set_faults(|n, _| if n == 1 || n == 5 { Fault::Drop } else { Fault::Pass });
    establish(&mut p);
    let to_r: Vec<&Vec<u8>> = p.wire.iter().filter(|(to_r, _)| *to_r).map(|(_, b)| b).collect();
    let to_i: Vec<&Vec<u8>> = p.wire.iter().filter(|(to_r, _)| !*to_r).map(|(_, b)| b).collect();
    assert_eq!(to_r.len(), 4, "SaInit twice, SaAuth twice");
    assert_eq!(to_r[0], to_r[1], "SaInit resent byte for byte");
    assert_eq!(to_r[2], to_r[3], "SaAuth resent byte for byte (ECDSA would sign differently)");
    assert_eq!(to_i.len(), 2, "the delivered replies");
    assert_eq!(p.responder.sas().count(), 1);
}

/// The Responder answers a retransmitted SaAuth with the reply that established the SA only as
/// long as the Initiator may still retransmit it (its half-open time): the reply is not kept for
/// the SA's lifetime (issue 16: it was most of the SA Management record's memory). Later, a copy
/// is dropped as a replay.
#[test]
fn the_establishment_reply_is_kept_for_retransmissions_only() {
    let mut p = pair_with(Suite::X25519_AES128GCM_SHA256, SignatureAlgorithm::Ed25519, 14);
    establish(&mut p);
    let sa_auth = p.wire.iter().filter(|(to_r, _)| *to_r).map(|(_, b)| b.clone()).nth(1).expect("an SaAuth");
    let reply = p.wire.iter().filter(|(to_r, _)| !*to_r).map(|(_, b)| b.clone()).nth(1).expect("an SaAuthReply");
    let mut agent = onem2m_sa::establish::AcceptAll;
    // A retransmission within the Initiator's window gets the same reply.
    p.advance(5_000);
    let out = p.responder.handle(&sa_auth, p.now, &mut p.rng, &mut agent);
    assert_eq!(out.reply.as_ref(), Some(&reply));
    // Past it, the reply is gone: a copy is a replay.
    p.advance(onem2m_sa::manage::Timing::default().half_open_ms);
    let out = p.responder.handle(&sa_auth, p.now, &mut p.rng, &mut agent);
    assert_eq!(out.reply, None);
    assert!(out.dropped.is_some());
    assert_eq!(p.responder.sas().count(), 1, "the SA stays");
}

#[test]
fn initiator_times_out_and_responder_expires_half_open() {
    let mut p = pair_with(Suite::X25519_AES128GCM_SHA256, SignatureAlgorithm::Ed25519, 5);
    p.set_faults(|n, _| if n == 0 { Fault::Pass } else { Fault::Drop });
    let ex = p.initiator.initiate(&request(), p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(100);
    assert!(matches!(p.initiator_events.last(), Some(InitiatorEvent::EstablishFailed { confirm, .. })
        if confirm.cause == Some(RejectionCause::Timeout)));
    assert_eq!(p.responder.half_open(), 1);
    p.advance(60_000);
    assert_eq!(p.responder.half_open(), 0);
    assert!(matches!(p.responder_events.last(), Some(ResponderEvent::SaEstablishmentComplete(c))
        if c.failure_cause == Some(EstablishmentFailureCause::Timeout)));
}

#[test]
fn grace_period_keeps_the_old_identifier_then_forgets_it() {
    let mut p = pair_with(Suite::X25519_AES256GCM_SHA384, SignatureAlgorithm::Ed25519, 6);
    let id = establish(&mut p);
    let new = update(&mut p, id, UpdateOperation::Identifier).new_sa_id.unwrap();
    assert_eq!(p.responder.sa(id).map(|r| r.sa.sa_id), Some(new), "old identifier still resolves");
    assert_eq!(p.initiator.sa(new).unwrap().previous.as_ref().unwrap().sa_id, id);
    p.advance(31_000);
    assert!(p.responder.sa(id).is_none(), "old identifier forgotten after the grace period");
    assert!(p.initiator.sa(new).unwrap().previous.is_none());
}
