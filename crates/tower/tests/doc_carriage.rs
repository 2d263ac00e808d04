//! The carriage vectors of docs/protocol.md §3.8: each block marked `<!-- carriage:NAME -->` is
//! the JSON serialization of what [`Outer`] builds for the inputs the document states, and
//! unwraps to the standard content.

use onem2m_primitive::RequestPrimitive;
use onem2m_sa_tower::carriage::{Carriage, Outer, unwrapped};
use serde_json::Value;

const PROTOCOL: &str = include_str!("../../../docs/protocol.md");

/// The placeholder JWE of the vectors.
const JWE: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIiwia2lkIjoiQUFBQUFBQUFBQUUiLCJzZXEiOjEsImtwIjowfQ..\
                   AAAAAAAAAAAAAAAB.AAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA";

/// The JSON block after `<!-- carriage:{name} -->`.
fn block(name: &str) -> Value {
    let marker = format!("<!-- carriage:{name} -->");
    let at = PROTOCOL.find(&marker).unwrap_or_else(|| panic!("protocol.md has no {marker}"));
    let rest = &PROTOCOL[at + marker.len()..];
    let start = rest.find("```json\n").expect("a json block") + "```json\n".len();
    let end = rest[start..].find("```").expect("the block ends");
    serde_json::from_str(&rest[start..start + end]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(req: &RequestPrimitive) -> Value {
    serde_json::from_slice(&req.to_json_vec().unwrap()).unwrap()
}

#[test]
fn protocol_md_carriage_vectors() {
    let mut outer = Outer { to: "/id-in/cse-in".into(), from: "Cae-host".into(), carriage: Carriage::Standard };
    let standard = outer.secured_request("sec-0", JWE.as_bytes());
    assert_eq!(json(&standard), block("sealed-standard"));
    outer.carriage = Carriage::Notification;
    let carried = outer.secured_request("sec-0", JWE.as_bytes());
    assert_eq!(json(&carried), block("sealed-notification"));
    assert_eq!(unwrapped(carried).pc, standard.pc, "the receiver takes the standard content out");

    let back = Outer { to: "/id-mn/Cae-host".into(), from: "/id-in".into(), carriage: Carriage::Notification };
    let sa = back.sa_request("sa-0".into(), br#"{"init":{"v":1}}"#);
    assert_eq!(json(&sa), block("sa-notification"));
    assert_eq!(unwrapped(sa).pc, Some(serde_json::json!({"sa:msg": {"init": {"v": 1}}})));
}
