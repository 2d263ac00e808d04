//! Sans-I/O implementation of oneM2M TS-0003 clause 7.3, Security Associations.
//!
//! Two M2M Nodes establish a one-way SA (tables 23–35), update its identifier and keys
//! (tables 36–41) and remove it (tables 42–44). This crate holds the protocol only: it takes
//! bytes, the current time and a random source, and hands back bytes to send, events and
//! deadlines. It never touches a socket, a clock or a runtime; `docs/protocol.md` is the wire
//! specification.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod b64;
pub mod capability;
mod control;
pub mod credential;
pub mod crypto;
pub mod establish;
pub mod flows;
mod id;
pub mod lease;
pub mod manage;
pub mod message;
pub mod record;
pub mod replay;
pub mod rng;
pub mod schedule;
pub mod secure;
pub mod table;
pub mod testkit;

pub use capability::Capabilities;
pub use establish::{EstablishError, EstablishedSa, Role};
pub use id::{Deadline, Now, SaId};
pub use manage::{InitiatorEvent, InitiatorSam, ResponderEvent, ResponderSam};
