//! Serde helpers: byte strings as base64url without padding, bounded on decode.
//!
//! Use as `#[serde(with = "crate::b64")]` or, for an optional field,
//! `#[serde(default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]`.
//! Decoding is strict: padding, non-canonical trailing bits and text over 64 KiB are refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serializer};

/// Longest base64 text accepted for one element.
const MAX_TEXT: usize = 64 * 1024;

/// Encodes as base64url without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; refuses text over 64 KiB before decoding it.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.len() > MAX_TEXT {
        return Err(base64::DecodeError::InvalidLength(text.len()));
    }
    URL_SAFE_NO_PAD.decode(text)
}

/// Serializes bytes as a base64url string.
pub(crate) fn serialize<S: Serializer>(bytes: &impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(bytes.as_ref()))
}

/// Deserializes a base64url string.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    decode(&text).map_err(|_| serde::de::Error::custom("invalid or oversized base64url"))
}

/// The same for `Option<Vec<u8>>`: `None` is `null` (or, with `#[serde(default)]`, absent).
pub(crate) mod option {
    use super::*;

    /// Serializes `Some` as base64url, `None` as `null`.
    pub(crate) fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes `null` as `None`, a base64url string as `Some`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match <Option<std::borrow::Cow<'de, str>>>::deserialize(d)? {
            Some(text) => {
                decode(&text).map(Some).map_err(|_| serde::de::Error::custom("invalid or oversized base64url"))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(with = "crate::b64")]
        a: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
        b: Option<Vec<u8>>,
    }

    #[test]
    fn round_trip_and_option() {
        let t = T { a: vec![0xfb, 0xff, 0x00], b: Some(vec![1]) };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"a":"-_8A","b":"AQ"}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        let none = T { a: vec![], b: None };
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"a":""}"#);
        assert_eq!(serde_json::from_str::<T>(r#"{"a":""}"#).unwrap(), none);
        assert_eq!(serde_json::from_str::<T>(r#"{"a":"","b":null}"#).unwrap(), none);
    }

    #[test]
    fn strict_decoding() {
        assert!(serde_json::from_str::<T>(r#"{"a":"AQ=="}"#).is_err(), "padding");
        assert!(serde_json::from_str::<T>(r#"{"a":"+/8A"}"#).is_err(), "standard alphabet");
        assert!(serde_json::from_str::<T>(r#"{"a":"AR"}"#).is_err(), "non-canonical trailing bits");
        assert!(serde_json::from_str::<T>(r#"{"a":"A"}"#).is_err(), "impossible length");
        assert!(serde_json::from_str::<T>(r#"{"a":"","b":"A"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn oversized_text_is_refused() {
        let max = "A".repeat(super::MAX_TEXT);
        assert_eq!(super::decode(&max).unwrap().len(), super::MAX_TEXT / 4 * 3);
        let over = "A".repeat(super::MAX_TEXT + 4);
        assert!(super::decode(&over).is_err());
        assert!(serde_json::from_str::<T>(&format!(r#"{{"a":"{over}"}}"#)).is_err());
    }
}
