//! Capability negotiation at establishment (docs/protocol.md §3.2): `cap` in `SaInit` and
//! `SaInitReply`, in the transcript, recorded on the SA; peers of the previous version (no
//! member) have none; unknown codes are ignored; key updates run a fresh KEM exchange by
//! default exactly when `kem-update` was negotiated.

use std::sync::Arc;

use onem2m_sa::capability::Capabilities;
use onem2m_sa::credential::Credentials;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::*;
use onem2m_sa::flows::*;
use onem2m_sa::manage::{InitiatorEvent, KemUpdatePolicy};
use onem2m_sa::message::*;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::testkit::{Pair, TestPki, initiator_config, responder_config};
use onem2m_sa::{EstablishError, Now, SaId};
use serde_json::Value;

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };
const SUITE: [Suite; 1] = [Suite::X25519_AES128GCM_SHA256];

struct World {
    pki: TestPki,
    i: Arc<Credentials>,
    r: Arc<Credentials>,
    rng: SeededRng,
}

fn world() -> World {
    let mut rng = SeededRng::new([7; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*", "/id-asn"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    World { pki, i, r, rng }
}

fn request(w: &World) -> InitiateSaRequest {
    InitiateSaRequest { initiator: w.i.node_id.clone(), responder: w.r.node_id.clone() }
}

/// Rewrites the JSON of a message: `f` gets the inner object (the member under the kind).
fn edit(bytes: &[u8], kind: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    f(v[kind].as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
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

/// What an establishment's messages look like and what each side recorded.
struct Run {
    init: Vec<u8>,
    reply: Vec<u8>,
    result: Result<(EstablishedSa, EstablishedSa), EstablishError>,
}

/// Runs the typestates by hand; `on_init` and `on_reply` play the path between them.
fn handshake(
    w: &mut World,
    initiator_caps: Capabilities,
    responder_caps: Capabilities,
    on_init: impl FnOnce(Vec<u8>) -> Vec<u8>,
    on_reply: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> Run {
    let mut ic = initiator_config(w.i.clone(), w.pki.anchors.clone(), &SUITE);
    ic.capabilities = initiator_caps;
    let mut rc = responder_config(w.r.clone(), w.pki.anchors.clone(), &SUITE);
    rc.capabilities = responder_caps;
    let (i, m1) = Initiator::start(ic, &request(w), &mut w.rng).unwrap();
    let m1 = on_init(m1);
    let sa_id = SaId::random(&mut w.rng);
    let acc = Responder::accept(rc, &mut AcceptAll, &decode_init(&m1), sa_id, &mut w.rng).unwrap();
    let m2 = on_reply(acc.reply.clone());
    let result = (|| {
        let (i, m3) = i.handle(&m2, T0, &mut w.rng)?;
        let (r_sa, m4, _) = acc.state.handle(&decode_auth(&m3), T0).map_err(|r| r.error)?;
        Ok((i.handle(&m4)?, r_sa))
    })();
    Run { init: m1, reply: acc.reply, result }
}

fn keep(b: Vec<u8>) -> Vec<u8> {
    b
}

#[test]
fn both_sides_record_the_capabilities_both_support() {
    let mut w = world();
    let run = handshake(&mut w, Capabilities::ALL, Capabilities::ALL, keep, keep);
    let init: Value = serde_json::from_slice(&run.init).unwrap();
    assert_eq!(init["init"]["cap"], serde_json::json!([1, 2]));
    let reply: Value = serde_json::from_slice(&run.reply).unwrap();
    assert_eq!(reply["initReply"]["cap"], serde_json::json!([1, 2]));
    let (i, r) = run.result.unwrap();
    assert_eq!((i.capabilities, r.capabilities), (Capabilities::ALL, Capabilities::ALL));

    // The Responder answers the intersection.
    let run = handshake(&mut w, Capabilities::ALL, Capabilities::COMPACT, keep, keep);
    let reply: Value = serde_json::from_slice(&run.reply).unwrap();
    assert_eq!(reply["initReply"]["cap"], serde_json::json!([1]));
    let (i, r) = run.result.unwrap();
    assert_eq!((i.capabilities, r.capabilities), (Capabilities::COMPACT, Capabilities::COMPACT));

    // Nothing in common: an explicit empty answer.
    let run = handshake(&mut w, Capabilities::KEM_UPDATE, Capabilities::COMPACT, keep, keep);
    let reply: Value = serde_json::from_slice(&run.reply).unwrap();
    assert_eq!(reply["initReply"]["cap"], serde_json::json!([]));
    let (i, r) = run.result.unwrap();
    assert_eq!((i.capabilities, r.capabilities), (Capabilities::NONE, Capabilities::NONE));
}

#[test]
fn an_initiator_of_the_previous_version_negotiates_nothing() {
    // A previous-version SaInit has no `cap`: the Responder's reply has none either (that
    // Initiator would refuse it as an unknown member), and the SA has no capability.
    let mut w = world();
    let run = handshake(&mut w, Capabilities::NONE, Capabilities::ALL, keep, keep);
    assert!(!String::from_utf8_lossy(&run.init).contains("\"cap\""), "no member when nothing is offered");
    assert!(!String::from_utf8_lossy(&run.reply).contains("\"cap\""), "no member in the answer");
    let (i, r) = run.result.unwrap();
    assert_eq!((i.capabilities, r.capabilities), (Capabilities::NONE, Capabilities::NONE));
}

#[test]
fn unknown_capability_codes_are_ignored() {
    // A later Initiator lists a code this version does not know. The Responder takes the
    // message, answers only what it knows, and both transcripts hold the list as sent.
    let mut w = world();
    let mut ic = initiator_config(w.i.clone(), w.pki.anchors.clone(), &SUITE);
    ic.capabilities = Capabilities::ALL;
    let (_, m1) = Initiator::start(ic, &request(&w), &mut w.rng).unwrap();
    let m1 = edit(&m1, "init", |o| {
        o.insert("cap".into(), serde_json::json!([2, 900, 1]));
    });
    let init = decode_init(&m1);
    assert_eq!(init.capabilities.as_deref(), Some(&[2, 900, 1][..]));
    let rc = responder_config(w.r.clone(), w.pki.anchors.clone(), &SUITE);
    let acc = Responder::accept(rc, &mut AcceptAll, &init, SaId::random(&mut w.rng), &mut w.rng).unwrap();
    let reply: Value = serde_json::from_slice(&acc.reply).unwrap();
    assert_eq!(reply["initReply"]["cap"], serde_json::json!([1, 2]));
    // A reply that lists a code the Initiator does not know (or did not offer) is not an error.
    let run = handshake(
        &mut w,
        Capabilities::COMPACT,
        Capabilities::ALL,
        keep,
        keep, // the honest Responder answers [1]
    );
    assert_eq!(run.result.unwrap().0.capabilities, Capabilities::COMPACT);
}

#[test]
fn a_cap_member_that_breaks_its_bounds_is_malformed() {
    let mut w = world();
    let ic = initiator_config(w.i.clone(), w.pki.anchors.clone(), &SUITE);
    let (_, m1) = Initiator::start(ic, &request(&w), &mut w.rng).unwrap();
    for bad in [serde_json::json!([1, 1]), serde_json::json!((0..17).collect::<Vec<u16>>()), serde_json::json!("1")] {
        let m = edit(&m1, "init", |o| {
            o.insert("cap".into(), bad.clone());
        });
        assert!(Message::decode(&m).is_err(), "{bad}");
    }
}

#[test]
fn stripping_or_changing_the_initiators_list_fails_the_establishment() {
    // An attacker who removes `kem-update` from SaInit (to keep the old key update) or strips
    // the member (to pass for a previous-version Initiator): the Responder signs a transcript
    // that differs from the Initiator's, so the Initiator refuses the Responder's signature.
    let mut w = world();
    let downgrade = |b: Vec<u8>| {
        edit(&b, "init", |o| {
            o.insert("cap".into(), serde_json::json!([1]));
        })
    };
    let run = handshake(&mut w, Capabilities::ALL, Capabilities::ALL, downgrade, keep);
    assert_eq!(run.result.unwrap_err(), EstablishError::BadAuthorizationCode);
    let strip = |b: Vec<u8>| {
        edit(&b, "init", |o| {
            o.remove("cap");
        })
    };
    let run = handshake(&mut w, Capabilities::ALL, Capabilities::ALL, strip, keep);
    assert_eq!(run.result.unwrap_err(), EstablishError::BadAuthorizationCode);
    // Adding a member to a previous-version SaInit fails the same way.
    let add = |b: Vec<u8>| {
        edit(&b, "init", |o| {
            o.insert("cap".into(), serde_json::json!([1, 2]));
        })
    };
    let run = handshake(&mut w, Capabilities::NONE, Capabilities::ALL, add, keep);
    assert_eq!(run.result.unwrap_err(), EstablishError::BadAuthorizationCode);
}

#[test]
fn stripping_or_changing_the_responders_answer_fails_the_establishment() {
    let mut w = world();
    for tamper in [
        (|o: &mut serde_json::Map<String, Value>| {
            o.insert("cap".into(), serde_json::json!([1]));
        }) as fn(&mut serde_json::Map<String, Value>),
        |o| {
            o.insert("cap".into(), serde_json::json!([]));
        },
        |o| {
            o.remove("cap");
        },
    ] {
        let run = handshake(&mut w, Capabilities::ALL, Capabilities::ALL, keep, |b| edit(&b, "initReply", tamper));
        assert_eq!(run.result.unwrap_err(), EstablishError::BadAuthorizationCode);
    }
}

/// Establishes through SAMs and runs one key update; returns whether its request carried `kpk`.
fn key_update_runs_a_fresh_kem(
    initiator_caps: Capabilities,
    responder_caps: Capabilities,
    policy: Option<KemUpdatePolicy>,
) -> bool {
    let w = world();
    let mut ic = initiator_config(w.i.clone(), w.pki.anchors.clone(), &SUITE);
    ic.capabilities = initiator_caps;
    let mut rc = responder_config(w.r.clone(), w.pki.anchors.clone(), &SUITE);
    rc.capabilities = responder_caps;
    let mut p = Pair::new(ic, rc, 3, T0);
    if let Some(policy) = policy {
        p.initiator.set_kem_update_policy(policy);
    }
    let ex = p.initiator.initiate(&request(&w), p.now, &mut w.rng.clone()).unwrap();
    p.send(ex);
    p.run(20);
    let sa_id = p.initiator.sas().next().expect("established").sa.sa_id;
    assert_eq!(p.initiator.sa(sa_id).unwrap().sa.capabilities, initiator_caps.intersection(responder_caps));
    assert_eq!(p.responder.sa(sa_id).unwrap().sa.capabilities, initiator_caps.intersection(responder_caps));
    p.advance(2_000); // past the Responder's minimum key age
    let update = UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::Keys };
    let ex = p.initiator.update(&update, p.now, &mut w.rng.clone()).unwrap();
    let kem = open_key_update(&ex.bytes);
    p.send(ex);
    p.run(20);
    assert!(
        p.initiator_events.iter().any(|e| matches!(e, InitiatorEvent::Updated { confirm, .. }
            if confirm.result == UpdateResult::Accepted)),
        "the update completes: {:?}",
        p.initiator_events
    );
    kem
}

/// Whether the sealed `sku` in `bytes` carries `kpk`: its plaintext is
/// `{"sku":{"sid":…,"nkm":…,"rkq":true}}`, 92 bytes, and `,"kpk":"<43 characters>"` adds 52
/// (an X25519 key).
fn open_key_update(bytes: &[u8]) -> bool {
    let Message::Control(env) = Message::decode(bytes).unwrap() else { panic!("an envelope") };
    match env.ciphertext.len() - 16 {
        92 => false,
        144 => true,
        other => panic!("unexpected sku plaintext length {other}"),
    }
}

#[test]
fn scheduled_key_updates_run_a_fresh_kem_exactly_when_negotiated() {
    // Default policy (auto): with a peer that negotiated kem-update, a fresh KEM exchange…
    assert!(key_update_runs_a_fresh_kem(Capabilities::ALL, Capabilities::ALL, None));
    // …with one that did not (a Responder without it, or an Initiator that offered nothing,
    // as a previous version does), the previous update, which that peer accepts.
    assert!(!key_update_runs_a_fresh_kem(Capabilities::ALL, Capabilities::COMPACT, None));
    assert!(!key_update_runs_a_fresh_kem(Capabilities::NONE, Capabilities::ALL, None));
    // The off switch, and the forced form for peers that took `kpk` before it was negotiated.
    assert!(!key_update_runs_a_fresh_kem(Capabilities::ALL, Capabilities::ALL, Some(KemUpdatePolicy::Off)));
    assert!(key_update_runs_a_fresh_kem(Capabilities::NONE, Capabilities::ALL, Some(KemUpdatePolicy::Always)));
}
