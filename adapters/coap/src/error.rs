//! Why a CoAP message could not be mapped, and the answer to give.

use onem2m_primitive::ResponseStatusCode;
use onem2m_primitive::query::QueryError;

/// A CoAP message could not be mapped to a primitive, or a primitive to a CoAP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The datagram is not a well-formed CoAP message (RFC 7252 §3).
    #[error("malformed CoAP message: {0}")]
    Malformed(String),
    /// A critical option this binding does not process, or a non-repeatable critical option
    /// sent twice (RFC 7252 §5.4.1, §5.4.5): answered 4.02 (Bad Option).
    #[error("unsupported critical option {0}")]
    BadOption(u16),
    /// An option value is longer or shorter than its definition allows.
    #[error("option {number} has a value of {len} bytes, outside {min}..={max}")]
    OptionLength {
        /// Option number.
        number: u16,
        /// Length received.
        len: usize,
        /// Smallest length allowed.
        min: usize,
        /// Largest length allowed.
        max: usize,
    },
    /// An option that may occur once occurs more than once (also: a oneM2M parameter sent
    /// under both its current and its older option number).
    #[error("option {0} occurs more than once")]
    DuplicateOption(u16),
    /// An option value does not parse as the parameter it carries.
    #[error("invalid option {number}: {reason}")]
    InvalidOption {
        /// Option number.
        number: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// A mandatory option is absent (oneM2M-RQI in a request).
    #[error("mandatory option {0} is missing")]
    MissingOption(&'static str),
    /// The request code is not GET, POST, PUT or DELETE (TS-0008 Table 6.2.1-1).
    #[error("CoAP method {0} maps to no oneM2M operation")]
    UnsupportedMethod(String),
    /// A Uri-Query item does not parse as the parameter it carries.
    #[error("invalid query item `{name}`: {reason}")]
    InvalidQuery {
        /// Query parameter name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A query parameter of multiplicity 0..1 occurs more than once.
    #[error("query item `{0}` occurs more than once")]
    DuplicateQuery(String),
    /// The Uri-Path does not map to a `to` parameter.
    #[error("invalid Uri-Path: {0}")]
    InvalidPath(String),
    /// `oneM2M-TY` on a request that is not a CREATE.
    #[error("oneM2M-TY on a {0} request: only a CREATE carries ty")]
    ResourceTypeNotAllowed(&'static str),
    /// The Content-Format is not one of the JSON or CBOR formats this binding decodes.
    #[error("unsupported Content-Format {0}")]
    UnsupportedContentFormat(u16),
    /// A payload was sent without Content-Format.
    #[error("a payload requires a Content-Format option")]
    MissingContentFormat,
    /// The Accept option names a format this binding cannot answer in (answered 4.06).
    #[error("Accept {0} names no format this binding produces")]
    NotAcceptable(u16),
    /// The payload is not an acceptable JSON or CBOR value.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The (reassembled) payload exceeds [`Limits::max_payload_bytes`](crate::Limits).
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the payload.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A primitive element has a value the CoAP binding cannot carry (encoding side).
    #[error("element `{element}` cannot be mapped to CoAP: {reason}")]
    Unmappable {
        /// Short name of the element.
        element: String,
        /// Why.
        reason: String,
    },
}

impl BindingError {
    /// The Response Status Code to answer with: `UNSUPPORTED_MEDIA_TYPE` (4015),
    /// `NOT_ACCEPTABLE` (5207), `OPERATION_NOT_ALLOWED` (4005) for a method that maps to no
    /// operation, `INTERNAL_SERVER_ERROR` (5000) for failures while building a message,
    /// `BAD_REQUEST` (4000) for every other problem with a received message.
    pub fn rsc(&self) -> ResponseStatusCode {
        match self {
            Self::UnsupportedContentFormat(_) => ResponseStatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable(_) => ResponseStatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMethod(_) => ResponseStatusCode::OPERATION_NOT_ALLOWED,
            Self::Unmappable { .. } => ResponseStatusCode::INTERNAL_SERVER_ERROR,
            _ => ResponseStatusCode::BAD_REQUEST,
        }
    }

    /// The CoAP response code to answer with, as (class, detail): 4.02 (Bad Option) for
    /// unsupported critical options and bad option lengths (RFC 7252 §5.4.1, §5.4.3 treat a
    /// bad length like an unrecognized option), 4.13 for a payload over the limit, else the
    /// code of [`rsc`](Self::rsc) (TS-0008 Table 6.2.4-1).
    pub fn coap_code(&self) -> (u8, u8) {
        match self {
            Self::BadOption(_) | Self::OptionLength { .. } => (4, 2),
            Self::PayloadTooLarge { .. } => (4, 13),
            other => other.rsc().coap_code(),
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
