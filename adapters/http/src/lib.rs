//! oneM2M HTTP binding (TS-0009 V3.9.1): the mapping between HTTP messages and request/response
//! primitives, and the I/O around it as Tower services.
//!
//! * Mapping, pure (no I/O, no clock): [`request_to_primitive`] / [`primitive_to_request`]:
//!   method ↔ `op` (§6.2.1), path ↔ `to` in its three forms (§6.2.2.1), query ↔ request
//!   parameters and filter criteria (§6.2.2.2), `X-M2M-*` headers (§6.4), `Content-Type; ty=N`
//!   (§6.4.3), body ↔ `pc` (§6.5). [`response_to_http`] / [`http_to_response`]: `rsc` ↔ status
//!   code and `X-M2M-RSC` (§6.3.2, §6.4.17), response headers, body ↔ `pc`.
//! * Bodies are JSON or CBOR ([`MediaType`]; TS-0004 §8.4, §8.5), both decoded into the same
//!   `serde_json::Value`; the `_as` variants ([`primitive_to_request_as`],
//!   [`response_to_http_as`]) choose the serialization to send.
//! * [`serve`]: a hyper server (HTTP/1.1 and h2c) for any `Service<http::Request<Bytes>>`, with
//!   limits on connections, heads, bodies and time ([`ServerConfig`]) and graceful shutdown.
//! * [`PrimitiveService`]: adapts a `Service<RequestPrimitive>` to such a service.
//! * [`HttpClient`]: a pooled client, a `Service<RequestPrimitive>` ([`ClientConfig`],
//!   [`ClientError`]).
//!
//! Received messages are checked against [`Limits`] before anything is parsed; every
//! mapping failure is a [`BindingError`] whose [`rsc`](BindingError::rsc) is the code to answer
//! with.
//!
//! ```
//! use onem2m_primitive::Operation;
//! use onem2m_sa_http::{primitive_to_request, request_to_primitive};
//!
//! let http = http::Request::post("/~/id-in/cse-in")
//!     .header("X-M2M-Origin", "CAdmin")
//!     .header("X-M2M-RI", "r1")
//!     .header("X-M2M-RVI", "3")
//!     .header("Content-Type", "application/json;ty=3")
//!     .body(bytes::Bytes::from_static(br#"{"m2m:cnt":{"rn":"cnt1"}}"#))
//!     .unwrap();
//! let req = request_to_primitive(&http)?;
//! assert_eq!((req.op, req.to.as_str(), req.ty), (Operation::Create, "/id-in/cse-in", Some(3)));
//! let again = primitive_to_request(&req, "http://cse.example:8080")?;
//! assert_eq!(again.uri(), "http://cse.example:8080/~/id-in/cse-in");
//! # Ok::<(), onem2m_sa_http::BindingError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod cbor;
mod client;
mod error;
mod headers;
mod percent;
mod query;
mod request;
mod response;
mod server;
mod service;

pub use body::MediaType;
pub use cbor::CborError;
pub use client::{ClientConfig, ClientError, HttpClient};
pub use error::BindingError;
pub use request::{
    primitive_to_request, primitive_to_request_as, request_to_primitive, request_to_primitive_with_limits,
};
pub use response::{http_to_response, http_to_response_with_limits, response_to_http, response_to_http_as};
pub use server::{RemoteAddr, ServerConfig, serve};
pub use service::{BoxError, PrimitiveService, refuse_request};

/// Default largest header value accepted: 8 KiB.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// Default largest body accepted: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Default largest request-target (path and query) accepted: 16 KiB.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;

/// Resource limits checked before a received HTTP message is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest value of any single header, in bytes.
    pub max_header_value_bytes: usize,
    /// Largest message body, in bytes.
    pub max_body_bytes: usize,
    /// Largest request-target (path plus query), in bytes.
    pub max_target_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_value_bytes: MAX_HEADER_VALUE_BYTES,
            max_body_bytes: MAX_BODY_BYTES,
            max_target_bytes: MAX_TARGET_BYTES,
            max_json_depth: onem2m_primitive::MAX_NESTING_DEPTH,
        }
    }
}
