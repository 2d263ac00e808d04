//! The compact secured form on CoAP (docs/protocol.md §4.3, Carriage): the content
//! `{"sa:cmp": …}` travels as the raw payload: a request bare (a POST with no Uri-Path, no
//! Content-Format, no oneM2M option), its answer with Content-Format 65000 alone; both map back to
//! the same content.

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa_coap::coap_lite::CoapOption;
use onem2m_sa_coap::{
    Encoding, Limits, MediaType, packet_to_primitive, packet_to_response, primitive_to_packet, response_to_packet,
};

const SEALED: [u8; 28] =
    [0x41, 1, 2, 3, 4, 5, 6, 7, 8, 0x00, 0xff, b'{', 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];

fn content_format(packet: &onem2m_sa_coap::coap_lite::Packet) -> Vec<u8> {
    packet.get_option(CoapOption::ContentFormat).and_then(|v| v.front().cloned()).unwrap_or_default()
}

/// The numbers of the options a packet carries.
fn option_numbers(packet: &onem2m_sa_coap::coap_lite::Packet) -> Vec<u16> {
    packet.options().map(|(n, _)| *n).collect()
}

#[test]
fn a_compact_request_is_the_raw_payload_and_nothing_else() {
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "sec-1");
    req.rvi = Some("3".into());
    req.pc = Some(compact::content(&SEALED));
    for media in [MediaType::Json, MediaType::Cbor] {
        let mut packet = primitive_to_packet(&req, &Encoding { media, ..Encoding::default() }).unwrap();
        assert_eq!(packet.payload, SEALED, "raw bytes");
        assert!(option_numbers(&packet).is_empty(), "no option: to, fr, rqi and rvi are not sent");
        packet.set_token(vec![0xbe, 0xef]);
        let back = packet_to_primitive(&packet, &Limits::default()).unwrap();
        assert_eq!((back.op, back.pc.as_ref(), back.rqi.as_str()), (Operation::Notify, req.pc.as_ref(), "coap-beef"));
        assert_eq!((back.to.as_str(), back.fr.as_deref(), back.rvi.as_deref()), ("", None, None));
    }
    // Uri-Host and Uri-Port stay when configured (the datagram may go through a proxy).
    let encoding = Encoding { uri_host: Some("cse.example".into()), uri_port: Some(5684), ..Encoding::default() };
    let packet = primitive_to_packet(&req, &encoding).unwrap();
    assert_eq!(option_numbers(&packet), [3, 7]);
    // A bare request with Content-Format 65000 is taken as well.
    let mut packet = primitive_to_packet(&req, &Encoding::default()).unwrap();
    packet.add_option(CoapOption::ContentFormat, 65000u16.to_be_bytes().to_vec());
    assert_eq!(packet_to_primitive(&packet, &Limits::default()).unwrap().pc, req.pc);
    // Not bare: a POST that names a target, or carries a request identifier or another format.
    let mut named = packet.clone();
    named.add_option(CoapOption::UriPath, b"cse".to_vec());
    assert_ne!(packet_to_primitive(&named, &Limits::default()).map(|r| r.pc).ok(), Some(req.pc.clone()));
    let mut json = primitive_to_packet(&req, &Encoding::default()).unwrap();
    json.add_option(CoapOption::ContentFormat, vec![50]);
    json.payload = br#"{"m2m:sgn":{}}"#.to_vec();
    assert!(packet_to_primitive(&json, &Limits::default()).is_err(), "a JSON POST without a target");
}

#[test]
fn a_compact_request_with_its_options_still_maps_with_them() {
    // A sender that sends the outer NOTIFY's options (an earlier build) is understood.
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "sec-1");
    req.rvi = Some("3".into());
    let mut packet = primitive_to_packet(&req, &Encoding::default()).unwrap();
    packet.add_option(CoapOption::ContentFormat, 65000u16.to_be_bytes().to_vec());
    packet.payload = SEALED.to_vec();
    let back = packet_to_primitive(&packet, &Limits::default()).unwrap();
    assert_eq!((back.to.as_str(), back.fr.as_deref(), back.rqi.as_str()), ("/id-in", Some("/id-asn"), "sec-1"));
    assert_eq!(back.pc, Some(compact::content(&SEALED)));
}

#[test]
fn a_compact_answer_is_the_raw_payload_with_content_format_65000_and_nothing_else() {
    let mut rsp = ResponsePrimitive::new(Rsc::OK, "sec-1");
    rsp.rvi = Some("3".into());
    rsp.pc = Some(compact::content(&SEALED));
    let packet = response_to_packet(&rsp, Operation::Notify, MediaType::Json).unwrap();
    assert_eq!(packet.payload, SEALED);
    assert_eq!(content_format(&packet), 65000u16.to_be_bytes());
    assert_eq!(option_numbers(&packet), [12], "no oneM2M-RSC, -RQI or -RVI");
    let back = packet_to_response(&packet, &Limits::default()).unwrap();
    assert_eq!((back.rsc, back.pc), (Rsc::OK, rsp.pc.clone()), "a bare compact answer is a 2000");
    // A refusal is never compact, and keeps its code: an unsealed 4112 is not taken for a 2000.
    let refusal = ResponsePrimitive::error(Rsc::ESPRIM_UNKNOWN_KEY_ID, "sec-1", "unknown SA");
    let packet = response_to_packet(&refusal, Operation::Notify, MediaType::Json).unwrap();
    assert_eq!(packet_to_response(&packet, &Limits::default()).unwrap().rsc, Rsc::ESPRIM_UNKNOWN_KEY_ID);
    // A 2.04 with a JSON payload and no oneM2M-RSC is still a 2004 (TS-0008 Table 6.2.4-1).
    let mut plain = ResponsePrimitive::new(Rsc::OK, "x");
    plain.pc = Some(serde_json::json!({"m2m:dbg": "x"}));
    let mut packet = response_to_packet(&plain, Operation::Notify, MediaType::Json).unwrap();
    packet.clear_option(CoapOption::from(307));
    assert_eq!(packet_to_response(&packet, &Limits::default()).unwrap().rsc, Rsc::new(2004));
}

#[test]
fn an_oversize_compact_payload_is_refused() {
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "big");
    req.pc = Some(compact::content(&[0x21; 2048]));
    let packet = primitive_to_packet(&req, &Encoding::default()).unwrap();
    let limits = Limits { max_payload_bytes: 1024, ..Limits::default() };
    assert!(packet_to_primitive(&packet, &limits).is_err());
}
