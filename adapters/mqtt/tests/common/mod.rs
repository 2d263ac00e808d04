//! The MQTT suite, run against the in-process broker (`embedded.rs`) and against mosquitto
//! (`mosquitto.rs`): the same checks through either broker.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_mqtt::rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use onem2m_sa_mqtt::{BoxError, ClientError, Endpoint, EndpointConfig, Limits};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// A broker under test: where it is and how to restart it.
pub trait TestBroker: Send + Sync {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Stops it (every connection drops) and starts it again on the same address.
    fn restart(&self) -> impl Future<Output = ()> + Send;
}

/// The CSE side: answers every request, counting executions by `rqi`; a request whose `to`
/// ends in `/slow` is answered after `slow` (a request in flight across a broker restart).
#[derive(Clone, Default)]
pub struct Cse {
    pub calls: Arc<Mutex<HashMap<String, usize>>>,
    pub total: Arc<AtomicUsize>,
}

impl Cse {
    pub fn calls(&self, rqi: &str) -> usize {
        self.calls.lock().unwrap().get(rqi).copied().unwrap_or(0)
    }

    pub fn service(&self) -> CseService {
        CseService(self.clone())
    }
}

/// The [`Cse`] as a Tower service.
#[derive(Clone)]
pub struct CseService(Cse);

impl tower::Service<RequestPrimitive> for CseService {
    type Response = ResponsePrimitive;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<ResponsePrimitive, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPrimitive) -> Self::Future {
        let me = self.0.clone();
        Box::pin(async move {
            *me.calls.lock().unwrap().entry(req.rqi.clone()).or_default() += 1;
            me.total.fetch_add(1, Ordering::SeqCst);
            let mut rsp = ResponsePrimitive::answering(&req, Rsc::OK);
            rsp.pc = Some(serde_json::json!({"m2m:cin": {"con": req.to}}));
            Ok(rsp)
        })
    }
}

pub fn config(me: &str) -> EndpointConfig {
    let mut c = EndpointConfig::new(me);
    c.request_timeout = Duration::from_secs(10);
    c
}

/// Starts an endpoint for `me` on `broker` and waits until it is subscribed.
pub async fn endpoint(broker: SocketAddr, me: &str, config: EndpointConfig) -> Endpoint {
    let options = config.options(&format!("C::{me}"), &broker.ip().to_string(), broker.port());
    let e = Endpoint::start(options, config);
    tokio::time::timeout(Duration::from_secs(20), e.ready()).await.expect("the endpoint connects");
    e
}

pub fn request(to: &str, rqi: &str) -> RequestPrimitive {
    let mut req = RequestPrimitive::new(Operation::Retrieve, to, Some("CAE1".into()), rqi);
    req.rvi = Some("3".into());
    req
}

/// A plain MQTT client (what a broker operator or an attacker runs): publishes raw and sees
/// every message on `filter`.
pub struct Raw {
    pub client: AsyncClient,
    pub seen: mpsc::UnboundedReceiver<(String, Bytes)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn raw(broker: SocketAddr, id: &str, filter: &str) -> Raw {
    let mut o = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    o.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut events) = AsyncClient::new(o, 64);
    let (tx, seen) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let task = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.clone()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), subscribed).await.expect("subscribed").unwrap();
    Raw { client, seen, task }
}

