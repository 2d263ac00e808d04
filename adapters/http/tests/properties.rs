//! Property tests: HTTP request → primitive → HTTP request is the identity on requests built
//! from generated primitives, and primitive → HTTP → primitive gives the primitive back.

use bytes::Bytes;
use onem2m_primitive::{
    AbsRelTimestamp, Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode, ResponseTypeInfo,
};
use onem2m_sa_http::{http_to_response, primitive_to_request, request_to_primitive, response_to_http};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// `to` in each of the three forms (TS-0009 §6.2.2.1), with characters that need escaping.
fn to_id() -> impl Strategy<Value = String> {
    let segments = prop::collection::vec("[A-Za-z0-9_.~ %?é-]{1,8}", 1..4).prop_map(|s| s.join("/"));
    (0..3u8, segments).prop_map(|(form, path)| match form {
        0 => path,
        1 => format!("/{path}"),
        _ => format!("//{path}"),
    })
}

fn header_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9:=._/-]{1,12}"
}

fn list_item() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 +&=/%#?é]{1,6}"
}

fn abs_rel() -> impl Strategy<Value = AbsRelTimestamp> {
    prop_oneof![
        any::<i64>().prop_map(AbsRelTimestamp::Relative),
        "20[0-9]{2}(0[1-9]|1[0-2])[0-2][1-9]T[01][0-9][0-5][0-9][0-5][0-9]".prop_map(AbsRelTimestamp::Absolute),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~é]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z:]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Filter criteria with typed members, lists and attribute filters.
fn filter_criteria() -> impl Strategy<Value = Option<Map<String, Value>>> {
    let strings = || prop::option::of(prop::collection::vec(list_item(), 1..4));
    let attrs = || prop::option::of(prop::collection::vec(("x[a-z]{1,3}", "[ -~]{0,6}"), 1..3));
    (
        prop::option::of(prop::collection::vec(1..=60u32, 1..4)),
        strings(),
        strings(),
        prop::option::of(0..1000u64),
        prop::option::of(1..=3u64),
        prop::option::of("20[0-9]{2}0101T000000"),
        prop::option::of(0..10u64),
        attrs(),
        attrs(),
        attrs(),
        prop::option::of("[ -~]{1,12}"),
    )
        .prop_map(|(ty, lbl, cty, lim, fu, crb, lvl, atr, catr, patr, cfq)| {
            let mut fc = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    fc.insert(k.to_owned(), v);
                }
            };
            let attributes = |a: Option<Vec<(String, String)>>| {
                a.map(|a| {
                    Value::Array(a.into_iter().map(|(nm, val)| serde_json::json!({"nm": nm, "val": val})).collect())
                })
            };
            put("ty", ty.map(Value::from));
            put("lbl", lbl.map(Value::from));
            put("cty", cty.map(Value::from));
            put("lim", lim.map(Value::from));
            put("fu", fu.map(Value::from));
            put("crb", crb.map(Value::from));
            put("lvl", lvl.map(Value::from));
            put("atr", attributes(atr));
            put("catr", attributes(catr));
            put("patr", attributes(patr));
            put("cfq", cfq.map(Value::from));
            (!fc.is_empty()).then_some(fc)
        })
}

