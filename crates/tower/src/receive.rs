//! `ReceiveSecure`: Receive Secure Message for a node's incoming requests (clause 7.3.5), and
//! the rb endpoint for establishment, update and removal flows.
//!
//! A secured request is opened, its `fr` checked against the SA peer's authorization context
//! (4116 otherwise), and only then handed to the inner service with the authenticated peer; the
//! answer is sealed under the epoch the request came in. A plaintext request follows the
//! plaintext policy: by default an originator with a CSE-ID gets 4107. Nothing that fails a
//! check reaches the inner service.
//!
//! Every opened CREATE, UPDATE, DELETE and NOTIFY goes through the node's record of executed
//! requests (`executed.rs`): a copy of a request the same authenticated peer already sent — a
//! resend over a new SA — gets the first copy's answer and is not executed again. RETRIEVE is
//! safe to repeat and is not recorded.
//!
//! On a replica (a node built with [`Node::with_store`]) SA messages are answered with
//! [`Node::handle_sa_message_stored`]: each establishment, update and removal is recorded in the
//! shared store before the answer leaves. A node without a store answers them synchronously,
//! with no allocation, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa::SaId;
use onem2m_sa::credential::{NodeId, OriginatorPattern};
use onem2m_sa::secure::{Encoding, EpochRef, SecureError, UsageLimits};
use onem2m_sa::table::SaEntry;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::executed::{Admission, Answer, Key, Ticket, request_digest};
use crate::{BoxError, Node, form, rb};

/// What a copy of a request gets when the first copy's execution ended without an answer.
pub(crate) const UNKNOWN_OUTCOME: &str = "the first copy of this request ended without an answer; not executed again";

/// The peer an SA authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The peer node.
    pub peer: NodeId,
    /// The SA the request came over.
    pub sa_id: SaId,
    /// The epoch of the SA's keys the request was sealed under.
    pub epoch: u32,
    /// The request's sequence number (replicas check it in a shared replay window,
    /// [`crate::store::SharedReplayLayer`]).
    pub seq: u64,
}

/// A request as the protected service receives it.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The primitive, opened.
    pub primitive: RequestPrimitive,
    /// The authenticated peer, when the request came over an SA.
    pub peer: Option<Authenticated>,
}

/// Which requests may come without an SA. The default admits none: every plaintext request
/// is refused with 4107 (SECURITY_ASSOCIATION_REQUIRED) before the protected service sees it.
#[derive(Debug, Clone, Default)]
pub struct PlaintextPolicy {
    /// Originators admitted in plaintext (CSE-IDs included, if listed). `*` covers every
    /// originator that is named, not a request without one.
    pub allow: Vec<OriginatorPattern>,
    /// Admit plaintext requests with no or an empty `fr` (e.g. an AE registering without an
    /// AE-ID for the CSE to assign one).
    pub allow_anonymous: bool,
}

impl PlaintextPolicy {
    /// Whether a plaintext request from `fr` is admitted: only an originator the allow-list
    /// covers, or a missing (or empty) one when `allow_anonymous` is set.
    pub fn admits(&self, fr: Option<&str>) -> bool {
        match fr.filter(|fr| !fr.is_empty()) {
            None => self.allow_anonymous,
            Some(fr) => self.allow.iter().any(|p| p.covers(fr)),
        }
    }
}

/// Layer that applies [`ReceiveSecure`].
#[derive(Clone)]
pub struct ReceiveSecureLayer {
    node: Node,
    policy: PlaintextPolicy,
}

impl ReceiveSecureLayer {
    /// Protects a service of `node` with `policy` for plaintext.
    pub fn new(node: Node, policy: PlaintextPolicy) -> Self {
        Self { node, policy }
    }
}

impl<S> Layer<S> for ReceiveSecureLayer {
    type Service = ReceiveSecure<S>;
    fn layer(&self, inner: S) -> ReceiveSecure<S> {
        ReceiveSecure { inner, node: self.node.clone(), policy: self.policy.clone() }
    }
}

