//! Why a primitive was rejected, and the Response Status Code to answer with.

use crate::{IdError, ResponseStatusCode, TimestampError};

/// A primitive could not be decoded, encoded or validated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrimitiveError {
    /// The serialized primitive is larger than the configured limit.
    #[error("primitive of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Arrays and objects are nested deeper than the configured limit.
    #[error("JSON nesting exceeds {limit} levels")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// An object has the same member name twice (TS-0004 §8.4.2: names shall be unique).
    #[error("duplicate member `{0}`")]
    DuplicateMember(String),
    /// The top-level JSON value is not an object (TS-0004 §8.4.2).
    #[error("a primitive must be a JSON object")]
    NotAnObject,
    /// The input is not JSON, or an element has the wrong JSON type or value.
    #[error("malformed primitive: {0}")]
    Json(#[from] serde_json::Error),
    /// A mandatory element is absent (or, for `rqi`, empty).
    #[error("mandatory element `{0}` is missing")]
    MissingElement(&'static str),
    /// An element that must hold a oneM2M ID does not parse as one.
    #[error("element `{element}` is not a valid oneM2M ID: {source}")]
    InvalidId {
        /// Short name of the element, e.g. `"fr"`.
        element: &'static str,
        /// Why it did not parse.
        #[source]
        source: IdError,
    },
    /// An element that must hold a timestamp does not parse as one.
    #[error("element `{element}` is not a valid timestamp: {source}")]
    InvalidTimestamp {
        /// Short name of the element, e.g. `"rqet"`.
        element: &'static str,
        /// Why it did not parse.
        #[source]
        source: TimestampError,
    },
    /// The binary form of a primitive (docs/protocol.md §4.5) is malformed.
    #[error("malformed binary primitive: {0}")]
    Binary(&'static str),
    /// Serializing a primitive failed.
    #[error("cannot encode primitive: {0}")]
    Encode(#[source] serde_json::Error),
}

impl PrimitiveError {
    /// The Response Status Code a Receiver answers with: `BAD_REQUEST` (4000) for every
    /// problem with a received primitive (TS-0004 §7.3.2.1), `INTERNAL_SERVER_ERROR` (5000)
    /// for a local encoding failure.
    pub fn rsc(&self) -> ResponseStatusCode {
        match self {
            Self::Encode(_) => ResponseStatusCode::INTERNAL_SERVER_ERROR,
            _ => ResponseStatusCode::BAD_REQUEST,
        }
    }
}
