//! The mapping against TS-0008's own tables and examples, the older option numbers, and the
//! refusals of RFC 7252 (critical options, option lengths, malformed datagrams).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode, ResponseTypeInfo};
use onem2m_sa_coap::message::parse;
use onem2m_sa_coap::options::{content_format, encode_uint, legacy, onem2m, rfc};
use onem2m_sa_coap::{
    BindingError, Encoding, Limits, MediaType, answer_media, packet_to_primitive, packet_to_response,
    primitive_to_packet, response_to_packet,
};
use serde_json::json;

fn request(code: u8, path: &[&str]) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::from(code);
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    p.add_option(CoapOption::from(onem2m::RQI), b"r1".to_vec());
    p
}

fn segments(p: &Packet) -> Vec<String> {
    p.get_option(CoapOption::UriPath).into_iter().flatten().map(|s| String::from_utf8(s.clone()).unwrap()).collect()
}

#[test]
fn table_6_2_2_3_1_to_and_uri_path() {
    let rows: [(&str, &[&str]); 6] = [
        ("CSEBase/ae12/cont27/contInst696", &["CSEBase", "ae12", "cont27", "contInst696"]),
        ("/CSE178/CSEBase/ae12/cont27/contInst696", &["~", "CSE178", "CSEBase", "ae12", "cont27", "contInst696"]),
        (
            "//mym2msp.org/CSE178/CSEBase/ae12/cont27/contInst696",
            &["_", "mym2msp.org", "CSE178", "CSEBase", "ae12", "cont27", "contInst696"],
        ),
        ("cin00856", &["cin00856"]),
        ("/CSE178/cin00856", &["~", "CSE178", "cin00856"]),
        ("//mym2msp.org/CSE178/cin00856", &["_", "mym2msp.org", "CSE178", "cin00856"]),
    ];
    for (to, path) in rows {
        let req = RequestPrimitive::new(Operation::Retrieve, to, Some("CAdmin".into()), "r1");
        let p = primitive_to_packet(&req, &Encoding::default()).unwrap();
        assert_eq!(segments(&p), path, "{to}");
        assert_eq!(packet_to_primitive(&p, &Limits::default()).unwrap().to, to);
    }
    for bad in [&["~"][..], &["_"], &[], &["a/b"]] {
        let err = packet_to_primitive(&request(1, bad), &Limits::default()).unwrap_err();
        assert!(matches!(err, BindingError::InvalidPath(_)), "{bad:?}: {err}");
    }
    let cse_relative_tilde = RequestPrimitive::new(Operation::Retrieve, "~/x", None, "r1");
    assert!(matches!(
        primitive_to_packet(&cse_relative_tilde, &Encoding::default()),
        Err(BindingError::Unmappable { .. })
    ));
}

#[test]
fn table_6_2_1_1_methods_and_the_post_rule() {
    let limits = Limits::default();
    let op = |p: &Packet| packet_to_primitive(p, &limits).map(|r| r.op);
    assert_eq!(op(&request(1, &["cse"])).unwrap(), Operation::Retrieve);
    assert_eq!(op(&request(3, &["cse"])).unwrap(), Operation::Update);
    assert_eq!(op(&request(4, &["cse"])).unwrap(), Operation::Delete);
    assert_eq!(op(&request(2, &["cse"])).unwrap(), Operation::Notify);
    let mut create = request(2, &["cse"]);
    create.add_option(CoapOption::from(onem2m::TY), vec![2]);
    assert_eq!(op(&create).unwrap(), Operation::Create);
    let mut get_with_ty = request(1, &["cse"]);
    get_with_ty.add_option(CoapOption::from(onem2m::TY), vec![2]);
    assert!(matches!(op(&get_with_ty), Err(BindingError::ResourceTypeNotAllowed(_))));
    // FETCH (0.05) and PATCH (0.06) map to no operation: 4005, CoAP 4.05.
    let err = op(&request(5, &["cse"])).unwrap_err();
    assert_eq!((err.rsc(), err.coap_code()), (ResponseStatusCode::OPERATION_NOT_ALLOWED, (4, 5)));
}

