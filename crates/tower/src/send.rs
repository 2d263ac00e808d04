//! `SendSecure`: Send Secure Message for a node's outgoing requests (clause 7.3.4).
//!
//! For each request: find the outbound SA with the target node or establish one (single-flight),
//! seal the primitive into an ESPrim NOTIFY, send it through the inner transport, and open the
//! sealed answer under the epoch the request was sealed with.
//!
//! If the peer answers, unsealed, that it cannot use the SA (4112: it restarted, removed or
//! expired it; 5211: it cannot seal under it), the request is resent once over another SA —
//! re-established if this SA is still the current one, at most once per
//! [`Recovery::min_interval`](crate::Recovery) per peer. Such an answer is not authenticated, so
//! it does not prove the request was not executed: the resend is safe because the peer's
//! record of executed requests answers a copy with the first copy's answer instead of executing
//! it again (see [`crate::ReceiveSecure`]). A key at its hard usage limit here (5211) retires
//! the SA and seals under a fresh one; nothing was sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa::secure::SecureError;
use tower::{Layer, Service, ServiceExt};

use crate::{BoxError, Node, form};

/// Chooses the peer node a request goes to.
pub type Route = Arc<dyn Fn(&RequestPrimitive) -> Option<NodeId> + Send + Sync>;

/// Routes SP-relative and absolute targets to their CSE-ID (`/id-in/cb/ae` → `/id-in`), and
/// everything else to `default`.
pub fn route_by_cse_id(default: Option<NodeId>) -> Route {
    Arc::new(move |req: &RequestPrimitive| {
        let to = req.to.trim_start_matches("//");
        let cse = if req.to.starts_with("//") {
            to.split('/').nth(1).map(|c| format!("/{c}"))
        } else if to.starts_with('/') {
            to.split('/').nth(1).map(|c| format!("/{c}"))
        } else {
            None
        };
        cse.and_then(|c| NodeId::new(c).ok()).or_else(|| default.clone())
    })
}

/// Layer that applies [`SendSecure`].
#[derive(Clone)]
pub struct SendSecureLayer {
    node: Node,
    route: Route,
}

impl SendSecureLayer {
    /// Secures requests of `node`, sent to the peer `route` picks.
    pub fn new(node: Node, route: Route) -> Self {
        Self { node, route }
    }
}

impl<S> Layer<S> for SendSecureLayer {
    type Service = SendSecure<S>;
    fn layer(&self, inner: S) -> SendSecure<S> {
        SendSecure { inner, node: self.node.clone(), route: self.route.clone() }
    }
}

/// Seals outgoing requests over SAs, establishing them on demand; opens the answers.
#[derive(Clone)]
pub struct SendSecure<S> {
    inner: S,
    node: Node,
    route: Route,
}

impl<S> SendSecure<S> {
    crate::inner_accessors!("inner transport");
}

fn failed(rsc: Rsc, rqi: &str, why: &str) -> ResponsePrimitive {
    metrics::counter!("onem2m_sa_send_rejected_total", "rsc" => rsc.code().to_string()).increment(1);
    ResponsePrimitive::error(rsc, rqi, why)
}

const TOO_LATE: &str = "no answer in time, and too late to resend safely; the request may have been executed";

/// Whether a resend would leave later than [`crate::Recovery::resend_window`] after the first copy.
fn too_late(first_sent: Option<tokio::time::Instant>, node: &Node) -> bool {
    first_sent.is_some_and(|t| t.elapsed() > node.recovery().resend_window)
}

/// Response future of [`SendSecure`]. Boxed: the send path may have to establish an SA first,
/// which takes round trips across rb.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<ResponsePrimitive, BoxError>> + Send>>;

