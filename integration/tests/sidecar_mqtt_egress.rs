//! An AE that speaks only MQTT, through its sidecar's MQTT egress (`[egress.mqtt] listen_broker`):
//!
//! MQTT-only AE → the AE host's local broker → AE-side sidecar → secured over **HTTP** (or over
//! **MQTT**, through another broker) → CSE-side sidecar → demo CSE;
//!
//! the answers on the `resp` topics, no plaintext on the secured hop, a redelivered PUBLISH
//! executed once, an oversize request refused with 4000; and the other way, a CSE's
//! notification through both sidecars to the AE on the local broker (an `mqtt://` upstream).

use std::net::SocketAddr;
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{ServedCse, serve_demo_cse};
use onem2m_sa_http::BoxError;
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_integration::mqtt_watcher::MqttWatcher;
use onem2m_sa_integration::request;
use onem2m_sa_mqtt::broker::{Broker, BrokerConfig};
use onem2m_sa_mqtt::rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use onem2m_sa_mqtt::{Endpoint, EndpointConfig, MqttClient, current_originator};
use onem2m_sa_sidecar::config::{Config, MqttSettings};
use onem2m_sa_sidecar::demo::{self, CSE_BASE, CSE_ID, DemoPki, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use onem2m_sa_sidecar::tap::Tap;
use serde_json::json;
use tower::{Service, ServiceExt};

const AE_HOST: &str = "/id-ae-mqtt-only";
/// The plaintext limit of the AE-side sidecar (`http.max_body_bytes`).
const PLAINTEXT_LIMIT: usize = 16 * 1024;

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn mqtt(broker: Option<String>, listen_broker: Option<String>) -> MqttSettings {
    MqttSettings { broker, client_id: None, username: None, password: None, ca_file: None, listen_broker }
}

/// How the two sidecars talk.
#[derive(Clone, Copy, PartialEq)]
enum Hop {
    Http,
    Mqtt,
}

struct Setup {
    /// The AE host's local broker (plaintext).
    local: Broker,
    /// The broker between the sidecars (MQTT hop).
    shared: Option<Broker>,
    /// A relay on the HTTP hop.
    tap: Option<Tap>,
    cse: ServedCse,
    cse_sidecar: Sidecar,
    ae_sidecar: Sidecar,
    ae_config: Config,
}

impl Setup {
    async fn start(hop: Hop) -> Self {
        let local = Broker::start(any(), BrokerConfig::default()).await.unwrap();
        let pki = DemoPki::new();
        let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
        // Over HTTP, the CSE's notifications go back to the AE host's ingress too.
        let ae_ingress = loopback().await.unwrap();
        let mut cse_config = demo::cse_sidecar_config(&pki, &cse.base(), ae_ingress.local_addr().unwrap());
        cse_config.peers[0].id = NodeId::new(AE_HOST).unwrap();
        if hop == Hop::Mqtt {
            cse_config.egress = None;
            cse_config.peers.clear();
        }
        let (shared, cse_listeners) = match hop {
            Hop::Http => (
                None,
                Listeners {
                    ingress_http: Some(loopback().await.unwrap()),
                    egress_http: Some(loopback().await.unwrap()),
                    ..Listeners::default()
                },
            ),
            Hop::Mqtt => {
                let shared = Broker::start(any(), BrokerConfig::default()).await.unwrap();
                let ingress = cse_config.ingress.as_mut().unwrap();
                ingress.http = None;
                ingress.mqtt = Some(mqtt(Some(format!("mqtt://{}", shared.local_addr())), None));
                (Some(shared), Listeners::default())
            }
        };
        let cse_sidecar = Sidecar::start(&cse_config, cse_listeners, None).await.unwrap();
        let tap = match hop {
            Hop::Http => {
                Some(Tap::start(loopback().await.unwrap(), cse_sidecar.addresses().ingress_http.unwrap()).unwrap())
            }
            Hop::Mqtt => None,
        };
        let peer_address = match (&tap, &shared) {
            (Some(tap), _) => format!("http://{}", tap.addr()),
            (None, Some(shared)) => format!("mqtt://{}", shared.local_addr()),
            (None, None) => unreachable!(),
        };
        let local_address = format!("mqtt://{}", local.local_addr());
        let mut ae_config: Config = demo::ae_sidecar_config(&pki, any(), &local_address);
        ae_config.node = pki.node(AE_HOST, &[AE_HOST, "C*", "S*", ""]);
        if hop == Hop::Mqtt {
            ae_config.ingress = None;
        }
        ae_config.http.max_body_bytes = PLAINTEXT_LIMIT;
        let egress = ae_config.egress.as_mut().unwrap();
        egress.http = None;
        // No default peer: a CSE-relative target reaches the CSE the topic names.
        egress.default_peer = None;
        egress.mqtt = Some(mqtt(None, Some(local_address)));
        ae_config.peers[0].address = peer_address;
        let ae_listeners = match hop {
            Hop::Http => Listeners { ingress_http: Some(ae_ingress), ..Listeners::default() },
            Hop::Mqtt => Listeners::default(),
        };
        let ae_sidecar = Sidecar::start(&ae_config, ae_listeners, None).await.unwrap();
        let ready = async {
            cse_sidecar.mqtt_ready().await;
            ae_sidecar.mqtt_ready().await;
        };
        tokio::time::timeout(Duration::from_secs(20), ready).await.expect("the sidecars reach their brokers");
        Self { local, shared, tap, cse, cse_sidecar, ae_sidecar, ae_config }
    }

    /// An MQTT-only AE (topic ID `ae`) on the local broker, and its client to the CSE.
    async fn ae(&self, ae: &str) -> (Endpoint, MqttClient) {
        let addr = self.local.local_addr();
        let mut config = EndpointConfig::new(ae);
        config.request_timeout = Duration::from_secs(20);
        let options = config.options(&format!("A::{ae}"), &addr.ip().to_string(), addr.port());
        let endpoint = Endpoint::start(options, config);
        tokio::time::timeout(Duration::from_secs(20), endpoint.ready()).await.expect("the AE reaches its broker");
        let client = endpoint.client(&CSE_ID[1..]);
        (endpoint, client)
    }

    /// The AE-side sidecar's endpoint on the local broker.
    fn local_endpoint(&self) -> Endpoint {
        let address = format!("mqtt://{}", self.local.local_addr());
        self.ae_sidecar.mqtt_endpoints().into_iter().find(|(a, _)| *a == address).expect("the local broker's").1
    }

    async fn shutdown(self) {
        self.ae_sidecar.shutdown().await;
        self.cse_sidecar.shutdown().await;
        self.cse.shutdown().await;
        drop((self.shared, self.tap, self.local));
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

const SECRETS: [&str; 6] = ["mqtt-only-ae", "only-container", "secret-reading", "Cmqtt-only", "m2m:cin", "Nonly-app"];

/// Create, retrieve (SP-relative and CSE-relative targets), update and delete through the
/// sidecars; the CSE executes each once.
async fn crud(client: &mut MqttClient) {
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let fr = "Cmqtt-only";
    let mut req = request(Operation::Create, &base, fr, "o-1");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "mqtt-only-ae", "api": "Nonly-app", "rr": false, "srv": ["3"]}}));
    expect(client, req, Rsc::CREATED).await;
    let mut req = request(Operation::Create, &format!("{base}/mqtt-only-ae"), fr, "o-2");
    req.ty = Some(3);
    req.pc = Some(json!({"m2m:cnt": {"rn": "only-container"}}));
    expect(client, req, Rsc::CREATED).await;
    let cnt = format!("{base}/mqtt-only-ae/only-container");
    let mut req = request(Operation::Create, &cnt, fr, "o-3");
    req.ty = Some(4);
    req.pc = Some(json!({"m2m:cin": {"rn": "c1", "con": "secret-reading-1"}}));
    expect(client, req, Rsc::CREATED).await;
    let rsp = expect(client, request(Operation::Retrieve, &format!("{cnt}/c1"), fr, "o-4"), Rsc::OK).await;
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"], "secret-reading-1");
    // TS-0010's AE addresses its CSE CSE-relatively: the topic names the CSE.
    let relative = format!("{CSE_BASE}/mqtt-only-ae/only-container/c1");
    let rsp = expect(client, request(Operation::Retrieve, &relative, fr, "o-5"), Rsc::OK).await;
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"], "secret-reading-1");
    let mut req = request(Operation::Update, &cnt, fr, "o-6");
    req.pc = Some(json!({"m2m:cnt": {"lbl": ["secret-reading-label"]}}));
    expect(client, req, Rsc::UPDATED).await;
    expect(client, request(Operation::Delete, &format!("{cnt}/c1"), fr, "o-7"), Rsc::DELETED).await;
}

