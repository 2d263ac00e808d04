//! oneM2M request and response primitives as they travel on the wire (TS-0004 V3.32.0).
//!
//! This crate is the data layer shared by the security middleware: the JSON short-name
//! serialization of primitives (§8.2.2, §8.4), Response Status Codes and their HTTP/CoAP
//! mappings (§6.6.3, TS-0009 §6.3.2, TS-0008 §6.2.4), the three M2M identifier forms
//! (§6.2.3, §6.2.4, TS-0001 §7.2) and `m2m:timestamp` handling (§6.3.3). It performs no I/O
//! and reads no clock: times are passed in by the caller.
//!
//! It also holds what the HTTP (TS-0009) and CoAP (TS-0008) bindings share regardless of
//! transport: the request parameters ↔ URI query parameters mapping ([`query`]) and the text
//! form of `ati` ([`ati`]).
//!
//! Decoding is defensive: a size limit, a nesting-depth limit and rejection of duplicate
//! member names (a parser-differential hazard) happen before any typed field is read, and
//! unknown members are kept so a re-encoded primitive carries everything it arrived with.
//!
//! ```
//! use onem2m_primitive::{Id, IdForm, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
//!
//! let req = RequestPrimitive::from_json_slice(
//!     br#"{"op":2,"to":"/id-in/cse-in/cnt1","fr":"CAE01","rqi":"r1","rvi":"3","xyz":1}"#,
//! )?;
//! req.validate()?;
//! let to = req.to_id()?;
//! assert_eq!((to.form(), to.cse_id()), (IdForm::SpRelative, Some("/id-in")));
//! assert_eq!(req.extra["xyz"], 1); // unknown members are kept
//!
//! let rsp = ResponsePrimitive::error(
//!     ResponseStatusCode::SECURITY_ASSOCIATION_REQUIRED,
//!     req.rqi.clone(),
//!     "no security association",
//! );
//! assert_eq!(rsp.rsc.http_status(), 403);
//! assert_eq!(rsp.rsc.coap_code(), (4, 3));
//! assert_eq!(rsp.rsc.to_string(), "4107 SECURITY_ASSOCIATION_REQUIRED");
//! let _wire: Vec<u8> = rsp.to_json_vec()?;
//! # Ok::<(), onem2m_primitive::PrimitiveError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ati;
mod binary;
pub mod compact;
mod error;
mod id;
mod operation;
mod primitive;
pub mod query;
mod rsc;
mod strict;
mod timestamp;
pub mod varint;

pub use error::PrimitiveError;
pub use id::{AeIdType, Id, IdError, IdForm, MAX_ID_BYTES};
pub use operation::{Operation, UnknownOperation};
pub use primitive::{
    DecodeLimits, MAX_NESTING_DEPTH, MAX_PRIMITIVE_BYTES, Primitive, RequestPrimitive, ResponsePrimitive,
    ResponseTypeInfo,
};
pub use rsc::{ResponseStatusCode, RscClass};
pub use timestamp::{AbsRelTimestamp, TimestampError, format_timestamp, parse_timestamp};
