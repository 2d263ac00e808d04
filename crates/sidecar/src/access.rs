//! The access log: one line per request through the ingress or the egress, under the tracing
//! target `onem2m_sa::access`, at the level `[log] access` names (`info` by default, `debug`, or
//! `off`).
//!
//! A line carries the request identifier, the operation, the originator, the target, the
//! Response Status Code, the latency, the peer and the SA identifier — never a body, a key or any
//! other header. A request the sidecar refuses itself (plaintext without an SA, an originator
//! outside the peer's ticket, a replay, a mapped point of access that does not decode …) is
//! logged at `warn`, whatever the access level, with the reason it was answered.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa_tower::Authenticated;
use serde::Deserialize;

/// The tracing target of access lines.
pub const TARGET: &str = "onem2m_sa::access";

/// At which level access lines are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// At `info` (the default).
    #[default]
    Info,
    /// At `debug`.
    Debug,
    /// Not at all (refusals are still logged at `warn`).
    Off,
}

/// What the ingress's upstream side saw of a request it forwarded: the opened primitive's
/// identifiers and the upstream's answer. Recorded through [`record`] while [`scope`] runs.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    rqi: String,
    op: String,
    fr: String,
    to: String,
    rsc: u16,
    peer: String,
    sa: String,
}

/// Where [`record`] leaves what it saw, and whether the access line will be written.
struct Slot {
    level: AccessLevel,
    forwarded: Mutex<Option<Forwarded>>,
}

tokio::task_local! {
    static FORWARDED: Arc<Slot>;
}

/// Runs `fut` (the ingress's handling of one HTTP request) with room for [`record`]; returns
/// what was recorded with its output. At `level` [`AccessLevel::Off`] only the fact that the
/// request was forwarded is recorded, not its identifiers (no line will show them).
pub async fn scope<F: std::future::Future>(level: AccessLevel, fut: F) -> (F::Output, Option<Forwarded>) {
    let slot = Arc::new(Slot { level, forwarded: Mutex::new(None) });
    let out = FORWARDED.scope(slot.clone(), fut).await;
    let recorded = slot.forwarded.lock().map(|mut s| s.take()).unwrap_or_default();
    (out, recorded)
}

/// Records, from within [`scope`], that `req` (opened, from `peer`) reached the upstream and was
/// answered `rsc`. Outside a scope it does nothing.
pub fn record(req: &RequestPrimitive, peer: Option<&Authenticated>, rsc: Rsc) {
    let _ = FORWARDED.try_with(|slot| {
        let Ok(mut forwarded) = slot.forwarded.lock() else { return };
        if slot.level == AccessLevel::Off {
            // Forwarded, and answered: nothing of it is logged.
            *forwarded = Some(Forwarded::default());
            return;
        }
        *forwarded = Some(Forwarded {
            rqi: req.rqi.clone(),
            op: format!("{:?}", req.op),
            fr: req.fr.clone().unwrap_or_default(),
            to: req.to.clone(),
            rsc: rsc.code(),
            peer: peer.map(|p| p.peer.to_string()).unwrap_or_default(),
            sa: peer.map(|p| p.sa_id.to_string()).unwrap_or_default(),
        });
    });
}

/// The identifiers of an HTTP request, read before it is handled. Kept as the request's own
/// header values and URI (reference-counted, no copy): they are formatted only when a line is
/// written, which with the access log off is only for a refusal.
#[derive(Debug, Clone)]
pub struct Seen {
    started: Instant,
    rqi: Text,
    method: Text,
    fr: Text,
    target: Text,
}

/// A field of [`Seen`], formatted when a line is written.
#[derive(Debug, Clone)]
enum Text {
    /// A header value (empty when absent or not visible ASCII).
    Header(Option<http::HeaderValue>),
    /// The path of a URI.
    Path(http::Uri),
    /// An HTTP method.
    Method(http::Method),
    /// Text of its own (a request that arrived over CoAP) or a fixed name.
    Owned(String),
    Static(&'static str),
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Text::Header(v) => v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default(),
            Text::Path(uri) => uri.path(),
            Text::Method(m) => m.as_str(),
            Text::Owned(s) => s,
            Text::Static(s) => s,
        })
    }
}