#[test]
fn non_blocking_requests_are_posts_with_op_in_the_query() {
    let mut req = RequestPrimitive::new(Operation::Retrieve, "cse-in/ae", Some("Cae".into()), "r9");
    req.rt =
        Some(ResponseTypeInfo { nu: Some(vec!["coap://h/n".into(), "/id-in/Cae".into()]), ..ResponseTypeInfo::new(2) });
    let p = primitive_to_packet(&req, &Encoding::default()).unwrap();
    assert_eq!(u8::from(p.header.code), 2);
    let query: Vec<_> =
        p.get_option(CoapOption::UriQuery).unwrap().iter().map(|v| String::from_utf8(v.clone()).unwrap()).collect();
    assert_eq!(query, ["op=2", "rt=2"]);
    assert_eq!(p.get_first_option(CoapOption::from(onem2m::RTURI)).unwrap(), b"coap://h/n&/id-in/Cae");
    assert_eq!(packet_to_primitive(&p, &Limits::default()).unwrap(), req);
    // An explicit op on a GET that says another operation is refused.
    let mut get = request(1, &["cse"]);
    get.add_option(CoapOption::UriQuery, b"op=4".to_vec());
    assert!(matches!(packet_to_primitive(&get, &Limits::default()), Err(BindingError::InvalidQuery { .. })));
}

#[test]
fn current_option_numbers_are_sent() {
    let mut req = RequestPrimitive::new(Operation::Create, "cse-in", Some("Cae".into()), "r1");
    req.ty = Some(2);
    req.rvi = Some("3".into());
    req.ot = Some("20250101T000000".into());
    req.ec = Some(2);
    req.gid = Some("g".into());
    req.vsi = Some("v".into());
    req.pc = Some(json!({"m2m:ae": {"rn": "a"}}));
    let p = primitive_to_packet(&req, &Encoding::default()).unwrap();
    let numbers: Vec<u16> = p.options().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [11, 12, 259, 267, 271, 279, 283, 303, 311, 331]);
    assert_eq!(p.get_first_option(CoapOption::ContentFormat).unwrap(), &encode_uint(50));
}

#[test]
fn older_option_numbers_are_read_on_ingress() {
    let mut p = Packet::new();
    p.header.code = MessageClass::from(2);
    p.add_option(CoapOption::UriPath, b"cse-in".to_vec());
    p.add_option(CoapOption::from(legacy::FR), b"Cae".to_vec());
    p.add_option(CoapOption::from(legacy::RQI), b"old-1".to_vec());
    p.add_option(CoapOption::from(legacy::RQET), b"20300101T000000".to_vec());
    p.add_option(CoapOption::from(legacy::RSET), b"1000".to_vec());
    p.add_option(CoapOption::from(legacy::OET), b"20300101T000001".to_vec());
    p.add_option(CoapOption::from(legacy::EC), vec![3]);
    p.add_option(CoapOption::from(legacy::GID), b"grp".to_vec());
    p.add_option(CoapOption::from(legacy::RVI), b"2a".to_vec());
    p.add_option(CoapOption::from(onem2m::TY), vec![3]);
    let req = packet_to_primitive(&p, &Limits::default()).unwrap();
    assert_eq!((req.op, req.fr.as_deref(), req.rqi.as_str()), (Operation::Create, Some("Cae"), "old-1"));
    assert_eq!((req.ec, req.gid.as_deref(), req.rvi.as_deref(), req.ty), (Some(3), Some("grp"), Some("2a"), Some(3)));
    assert_eq!(req.rset.unwrap().relative_millis(), Some(1000));
    // The same parameter under both numbers is refused.
    p.add_option(CoapOption::from(onem2m::RQI), b"new-1".to_vec());
    assert_eq!(packet_to_primitive(&p, &Limits::default()).unwrap_err(), BindingError::DuplicateOption(onem2m::RQI));
    // A response with the older oneM2M-RSC (265) and oneM2M-RQI (257).
    let mut r = Packet::new();
    r.header.code = MessageClass::from((4 << 5) | 3);
    r.add_option(CoapOption::from(legacy::RSC), encode_uint(4107));
    r.add_option(CoapOption::from(legacy::RQI), b"old-1".to_vec());
    let rsp = packet_to_response(&r, &Limits::default()).unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (ResponseStatusCode::SECURITY_ASSOCIATION_REQUIRED, "old-1"));
}

