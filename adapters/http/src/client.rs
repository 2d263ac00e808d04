//! The pooled HTTP client (TS-0009 over HTTP/1.1): a Tower service that sends request
//! primitives to one base URI over keep-alive connections and maps the answers back, with the
//! same limits on what it receives as the server.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use tower::Service;

use crate::{BindingError, BoxError, Limits, MediaType, http_to_response_with_limits, primitive_to_request_as};

/// Settings of an [`HttpClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Limits on the answers received (header values, body).
    pub limits: Limits,
    /// Time to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time for a whole exchange: connecting, sending, and receiving the complete answer.
    pub request_timeout: Duration,
    /// Time an unused pooled connection is kept open.
    pub pool_idle_timeout: Duration,
    /// Most unused connections kept per host. As many as the concurrent requests to one host
    /// at the busiest moment: after a burst, a connection beyond it is closed and the next burst
    /// connects again (the default is the server's default connection bound, 1024).
    pub pool_max_idle_per_host: usize,
    /// Serialization of request bodies, also asked for in `Accept`; answers in JSON or CBOR are
    /// both decoded.
    pub media: MediaType,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 1024,
            media: MediaType::Json,
        }
    }
}

/// Why an exchange with the target failed.
///
/// The `Display` texts name no address or other detail of the target, so that they can be
/// relayed to the originator; the causes are in [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The primitive cannot be carried over HTTP.
    #[error("the request cannot be sent over HTTP")]
    InvalidRequest(#[source] BindingError),
    /// No connection to the target could be opened (refused, unreachable, unresolvable, or not
    /// within [`ClientConfig::connect_timeout`]).
    #[error("the target is not reachable")]
    Connect(#[source] BoxError),
    /// No complete answer within [`ClientConfig::request_timeout`].
    #[error("the target did not answer in time")]
    Timeout,
    /// The connection failed after it was opened, before a complete answer.
    #[error("the connection to the target failed")]
    Io(#[source] BoxError),
    /// The target answered at the HTTP level without a response primitive: no `X-M2M-RSC`
    /// (TS-0009 §6.4.17 maps every response primitive's Response Status Code to that header).
    /// Whatever else the answer carries (its Content-Type, a body) is not read. A bare 2xx is
    /// how a CSE such as ACME answers a no-response request (`rt=5`): the request was taken; a
    /// bare error status (a proxy's `502`) says nothing of the kind.
    #[error("the target answered HTTP {status} without a response primitive (no X-M2M-RSC)")]
    NoResponsePrimitive {
        /// The HTTP status of the answer.
        status: http::StatusCode,
    },
    /// The answer is not a valid oneM2M HTTP response (an `X-M2M-RSC` with a missing `X-M2M-RI`,
    /// a bad body, …).
    #[error("the target's answer is invalid")]
    InvalidResponse(#[source] BindingError),
    /// The answer's body exceeds [`Limits::max_body_bytes`].
    #[error("the target's answer is too large")]
    BodyTooLarge,
}

impl ClientError {
    /// The Response Status Code to answer the originator with: `TARGET_NOT_REACHABLE` (5103)
    /// when the target could not be reached or dropped the connection, `REQUEST_TIMEOUT` (4008)
    /// on timeout, the mapping error's code for a request that cannot be sent (5000 for an
    /// unmappable primitive), `INTERNAL_SERVER_ERROR` (5000) for an unusable answer or one
    /// without a response primitive.
    pub fn rsc(&self) -> ResponseStatusCode {
        match self {
            Self::InvalidRequest(e) => e.rsc(),
            Self::Connect(_) | Self::Io(_) => ResponseStatusCode::TARGET_NOT_REACHABLE,
            Self::Timeout => ResponseStatusCode::REQUEST_TIMEOUT,
            Self::NoResponsePrimitive { .. } | Self::InvalidResponse(_) | Self::BodyTooLarge => {
                ResponseStatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Sends request primitives to a base URI over pooled HTTP/1.1 keep-alive connections
/// (TS-0009 §6), as a Tower service. Clones share the pool.
///
/// Each request is built with [`primitive_to_request_as`] in [`ClientConfig::media`], with
/// `Accept` naming that media type; the answer is read up to [`Limits::max_body_bytes`] and
/// mapped with [`http_to_response_with_limits`]. Failures are [`ClientError`]s (boxed).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: Arc<str>,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").field("base", &self.base).field("config", &self.config).finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `base`, `http://host[:port]` optionally followed by a path prefix; `https`
    /// and other schemes are refused with [`BindingError::InvalidBase`]. Needs no runtime until
    /// the first request.
    pub fn new(base: &str, config: ClientConfig) -> Result<Self, BindingError> {
        let base = checked_base(base)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Ok(Self { client, base, config: Arc::new(config) })
    }

    /// A client for another base URI sharing this one's pool and configuration.
    pub fn with_base(&self, base: &str) -> Result<Self, BindingError> {
        Ok(Self { client: self.client.clone(), base: checked_base(base)?, config: self.config.clone() })
    }

    /// The base URI, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }
}

fn checked_base(base: &str) -> Result<Arc<str>, BindingError> {
    let invalid = |reason| BindingError::InvalidBase { base: base.to_owned(), reason };
    let uri: http::Uri = base.parse().map_err(|_| invalid("not a URI"))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return Err(invalid("only http:// is supported"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("user information is not supported"));
    }
    if uri.query().is_some() {
        return Err(invalid("a base has no query"));
    }
    Ok(Arc::from(base.trim_end_matches('/')))
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<ResponsePrimitive, BoxError>> + Send>>;

impl HttpClient {
    /// Sends `req` as [`Service::call`] does, with `extra` headers set on the HTTP request after
    /// the mapping (each replaces any header of its name): what the primitive cannot carry, such
    /// as the sidecar's `X-SA-Peer`.
    pub fn call_with_headers(&self, req: &RequestPrimitive, extra: HeaderMap) -> ResponseFuture {
        let media = self.config.media;
        let mut request = match primitive_to_request_as(req, &self.base, media) {
            Ok(request) => request,
            Err(e) => return Box::pin(std::future::ready(Err(ClientError::InvalidRequest(e).into()))),
        };
        let headers = request.headers_mut();
        headers.insert(http::header::ACCEPT, HeaderValue::from_static(media.as_str()));
        let mut last = None;
        for (name, value) in extra {
            // `HeaderMap::into_iter` names only the first of several values of one header.
            match name {
                Some(name) => {
                    headers.insert(name.clone(), value);
                    last = Some(name);
                }
                None => {
                    if let Some(name) = &last {
                        headers.append(name.clone(), value);
                    }
                }
            }
        }
        let sent = self.client.request(request.map(Full::new));
        let config = self.config.clone();
        Box::pin(async move {
            let exchange = async {
                let response = sent.await.map_err(|e| match e.is_connect() {
                    true => ClientError::Connect(e.into()),
                    false => ClientError::Io(e.into()),
                })?;
                let (parts, body) = response.into_parts();
                if !parts.headers.contains_key(&crate::headers::RSC.key) {
                    return Err(ClientError::NoResponsePrimitive { status: parts.status });
                }
                let limit = config.limits.max_body_bytes;
                if body.size_hint().lower() > limit as u64 {
                    return Err(ClientError::BodyTooLarge);
                }
                let body = match Limited::new(body, limit).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) if e.is::<LengthLimitError>() => return Err(ClientError::BodyTooLarge),
                    Err(e) => return Err(ClientError::Io(e)),
                };
                http_to_response_with_limits(&http::Response::from_parts(parts, body), &config.limits)
                    .map_err(ClientError::InvalidResponse)
            };
            match tokio::time::timeout(config.request_timeout, exchange).await {
                Ok(result) => result.map_err(BoxError::from),
                Err(_) => Err(ClientError::Timeout.into()),
            }
        })
    }
}

impl Service<RequestPrimitive> for HttpClient {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: the pool opens connections on demand.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        self.call_with_headers(&req, HeaderMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        for ok in ["http://127.0.0.1:8080", "http://cse.example/prefix/", "HTTP://h"] {
            assert!(HttpClient::new(ok, ClientConfig::default()).is_ok(), "{ok}");
        }
        let client = HttpClient::new("http://h:1/p/", ClientConfig::default()).unwrap();
        assert_eq!(client.base(), "http://h:1/p");
        assert_eq!(client.with_base("http://other:2").unwrap().base(), "http://other:2");
        for bad in ["https://h", "ftp://h", "h:80", "/path", "http://u:p@h", "http://h/?q=1", "not a uri", ""] {
            let err = HttpClient::new(bad, ClientConfig::default()).unwrap_err();
            assert!(matches!(err, BindingError::InvalidBase { .. }), "{bad}: {err}");
            assert_eq!(err.rsc(), ResponseStatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
