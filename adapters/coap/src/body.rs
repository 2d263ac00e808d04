//! Payload ↔ `pc` (TS-0008 §6.2.3): JSON or CBOR, decoded strictly into the
//! `serde_json::Value` the rest of the middleware works on.

use onem2m_primitive::{DecodeLimits, PrimitiveError, RequestPrimitive};
use serde_json::{Map, Number, Value};

use crate::{BindingError, Limits, MediaType};

/// Decodes a received payload into `pc`. An empty payload is no content.
pub(crate) fn decode(payload: &[u8], media: Option<MediaType>, limits: &Limits) -> Result<Option<Value>, BindingError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(BindingError::PayloadTooLarge { size: payload.len(), limit: limits.max_payload_bytes });
    }
    if payload.is_empty() {
        return Ok(None);
    }
    match media {
        None => Err(BindingError::MissingContentFormat),
        Some(MediaType::Json) => decode_json(payload, limits.max_depth).map(Some),
        Some(MediaType::Cbor) => decode_cbor(payload, limits.max_depth).map(Some),
    }
}

/// Strict JSON: exactly one value, the primitive crate's depth limit and duplicate-member check
/// (the payload is embedded as the `pc` of a skeleton primitive once it is known to be one value).
fn decode_json(payload: &[u8], max_depth: usize) -> Result<Value, BindingError> {
    let invalid = |e: &dyn std::fmt::Display| BindingError::InvalidPayload(e.to_string());
    let mut single = serde_json::Deserializer::from_slice(payload);
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut single).map_err(|e| invalid(&e))?;
    single.end().map_err(|e| invalid(&e))?;
    const HEAD: &[u8] = br#"{"op":5,"to":"","rqi":"","pc":"#;
    let mut wrapped = Vec::with_capacity(HEAD.len() + payload.len() + 1);
    wrapped.extend_from_slice(HEAD);
    wrapped.extend_from_slice(payload);
    wrapped.push(b'}');
    let limits = DecodeLimits { max_bytes: wrapped.len(), max_depth: max_depth.saturating_add(1) };
    match RequestPrimitive::from_json_slice_with_limits(&wrapped, limits) {
        Ok(p) => Ok(p.pc.unwrap_or(Value::Null)),
        Err(PrimitiveError::TooDeep { .. }) => {
            Err(BindingError::InvalidPayload(format!("nesting exceeds {max_depth}")))
        }
        Err(e) => Err(invalid(&e)),
    }
}

/// Strict CBOR: one data item, no trailing bytes, nesting within `max_depth`, text map keys,
/// no duplicate keys, no tags, byte strings or non-finite floats (JSON cannot carry them).
fn decode_cbor(payload: &[u8], max_depth: usize) -> Result<Value, BindingError> {
    let mut rest = payload;
    let limit = max_depth.saturating_add(1);
    let item: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, limit)
        .map_err(|e| BindingError::InvalidPayload(format!("CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(BindingError::InvalidPayload(format!("{} bytes after the CBOR item", rest.len())));
    }
    to_json(item, 1, max_depth)
}

fn to_json(item: ciborium::Value, depth: usize, max_depth: usize) -> Result<Value, BindingError> {
    let invalid = |what: &str| Err(BindingError::InvalidPayload(format!("CBOR: {what}")));
    let nested = |depth: usize| {
        if depth > max_depth {
            Err(BindingError::InvalidPayload(format!("nesting exceeds {max_depth}")))
        } else {
            Ok(())
        }
    };
    Ok(match item {
        ciborium::Value::Null => Value::Null,
        ciborium::Value::Bool(b) => Value::Bool(b),
        ciborium::Value::Text(s) => Value::String(s),
        ciborium::Value::Integer(i) => {
            let i = i128::from(i);
            match (u64::try_from(i), i64::try_from(i)) {
                (Ok(u), _) => Value::from(u),
                (_, Ok(s)) => Value::from(s),
                _ => return invalid("integer out of the 64-bit range"),
            }
        }
        ciborium::Value::Float(f) => match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => return invalid("NaN or infinite float"),
        },
        ciborium::Value::Array(items) => {
            nested(depth)?;
            Value::Array(items.into_iter().map(|v| to_json(v, depth + 1, max_depth)).collect::<Result<_, _>>()?)
        }
        ciborium::Value::Map(pairs) => {
            nested(depth)?;
            let mut map = Map::new();
            for (k, v) in pairs {
                let ciborium::Value::Text(k) = k else { return invalid("map key is not a text string") };
                if map.contains_key(&k) {
                    return invalid(&format!("duplicate map key `{k}`"));
                }
                let v = to_json(v, depth + 1, max_depth)?;
                map.insert(k, v);
            }
            Value::Object(map)
        }
        ciborium::Value::Bytes(_) => return invalid("byte string"),
        ciborium::Value::Tag(tag, _) => return invalid(&format!("tag {tag}")),
        _ => return invalid("unsupported item"),
    })
}

/// Encodes `pc` as a payload in `media`.
pub(crate) fn encode(pc: Option<&Value>, media: MediaType) -> Result<Vec<u8>, BindingError> {
    let Some(pc) = pc else { return Ok(Vec::new()) };
    let failed =
        |e: &dyn std::fmt::Display| BindingError::Unmappable { element: "pc".to_owned(), reason: e.to_string() };
    match media {
        MediaType::Json => serde_json::to_vec(pc).map_err(|e| failed(&e)),
        MediaType::Cbor => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(pc, &mut out).map_err(|e| failed(&e))?;
            Ok(out)
        }
    }
}
