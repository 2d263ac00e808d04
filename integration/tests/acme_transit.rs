//! End to end through an unmodified transit CSE (issue 13): an ACME IN-CSE behind its sidecar,
//! an unmodified ACME MN-CSE registered to it, and an AE host whose sidecar is registered at
//! the MN as the AE `Cae-host` — the setup of docs/deploy.md "Through a registrar MN-CSE", with
//! the configs committed under `integration/acme/` (`transit-*.ini`, `transit-sidecar-*.toml`).
//!
//! ```text
//! AE ─► AE host's egress ─► tap ─► ACME MN-CSE ─► tap ─► IN host's ingress ─► ACME IN-CSE
//! listener ◄─ AE host's ingress ◄─ MN-CSE ◄─ tap ◄─ IN host's egress ◄─ (notifications)
//! ```
//!
//! Both sidecars name each other by routable oneM2M IDs (`/id-in/cse-in`, `/id-mn/Cae-host`),
//! reach each other at the MN's address and use the notification carriage (`m2m:sgn`), which the
//! MN forwards. Checked: establishment, CRUD on the IN's resources, notifications from the IN to
//! the AE host over the SA, Update SA and Remove SA — and that no byte of an inner primitive's
//! content crosses the MN in clear (its debug log, which records every body it handles, and a
//! tap on all its traffic). Then the MN as the attacker: its answers forged (unsealed 4112) or
//! dropped, an answer swapped, a body corrupted.
//!
//! ACME must be installed (see `onem2m_sa_integration::acme`); without it these tests fail and
//! say how to install it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::flows::{UpdateOperation, UpdateResult};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_integration::Isolated;
use onem2m_sa_integration::acme::{
    ACME_ADMIN, Acme, TRANSIT_AE_HOST_AEI, TRANSIT_AE_HOST_NODE, TRANSIT_IN_INI, TRANSIT_MN_INI, TransitPorts,
    transit_configs,
};
use onem2m_sa_integration::relay::{Fault, Relay};
use onem2m_sa_sidecar::config::Config;
use onem2m_sa_tower::Carriage;
use serde_json::{Value, json};
use tower::ServiceExt;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The AEs' notification listener: answers every request 2000 and records its body.
#[derive(Clone)]
struct Listener {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    fn start() -> Self {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = bodies.clone();
        std::thread::spawn(move || {
            for stream in socket.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve_one(stream, &log));
            }
        });
        Self { addr, bodies }
    }

    /// Waits (bounded) for a request whose body contains `needle`.
    fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.bodies.lock().unwrap().iter().any(|b| b.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn serve_one(mut stream: TcpStream, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let (mut raw, mut chunk) = (Vec::new(), [0; 8192]);
    loop {
        let Ok(n) = stream.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&chunk[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.split("\r\n").find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default()
        };
        let length: usize = header("content-length:").parse().unwrap_or(0);
        if raw.len() < end + 4 + length {
            continue;
        }
        log.lock().unwrap().push(String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned());
        let answer = format!(
            "HTTP/1.1 200 OK\r\nX-M2M-RSC: 2000\r\nX-M2M-RI: {}\r\nX-M2M-RVI: 3\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            header("x-m2m-ri:")
        );
        let _ = stream.write_all(answer.as_bytes());
        return;
    }
}

/// One plain oneM2M request over HTTP (setup steps straight to a CSE).
fn plain(addr: SocketAddr, method: &str, path: &str, fr: &str, ty: Option<u32>, body: Option<Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let ct = match ty {
        Some(ty) => format!("Content-Type: application/json;ty={ty}\r\n"),
        None if !body.is_empty() => "Content-Type: application/json\r\n".to_owned(),
        None => String::new(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-M2M-Origin: {fr}\r\nX-M2M-RI: setup\r\nX-M2M-RVI: 3\r\n\
         Accept: application/json\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let rsc = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-m2m-rsc:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    (rsc, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The transit setup, running.
struct Transit {
    rt: tokio::runtime::Runtime,
    acme_in: Acme,
    mn: Acme,
    /// In front of the MN: what both sidecars send to it, and its answers.
    mn_tap: Relay,
    /// Between the MN and the IN host's ingress: what the MN forwards to the IN.
    in_tap: Relay,
    in_side: Isolated,
    ae_side: Isolated,
    ae_config: Config,
    listener: Listener,
    /// The AEs' client: the AE host's egress.
    client: HttpClient,
}

fn port() -> SocketAddr {
    onem2m_sa_integration::free_port()
}

impl Transit {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (in_ingress, in_egress, ae_ingress, ae_egress) = (port(), port(), port(), port());
        let listener = Listener::start();
        let (mn_tap_socket, in_tap) = rt.block_on(async {
            let mn_tap_socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let in_tap_socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            (mn_tap_socket, Relay::start_on(in_tap_socket, in_ingress).unwrap())
        });
        // The IN announces its sidecar's ingress (through the tap) as its point of access.
        let acme_in = Acme::start_with_ini(&TRANSIT_IN_INI.replace("{poa}", &format!("http://{}", in_tap.addr())));
        let ports = TransitPorts {
            acme_in: acme_in.addr().port(),
            in_ingress: in_ingress.port(),
            in_egress: in_egress.port(),
            mn: mn_tap_socket.local_addr().unwrap().port(),
            ae_ingress: ae_ingress.port(),
            ae_egress: ae_egress.port(),
            listener: listener.addr.port(),
        };
        let (in_config, ae_config) = transit_configs(&acme_in.dir().join("sidecars"), ports);
        let in_side = Isolated::start(&in_config, Some(in_ingress), Some(in_egress));
        // The MN registers to its registrar, the IN host's ingress (through the tap), at start.
        let mn = Acme::start_with_ini(&TRANSIT_MN_INI.replace("{registrar_port}", &in_tap.addr().port().to_string()));
        let mn_tap = rt.block_on(async { Relay::start_on(mn_tap_socket, mn.addr()).unwrap() });
        let deadline = Instant::now() + Duration::from_secs(30);
        while plain(acme_in.addr(), "GET", "/cse-in/id-mn", ACME_ADMIN, None, None).0 != 2000 {
            assert!(Instant::now() < deadline, "the MN did not register to the IN:\n{}", mn.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
        // The AE host registers at the MN with its ingress as point of access, and lets the IN
        // notify it (docs/deploy.md "Through a registrar MN-CSE", step 3).
        let ae = json!({"m2m:ae": {"rn": "ae-host", "api": "Nae-host", "rr": true, "srv": ["3"],
            "poa": [format!("http://{ae_ingress}")]}});
        let aei = TRANSIT_AE_HOST_AEI;
        assert_eq!(plain(mn.addr(), "POST", "/cse-mn", aei, Some(2), Some(ae)).0, 2001);
        let acp = json!({"m2m:acp": {"rn": "sa-notify", "pv": {"acr": [{"acor": ["/id-in"], "acop": 16}]},
            "pvs": {"acr": [{"acor": [aei], "acop": 63}]}}});
        assert_eq!(plain(mn.addr(), "POST", "/cse-mn/ae-host", aei, Some(1), Some(acp)).0, 2001);
        let acpi = json!({"m2m:ae": {"acpi": ["cse-mn/ae-host/sa-notify"]}});
        assert_eq!(plain(mn.addr(), "PUT", "/cse-mn/ae-host", aei, None, Some(acpi)).0, 2004);
        // `sidecar --check --connect` on the AE host: the MN answers a plaintext probe as a CSE
        // does, so the SA establishment through it is the probe.
        let findings = rt.block_on(onem2m_sa_sidecar::doctor::connect_checks(&ae_config));
        assert!(findings.iter().all(|f| f.ok), "{findings:?}");
        let ae_side = Isolated::start(&ae_config, Some(ae_ingress), Some(ae_egress));
        let client = HttpClient::new(&format!("http://{ae_egress}"), ClientConfig::default()).unwrap();
        mn_tap.record_wire();
        in_tap.record_wire();
        Self { rt, acme_in, mn, mn_tap, in_tap, in_side, ae_side, ae_config, listener, client }
    }

    /// Sends `req` as an AE of the AE host (to its egress) and returns the answer.
    fn send(&self, req: RequestPrimitive) -> ResponsePrimitive {
        let client = self.client.clone();
        self.rt.block_on(async move { client.oneshot(req).await }).expect("the AE host's egress answers")
    }

    /// The MN's log so far.
    fn mn_log(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.mn.dir().join("logs")).unwrap().flatten() {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        out
    }
}

fn request(op: Operation, to: &str, fr: &str, rqi: &str) -> RequestPrimitive {
    let mut req = RequestPrimitive::new(op, to, Some(fr.to_owned()), rqi);
    req.rvi = Some("3".to_owned());
    req
}

fn create(to: &str, fr: &str, rqi: &str, ty: u32, pc: Value) -> RequestPrimitive {
    let mut req = request(Operation::Create, to, fr, rqi);
    req.ty = Some(ty);
    req.pc = Some(pc);
    req
}

const AE: &str = "Ctransit-ae";
const SECRET: &str = "transit-secret-payload";
const NOTIFIED: &str = "transit-notified-payload";

/// Registers the AE at the IN through the MN (this establishes the SA) and returns its path.
fn register(t: &Transit, ae: &str) -> String {
    let body = json!({"m2m:ae": {"rn": ae, "api": "Ntransit", "rr": true, "srv": ["3"],
        "poa": [format!("http://{}", t.listener.addr)]}});
    let rsp = t.send(create("/id-in/cse-in", ae, "reg", 2, body));
    assert_eq!(rsp.rsc, Rsc::CREATED, "{:?}\nMN log:\n{}", rsp.pc, t.mn.log_tail());
    format!("/id-in/cse-in/{ae}")
}

#[test]
fn establishment_crud_notifications_update_and_removal_through_an_unmodified_mn() {
    let t = Transit::start();
    let ae = register(&t, AE);
    let sa = t.ae_side.sidecar().node().outbound().by_peer(&"/id-in".parse().unwrap());
    assert_eq!(sa.len(), 1, "one SA with the IN host, established through the MN");

    // CRUD on the IN's resources.
    let cnt = format!("{ae}/box");
    let rsp = t.send(create(&ae, AE, "c1", 3, json!({"m2m:cnt": {"rn": "box"}})));
    assert_eq!(rsp.rsc, Rsc::CREATED, "{:?}", rsp.pc);
    let rsp = t.send(create(&cnt, AE, "c2", 4, json!({"m2m:cin": {"rn": "one", "con": SECRET}})));
    assert_eq!(rsp.rsc, Rsc::CREATED, "{:?}", rsp.pc);
    let rsp = t.send(request(Operation::Retrieve, &format!("{cnt}/one"), AE, "c3"));
    assert_eq!((rsp.rsc, rsp.pc.as_ref().map(|pc| pc["m2m:cin"]["con"].clone())), (Rsc::OK, Some(json!(SECRET))));
    let mut update = request(Operation::Update, &cnt, AE, "c4");
    update.pc = Some(json!({"m2m:cnt": {"lbl": ["transit-label"]}}));
    let rsp = t.send(update);
    assert_eq!(rsp.rsc, Rsc::UPDATED, "{:?}", rsp.pc);
    let rsp = t.send(request(Operation::Delete, &format!("{cnt}/one"), AE, "c5"));
    assert_eq!(rsp.rsc, Rsc::DELETED, "{:?}", rsp.pc);
    // A oneM2M error from the IN comes back sealed, with its code.
    let rsp = t.send(request(Operation::Retrieve, &format!("{cnt}/gone"), AE, "c6"));
    assert_eq!(rsp.rsc, Rsc::NOT_FOUND);

    // Notifications from the IN back to the AE host, over an SA the IN host establishes
    // through the MN (no verification request: the AE subscribes itself).
    let sub = json!({"m2m:sub": {"rn": "s", "nu": [format!("/id-in/{AE}")], "enc": {"net": [3]}, "nct": 1}});
    let rsp = t.send(create(&cnt, AE, "n1", 23, sub));
    assert_eq!(rsp.rsc, Rsc::CREATED, "{:?}\nMN log:\n{}", rsp.pc, t.mn.log_tail());
    let rsp = t.send(create(&cnt, AE, "n2", 4, json!({"m2m:cin": {"con": NOTIFIED}})));
    assert_eq!(rsp.rsc, Rsc::CREATED);
    assert!(t.listener.wait_for(NOTIFIED), "the notification did not reach the AE; MN log:\n{}", t.mn.log_tail());
    let back = t.in_side.sidecar().node().outbound().by_peer(&TRANSIT_AE_HOST_NODE.parse().unwrap());
    assert_eq!(back.len(), 1, "the IN host's SA with the AE host, established through the MN");

    // Update SA (identifier, then keys) and Remove SA, through the MN.
    let (node, peers) = t.ae_side.sidecar().runtime().nodes().into_iter().next().unwrap();
    let confirm = t.rt.block_on(node.update(sa[0].sa_id(), UpdateOperation::Identifier, peers.clone()));
    assert_eq!(confirm.result, UpdateResult::Accepted);
    let renamed = confirm.new_sa_id.expect("a new identifier");
    let rsp = t.send(request(Operation::Retrieve, &cnt, AE, "u1"));
    assert_eq!(rsp.rsc, Rsc::OK);
    // The Responder refuses a key update within `min_key_update_interval` (1 s) of the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.rt.block_on(node.update(renamed, UpdateOperation::Keys, peers.clone())).result != UpdateResult::Accepted {
        assert!(Instant::now() < deadline, "the key update was never accepted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rsp = t.send(request(Operation::Retrieve, &cnt, AE, "u2"));
    assert_eq!(rsp.rsc, Rsc::OK);
    let removed = t.rt.block_on(node.remove(renamed, peers));
    assert_eq!(removed.0.result, UpdateResult::Accepted);
    assert!(t.in_side.sidecar().node().inbound().get(renamed).is_none(), "the IN host removed the SA");
    // The next request establishes a new SA, through the MN again.
    let rsp = t.send(request(Operation::Retrieve, &cnt, AE, "u3"));
    assert_eq!(rsp.rsc, Rsc::OK);
    let rsp = t.send(request(Operation::Delete, &ae, AE, "bye"));
    assert_eq!(rsp.rsc, Rsc::DELETED);

    // Plaintext from an AE registered at the MN reaches the IN as `/id-mn/Cplain`, admitted by
    // the IN host's `/id-mn/*` (ACME then applies its own access control: 4103, not the
    // sidecar's 4107).
    let plain_ae = json!({"m2m:ae": {"rn": "plain", "api": "Nplain", "rr": false, "srv": ["3"]}});
    assert_eq!(plain(t.mn.addr(), "POST", "/cse-mn", "Cplain", Some(2), Some(plain_ae)).0, 2001);
    let (rsc, answer) = plain(t.mn.addr(), "GET", "/~/id-in/cse-in", "Cplain", None, None);
    assert_eq!(rsc, 4103, "{answer}");
    assert!(answer["m2m:dbg"].as_str().unwrap_or_default().contains("/id-mn/Cplain"), "{answer}");

    // The MN carried all of it and saw none of the inner primitives: not in its log (ACME logs
    // every body at debug), not on the wire on either side of it.
    let log = t.mn_log();
    assert!(log.contains("m2m:seci") && log.contains("sa:msg"), "the MN did not carry the SA traffic");
    let mut wire = t.mn_tap.wire();
    wire.extend(t.in_tap.wire());
    let wire = String::from_utf8_lossy(&wire).into_owned();
    assert!(wire.contains("m2m:sgn"), "the sidecars did not use the notification carriage");
    // (Needles long enough, or with quotes, not to occur by chance in base64url.)
    for inner in [SECRET, NOTIFIED, "transit-label", "\"Ntransit\"", "\"vrq\"", "\"box\""] {
        assert!(!log.contains(inner), "the MN's log shows {inner:?} in clear");
        assert!(!wire.contains(inner), "the MN's traffic shows {inner:?} in clear");
    }
    assert!(!wire.contains(AE) && !log.contains(AE), "the MN saw the AE's ID in clear");
}

/// What an error from the MN looks like to the AE when the AE host's sidecar uses what the MN
/// does not route: the standard carriage (4000 "Not a NOTIFY request or response") or the peer's
/// bare CSE-ID as `to` (4000 "SP-relative ID is too short"). Both used to come back as 5103
/// "establishment failed: Timeout" after four resends.
#[test]
fn errors_from_the_mn_reach_the_ae_with_their_code_and_text() {
    let t = Transit::start();
    for (name, change, text) in [
        ("standard carriage", (None, Carriage::Standard), "Not a NOTIFY request or response"),
        ("bare CSE-ID", (Some("/id-in".to_owned()), Carriage::Notification), "SP-relative ID is too short"),
    ] {
        let mut config = t.ae_config.clone();
        let (to, carriage) = change;
        config.peers[0].outer.carriage = carriage;
        if let Some(to) = to {
            config.peers[0].outer.to = Some(to);
        }
        t.mn_tap.set_plan(|_| Fault::Pass); // a plan generation per case: `plan_log` is this case's
        let egress = port();
        let side = Isolated::start(&config, Some(port()), Some(egress));
        let client = HttpClient::new(&format!("http://{egress}"), ClientConfig::default()).unwrap();
        let body = json!({"m2m:ae": {"rn": "Cwrong", "api": "Nwrong", "rr": false, "srv": ["3"]}});
        let rsp = t.rt.block_on(client.oneshot(create("/id-in/cse-in", "Cwrong", "w1", 2, body))).unwrap();
        let dbg = rsp.pc.as_ref().and_then(|pc| pc["m2m:dbg"].as_str()).unwrap_or_default().to_owned();
        assert_eq!(rsp.rsc, Rsc::BAD_REQUEST, "{name}: {dbg}");
        assert!(dbg.contains(text), "{name}: {dbg}");
        let sent =
            t.mn_tap.plan_log().iter().filter(|e| e.rqi.as_deref().is_some_and(|r| r.starts_with("sa-"))).count();
        assert_eq!(sent, 1, "{name}: the refused SaInit was resent");
        drop(side);
    }
}

/// The MN as the attacker (docs/robustness.md's threat checklist): it forges an unsealed 4112
/// after forwarding a request (row 19), drops an answer, replays a sealed request (row 1),
/// corrupts a sealed body (row 11). The AE gets the IN's own answer or an error, a request is
/// executed at most once, and nothing forged is taken for an answer.
#[test]
fn the_mn_as_attacker_forges_drops_and_corrupts() {
    let t = Transit::start();
    let ae = register(&t, "Cattacked");
    let fr = "Cattacked";
    let cnt = format!("{ae}/box");
    assert_eq!(t.send(create(&ae, fr, "a0", 3, json!({"m2m:cnt": {"rn": "box"}}))).rsc, Rsc::CREATED);
    let count = |t: &Transit| {
        let (_, v) = plain(t.acme_in.addr(), "GET", "/cse-in/Cattacked/box", ACME_ADMIN, None, None);
        v["m2m:cnt"]["cni"].as_u64().unwrap_or(0)
    };
    let secured = |kind| kind == onem2m_sa_integration::relay::Kind::Secured;

    // A forged 4112 after the MN forwarded the CREATE: resent once over a fresh SA, executed once.
    t.mn_tap.spare_sa_messages(true);
    t.mn_tap.set_plan(|i| if i == 0 { Fault::ForgeUnknownSa } else { Fault::Pass });
    let rsp = t.send(create(&cnt, fr, "a1", 4, json!({"m2m:cin": {"con": "forged-4112"}})));
    assert_eq!(rsp.rsc, Rsc::CREATED, "{:?}", rsp.pc);
    assert_eq!(count(&t), 1, "executed exactly once");

    // The answer dropped: the AE gets an error, never a forged success; at most one execution.
    t.mn_tap.set_plan(|i| if i == 0 { Fault::DropAnswer } else { Fault::Pass });
    let rsp = t.send(create(&cnt, fr, "a2", 4, json!({"m2m:cin": {"con": "dropped-answer"}})));
    assert!(rsp.rsc.is_error(), "a dropped answer is not a success: {:?}", rsp.rsc);
    assert!(count(&t) <= 2, "executed at most once");

    // A sealed request replayed by the MN (forwarded twice): executed once, the copy refused.
    let before = count(&t);
    t.mn_tap.set_plan(|i| if i == 0 { Fault::Duplicate } else { Fault::Pass });
    let rsp = t.send(create(&cnt, fr, "a2b", 4, json!({"m2m:cin": {"con": "replayed"}})));
    assert_eq!(rsp.rsc, Rsc::CREATED, "{:?}", rsp.pc);
    let replay = t.mn_tap.plan_log().into_iter().find(|e| e.fault == Fault::Duplicate).expect("duplicated");
    assert!(replay.duplicate_answer.is_some_and(|rsc| rsc >= 4000), "the replay was answered {replay:?}");
    assert_eq!(count(&t), before + 1, "a replayed request was executed twice");

    // A sealed request with a flipped bit: refused by the IN host, never executed.
    let before = count(&t);
    t.mn_tap.set_plan(|i| if i == 0 { Fault::Corrupt { at: 200 } } else { Fault::Pass });
    let rsp = t.send(create(&cnt, fr, "a3", 4, json!({"m2m:cin": {"con": "corrupted"}})));
    assert!(rsp.rsc.is_error(), "{:?}", rsp.rsc);
    assert_eq!(count(&t), before, "a corrupted request was executed");
    assert!(t.mn_tap.plan_log().iter().any(|e| secured(e.kind)), "the corrupted request was a sealed one");

    // Afterwards the path works as before.
    t.mn_tap.set_plan(|_| Fault::Pass);
    let rsp = t.send(request(Operation::Retrieve, &cnt, fr, "a4"));
    assert_eq!(rsp.rsc, Rsc::OK);
}

/// docs/deploy.md "Through a registrar MN-CSE" shows the sidecar configs the suite runs, as
/// committed (after their header comment), and the ACME settings it names are in the ini files.
#[test]
fn deploy_md_shows_the_transit_configs() {
    use onem2m_sa_integration::acme::{TRANSIT_SIDECAR_AE_TOML, TRANSIT_SIDECAR_IN_TOML};
    let deploy = include_str!("../../docs/deploy.md");
    let section = &deploy[deploy.find("## 8a. Through a registrar MN-CSE").expect("the section")..];
    for toml in [TRANSIT_SIDECAR_IN_TOML, TRANSIT_SIDECAR_AE_TOML] {
        let body = toml.trim_start_matches(|c| c != '[');
        assert!(section.contains(body.trim_end()), "deploy.md does not show:\n{body}");
    }
    for (ini, lines) in [
        (TRANSIT_IN_INI, &["enableRemoteCSE=true", "allowedCSROriginators=/id-mn", "poa="][..]),
        (
            TRANSIT_MN_INI,
            &["cseType=MN", "cseID=id-mn", "cseName=cse-mn", "registrarCseID=id-in", "registrarCseName=cse-in"][..],
        ),
    ] {
        for line in lines {
            assert!(ini.lines().any(|l| l.starts_with(line)), "the ini lacks {line}");
            assert!(section.contains(line), "deploy.md lacks {line}");
        }
    }
}