impl Seen {
    /// Notes the request's identifiers and the time.
    pub fn new(req: &http::Request<Bytes>) -> Self {
        let header = |name| Text::Header(req.headers().get(name).cloned());
        Self {
            started: Instant::now(),
            rqi: header(http::HeaderName::from_static("x-m2m-ri")),
            method: Text::Method(req.method().clone()),
            fr: header(http::HeaderName::from_static("x-m2m-origin")),
            target: Text::Path(req.uri().clone()),
        }
    }

    /// Notes the identifiers of a request that arrived over CoAP, and the time; its method is
    /// the CoAP method the operation maps to (TS-0008).
    pub fn of_primitive(req: &RequestPrimitive) -> Self {
        use onem2m_primitive::Operation;
        let method = match req.op {
            Operation::Create | Operation::Notify => "POST",
            Operation::Retrieve => "GET",
            Operation::Update => "PUT",
            Operation::Delete => "DELETE",
        };
        Self {
            started: Instant::now(),
            rqi: Text::Owned(req.rqi.clone()),
            method: Text::Static(method),
            fr: Text::Owned(req.fr.clone().unwrap_or_default()),
            target: Text::Owned(req.to.clone()),
        }
    }
}

/// The Response Status Code of an answer primitive, and the reason (`m2m:dbg`) if it is an error.
fn primitive_outcome(rsp: &ResponsePrimitive) -> (u16, String) {
    if !rsp.rsc.is_error() {
        return (rsp.rsc.code(), String::new());
    }
    let dbg = rsp.pc.as_ref().and_then(|pc| pc.get("m2m:dbg")).and_then(|d| d.as_str());
    (rsp.rsc.code(), dbg.map_or_else(|| format!("RSC {}", rsp.rsc.code()), str::to_owned))
}

