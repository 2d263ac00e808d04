//! Decoding limits, unknown-member preservation, validation of mandatory elements
//! (TS-0004 Tables 6.4.1-1 and 6.4.2-1) and the error-response helpers.

use onem2m_primitive::{
    AbsRelTimestamp, DecodeLimits, IdError, MAX_PRIMITIVE_BYTES, Operation, Primitive, PrimitiveError,
    RequestPrimitive, ResponsePrimitive, ResponseStatusCode, ResponseTypeInfo,
};
use serde_json::{Value, json};

fn request(v: Value) -> Result<RequestPrimitive, PrimitiveError> {
    RequestPrimitive::from_json_slice(&serde_json::to_vec(&v).unwrap())
}

fn valid_retrieve() -> Value {
    json!({"op": 2, "to": "cse-in/cnt1", "fr": "CAdmin", "rqi": "r1", "rvi": "3"})
}

fn missing(result: Result<(), PrimitiveError>) -> &'static str {
    match result {
        Err(PrimitiveError::MissingElement(name)) => name,
        other => panic!("expected MissingElement, got {other:?}"),
    }
}

#[test]
fn unknown_members_survive_round_trip() {
    let input = json!({
        "op": 3, "to": "/id-in/cnt1", "fr": "/id-mn", "rqi": "r9", "rvi": "5",
        "prpi": "profile-1",
        "msu": {"x": [1, 2, {"y": null}]},
        "m2m:vendor": 7,
        "rt": {"rtv": 2, "nu": ["/id-mn/CAE1"], "rtx": true},
        "fc": {"fu": 1, "lbl": ["a"], "futureFilter": "z"},
        "pc": {"m2m:cnt": {"lbl": null}}
    });
    let req = request(input.clone()).unwrap();
    assert_eq!(req.extra.len(), 3);
    assert_eq!(req.extra["prpi"], "profile-1");
    assert_eq!(req.rt.as_ref().unwrap().extra["rtx"], true);
    let out: Value = serde_json::from_slice(&req.to_json_vec().unwrap()).unwrap();
    assert_eq!(out, input);

    let input = json!({"rsc": 2000, "rqi": "r9", "rvi": "4", "omr": ["x"], "pc": {"m2m:uri": "u"}});
    let rsp = ResponsePrimitive::from_json_slice(&serde_json::to_vec(&input).unwrap()).unwrap();
    assert_eq!(rsp.extra["omr"], json!(["x"]));
    let out: Value = serde_json::from_slice(&rsp.to_json_vec().unwrap()).unwrap();
    assert_eq!(out, input);
}

#[test]
fn all_modelled_request_members_round_trip() {
    let input = json!({
        "op": 1, "to": "//sp.example.com/id-in/cse-in", "fr": "/id-mn/CAE1", "rqi": "r1",
        "ty": 3, "pc": {"m2m:cnt": {"rn": "c"}}, "rids": ["r@issuer.com"],
        "ot": "20240101T000000", "rqet": 5000, "rset": "20240101T000010,5",
        "oet": "1000", "rt": {"rtv": 3}, "rp": 60000, "rcn": 1, "ec": 2, "da": false,
        "gid": "g1", "fc": {"lvl": 1}, "drt": 2, "tkns": ["a.b.c"], "tids": ["t@i.com"],
        "ltids": ["lt1"], "tqi": true, "grtm": ["/id-in/m1"], "asi": false, "aus": ["c2ln"],
        "auri": true, "sqi": false, "rvi": "3", "vsi": "acme"
    });
    let req = request(input.clone()).unwrap();
    assert!(req.extra.is_empty());
    assert_eq!(req.rqet, Some(AbsRelTimestamp::Relative(5000)));
    assert_eq!(req.oet, Some(AbsRelTimestamp::Absolute("1000".into())));
    assert_eq!(req.rt.as_ref().map(|rt| rt.rtv), Some(3));
    req.validate().unwrap();
    let out: Value = serde_json::from_slice(&req.to_json_vec().unwrap()).unwrap();
    assert_eq!(out, input);
}

