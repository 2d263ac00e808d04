//! The transport source of the request being handled: where an adapter saw it come from.
//!
//! The Responder's flood defences (cookies, per-source bounds on half-open establishments) are
//! tied to the address an *Initiate SA* came from, which only the transport knows. An adapter
//! runs the handling of each request inside [`with_source`]; the node reads it when it answers
//! an SA message. Without it, the bounds fall back to the Initiator's claimed ID.

use std::future::Future;
use std::net::IpAddr;

tokio::task_local! {
    static SOURCE: IpAddr;
}

/// Runs `f` (the handling of one received request) with `source` as its transport source.
/// Give the address without the port: one host is one source.
pub async fn with_source<F: Future>(source: IpAddr, f: F) -> F::Output {
    SOURCE.scope(source, f).await
}

/// The current source as opaque bytes (4 for IPv4, also for IPv4-mapped IPv6; 16 for IPv6),
/// empty outside [`with_source`].
pub(crate) fn current() -> Vec<u8> {
    SOURCE
        .try_with(|ip| match ip.to_canonical() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        })
        .unwrap_or_default()
}
