//! Round trips of the JSON primitives printed in TS-0004 V3.32.0 §8.4.3 and §8.5.2
//! (files in `tests/data`, provenance in `tests/data/README.md`).

use onem2m_primitive::{Operation, Primitive, PrimitiveError, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use serde_json::{Value, json};

const REQUESTS: &[(&str, &str)] = &[
    // §8.4.3 EXAMPLE 1
    ("ts0004-8.4.3-ex1-request-create-sch.json", include_str!("data/ts0004-8.4.3-ex1-request-create-sch.json")),
    // §8.5.2 EXAMPLE 1
    ("ts0004-8.5.2-ex1-request-create-ae.json", include_str!("data/ts0004-8.5.2-ex1-request-create-ae.json")),
    // §8.5.2 EXAMPLE 3
    ("ts0004-8.5.2-ex3-request-create-cnt.json", include_str!("data/ts0004-8.5.2-ex3-request-create-cnt.json")),
];

const RESPONSES: &[(&str, &str)] = &[
    // §8.5.2 EXAMPLE 2
    ("ts0004-8.5.2-ex2-response-created-ae.json", include_str!("data/ts0004-8.5.2-ex2-response-created-ae.json")),
    // §8.5.2 EXAMPLE 4
    ("ts0004-8.5.2-ex4-response-created-cnt.json", include_str!("data/ts0004-8.5.2-ex4-response-created-cnt.json")),
];

fn as_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn requests_round_trip() {
    for (name, text) in REQUESTS {
        let req = RequestPrimitive::from_json_slice(text.as_bytes()).unwrap();
        assert!(req.extra.is_empty(), "{name}: all members are modelled");
        let encoded = req.to_json_vec().unwrap();
        assert_eq!(as_value(&encoded), as_value(text.as_bytes()), "{name}");
        assert_eq!(RequestPrimitive::from_json_slice(&encoded).unwrap(), req, "{name}");
        let binary = req.to_binary_vec().unwrap();
        assert_eq!(RequestPrimitive::from_binary_slice(&binary).unwrap(), req, "{name}: binary form");
        assert!(binary.len() < encoded.len(), "{name}: binary {} vs JSON {}", binary.len(), encoded.len());
        match Primitive::from_json_slice(text.as_bytes()).unwrap() {
            Primitive::Request(r) => assert_eq!(*r, req, "{name}"),
            Primitive::Response(_) => panic!("{name} is a request"),
        }
    }
}

#[test]
fn responses_round_trip() {
    for (name, text) in RESPONSES {
        let rsp = ResponsePrimitive::from_json_slice(text.as_bytes()).unwrap();
        assert!(rsp.extra.is_empty(), "{name}: all members are modelled");
        let encoded = rsp.to_json_vec().unwrap();
        assert_eq!(as_value(&encoded), as_value(text.as_bytes()), "{name}");
        assert_eq!(ResponsePrimitive::from_json_slice(&encoded).unwrap(), rsp, "{name}");
        let binary = rsp.to_binary_vec().unwrap();
        assert_eq!(ResponsePrimitive::from_binary_slice(&binary).unwrap(), rsp, "{name}: binary form");
        assert!(binary.len() < encoded.len(), "{name}: binary {} vs JSON {}", binary.len(), encoded.len());
        match Primitive::from_json_slice(text.as_bytes()).unwrap() {
            Primitive::Response(r) => assert_eq!(*r, rsp, "{name}"),
            Primitive::Request(_) => panic!("{name} is a response"),
        }
    }
}

#[test]
fn decoded_fields_are_typed() {
    let req = RequestPrimitive::from_json_slice(REQUESTS[0].1.as_bytes()).unwrap();
    assert_eq!(req.op, Operation::Create);
    assert_eq!(req.fr.as_deref(), Some("Clight_ae1"));
    assert_eq!(req.to, "/homegateway/light");
    assert_eq!(req.rqi, "A1234");
    assert_eq!(req.ty, Some(18));
    assert_eq!(req.pc, Some(json!({"m2m:sch": {"se": {"sce": ["* 0-5 2,6,10 * * * *"]}}})));
    assert_eq!(req.to_id().unwrap().cse_id(), Some("/homegateway"));

    let ae = RequestPrimitive::from_json_slice(REQUESTS[1].1.as_bytes()).unwrap();
    assert!(ae.is_ae_create());
    assert_eq!(ae.fr, None);
    assert_eq!(ae.rcn, Some(7));
    assert_eq!(ae.to_id().unwrap().sp_id(), Some("//example.net"));

    let rsp = ResponsePrimitive::from_json_slice(RESPONSES[0].1.as_bytes()).unwrap();
    assert_eq!(rsp.rsc, ResponseStatusCode::CREATED);
    assert_eq!(rsp.rqi, "A1000");
    assert_eq!(rsp.pc.as_ref().unwrap()["m2m:ae"]["aei"], "S_SAH25");
}

#[test]
fn vectors_validate_once_rvi_is_added() {
    for (name, text) in REQUESTS {
        let mut req = RequestPrimitive::from_json_slice(text.as_bytes()).unwrap();
        assert!(matches!(req.validate(), Err(PrimitiveError::MissingElement("rvi"))), "{name} has no rvi");
        req.rvi = Some("3".into());
        match req.validate() {
            Ok(()) => assert!(req.fr.is_some() || req.is_ae_create(), "{name}"),
            // §8.5.2 EXAMPLE 3 creates a <container> without `fr`, which only an
            // <AE> CREATE may do: a serialization example, not a valid request.
            Err(PrimitiveError::MissingElement("fr")) => {
                assert!(name.contains("ex3-request-create-cnt"), "{name}")
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    for (name, text) in RESPONSES {
        let mut rsp = ResponsePrimitive::from_json_slice(text.as_bytes()).unwrap();
        assert!(matches!(rsp.validate(), Err(PrimitiveError::MissingElement("rvi"))), "{name} has no rvi");
        rsp.rvi = Some("3".into());
        rsp.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