fn request() -> impl Strategy<Value = RequestPrimitive> {
    let core = (
        prop::sample::select(vec![
            Operation::Create,
            Operation::Retrieve,
            Operation::Update,
            Operation::Delete,
            Operation::Notify,
        ]),
        to_id(),
        prop::option::of("[A-Za-z0-9/_-]{0,12}"),
        "[A-Za-z0-9-]{1,16}",
        1..=60u32,
        prop::option::of(prop::sample::select(vec!["2", "2a", "3", "4", "5"])),
        prop::option::of(0..=10u8),
        filter_criteria(),
        prop::option::of(json_value()),
    );
    let headers = (
        prop::option::of(header_text()),
        prop::option::of(header_text()),
        prop::option::of(header_text()),
        prop::option::of(abs_rel()),
        prop::option::of(abs_rel()),
        prop::option::of(abs_rel()),
        prop::option::of(any::<u16>()),
        prop::option::of((1..=5u8, prop::option::of(prop::collection::vec("[a-z:/.?=]{1,10}", 1..3)))),
        prop::option::of(prop::collection::vec("[A-Za-z0-9_.-]{1,10}", 1..3)),
        prop::option::of(prop::collection::vec("[A-Za-z0-9_=-]{1,10}", 1..3)),
    );
    let query = (
        prop::option::of(abs_rel()),
        prop::option::of(any::<bool>()),
        prop::option::of(1..=2u8),
        prop::option::of(prop::collection::vec(list_item(), 1..3)),
        prop::option::of(prop::collection::vec(list_item(), 1..3)),
        prop::option::of(prop::collection::vec(list_item(), 1..3)),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    );
    (core, headers, query).prop_map(|(core, headers, query)| {
        let (op, to, fr, rqi, ty, rvi, rcn, fc, pc) = core;
        let mut req = RequestPrimitive::new(op, to, fr, rqi);
        req.ty = (op == Operation::Create).then_some(ty);
        req.rvi = rvi.map(str::to_owned);
        req.rcn = rcn;
        req.fc = fc;
        req.pc = pc;
        (req.gid, req.ot, req.vsi, req.rset, req.rqet, req.oet, req.ec) =
            (headers.0, headers.1, headers.2, headers.3, headers.4, headers.5, headers.6);
        req.rt = headers.7.map(|(rtv, nu)| ResponseTypeInfo { rtv, nu, extra: Map::new() });
        req.tkns = headers.8;
        req.aus = headers.9.map(Value::from);
        (req.rp, req.da, req.drt, req.rids, req.tids, req.ltids, req.tqi, req.asi, req.auri, req.sqi) = query;
        req
    })
}

fn assert_same_http(a: &http::Request<Bytes>, b: &http::Request<Bytes>) {
    assert_eq!(a.method(), b.method());
    assert_eq!(a.uri(), b.uri());
    assert_eq!(a.headers(), b.headers());
    assert_eq!(a.body(), b.body());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn http_request_to_primitive_to_http_request_is_identity(req in request()) {
        let http = primitive_to_request(&req, "http://cse.example:8080").unwrap();
        let primitive = request_to_primitive(&http).unwrap();
        let again = primitive_to_request(&primitive, "http://cse.example:8080").unwrap();
        assert_same_http(&http, &again);
    }

    #[test]
    fn primitive_to_http_to_primitive_is_identity(req in request()) {
        let http = primitive_to_request(&req, "").unwrap();
        prop_assert_eq!(request_to_primitive(&http).unwrap(), req);
    }

    #[test]
    fn response_round_trips(
        rsc in prop::sample::select(ResponseStatusCode::all().collect::<Vec<_>>()),
        rqi in "[A-Za-z0-9-]{1,16}",
        rvi in prop::option::of(prop::sample::select(vec!["2a", "3", "4"])),
        fr in prop::option::of(header_text()),
        rset in prop::option::of(abs_rel()),
        ec in prop::option::of(any::<u16>()),
        cnst in prop::option::of(1..=2u8),
        cnot in prop::option::of(any::<u64>()),
        vsi in prop::option::of(header_text()),
        pc in prop::option::of(json_value()),
    ) {
        let mut rsp = ResponsePrimitive::new(rsc, rqi);
        rsp.rvi = rvi.map(str::to_owned);
        (rsp.fr, rsp.rset, rsp.ec, rsp.cnst, rsp.cnot, rsp.vsi, rsp.pc) = (fr, rset, ec, cnst, cnot, vsi, pc);
        let http = response_to_http(&rsp).unwrap();
        prop_assert_eq!(http.status().as_u16(), rsc.http_status());
        prop_assert_eq!(http_to_response(&http).unwrap(), rsp);
    }
}
