//! The primitive adapter: a Tower service that turns HTTP requests into request primitives for
//! an inner service and its response primitives back into HTTP (TS-0009 §6), and answers by
//! itself what cannot be mapped. Also the error answers the server gives before any mapping.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use serde_json::{Map, Value};
use tower::{Service, ServiceExt};

use crate::body::{self, MediaType};
use crate::response::encode_response;
use crate::{ClientError, Limits, request_to_primitive_with_limits};

/// The error type at the Tower boundaries of this crate (inner services, [`HttpClient`](crate::HttpClient)).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Maps HTTP requests to primitives for `inner`, and its answers back; malformed requests get
/// the [`BindingError`](crate::BindingError)'s RSC; answers use the request's media type
/// (`Accept` if it names JSON or CBOR, else the request's `Content-Type`, else JSON).
///
/// An inner `Err(e)` becomes an error answer: the [`ClientError::rsc`] of the first
/// [`ClientError`] in `e`'s source chain, else `INTERNAL_SERVER_ERROR` (5000). Every error
/// answer carries `X-M2M-RSC`, a short `m2m:dbg` text that describes the request's own fault
/// (never an internal error's details), and echoes `X-M2M-RI` and `X-M2M-RVI` when the
/// request had them.
///
/// The service is always ready; the inner service is cloned for each request and driven to
/// readiness in the response future, where a failure becomes an answer like any other.
#[derive(Debug, Clone)]
pub struct PrimitiveService<S> {
    inner: S,
    limits: Limits,
}

impl<S> PrimitiveService<S> {
    /// Wraps `inner`; received requests are checked against `limits`.
    pub fn new(inner: S, limits: Limits) -> Self {
        Self { inner, limits }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<http::Request<Bytes>> for PrimitiveService<S>
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let media = answer_media(request.headers());
        let echo = Echo::of(request.headers(), &self.limits);
        let primitive = match request_to_primitive_with_limits(&request, &self.limits) {
            Ok(primitive) => primitive,
            Err(e) => {
                tracing::debug!(error = %e, "request not mapped to a primitive");
                let answer = error_response(e.rsc(), &echo, &e.to_string(), media);
                return Box::pin(std::future::ready(Ok(answer)));
            }
        };
        let inner = self.inner.clone();
        let to_create = primitive.op == Operation::Create;
        Box::pin(async move {
            let answer = match inner.oneshot(primitive).await {
                Ok(rsp) => encode_response(&rsp, media, to_create).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, rsc = %rsp.rsc, "answer cannot be carried over HTTP");
                    let rsc = ResponseStatusCode::INTERNAL_SERVER_ERROR;
                    error_response(rsc, &echo, "the answer cannot be carried over HTTP", media)
                }),
                Err(e) => {
                    let (rsc, message) = match client_error(&*e) {
                        Some(c) => (c.rsc(), c.to_string()),
                        None => (ResponseStatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned()),
                    };
                    tracing::debug!(error = %e, %rsc, "inner service failed");
                    error_response(rsc, &echo, &message, media)
                }
            };
            Ok(answer)
        })
    }
}

/// The first [`ClientError`] in the source chain of `e`.
fn client_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientError> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<ClientError>())
}

/// The media type of an answer: the first JSON or CBOR type `Accept` lists (with a non-zero
/// `q`), else the request's `Content-Type` if it is one, else JSON.
pub(crate) fn answer_media(headers: &HeaderMap) -> MediaType {
    let accepted = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|item| {
            let zero_q =
                |p: &str| p.split_once('=').is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("q") && is_zero(v));
            !item.split(';').skip(1).any(zero_q)
        })
        .find_map(|item| MediaType::from_essence(item.split(';').next().unwrap_or_default()));
    let sent = || {
        let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
        MediaType::from_essence(ct.split(';').next().unwrap_or_default())
    };
    accepted.or_else(sent).unwrap_or_default()
}

fn is_zero(q: &str) -> bool {
    q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
}

const RSC: HeaderName = HeaderName::from_static("x-m2m-rsc");
const RI: HeaderName = HeaderName::from_static("x-m2m-ri");
const RVI: HeaderName = HeaderName::from_static("x-m2m-rvi");

