//! The demo CSE fixture behaves like a CSE for the resources it knows.

use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_examples::demo_cse::{DemoCse, ty};
use serde_json::json;

fn req(
    op: Operation,
    to: &str,
    fr: &str,
    rqi: &str,
    ty: Option<u32>,
    pc: Option<serde_json::Value>,
) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, to, Some(fr.to_owned()), rqi);
    r.rvi = Some("3".into());
    r.ty = ty;
    r.pc = pc;
    r
}

#[test]
fn crud_on_ae_container_and_content_instances() {
    let cse = DemoCse::new("/id-in", "cse-base");
    let ae = cse.handle(&req(
        Operation::Create,
        "cse-base",
        "CLamp",
        "1",
        Some(ty::AE),
        Some(json!({"m2m:ae": {"rn": "lamp", "api": "Nlamp", "rr": true}})),
    ));
    assert_eq!(ae.rsc, Rsc::CREATED);
    assert_eq!(ae.pc.as_ref().unwrap()["m2m:ae"]["aei"], "CLamp");
    let cnt = cse.handle(&req(
        Operation::Create,
        "/id-in/cse-base/lamp",
        "CLamp",
        "2",
        Some(ty::CONTAINER),
        Some(json!({"m2m:cnt": {"rn": "state"}})),
    ));
    assert_eq!(cnt.rsc, Rsc::CREATED);
    for (n, v) in ["on", "off"].iter().enumerate() {
        let cin = cse.handle(&req(
            Operation::Create,
            "cse-base/lamp/state",
            "CLamp",
            &format!("c{n}"),
            Some(ty::CONTENT_INSTANCE),
            Some(json!({"m2m:cin": {"con": v}})),
        ));
        assert_eq!(cin.rsc, Rsc::CREATED);
    }
    let got = cse.handle(&req(Operation::Retrieve, "cse-base/lamp/state", "CLamp", "3", None, None));
    assert_eq!((got.rsc, got.pc.unwrap()["m2m:cnt"]["rn"].clone()), (Rsc::OK, json!("state")));
    let upd = cse.handle(&req(
        Operation::Update,
        "cse-base/lamp",
        "CLamp",
        "4",
        None,
        Some(json!({"m2m:ae": {"lbl": ["kitchen"]}})),
    ));
    assert_eq!((upd.rsc, upd.pc.unwrap()["m2m:ae"]["lbl"][0].clone()), (Rsc::UPDATED, json!("kitchen")));
    assert_eq!(cse.len(), 5);
    let del = cse.handle(&req(Operation::Delete, "cse-base/lamp", "CLamp", "5", None, None));
    assert_eq!(del.rsc, Rsc::DELETED);
    assert_eq!(cse.len(), 1, "children deleted with their parent");
    assert_eq!(
        cse.handle(&req(Operation::Retrieve, "cse-base/lamp/state", "CLamp", "6", None, None)).rsc,
        Rsc::NOT_FOUND
    );
    assert_eq!(cse.executed().len(), 8);
}

#[test]
fn errors_and_notifications() {
    let cse = DemoCse::new("/id-in", "cse-base");
    assert_eq!(
        cse.handle(&req(Operation::Delete, "cse-base", "CAdmin", "1", None, None)).rsc,
        Rsc::OPERATION_NOT_ALLOWED
    );
    assert_eq!(cse.handle(&req(Operation::Create, "cse-base", "CA", "2", None, Some(json!({})))).rsc, Rsc::BAD_REQUEST);
    assert_eq!(cse.handle(&req(Operation::Retrieve, "/id-other/cse-base", "CA", "3", None, None)).rsc, Rsc::NOT_FOUND);
    let cnt = |rqi: &str| {
        req(Operation::Create, "cse-base", "CA", rqi, Some(ty::CONTAINER), Some(json!({"m2m:cnt": {"rn": "box"}})))
    };
    assert_eq!(cse.handle(&cnt("4")).rsc, Rsc::CREATED);
    assert_eq!(cse.handle(&cnt("5")).rsc, Rsc::CONFLICT);
    let sub = req(
        Operation::Create,
        "cse-base/box",
        "CA",
        "6",
        Some(ty::SUBSCRIPTION),
        Some(json!({"m2m:sub": {"rn": "watch", "nu": ["CA"]}})),
    );
    assert_eq!(cse.handle(&sub).rsc, Rsc::CREATED);
    let cin = req(
        Operation::Create,
        "cse-base/box",
        "CA",
        "7",
        Some(ty::CONTENT_INSTANCE),
        Some(json!({"m2m:cin": {"con": "42"}})),
    );
    assert_eq!(cse.handle(&cin).rsc, Rsc::CREATED);
    let notes = cse.take_notifications();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].target, "CA");
    assert_eq!(notes[0].request.op, Operation::Notify);
    assert_eq!(notes[0].request.pc.as_ref().unwrap()["m2m:sgn"]["nev"]["rep"]["m2m:cin"]["con"], "42");
    assert!(cse.take_notifications().is_empty());
}
