//! The sidecar's MQTT binding through a real broker (the in-process one of `onem2m_sa_mqtt`), and
//! binding bridging:
//!
//! * HTTP AE → AE-side egress (HTTP) → secured over **MQTT** → CSE-side `[ingress.mqtt]` → demo CSE;
//! * CoAP AE → AE-side egress (CoAP) → secured over **MQTT** → the same;
//!
//! what the broker sees (topic IDs, never the content), and a broker restart mid-workload.

use std::net::SocketAddr;
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_coap::{ClientConfig as CoapClientConfig, CoapClient};
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{ServedCse, serve_demo_cse};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_integration::mqtt_watcher::MqttWatcher;
use onem2m_sa_integration::request;
use onem2m_sa_mqtt::broker::{Broker, BrokerConfig};
use onem2m_sa_sidecar::config::{Config, Listener, MqttSettings};
use onem2m_sa_sidecar::demo::{self, CSE_BASE, CSE_ID, DemoPki, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use serde_json::json;
use tower::{Service, ServiceExt};

const AE_HOST: &str = "/id-ae-mqtt";

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn mqtt(broker: Option<String>) -> MqttSettings {
    MqttSettings { broker, client_id: None, username: None, password: None, ca_file: None, listen_broker: None }
}

/// The demo CSE behind a CSE-side sidecar whose only ingress is MQTT, and an AE host's sidecar
/// with HTTP and CoAP egresses and the CSE at an `mqtt://` address.
struct Pair {
    broker: Broker,
    cse: ServedCse,
    cse_sidecar: Sidecar,
    ae_sidecar: Sidecar,
}

impl Pair {
    async fn start() -> Self {
        let broker = Broker::start(any(), BrokerConfig::default()).await.unwrap();
        let address = format!("mqtt://{}", broker.local_addr());
        let pki = DemoPki::new();
        let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
        let mut cse_config = demo::cse_sidecar_config(&pki, &cse.base(), any());
        cse_config.egress = None;
        cse_config.peers.clear();
        let ingress = cse_config.ingress.as_mut().unwrap();
        ingress.http = None;
        ingress.mqtt = Some(mqtt(Some(address.clone())));
        let cse_sidecar = Sidecar::start(&cse_config, Listeners::default(), None).await.unwrap();

        let mut ae_config: Config = demo::ae_sidecar_config(&pki, any(), "http://127.0.0.1:9");
        ae_config.node = pki.node(AE_HOST, &[AE_HOST, "C*", "S*", ""]);
        ae_config.ingress = None;
        ae_config.egress.as_mut().unwrap().coap = Some(Listener { listen: any() });
        ae_config.peers[0].address = address;
        let listeners = Listeners { egress_http: Some(loopback().await.unwrap()), ..Listeners::default() };
        let ae_sidecar = Sidecar::start(&ae_config, listeners, None).await.unwrap();
        let ready = async {
            cse_sidecar.mqtt_ready().await;
            ae_sidecar.mqtt_ready().await;
        };
        tokio::time::timeout(Duration::from_secs(20), ready).await.expect("both sidecars reach the broker");
        Self { broker, cse, cse_sidecar, ae_sidecar }
    }

    fn http_ae(&self) -> HttpClient {
        let egress = self.ae_sidecar.addresses().egress_http.unwrap();
        HttpClient::new(&format!("http://{egress}"), ClientConfig::default()).unwrap()
    }

    async fn shutdown(self) {
        self.ae_sidecar.shutdown().await;
        self.cse_sidecar.shutdown().await;
        self.cse.shutdown().await;
    }
}

async fn expect<S>(svc: &mut S, req: RequestPrimitive, rsc: Rsc) -> ResponsePrimitive
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError>,
{
    let what = format!("{:?} {}", req.op, req.to);
    let rsp = svc.ready().await.unwrap().call(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(rsp.rsc, rsc, "{what}: {:?}", rsp.pc);
    rsp
}

/// Registers AE `rn` as `fr`, makes a container and a content instance holding `con`, reads it
/// back.
async fn create_and_read<S>(svc: &mut S, fr: &str, rn: &str, con: &str)
where
    S: Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError>,
{
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let ae = format!("{base}/{rn}");
    let mut req = request(Operation::Create, &base, fr, &format!("{rn}-1"));
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": rn, "api": "Nmqtt-app", "rr": false, "srv": ["3"]}}));
    expect(svc, req, Rsc::CREATED).await;
    let mut req = request(Operation::Create, &ae, fr, &format!("{rn}-2"));
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "reading-container"}}));
    expect(svc, req, Rsc::CREATED).await;
    let mut req = request(Operation::Create, &format!("{ae}/reading-container"), fr, &format!("{rn}-3"));
    req.ty = Some(4);
    req.pc = Some(json!({"m2m:cin": {"rn": "c1", "cnf": "text/plain:0", "con": con}}));
    expect(svc, req, Rsc::CREATED).await;
    let path = format!("{ae}/reading-container/c1");
    let rsp = expect(svc, request(Operation::Retrieve, &path, fr, &format!("{rn}-4")), Rsc::OK).await;
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"], con);
}

