//! Response Status Codes: names, classes and the TS-0009 / TS-0008 mappings.

use onem2m_primitive::{Operation, ResponseStatusCode as Rsc, RscClass};

#[test]
fn every_code_is_named_and_mapped() {
    let all: Vec<Rsc> = Rsc::all().collect();
    // TS-0004 V3.32.0 §6.6.3: 3 + 4 + 35 + 25 + 14 codes.
    assert_eq!(all.len(), 81);
    for rsc in all {
        let name = rsc.name().unwrap();
        assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{name}");
        assert_eq!(rsc.to_string(), format!("{} {}", rsc.code(), name));
        let http = rsc.http_status();
        let (class, detail) = rsc.coap_code();
        assert!((200..=599).contains(&http), "{rsc}: {http}");
        assert!((2..=5).contains(&class) && detail < 32, "{rsc}: {class}.{detail}");
        // The HTTP and CoAP classes agree except for 4001/4008/4125 (4xxx sent as 5xx)
        // and receiver-side 51xx/52xx sent as 4xx, all as the tables say.
        if rsc.is_success() {
            assert_eq!((http / 100, class), (2, 2), "{rsc}");
        }
    }
}

#[test]
fn spot_checks() {
    let cases = [
        (Rsc::ACCEPTED, 1000, 202, (2, 1)),
        (Rsc::OK, 2000, 200, (2, 5)),
        (Rsc::CREATED, 2001, 201, (2, 1)),
        (Rsc::DELETED, 2002, 200, (2, 2)),
        (Rsc::UPDATED, 2004, 200, (2, 4)),
        (Rsc::BAD_REQUEST, 4000, 400, (4, 0)),
        (Rsc::RELEASE_VERSION_NOT_SUPPORTED, 4001, 501, (5, 1)),
        (Rsc::REQUEST_TIMEOUT, 4008, 504, (5, 4)),
        (Rsc::UNSUPPORTED_MEDIA_TYPE, 4015, 415, (4, 15)),
        (Rsc::GROUP_REQUEST_IDENTIFIER_EXISTS, 4104, 409, (4, 0)),
        (Rsc::CONFLICT, 4105, 409, (4, 3)),
        (Rsc::ORIGINATOR_NOT_AUTHENTICATED, 4106, 403, (4, 3)),
        (Rsc::SECURITY_ASSOCIATION_REQUIRED, 4107, 403, (4, 3)),
        (Rsc::ESPRIM_UNSUPPORTED_OPTION, 4111, 403, (4, 3)),
        (Rsc::ESPRIM_UNKNOWN_KEY_ID, 4112, 403, (4, 3)),
        (Rsc::ESPRIM_UNKNOWN_ORIG_RAND_ID, 4113, 403, (4, 3)),
        (Rsc::ESPRIM_UNKNOWN_RECV_RAND_ID, 4114, 403, (4, 3)),
        (Rsc::ESPRIM_BAD_MAC, 4115, 403, (4, 3)),
        (Rsc::ESPRIM_IMPERSONATION_ERROR, 4116, 403, (4, 3)),
        (Rsc::INVALID_SEMANTICS, 4120, 400, (4, 2)),
        (Rsc::SERVICE_SUBSCRIPTION_NOT_ESTABLISHED, 4128, 403, (4, 3)),
        (Rsc::TARGET_NOT_REACHABLE, 5103, 404, (4, 4)),
        (Rsc::RECEIVER_HAS_NO_PRIVILEGE, 5105, 403, (4, 3)),
        (Rsc::ALREADY_EXISTS, 5106, 409, (4, 0)),
        (Rsc::NOT_ACCEPTABLE, 5207, 406, (4, 6)),
        (Rsc::ESPRIM_DECRYPTION_ERROR, 5210, 500, (5, 0)),
        (Rsc::ESPRIM_ENCRYPTION_ERROR, 5211, 500, (5, 0)),
        (Rsc::EXTERNAL_OBJECT_NOT_REACHABLE_BEFORE_OET_TIMEOUT, 6031, 504, (5, 4)),
    ];
    for (rsc, code, http, coap) in cases {
        assert_eq!(rsc.code(), code, "{rsc}");
        assert_eq!(rsc.http_status(), http, "{rsc}");
        assert_eq!(rsc.coap_code(), coap, "{rsc}");
    }
    assert_eq!(Rsc::SECURITY_ASSOCIATION_REQUIRED.name(), Some("SECURITY_ASSOCIATION_REQUIRED"));
    assert_eq!(Rsc::SECURITY_ASSOCIATION_REQUIRED.to_string(), "4107 SECURITY_ASSOCIATION_REQUIRED");
}

#[test]
fn ok_to_notify_is_changed() {
    assert_eq!(Rsc::OK.coap_code_for(Operation::Retrieve), (2, 5));
    assert_eq!(Rsc::OK.coap_code_for(Operation::Notify), (2, 4));
    assert_eq!(Rsc::CREATED.coap_code_for(Operation::Notify), (2, 1));
}

#[test]
fn classes_and_unknown_codes() {
    assert_eq!(Rsc::ACCEPTED.class(), RscClass::Informational);
    assert_eq!(Rsc::OK.class(), RscClass::Success);
    assert_eq!(Rsc::NOT_FOUND.class(), RscClass::OriginatorError);
    assert_eq!(Rsc::INTERNAL_SERVER_ERROR.class(), RscClass::ReceiverError);
    assert_eq!(Rsc::ALREADY_COMPLETE.class(), RscClass::NetworkError);
    assert!(Rsc::UPDATED.is_success() && !Rsc::UPDATED.is_error());
    assert!(!Rsc::ACCEPTED.is_success() && !Rsc::ACCEPTED.is_error());
    assert!(Rsc::ESPRIM_BAD_MAC.is_error());

    let unknown = |code| Rsc::new(code);
    assert_eq!(unknown(4999).name(), None);
    assert!(!unknown(4999).is_known());
    assert_eq!(unknown(4999).to_string(), "4999");
    assert_eq!(unknown(1003).http_status(), 202);
    assert_eq!(unknown(2003).http_status(), 200);
    assert_eq!(unknown(2003).coap_code(), (2, 5));
    assert_eq!(unknown(4999).http_status(), 400);
    assert_eq!(unknown(4999).coap_code(), (4, 0));
    assert_eq!(unknown(3000).class(), RscClass::Redirection);
    assert_eq!(unknown(3000).http_status(), 500);
    assert_eq!(unknown(5999).coap_code(), (5, 0));
    assert_eq!(unknown(7000).class(), RscClass::Unknown);
    assert_eq!(unknown(0).http_status(), 500);
}

#[test]
fn serde_as_number() {
    let rsc: Rsc = serde_json::from_str("4107").unwrap();
    assert_eq!(rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);
    assert_eq!(serde_json::to_string(&rsc).unwrap(), "4107");
    assert_eq!(serde_json::from_str::<Rsc>("9999").unwrap().code(), 9999);
    assert!(serde_json::from_str::<Rsc>("\"4107\"").is_err());
    assert!(serde_json::from_str::<Rsc>("70000").is_err());
}
