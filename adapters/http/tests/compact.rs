//! The compact secured form on HTTP (docs/protocol.md §4.3, Carriage): the content
//! `{"sa:cmp": …}` travels as the raw body with `Content-Type: application/vnd.onem2m-sa.compact`,
//! both ways, and maps back to the same content.

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa_http::{MediaType, http_to_response, primitive_to_request_as, request_to_primitive, response_to_http_as};

const SEALED: [u8; 30] =
    [0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x05, b'{', b'"', 0, 0xff, 0x80, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];

#[test]
fn a_compact_request_is_the_raw_body_with_its_media_type() {
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "sec-1");
    req.rvi = Some("3".into());
    req.pc = Some(compact::content(&SEALED));
    for media in [MediaType::Json, MediaType::Cbor] {
        let http = primitive_to_request_as(&req, "http://peer", media).unwrap();
        assert_eq!(http.method(), http::Method::POST);
        assert_eq!(http.headers()["content-type"], compact::MEDIA_TYPE);
        assert_eq!(http.body().as_ref(), SEALED, "raw bytes, no base64, no JSON");
        let back = request_to_primitive(&http).unwrap();
        assert_eq!((back.op, back.pc.as_ref()), (Operation::Notify, req.pc.as_ref()));
        assert_eq!((back.fr.as_deref(), back.rqi.as_str()), (Some("/id-asn"), "sec-1"));
    }
}

#[test]
fn a_compact_answer_is_the_raw_body_with_its_media_type() {
    let mut rsp = ResponsePrimitive::new(Rsc::OK, "sec-1");
    rsp.rvi = Some("3".into());
    rsp.pc = Some(compact::content(&SEALED));
    let http = response_to_http_as(&rsp, MediaType::Json).unwrap();
    assert_eq!(http.headers()["content-type"], "application/vnd.onem2m-sa.compact");
    assert_eq!(http.body().as_ref(), SEALED);
    let back = http_to_response(&http).unwrap();
    assert_eq!((back.rsc, back.pc), (Rsc::OK, rsp.pc));
}

#[test]
fn other_content_keeps_its_media_type() {
    // Not only `sa:cmp` (or not a string): ordinary JSON.
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "n");
    req.pc = Some(serde_json::json!({"sa:cmp": "AA", "m2m:dbg": "x"}));
    let http = primitive_to_request_as(&req, "http://peer", MediaType::Json).unwrap();
    assert_eq!(http.headers()["content-type"], "application/json");
    assert_eq!(request_to_primitive(&http).unwrap().pc, req.pc);
}
