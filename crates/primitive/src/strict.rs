//! A JSON reader for untrusted primitives: builds a `serde_json::Value` while enforcing a
//! nesting limit and rejecting duplicate member names, which TS-0004 §8.4.2 forbids and
//! which different parsers resolve differently (first wins, last wins).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::PrimitiveError;

/// Parses `bytes` as one JSON value of at most `max_depth` nested arrays/objects.
pub(crate) fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, PrimitiveError> {
    let violation = Cell::new(None);
    let seed = Strict { depth_left: max_depth, max_depth, violation: &violation };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (result, violation.take()) {
        (_, Some(violation)) => Err(violation),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(PrimitiveError::Json(e)),
    }
}

#[derive(Clone, Copy)]
struct Strict<'a> {
    depth_left: usize,
    max_depth: usize,
    /// The typed cause, since serde errors only carry a message.
    violation: &'a Cell<Option<PrimitiveError>>,
}

impl Strict<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(Self { depth_left, ..self }),
            None => Err(self.fail(PrimitiveError::TooDeep { limit: self.max_depth })),
        }
    }

    fn fail<E: de::Error>(self, violation: PrimitiveError) -> E {
        let e = E::custom(&violation);
        self.violation.set(Some(violation));
        e
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match object.entry(key) {
                serde_json::map::Entry::Occupied(e) => {
                    return Err(self.fail(PrimitiveError::DuplicateMember(e.key().clone())));
                }
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(map.next_value_seed(inner)?);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit() {
        assert!(parse(b"[[[1]]]", 3).is_ok());
        assert!(matches!(parse(b"[[[1]]]", 2), Err(PrimitiveError::TooDeep { limit: 2 })));
        assert!(matches!(parse(br#"{"a":{"b":{}}}"#, 2), Err(PrimitiveError::TooDeep { limit: 2 })));
        assert!(parse(b"1", 0).is_ok());
        // Far beyond serde_json's own recursion limit: still our typed error, no overflow.
        let deep = "[".repeat(100_000);
        assert!(matches!(parse(deep.as_bytes(), 32), Err(PrimitiveError::TooDeep { limit: 32 })));
    }

    #[test]
    fn duplicates_rejected_at_any_level() {
        assert!(matches!(
            parse(br#"{"fr":"a","fr":"b"}"#, 8),
            Err(PrimitiveError::DuplicateMember(k)) if k == "fr"
        ));
        assert!(matches!(
            parse(br#"{"pc":{"m2m:ae":{"rn":"a","rn":"b"}}}"#, 8),
            Err(PrimitiveError::DuplicateMember(k)) if k == "rn"
        ));
        // Distinct after unescaping is what counts.
        assert!(matches!(parse(br#"{"fr":"a","f\u0072":"b"}"#, 8), Err(PrimitiveError::DuplicateMember(_))));
    }

    #[test]
    fn same_value_as_serde_json() {
        let text = br#"{"a":[1,-2,3.5,true,null,"x\n"],"b":{"c":18446744073709551615}}"#;
        let ours = parse(text, 8).unwrap();
        let theirs: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(ours, theirs);
        assert!(matches!(parse(b"{} x", 8), Err(PrimitiveError::Json(_))));
        assert!(matches!(parse(b"{", 8), Err(PrimitiveError::Json(_))));
    }
}