/// Opens secured requests, answers SA flows, applies the plaintext policy.
#[derive(Clone)]
pub struct ReceiveSecure<S> {
    inner: S,
    node: Node,
    policy: PlaintextPolicy,
}

impl<S> ReceiveSecure<S> {
    crate::inner_accessors!("protected service");
}

fn refuse(rsc: Rsc, rqi: &str, why: &str, reason: &'static str) -> ResponsePrimitive {
    metrics::counter!("onem2m_sa_receive_rejected_total", "reason" => reason).increment(1);
    ResponsePrimitive::error(rsc, rqi, why)
}

/// What the answer must go through before it leaves: sealed under the request's SA and epoch.
struct Sealing {
    entry: Arc<SaEntry>,
    /// The form of the request, which the answer takes too.
    encoding: Encoding,
    epoch: EpochRef,
    limits: UsageLimits,
    rqi: String,
}

impl Sealing {
    /// Who sent the request the answer goes to, and under which key and number.
    fn authenticated(&self, seq: u64) -> Authenticated {
        Authenticated { peer: self.entry.peer().clone(), sa_id: self.entry.sa_id(), epoch: self.epoch.number, seq }
    }

    /// Seals an answer kept in the record of executed requests (its binary form, whichever form
    /// the first copy came in): as it is in the compact form, as its JSON in the JWE form.
    fn seal_recorded(&self, recorded: &[u8]) -> ResponsePrimitive {
        match self.encoding {
            Encoding::Compact => self.seal_plain(recorded),
            Encoding::Jwe => match ResponsePrimitive::from_binary_slice(recorded) {
                Ok(answer) => self.seal_answer(&answer),
                Err(_) => refuse(Rsc::INTERNAL_SERVER_ERROR, &self.rqi, "recorded answer unreadable", "internal"),
            },
        }
    }

    /// Seals an answer in the form of the request.
    fn seal_answer(&self, answer: &ResponsePrimitive) -> ResponsePrimitive {
        match form::plaintext(self.encoding, answer) {
            Ok(plain) => self.seal_plain(&plain),
            Err(_) => refuse(Rsc::INTERNAL_SERVER_ERROR, &self.rqi, "answer cannot be encoded", "internal"),
        }
    }

    /// Seals a serialized answer. The epoch the request was opened with is held here, so the
    /// answer is sealed under it even if the SA was removed or expired meanwhile (a request
    /// opened before the removal is answered; its keys are freed when this is dropped).
    fn seal_plain(&self, plain: &[u8]) -> ResponsePrimitive {
        let mut wire = Vec::with_capacity(plain.len() * 4 / 3 + 256);
        let sealed = match self.entry.seal_with(&self.epoch, self.encoding, plain, &mut wire) {
            Err(SecureError::UnknownSa) => {
                let (sa_id, suite) = (self.entry.sa_id(), self.entry.suite());
                self.epoch.seal(sa_id, suite, self.encoding, plain, &self.limits, &mut wire)
            }
            other => other,
        };
        if let Err(e) = sealed {
            return refuse(e.rsc(), &self.rqi, &e.peer_text(), e.label());
        }
        metrics::counter!("onem2m_sa_sealed_total").increment(1);
        let mut outer = ResponsePrimitive::new(Rsc::OK, &self.rqi);
        outer.rvi = Some("3".to_owned());
        outer.pc = Some(form::content(self.encoding, &wire));
        outer
    }
}

/// The record of a first execution, with the node's clock to stamp the answer.
struct Record {
    ticket: Ticket,
    node: Node,
}

/// A copy of a request still executing, waiting for the first one's answer.
type Wait = Pin<Box<dyn Future<Output = Answer> + Send>>;

pin_project! {
    /// Response future of [`ReceiveSecure`]: an answer given without the protected service
    /// (SA flows, refusals) needs no allocation; otherwise the service's answer, sealed.
    #[project = Proj]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Ready { response: Option<ResponsePrimitive> },
        Inner { #[pin] future: F, sealing: Option<Sealing>, record: Option<Record> },
        Waiting { wait: Wait, sealing: Sealing },
        Stored { answer: Pin<Box<dyn Future<Output = ResponsePrimitive> + Send>> },
    }
}

