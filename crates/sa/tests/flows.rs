//! One test per information flow of tables 23–44: a valid instance round-trips through its JSON
//! encoding, and each NOTE (and M column) is enforced when decoding.

use onem2m_sa::crypto::SignatureAlgorithm;
use onem2m_sa::flows::{self, *};
use onem2m_sa::rng::SeededRng;
use onem2m_sa::testkit::TestPki;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

const SID: &str = "AQIDBAUGBwg"; // 8 bytes, base64url
const SID2: &str = "CAcGBQQDAgE";
const B32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // 32 bytes

fn ticket() -> Value {
    let mut rng = SeededRng::new([5; 32]);
    let pki = TestPki::new(&mut rng, 1_800_000_000);
    let creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    serde_json::from_str(&creds.ticket.to_json()).unwrap()
}

/// `valid` decodes, re-encodes to the same JSON, and each of `invalid` is refused.
fn check<F: Flow + Serialize + DeserializeOwned + std::fmt::Debug + PartialEq>(
    valid: Value,
    invalid: &[(&str, Value)],
) {
    let bytes = serde_json::to_vec(&valid).unwrap();
    let flow: F = flows::decode(&bytes).unwrap_or_else(|e| panic!("{}: valid example refused: {e}", F::NAME));
    let again = flows::encode(&flow).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&again).unwrap(), valid, "{} round trip", F::NAME);
    for (why, bad) in invalid {
        let r = flows::decode::<F>(&serde_json::to_vec(bad).unwrap());
        assert!(r.is_err(), "{}: accepted although {why}", F::NAME);
    }
}

fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut v = base.clone();
    v[key] = value;
    v
}

fn without(base: &Value, key: &str) -> Value {
    let mut v = base.clone();
    v.as_object_mut().unwrap().remove(key);
    v
}

#[test]
fn table_23_initiate_sa() {
    let req = json!({"ini": "/id-asn", "rsp": "/id-in"});
    check::<InitiateSaRequest>(
        req.clone(),
        &[
            ("the responder is missing (M)", without(&req, "rsp")),
            ("initiator and responder are the same node", with(&req, "rsp", json!("/id-asn"))),
            ("an unknown element", with(&req, "zz", json!(1))),
        ],
    );
    let ok = json!({"rs": 1, "sa": {"sid": SID, "ste": 1}});
    let failed = json!({"rs": 2, "cr": 1});
    check::<InitiateSaConfirm>(
        ok.clone(),
        &[
            ("NOTE 1: success without the SA", without(&ok, "sa")),
            ("NOTE 2: success with a cause", with(&ok, "cr", json!(2))),
            ("an unknown result code", with(&ok, "rs", json!(3))),
        ],
    );
    check::<InitiateSaConfirm>(
        failed.clone(),
        &[
            ("NOTE 2: failure without a cause", without(&failed, "cr")),
            ("NOTE 1: failure with an SA", with(&failed, "sa", json!({"sid": SID, "ste": 1}))),
            ("an unknown cause", with(&failed, "cr", json!(99))),
        ],
    );
    check::<InitiateSaConfirm>(json!({"rs": 2, "cr": 2}), &[]);
}

#[test]
fn table_24_initiate_sa_received() {
    let req = json!({"ini": "/id-asn", "sid": SID});
    check::<InitiateSaReceivedRequest>(
        req.clone(),
        &[
            ("the SA identifier is missing (M)", without(&req, "sid")),
            ("an SA identifier of the wrong length", with(&req, "sid", json!("AQID"))),
        ],
    );
    let rejected = json!({"sid": SID, "rs": 2, "cr": 2});
    check::<InitiateSaReceivedConfirm>(
        rejected.clone(),
        &[
            ("NOTE: rejected without a cause", without(&rejected, "cr")),
            ("a cause other than Administrative reasons", with(&rejected, "cr", json!(1))),
            ("NOTE: accepted with a cause", with(&rejected, "rs", json!(1))),
        ],
    );
    check::<InitiateSaReceivedConfirm>(json!({"sid": SID, "rs": 1}), &[]);
}