/// Requests and answers through the broker, many at once, with a queue far smaller than the
/// number in flight (the rumqttc deadlock: an event loop awaiting a publish would hang here).
pub async fn round_trips(broker: SocketAddr, tag: &str) {
    let cse = Cse::default();
    let mut small = config(&format!("id-{tag}"));
    small.queue = 4;
    let server = endpoint(broker, &format!("id-{tag}"), small.clone()).await;
    assert!(server.serve(cse.service()));
    let mut client_config = config(&format!("CAE-{tag}"));
    client_config.queue = 4;
    let ae = endpoint(broker, &format!("CAE-{tag}"), client_config).await;
    let client = ae.client(format!("id-{tag}"));
    let mut all = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        all.spawn(async move {
            let rqi = format!("r{i}");
            let rsp = client.oneshot(request(&format!("/id-in/cnt{i}"), &rqi)).await.unwrap();
            (rqi, i, rsp)
        });
    }
    while let Some(done) = all.join_next().await {
        let (rqi, i, rsp) = done.unwrap();
        assert_eq!((rsp.rqi.as_str(), rsp.rsc), (rqi.as_str(), Rsc::OK));
        assert_eq!(rsp.pc, Some(serde_json::json!({"m2m:cin": {"con": format!("/id-in/cnt{i}")}})));
    }
    assert_eq!(cse.total.load(Ordering::SeqCst), 200);
    let stats = server.stats();
    assert_eq!((stats.executed, stats.duplicates, stats.overloaded), (200, 0, 0), "{stats:?}");

    // Registration topics: reg_req from a Credential-ID, answered on reg_resp.
    let newcomer = endpoint(broker, &format!("cred:{tag}"), config(&format!("cred:{tag}"))).await;
    let rsp = newcomer.registration_client(format!("id-{tag}")).oneshot(request("/id-in", "reg1")).await.unwrap();
    assert_eq!((rsp.rqi.as_str(), rsp.rsc), ("reg1", Rsc::OK));
    server.shutdown().await;
}

/// What arrives malformed, oversize, for nobody or twice is dropped and counted, never
/// executed twice; the endpoint keeps working.
pub async fn hostile_input(broker: SocketAddr, tag: &str) {
    let cse = Cse::default();
    let me = format!("id-{tag}");
    let mut c = config(&me);
    c.limits = Limits { max_payload_bytes: 4096, ..Limits::default() };
    let server = endpoint(broker, &me, c).await;
    server.serve(cse.service());
    let mut raw = raw(broker, &format!("raw-{tag}"), &format!("/oneM2M/resp/attacker-{tag}/#")).await;
    let publish = |topic: String, payload: Vec<u8>| {
        let client = raw.client.clone();
        async move { client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap() }
    };
    let req = request("/id-in/cnt", "dup-1").to_json_vec().unwrap();
    let req_topic = format!("/oneM2M/req/attacker-{tag}/{me}/json");
    publish(format!("/oneM2M/req/attacker-{tag}/{me}/json/extra"), req.clone()).await; // not subscribed: never arrives
    publish(format!("/oneM2M/req/attacker-{tag}/{me}/yaml"), req.clone()).await; // malformed topic
    publish(format!("/oneM2M/req/attacker-{tag}/{me}/cbor"), req.clone()).await; // unsupported
    publish(req_topic.clone(), b"{\"op\":2,".to_vec()).await; // malformed payload
    publish(req_topic.clone(), b"[1,2,3]".to_vec()).await; // malformed payload
    publish(req_topic.clone(), vec![b' '; 5000]).await; // oversize
    let answer = ResponsePrimitive::new(Rsc::OK, "nobody").to_json_vec().unwrap();
    publish(format!("/oneM2M/resp/{me}/somebody/json"), answer).await; // unknown rqi
    // The same request twice (a QoS-1 redelivery after the answer): executed once, answered twice.
    let mut answers = Vec::new();
    while answers.len() < 2 {
        publish(req_topic.clone(), req.clone()).await;
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), raw.seen.recv()).await.unwrap().unwrap();
        assert_eq!(topic, format!("/oneM2M/resp/attacker-{tag}/{me}/json"));
        answers.push(ResponsePrimitive::from_json_slice(&payload).unwrap());
    }
    assert!(answers.iter().all(|a| a.rqi == "dup-1" && a.rsc == Rsc::OK), "{answers:?}");
    assert_eq!(cse.calls("dup-1"), 1);
    // A new request reusing the rqi (different content) is not a duplicate.
    publish(req_topic.clone(), request("/id-in/other", "dup-1").to_json_vec().unwrap()).await;
    let (_, payload) = tokio::time::timeout(Duration::from_secs(10), raw.seen.recv()).await.unwrap().unwrap();
    let third = ResponsePrimitive::from_json_slice(&payload).unwrap();
    assert_eq!(third.pc, Some(serde_json::json!({"m2m:cin": {"con": "/id-in/other"}})));
    assert_eq!(cse.calls("dup-1"), 2);
    let s = server.stats();
    assert_eq!(
        (
            s.malformed_topic,
            s.unsupported_format,
            s.malformed_payload,
            s.oversize,
            s.unknown_rqi,
            s.duplicates,
            s.executed
        ),
        (1, 1, 2, 1, 1, 1, 2),
        "{s:?}"
    );
    server.shutdown().await;
}

