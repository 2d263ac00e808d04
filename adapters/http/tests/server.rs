//! `serve` and `PrimitiveService` over real sockets on 127.0.0.1: round trips, HTTP/2, CBOR,
//! limits, timeouts and graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{EchoCse, SAFETY, debug_text, raw_client, send, start, start_http};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{
    BoxError, ClientConfig, ClientError, HttpClient, Limits, MediaType, PrimitiveService, RemoteAddr, ServerConfig,
    http_to_response, primitive_to_request_as,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower::{ServiceExt, service_fn};

fn request(op: Operation, to: &str, rqi: &str) -> RequestPrimitive {
    let mut req = RequestPrimitive::new(op, to, Some("CAE1".into()), rqi);
    req.rvi = Some("3".into());
    req
}

/// Reads what the server sends until it closes the connection (or resets it).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SAFETY, stream.read_to_end(&mut out)).await.expect("server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response with a `Content-Length` body, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let complete = |out: &[u8]| {
        let text = String::from_utf8_lossy(out).to_ascii_lowercase();
        let end = text.find("\r\n\r\n")? + 4;
        let len: usize = text.split("content-length:").nth(1)?.split("\r\n").next()?.trim().parse().ok()?;
        (out.len() >= end + len).then_some(())
    };
    while complete(&out).is_none() {
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(SAFETY, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert_ne!(n, 0, "connection closed in a response");
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn exchange_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

#[tokio::test]
async fn crud_and_notify_round_trip() {
    let cse = EchoCse::default();
    let server = start(cse.clone(), ServerConfig::default()).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();

    let mut create = request(Operation::Create, "/id-in/cse-in", "c1");
    create.ty = Some(3);
    create.pc = Some(json!({"m2m:cnt": {"rn": "cnt1", "mni": 10}}));
    let rsp = client.clone().oneshot(create.clone()).await.unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str(), rsp.rvi.as_deref()), (Rsc::CREATED, "c1", Some("3")));
    assert_eq!(rsp.pc, create.pc);

    let rsp = client.clone().oneshot(request(Operation::Retrieve, "cse-in/cnt1", "r1")).await.unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (Rsc::OK, Some(json!({"m2m:cnt": {"ri": "cse-in/cnt1", "cni": 2}}))));

    let mut update = request(Operation::Update, "//sp.example/cse-in/cnt1", "u1");
    update.pc = Some(json!({"m2m:cnt": {"lbl": ["x"]}}));
    let rsp = client.clone().oneshot(update.clone()).await.unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (Rsc::UPDATED, update.pc));

    let rsp = client.clone().oneshot(request(Operation::Delete, "cse-in/cnt1", "d1")).await.unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (Rsc::DELETED, None));

    let mut notify = request(Operation::Notify, "CAE1/notify", "n1");
    notify.pc = Some(json!({"m2m:sgn": {"nev": {"rep": {"m2m:cin": {"con": "1"}}, "net": 3}, "sur": "/id-in/sub1"}}));
    let rsp = client.oneshot(notify).await.unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::OK, "n1"));

    assert_eq!(cse.calls(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_up_to_the_limit_pass_both_ways() {
    let server = start(EchoCse::default(), ServerConfig::default()).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    let mut update = request(Operation::Update, "cse-in/cnt1", "big");
    // Just under the default 1 MiB once serialized, far above hyper's 64 KiB head buffer.
    update.pc = Some(json!({"m2m:cin": {"con": "x".repeat(1_000_000)}}));
    let rsp = client.oneshot(update.clone()).await.unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (Rsc::UPDATED, update.pc));
    server.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let server = start(EchoCse::default(), ServerConfig::default()).await;
    let h2 = Client::builder(TokioExecutor::new()).http2_only(true).build_http::<Full<Bytes>>();
    let req = http::Request::get(format!("{}/cse-in/cnt1", server.base()))
        .header("X-M2M-RI", "h2-1")
        .header("X-M2M-Origin", "CAE1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = tokio::time::timeout(SAFETY, h2.request(req)).await.unwrap().unwrap();
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    let (parts, body) = rsp.into_parts();
    let rsp = http_to_response(&http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())).unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::OK, "h2-1"));
    server.shutdown().await;
}

