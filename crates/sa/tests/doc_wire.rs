//! Pins the behaviour `docs/protocol.md` §3 ("Versions and unknown members") promises a peer
//! implementer: what a version-1 node does with another version, with members it does not know,
//! with duplicates; and which JWE header members it ignores or refuses.

use aws_lc_rs::aead;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use onem2m_primitive::ResponseStatusCode as Rsc;
use onem2m_sa::credential::Ticket;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::AcceptAll;
use onem2m_sa::manage::{DropReason, Limits, ResponderSam, Timing};
use onem2m_sa::message::{ControlFlow, DecodeError, Message};
use onem2m_sa::replay::DEFAULT_WINDOW;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::secure::{Epoch, decode_compact, decode_jwe};
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::{TestPki, linked, responder_config};
use onem2m_sa::{Now, Role};
use serde_json::{Value, json};

const NOW: Now = Now { mono_ms: 0, unix_secs: 1_800_000_000 };

/// A well-formed SaInit, as JSON to edit.
fn init() -> Value {
    json!({"init":{"v":1,"ini":"/id-asn","rsp":"/id-in","spe":{"pss":[1]},
        "ksh":[{"kem":1,"pk":"GKelPZFAzo7i9BZ6Ye-sbp4JXL-0F844-G4iU3YGnj0"}],
        "nci":"epdqtnATLGIhpSuPWe3L9BqZK9Csu58NE_Fe5r_ISGI"}})
}

fn decode(v: &Value) -> Result<Message, DecodeError> {
    Message::decode(v.to_string().as_bytes())
}

fn responder() -> ResponderSam {
    let mut rng = SeededRng::new([0x5a; 32]);
    let pki = TestPki::new(&mut rng, NOW.unix_secs);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    ResponderSam::new(
        responder_config(r, pki.anchors.clone(), &[Suite::X25519_AES128GCM_SHA256]),
        Timing::default(),
        Limits::default(),
    )
}

#[test]
fn a_version_1_node_answers_nothing_to_another_version() {
    assert!(decode(&init()).is_ok(), "the base message is valid");
    for v in [0, 2, 255] {
        let mut m = init();
        m["init"]["v"] = v.into();
        assert_eq!(decode(&m).unwrap_err(), DecodeError::UnsupportedVersion(v as u8));
        let out = responder().handle(m.to_string().as_bytes(), NOW, &mut SeededRng::new([1; 32]), &mut AcceptAll);
        assert!(out.reply.is_none(), "no SA message in answer to version {v}");
        assert_eq!(out.dropped, Some(DropReason::Decode(DecodeError::UnsupportedVersion(v as u8))));
        assert_eq!(out.dropped.unwrap().to_string(), format!("unsupported protocol version {v}"));
    }
    // A version that does not fit a byte, or is not a number, is not a message at all.
    for v in [json!(256), json!("1"), json!(1.5), Value::Null] {
        let mut m = init();
        m["init"]["v"] = v;
        assert_eq!(decode(&m).unwrap_err(), DecodeError::Malformed);
    }
    // A version-2 message that also carries a member version 1 does not know is malformed:
    // members are checked before the version.
    let mut m = init();
    m["init"]["v"] = 2.into();
    m["init"]["new"] = 1.into();
    assert_eq!(decode(&m).unwrap_err(), DecodeError::Malformed);
}

