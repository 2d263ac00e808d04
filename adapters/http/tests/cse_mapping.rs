//! What a real CSE (ACME) sends and expects, carried unchanged through a decode/encode hop
//! (issue 12): `Content-Location` of CREATE answers (TS-0009 §6.4.4), `Content-Type` of
//! answers without a body (§6.4.3), and `ty` in the `Content-Type` of a request that is not a
//! CREATE (refused as the CSE refuses it, never silently dropped).

use bytes::Bytes;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{
    BindingError, BoxError, Limits, MediaType, PrimitiveService, http_to_response, request_to_primitive,
    response_to_http, response_to_http_as,
};
use serde_json::{Value, json};
use tower::{ServiceExt, service_fn};

fn created(pc: Value) -> ResponsePrimitive {
    let mut rsp = ResponsePrimitive::new(Rsc::CREATED, "c1");
    rsp.rvi = Some("3".into());
    rsp.pc = Some(pc);
    rsp
}

/// §6.4.4: the answer to a CREATE names the created resource in `Content-Location` when its
/// content holds the URI: `rcn` 2 (`m2m:uri`) and `rcn` 3 (`m2m:rce`/`uri`).
#[test]
fn create_answers_with_a_uri_carry_content_location() {
    let rcn2 = response_to_http(&created(json!({"m2m:uri": "cse-in/lamp/state"}))).unwrap();
    assert_eq!(rcn2.headers()["content-location"], "cse-in/lamp/state");
    let rcn3 = created(json!({"m2m:rce": {"uri": "cse-in/lamp/state", "m2m:cnt": {"rn": "state"}}}));
    let rcn3 = response_to_http_as(&rcn3, MediaType::Cbor).unwrap();
    assert_eq!(rcn3.headers()["content-location"], "cse-in/lamp/state");
    // rcn 1 (the attributes) names no URI: no header.
    let rcn1 = response_to_http(&created(json!({"m2m:cnt": {"rn": "state", "ri": "cnt1"}}))).unwrap();
    assert!(rcn1.headers().get("content-location").is_none());
    // A URI the header cannot hold as it is is percent-encoded, not lost.
    let odd = response_to_http(&created(json!({"m2m:uri": "cse-in/lämp"}))).unwrap();
    assert_eq!(odd.headers()["content-location"], "cse-in/l%C3%A4mp");
}

/// What ACME sends for a CREATE with `rcn=2`, decoded and encoded again (as a proxy does):
/// the header comes out as it went in.
#[test]
fn content_location_survives_a_decode_encode_hop() {
    let from_cse = http::Response::builder()
        .status(201)
        .header("X-M2M-RSC", "2001")
        .header("X-M2M-RI", "c1")
        .header("X-M2M-RVI", "3")
        .header("Content-Type", "application/json")
        .header("Content-Location", "cse-in/Cae1/cnt")
        .body(Bytes::from_static(br#"{"m2m:uri":"cse-in/Cae1/cnt"}"#))
        .unwrap();
    let again = response_to_http(&http_to_response(&from_cse).unwrap()).unwrap();
    assert_eq!(again.headers()["content-location"], from_cse.headers()["content-location"]);
}

/// Only the answer to a CREATE has one: a non-blocking RETRIEVE's 1001 names its `<request>`
/// resource in `m2m:uri` too, without `Content-Location`; a non-blocking CREATE's 1001 has it.
#[tokio::test]
async fn the_service_knows_which_answer_is_a_create_answer() {
    let inner = service_fn(|req: RequestPrimitive| async move {
        let mut rsp = ResponsePrimitive::new(Rsc::new(1001), req.rqi);
        rsp.pc = Some(json!({"m2m:uri": "cse-in/reqABC"}));
        Ok::<_, BoxError>(rsp)
    });
    let svc = PrimitiveService::new(inner, Limits::default());
    let create = http::Request::post("/cse-in?rt=1")
        .header("X-M2M-RI", "n1")
        .header("X-M2M-Origin", "CAE1")
        .header("Content-Type", "application/json;ty=3")
        .body(Bytes::from_static(br#"{"m2m:cnt":{}}"#))
        .unwrap();
    let answer = svc.clone().oneshot(create).await.unwrap();
    assert_eq!(answer.headers()["x-m2m-rsc"], "1001");
    assert_eq!(answer.headers()["content-location"], "cse-in/reqABC");
    let retrieve =
        http::Request::get("/cse-in?rt=1").header("X-M2M-RI", "n2").header("X-M2M-Origin", "CAE1").body(Bytes::new());
    let answer = svc.oneshot(retrieve.unwrap()).await.unwrap();
    assert_eq!(answer.headers()["x-m2m-rsc"], "1001");
    assert!(answer.headers().get("content-location").is_none());
}

/// §6.4.3 requires `Content-Type` with a body; ACME also sends it without one (a DELETE's 2002,
/// an UPDATE's 2004 with `rcn=0`). The answer says which serialization it is in either way.
#[test]
fn answers_without_a_body_still_say_their_media_type() {
    let mut deleted = ResponsePrimitive::new(Rsc::DELETED, "d1");
    deleted.rvi = Some("3".into());
    let json = response_to_http(&deleted).unwrap();
    assert!(json.body().is_empty());
    assert_eq!(json.headers()["content-type"], "application/json");
    let cbor = response_to_http_as(&deleted, MediaType::Cbor).unwrap();
    assert_eq!(cbor.headers()["content-type"], "application/cbor");
    // And what ACME sends decodes and encodes to the same header.
    let from_cse = http::Response::builder()
        .status(200)
        .header("X-M2M-RSC", "2002")
        .header("X-M2M-RI", "d1")
        .header("Content-Type", "application/json")
        .body(Bytes::new())
        .unwrap();
    let again = response_to_http(&http_to_response(&from_cse).unwrap()).unwrap();
    assert_eq!(again.headers()["content-type"], "application/json");
}

/// `ty` belongs to a CREATE only (§6.4.3). On GET, PUT or DELETE the request is malformed:
/// refused with 4000 as ACME refuses it, where dropping `ty` would make the CSE execute it.
#[test]
fn ty_on_a_request_that_is_not_a_create_is_refused() {
    for method in ["GET", "PUT", "DELETE"] {
        let r = http::Request::builder()
            .method(method)
            .uri("/cse-in")
            .header("X-M2M-RI", "r1")
            .header("X-M2M-Origin", "CAE1")
            .header("Content-Type", "application/json;ty=3")
            .body(Bytes::new())
            .unwrap();
        let err = request_to_primitive(&r).unwrap_err();
        assert!(matches!(err, BindingError::ResourceTypeNotAllowed { .. }), "{method}: {err}");
        assert_eq!(err.rsc(), Rsc::BAD_REQUEST, "{method}");
    }
    // Without `ty`, the same requests map.
    let get = http::Request::get("/cse-in").header("X-M2M-RI", "r1").header("Content-Type", "application/json");
    assert_eq!(request_to_primitive(&get.body(Bytes::new()).unwrap()).unwrap().op, Operation::Retrieve);
}