#[tokio::test]
async fn cbor_request_is_answered_in_cbor() {
    let server = start(EchoCse::default(), ServerConfig::default()).await;
    let mut create = request(Operation::Create, "cse-in", "cb1");
    create.ty = Some(4);
    create.pc = Some(json!({"m2m:cin": {"con": "21.5", "cnf": "text/plain:0"}}));
    let http = primitive_to_request_as(&create, &server.base(), MediaType::Cbor).unwrap();
    let answer = send(&raw_client(), http).await;
    assert_eq!(answer.headers()["content-type"], "application/cbor");
    let rsp = http_to_response(&answer).unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (Rsc::CREATED, create.pc.clone()));

    // Accept wins over Content-Type.
    let mut http = primitive_to_request_as(&create, &server.base(), MediaType::Cbor).unwrap();
    http.headers_mut().insert("accept", "application/json".parse().unwrap());
    assert_eq!(send(&raw_client(), http).await.headers()["content-type"], "application/json");

    // And the client in CBOR mode gets the same answer.
    let config = ClientConfig { media: MediaType::Cbor, ..ClientConfig::default() };
    let rsp = HttpClient::new(&server.base(), config).unwrap().oneshot(create.clone()).await.unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (Rsc::CREATED, create.pc));
    server.shutdown().await;
}