#[test]
fn decode_requires_op_to_rqi() {
    for name in ["op", "to", "rqi"] {
        let mut v = valid_retrieve();
        v.as_object_mut().unwrap().remove(name);
        match request(v) {
            Err(PrimitiveError::MissingElement(n)) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    let rsp = ResponsePrimitive::from_json_slice(br#"{"rqi":"x"}"#);
    assert!(matches!(rsp, Err(PrimitiveError::MissingElement("rsc"))));
    let rsp = ResponsePrimitive::from_json_slice(br#"{"rsc":2000}"#);
    assert!(matches!(rsp, Err(PrimitiveError::MissingElement("rqi"))));
}

#[test]
fn decode_rejects_wrong_types_and_values() {
    let bad = [
        json!({"op": 6, "to": "a", "rqi": "r"}),
        json!({"op": "1", "to": "a", "rqi": "r"}),
        json!({"op": 1, "to": "a", "rqi": 5}),
        json!({"op": 1, "to": "a", "rqi": "r", "ty": "2"}),
        json!({"op": 1, "to": "a", "rqi": "r", "rvi": 3}),
        json!({"op": 1, "to": "a", "rqi": "r", "rt": {"nu": []}}),
    ];
    for v in bad {
        let err = request(v.clone()).unwrap_err();
        assert!(matches!(err, PrimitiveError::Json(_)), "{v}: {err:?}");
        assert_eq!(err.rsc(), ResponseStatusCode::BAD_REQUEST);
    }
    assert!(matches!(RequestPrimitive::from_json_slice(b"[1]"), Err(PrimitiveError::NotAnObject)));
    assert!(matches!(RequestPrimitive::from_json_slice(b"{\"op\":1"), Err(PrimitiveError::Json(_))));
}

#[test]
fn duplicate_members_rejected() {
    let text = br#"{"op":2,"to":"a","rqi":"r","fr":"CAE1","fr":"/id-in"}"#;
    match RequestPrimitive::from_json_slice(text) {
        Err(e @ PrimitiveError::DuplicateMember(_)) => {
            assert_eq!(e.to_string(), "duplicate member `fr`");
            assert_eq!(e.rsc(), ResponseStatusCode::BAD_REQUEST);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn limits() {
    let big = format!(r#"{{"op":2,"to":"a","rqi":"r","vsi":"{}"}}"#, "x".repeat(MAX_PRIMITIVE_BYTES));
    assert!(matches!(
        RequestPrimitive::from_json_slice(big.as_bytes()),
        Err(PrimitiveError::TooLarge { limit: MAX_PRIMITIVE_BYTES, .. })
    ));
    // The primitive object is level 1, `pc` level 2.
    let small = DecodeLimits { max_bytes: 64, max_depth: 2 };
    let text = br#"{"op":2,"to":"a","rqi":"r","pc":{"a":{"b":1}}}"#;
    assert!(matches!(
        RequestPrimitive::from_json_slice_with_limits(text, small),
        Err(PrimitiveError::TooDeep { limit: 2 })
    ));
    let text = br#"{"op":2,"to":"a","rqi":"r","pc":{"a":1}}"#;
    assert!(RequestPrimitive::from_json_slice_with_limits(text, small).is_ok());
    let text = br#"{"op":2,"to":"a","rqi":"r","pc":{"a":"0123456789012345678901234"}}"#;
    assert!(matches!(
        RequestPrimitive::from_json_slice_with_limits(text, small),
        Err(PrimitiveError::TooLarge { size: 66, limit: 64 })
    ));
    let deep = format!(r#"{{"op":2,"to":"a","rqi":"r","pc":{}{}}}"#, "[".repeat(40), "]".repeat(40));
    assert!(matches!(RequestPrimitive::from_json_slice(deep.as_bytes()), Err(PrimitiveError::TooDeep { limit: 32 })));
}

#[test]
fn validate_reports_each_missing_mandatory_element() {
    request(valid_retrieve()).unwrap().validate().unwrap();

    let mut r = request(valid_retrieve()).unwrap();
    r.rvi = None;
    assert_eq!(missing(r.validate()), "rvi");

    let mut r = request(valid_retrieve()).unwrap();
    r.fr = None;
    assert_eq!(missing(r.validate()), "fr");
    r.fr = Some(String::new());
    assert_eq!(missing(r.validate()), "fr");

    let mut r = request(valid_retrieve()).unwrap();
    r.rqi.clear();
    assert_eq!(missing(r.validate()), "rqi");

    // CREATE needs ty; without ty it is not an AE CREATE, so fr is needed too.
    let mut r = request(valid_retrieve()).unwrap();
    r.op = Operation::Create;
    assert_eq!(missing(r.validate()), "ty");
    r.ty = Some(3);
    r.validate().unwrap();
    r.fr = None;
    assert_eq!(missing(r.validate()), "fr");
    // <AE> CREATE is the one request that may omit fr.
    r.ty = Some(2);
    r.validate().unwrap();
    assert!(r.is_ae_create());

    let mut e = r.clone();
    e.to.clear();
    assert!(matches!(e.validate(), Err(PrimitiveError::InvalidId { element: "to", source: IdError::Empty })));

    let mut r = request(valid_retrieve()).unwrap();
    r.fr = Some("bad id".into());
    let err = r.validate().unwrap_err();
    assert!(matches!(err, PrimitiveError::InvalidId { element: "fr", .. }));
    assert_eq!(err.rsc(), ResponseStatusCode::BAD_REQUEST);

    let mut r = request(valid_retrieve()).unwrap();
    r.rqet = Some(AbsRelTimestamp::Absolute("tomorrow".into()));
    assert!(matches!(r.validate(), Err(PrimitiveError::InvalidTimestamp { element: "rqet", .. })));
    let mut r = request(valid_retrieve()).unwrap();
    r.ot = Some("20241301T000000".into());
    assert!(matches!(r.validate(), Err(PrimitiveError::InvalidTimestamp { element: "ot", .. })));
}

#[test]
fn validate_response() {
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::OK, "r1");
    assert_eq!(missing(rsp.validate()), "rvi");
    rsp.rvi = Some("3".into());
    rsp.validate().unwrap();
    rsp.rqi.clear();
    assert_eq!(missing(rsp.validate()), "rqi");
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::OK, "r1");
    rsp.rvi = Some("3".into());
    rsp.to = Some("a//b".into());
    assert!(matches!(rsp.validate(), Err(PrimitiveError::InvalidId { element: "to", .. })));
}

#[test]
fn constructors_and_error_response() {
    let mut req = RequestPrimitive::new(Operation::Retrieve, "cse-in", Some("CAE1".into()), "q7");
    req.rvi = Some("3".into());
    req.rt = Some(ResponseTypeInfo::new(3));
    req.validate().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&req.to_json_vec().unwrap()).unwrap(),
        json!({"op": 2, "to": "cse-in", "fr": "CAE1", "rqi": "q7", "rt": {"rtv": 3}, "rvi": "3"})
    );

    let rsp = ResponsePrimitive::error(ResponseStatusCode::SECURITY_ASSOCIATION_REQUIRED, "q7", "no SA with /id-mn");
    assert_eq!(rsp.debug_info(), Some("no SA with /id-mn"));
    assert_eq!(
        serde_json::from_slice::<Value>(&rsp.to_json_vec().unwrap()).unwrap(),
        json!({"rsc": 4107, "rqi": "q7", "pc": {"m2m:dbg": "no SA with /id-mn"}})
    );

    let ans = ResponsePrimitive::answering(&req, ResponseStatusCode::OK);
    assert_eq!((ans.rqi.as_str(), ans.to.as_deref()), ("q7", Some("CAE1")));
    assert_eq!(ans.rvi.as_deref(), Some("3"));
    ans.validate().unwrap();
}

#[test]
fn primitive_dispatch() {
    let p = Primitive::from_json_slice(br#"{"rsc":4107,"rqi":"z"}"#).unwrap();
    assert!(matches!(&p, Primitive::Response(r) if r.rsc == ResponseStatusCode::SECURITY_ASSOCIATION_REQUIRED));
    assert_eq!(p.rqi(), "z");
    let p = Primitive::from_json_slice(br#"{"op":5,"to":"CAE1","rqi":"n"}"#).unwrap();
    assert!(matches!(&p, Primitive::Request(r) if r.op == Operation::Notify));
    assert!(matches!(Primitive::from_json_slice(br#"{"rqi":"z"}"#), Err(PrimitiveError::MissingElement("op"))));
    assert!(matches!(Primitive::from_json_slice(br#"{"op":1,"rqi":"z"}"#), Err(PrimitiveError::MissingElement("to"))));
}
