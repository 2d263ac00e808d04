//! The HTTP server (TS-0009 over HTTP/1.1 and HTTP/2 with prior knowledge): accepts
//! connections, bounds what each may cost — connections, header count and size, body size,
//! the time to send a request head, to complete a request, to stay idle — hands complete
//! requests to a Tower service and shuts down gracefully.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use onem2m_primitive::ResponseStatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::Limits;
use crate::body::MediaType;
use crate::service::{Echo, error_response};

/// Limits and timeouts of [`serve`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits on header values, body, request-target and nesting. `serve` enforces the body
    /// limit while reading (the service never sees a larger body); the others are for the
    /// service, e.g. [`PrimitiveService`](crate::PrimitiveService).
    pub limits: Limits,
    /// Most header fields in a request (HTTP/1.1: answered 431 by hyper; HTTP/2: 4000).
    pub max_headers: usize,
    /// Largest request head, in bytes: HTTP/1.1 read buffer (at least 8 KiB; a larger head is
    /// answered 431), HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_header_list_bytes: usize,
    /// Time a new connection has to send its first request head, and a request head, once its
    /// first bytes arrived on an idle HTTP/1.1 connection, to complete. The connection is then
    /// closed without an answer (slowloris).
    pub header_read_timeout: Duration,
    /// Time to read a request's body and have the service answer; on expiry the answer is
    /// `REQUEST_TIMEOUT` (4008, HTTP 504) and the service's future is dropped.
    pub request_timeout: Duration,
    /// Time a connection with no request in flight may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Most connections served at once. Beyond it a new connection is accepted and closed at
    /// once, so that clients fail fast instead of waiting in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, time given to requests in flight to complete before their connections are
    /// closed.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_headers: 100,
            max_header_list_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The peer address of the connection a request came on, inserted into every request's
/// extensions by [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish (up to [`ServerConfig::drain_timeout`]) and returns.
///
/// Each connection speaks HTTP/1.1 or, when it opens with the HTTP/2 preface, HTTP/2 (h2c with
/// prior knowledge). The service gets each request with its body fully read — at most
/// `limits.max_body_bytes`, else the answer is `BAD_REQUEST` (4000) and the service is not
/// called — and a [`RemoteAddr`] extension. Answers the server gives by itself are oneM2M
/// errors: `X-M2M-RSC`, a JSON `{"m2m:dbg": …}` body, `X-M2M-RI` echoed.
///
/// Accept errors (such as running out of file descriptors) are logged and retried after a short
/// pause; the function returns `Ok` once drained.
pub async fn serve<S, F>(listener: TcpListener, service: S, config: ServerConfig, shutdown: F) -> io::Result<()>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()> + Send,
{
    let config = Arc::new(config);
    let builder = Arc::new(connection_builder(&config));
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::debug!(%peer, limit = config.max_connections, "connection limit reached: closing");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = Conn { peer, config: config.clone(), builder: builder.clone(), _permit: permit };
                    connections.spawn(conn.run(stream, service.clone(), graceful.watcher()));
                }
                Err(e) if is_per_connection(&e) => tracing::debug!(error = %e, "accept failed"),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    let open = graceful.count();
    tracing::debug!(open, "shutting down: draining connections");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain_timeout = ?config.drain_timeout, "requests still in flight after the drain timeout: closing");
    }
    connections.shutdown().await;
    Ok(())
}

/// Accept errors that concern one incoming connection only, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::WouldBlock
    )
}

fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Request heads are timed by the connection's watchdog: hyper's timer would also cut
        // idle keep-alive connections at the header deadline, and does not cover the wait for
        // the first bytes (the HTTP/2 preface check comes first).
        .header_read_timeout(None)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_list_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_list_bytes).unwrap_or(u32::MAX));
    builder
}

/// One accepted connection.
struct Conn {
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Held for the connection's lifetime: one of [`ServerConfig::max_connections`].
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    async fn run<S>(self, stream: TcpStream, service: S, watcher: Watcher)
    where
        S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked { stream, activity: activity.clone() });
        let handler = Handler { service, peer: self.peer, config: self.config.clone(), activity: activity.clone() };
        let connection = watcher.watch(self.builder.serve_connection(io, handler));
        tokio::select! {
            result = connection => {
                if let Err(e) = result {
                    tracing::debug!(peer = %self.peer, error = %e, "connection failed");
                }
            }
            () = activity.expired(&self.config) => {
                tracing::debug!(peer = %self.peer, "connection timed out waiting for a request: closing");
            }
        }
    }
}