#[test]
fn table_25_sa_parameter_establishment() {
    let req = json!({"pss": [4, 1, 700]});
    check::<SaParameterEstablishmentRequest>(
        req.clone(),
        &[
            ("no possible SA (M)", json!({"pss": []})),
            ("a suite offered twice", json!({"pss": [1, 1]})),
            ("more than 16 suites", json!({"pss": (1..=17).collect::<Vec<u16>>()})),
        ],
    );
    let ok = json!({"rs": 1, "sa": 1, "sid": SID});
    check::<SaParameterEstablishmentConfirm>(
        ok.clone(),
        &[
            ("NOTE 1: success without the identifier", without(&ok, "sid")),
            ("NOTE 1: success without the SA", without(&ok, "sa")),
            ("NOTE 2: success with a cause", with(&ok, "cr", json!(1))),
        ],
    );
    let failed = json!({"rs": 2, "cr": 1});
    check::<SaParameterEstablishmentConfirm>(
        failed.clone(),
        &[
            ("NOTE 2: failure without a cause", without(&failed, "cr")),
            ("NOTE 1: failure with an identifier", with(&failed, "sid", json!(SID))),
        ],
    );
}

fn key_announcement() -> Value {
    json!({"sid": SID, "ek": B32, "kat": ticket()})
}

#[test]
fn table_26_send_responder_key() {
    let v = key_announcement();
    let invalid = [
        ("NOTE 1: neither key nor reference", without(&v, "ek")),
        ("the ticket is missing (M)", without(&v, "kat")),
        ("a key reference that is not a digest", with(&without(&v, "ek"), "ekr", json!("AQID"))),
    ];
    check::<SendResponderKey>(v.clone(), &invalid);
    check::<SendResponderKey>(with(&without(&v, "ek"), "ekr", json!(B32)), &[]);
}

#[test]
fn table_28_send_initiator_key() {
    let v = key_announcement();
    check::<SendInitiatorKey>(v.clone(), &[("NOTE 1: neither key nor reference", without(&v, "ek"))]);
}

#[test]
fn tables_27_and_29_keying_material() {
    let req = json!({"sid": SID, "km": B32});
    let cnf = json!({"sid": SID, "rsp": B32});
    check::<InitiatorKeyingMaterialRequest>(req.clone(), &[("no keying material (M)", without(&req, "km"))]);
    check::<InitiatorKeyingMaterialConfirm>(cnf.clone(), &[("no response (M)", without(&cnf, "rsp"))]);
    check::<ResponderKeyingMaterialRequest>(req.clone(), &[("empty keying material", with(&req, "km", json!("")))]);
    check::<ResponderKeyingMaterialConfirm>(cnf.clone(), &[("no identifier (M)", without(&cnf, "sid"))]);
}

#[test]
fn table_30_send_responder_authorization_context() {
    let by_ref = json!({"sid": SID, "atk": {"ref": B32}, "ecd": "all AEs of /id-in"});
    check::<SendResponderAuthorizationContext>(
        by_ref.clone(),
        &[
            ("NOTE 1: a ticket reference and no context at all", without(&by_ref, "ecd")),
            ("no ticket (M)", without(&by_ref, "atk")),
            ("both ticket and reference", with(&by_ref, "atk", json!({"ref": B32, "tkt": ticket()}))),
        ],
    );
    // A full ticket that holds a context satisfies NOTE 1 without a description.
    check::<SendResponderAuthorizationContext>(json!({"sid": SID, "atk": {"tkt": ticket()}}), &[]);
    check::<SendResponderAuthorizationContext>(json!({"sid": SID, "atk": {"ref": B32}, "cdr": "urn:example:ctx"}), &[]);
}

fn authorization_key() -> Value {
    json!({"sid": SID, "ekr": B32, "atr": B32, "acd": B32})
}

#[test]
fn table_31_send_responder_authorization_key() {
    let v = authorization_key();
    check::<SendResponderAuthorizationKey>(
        v.clone(),
        &[
            ("NOTE 1: no key or key reference", without(&v, "ekr")),
            ("NOTE 2: no ticket or ticket reference", without(&v, "atr")),
            ("NOTE 3: no authorization code", without(&v, "acd")),
        ],
    );
    check::<SendResponderAuthorizationKey>(with(&without(&v, "atr"), "atk", ticket()), &[]);
}

#[test]
fn table_33_send_initiator_authorization_key() {
    let v = authorization_key();
    check::<SendInitiatorAuthorizationKey>(
        v.clone(),
        &[("NOTE 1", without(&v, "ekr")), ("NOTE 2", without(&v, "atr")), ("NOTE 3", without(&v, "acd"))],
    );
}

