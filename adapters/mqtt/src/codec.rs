//! Payloads (TS-0010 §6.4.1–§6.4.2): the whole primitive serialized per TS-0004 §8, here JSON,
//! decoded strictly under [`Limits`] and checked against the topic it came on.

use onem2m_primitive::{DecodeLimits, PrimitiveError, RequestPrimitive, ResponsePrimitive};

use crate::Limits;
use crate::topic::{Format, Topic, TopicError};

/// A received message, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request (on a `req` or `reg_req` topic).
    Request(Topic, Box<RequestPrimitive>),
    /// A response (on a `resp` or `reg_resp` topic).
    Response(Topic, Box<ResponsePrimitive>),
}

impl Message {
    /// The topic it came on.
    pub fn topic(&self) -> &Topic {
        match self {
            Self::Request(t, _) | Self::Response(t, _) => t,
        }
    }
}

/// Why a received message is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The topic is not a oneM2M topic.
    #[error("malformed topic")]
    Topic(#[from] TopicError),
    /// The payload exceeds [`Limits::max_payload_bytes`].
    #[error("payload of {size} bytes exceeds {limit}")]
    Oversize {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The topic names a serialization this binding does not decode (XML, CBOR).
    #[error("unsupported serialization {0:?}")]
    UnsupportedFormat(Format),
    /// The payload is not a primitive of the topic's kind (or lacks `rqi`, or a request lacks
    /// `op`/`to`, or a response `rsc`).
    #[error("malformed payload")]
    Payload(#[source] PrimitiveError),
}

/// Decodes a PUBLISH received on `topic` (under the broker path `prefix`). Never panics.
pub fn decode_message(topic: &str, payload: &[u8], prefix: &str, limits: &Limits) -> Result<Message, DecodeError> {
    let topic = Topic::parse(topic, prefix)?;
    if payload.len() > limits.max_payload_bytes {
        return Err(DecodeError::Oversize { size: payload.len(), limit: limits.max_payload_bytes });
    }
    if topic.format != Format::Json {
        return Err(DecodeError::UnsupportedFormat(topic.format));
    }
    let decode = DecodeLimits { max_bytes: limits.max_payload_bytes, max_depth: limits.max_depth };
    if topic.kind.is_request() {
        let req = RequestPrimitive::from_json_slice_with_limits(payload, decode).map_err(DecodeError::Payload)?;
        if req.rqi.is_empty() {
            return Err(DecodeError::Payload(PrimitiveError::MissingElement("rqi")));
        }
        Ok(Message::Request(topic, Box::new(req)))
    } else {
        let rsp = ResponsePrimitive::from_json_slice_with_limits(payload, decode).map_err(DecodeError::Payload)?;
        Ok(Message::Response(topic, Box::new(rsp)))
    }
}

/// Longest request identifier [`scan_rqi`] returns.
const MAX_SCANNED_RQI_BYTES: usize = 256;

/// The request identifier of a payload too large to decode, found without decoding it: the
/// first `"rqi"` member with a plain string value (no escapes, no control characters, at most
/// 256 bytes). `None` when there is none. One pass over the payload, no allocation but the
/// result; a `"rqi"` key nested in the content could be found instead of the primitive's, which
/// only misaddresses a refusal.
pub fn scan_rqi(payload: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"rqi\"";
    let skip_ws = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    let mut from = 0;
    while let Some(at) = payload.get(from..)?.windows(KEY.len()).position(|w| w == KEY) {
        let mut rest = &payload[from + at + KEY.len()..];
        from += at + KEY.len();
        rest = &rest[skip_ws(rest)..];
        let Some(rest) = rest.strip_prefix(b":") else { continue };
        let rest = &rest[skip_ws(rest)..];
        let Some(rest) = rest.strip_prefix(b"\"") else { continue };
        let end = rest.iter().take(MAX_SCANNED_RQI_BYTES + 1).position(|&c| c == b'"')?;
        let value = &rest[..end];
        if value.is_empty() || value.iter().any(|&c| c == b'\\' || c < 0x20) {
            return None;
        }
        return std::str::from_utf8(value).ok().map(str::to_owned);
    }
    None
}

/// Serializes a request for a `req`/`reg_req` topic.
pub fn encode_request(req: &RequestPrimitive) -> Result<Vec<u8>, PrimitiveError> {
    req.to_json_vec()
}

/// Serializes a response for a `resp`/`reg_resp` topic.
pub fn encode_response(rsp: &ResponsePrimitive) -> Result<Vec<u8>, PrimitiveError> {
    rsp.to_json_vec()
}

#[cfg(test)]
mod tests {
    use onem2m_primitive::{Operation, ResponseStatusCode};

    use super::*;
    use crate::topic::Kind;

    #[test]
    fn the_rqi_of_an_oversize_payload_is_found_without_decoding() {
        assert_eq!(scan_rqi(b"{\"op\":1,\"rqi\" : \"r-42\",\"pc\":\"xxxx\"}").as_deref(), Some("r-42"));
        assert_eq!(scan_rqi(b"{\"pc\":\"rqi\",\"rqi\":\"r2\"}").as_deref(), Some("r2"));
        for bad in [&b"{\"rqi\":1}"[..], b"{\"rqi\":\"a\\\"b\"}", b"{\"rqi\":\"\"}", b"     ", b"{\"rqi\":\"open"] {
            assert_eq!(scan_rqi(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("{{\"rqi\":\"{}\"}}", "x".repeat(MAX_SCANNED_RQI_BYTES + 1));
        assert_eq!(scan_rqi(long.as_bytes()), None);
    }

    #[test]
    fn round_trip_and_refusals() {
        let limits = Limits::default();
        let mut req = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-in", Some("CAE1".into()), "r1");
        req.rvi = Some("3".into());
        let bytes = encode_request(&req).unwrap();
        let Message::Request(t, got) = decode_message("/oneM2M/req/CAE1/id-in/json", &bytes, "", &limits).unwrap()
        else {
            panic!("not a request");
        };
        assert_eq!((t.kind, *got), (Kind::Request, req.clone()));
        let rsp = ResponsePrimitive::new(ResponseStatusCode::OK, "r1");
        let bytes = encode_response(&rsp).unwrap();
        let m = decode_message("/oneM2M/resp/CAE1/id-in/json", &bytes, "", &limits).unwrap();
        assert!(matches!(m, Message::Response(_, r) if *r == rsp));
        // A response on a request topic, and the other way round, are malformed.
        assert!(matches!(
            decode_message("/oneM2M/req/CAE1/id-in/json", &bytes, "", &limits),
            Err(DecodeError::Payload(_))
        ));
        let small = Limits { max_payload_bytes: 4, ..limits };
        assert!(matches!(
            decode_message("/oneM2M/resp/a/b/json", &bytes, "", &small),
            Err(DecodeError::Oversize { .. })
        ));
        assert!(matches!(
            decode_message("/oneM2M/resp/a/b/cbor", &bytes, "", &limits),
            Err(DecodeError::UnsupportedFormat(_))
        ));
        assert!(matches!(decode_message("/x", &bytes, "", &limits), Err(DecodeError::Topic(_))));
        assert!(matches!(
            decode_message("/oneM2M/req/a/b/json", b"{\"op\":2,\"to\":\"x\",\"rqi\":\"\"}", "", &limits),
            Err(DecodeError::Payload(_))
        ));
    }
}