impl<S> Service<RequestPrimitive> for SendSecure<S>
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call drives its own clone of the transport to readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let (inner, node, route) = (self.inner.clone(), self.node.clone(), self.route.clone());
        let span = tracing::debug_span!("sa.send", op = ?req.op, rqi = %req.rqi);
        Box::pin(tracing::Instrument::instrument(
            async move {
                // A request that names no target (e.g. a bare CoAP POST, the carriage of an
                // already sealed compact object, arriving on a plaintext listener) is not sent.
                if req.to.is_empty() {
                    return Ok(failed(Rsc::BAD_REQUEST, &req.rqi, "the request names no target (`to` is empty)"));
                }
                let Some(peer) = route(&req) else {
                    return Ok(failed(Rsc::TARGET_NOT_REACHABLE, &req.rqi, "no SA peer for the target"));
                };
                // The plaintext, in the form of the last seal (a resend over a fresh SA may take
                // the other form: then it is made again).
                let mut plaintext: Option<(onem2m_sa::secure::Encoding, Vec<u8>)> = None;
                let mut first_sent = None;
                let (mut resent, mut reseals) = (false, 0);
                loop {
                    let entry = match node.sa_with(&peer, inner.clone()).await {
                        Ok(entry) => entry,
                        Err(f) => return Ok(failed(f.rsc(), &req.rqi, &f.to_string())),
                    };
                    // Checked again here: the re-establishment may have taken long.
                    if resent && too_late(first_sent, &node) {
                        return Ok(failed(Rsc::REQUEST_TIMEOUT, &req.rqi, TOO_LATE));
                    }
                    // The epoch the request is sealed under is the one its answer is sealed
                    // under: keep it, so the answer opens even if the SA is removed meanwhile.
                    // The compact form goes only straight to the peer's sidecar: a transit CSE
                    // forwards the ESPrim JWE in `m2m:seci`, not a binary body.
                    let route = node.outer(&peer);
                    let encoding = if route.is_direct(&peer) {
                        node.forms().encoding(&peer, &entry)
                    } else {
                        onem2m_sa::secure::Encoding::Jwe
                    };
                    if plaintext.as_ref().is_none_or(|(made_for, _)| *made_for != encoding) {
                        let made = form::plaintext(encoding, &req).map_err(|e| -> BoxError { Box::new(e) })?;
                        plaintext = Some((encoding, made));
                    }
                    let plaintext = &plaintext.as_ref().expect("made above").1;
                    let mut wire = Vec::with_capacity(plaintext.len() * 4 / 3 + 256);
                    let sealed = match entry.current_epoch() {
                        Some(epoch) => entry
                            .seal_with_at(node.now().unix_secs, &epoch, encoding, plaintext, &mut wire)
                            .map(|i| (epoch, i)),
                        None => Err(SecureError::UnknownSa),
                    };
                    let epoch = match sealed {
                        Ok((epoch, info)) => {
                            if info.update_due {
                                node.update_if_due(&entry, &epoch, inner.clone());
                            }
                            epoch
                        }
                        // Nothing was sent: the SA was removed or expired since the lookup, or
                        // its key reached the hard usage limit (5211). Seal under a fresh SA.
                        Err(e @ (SecureError::UnknownSa | SecureError::Encryption)) if reseals < 2 => {
                            reseals += 1;
                            if e == SecureError::Encryption {
                                node.retire_outbound(&entry, inner.clone());
                            }
                            continue;
                        }
                        Err(e) => return Ok(failed(e.rsc(), &req.rqi, &e.to_string())),
                    };
                    metrics::counter!("onem2m_sa_sealed_total").increment(1);
                    let outer = route.sealed_request(&node.next_rqi("sec"), encoding, &wire);
                    first_sent.get_or_insert_with(tokio::time::Instant::now);
                    let rsp = inner.clone().oneshot(outer).await?;
                    if rsp.rsc != Rsc::OK {
                        if rsp.rsc == Rsc::ESPRIM_UNKNOWN_KEY_ID || rsp.rsc == Rsc::ESPRIM_ENCRYPTION_ERROR {
                            // The peer says it cannot use the SA — unauthenticated: it may have
                            // executed the request and someone on the path swallowed the answer.
                            // One resend over another SA is safe (the peer's record of executed
                            // requests answers a copy without executing it); more are not useful.
                            if resent {
                                let why = format!(
                                    "refused again over a fresh SA ({}; the answer is not authenticated); not resent",
                                    rsp.rsc
                                );
                                return Ok(failed(rsp.rsc, &req.rqi, &why));
                            }
                            if too_late(first_sent, &node) {
                                return Ok(failed(Rsc::REQUEST_TIMEOUT, &req.rqi, TOO_LATE));
                            }
                            if !node.recover_from_unsealed(&entry) {
                                let why = format!(
                                    "refused ({}; the answer is not authenticated) right after a re-establishment \
                                     with this peer; not resent",
                                    rsp.rsc
                                );
                                return Ok(failed(rsp.rsc, &req.rqi, &why));
                            }
                            tracing::debug!(peer = %peer, rsc = %rsp.rsc, "peer cannot use the SA; resending once");
                            metrics::counter!("onem2m_sa_resent_total").increment(1);
                            resent = true;
                            continue;
                        }
                        // Two key updates passed while the request was in flight: the peer took
                        // its key phase bit for the newest epoch's and could not open it (4115).
                        // It was not executed; even if the answer is forged, a resend is safe.
                        let overtaken = entry.current_epoch().is_some_and(|e| e.number >= epoch.number + 2);
                        if rsp.rsc == Rsc::ESPRIM_BAD_MAC && overtaken && !resent {
                            tracing::debug!(peer = %peer, "sealed under an epoch two updates old; resending once");
                            metrics::counter!("onem2m_sa_resent_total").increment(1);
                            resent = true;
                            continue;
                        }
                        // An answer that is not sealed is not authenticated: a refusal (an error
                        // code) is passed on as a code alone, anything else is refused.
                        if rsp.rsc.is_error() {
                            let why = match crate::rb::error_text(&rsp) {
                                text if text.is_empty() => {
                                    format!("refused by the peer ({}); the answer is not authenticated", rsp.rsc)
                                }
                                text => format!(
                                    "refused by the peer or a hop on the way ({}: {text}); the answer is not \
                                     authenticated",
                                    rsp.rsc
                                ),
                            };
                            return Ok(failed(rsp.rsc, &req.rqi, &why));
                        }
                        return Ok(failed(Rsc::ESPRIM_BAD_MAC, &req.rqi, "answer not secured"));
                    }
                    // The answer may come in either form (JWE is always accepted).
                    let Some(pc) = rsp.pc.as_ref().filter(|pc| form::is_secured(pc)) else {
                        return Ok(failed(Rsc::ESPRIM_BAD_MAC, &req.rqi, "answer not secured"));
                    };
                    let mut scratch = Vec::new();
                    let opened = form::decode(pc, &mut scratch).and_then(|sealed| {
                        let encoding = sealed.encoding;
                        epoch.open(sealed).map(|plain| form::primitive::<ResponsePrimitive>(encoding, plain))
                    });
                    return match opened {
                        Ok(answer) => {
                            metrics::counter!("onem2m_sa_opened_total").increment(1);
                            match answer {
                                // Sealed answers do not name the request they answer: check the
                                // rqi, so an answer swapped between two requests on one SA is
                                // refused instead of delivered to the wrong caller.
                                Ok(answer) if answer.rqi == req.rqi => Ok(answer),
                                Ok(_) => Ok(failed(Rsc::ESPRIM_BAD_MAC, &req.rqi, "sealed answer to another request")),
                                Err(_) => Ok(failed(Rsc::BAD_REQUEST, &req.rqi, "sealed answer is not a primitive")),
                            }
                        }
                        Err(e) => Ok(failed(e.rsc(), &req.rqi, &e.to_string())),
                    };
                }
            },
            span,
        ))
    }
}