impl<F> ResponseFuture<F> {
    fn ready(response: ResponsePrimitive) -> Self {
        Self { state: State::Ready { response: Some(response) } }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ResponsePrimitive, BoxError>>,
{
    type Output = Result<ResponsePrimitive, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => Poll::Ready(Ok(response.take().expect("polled after completion"))),
            StateProj::Inner { future, sealing, record } => {
                // An error drops the record's ticket unanswered: a copy gets the error it keeps.
                let answer = std::task::ready!(future.poll(cx))?;
                let Some(sealing) = sealing.take() else { return Poll::Ready(Ok(answer)) };
                let Some(Record { ticket, node }) = record.take() else {
                    return Poll::Ready(Ok(sealing.seal_answer(&answer)));
                };
                // The record keeps the binary form, which a copy in either form is sealed from;
                // this copy is sealed from the answer itself (no decode of what was just encoded).
                let recorded: Answer = answer.to_binary_vec().map_err(|e| -> BoxError { Box::new(e) })?.into();
                ticket.answer(recorded.clone(), node.now().mono_ms);
                Poll::Ready(Ok(match sealing.encoding {
                    Encoding::Compact => sealing.seal_plain(&recorded),
                    Encoding::Jwe => sealing.seal_answer(&answer),
                }))
            }
            StateProj::Stored { answer } => Poll::Ready(Ok(std::task::ready!(answer.as_mut().poll(cx)))),
            StateProj::Waiting { wait, sealing } => {
                let plain = std::task::ready!(wait.as_mut().poll(cx));
                metrics::counter!("onem2m_sa_resends_answered_total").increment(1);
                Poll::Ready(Ok(sealing.seal_recorded(&plain)))
            }
        }
    }
}

/// An answer as the record of executed requests keeps it: its binary form.
fn serialized(answer: &ResponsePrimitive) -> Answer {
    answer.to_binary_vec().unwrap_or_default().into()
}

/// Waits for the answer of the first copy.
fn wait_for(mut rx: tokio::sync::watch::Receiver<Option<Answer>>, unknown: Answer) -> Wait {
    Box::pin(async move {
        loop {
            if let Some(answer) = rx.borrow_and_update().clone() {
                return answer;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone().unwrap_or(unknown);
            }
        }
    })
}