#[test]
fn unknown_critical_options_are_refused_and_elective_ones_ignored() {
    let limits = Limits::default();
    let mut p = request(1, &["cse"]);
    p.add_option(CoapOption::Unknown(2048), b"x".to_vec()); // even: elective
    assert!(packet_to_primitive(&p, &limits).is_ok());
    for critical in [
        CoapOption::IfMatch,
        CoapOption::IfNoneMatch,
        CoapOption::ProxyUri,
        CoapOption::Oscore,
        CoapOption::Unknown(343),
        CoapOption::Unknown(65001),
    ] {
        let mut q = p.clone();
        q.add_option(critical, vec![1]);
        let err = packet_to_primitive(&q, &limits).unwrap_err();
        assert_eq!(err.coap_code(), (4, 2), "{critical:?}: {err}");
    }
    // A non-repeatable critical option sent twice is treated as unrecognized (RFC 7252 §5.4.5).
    let mut twice = p.clone();
    twice.add_option(CoapOption::from(onem2m::FR), b"a".to_vec());
    twice.add_option(CoapOption::from(onem2m::FR), b"b".to_vec());
    assert_eq!(packet_to_primitive(&twice, &limits).unwrap_err(), BindingError::BadOption(onem2m::FR));
}

#[test]
fn option_lengths_are_checked() {
    let limits = Limits::default();
    let cases: [(u16, usize); 7] = [
        (onem2m::RVI, 3),
        (onem2m::RVI, 0),
        (onem2m::TY, 3),
        (onem2m::RSC, 3),
        (onem2m::FR, 256),
        (rfc::URI_PATH, 256),
        (rfc::CONTENT_FORMAT, 3),
    ];
    for (number, len) in cases {
        let mut p = request(1, &["cse"]);
        p.add_option(CoapOption::from(number), vec![b'1'; len]);
        let err = packet_to_primitive(&p, &limits).unwrap_err();
        assert!(matches!(err, BindingError::OptionLength { .. }), "{number}/{len}: {err}");
        assert_eq!(err.coap_code(), (4, 2));
    }
    let mut long = RequestPrimitive::new(Operation::Retrieve, "cse", Some("x".repeat(256)), "r");
    assert!(matches!(primitive_to_packet(&long, &Encoding::default()), Err(BindingError::Unmappable { .. })));
    long.fr = None;
    long.rvi = Some("abc".into());
    assert!(matches!(primitive_to_packet(&long, &Encoding::default()), Err(BindingError::Unmappable { .. })));
}

#[test]
fn content_formats() {
    let limits = Limits::default();
    let json = br#"{"m2m:cnt":{"rn":"c"}}"#;
    for (cf, ok) in [
        (content_format::JSON, true),
        (content_format::RES_JSON, true),
        (content_format::NTFY_JSON, true),
        (content_format::ACME_RES_JSON, true),
        (content_format::XML, false),
        (content_format::RES_XML, false),
        (content_format::PREQ_JSON, false),
    ] {
        let mut p = request(3, &["cse"]);
        p.add_option(CoapOption::ContentFormat, encode_uint(cf.into()));
        p.payload = json.to_vec();
        match packet_to_primitive(&p, &limits) {
            Ok(req) => assert!(ok && req.pc == Some(json!({"m2m:cnt": {"rn": "c"}})), "{cf}"),
            Err(e) => assert!(
                !ok && e.rsc() == ResponseStatusCode::UNSUPPORTED_MEDIA_TYPE && e.coap_code() == (4, 15),
                "{cf}: {e}"
            ),
        }
    }
    // CBOR: {"a": 1} as res+cbor; a tag, a byte string or trailing bytes are refused.
    for (cf, payload, ok) in [
        (content_format::RES_CBOR, &[0xa1, 0x61, b'a', 0x01][..], true),
        (content_format::CBOR, &[0xa1, 0x61, b'a', 0x01, 0x00], false),
        (content_format::CBOR, &[0xc1, 0x01], false),
        (content_format::CBOR, &[0x41, 0x00], false),
        (content_format::CBOR, &[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02], false),
    ] {
        let mut p = request(3, &["cse"]);
        p.add_option(CoapOption::ContentFormat, encode_uint(cf.into()));
        p.payload = payload.to_vec();
        assert_eq!(packet_to_primitive(&p, &limits).is_ok(), ok, "{payload:02x?}");
    }
    let mut no_format = request(3, &["cse"]);
    no_format.payload = json.to_vec();
    assert_eq!(packet_to_primitive(&no_format, &limits).unwrap_err(), BindingError::MissingContentFormat);
    // Accept: the answer's format, 4.06 when it names one this binding cannot produce.
    let mut accept = request(1, &["cse"]);
    accept.add_option(CoapOption::Accept, encode_uint(content_format::RES_CBOR.into()));
    assert_eq!(answer_media(&accept).unwrap(), MediaType::Cbor);
    accept.clear_option(CoapOption::Accept);
    accept.add_option(CoapOption::Accept, encode_uint(content_format::XML.into()));
    let err = answer_media(&accept).unwrap_err();
    assert_eq!((err.rsc(), err.coap_code()), (ResponseStatusCode::NOT_ACCEPTABLE, (4, 6)));
}

