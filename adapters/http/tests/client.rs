//! `HttpClient` over real sockets on 127.0.0.1: failures and their RSCs, limits, pool reuse.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{EchoCse, SAFETY, start, start_http};
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{
    BoxError, ClientConfig, ClientError, HttpClient, Limits, PrimitiveService, RemoteAddr, ServerConfig,
};
use serde_json::json;
use tokio::net::TcpListener;
use tower::{ServiceExt, service_fn};

fn retrieve(rqi: &str) -> RequestPrimitive {
    RequestPrimitive::new(Operation::Retrieve, "cse-in", Some("CAE1".into()), rqi)
}

async fn fails(client: HttpClient, req: RequestPrimitive) -> ClientError {
    let err = tokio::time::timeout(SAFETY, client.oneshot(req)).await.expect("the client gives up").unwrap_err();
    *err.downcast::<ClientError>().expect("a ClientError")
}

#[tokio::test]
async fn connection_refused_is_5103() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = HttpClient::new(&format!("http://{addr}"), ClientConfig::default()).unwrap();
    let err = fails(client, retrieve("r1")).await;
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    assert_eq!(err.rsc(), Rsc::TARGET_NOT_REACHABLE);
    // The text relayed to originators names no address.
    assert!(!err.to_string().contains(&addr.port().to_string()));
}

#[tokio::test]
async fn no_answer_in_time_is_4008() {
    let stuck = service_fn(|_: RequestPrimitive| std::future::pending::<Result<ResponsePrimitive, BoxError>>());
    let server = start(stuck, ServerConfig::default()).await;
    let config = ClientConfig { request_timeout: Duration::from_millis(200), ..ClientConfig::default() };
    let err = fails(HttpClient::new(&server.base(), config).unwrap(), retrieve("t1")).await;
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert_eq!(err.rsc(), Rsc::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let seen = peers.clone();
    let cse = PrimitiveService::new(EchoCse::default(), Limits::default());
    let service = service_fn(move |req: http::Request<Bytes>| {
        seen.lock().unwrap().insert(req.extensions().get::<RemoteAddr>().expect("inserted by serve").0);
        cse.clone().oneshot(req)
    });
    let server = start_http(service, ServerConfig::default()).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    for i in 0..4 {
        let rsp = client.clone().oneshot(retrieve(&format!("p{i}"))).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK);
    }
    // A client for the same base made from this one shares the pool too.
    let same = client.with_base(&server.base()).unwrap();
    assert_eq!(same.oneshot(retrieve("p4")).await.unwrap().rsc, Rsc::OK);
    assert_eq!(peers.lock().unwrap().len(), 1);
    server.shutdown().await;
}

/// A burst of concurrent requests leaves every connection it opened in the pool: a second burst
/// as large opens none (issue 16: with 32 idle connections kept per host, 64 concurrent clients
/// made the sidecar's egress reconnect to the ingress on every burst, and throughput fell from
/// 16 to 64 connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reuses_every_pooled_connection() {
    const BURST: usize = 64;
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let seen = peers.clone();
    // Every request waits until the whole burst has arrived, so the client needs BURST
    // connections at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(BURST));
    let cse = PrimitiveService::new(EchoCse::default(), Limits::default());
    let service = service_fn(move |req: http::Request<Bytes>| {
        seen.lock().unwrap().insert(req.extensions().get::<RemoteAddr>().expect("inserted by serve").0);
        let (cse, barrier) = (cse.clone(), barrier.clone());
        async move {
            barrier.wait().await;
            cse.oneshot(req).await
        }
    });
    let server = start_http(service, ServerConfig::default()).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    for burst in 0..2 {
        let requests = (0..BURST).map(|i| client.clone().oneshot(retrieve(&format!("b{burst}-{i}"))));
        let answers = tokio::time::timeout(SAFETY, futures_join_all(requests)).await.expect("the burst is answered");
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|r| r.rsc == Rsc::OK)));
        // The connections go back to the pool from tasks of their own, once their answers are
        // read: let those run.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(peers.lock().unwrap().len(), BURST, "the second burst reconnected");
    server.shutdown().await;
}

/// Awaits every future (tokio has no `join_all`): each runs as its own task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("the request task"));
    }
    out
}