impl<S> Service<RequestPrimitive> for ReceiveSecure<S>
where
    S: Service<InboundRequest, Response = ResponsePrimitive, Error = BoxError>,
{
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let _span = tracing::debug_span!("sa.receive", rqi = %req.rqi).entered();
        // Either carriage: the standard content, or the notification that carries it.
        let req = crate::carriage::unwrapped(req);
        if rb::is_sa_message(&req) {
            let Some(store) = self.node.store().cloned() else {
                return ResponseFuture::ready(self.node.handle_sa_message(&req));
            };
            // A replica: the SA is recorded in the shared store before the answer leaves.
            let node = self.node.clone();
            let answer = Box::pin(async move { node.handle_sa_message_stored(&req, &*store).await });
            return ResponseFuture { state: State::Stored { answer } };
        }
        let Some(pc) = req.pc.as_ref().filter(|pc| form::is_secured(pc)) else {
            if !self.policy.admits(req.fr.as_deref()) {
                let why = "a security association is required";
                return ResponseFuture::ready(refuse(Rsc::SECURITY_ASSOCIATION_REQUIRED, &req.rqi, why, "plaintext"));
            }
            let future = self.inner.call(InboundRequest { primitive: req, peer: None });
            return ResponseFuture { state: State::Inner { future, sealing: None, record: None } };
        };
        let mut scratch = Vec::new();
        let now = self.node.now();
        if !self.node.accepts_compact() && compact::is_compact(pc) {
            let why = "this node does not take secured primitives in the compact form";
            return ResponseFuture::ready(refuse(Rsc::UNSUPPORTED_MEDIA_TYPE, &req.rqi, why, "compact"));
        }
        let opened = form::decode(pc, &mut scratch).and_then(|sealed| {
            let encoding = sealed.encoding;
            let entry = self.node.inbound().get(sealed.header.sa_id).ok_or(SecureError::UnknownSa)?;
            let seq = sealed.header.seq;
            let (plain, epoch) = entry.open_at(now.unix_secs, sealed)?;
            let inner = form::primitive::<RequestPrimitive>(encoding, plain)
                .map_err(|_| SecureError::Malformed("inner primitive"))?;
            // Only what the record of executed requests keeps is digested (RETRIEVE is not),
            // over the binary form, so that copies in either form are the same request.
            let digest = match (inner.op, encoding) {
                (Operation::Retrieve, _) => None,
                (_, Encoding::Compact) => Some(request_digest(plain)),
                (_, Encoding::Jwe) => {
                    Some(request_digest(&inner.to_binary_vec().map_err(|_| SecureError::Malformed("inner primitive"))?))
                }
            };
            // Identity binding: the originator must lie inside the peer's context.
            entry.authorize(inner.fr.as_deref().unwrap_or_default())?;
            Ok((inner, entry, epoch, digest, seq, encoding))
        });
        let (inner_req, entry, epoch, digest, seq, encoding) = match opened {
            Ok(v) => v,
            Err(e) => return ResponseFuture::ready(refuse(e.rsc(), &req.rqi, &e.peer_text(), e.label())),
        };
        metrics::counter!("onem2m_sa_opened_total").increment(1);
        let limits = self.node.inbound().config().limits;
        let sealing = Sealing { entry, encoding, epoch, limits, rqi: req.rqi };
        let Some(digest) = digest else {
            // A RETRIEVE is safe to repeat: a copy is executed again (so that a client polling
            // with a fixed rqi is not served an old answer).
            let peer = sealing.authenticated(seq);
            let future = self.inner.call(InboundRequest { primitive: inner_req, peer: Some(peer) });
            return ResponseFuture { state: State::Inner { future, sealing: Some(sealing), record: None } };
        };
        // At most once: a copy of a request this peer already sent (a resend over another SA)
        // gets the first one's answer and does not reach the service again.
        let key = Key::new(sealing.entry.peer().clone(), inner_req.fr.as_deref().unwrap_or_default(), &inner_req.rqi);
        let inner_rqi = inner_req.rqi.clone();
        let error = |rsc: Rsc, why: &str| ResponsePrimitive::error(rsc, &inner_rqi, why);
        let mut ticket = match self.node.executed().admit(key, digest, now.mono_ms) {
            Admission::Execute(ticket) => ticket,
            Admission::Answered(plain) => {
                metrics::counter!("onem2m_sa_resends_answered_total").increment(1);
                return ResponseFuture::ready(sealing.seal_recorded(&plain));
            }
            Admission::Wait(rx) => {
                let unknown = serialized(&error(Rsc::INTERNAL_SERVER_ERROR, UNKNOWN_OUTCOME));
                return ResponseFuture { state: State::Waiting { wait: wait_for(rx, unknown), sealing } };
            }
            Admission::Conflict => {
                metrics::counter!("onem2m_sa_receive_rejected_total", "reason" => "rqi_reused").increment(1);
                let why = "request identifier already used by this originator for another request";
                return ResponseFuture::ready(sealing.seal_answer(&error(Rsc::CONFLICT, why)));
            }
            Admission::Full => {
                metrics::counter!("onem2m_sa_receive_rejected_total", "reason" => "executing_full").increment(1);
                let why = "too many requests executing; not executed";
                return ResponseFuture::ready(sealing.seal_answer(&error(Rsc::INTERNAL_SERVER_ERROR, why)));
            }
        };
        let node = self.node.clone();
        ticket
            .if_unanswered(serialized(&error(Rsc::INTERNAL_SERVER_ERROR, UNKNOWN_OUTCOME)), move || node.now().mono_ms);
        let peer = sealing.authenticated(seq);
        let future = self.inner.call(InboundRequest { primitive: inner_req, peer: Some(peer) });
        let record = Some(Record { ticket, node: self.node.clone() });
        ResponseFuture { state: State::Inner { future, sealing: Some(sealing), record } }
    }
}
