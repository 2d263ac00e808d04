//! How a secured primitive in the compact binary form (onem2m-sa, docs/protocol.md §4.3) rides
//! in a primitive and on the bindings.
//!
//! Inside a primitive the compact bytes are the content `{"sa:cmp": "<base64url, no padding>"}`
//! of the outer NOTIFY (or of its answer). The bindings do not send that JSON: on HTTP the body
//! is the raw compact bytes with `Content-Type:` [`MEDIA_TYPE`], on CoAP the payload is the raw
//! bytes with Content-Format [`CONTENT_FORMAT`]; a receiver maps them back to the same content.
//! A binding that does not know the type answers 415 / 4.15 (RSC 4015, UNSUPPORTED_MEDIA_TYPE).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The member of the content that holds the compact bytes.
pub const MEMBER: &str = "sa:cmp";
/// The HTTP media type of a body that is a compact secured primitive.
pub const MEDIA_TYPE: &str = "application/vnd.onem2m-sa.compact";
/// The CoAP Content-Format of a payload that is a compact secured primitive (from the
/// experimental range 65000–65535 of RFC 7252 §12.3; not registered).
pub const CONTENT_FORMAT: u16 = 65000;

/// The content that carries `bytes`.
pub fn content(bytes: &[u8]) -> Value {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(MEMBER.to_owned(), Value::String(URL_SAFE_NO_PAD.encode(bytes)));
    Value::Object(map)
}

/// Whether `pc` is a compact content (exactly one member, [`MEMBER`], a string).
pub fn is_compact(pc: &Value) -> bool {
    pc.as_object().is_some_and(|m| m.len() == 1 && m.get(MEMBER).is_some_and(Value::is_string))
}

/// The compact bytes `pc` carries: `None` when it is not a compact content, `Some(Err)` when
/// its member is not base64url.
pub fn bytes(pc: &Value) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    if !is_compact(pc) {
        return None;
    }
    let text = pc.get(MEMBER).and_then(Value::as_str).expect("checked");
    Some(URL_SAFE_NO_PAD.decode(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pc = content(&[0x21, 0, 255, 7]);
        assert_eq!(pc, serde_json::json!({"sa:cmp": "IQD_Bw"}));
        assert_eq!(bytes(&pc).unwrap().unwrap(), [0x21, 0, 255, 7]);
        assert!(bytes(&serde_json::json!({"m2m:seci": {}})).is_none());
        assert!(bytes(&serde_json::json!({"sa:cmp": "IQ", "x": 1})).is_none());
        assert!(bytes(&serde_json::json!({"sa:cmp": "!"})).unwrap().is_err());
    }
}
