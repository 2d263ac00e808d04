//! `Content-Type` (TS-0009 §6.4.3, TS-0004 §6.7) and message-body ↔ `pc` (§6.5).

use bytes::Bytes;
use http::HeaderMap;
use onem2m_primitive::{DecodeLimits, PrimitiveError, RequestPrimitive};
use serde_json::Value;

use crate::{BindingError, Limits, headers};

/// The serialization a media type stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serialization {
    /// `application/json`, `application/vnd.onem2m-res+json`, `application/vnd.onem2m-ntfy+json`.
    Json,
    /// `application/cbor`, `application/vnd.onem2m-res+cbor`, `application/vnd.onem2m-ntfy+cbor`.
    Cbor,
}

/// A parsed `Content-Type`: the serialization and the `ty` parameter, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentType {
    /// Serialization of the body.
    pub(crate) serialization: Serialization,
    /// `ty=N` resource type parameter (CREATE only).
    pub(crate) ty: Option<u32>,
}

/// Parses a `Content-Type` value: a media type and `;`-separated parameters, of which `ty`
/// is read and the others (e.g. `charset`) are ignored.
pub(crate) fn parse_content_type(value: &str) -> Result<ContentType, BindingError> {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let serialization = match essence.as_str() {
        "application/json" | "application/vnd.onem2m-res+json" | "application/vnd.onem2m-ntfy+json" => {
            Serialization::Json
        }
        "application/cbor" | "application/vnd.onem2m-res+cbor" | "application/vnd.onem2m-ntfy+cbor" => {
            Serialization::Cbor
        }
        _ => return Err(BindingError::UnsupportedMediaType(essence)),
    };
    let mut ty = None;
    for param in parts {
        let (name, v) = param.split_once('=').unwrap_or((param, ""));
        if !name.trim().eq_ignore_ascii_case("ty") {
            continue;
        }
        let v = v.trim().trim_matches('"');
        let parsed = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u32>().ok())
            .flatten()
            .ok_or_else(|| BindingError::InvalidResourceType(v.to_owned()))?;
        if ty.replace(parsed).is_some() {
            return Err(BindingError::InvalidResourceType(v.to_owned()));
        }
    }
    Ok(ContentType { serialization, ty })
}

/// The `Content-Type` of a received message, if present.
pub(crate) fn content_type(headers: &HeaderMap, limits: &Limits) -> Result<Option<ContentType>, BindingError> {
    headers::single(headers, "Content-Type", limits)?.map(|v| parse_content_type(&v)).transpose()
}

/// Decodes a received body into `pc`, after the size check. An empty body is no content.
pub(crate) fn decode(
    body: &[u8],
    content_type: Option<&ContentType>,
    limits: &Limits,
) -> Result<Option<Value>, BindingError> {
    if body.len() > limits.max_body_bytes {
        return Err(BindingError::BodyTooLarge { size: body.len(), limit: limits.max_body_bytes });
    }
    if body.is_empty() {
        return Ok(None);
    }
    match content_type.map(|c| c.serialization) {
        None => Err(BindingError::MissingContentType),
        Some(Serialization::Cbor) => Err(BindingError::CborUnsupported("application/cbor".to_owned())),
        Some(Serialization::Json) => decode_json(body, limits).map(Some),
    }
}

/// Strict JSON decoding of a body, reusing the primitive crate's checks (depth limit,
/// duplicate member names) by embedding the body as the `pc` of a skeleton primitive.
/// The body is first checked to be exactly one JSON value, so it cannot break out of `pc`.
fn decode_json(body: &[u8], limits: &Limits) -> Result<Value, BindingError> {
    let mut single = serde_json::Deserializer::from_slice(body);
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut single)
        .map_err(|e| BindingError::InvalidBody(PrimitiveError::Json(e)))?;
    single.end().map_err(|e| BindingError::InvalidBody(PrimitiveError::Json(e)))?;
    const HEAD: &[u8] = br#"{"op":5,"to":"","rqi":"","pc":"#;
    let mut wrapped = Vec::with_capacity(HEAD.len() + body.len() + 1);
    wrapped.extend_from_slice(HEAD);
    wrapped.extend_from_slice(body);
    wrapped.push(b'}');
    let decode_limits = DecodeLimits { max_bytes: wrapped.len(), max_depth: limits.max_json_depth.saturating_add(1) };
    match RequestPrimitive::from_json_slice_with_limits(&wrapped, decode_limits) {
        Ok(p) => Ok(p.pc.unwrap_or(Value::Null)),
        Err(PrimitiveError::TooDeep { .. }) => {
            Err(BindingError::InvalidBody(PrimitiveError::TooDeep { limit: limits.max_json_depth }))
        }
        Err(e) => Err(BindingError::InvalidBody(e)),
    }
}

/// Encodes `pc` as a JSON body.
pub(crate) fn encode(pc: Option<&Value>) -> Result<Bytes, BindingError> {
    match pc {
        None => Ok(Bytes::new()),
        Some(pc) => serde_json::to_vec(pc).map(Bytes::from).map_err(|e| BindingError::Encode(e.to_string())),
    }
}