/// Longest `m2m:dbg` text an error answer carries.
const MAX_DEBUG_TEXT: usize = 256;

/// The request headers an error answer echoes: `X-M2M-RI` and `X-M2M-RVI`, when sent once and
/// within the header value limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Echo {
    ri: Option<HeaderValue>,
    rvi: Option<HeaderValue>,
}

impl Echo {
    pub(crate) fn of(headers: &HeaderMap, limits: &Limits) -> Self {
        let once = |name: &HeaderName| {
            let mut values = headers.get_all(name).iter();
            let value = values.next()?;
            (values.next().is_none() && !value.is_empty() && value.len() <= limits.max_header_value_bytes)
                .then(|| value.clone())
        };
        Self { ri: once(&RI), rvi: once(&RVI) }
    }
}

/// An error answer: status from `rsc`, `X-M2M-RSC`, the echoed headers and a `{"m2m:dbg": …}`
/// body in `media`, of at most [`MAX_DEBUG_TEXT`] bytes of `message`.
pub(crate) fn error_response(
    rsc: ResponseStatusCode,
    echo: &Echo,
    message: &str,
    media: MediaType,
) -> http::Response<Bytes> {
    let mut end = message.len().min(MAX_DEBUG_TEXT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut pc = Map::new();
    pc.insert("m2m:dbg".to_owned(), Value::String(message[..end].to_owned()));
    // Encoding a one-member map of text cannot fail; an empty body would still be a valid answer.
    let body = body::encode(Some(&Value::Object(pc)), media).unwrap_or_default();
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::from_u16(rsc.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(RSC, HeaderValue::from(rsc.code()));
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(media.as_str()));
    for (name, value) in [(RI, &echo.ri), (RVI, &echo.rvi)] {
        if let Some(value) = value {
            h.insert(name, value.clone());
        }
    }
    response
}

/// The error answer to `request` that a service refuses before mapping it: like every error
/// answer of this crate, it carries `X-M2M-RSC`, echoes `X-M2M-RI` and `X-M2M-RVI`, and is in
/// the media type the request negotiated.
pub fn refuse_request<B>(
    request: &http::Request<B>,
    limits: &Limits,
    rsc: ResponseStatusCode,
    message: &str,
) -> http::Response<Bytes> {
    let headers = request.headers();
    error_response(rsc, &Echo::of(headers, limits), message, answer_media(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(pairs: &[(&str, &str)]) -> MediaType {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        answer_media(&h)
    }

    #[test]
    fn negotiation() {
        assert_eq!(media(&[]), MediaType::Json);
        assert_eq!(media(&[("content-type", "application/cbor;ty=3")]), MediaType::Cbor);
        assert_eq!(media(&[("content-type", "application/vnd.onem2m-res+cbor")]), MediaType::Cbor);
        assert_eq!(media(&[("content-type", "application/cbor"), ("accept", "application/json")]), MediaType::Json);
        assert_eq!(media(&[("accept", "text/html, application/cbor;q=0.5, application/json")]), MediaType::Cbor);
        assert_eq!(media(&[("accept", "application/cbor;q=0, application/json")]), MediaType::Json);
        assert_eq!(media(&[("accept", "*/*"), ("content-type", "application/cbor")]), MediaType::Cbor);
        assert_eq!(media(&[("accept", "text/plain"), ("content-type", "text/plain")]), MediaType::Json);
    }

    #[test]
    fn debug_text_is_bounded_on_a_char_boundary() {
        let rsp = error_response(ResponseStatusCode::BAD_REQUEST, &Echo::default(), &"é".repeat(200), MediaType::Json);
        let body: Value = serde_json::from_slice(rsp.body()).unwrap();
        assert_eq!(body["m2m:dbg"].as_str().unwrap().len(), MAX_DEBUG_TEXT);
        assert!(rsp.headers().get("x-m2m-ri").is_none());
        assert_eq!(rsp.headers()["x-m2m-rsc"], "4000");
        assert_eq!(rsp.status(), 400);
    }
}
