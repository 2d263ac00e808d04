//! Rejected messages and the Response Status Code each one answers with.

use bytes::Bytes;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_http::{
    BindingError, Limits, MAX_BODY_BYTES, MAX_HEADER_VALUE_BYTES, http_to_response, primitive_to_request,
    request_to_primitive, request_to_primitive_with_limits, response_to_http,
};
use serde_json::json;

fn base() -> http::request::Builder {
    http::Request::post("/cse-in").header("X-M2M-RI", "r1").header("X-M2M-Origin", "CAE1")
}

fn rejected(request: http::Request<Bytes>) -> (BindingError, u16) {
    let err = request_to_primitive(&request).unwrap_err();
    let code = err.rsc().code();
    (err, code)
}

#[test]
fn oversize_header_is_4000() {
    let big = "a".repeat(MAX_HEADER_VALUE_BYTES + 1);
    let (err, code) = rejected(base().header("X-M2M-Origin-Extra", big.as_str()).body(Bytes::new()).unwrap());
    assert!(matches!(err, BindingError::HeaderTooLarge { size, .. } if size == MAX_HEADER_VALUE_BYTES + 1), "{err}");
    assert_eq!(code, 4000);
    // Exactly at the limit is fine.
    let ok = "a".repeat(MAX_HEADER_VALUE_BYTES);
    assert!(request_to_primitive(&base().header("X-M2M-VSI", ok.as_str()).body(Bytes::new()).unwrap()).is_ok());
}

#[test]
fn oversize_body_is_4000_before_parsing() {
    let body = Bytes::from(vec![b'{'; MAX_BODY_BYTES + 1]);
    let (err, code) = rejected(base().header("Content-Type", "application/json").body(body).unwrap());
    assert!(matches!(err, BindingError::BodyTooLarge { .. }), "{err}");
    assert_eq!(code, 4000);
}

#[test]
fn limits_are_configurable() {
    let limits = Limits { max_header_value_bytes: 32, max_body_bytes: 8, max_target_bytes: 12, max_json_depth: 2 };
    let with = |r: http::Request<Bytes>| request_to_primitive_with_limits(&r, &limits).unwrap_err();
    let r = http::Request::get("/c").header("X-M2M-RI", "r".repeat(33)).body(Bytes::new()).unwrap();
    assert!(matches!(with(r), BindingError::HeaderTooLarge { limit: 32, .. }));
    let r = http::Request::put("/c").header("X-M2M-RI", "r").header("Content-Type", "application/json");
    assert!(matches!(
        with(r.body(Bytes::from_static(b"[1,2,3,4,5]")).unwrap()),
        BindingError::BodyTooLarge { limit: 8, .. }
    ));
    let r = http::Request::get("/c?lbl=abcdefghijk").header("X-M2M-RI", "r").body(Bytes::new()).unwrap();
    assert!(matches!(with(r), BindingError::TargetTooLarge { limit: 12, .. }));
    let r = http::Request::put("/c").header("X-M2M-RI", "r").header("Content-Type", "application/json");
    let err = with(r.body(Bytes::from_static(b"[[[1]]]")).unwrap());
    assert!(matches!(err, BindingError::InvalidBody(_)), "{err}");
    assert_eq!(err.rsc().code(), 4000);
    let r = http::Request::put("/c").header("X-M2M-RI", "r").header("Content-Type", "application/json");
    assert!(request_to_primitive_with_limits(&r.body(Bytes::from_static(b"[[1]]")).unwrap(), &limits).is_ok());
}

#[test]
fn bad_ty_is_4000() {
    for ct in [
        "application/json;ty=abc",
        "application/json;ty=",
        "application/json;ty=-1",
        "application/json;ty=3;ty=4",
        "application/json;ty=99999999999",
    ] {
        let (err, code) = rejected(base().header("Content-Type", ct).body(Bytes::new()).unwrap());
        assert!(matches!(err, BindingError::InvalidResourceType(_)), "{ct}: {err}");
        assert_eq!(code, 4000, "{ct}");
    }
}

