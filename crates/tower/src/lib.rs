//! Tower layers and the node runtime that apply oneM2M Security Associations (TS-0003 clause
//! 7.3) to a CSE's traffic.
//!
//! * [`Node`] — one M2M Node's SA runtime: the Initiator's and Responder's SA Management of
//!   `onem2m-sa`, driven over any transport that is a `tower::Service` carrying primitives;
//!   establishment on demand, single-flight per peer.
//! * [`SendSecureLayer`] — seals a node's outgoing requests over SAs and opens the answers.
//! * [`ReceiveSecureLayer`] — opens incoming secured requests, checks identity binding, answers
//!   SA flows (the rb endpoint) and applies the plaintext policy, before the protected service
//!   sees anything.
//! * [`SaEndpoint`] — the rb endpoint alone, for adapters that route SA flows separately.
//!
//! Adding SA security to a tower service of primitives takes two layers; see
//! `examples/secure_cse.rs`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// `get_ref`, `get_mut` and `into_inner` for a middleware whose wrapped service is `inner`.
macro_rules! inner_accessors {
    ($what:literal) => {
        #[doc = concat!("The ", $what, ".")]
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        #[doc = concat!("The ", $what, ", mutably.")]
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        #[doc = concat!("Unwraps the ", $what, ".")]
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
pub(crate) use inner_accessors;

pub mod carriage;
mod executed;
mod form;
mod node;
pub mod rb;
mod receive;
mod send;
mod source;
pub mod store;

pub use carriage::{Carriage, Outer};
pub use executed::ExecutedConfig;
pub use form::SecuredForm;
pub use node::{CLAIM_HOLD, Node, NodeConfig, Recovery, Rotation, SaEndpoint, SaFailure};
pub use onem2m_sa::manage::KemUpdatePolicy;
/// Response future of [`ReceiveSecure`].
pub use receive::ResponseFuture as ReceiveFuture;
pub use receive::{Authenticated, InboundRequest, PlaintextPolicy, ReceiveSecure, ReceiveSecureLayer};
/// Response future of [`SendSecure`].
pub use send::ResponseFuture as SendFuture;
pub use send::{Route, SendSecure, SendSecureLayer, route_by_cse_id};
pub use source::with_source;

/// The error type at Tower boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