#[test]
fn unknown_and_duplicate_members_are_refused_everywhere() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("message kind", Box::new(|m| *m = json!({"hello": m["init"].clone()}))),
        ("second kind", Box::new(|m| m["auth"] = m["init"].clone())),
        ("message member", Box::new(|m| m["init"]["x"] = 1.into())),
        ("flow member", Box::new(|m| m["init"]["spe"]["x"] = 1.into())),
        ("key share member", Box::new(|m| m["init"]["ksh"][0]["x"] = 1.into())),
    ];
    for (what, edit) in edits {
        let mut m = init();
        edit(&mut m);
        assert_eq!(decode(&m).unwrap_err(), DecodeError::Malformed, "{what}");
    }
    let dup = init().to_string().replace(r#""v":1,"#, r#""v":1,"v":1,"#);
    assert_eq!(Message::decode(dup.as_bytes()).unwrap_err(), DecodeError::Malformed, "duplicate member");
    // Inside a ticket and inside a sealed control flow too.
    let ticket = json!({"v":1,"iss":"/a","sub":"/b","alg":"Ed25519","pk":B64.encode([0u8; 32]),
        "ctx":{"orig":["/b"]},"nbf":0,"exp":1,"sig":B64.encode([0u8; 64])});
    assert!(Ticket::from_json(&ticket.to_string()).is_ok());
    let mut t = ticket.clone();
    t["x"] = 1.into();
    assert!(Ticket::from_json(&t.to_string()).is_err());
    assert!(serde_json::from_str::<ControlFlow>(r#"{"ack":{"seq":1}}"#).is_ok());
    assert!(serde_json::from_str::<ControlFlow>(r#"{"ack":{"seq":1,"x":1}}"#).is_err());
    assert!(serde_json::from_str::<ControlFlow>(r#"{"nack":{"seq":1}}"#).is_err());
}

/// Seals `plaintext` as a JWE under the Initiator's i2r keys with a hand-written header.
fn jwe(keys: &onem2m_sa::schedule::SessionKeys, header: &str, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let h = B64.encode(header);
    let mut nonce = *keys.i2r.iv();
    for (b, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, keys.i2r.key()).unwrap());
    let mut body = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(h.as_bytes()), &mut body)
        .unwrap();
    format!("{h}..{}.{}.{}", B64.encode(nonce), B64.encode(&body), B64.encode(tag.as_ref())).into_bytes()
}

#[test]
fn jwe_header_members_beyond_the_known_ones_are_ignored_but_crit_and_zip_refused() {
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 7, NOW);
    let keys = l.pair.initiator.sa(l.sa_id).unwrap().sa.keys.clone();
    let receiver = Epoch::new(Suite::X25519_AES128GCM_SHA256, &keys, Role::Responder, DEFAULT_WINDOW);
    let kid = l.sa_id.to_b64();
    let mut scratch = Vec::new();
    let mut open = |header: String, seq: u64| {
        let wire = jwe(&keys, &header, seq, b"{}");
        decode_jwe(&wire, &mut scratch).and_then(|s| receiver.open(s).map(|p| p.to_vec()))
    };
    let plain = format!(r#"{{"alg":"dir","enc":"A128GCM","kid":"{kid}","seq":0,"kp":0}}"#);
    assert_eq!(open(plain, 0).unwrap(), b"{}");
    // Unknown members (and a missing `kp`, which means 0) are accepted: the header is covered by
    // the tag as it was sent.
    let extra = format!(r#"{{"typ":"x","alg":"dir","enc":"A128GCM","kid":"{kid}","seq":1,"cty":"json"}}"#);
    assert_eq!(open(extra, 1).unwrap(), b"{}");
    for (member, seq) in [(r#""crit":["exp"]"#, 2), (r#""zip":"DEF""#, 3)] {
        let h = format!(r#"{{"alg":"dir","enc":"A128GCM","kid":"{kid}","seq":{seq},{member}}}"#);
        assert_eq!(open(h, seq).unwrap_err().rsc(), Rsc::ESPRIM_UNSUPPORTED_OPTION, "{member}");
    }
    for (header, rsc) in [
        (r#"{"alg":"A128KW","enc":"A128GCM","kid":"KID","seq":4}"#, Rsc::ESPRIM_UNSUPPORTED_OPTION),
        (r#"{"alg":"dir","enc":"A192GCM","kid":"KID","seq":4}"#, Rsc::ESPRIM_UNSUPPORTED_OPTION),
        (r#"{"alg":"dir","enc":"A128GCM","kid":"KID","seq":4,"kp":2}"#, Rsc::ESPRIM_UNSUPPORTED_OPTION),
        (r#"{"alg":"dir","enc":"A128GCM","kid":"KID"}"#, Rsc::BAD_REQUEST),
    ] {
        assert_eq!(open(header.replace("KID", &kid), 4).unwrap_err().rsc(), rsc, "{header}");
    }
}

#[test]
fn compact_versions_and_suites_other_than_known_are_unsupported() {
    let mut ok = vec![0x41u8];
    ok.extend_from_slice(&[0; 8]);
    ok.push(0);
    ok.extend_from_slice(&[0; 16]);
    assert!(decode_compact(&mut ok.clone()).is_ok());
    // byte 0 = version (bits 7..5) | key phase (bit 4) | suite (bits 3..0).
    // Version 1 (0x21: the JSON plaintext of earlier builds) is refused like any other.
    for first in [0x21u8, 0x61, 0x01, 0xe1, 0x40, 0x45, 0x4f] {
        let mut m = ok.clone();
        m[0] = first;
        assert_eq!(decode_compact(&mut m).unwrap_err().rsc(), Rsc::ESPRIM_UNSUPPORTED_OPTION, "{first:#04x}");
    }
    let mut m = ok.clone();
    m[0] = 0x54;
    let s = decode_compact(&mut m).unwrap();
    assert_eq!((s.header.key_phase, s.header.aead), (1, Suite::X25519MLKEM768_AES256GCM_SHA384.aead()));
}

/// §3.2: `cr = 1` is unauthenticated, so the Initiator ends the establishment and sends nothing
/// more — no retry with another offer.
#[test]
fn no_parameters_in_common_ends_the_establishment_without_a_retry() {
    use onem2m_sa::establish::EstablishError;
    use onem2m_sa::flows::InitiateSaRequest;
    use onem2m_sa::manage::{InitiatorEvent, InitiatorSam};
    use onem2m_sa::testkit::initiator_config;

    let mut rng = SeededRng::new([0x5a; 32]);
    let pki = TestPki::new(&mut rng, NOW.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["/id-asn"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let mut ini = InitiatorSam::new(
        initiator_config(
            i.clone(),
            pki.anchors.clone(),
            &[Suite::X25519_AES128GCM_SHA256, Suite::X25519_AES256GCM_SHA384],
        ),
        Timing::default(),
    );
    let mut rsp = ResponderSam::new(
        responder_config(r.clone(), pki.anchors.clone(), &[Suite::MLKEM768_AES256GCM_SHA384]),
        Timing::default(),
        Limits::default(),
    );
    let ex = ini
        .initiate(&InitiateSaRequest { initiator: i.node_id.clone(), responder: r.node_id.clone() }, NOW, &mut rng)
        .unwrap();
    let reply = rsp.handle(&ex.bytes, NOW, &mut rng, &mut AcceptAll).reply.unwrap();
    let v: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["initReply"]["spe"], json!({"rs": 2, "cr": 1}));
    let events = ini.handle_response(ex.id, &reply, NOW, &mut rng);
    assert!(matches!(
        events.as_slice(),
        [InitiatorEvent::EstablishFailed { error: EstablishError::NoParametersInCommon, .. }]
    ));
    assert_eq!(events.len(), 1, "no new SaInit");
    assert_eq!(ini.poll_timeout(), None, "nothing left to send");
    assert!(ini.handle_timeout(NOW.after_ms(60_000)).is_empty(), "no retransmission either");
}