/// A request nobody answers fails with 4008 in time; one too large for the limit is refused
/// before it is published.
pub async fn timeouts_and_limits(broker: SocketAddr, tag: &str) {
    let mut c = config(&format!("CAE-{tag}"));
    c.request_timeout = Duration::from_millis(300);
    c.limits = Limits { max_payload_bytes: 1024, ..Limits::default() };
    let ae = endpoint(broker, &format!("CAE-{tag}"), c).await;
    let err = ae.client(format!("nobody-{tag}")).oneshot(request("/id-in", "lost")).await.unwrap_err();
    let err = err.downcast::<ClientError>().unwrap();
    assert!(matches!(*err, ClientError::Timeout) && err.rsc() == Rsc::REQUEST_TIMEOUT, "{err:?}");
    let mut big = request("/id-in", "big");
    big.pc = Some(serde_json::json!({"m2m:cin": {"con": "x".repeat(2000)}}));
    let err = ae.client(format!("nobody-{tag}")).oneshot(big).await.unwrap_err();
    assert!(matches!(*err.downcast::<ClientError>().unwrap(), ClientError::TooLarge { .. }));
    ae.shutdown().await;
}

/// The broker restarts while requests are in flight (and loses them: no session survives):
/// every request is still answered, executed exactly once — the client publishes what waits
/// again after reconnecting, the receiver recognises duplicates —; afterwards both ends work
/// again.
pub async fn broker_restart(broker: &impl TestBroker, tag: &str) {
    let addr = broker.addr();
    let cse = Cse::default();
    let me = format!("id-{tag}");
    let server = endpoint(addr, &me, config(&me)).await;
    server.serve(cse.service());
    let mut c = config(&format!("CAE-{tag}"));
    c.request_timeout = Duration::from_secs(20);
    let ae = endpoint(addr, &format!("CAE-{tag}"), c).await;
    let client = ae.client(me.clone());
    let mut all = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = client.clone();
        all.spawn(async move {
            let rqi = format!("w{i}");
            (rqi.clone(), client.oneshot(request("/id-in/cnt", &rqi)).await)
        });
        if i == 50 {
            broker.restart().await;
        }
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = all.join_next().await {
        let (rqi, out) = done.unwrap();
        assert!(cse.calls(&rqi) <= 1, "{rqi} executed {} times", cse.calls(&rqi));
        match out {
            Ok(rsp) => {
                assert_eq!((rsp.rqi.as_str(), rsp.rsc), (rqi.as_str(), Rsc::OK));
                assert_eq!(cse.calls(&rqi), 1);
                ok += 1;
            }
            Err(e) => {
                let e = e.downcast::<ClientError>().unwrap();
                assert_eq!(e.rsc(), Rsc::REQUEST_TIMEOUT, "{e:?}");
                failed += 1;
            }
        }
    }
    assert_eq!((ok, failed), (100, 0));
    tokio::time::timeout(Duration::from_secs(20), async {
        server.ready().await;
        ae.ready().await;
    })
    .await
    .expect("both ends reconnect and resubscribe");
    assert!(server.stats().connects >= 2 && ae.stats().connects >= 2);
    let rsp = client.oneshot(request("/id-in/cnt", "after")).await.unwrap();
    assert_eq!((rsp.rqi.as_str(), rsp.rsc, cse.calls("after")), ("after", Rsc::OK, 1));
    eprintln!("broker restart mid-workload ({tag}): {ok} answered, {failed} failed with 4008");
    server.shutdown().await;
}