/// Both bindings in, MQTT between the sidecars: the CSE executes every request once, over one SA;
/// the broker — and a subscriber on `#` — see topic IDs, never a resource name, an originator
/// or a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_coap_bridge_over_mqtt_and_the_broker_sees_only_ciphertext() {
    let p = Pair::start().await;
    let mut tap = p.broker.tap();
    let watcher = MqttWatcher::start(p.broker.local_addr(), "watcher").await;

    let mut http_ae = p.http_ae();
    create_and_read(&mut http_ae, "Cmqtt-originator-a", "mqtt-ae-alpha", "secret-reading-4711").await;
    let coap_egress = p.ae_sidecar.coap_addresses().egress.unwrap();
    let mut coap_ae =
        CoapClient::connect(coap_egress, CoapClientConfig { seed: Some(3), ..CoapClientConfig::default() })
            .await
            .unwrap();
    create_and_read(&mut coap_ae, "Cmqtt-originator-b", "mqtt-ae-beta", "secret-reading-0815").await;
    assert_eq!(p.cse.cse.executed().len(), 8);
    let inbound = p.cse_sidecar.node().inbound().entries();
    assert_eq!(inbound.len(), 1, "one SA with the AE host");
    assert_eq!(inbound[0].peer().as_str(), AE_HOST);

    let mut seen = Vec::new();
    while let Ok(m) = tap.try_recv() {
        seen.push(m);
    }
    // 8 requests and 8 answers at least (the SA establishment adds its own).
    assert!(seen.len() >= 16, "{} messages", seen.len());
    let secrets = [
        "mqtt-ae-alpha",
        "mqtt-ae-beta",
        "reading-container",
        "secret-reading",
        "Cmqtt-originator",
        "Nmqtt-app",
        CSE_BASE,
        "m2m:cin",
        "m2m:ae",
        "m2m:cnt",
    ];
    let allowed_topics = ["id-ae-mqtt", &CSE_ID[1..]];
    for (topic, payload) in &seen {
        let levels: Vec<&str> = topic.split('/').collect();
        assert_eq!(levels.len(), 6, "{topic}");
        assert!(allowed_topics.contains(&levels[3]) && allowed_topics.contains(&levels[4]), "{topic}");
        let text = String::from_utf8_lossy(payload);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} readable on {topic}: {text}");
        }
    }
    // A subscriber on `#` (what anyone allowed to read the broker sees) saw the same messages.
    watcher.sync().await;
    let watched = watcher.seen();
    for (topic, payload) in &watched {
        let text = String::from_utf8_lossy(payload);
        assert!(secrets.iter().all(|s| !text.contains(s)), "readable on {topic}: {text}");
    }
    assert!(watched.len() >= 16, "{}", watched.len());
    p.shutdown().await;
}

/// The broker restarts while requests are in flight: every request is answered — created once
/// (2001, never a 4105 from a second execution) — or fails with a clear RSC, and the pair works
/// afterwards without re-establishing the SA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_workload_executes_each_request_at_most_once() {
    let p = Pair::start().await;
    let http_ae = p.http_ae();
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let mut svc = http_ae.clone();
    let mut req = request(Operation::Create, &base, "Cwork", "w-ae");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "work", "api": "Nwork", "rr": false, "srv": ["3"]}}));
    expect(&mut svc, req, Rsc::CREATED).await;
    let mut req = request(Operation::Create, &format!("{base}/work"), "Cwork", "w-cnt");
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "c", "mni": 1000}}));
    expect(&mut svc, req, Rsc::CREATED).await;

    let mut all = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = http_ae.clone();
        let to = format!("{base}/work/c");
        all.spawn(async move {
            let mut req = request(Operation::Create, &to, "Cwork", &format!("w{i}"));
            req.ty = Some(4);
            req.pc = Some(json!({"m2m:cin": {"rn": format!("v{i}"), "con": "x"}}));
            (i, client.oneshot(req).await)
        });
        if i == 30 {
            p.broker.restart().await.unwrap();
        }
    }
    let (mut created, mut failed) = (Vec::new(), 0);
    while let Some(done) = all.join_next().await {
        let (i, out) = done.unwrap();
        let rsp = out.unwrap_or_else(|e| panic!("w{i}: the egress answers, even on failure: {e}"));
        match rsp.rsc {
            Rsc::CREATED => created.push(i),
            Rsc::REQUEST_TIMEOUT | Rsc::TARGET_NOT_REACHABLE => failed += 1,
            other => panic!("w{i}: {other} {:?}", rsp.pc),
        }
    }
    eprintln!("broker restart through the sidecar pair: {} created, {failed} failed", created.len());
    // Every answered CREATE exists; the container holds no instance twice.
    let mut svc = http_ae.clone();
    for i in &created {
        let path = format!("{base}/work/c/v{i}");
        expect(&mut svc, request(Operation::Retrieve, &path, "Cwork", &format!("r{i}")), Rsc::OK).await;
    }
    // At the CSE: no request executed twice; every answered one executed once.
    let executed = p.cse.cse.executed();
    for i in 0..60 {
        let runs = executed.iter().filter(|(_, rqi)| *rqi == format!("w{i}")).count();
        assert!(runs <= 1, "w{i} executed {runs} times");
        assert!(runs == 1 || !created.contains(&i), "w{i} answered 2001 without executing");
    }
    // Works afterwards, on the same SA.
    let mut req = request(Operation::Create, &format!("{base}/work/c"), "Cwork", "after");
    req.ty = Some(4);
    req.pc = Some(json!({"m2m:cin": {"rn": "after", "con": "x"}}));
    expect(&mut svc, req, Rsc::CREATED).await;
    assert_eq!(p.cse_sidecar.node().inbound().len(), 1);
    p.shutdown().await;
}

/// A sidecar that shuts down closes its broker connections (its MQTT service holds the runtime,
/// which holds the connection: without an explicit stop they would outlive it and keep serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_broker_connections() {
    let p = Pair::start().await;
    assert_eq!(p.broker.connections(), 2);
    let Pair { broker: used, cse, cse_sidecar, ae_sidecar } = p;
    ae_sidecar.shutdown().await;
    cse_sidecar.shutdown().await;
    cse.shutdown().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while used.connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{} connections left", used.connections());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
