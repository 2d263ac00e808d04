//! Why an HTTP message could not be mapped, and the Response Status Code to answer with.

use onem2m_primitive::query::QueryError;
use onem2m_primitive::{PrimitiveError, ResponseStatusCode};

use crate::cbor::CborError;

/// An HTTP message could not be mapped to a primitive, or a primitive to an HTTP message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// A header value is longer than [`Limits::max_header_value_bytes`](crate::Limits).
    #[error("header `{name}` of {size} bytes exceeds the limit of {limit} bytes")]
    HeaderTooLarge {
        /// Header name.
        name: String,
        /// Size of the value.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The message body is longer than [`Limits::max_body_bytes`](crate::Limits).
    #[error("body of {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Size of the body.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The request-target (path and query) is longer than [`Limits::max_target_bytes`](crate::Limits).
    #[error("request-target of {size} bytes exceeds the limit of {limit} bytes")]
    TargetTooLarge {
        /// Size of path and query.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A mandatory header is absent (`X-M2M-RI`; `X-M2M-RSC` in a response).
    #[error("mandatory header `{0}` is missing")]
    MissingHeader(&'static str),
    /// A oneM2M header occurs more than once.
    #[error("header `{0}` occurs more than once")]
    DuplicateHeader(&'static str),
    /// A header value is not visible ASCII or does not parse as the parameter it carries.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// Header name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The `ty` parameter of `Content-Type` is not a resource type number, or occurs twice.
    #[error("invalid resource type `ty={0}` in Content-Type")]
    InvalidResourceType(String),
    /// `Content-Type` has a `ty` parameter on a request that is not a POST: only a CREATE
    /// carries `ty` (TS-0009 §6.4.3), and dropping it would execute a malformed request.
    #[error("`ty={ty}` in the Content-Type of a {method} request: only a CREATE (POST) carries ty")]
    ResourceTypeNotAllowed {
        /// The HTTP method.
        method: String,
        /// The `ty` value.
        ty: u32,
    },
    /// A body was sent without `Content-Type` (TS-0009 §6.4.3).
    #[error("a message body requires a Content-Type header")]
    MissingContentType,
    /// The media type is not one of the JSON or CBOR types this binding decodes.
    #[error("unsupported media type `{0}`")]
    UnsupportedMediaType(String),
    /// The HTTP method maps to no oneM2M operation (TS-0009 Table 6.2.1-1).
    #[error("HTTP method `{0}` maps to no oneM2M operation")]
    UnsupportedMethod(String),
    /// The request path does not map to a `to` parameter.
    #[error("invalid request path: {0}")]
    InvalidPath(String),
    /// A query field has a value that does not parse as the parameter it carries.
    #[error("invalid query field `{name}`: {reason}")]
    InvalidQuery {
        /// Query field name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A query field of multiplicity 0..1 occurs more than once.
    #[error("query field `{0}` occurs more than once")]
    DuplicateQuery(String),
    /// The body is not an acceptable JSON value (syntax, depth, duplicate member names).
    #[error("invalid body: {0}")]
    InvalidBody(#[source] PrimitiveError),
    /// The body is not an acceptable CBOR data item (syntax, depth, duplicate keys, an item
    /// JSON cannot carry).
    #[error("invalid CBOR body: {0}")]
    InvalidCbor(#[source] CborError),
    /// A primitive element has a value the HTTP binding cannot carry (encoding side).
    #[error("element `{element}` cannot be mapped to HTTP: {reason}")]
    Unmappable {
        /// Short name of the element, e.g. `"fc.atr"`.
        element: String,
        /// Why.
        reason: String,
    },
    /// Serializing the content failed, or the `http` crate rejected the message (encoding side).
    #[error("cannot build HTTP message: {0}")]
    Encode(String),
    /// A client's base URI is not `http://authority[/path]` (local configuration).
    #[error("invalid base URI `{base}`: {reason}")]
    InvalidBase {
        /// The base as given.
        base: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl BindingError {
    /// The Response Status Code to answer with.
    ///
    /// `UNSUPPORTED_MEDIA_TYPE` (4015) for media types other than JSON and CBOR,
    /// `OPERATION_NOT_ALLOWED` (4005) for an HTTP method that maps to no operation,
    /// `INTERNAL_SERVER_ERROR` (5000) for failures while *building* an HTTP message from a
    /// primitive and for a bad client configuration, `BAD_REQUEST` (4000) for every other
    /// problem with a received message.
    pub fn rsc(&self) -> ResponseStatusCode {
        match self {
            Self::UnsupportedMediaType(_) => ResponseStatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UnsupportedMethod(_) => ResponseStatusCode::OPERATION_NOT_ALLOWED,
            Self::Unmappable { .. } | Self::Encode(_) | Self::InvalidBase { .. } => {
                ResponseStatusCode::INTERNAL_SERVER_ERROR
            }
            _ => ResponseStatusCode::BAD_REQUEST,
        }
    }
}

impl From<QueryError> for BindingError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Unmappable { element, reason } => Self::Unmappable { element, reason },
            QueryError::Invalid { name, reason } => Self::InvalidQuery { name, reason },
            QueryError::Duplicate(name) => Self::DuplicateQuery(name),
        }
    }
}