/// hyper's view of the service: collects the body under the limit and the request timeout.
struct Handler<S> {
    service: S,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    activity: Arc<Activity>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for Handler<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity, request.version());
        let (service, peer, config) = (self.service.clone(), self.peer, self.config.clone());
        Box::pin(async move {
            let response = handle(request, service, peer, &config).await;
            drop(in_flight);
            Ok(response.map(Full::new))
        })
    }
}

async fn handle<S>(
    request: http::Request<Incoming>,
    service: S,
    peer: SocketAddr,
    config: &ServerConfig,
) -> http::Response<Bytes>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = Infallible>,
{
    let (mut parts, body) = request.into_parts();
    let echo = Echo::of(&parts.headers, &config.limits);
    let refuse = |rsc, message: &str| error_response(rsc, &echo, message, MediaType::Json);
    if parts.headers.len() > config.max_headers {
        // HTTP/1.1 heads are refused by hyper already; this is for HTTP/2.
        return refuse(ResponseStatusCode::BAD_REQUEST, "too many header fields");
    }
    let limit = config.limits.max_body_bytes;
    let too_large = || refuse(ResponseStatusCode::BAD_REQUEST, &format!("body exceeds {limit} bytes"));
    let work = async {
        if body.size_hint().lower() > limit as u64 {
            return too_large();
        }
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return too_large(),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "request body not read");
                return refuse(ResponseStatusCode::BAD_REQUEST, "the request body could not be read");
            }
        };
        parts.extensions.insert(RemoteAddr(peer));
        match service.oneshot(http::Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    match tokio::time::timeout(config.request_timeout, work).await {
        Ok(response) => response,
        Err(_) => {
            tracing::debug!(%peer, "request timed out");
            refuse(ResponseStatusCode::REQUEST_TIMEOUT, "request not completed in time")
        }
    }
}

/// What a connection waits for, shared by its reads, its requests and its watchdog, which
/// closes it when the wait exceeds its timeout: a new connection's first request head
/// (`header_read_timeout`), the next request on an idle one (`idle_timeout`), or the rest of a
/// request head whose first bytes arrived on an idle HTTP/1.1 connection (`header_read_timeout`).
/// No deadline runs while a request is in flight: `request_timeout` bounds those.
struct Activity {
    state: Mutex<State>,
    /// Set while idle on HTTP/1.1 with nothing read yet, so that reads take the lock only then.
    awaiting_bytes: AtomicBool,
    /// Wakes the watchdog when its deadline moves earlier.
    changed: Notify,
}

struct State {
    in_flight: usize,
    /// HTTP/2 frames other than requests (pings, window updates) do not start a request head.
    h2: bool,
    waiting: Waiting,
}

#[derive(Clone, Copy)]
enum Waiting {
    /// For a request head, since the instant given.
    Head(Instant),
    /// Idle, since the instant given.
    Idle(Instant),
}

impl Activity {
    fn new() -> Self {
        let state = State { in_flight: 0, h2: false, waiting: Waiting::Head(Instant::now()) };
        Self { state: Mutex::new(state), awaiting_bytes: AtomicBool::new(false), changed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deadline(&self, config: &ServerConfig) -> Option<Instant> {
        let state = self.lock();
        match (state.in_flight, state.waiting) {
            (0, Waiting::Head(since)) => Some(since + config.header_read_timeout),
            (0, Waiting::Idle(since)) => Some(since + config.idle_timeout),
            _ => None,
        }
    }

    fn bytes_read(&self) {
        if self.awaiting_bytes.swap(false, Ordering::AcqRel) {
            let mut state = self.lock();
            if state.in_flight == 0 && matches!(state.waiting, Waiting::Idle(_)) {
                state.waiting = Waiting::Head(Instant::now());
                self.changed.notify_one();
            }
        }
    }

    /// Resolves when the connection has waited longer than its deadline.
    async fn expired(&self, config: &ServerConfig) {
        loop {
            // Created before the state is read, so that a change in between is not missed.
            let changed = self.changed.notified();
            match self.deadline(config) {
                None => changed.await,
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection; dropping it (answer produced or request cancelled)
/// makes the connection idle again once no other request is in flight.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>, version: Version) -> Self {
        let mut state = activity.lock();
        state.in_flight += 1;
        state.h2 |= version == Version::HTTP_2;
        activity.awaiting_bytes.store(false, Ordering::Release);
        drop(state);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.waiting = Waiting::Idle(Instant::now());
            self.0.awaiting_bytes.store(!state.h2, Ordering::Release);
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// The connection's socket, reporting reads to its [`Activity`].
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