#[tokio::test]
async fn body_over_limit_is_refused_before_the_service() {
    let cse = EchoCse::default();
    let limits = Limits { max_body_bytes: 64, ..Limits::default() };
    let server = start(cse.clone(), ServerConfig { limits, ..ServerConfig::default() }).await;
    // Announced by Content-Length.
    let big = Bytes::from(format!(r#"{{"m2m:cin":{{"con":"{}"}}}}"#, "x".repeat(100)));
    let req = http::Request::put(format!("{}/cse-in/cnt1", server.base()))
        .header("X-M2M-RI", "big-1")
        .header("Content-Type", "application/json")
        .body(big)
        .unwrap();
    let answer = send(&raw_client(), req).await;
    assert_eq!(
        (answer.status(), &answer.headers()["x-m2m-rsc"]),
        (http::StatusCode::BAD_REQUEST, &"4000".parse().unwrap())
    );
    assert_eq!(answer.headers()["x-m2m-ri"], "big-1");
    assert_eq!(debug_text(&answer), "body exceeds 64 bytes");
    // Chunked: found while reading.
    let chunked = format!(
        "PUT /cse-in/cnt1 HTTP/1.1\r\nHost: x\r\nX-M2M-RI: big-2\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n28\r\n{}\r\n28\r\n{}\r\n0\r\n\r\n",
        "y".repeat(40),
        "z".repeat(40)
    );
    let answer = exchange_raw(server.addr, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-m2m-rsc: 4000"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-m2m-ri: big-2"), "{answer}");
    assert_eq!(cse.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let cse = EchoCse::default();
    let config = ServerConfig { max_headers: 20, max_header_list_bytes: 16 * 1024, ..ServerConfig::default() };
    let server = start(cse.clone(), config).await;
    let many: String = (0..30).map(|i| format!("X-Extra-{i}: v\r\n")).collect();
    let answer =
        exchange_raw(server.addr, format!("GET /cse-in HTTP/1.1\r\nHost: x\r\nX-M2M-RI: h\r\n{many}\r\n").as_bytes())
            .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let large = "v".repeat(20 * 1024);
    let answer =
        exchange_raw(server.addr, format!("GET /cse-in HTTP/1.1\r\nHost: x\r\nX-Big: {large}\r\n\r\n").as_bytes())
            .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Under the head limit but over the header value limit: the binding's 4000.
    let value = "v".repeat(Limits::default().max_header_value_bytes + 1);
    let req = http::Request::get(format!("{}/cse-in", server.base())).header("X-M2M-RI", "hv").header("X-Long", value);
    let answer = send(&raw_client(), req.body(Bytes::new()).unwrap()).await;
    assert_eq!((answer.status().as_u16(), &answer.headers()["x-m2m-rsc"]), (400, &"4000".parse().unwrap()));
    assert_eq!(cse.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_their_rsc_and_the_request_identifier() {
    let cse = EchoCse::default();
    let server = start(cse.clone(), ServerConfig::default()).await;
    let client = raw_client();
    let base = server.base();
    let cases = [
        (http::Request::patch(format!("{base}/cse-in")).header("X-M2M-RI", "m1"), 405, "4005"),
        (http::Request::get(format!("{base}/cse-in?rcn=x")).header("X-M2M-RI", "m2"), 400, "4000"),
        (
            http::Request::post(format!("{base}/cse-in")).header("X-M2M-RI", "m3").header("Content-Type", "text/plain"),
            415,
            "4015",
        ),
        (
            http::Request::put(format!("{base}/cse-in"))
                .header("X-M2M-RI", "m4")
                .header("Content-Type", "application/json"),
            400,
            "4000",
        ),
    ];
    for (i, (req, status, rsc)) in cases.into_iter().enumerate() {
        let body = if i == 3 { Bytes::from_static(b"{\"a\":1,\"a\":2}") } else { Bytes::from_static(b"x") };
        let answer = send(&client, req.header("X-M2M-RVI", "3").body(body).unwrap()).await;
        assert_eq!(answer.status().as_u16(), status, "case {i}");
        assert_eq!(answer.headers()["x-m2m-rsc"], rsc, "case {i}");
        assert_eq!(answer.headers()["x-m2m-ri"], format!("m{}", i + 1).as_str(), "case {i}");
        assert_eq!(answer.headers()["x-m2m-rvi"], "3", "case {i}");
        assert!(!debug_text(&answer).is_empty());
    }
    // Without X-M2M-RI there is nothing to echo.
    let answer = send(&client, http::Request::get(format!("{base}/cse-in")).body(Bytes::new()).unwrap()).await;
    assert_eq!(answer.headers()["x-m2m-rsc"], "4000");
    assert!(answer.headers().get("x-m2m-ri").is_none());
    assert_eq!(debug_text(&answer), "mandatory header `X-M2M-RI` is missing");
    assert_eq!(cse.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn inner_errors_become_answers() {
    let inner = service_fn(|req: RequestPrimitive| async move {
        match req.to.as_str() {
            "timeout" => Err::<ResponsePrimitive, BoxError>(ClientError::Timeout.into()),
            _ => Err("database password is hunter2".into()),
        }
    });
    let server = start(inner, ServerConfig::default()).await;
    let client = raw_client();
    let get = |to: &str| {
        http::Request::get(format!("{}/{to}", server.base())).header("X-M2M-RI", to).body(Bytes::new()).unwrap()
    };
    let answer = send(&client, get("timeout")).await;
    assert_eq!((answer.status().as_u16(), &answer.headers()["x-m2m-rsc"]), (504, &"4008".parse().unwrap()));
    assert_eq!(answer.headers()["x-m2m-ri"], "timeout");
    let answer = send(&client, get("other")).await;
    assert_eq!((answer.status().as_u16(), &answer.headers()["x-m2m-rsc"]), (500, &"5000".parse().unwrap()));
    assert_eq!(debug_text(&answer), "internal error");
    server.shutdown().await;
}

#[tokio::test]
async fn header_read_timeout_closes_silent_and_slow_connections() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let server = start(EchoCse::default(), config).await;
    // Silent from the start.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    // A head that never completes.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /cse-in HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut slow).await, "");
    // The same on a keep-alive connection after a first request.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /cse-in HTTP/1.1\r\nHost: x\r\nX-M2M-RI: k\r\n\r\n").await.unwrap();
    assert!(read_response(&mut kept).await.starts_with("HTTP/1.1 200"));
    kept.write_all(b"GET /cse-in HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut kept).await, "");
    server.shutdown().await;
}

/// hyper's own header timer would also cut idle keep-alive connections; the server's does not.
#[tokio::test]
async fn keep_alive_connection_outlives_the_header_read_timeout() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let server = start(EchoCse::default(), config).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    for rqi in ["k1", "k2"] {
        let req =
            http::Request::get("/cse-in").header("Host", "x").header("X-M2M-RI", rqi).body(Full::new(Bytes::new()));
        let rsp = sender.send_request(req.unwrap()).await.unwrap();
        assert_eq!(rsp.headers()["x-m2m-rsc"], "2000");
        rsp.into_body().collect().await.unwrap();
        // Idle for longer than the header read timeout (the subject of this test).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!conn.is_finished());
    server.shutdown().await;
}

#[tokio::test]
async fn idle_timeout_closes_a_keep_alive_connection() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = start(EchoCse::default(), config).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("/cse-in").header("Host", "x").header("X-M2M-RI", "i1").body(Full::new(Bytes::new()));
    let rsp = sender.send_request(req.unwrap()).await.unwrap();
    assert_eq!(rsp.headers()["x-m2m-rsc"], "2000");
    rsp.into_body().collect().await.unwrap();
    // The server closes the connection: the client's connection task ends.
    tokio::time::timeout(SAFETY, conn).await.expect("server closes the idle connection").unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn request_timeout_answers_4008() {
    let config = ServerConfig { request_timeout: Duration::from_millis(200), ..ServerConfig::default() };
    let stuck = service_fn(|_: RequestPrimitive| std::future::pending::<Result<ResponsePrimitive, BoxError>>());
    let server = start(stuck, config).await;
    // A service that never answers.
    let req = http::Request::get(format!("{}/cse-in", server.base())).header("X-M2M-RI", "t1").body(Bytes::new());
    let answer = send(&raw_client(), req.unwrap()).await;
    assert_eq!((answer.status().as_u16(), &answer.headers()["x-m2m-rsc"]), (504, &"4008".parse().unwrap()));
    assert_eq!(answer.headers()["x-m2m-ri"], "t1");
    // A body that never completes.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "PUT /cse-in HTTP/1.1\r\nHost: x\r\nX-M2M-RI: t2\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-m2m-rsc: 4008"), "{answer}");
    server.shutdown().await;
}

/// A service whose RETRIEVE of `slow` waits for `release`, announcing itself on `started`.
fn slow_service(
    started: Arc<Notify>,
    release: Arc<Notify>,
) -> PrimitiveService<
    impl tower::Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static,
> {
    let inner = service_fn(move |req: RequestPrimitive| {
        let (started, release) = (started.clone(), release.clone());
        async move {
            if req.to == "slow" {
                started.notify_one();
                release.notified().await;
            }
            Ok::<_, BoxError>(EchoCse::answer(&req))
        }
    });
    PrimitiveService::new(inner, Limits::default())
}

#[tokio::test]
async fn graceful_shutdown_drains_a_request_in_flight() {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let mut server = start_http(slow_service(started.clone(), release.clone()), ServerConfig::default()).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    let in_flight = tokio::spawn(client.oneshot(request(Operation::Retrieve, "slow", "s1")));
    tokio::time::timeout(SAFETY, started.notified()).await.expect("the slow request reaches the service");

    server.stop();
    // New connections are not served any more.
    let late = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    let refused = tokio::time::timeout(SAFETY, late.oneshot(request(Operation::Retrieve, "x", "s2"))).await.unwrap();
    let err = refused.expect_err("no new requests after shutdown");
    assert_eq!(err.downcast_ref::<ClientError>().expect("a ClientError").rsc(), Rsc::TARGET_NOT_REACHABLE);
    assert!(!server.task.is_finished());

    release.notify_one();
    let rsp = tokio::time::timeout(SAFETY, in_flight).await.unwrap().unwrap().unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::OK, "s1"));
    tokio::time::timeout(SAFETY, server.task).await.expect("serve returns once drained").unwrap().unwrap();
}

#[tokio::test]
async fn drain_timeout_bounds_the_shutdown() {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let config = ServerConfig { drain_timeout: Duration::from_millis(200), ..ServerConfig::default() };
    let mut server = start_http(slow_service(started.clone(), release), config).await;
    let client = HttpClient::new(&server.base(), ClientConfig::default()).unwrap();
    let in_flight = tokio::spawn(client.oneshot(request(Operation::Retrieve, "slow", "d1")));
    tokio::time::timeout(SAFETY, started.notified()).await.unwrap();
    server.stop();
    tokio::time::timeout(SAFETY, server.task).await.expect("serve returns after the drain timeout").unwrap().unwrap();
    let err = tokio::time::timeout(SAFETY, in_flight).await.unwrap().unwrap().unwrap_err();
    assert!(err.downcast_ref::<ClientError>().is_some(), "{err}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let server = start(EchoCse::default(), ServerConfig { max_connections: 1, ..ServerConfig::default() }).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/cse-in").header("Host", "x").header("X-M2M-RI", "l1").body(Full::new(Bytes::new()));
    assert_eq!(sender.send_request(req.unwrap()).await.unwrap().headers()["x-m2m-rsc"], "2000");
    // The first connection is open and holds the only slot.
    let answer = exchange_raw(server.addr, b"GET /cse-in HTTP/1.1\r\nHost: x\r\nX-M2M-RI: l2\r\n\r\n").await;
    assert_eq!(answer, "");
    server.shutdown().await;
}

#[tokio::test]
async fn requests_carry_the_remote_address() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let service = service_fn(move |req: http::Request<Bytes>| {
        let remote = req.extensions().get::<RemoteAddr>().copied();
        assert!(remote.is_some_and(|RemoteAddr(a)| a.ip().is_loopback()));
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new())) }
    });
    let server = start_http(service, ServerConfig::default()).await;
    let answer =
        send(&raw_client(), http::Request::get(format!("{}/x", server.base())).body(Bytes::new()).unwrap()).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}