/// A raw MQTT client on the local broker subscribed to the answers to `ae`.
async fn raw(broker: SocketAddr, ae: &str) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut options = MqttOptions::new(format!("raw-{ae}"), broker.ip().to_string(), broker.port());
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(options, 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (sub_tx, sub_rx) = tokio::sync::oneshot::channel();
    let mut sub_tx = Some(sub_tx);
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = sub_tx.take() {
                        let _ = s.send(());
                    }
                }
                _ => {}
            }
        }
    });
    client.subscribe(format!("/oneM2M/resp/{ae}/#"), QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), sub_rx).await.unwrap().unwrap();
    (client, rx)
}

async fn answer(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>, topic: &str) -> ResponsePrimitive {
    let (t, payload) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("an answer").unwrap();
    assert_eq!(t, topic);
    ResponsePrimitive::from_json_slice(&payload).unwrap()
}

/// A request published twice (a QoS-1 redelivery) is executed once and answered twice; an
/// oversize one is answered 4000 and never executed.
async fn duplicates_and_oversize(s: &Setup) {
    let ae = "Craw-ae";
    let (client, mut rx) = raw(s.local.local_addr(), ae).await;
    let topic = format!("/oneM2M/req/{ae}/{}/json", &CSE_ID[1..]);
    let answer_topic = format!("/oneM2M/resp/{ae}/{}/json", &CSE_ID[1..]);
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let mut req = request(Operation::Create, &base, ae, "dup-1");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "raw-ae", "api": "Nraw", "rr": false, "srv": ["3"]}}));
    let payload = req.to_json_vec().unwrap();
    for _ in 0..2 {
        client.publish(&topic, QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
        let rsp = answer(&mut rx, &answer_topic).await;
        assert_eq!((rsp.rqi.as_str(), rsp.rsc), ("dup-1", Rsc::CREATED), "{:?}", rsp.pc);
    }
    let runs = s.cse.cse.executed().iter().filter(|(_, rqi)| rqi == "dup-1").count();
    assert_eq!(runs, 1, "the redelivered request was executed {runs} times");

    let executed = s.cse.cse.executed().len();
    let mut big = request(Operation::Create, &format!("{base}/raw-ae"), ae, "big-1");
    big.ty = Some(3);
    big.pc = Some(json!({"m2m:cnt": {"rn": "x".repeat(PLAINTEXT_LIMIT)}}));
    client.publish(&topic, QoS::AtLeastOnce, false, big.to_json_vec().unwrap()).await.unwrap();
    let rsp = answer(&mut rx, &answer_topic).await;
    assert_eq!((rsp.rqi.as_str(), rsp.rsc), ("big-1", Rsc::BAD_REQUEST), "{:?}", rsp.pc);
    assert_eq!(s.cse.cse.executed().len(), executed, "the oversize request was not executed");
    let stats = s.local_endpoint().stats();
    assert_eq!((stats.duplicates, stats.oversize), (1, 1), "{stats:?}");
}