fn challenges<Req, Cnf>()
where
    Req: Flow + Serialize + DeserializeOwned + std::fmt::Debug + PartialEq,
    Cnf: Flow + Serialize + DeserializeOwned + std::fmt::Debug + PartialEq,
{
    let enc = json!({"sid": SID, "ech": B32});
    check::<Req>(
        enc.clone(),
        &[
            ("NOTE 1: neither challenge", without(&enc, "ech")),
            ("NOTE 1: both challenges", with(&enc, "ach", json!(B32))),
            ("an authentication challenge too short", json!({"sid": SID, "ach": "AQID"})),
        ],
    );
    check::<Req>(json!({"sid": SID, "ach": B32}), &[]);
    let resp = json!({"sid": SID, "rsp": B32});
    check::<Cnf>(resp.clone(), &[("NOTE 2/3: neither a response nor a code", without(&resp, "rsp"))]);
    let code = json!({"sid": SID, "atk": {"ref": B32}, "acd": B32});
    check::<Cnf>(
        code.clone(),
        &[
            ("NOTE 3: a code without a ticket", without(&code, "atk")),
            ("NOTE 3: a ticket without a code", without(&code, "acd")),
        ],
    );
}

#[test]
fn table_32_responder_authorization_challenge() {
    challenges::<ResponderAuthorizationChallengeRequest, ResponderAuthorizationChallengeConfirm>();
}

#[test]
fn table_34_initiator_authorization_challenge() {
    challenges::<InitiatorAuthorizationChallengeRequest, InitiatorAuthorizationChallengeConfirm>();
}

#[test]
fn challenge_confirm_must_fit_its_request() {
    let sid = onem2m_sa::SaId([1, 2, 3, 4, 5, 6, 7, 8]);
    let enc = ChallengeRequest { sa_id: sid, encryption_challenge: Some(vec![1; 32]), authentication_challenge: None };
    let auth = ChallengeRequest { sa_id: sid, encryption_challenge: None, authentication_challenge: Some(vec![1; 32]) };
    let by_response = ChallengeConfirm {
        sa_id: sid,
        response: Some(vec![2; 32]),
        authorization_ticket: None,
        authorization_code: None,
    };
    let by_code = ChallengeConfirm {
        sa_id: sid,
        response: None,
        authorization_ticket: Some(TicketElement { ticket: None, reference: Some(vec![0; 32]) }),
        authorization_code: Some(vec![3; 64]),
    };
    assert!(by_response.validate_against(&enc, "t").is_ok());
    assert!(by_code.validate_against(&enc, "t").is_err(), "NOTE 2: an encryption challenge needs a Response");
    assert!(by_code.validate_against(&auth, "t").is_ok());
    assert!(
        by_response.validate_against(&auth, "t").is_err(),
        "NOTE 3: an authentication challenge needs ticket and code"
    );
}

#[test]
fn table_35_sa_establishment_complete() {
    let failed = json!({"sid": SID, "rs": 2, "fc": 1});
    check::<SaEstablishmentComplete>(
        failed.clone(),
        &[
            ("NOTE: failure without a cause", without(&failed, "fc")),
            ("NOTE: success with a cause", with(&failed, "rs", json!(1))),
        ],
    );
    check::<SaEstablishmentComplete>(json!({"sid": SID, "rs": 1}), &[]);
}

#[test]
fn table_36_update_sa() {
    check::<UpdateSaRequest>(json!({"esid": SID, "op": 3}), &[("an unknown operation", json!({"esid": SID, "op": 4}))]);
    let id = json!({"esid": SID, "nsid": SID2, "rs": 1, "op": 1});
    check::<UpdateSaConfirm>(
        id.clone(),
        &[
            ("NOTE: accepted identifier update without the new identifier", without(&id, "nsid")),
            ("NOTE: a new identifier on a rejection", with(&id, "rs", json!(2))),
            ("NOTE: a new identifier for a key update", with(&id, "op", json!(2))),
        ],
    );
    check::<UpdateSaConfirm>(json!({"esid": SID, "rs": 1, "op": 2}), &[]);
}

#[test]
fn table_37_sa_identifier_update() {
    let req = json!({"esid": SID, "nsid": SID2});
    check::<SaIdentifierUpdateRequest>(
        req.clone(),
        &[
            ("the new identifier equals the existing one", with(&req, "nsid", json!(SID))),
            ("no new identifier (M)", without(&req, "nsid")),
        ],
    );
    let rejected = json!({"esid": SID, "nsid": SID2, "rs": 2});
    check::<SaIdentifierUpdateConfirm>(
        rejected.clone(),
        &[
            ("NOTE 1: rejected without the existing identifier", without(&rejected, "esid")),
            ("NOTE 1: accepted with the existing identifier", with(&rejected, "rs", json!(1))),
        ],
    );
    let request =
        SaIdentifierUpdateRequest { existing_sa_id: onem2m_sa::SaId([1; 8]), new_sa_id: onem2m_sa::SaId([2; 8]) };
    let accepted_other = SaIdentifierUpdateConfirm {
        existing_sa_id: None,
        new_sa_id: onem2m_sa::SaId([3; 8]),
        result: UpdateResult::Accepted,
    };
    assert!(accepted_other.validate_against(&request).is_err(), "NOTE 2: accepted means the proposed identifier");
    let rejected_same = SaIdentifierUpdateConfirm {
        existing_sa_id: Some(request.existing_sa_id),
        new_sa_id: request.new_sa_id,
        result: UpdateResult::Rejected,
    };
    assert!(rejected_same.validate_against(&request).is_err(), "NOTE 2: rejected means a different identifier");
}

