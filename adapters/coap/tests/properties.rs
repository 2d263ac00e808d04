//! Property tests: primitive → CoAP datagram → primitive is the identity, for requests and
//! responses in JSON and CBOR, and CoAP request → primitive → CoAP request gives the same bytes.

use coap_lite::Packet;
use onem2m_primitive::{
    AbsRelTimestamp, Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode, ResponseTypeInfo,
};
use onem2m_sa_coap::message::parse;
use onem2m_sa_coap::{
    Encoding, Limits, MediaType, packet_to_primitive, packet_to_response, primitive_to_packet, response_to_packet,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// `to` in each of the three forms (TS-0008 Table 6.2.2.3-1).
fn to_id() -> impl Strategy<Value = String> {
    let segments = prop::collection::vec("[A-Za-z0-9_.~ %?é-]{1,8}", 1..4).prop_map(|s| s.join("/"));
    (0..3u8, segments)
        .prop_filter("a CSE-relative first segment `~` or `_` names another form", |(form, path)| {
            *form != 0 || !matches!(path.split('/').next(), Some("~" | "_"))
        })
        .prop_map(|(form, path)| match form {
            0 => path,
            1 => format!("/{path}"),
            _ => format!("//{path}"),
        })
}

fn option_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9:=._/é -]{1,12}".prop_filter("no padding", |s| s.trim() == s)
}

fn list_item() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 &=/%#?é]{1,6}"
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
        any::<u64>().prop_map(Value::from),
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
        attrs(),
        attrs(),
        attrs(),
        prop::option::of("[ -~]{1,12}"),
    )
        .prop_map(|(ty, lbl, cty, lim, fu, crb, atr, catr, patr, cfq)| {
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
    let options = (
        prop::option::of(option_text()),
        prop::option::of(option_text()),
        prop::option::of(option_text()),
        prop::option::of(abs_rel()),
        prop::option::of(abs_rel()),
        prop::option::of(abs_rel()),
        prop::option::of(any::<u16>()),
        prop::option::of((1..=5u8, prop::option::of(prop::collection::vec("[a-z:/.?=]{1,10}", 1..3)))),
        prop::option::of(prop::collection::vec("[A-Za-z0-9_.-]{1,10}", 1..3)),
        prop::option::of(prop::collection::vec("[A-Za-z0-9_=-]{1,10}", 1..3)),
        prop::option::of(prop::collection::vec("[A-Za-z0-9/_-]{1,10}", 1..3)),
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
    (core, options, query).prop_map(|(core, options, query)| {
        let (op, to, fr, rqi, ty, rvi, rcn, fc, pc) = core;
        let mut req = RequestPrimitive::new(op, to, fr, rqi);
        req.ty = (op == Operation::Create).then_some(ty);
        req.rvi = rvi.map(str::to_owned);
        req.rcn = rcn;
        req.fc = fc;
        req.pc = pc;
        (req.gid, req.ot, req.vsi, req.rset, req.rqet, req.oet, req.ec) =
            (options.0, options.1, options.2, options.3, options.4, options.5, options.6);
        req.rt = options.7.map(|(rtv, nu)| ResponseTypeInfo { rtv, nu, extra: Map::new() });
        req.tkns = options.8;
        req.aus = options.9.map(Value::from);
        req.grtm = options.10;
        (req.rp, req.da, req.drt, req.rids, req.tids, req.ltids, req.tqi, req.asi, req.auri, req.sqi) = query;
        req
    })
}

fn media() -> impl Strategy<Value = MediaType> {
    prop::sample::select(vec![MediaType::Json, MediaType::Cbor])
}

/// Through the wire: serialized with an arbitrary message ID and token, parsed back strictly.
fn over_the_wire(mut packet: Packet, mid: u16, token: &[u8]) -> Packet {
    packet.header.message_id = mid;
    packet.set_token(token.to_vec());
    let bytes = packet.to_bytes_unlimited().unwrap();
    parse(&bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn primitive_to_coap_to_primitive_is_identity(
        req in request(),
        media in media(),
        mid in any::<u16>(),
        token in prop::collection::vec(any::<u8>(), 0..=8),
    ) {
        let encoding = Encoding { media, uri_host: Some("cse.example".into()), uri_port: Some(5683) };
        let packet = over_the_wire(primitive_to_packet(&req, &encoding).unwrap(), mid, &token);
        prop_assert_eq!(packet_to_primitive(&packet, &Limits::default()).unwrap(), req);
    }

    #[test]
    fn coap_request_to_primitive_to_coap_request_is_identity(req in request(), media in media()) {
        let encoding = Encoding { media, ..Encoding::default() };
        let packet = primitive_to_packet(&req, &encoding).unwrap();
        let primitive = packet_to_primitive(&packet, &Limits::default()).unwrap();
        let again = primitive_to_packet(&primitive, &encoding).unwrap();
        prop_assert_eq!(again.to_bytes_unlimited().unwrap(), packet.to_bytes_unlimited().unwrap());
    }

    #[test]
    fn response_round_trips(
        rsc in prop::sample::select(ResponseStatusCode::all().collect::<Vec<_>>()),
        op in prop::sample::select(vec![Operation::Create, Operation::Retrieve, Operation::Update, Operation::Delete, Operation::Notify]),
        rqi in "[A-Za-z0-9-]{1,16}",
        rvi in prop::option::of(prop::sample::select(vec!["2a", "3", "4"])),
        fr in prop::option::of(option_text()),
        rset in prop::option::of(abs_rel()),
        ec in prop::option::of(any::<u16>()),
        cnst in prop::option::of(1..=2u8),
        cnot in prop::option::of(0..=u64::from(u16::MAX)),
        vsi in prop::option::of(option_text()),
        asri in prop::option::of(any::<bool>()),
        pc in prop::option::of(json_value()),
        media in media(),
        mid in any::<u16>(),
    ) {
        let mut rsp = ResponsePrimitive::new(rsc, rqi);
        rsp.rvi = rvi.map(str::to_owned);
        (rsp.fr, rsp.rset, rsp.ec, rsp.cnst, rsp.cnot, rsp.vsi, rsp.asri, rsp.pc) = (fr, rset, ec, cnst, cnot, vsi, asri, pc);
        let packet = over_the_wire(response_to_packet(&rsp, op, media).unwrap(), mid, b"tk");
        let (class, detail) = rsc.coap_code_for(op);
        prop_assert_eq!(u8::from(packet.header.code), (class << 5) | detail);
        prop_assert_eq!(packet_to_response(&packet, &Limits::default()).unwrap(), rsp);
    }
}