#[test]
fn table_6_2_4_1_response_codes_with_the_rsc_option() {
    let cases = [
        (2000, Operation::Retrieve, (2, 5)),
        (2000, Operation::Notify, (2, 4)),
        (2001, Operation::Create, (2, 1)),
        (2002, Operation::Delete, (2, 2)),
        (2004, Operation::Update, (2, 4)),
        (4105, Operation::Create, (4, 3)),
        (4120, Operation::Retrieve, (4, 2)),
        (4107, Operation::Retrieve, (4, 3)),
        (5207, Operation::Retrieve, (4, 6)),
        (4008, Operation::Retrieve, (5, 4)),
        (4001, Operation::Retrieve, (5, 1)),
        (5103, Operation::Retrieve, (4, 4)),
    ];
    for (rsc, op, (class, detail)) in cases {
        let rsp = ResponsePrimitive::new(ResponseStatusCode::new(rsc), "r");
        let p = response_to_packet(&rsp, op, MediaType::Json).unwrap();
        assert_eq!(u8::from(p.header.code), (class << 5) | detail, "{rsc}");
        assert_eq!(p.get_first_option(CoapOption::from(onem2m::RSC)).unwrap(), &encode_uint(rsc.into()));
        assert_eq!(packet_to_response(&p, &Limits::default()).unwrap().rsc.code(), rsc);
    }
    // Without oneM2M-RSC (an answer from the CoAP layer) the code is derived, rqi left empty.
    let mut bare = Packet::new();
    bare.header.code = MessageClass::from((4 << 5) | 2);
    let rsp = packet_to_response(&bare, &Limits::default()).unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (ResponseStatusCode::BAD_REQUEST, ""));
}

#[test]
fn created_resource_uri_goes_in_location_path() {
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::CREATED, "r");
    rsp.pc = Some(json!({"m2m:uri": "cse-in/ae1/cnt"}));
    let p = response_to_packet(&rsp, Operation::Create, MediaType::Json).unwrap();
    let location: Vec<_> = p.get_option(CoapOption::LocationPath).unwrap().iter().cloned().collect();
    assert_eq!(location, [b"cse-in".to_vec(), b"ae1".to_vec(), b"cnt".to_vec()]);
    assert_eq!(packet_to_response(&p, &Limits::default()).unwrap(), rsp);
}

#[test]
fn partial_retrieve_uses_atrl() {
    let req = RequestPrimitive::new(Operation::Retrieve, "cse-in/ae#lbl", None, "r");
    let p = primitive_to_packet(&req, &Encoding::default()).unwrap();
    assert_eq!(p.get_first_option(CoapOption::UriQuery).unwrap(), b"atrl=lbl");
    assert_eq!(packet_to_primitive(&p, &Limits::default()).unwrap(), req);
}

#[test]
fn malformed_datagrams_are_recognized() {
    let ok = [0x40, 0x01, 0x12, 0x34];
    assert!(parse(&ok).is_ok());
    for bad in [
        &[][..],
        &[0x40, 0x01, 0x12],                   // short header
        &[0x80, 0x01, 0x12, 0x34],             // version 2
        &[0x49, 0x01, 0x12, 0x34],             // token length 9
        &[0x41, 0x01, 0x12, 0x34],             // token length 1, no token
        &[0x40, 0x01, 0x12, 0x34, 0xff],       // payload marker, no payload
        &[0x40, 0x00, 0x12, 0x34, 0x01],       // Empty message with more bytes
        &[0x40, 0x01, 0x12, 0x34, 0xd1],       // option delta 13 without its byte
        &[0x40, 0x01, 0x12, 0x34, 0xf0],       // option delta 15
        &[0x40, 0x01, 0x12, 0x34, 0x15, b'a'], // option longer than the datagram
    ] {
        let err = parse(bad).unwrap_err();
        if bad.len() >= 4 && bad[0] >> 6 == 1 {
            assert_eq!((err.message_id, err.confirmable), (Some(0x1234), true), "{bad:02x?}");
        }
    }
    let mut reset = Packet::new();
    reset.header.set_type(MessageType::Reset);
    assert!(parse(&reset.to_bytes().unwrap()).is_ok());
}