#[test]
fn table_38_sa_identifier_update_response() {
    let accepted = json!({"esid": SID, "nsid": SID2, "rs": 1});
    check::<SaIdentifierUpdateResponse>(
        accepted.clone(),
        &[
            ("NOTE: accepted without the existing identifier", without(&accepted, "esid")),
            ("rejected with the existing identifier", with(&accepted, "rs", json!(2))),
        ],
    );
    check::<SaIdentifierUpdateResponse>(json!({"nsid": SID2, "rs": 2}), &[]);
}

#[test]
fn table_39_sa_key_update() {
    let req = json!({"sid": SID, "nkm": B32, "rkq": true});
    check::<SaKeyUpdateRequest>(
        req.clone(),
        &[
            ("no keying material (M)", without(&req, "nkm")),
            ("keying material of the wrong length", with(&req, "nkm", json!("AQID"))),
        ],
    );
    let ok = json!({"sid": SID, "rkm": B32, "rs": 1});
    check::<SaKeyUpdateConfirm>(
        ok.clone(),
        &[
            ("NOTE 3: accepted with a reason", with(&ok, "rr", json!(3))),
            ("NOTE 3: rejected without a reason", with(&without(&ok, "rkm"), "rs", json!(2))),
        ],
    );
    for reason in 1..=3 {
        check::<SaKeyUpdateConfirm>(json!({"sid": SID, "rs": 2, "rr": reason}), &[]);
    }
    let request: SaKeyUpdateRequest = serde_json::from_value(req).unwrap();
    let no_rkm: SaKeyUpdateConfirm = serde_json::from_value(json!({"sid": SID, "rs": 1})).unwrap();
    assert!(no_rkm.validate_against(&request).is_err(), "NOTE 2: requested responder keying material is missing");
}

#[test]
fn table_40_sa_key_update_response() {
    let rejected = json!({"sid": SID, "rs": 2, "rr": 1});
    check::<SaKeyUpdateResponse>(
        rejected.clone(),
        &[
            ("NOTE: rejected without a reason", without(&rejected, "rr")),
            ("NOTE: accepted with a reason", with(&rejected, "rs", json!(1))),
            ("a reason only the Responder gives", with(&rejected, "rr", json!(2))),
        ],
    );
    check::<SaKeyUpdateResponse>(json!({"sid": SID, "rs": 1}), &[]);
}

#[test]
fn table_41_sa_updated() {
    let id = json!({"esid": SID, "op": 1, "nsid": SID2});
    check::<SaUpdated>(
        id.clone(),
        &[
            ("NOTE: identifier updated without the new identifier", without(&id, "nsid")),
            ("NOTE: keys updated with a new identifier", with(&id, "op", json!(2))),
        ],
    );
    check::<SaUpdated>(json!({"esid": SID, "op": 3, "nsid": SID2}), &[]);
    check::<SaUpdated>(json!({"esid": SID, "op": 2}), &[]);
}

#[test]
fn tables_42_to_44_removal() {
    let req = json!({"sid": SID});
    check::<RemoveSaRequest>(req.clone(), &[("no identifier (M)", json!({}))]);
    check::<SaRemovalRequest>(req.clone(), &[("an unknown element", with(&req, "x", json!(1)))]);
    let rejected = json!({"sid": SID, "rs": 2, "rr": 2});
    check::<RemoveSaConfirm>(
        rejected.clone(),
        &[
            ("NOTE: rejected without a reason", without(&rejected, "rr")),
            ("NOTE: accepted with a reason", with(&rejected, "rs", json!(1))),
        ],
    );
    check::<SaRemovalConfirm>(
        json!({"sid": SID, "rs": 2, "rr": 1}),
        &[("an unknown reason", with(&rejected, "rr", json!(3)))],
    );
    check::<SaRemovalConfirm>(json!({"sid": SID, "rs": 1}), &[]);
    check::<SaRemoved>(req.clone(), &[("no identifier (M)", json!({}))]);
}