/// The CSE notifies the AE: CSE-side egress (HTTP) → sealed → AE-side ingress → published on
/// `/oneM2M/req/id-in/<AE-ID>/json` at the local broker, the AE's answer back the same way.
async fn notification(s: &Setup, ae: &Endpoint) {
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, RequestPrimitive)>>>;
    let seen: Seen = Default::default();
    let record = seen.clone();
    ae.serve(tower::service_fn(move |req: RequestPrimitive| {
        let record = record.clone();
        async move {
            let rsp = ResponsePrimitive::new(Rsc::OK, &req.rqi);
            record.lock().unwrap().push((current_originator(), req));
            Ok::<_, BoxError>(rsp)
        }
    }));
    let cse_egress = s.cse_sidecar.addresses().egress_http.unwrap();
    let cse = HttpClient::new(&format!("http://{cse_egress}"), ClientConfig::default()).unwrap();
    let mut req = request(Operation::Notify, &format!("{AE_HOST}/{}", ae.me()), CSE_ID, "n-1");
    req.pc = Some(
        json!({"m2m:sgn": {"sur": "/id-in/sub-1", "nev": {"net": 3, "rep": {"m2m:cin": {"con": "secret-reading-3"}}}}}),
    );
    let rsp = cse.oneshot(req).await.unwrap();
    assert_eq!((rsp.rqi.as_str(), rsp.rsc), ("n-1", Rsc::OK), "{:?}", rsp.pc);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "delivered once");
    let (originator, got) = &seen[0];
    assert_eq!(originator.as_deref(), Some(&CSE_ID[1..]), "published as the CSE (TS-0010)");
    assert_eq!(got.pc.as_ref().unwrap()["m2m:sgn"]["nev"]["rep"]["m2m:cin"]["con"], "secret-reading-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_only_ae_reaches_a_cse_behind_an_http_sidecar() {
    let s = Setup::start(Hop::Http).await;
    let (endpoint, mut client) = s.ae("Cmqtt-only").await;
    crud(&mut client).await;
    assert_eq!(s.cse.cse.executed().len(), 7);
    assert_eq!(s.cse_sidecar.node().inbound().entries()[0].peer().as_str(), AE_HOST);
    // The secured hop carries no plaintext.
    let tap = s.tap.as_ref().unwrap();
    tap.arm();
    let mut req =
        request(Operation::Create, &format!("{CSE_ID}/{CSE_BASE}/mqtt-only-ae/only-container"), "Cmqtt-only", "o-8");
    req.ty = Some(4);
    req.pc = Some(json!({"m2m:cin": {"rn": "c2", "con": "secret-reading-2"}}));
    expect(&mut client, req, Rsc::CREATED).await;
    let sample = String::from_utf8_lossy(&tap.sample().expect("a request crossed the HTTP hop")).into_owned();
    for secret in SECRETS {
        assert!(!sample.contains(secret), "{secret} readable on the HTTP hop: {sample}");
    }
    duplicates_and_oversize(&s).await;
    notification(&s, &endpoint).await;
    // The local broker as the upstream only changes with a restart (its subscriptions are made
    // at start).
    let mut changed = s.ae_config.clone();
    changed.ingress.as_mut().unwrap().upstream = "http://127.0.0.1:9".into();
    let refused = s.ae_sidecar.runtime().reload(&changed).unwrap_err();
    assert!(refused.contains("mqtt:// ingress.upstream"), "{refused}");
    // Registration topics: an AE without an AE-ID yet registers on reg_req (its topic ID a
    // Credential-ID) and gets the answer on reg_resp.
    let mut registration = endpoint.registration_client(&CSE_ID[1..]);
    let mut req = request(Operation::Create, &format!("{CSE_ID}/{CSE_BASE}"), "Cnew-ae", "reg-1");
    req.ty = Some(2);
    req.pc = Some(json!({"m2m:ae": {"rn": "new-ae", "api": "Nnew", "rr": false, "srv": ["3"]}}));
    expect(&mut registration, req, Rsc::CREATED).await;
    assert_eq!(s.cse.cse.executed().iter().filter(|(_, rqi)| rqi == "reg-1").count(), 1);
    endpoint.shutdown().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_only_ae_reaches_a_cse_behind_an_mqtt_sidecar_and_the_shared_broker_sees_only_ciphertext() {
    let s = Setup::start(Hop::Mqtt).await;
    let shared = s.shared.as_ref().unwrap();
    let watcher = MqttWatcher::start(shared.local_addr(), "watcher").await;
    let local_watcher = MqttWatcher::start(s.local.local_addr(), "local-watcher").await;
    let (endpoint, mut client) = s.ae("Cmqtt-only").await;
    crud(&mut client).await;
    assert_eq!(s.cse.cse.executed().len(), 7);
    watcher.sync().await;
    let seen = watcher.seen();
    assert!(seen.len() >= 14, "{} messages on the shared broker", seen.len());
    for (topic, payload) in &seen {
        let text = String::from_utf8_lossy(payload);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} readable on {topic}: {text}");
        }
    }
    // The local broker, by contrast, carried the AE's plaintext (what the test would miss if
    // the secrets were never sent).
    local_watcher.sync().await;
    assert!(local_watcher.seen().iter().any(|(_, p)| String::from_utf8_lossy(p).contains("secret-reading-1")));
    duplicates_and_oversize(&s).await;
    endpoint.shutdown().await;
    s.shutdown().await;
}
