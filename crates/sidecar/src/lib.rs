//! The `onem2m-sa` binary as a library: the sidecar proxy, its configuration, the CLI's key and
//! ticket tools, SA administration, and the demo.
//!
//! * [`config`] — the TOML configuration, validated at start (errors name the key and line).
//! * [`proxy`] — the runtime: ingress, egress and admin listeners around one node.
//! * [`poa`] — notifications to AEs over SAs: mapping AE points of access at registration.
//! * [`admin`] — `/metrics`, `/healthz`, `/readyz`, SA list and removal.
//! * [`access`] — the per-request access log.
//! * [`keys`] — `keygen` and `ticket issue|inspect`.
//! * [`doctor`] — `sidecar --check --connect`: the upstream, the peers, an SA with each.
//! * [`demo`] — `onem2m-sa demo`, and the topology the integration tests reuse.
//! * [`tap`], [`udp_tap`] — relays that count the bytes crossing an HTTP or a CoAP hop.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod admin;
pub mod admin_client;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod keys;
pub mod logging;
pub mod poa;
pub mod proxy;
pub mod tap;
pub mod udp_tap;