#[tokio::test]
async fn answers_are_read_within_the_limit() {
    let chatty = service_fn(|req: RequestPrimitive| async move {
        let mut rsp = ResponsePrimitive::answering(&req, Rsc::OK);
        rsp.pc = Some(json!({"m2m:cin": {"con": "x".repeat(1000)}}));
        Ok::<_, BoxError>(rsp)
    });
    let server = start(chatty, ServerConfig::default()).await;
    let config =
        ClientConfig { limits: Limits { max_body_bytes: 100, ..Limits::default() }, ..ClientConfig::default() };
    let err = fails(HttpClient::new(&server.base(), config).unwrap(), retrieve("b1")).await;
    assert!(matches!(err, ClientError::BodyTooLarge), "{err:?}");
    assert_eq!(err.rsc(), Rsc::INTERNAL_SERVER_ERROR);
    server.shutdown().await;
}

/// An HTTP answer without `X-M2M-RSC` carries no response primitive, whatever its status,
/// Content-Type or body (ACME answers `rt=5` with a bare `204`, `text/plain`): the client says
/// so with the status, so that a caller can tell a bare 2xx from a bare error.
#[tokio::test]
async fn answers_without_an_rsc_carry_no_response_primitive() {
    for (status, ct, body) in [
        (200, "text/html", &b"hello"[..]),
        (204, "text/plain; charset=utf-8", &b""[..]),
        (502, "text/plain", &b"bad gateway"[..]),
    ] {
        let plain = service_fn(move |_: http::Request<Bytes>| async move {
            let r = http::Response::builder().status(status).header("content-type", ct);
            Ok::<_, std::convert::Infallible>(r.body(Bytes::from_static(body)).unwrap())
        });
        let server = start_http(plain, ServerConfig::default()).await;
        let err = fails(HttpClient::new(&server.base(), ClientConfig::default()).unwrap(), retrieve("v1")).await;
        assert!(matches!(err, ClientError::NoResponsePrimitive { status: s } if s.as_u16() == status), "{err:?}");
        assert_eq!(err.rsc(), Rsc::INTERNAL_SERVER_ERROR);
        assert!(err.to_string().contains(&status.to_string()) && err.to_string().contains("X-M2M-RSC"), "{err}");
        server.shutdown().await;
    }
}

/// An answer with `X-M2M-RSC` that is not a valid response primitive is invalid.
#[tokio::test]
async fn answers_that_are_not_onem2m_are_invalid() {
    let plain = service_fn(|_: http::Request<Bytes>| async {
        let r = http::Response::builder().header("x-m2m-rsc", "2000").header("content-type", "text/html");
        Ok::<_, std::convert::Infallible>(r.body(Bytes::from_static(b"hello")).unwrap())
    });
    let server = start_http(plain, ServerConfig::default()).await;
    let err = fails(HttpClient::new(&server.base(), ClientConfig::default()).unwrap(), retrieve("v1")).await;
    assert!(matches!(err, ClientError::InvalidResponse(_)), "{err:?}");
    assert_eq!(err.rsc(), Rsc::INTERNAL_SERVER_ERROR);
    server.shutdown().await;
}

#[tokio::test]
async fn unmappable_primitives_are_not_sent() {
    let create_without_ty = RequestPrimitive::new(Operation::Create, "cse-in", Some("CAE1".into()), "u1");
    // The base is never contacted: nothing listens there.
    let client = HttpClient::new("http://127.0.0.1:9", ClientConfig::default()).unwrap();
    let err = fails(client, create_without_ty).await;
    assert!(matches!(err, ClientError::InvalidRequest(_)), "{err:?}");
    assert_eq!(err.rsc(), Rsc::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn extra_headers_are_sent_after_the_mapping() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    let cse = PrimitiveService::new(EchoCse::default(), Limits::default());
    let service = service_fn(move |req: http::Request<Bytes>| {
        rec.lock().unwrap().push(req.headers().clone());
        cse.clone().oneshot(req)
    });
    let server = start_http(service, ServerConfig::default()).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    let mut extra = http::HeaderMap::new();
    extra.append("x-sa-peer", http::HeaderValue::from_static("/id-ae-host"));
    extra.append("x-multi", http::HeaderValue::from_static("one"));
    extra.append("x-multi", http::HeaderValue::from_static("two"));
    // A mapped header named again is replaced.
    extra.append("x-m2m-ri", http::HeaderValue::from_static("replaced"));
    let rsp = client.call_with_headers(&retrieve("h1"), extra).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    assert_eq!(rsp.rqi, "replaced");
    let headers = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["x-sa-peer"], "/id-ae-host");
    assert_eq!(headers.get_all("x-multi").iter().collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(headers.get_all("x-m2m-ri").iter().count(), 1);
    assert_eq!(headers["x-m2m-origin"], "CAE1", "the mapping's headers stay");
    // The plain call sends none of them.
    client.clone().oneshot(retrieve("h2")).await.unwrap();
    assert!(seen.lock().unwrap()[1].get("x-sa-peer").is_none());
    server.shutdown().await;
}
