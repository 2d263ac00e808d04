//! CBOR bodies (TS-0004 §8.5): the same `pc` as JSON, both directions, and what is refused.

use bytes::Bytes;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_http::{
    BindingError, CborError, Limits, MediaType, http_to_response, primitive_to_request, primitive_to_request_as,
    request_to_primitive, request_to_primitive_with_limits, response_to_http, response_to_http_as,
};
use serde_json::{Value, json};

fn content() -> Value {
    json!({"m2m:cin": {"rn": "ci1", "cnf": "text/plain:0", "con": "22.5 °C", "st": 3, "lbl": ["a", "b"],
        "at": [], "mni": 18446744073709551615u64, "off": -42, "ratio": 0.125, "ok": true, "none": null}})
}

#[test]
fn media_type_defaults_to_json() {
    assert_eq!(MediaType::default(), MediaType::Json);
    assert_eq!(MediaType::Cbor.as_str(), "application/cbor");
}

#[test]
fn request_round_trip_in_cbor() {
    let mut req = RequestPrimitive::new(Operation::Create, "/id-in/cse-in/cnt1", Some("CAE1".into()), "r1");
    req.ty = Some(4);
    req.rvi = Some("3".into());
    req.pc = Some(content());
    let http = primitive_to_request_as(&req, "http://cse.example", MediaType::Cbor).unwrap();
    assert_eq!(http.headers()["content-type"], "application/cbor;ty=4");
    assert_ne!(http.body().first(), Some(&b'{'));
    let back = request_to_primitive(&http).unwrap();
    assert_eq!(back, req);
    // The same primitive in JSON decodes to the same `pc`.
    let json = primitive_to_request(&req, "http://cse.example").unwrap();
    assert_eq!(json.headers()["content-type"], "application/json;ty=4");
    assert_eq!(request_to_primitive(&json).unwrap().pc, back.pc);
}

#[test]
fn response_round_trip_in_cbor() {
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::CREATED, "r1");
    rsp.rvi = Some("3".into());
    rsp.pc = Some(content());
    let http = response_to_http_as(&rsp, MediaType::Cbor).unwrap();
    assert_eq!(http.headers()["content-type"], "application/cbor");
    assert_eq!(http_to_response(&http).unwrap(), rsp);
    assert_eq!(response_to_http(&rsp).unwrap().headers()["content-type"], "application/json");
}

#[test]
fn onem2m_cbor_media_types_are_decoded() {
    let body = Bytes::from_static(&[0xa1, 0x61, b'a', 0x01]); // {"a": 1}
    for ct in ["application/cbor", "application/vnd.onem2m-res+cbor; ty=3", "Application/Vnd.oneM2M-ntfy+CBOR"] {
        let r = http::Request::post("/c").header("X-M2M-RI", "r").header("Content-Type", ct).body(body.clone());
        assert_eq!(request_to_primitive(&r.unwrap()).unwrap().pc, Some(json!({"a": 1})), "{ct}");
    }
}

#[test]
fn cbor_limits_match_json() {
    let limits = Limits { max_body_bytes: 8, max_json_depth: 2, ..Limits::default() };
    let put = |body: &'static [u8]| {
        let r = http::Request::put("/c").header("X-M2M-RI", "r").header("Content-Type", "application/cbor");
        request_to_primitive_with_limits(&r.body(Bytes::from_static(body)).unwrap(), &limits)
    };
    // Size first: nine bytes of garbage are too large before they are malformed.
    assert!(matches!(put(&[0xff; 9]).unwrap_err(), BindingError::BodyTooLarge { limit: 8, .. }));
    assert_eq!(put(&[0x81, 0x81, 0x01]).unwrap().pc, Some(json!([[1]])));
    let err = put(&[0x81, 0x81, 0x81, 0x01]).unwrap_err();
    assert!(matches!(err, BindingError::InvalidCbor(CborError::TooDeep { limit: 2 })), "{err}");
    assert_eq!(err.rsc().code(), 4000);
}

#[test]
fn refused_items_say_why() {
    let refused = |body: &[u8]| {
        let r = http::Request::put("/c").header("X-M2M-RI", "r").header("Content-Type", "application/cbor");
        match request_to_primitive(&r.body(Bytes::copy_from_slice(body)).unwrap()).unwrap_err() {
            BindingError::InvalidCbor(e) => e,
            other => panic!("{body:02x?}: {other}"),
        }
    };
    assert!(matches!(refused(&[0xc0, 0x60]), CborError::Tag { tag: 0, .. }));
    assert!(matches!(refused(&[0xf7]), CborError::Undefined(_)));
    assert!(matches!(refused(&[0x40]), CborError::ByteString(_)));
    assert!(matches!(refused(&[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]), CborError::NonFiniteFloat(_)));
    assert!(matches!(refused(&[0xa1, 0x01, 0x01]), CborError::NonTextKey(_)));
}

#[test]
fn unknown_media_types_are_still_4015() {
    let r = http::Request::put("/c").header("X-M2M-RI", "r").header("Content-Type", "application/vnd.onem2m-res+xml");
    let err = request_to_primitive(&r.body(Bytes::from_static(b"<x/>")).unwrap()).unwrap_err();
    assert!(matches!(err, BindingError::UnsupportedMediaType(_)));
    assert_eq!(err.rsc().code(), 4015);
}
