//! The check behind the MQTT fuzz target (`fuzz/fuzz_targets/mqtt_decode.rs`), shared with the
//! corpus replay test (`tests/mqtt_fuzz_corpus.rs`).

use onem2m_sa_mqtt::{Limits, Message, Topic, decode_id, decode_message, encode_id, encode_request, encode_response};

/// A received PUBLISH: the topic up to the first newline, the payload after it. Decoding never
/// panics; what it accepts re-encodes to a topic and payload that decode to the same message;
/// a topic ID decodes to an ID that encodes back to it.
pub fn mqtt_decode(data: &[u8]) {
    let (topic, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(topic) = std::str::from_utf8(topic) else { return };
    let small = Limits { max_payload_bytes: 64, max_depth: 4 };
    let _ = decode_message(topic, payload, "", &small);
    let _ = decode_message(topic, payload, "/pre", &Limits::default());
    if let Ok(t) = Topic::parse(topic, "") {
        assert_eq!(t.to_string(), topic, "a parsed topic re-serializes to itself");
        for id in [&t.originator, &t.receiver] {
            let decoded = decode_id(id).expect("a topic ID decodes");
            assert_eq!(&encode_id(&decoded).expect("a decoded ID encodes"), id, "topic ID round trip");
        }
    }
    let Ok(message) = decode_message(topic, payload, "", &Limits::default()) else { return };
    let again = match &message {
        Message::Request(_, req) => encode_request(req).expect("a decoded request encodes"),
        Message::Response(_, rsp) => encode_response(rsp).expect("a decoded response encodes"),
    };
    let back = decode_message(topic, &again, "", &Limits::default()).expect("a re-encoded message decodes");
    assert_eq!(back, message, "message changed in a round trip");
}