#[test]
fn unknown_media_type_is_4015() {
    for ct in ["text/plain", "application/xml;ty=3", "application/vnd.onem2m-res+xml", "application/octet-stream"] {
        let (err, code) = rejected(base().header("Content-Type", ct).body(Bytes::from_static(b"x")).unwrap());
        assert!(matches!(err, BindingError::UnsupportedMediaType(_)), "{ct}: {err}");
        assert_eq!(code, 4015);
    }
}

#[test]
fn bad_cbor_bodies_are_4000() {
    // A tag, `undefined`, a byte string, a NaN, a duplicate key, two items.
    for body in
        [&[0xc1, 0x01][..], &[0xf7], &[0x41, 0x00], &[0xf9, 0x7e, 0x00], &[0xa2, 0x61, b'a', 1, 0x61, b'a', 2], &[1, 2]]
    {
        let r = base().header("Content-Type", "application/cbor").body(Bytes::copy_from_slice(body)).unwrap();
        let (err, code) = rejected(r);
        assert!(matches!(err, BindingError::InvalidCbor(_)), "{body:02x?}: {err}");
        assert_eq!(code, 4000);
    }
}

#[test]
fn missing_request_identifier_is_4000() {
    let no_ri = http::Request::get("/cse-in").header("X-M2M-Origin", "CAE1").body(Bytes::new()).unwrap();
    let (err, code) = rejected(no_ri);
    assert!(matches!(err, BindingError::MissingHeader("X-M2M-RI")), "{err}");
    assert_eq!(code, 4000);
    let empty_ri = http::Request::get("/cse-in").header("X-M2M-RI", "").body(Bytes::new()).unwrap();
    assert_eq!(rejected(empty_ri).1, 4000);
}

#[test]
fn duplicate_headers_and_query_fields_are_4000() {
    let r = http::Request::get("/c").header("X-M2M-RI", "a").header("X-M2M-RI", "b").body(Bytes::new()).unwrap();
    assert!(matches!(rejected(r).0, BindingError::DuplicateHeader("X-M2M-RI")));
    let r = http::Request::get("/c").header("X-M2M-RI", "a").header("X-M2M-Origin", "x").header("x-m2m-origin", "y");
    assert!(matches!(rejected(r.body(Bytes::new()).unwrap()).0, BindingError::DuplicateHeader("X-M2M-Origin")));
    for q in ["rcn=1&rcn=2", "lim=1&lim=2", "fu=1&fu=1"] {
        let r = http::Request::get(format!("/c?{q}")).header("X-M2M-RI", "a").body(Bytes::new()).unwrap();
        let (err, code) = rejected(r);
        assert!(matches!(err, BindingError::DuplicateQuery(_)), "{q}: {err}");
        assert_eq!(code, 4000);
    }
}

#[test]
fn bad_query_values_are_4000() {
    for q in ["rcn=x", "rcn=300", "da=yes", "ty=3+x", "lim=-1", "rt=", "atr=x", "lbl=%zz", "lbl=%ff", "c.=1"] {
        let r = http::Request::get(format!("/c?{q}")).header("X-M2M-RI", "a").body(Bytes::new()).unwrap();
        let (err, code) = rejected(r);
        assert!(matches!(err, BindingError::InvalidQuery { .. }), "{q}: {err}");
        assert_eq!(code, 4000, "{q}");
    }
}

#[test]
fn bad_headers_are_4000() {
    let r = http::Request::get("/c").header("X-M2M-RI", "a").header("X-M2M-EC", "soon").body(Bytes::new()).unwrap();
    assert!(matches!(rejected(r).0, BindingError::InvalidHeader { name: "X-M2M-EC", .. }));
    let value = http::HeaderValue::from_bytes("CAé".as_bytes()).unwrap();
    let r = http::Request::get("/c").header("X-M2M-RI", "a").header("X-M2M-Origin", value).body(Bytes::new()).unwrap();
    assert_eq!(rejected(r).1, 4000);
}

