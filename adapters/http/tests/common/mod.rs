//! Servers on 127.0.0.1 port 0 for the socket tests, and a primitive service that records what
//! it was asked.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{BoxError, PrimitiveService, ServerConfig, serve};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Service;

/// Upper bound on any wait in these tests; outcomes are asserted, not timings.
pub const SAFETY: Duration = Duration::from_secs(5);

/// A server running in a task.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals shutdown (once).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        self.stop();
        tokio::time::timeout(SAFETY, self.task).await.expect("serve returns").unwrap().unwrap();
    }
}

/// Serves an HTTP-level service.
pub async fn start_http<S>(service: S, config: ServerConfig) -> Running
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, service, config, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop), task }
}

/// Serves a primitive service through [`PrimitiveService`].
pub async fn start<S>(inner: S, config: ServerConfig) -> Running
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let limits = config.limits;
    start_http(PrimitiveService::new(inner, limits), config).await
}

/// A toy CSE: answers every operation with its success code, echoing `pc` (CREATE, UPDATE) or
/// describing `to` (RETRIEVE), and counts the primitives it received.
#[derive(Clone, Default)]
pub struct EchoCse {
    pub calls: Arc<AtomicUsize>,
}

impl EchoCse {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn answer(req: &RequestPrimitive) -> ResponsePrimitive {
        let rsc = match req.op {
            Operation::Create => Rsc::CREATED,
            Operation::Retrieve | Operation::Notify => Rsc::OK,
            Operation::Update => Rsc::UPDATED,
            Operation::Delete => Rsc::DELETED,
        };
        let mut rsp = ResponsePrimitive::answering(req, rsc);
        rsp.pc = match req.op {
            Operation::Create | Operation::Update => req.pc.clone(),
            Operation::Retrieve => Some(json!({"m2m:cnt": {"ri": req.to, "cni": 2}})),
            Operation::Delete | Operation::Notify => None,
        };
        rsp
    }
}

impl Service<RequestPrimitive> for EchoCse {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = std::future::Ready<Result<ResponsePrimitive, BoxError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Self::answer(&req)))
    }
}

/// A plain hyper client (HTTP/1.1, pooled) for requests the primitive client would not send.
pub fn raw_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `request` and collects the answer.
pub async fn send(client: &Client<HttpConnector, Full<Bytes>>, request: http::Request<Bytes>) -> http::Response<Bytes> {
    let response = tokio::time::timeout(SAFETY, client.request(request.map(Full::new))).await.unwrap().unwrap();
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// The `m2m:dbg` text of an error answer with a JSON body.
pub fn debug_text(response: &http::Response<Bytes>) -> String {
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    body["m2m:dbg"].as_str().unwrap().to_owned()
}
