//! Bytes on the wire for a typical small RETRIEVE and its answer, over CoAP (this mapping)
//! and over HTTP/1.1 (the HTTP adapter's mapping), for the docs:
//! `cargo test -p onem2m-sa-coap --test wire -- --nocapture`.

use coap_lite::MessageType;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_coap::{Encoding, MediaType, primitive_to_packet, response_to_packet};
use serde_json::json;

fn typical() -> (RequestPrimitive, ResponsePrimitive) {
    let mut req =
        RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-in/ae1/cnt1/la", Some("Cae1".into()), "rq-0001");
    req.rvi = Some("3".into());
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::OK, "rq-0001");
    rsp.rvi = Some("3".into());
    rsp.pc = Some(
        json!({"m2m:cin": {"rn": "cin_1", "ri": "cin1", "pi": "cnt1", "ty": 4, "st": 1, "cs": 4, "cnf": "text/plain:0", "con": "21.5"}}),
    );
    (req, rsp)
}

fn coap_sizes(media: MediaType) -> (usize, usize, usize) {
    let (req, rsp) = typical();
    let mut request = primitive_to_packet(&req, &Encoding { media, ..Encoding::default() }).unwrap();
    request.header.set_type(MessageType::Confirmable);
    request.set_token(vec![1, 2, 3, 4]);
    let mut answer = response_to_packet(&rsp, Operation::Retrieve, media).unwrap();
    answer.header.set_type(MessageType::Acknowledgement);
    answer.set_token(vec![1, 2, 3, 4]);
    let payload = answer.payload.len();
    (request.to_bytes().unwrap().len(), answer.to_bytes().unwrap().len(), payload)
}

fn http_sizes() -> (usize, usize, usize) {
    let (req, rsp) = typical();
    let head = |lines: Vec<String>| lines.iter().map(|l| l.len() + 2).sum::<usize>() + 2;
    let request = onem2m_sa_http::primitive_to_request(&req, "").unwrap();
    let mut lines = vec![format!("GET {} HTTP/1.1", request.uri()), "host: 127.0.0.1:8080".to_owned()];
    lines.extend(request.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap())));
    let request_bytes = head(lines) + request.body().len();
    let answer = onem2m_sa_http::response_to_http(&rsp).unwrap();
    let mut lines = vec!["HTTP/1.1 200 OK".to_owned(), format!("content-length: {}", answer.body().len())];
    lines.extend(answer.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap())));
    (request_bytes, head(lines) + answer.body().len(), answer.body().len())
}

#[test]
fn bytes_on_the_wire_for_a_small_retrieve() {
    let (req_json, rsp_json, body_json) = coap_sizes(MediaType::Json);
    let (req_cbor, rsp_cbor, body_cbor) = coap_sizes(MediaType::Cbor);
    let (req_http, rsp_http, body_http) = http_sizes();
    println!("RETRIEVE /id-in/cse-in/ae1/cnt1/la (fr Cae1, rqi rq-0001, rvi 3) and its 2000 answer with one <cin>:");
    println!("  CoAP, JSON payload: request {req_json} B, answer {rsp_json} B ({body_json} B payload)");
    println!("  CoAP, CBOR payload: request {req_cbor} B, answer {rsp_cbor} B ({body_cbor} B payload)");
    println!("  HTTP/1.1 (no Date/Server headers): request {req_http} B, answer {rsp_http} B ({body_http} B body)");
    // The figures in the docs: a request without payload is the same in both media.
    assert_eq!(req_json, req_cbor);
    assert!(req_json < 64, "{req_json}");
    assert!(rsp_cbor < rsp_json && rsp_json < rsp_http);
}
