//! The binary form (docs/protocol.md §4.5) carries every primitive the JSON form carries: any
//! request or response that decodes from JSON comes back equal from its binary form.

use onem2m_primitive::{RequestPrimitive, ResponsePrimitive};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9 .:/_-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z:]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn optional<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

prop_compose! {
    fn request()(
        op in 1u8..=5,
        to in "[/~a-zA-Z0-9_-]{0,40}",
        rqi in "[a-z0-9-]{0,12}",
        fr in optional("[/a-zA-Z0-9-]{0,20}"),
        ty in optional(any::<u32>()),
        rvi in optional("[0-9a-z]{0,3}"),
        pc in optional(json_value()),
        rcn in optional(0u8..=10),
        ot in optional(Just("20261207T120000")),
        vendor in optional(json_value()),
    ) -> Value {
        let mut v = json!({"op": op, "to": to, "rqi": rqi});
        let o = v.as_object_mut().unwrap();
        for (k, x) in [
            ("fr", fr.map(Value::from)),
            ("ty", ty.map(Value::from)),
            ("rvi", rvi.map(Value::from)),
            ("pc", pc),
            ("rcn", rcn.map(Value::from)),
            ("ot", ot.map(Value::from)),
            ("vnd:x", vendor),
        ] {
            if let Some(x) = x {
                o.insert(k.into(), x);
            }
        }
        v
    }
}

prop_compose! {
    fn response()(
        rsc in any::<u16>(),
        rqi in "[a-z0-9-]{0,12}",
        to in optional("[/a-zA-Z0-9-]{0,20}"),
        fr in optional("[/a-zA-Z0-9-]{0,20}"),
        rvi in optional("[0-9a-z]{0,3}"),
        pc in optional(json_value()),
        cnst in optional(1u8..=2),
        vendor in optional(json_value()),
    ) -> Value {
        let mut v = json!({"rsc": rsc, "rqi": rqi});
        let o = v.as_object_mut().unwrap();
        for (k, x) in [
            ("to", to.map(Value::from)),
            ("fr", fr.map(Value::from)),
            ("rvi", rvi.map(Value::from)),
            ("pc", pc),
            ("cnst", cnst.map(Value::from)),
            ("vnd:x", vendor),
        ] {
            if let Some(x) = x {
                o.insert(k.into(), x);
            }
        }
        v
    }
}

proptest! {
    #[test]
    fn requests_round_trip_through_the_binary_form(v in request()) {
        let req = RequestPrimitive::from_json_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        let binary = req.to_binary_vec().unwrap();
        prop_assert_eq!(RequestPrimitive::from_binary_slice(&binary).unwrap(), req.clone());
        // A response decoder refuses a request's binary form, and the other way round.
        prop_assert!(ResponsePrimitive::from_binary_slice(&binary).is_err());
        // Every strict prefix is refused (nothing half-read is taken for a primitive) — but a
        // number as content, whose prefixes are numbers too.
        let cut = if req.pc.as_ref().is_some_and(Value::is_number) { 0 } else { binary.len() };
        for len in 0..cut {
            prop_assert!(RequestPrimitive::from_binary_slice(&binary[..len]).is_err());
        }
    }

    #[test]
    fn responses_round_trip_through_the_binary_form(v in response()) {
        let rsp = ResponsePrimitive::from_json_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        let binary = rsp.to_binary_vec().unwrap();
        prop_assert_eq!(ResponsePrimitive::from_binary_slice(&binary).unwrap(), rsp);
        prop_assert!(RequestPrimitive::from_binary_slice(&binary).is_err());
    }
}
