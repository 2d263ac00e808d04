//! oneM2M CoAP binding (TS-0008 V3.9.0) over UDP: the mapping between CoAP messages and
//! request/response primitives, RFC 7252 messaging and RFC 7959 block-wise transfer, as Tower
//! services.
//!
//! * Mapping, pure: [`packet_to_primitive`] / [`primitive_to_packet`] (method ↔ `op`,
//!   Uri-Path ↔ `to` with the `~` and `_` forms, Uri-Query ↔ parameters and filter criteria,
//!   oneM2M options ↔ the other parameters — the current numbers, and on ingress the older
//!   ones too —, Content-Format, payload ↔ `pc` in JSON or CBOR); [`response_to_packet`] /
//!   [`packet_to_response`] (`rsc` ↔ response code and oneM2M-RSC).
//! * [`serve`]: a server on a tokio `UdpSocket` for any `Service<RequestPrimitive>`: CON/NON,
//!   piggybacked or separate responses, retransmission of separate CON responses, message-ID
//!   deduplication (a duplicate never executes twice), block-wise transfer both ways under
//!   caps, limits on work in flight, graceful stop ([`ServerConfig`]); the service learns the
//!   peer's address from [`current_peer`].
//! * [`CoapClient`]: a `Service<RequestPrimitive>` to one peer, with retransmission and
//!   exponential back-off, token matching, block-wise transfer, timeouts ([`ClientConfig`],
//!   [`ClientError`]).
//!
//! ```
//! use onem2m_primitive::{Operation, RequestPrimitive};
//! use onem2m_sa_coap::{Encoding, Limits, packet_to_primitive, primitive_to_packet};
//!
//! let mut req = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-in", Some("CAdmin".into()), "r1");
//! req.rvi = Some("3".into());
//! let packet = primitive_to_packet(&req, &Encoding::default())?;
//! assert_eq!(packet_to_primitive(&packet, &Limits::default())?, req);
//! # Ok::<(), onem2m_sa_coap::BindingError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod block;
mod body;
mod client;
mod error;
mod mapping;
pub mod message;
pub mod options;
mod query;
mod server;

pub use client::{ClientConfig, ClientError, CoapClient};
/// The CoAP message library this crate builds on (its `Packet` is the message type here).
pub use coap_lite;
pub use error::BindingError;
pub use mapping::{
    Encoding, answer_media, is_bare_compact_request, is_bare_compact_response, packet_to_primitive, packet_to_response,
    primitive_to_packet, response_to_packet, rsc_of_code,
};
pub use message::Transmission;
pub use options::MediaType;
pub use server::{ServerConfig, current_peer, serve};

/// The error type at the Tower boundaries of this crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Default largest payload (after block-wise reassembly): 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Limits checked on every received message before its payload is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload, in bytes (after reassembly).
    pub max_payload_bytes: usize,
    /// Deepest nesting of arrays and objects in a payload.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_payload_bytes: MAX_PAYLOAD_BYTES, max_depth: onem2m_primitive::MAX_NESTING_DEPTH }
    }
}