/// The Response Status Code of an HTTP answer, and the reason (`m2m:dbg`) if it is an error.
fn outcome(rsp: &http::Response<Bytes>) -> (u16, String) {
    let rsc = rsp
        .headers()
        .get(crate::proxy::RSC_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if rsc != 0 && !Rsc::new(rsc).is_error() {
        return (rsc, String::new());
    }
    #[derive(Deserialize)]
    struct Dbg {
        #[serde(rename = "m2m:dbg")]
        dbg: String,
    }
    let reason = serde_json::from_slice::<Dbg>(rsp.body())
        .map(|d| d.dbg)
        .unwrap_or_else(|_| format!("HTTP {}", rsp.status().as_u16()));
    (rsc, reason)
}

macro_rules! access_line {
    ($level:expr, $($field:tt)*) => {
        match $level {
            AccessLevel::Info => tracing::info!(target: TARGET, $($field)*),
            AccessLevel::Debug => tracing::debug!(target: TARGET, $($field)*),
            AccessLevel::Off => {}
        }
    };
}

/// Logs one ingress exchange: the opened request when it reached the upstream, otherwise the
/// outer request, and a refusal at `warn`.
pub fn ingress(level: AccessLevel, seen: &Seen, rsp: &http::Response<Bytes>, forwarded: Option<Forwarded>) {
    ingress_line(level, seen, || outcome(rsp), forwarded);
}

/// [`ingress`] for an exchange answered with a primitive (CoAP).
pub fn ingress_primitive(level: AccessLevel, seen: &Seen, rsp: &ResponsePrimitive, forwarded: Option<Forwarded>) {
    ingress_line(level, seen, || primitive_outcome(rsp), forwarded);
}

fn ingress_line(
    level: AccessLevel,
    seen: &Seen,
    outcome: impl FnOnce() -> (u16, String),
    forwarded: Option<Forwarded>,
) {
    let ms = seen.started.elapsed().as_secs_f64() * 1000.0;
    match forwarded {
        Some(f) => access_line!(
            level,
            side = "ingress",
            rqi = %f.rqi,
            op = %f.op,
            fr = %f.fr,
            to = %f.to,
            rsc = f.rsc,
            ms = format_args!("{ms:.1}"),
            peer = %f.peer,
            sa = %f.sa,
            "request"
        ),
        None => {
            let (rsc, reason) = outcome();
            if reason.is_empty() {
                // An SA Management exchange (Establish, Update, Remove SA), answered here.
                tracing::debug!(target: TARGET, side = "ingress", rqi = %seen.rqi, fr = %seen.fr, rsc, ms = format_args!("{ms:.1}"), "SA management");
            } else {
                tracing::warn!(
                    target: TARGET,
                    side = "ingress",
                    rqi = %seen.rqi,
                    method = %seen.method,
                    fr = %seen.fr,
                    to = %seen.target,
                    rsc,
                    ms = format_args!("{ms:.1}"),
                    reason = %reason,
                    "refused"
                );
            }
        }
    }
}

/// Logs one egress exchange; `peer` is the node it went to, `sa` the SA it went over (looked up
/// only when a line is written).
pub fn egress(
    level: AccessLevel,
    seen: &Seen,
    rsp: &http::Response<Bytes>,
    peer: Option<&NodeId>,
    sa: impl FnOnce() -> Option<String>,
) {
    egress_line(level, seen, outcome(rsp), peer, sa);
}

/// [`egress`] for an exchange answered with a primitive (CoAP).
pub fn egress_primitive(
    level: AccessLevel,
    seen: &Seen,
    rsp: &ResponsePrimitive,
    peer: Option<&NodeId>,
    sa: Option<String>,
) {
    egress_line(level, seen, primitive_outcome(rsp), peer, || sa);
}

fn egress_line(
    level: AccessLevel,
    seen: &Seen,
    (rsc, reason): (u16, String),
    peer: Option<&NodeId>,
    sa: impl FnOnce() -> Option<String>,
) {
    if level == AccessLevel::Off && reason.is_empty() {
        // Neither an access line nor a refusal.
        return;
    }
    let ms = seen.started.elapsed().as_secs_f64() * 1000.0;
    let peer = peer.map(NodeId::to_string).unwrap_or_default();
    let sa = sa().unwrap_or_default();
    if !reason.is_empty() && sa.is_empty() {
        tracing::warn!(
            target: TARGET,
            side = "egress",
            rqi = %seen.rqi,
            method = %seen.method,
            fr = %seen.fr,
            to = %seen.target,
            rsc,
            ms = format_args!("{ms:.1}"),
            peer = %peer,
            reason = %reason,
            "refused"
        );
        return;
    }
    access_line!(
        level,
        side = "egress",
        rqi = %seen.rqi,
        method = %seen.method,
        fr = %seen.fr,
        to = %seen.target,
        rsc,
        ms = format_args!("{ms:.1}"),
        peer = %peer,
        sa = %sa,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use onem2m_primitive::Operation;

    use super::*;

    /// With access lines off, forwarding a request copies none of its identifiers for a line that
    /// is never written (issue 16: seven allocations per request on the ingress); with them on,
    /// the line has them.
    #[tokio::test]
    async fn identifiers_are_recorded_only_for_a_line_that_is_written() {
        let req = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-base", Some("CAE1".into()), "r1");
        let (_, off) = scope(AccessLevel::Off, async { record(&req, None, Rsc::OK) }).await;
        let off = off.expect("the forwarding is recorded");
        assert!(off.rqi.is_empty() && off.op.is_empty() && off.fr.is_empty() && off.to.is_empty());
        let (_, info) = scope(AccessLevel::Info, async { record(&req, None, Rsc::OK) }).await;
        let info = info.expect("the forwarding is recorded");
        assert_eq!((info.rqi.as_str(), info.fr.as_str(), info.rsc), ("r1", "CAE1", 2000));
    }
}
