//! The compact secured form on CoAP (docs/protocol.md §4.3, Carriage): the content
//! `{"sa:cmp": …}` travels as the raw payload with Content-Format 65000, both ways, and maps back
//! to the same content.

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa_coap::coap_lite::CoapOption;
use onem2m_sa_coap::{
    Encoding, Limits, MediaType, packet_to_primitive, packet_to_response, primitive_to_packet, response_to_packet,
};

const SEALED: [u8; 28] =
    [0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x00, 0xff, b'{', 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];

fn content_format(packet: &onem2m_sa_coap::coap_lite::Packet) -> Vec<u8> {
    packet.get_option(CoapOption::ContentFormat).and_then(|v| v.front().cloned()).unwrap_or_default()
}

#[test]
fn a_compact_request_is_the_raw_payload_with_content_format_65000() {
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "sec-1");
    req.rvi = Some("3".into());
    req.pc = Some(compact::content(&SEALED));
    for media in [MediaType::Json, MediaType::Cbor] {
        let packet = primitive_to_packet(&req, &Encoding { media, ..Encoding::default() }).unwrap();
        assert_eq!(packet.payload, SEALED, "raw bytes");
        assert_eq!(content_format(&packet), 65000u16.to_be_bytes());
        let back = packet_to_primitive(&packet, &Limits::default()).unwrap();
        assert_eq!((back.op, back.pc.as_ref(), back.rqi.as_str()), (Operation::Notify, req.pc.as_ref(), "sec-1"));
    }
}

#[test]
fn a_compact_answer_is_the_raw_payload_with_content_format_65000() {
    let mut rsp = ResponsePrimitive::new(Rsc::OK, "sec-1");
    rsp.pc = Some(compact::content(&SEALED));
    let packet = response_to_packet(&rsp, Operation::Notify, MediaType::Json).unwrap();
    assert_eq!(packet.payload, SEALED);
    assert_eq!(content_format(&packet), 65000u16.to_be_bytes());
    let back = packet_to_response(&packet, &Limits::default()).unwrap();
    assert_eq!((back.rsc, back.pc), (Rsc::OK, rsp.pc));
}

#[test]
fn an_oversize_compact_payload_is_refused() {
    let mut req = RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".into()), "big");
    req.pc = Some(compact::content(&[0x21; 2048]));
    let packet = primitive_to_packet(&req, &Encoding::default()).unwrap();
    let limits = Limits { max_payload_bytes: 1024, ..Limits::default() };
    assert!(packet_to_primitive(&packet, &limits).is_err());
}