#[test]
fn bad_bodies_are_4000() {
    for body in [&b"{"[..], b"{\"a\":1}{}", b"{\"a\":1,\"a\":2}", b"1,\"fr\":\"x\"", b"{\"pc\":1}}"] {
        let r = base().header("Content-Type", "application/json").body(Bytes::copy_from_slice(body)).unwrap();
        let (err, code) = rejected(r);
        assert!(matches!(err, BindingError::InvalidBody(_)), "{}: {err}", String::from_utf8_lossy(body));
        assert_eq!(code, 4000);
    }
    let no_ct = base().body(Bytes::from_static(b"{}")).unwrap();
    assert!(matches!(rejected(no_ct).0, BindingError::MissingContentType));
}

#[test]
fn bad_method_and_path() {
    let r = http::Request::patch("/c").header("X-M2M-RI", "a").body(Bytes::new()).unwrap();
    let (err, code) = rejected(r);
    assert!(matches!(err, BindingError::UnsupportedMethod(_)));
    assert_eq!(code, 4005);
    for path in ["/~", "/_", "/a%zz"] {
        let r = http::Request::get(path).header("X-M2M-RI", "a").body(Bytes::new()).unwrap();
        assert!(matches!(rejected(r).0, BindingError::InvalidPath(_)), "{path}");
    }
}

#[test]
fn attribute_list_only_in_retrieve() {
    let r = http::Request::put("/c?atrl=rr").header("X-M2M-RI", "a").body(Bytes::new()).unwrap();
    assert!(matches!(rejected(r).0, BindingError::InvalidQuery { .. }));
}

#[test]
fn responses_need_rsc_and_ri() {
    let r = http::Response::builder().status(200).header("X-M2M-RI", "a").body(Bytes::new()).unwrap();
    assert!(matches!(http_to_response(&r).unwrap_err(), BindingError::MissingHeader("X-M2M-RSC")));
    let r = http::Response::builder().status(200).header("X-M2M-RSC", "2000").body(Bytes::new()).unwrap();
    assert!(matches!(http_to_response(&r).unwrap_err(), BindingError::MissingHeader("X-M2M-RI")));
    let r = http::Response::builder()
        .status(200)
        .header("X-M2M-RSC", "OK")
        .header("X-M2M-RI", "a")
        .body(Bytes::new())
        .unwrap();
    assert!(matches!(http_to_response(&r).unwrap_err(), BindingError::InvalidHeader { name: "X-M2M-RSC", .. }));
}

#[test]
fn unmappable_primitives_are_5000() {
    let create_without_ty = RequestPrimitive::new(Operation::Create, "c", None, "r");
    let mut notify_with_ty = RequestPrimitive::new(Operation::Notify, "c", None, "r");
    notify_with_ty.ty = Some(3);
    let mut grtm = RequestPrimitive::new(Operation::Retrieve, "c", None, "r");
    grtm.grtm = Some(vec!["/a".into()]);
    let mut bad_fr = RequestPrimitive::new(Operation::Retrieve, "c", Some("a\nb".into()), "r");
    let mut unknown_fc = RequestPrimitive::new(Operation::Retrieve, "c", None, "r");
    unknown_fc.fc = json!({"gmty": 1}).as_object().cloned();
    let mut reserved_attr = RequestPrimitive::new(Operation::Retrieve, "c", None, "r");
    reserved_attr.fc = json!({"atr": [{"nm": "lim", "val": "1"}]}).as_object().cloned();
    let mut plus_token = RequestPrimitive::new(Operation::Retrieve, "c", None, "r");
    plus_token.tkns = Some(vec!["a+b".into()]);
    for req in [create_without_ty, notify_with_ty, grtm, bad_fr.clone(), unknown_fc, reserved_attr, plus_token] {
        let err = primitive_to_request(&req, "").unwrap_err();
        assert!(matches!(err, BindingError::Unmappable { .. }), "{err}");
        assert_eq!(err.rsc(), ResponseStatusCode::INTERNAL_SERVER_ERROR);
    }
    bad_fr.fr = Some("CAE1".into());
    assert!(primitive_to_request(&bad_fr, "").is_ok());
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::OK, "r");
    rsp.tqf = Some(json!({}));
    assert!(matches!(response_to_http(&rsp).unwrap_err(), BindingError::Unmappable { .. }));
}
