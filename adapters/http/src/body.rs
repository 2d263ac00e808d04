//! `Content-Type` (TS-0009 §6.4.3, TS-0004 §6.7) and message-body ↔ `pc` (§6.5).
//!
//! A body of type `application/vnd.onem2m-sa.compact` is a secured primitive in the compact
//! binary form, carried raw; it maps to the content `{"sa:cmp": …}` ([`compact`]).

use bytes::Bytes;
use http::HeaderMap;
use onem2m_primitive::{DecodeLimits, PrimitiveError, RequestPrimitive, compact};
use serde_json::Value;

use crate::{BindingError, Limits, cbor, headers};

/// Serialization of message bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaType {
    /// JSON (TS-0004 §8.4): `application/json`, `application/vnd.onem2m-res+json`,
    /// `application/vnd.onem2m-ntfy+json`; sent as `application/json`.
    #[default]
    Json,
    /// CBOR (TS-0004 §8.5): `application/cbor`, `application/vnd.onem2m-res+cbor`,
    /// `application/vnd.onem2m-ntfy+cbor`; sent as `application/cbor`.
    Cbor,
}

impl MediaType {
    /// The media type sent in `Content-Type` and `Accept`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Cbor => "application/cbor",
        }
    }

    /// The serialization a media type (without parameters, any case) stands for, if this
    /// binding decodes it.
    pub(crate) fn from_essence(essence: &str) -> Option<Self> {
        const JSON: [&str; 3] =
            ["application/json", "application/vnd.onem2m-res+json", "application/vnd.onem2m-ntfy+json"];
        const CBOR: [&str; 3] =
            ["application/cbor", "application/vnd.onem2m-res+cbor", "application/vnd.onem2m-ntfy+cbor"];
        let essence = essence.trim();
        if JSON.iter().any(|t| t.eq_ignore_ascii_case(essence)) {
            Some(Self::Json)
        } else if CBOR.iter().any(|t| t.eq_ignore_ascii_case(essence)) {
            Some(Self::Cbor)
        } else {
            None
        }
    }
}

/// A parsed `Content-Type`: the serialization and the `ty` parameter, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentType {
    /// Serialization of the body.
    pub(crate) media: MediaType,
    /// `ty=N` resource type parameter (CREATE only).
    pub(crate) ty: Option<u32>,
    /// The body is a compact secured primitive ([`compact::MEDIA_TYPE`]), whatever `media`.
    pub(crate) compact: bool,
}

impl ContentType {
    /// The `Content-Type` of a body that carries `pc` in `media`: the compact media type when
    /// `pc` is a compact secured primitive.
    pub(crate) fn of(pc: Option<&Value>, media: MediaType, ty: Option<u32>) -> Self {
        Self { media, ty, compact: pc.is_some_and(compact::is_compact) }
    }
}

/// Parses a `Content-Type` value: a media type and `;`-separated parameters, of which `ty`
/// is read and the others (e.g. `charset`) are ignored.
pub(crate) fn parse_content_type(value: &str) -> Result<ContentType, BindingError> {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(compact::MEDIA_TYPE) {
        return Ok(ContentType { media: MediaType::Json, ty: None, compact: true });
    }
    let media = MediaType::from_essence(essence)
        .ok_or_else(|| BindingError::UnsupportedMediaType(essence.to_ascii_lowercase()))?;
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
    Ok(ContentType { media, ty, compact: false })
}

/// The `Content-Type` of a received message, if present.
pub(crate) fn content_type(headers: &HeaderMap, limits: &Limits) -> Result<Option<ContentType>, BindingError> {
    headers::single(headers, headers::CONTENT_TYPE, limits)?.map(|v| parse_content_type(&v)).transpose()
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
    if content_type.is_some_and(|c| c.compact) {
        return Ok(Some(compact::content(body)));
    }
    match content_type.map(|c| c.media) {
        None => Err(BindingError::MissingContentType),
        Some(MediaType::Json) => decode_json(body, limits).map(Some),
        Some(MediaType::Cbor) => cbor::decode(body, limits.max_json_depth).map(Some).map_err(BindingError::InvalidCbor),
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

/// Encodes `pc` as a body in `media`.
pub(crate) fn encode(pc: Option<&Value>, media: MediaType) -> Result<Bytes, BindingError> {
    let Some(pc) = pc else { return Ok(Bytes::new()) };
    if let Some(bytes) = compact::bytes(pc) {
        return bytes.map(Bytes::from).map_err(|e| BindingError::Encode(format!("compact content: {e}")));
    }
    match media {
        MediaType::Json => serde_json::to_vec(pc).map_err(|e| BindingError::Encode(e.to_string())),
        MediaType::Cbor => cbor::encode(pc),
    }
    .map(Bytes::from)
}

impl std::fmt::Display for ContentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.compact {
            return f.write_str(compact::MEDIA_TYPE);
        }
        f.write_str(self.media.as_str())?;
        match self.ty {
            Some(ty) => write!(f, ";ty={ty}"),
            None => Ok(()),
        }
    }
}
