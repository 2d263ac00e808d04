//! Reloading the configuration without a restart, under load: new keys, tickets and policy take
//! effect, the SA established before keeps serving, requests in flight are answered, a bad file
//! is refused with its error, and a trust anchor taken away ends the SAs it vouched for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::SignatureAlgorithm;
use onem2m_sa_examples::demo_http::serve_stand_in;
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_sidecar::admin_client;
use onem2m_sa_sidecar::config::Config;
use onem2m_sa_sidecar::demo::loopback;
use onem2m_sa_sidecar::keys::{self, IssueRequest};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use tower::{ServiceExt, service_fn};

struct Dir(tempfile::TempDir);

impl Dir {
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn keygen(&self, prefix: &str) {
        keys::keygen(SignatureAlgorithm::Ed25519, &self.path(prefix), true).unwrap();
    }

    /// `<subject>`'s ticket from the anchor `<anchor>` (key files `<anchor>.key.pem`,
    /// `<key>.pub.pem`), allowing `allow`.
    fn ticket(&self, file: &str, subject: &str, key: &str, anchor: &str, allow: &[&str]) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let ticket = keys::issue_ticket(&IssueRequest {
            anchor_id: NodeId::new(format!("/{anchor}")).unwrap(),
            anchor_key: keys::read_private_key(&self.path(&format!("{anchor}.key.pem"))).unwrap(),
            subject: NodeId::new(subject).unwrap(),
            subject_key: keys::read_public_key(&self.path(&format!("{key}.pub.pem"))).unwrap(),
            allow: allow.iter().map(|p| p.parse().unwrap()).collect(),
            except: Vec::new(),
            not_before: now - 60,
            not_after: now + 3600,
            max_sa_lifetime_secs: None,
            description: None,
        })
        .unwrap();
        std::fs::write(self.path(file), ticket.to_json()).unwrap();
    }
}

/// A sidecar config file in `dir`.
struct Node<'a> {
    id: &'a str,
    key: &'a str,
    ticket: &'a str,
    anchor: &'a str,
    upstream: String,
    ingress: SocketAddr,
    egress: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    plaintext: &'a str,
    peer: (&'a str, SocketAddr),
}

impl Node<'_> {
    fn toml(&self) -> String {
        let mut t = format!(
            "[node]\nid = \"{}\"\nkey = \"{}.key.pem\"\nticket = \"{}\"\n\n\
             [[trust_anchor]]\nid = \"/{}\"\npublic_key = \"{}.pub.pem\"\n\n\
             [ingress]\nupstream = \"{}\"\nallow_plaintext_from = [{}]\nmap_poa = false\n\
             [ingress.http]\nlisten = \"{}\"\n\n",
            self.id, self.key, self.ticket, self.anchor, self.anchor, self.upstream, self.plaintext, self.ingress
        );
        if let Some(egress) = self.egress {
            t += &format!("[egress]\ndefault_peer = \"{}\"\n[egress.http]\nlisten = \"{egress}\"\n\n", self.peer.0);
        }
        t += &format!("[[peer]]\nid = \"{}\"\naddress = \"http://{}\"\n\n", self.peer.0, self.peer.1);
        if let Some(admin) = self.admin {
            t += &format!("[admin]\nlisten = \"{admin}\"\n");
        }
        t
    }
}

fn request(rqi: &str, fr: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-base", Some(fr.into()), rqi);
    r.rvi = Some("3".into());
    r
}

fn addresses(listeners: [&tokio::net::TcpListener; 3]) -> [SocketAddr; 3] {
    listeners.map(|l| l.local_addr().unwrap())
}

fn start_from(path: &Path) -> Config {
    Config::load(path).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_keeps_the_established_sa_and_refuses_a_bad_file() {
    let dir = Dir(tempfile::tempdir().unwrap());
    for k in ["anchor", "other-anchor", "id-in", "id-in-new", "ae-host"] {
        dir.keygen(k);
    }
    dir.ticket("id-in.ticket.json", "/id-in", "id-in", "anchor", &["/id-in", "/id-in/*"]);
    dir.ticket("id-in-new.ticket.json", "/id-in", "id-in-new", "anchor", &["/id-in", "/id-in/*"]);
    dir.ticket("id-in-other.ticket.json", "/id-in", "id-in-new", "other-anchor", &["/id-in"]);
    dir.ticket("ae-host.ticket.json", "/id-ae-host", "ae-host", "anchor", &["C*"]);

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let upstream = serve_stand_in(
        loopback().await.unwrap(),
        service_fn(move |req: RequestPrimitive| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(ResponsePrimitive::new(Rsc::OK, &req.rqi)) }
        }),
    )
    .unwrap();
    let (cse_in, cse_admin, ae_in) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
    let ae_out = loopback().await.unwrap();
    let [cse_in_addr, admin_addr, ae_in_addr] = addresses([&cse_in, &cse_admin, &ae_in]);
    let cse = Node {
        id: "/id-in",
        key: "id-in",
        ticket: "id-in.ticket.json",
        anchor: "anchor",
        upstream: upstream.clone(),
        ingress: cse_in_addr,
        egress: None,
        admin: Some(admin_addr),
        plaintext: "",
        peer: ("/id-ae-host", ae_in_addr),
    };
    let ae = Node {
        id: "/id-ae-host",
        key: "ae-host",
        ticket: "ae-host.ticket.json",
        anchor: "anchor",
        upstream: upstream.clone(),
        ingress: ae_in_addr,
        egress: Some(ae_out.local_addr().unwrap()),
        admin: None,
        plaintext: "",
        peer: ("/id-in", cse_in_addr),
    };
    let (cse_file, ae_file) = (dir.path("cse.toml"), dir.path("ae.toml"));
    std::fs::write(&cse_file, cse.toml()).unwrap();
    std::fs::write(&ae_file, ae.toml()).unwrap();
    let egress = format!("http://{}", ae_out.local_addr().unwrap());
    let cse_side = Sidecar::start(
        &start_from(&cse_file),
        Listeners { ingress_http: Some(cse_in), egress_http: None, admin: Some(cse_admin) },
        None,
    )
    .await
    .unwrap();
    let ae_side = Sidecar::start(
        &start_from(&ae_file),
        Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), admin: None },
        None,
    )
    .await
    .unwrap();

    // Load: four clients sending through the pair until told to stop; every answer must be 2000.
    let client = HttpClient::new(&egress, ClientConfig::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let mut load = Vec::new();
    for w in 0..4 {
        let (client, stop, sent, failed) = (client.clone(), stop.clone(), sent.clone(), failed.clone());
        let (paused, busy) = (paused.clone(), busy.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                busy.fetch_add(1, Ordering::SeqCst);
                if paused.load(Ordering::SeqCst) {
                    busy.fetch_sub(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    continue;
                }
                let rqi = format!("w{w}-{i}");
                match client.clone().oneshot(request(&rqi, "Cmeter")).await {
                    Ok(rsp) if rsp.rsc == Rsc::OK => {}
                    other => failed.lock().unwrap().push(format!("{rqi}: {other:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
                busy.fetch_sub(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    let wait_for = |n: usize| {
        let sent = sent.clone();
        async move {
            let target = sent.load(Ordering::Relaxed) + n;
            while sent.load(Ordering::Relaxed) < target {
                tokio::task::yield_now().await;
            }
        }
    };
    wait_for(20).await;
    let sa = ae_side.node().outbound().entries()[0].sa_id();
    let plain = HttpClient::new(&format!("http://{cse_in_addr}"), ClientConfig::default()).unwrap();
    let rsp = plain.clone().oneshot(request("p1", "Cplain")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED, "before the reload: no plaintext");

    // 1. A broken file: refused with its line, the running configuration stays.
    std::fs::write(&cse_file, cse.toml().replace("[ingress.http]", "[ingress.http")).unwrap();
    let (status, body) = admin_client::request(admin_addr, "POST", "/reload").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cse.toml:") && body.contains("\"reloaded\":false"), "{body}");
    // A file that changes what needs a restart: refused too.
    let moved = Node { admin: Some("127.0.0.1:1".parse().unwrap()), ..clone_node(&cse) };
    std::fs::write(&cse_file, moved.toml()).unwrap();
    let (status, body) = admin_client::request(admin_addr, "POST", "/reload").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("need a restart"), "{body}");
    wait_for(20).await;

    // 2. New key, new ticket, new plaintext policy: applied; the SA established before stays.
    let renewed =
        Node { key: "id-in-new", ticket: "id-in-new.ticket.json", plaintext: "\"Cplain\"", ..clone_node(&cse) };
    std::fs::write(&cse_file, renewed.toml()).unwrap();
    let (status, body) = admin_client::request(admin_addr, "POST", "/reload").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let done: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((done["sas_kept"].as_u64(), done["sas_removed"].as_u64()), (Some(1), Some(0)), "{body}");
    assert_eq!(plain.clone().oneshot(request("p2", "Cplain")).await.unwrap().rsc, Rsc::OK, "the new policy");
    wait_for(50).await;
    let after = ae_side.node().outbound().entries();
    assert_eq!(after.iter().map(|e| e.sa_id()).collect::<Vec<_>>(), [sa], "the same SA, not a new one");
    assert!(cse_side.node().inbound().is_empty(), "the new configuration established nothing yet");
    assert_eq!(cse_side.runtime().nodes().len(), 2, "the earlier configuration still serves its SA");

    // A node meeting the CSE for the first time gets an SA under the new key and ticket.
    let (in2, out2) = (loopback().await.unwrap(), loopback().await.unwrap());
    let second =
        Node { ingress: in2.local_addr().unwrap(), egress: Some(out2.local_addr().unwrap()), ..clone_node(&ae) };
    std::fs::write(dir.path("ae2.toml"), second.toml()).unwrap();
    let second_side = Sidecar::start(
        &start_from(&dir.path("ae2.toml")),
        Listeners { ingress_http: Some(in2), egress_http: Some(out2), admin: None },
        None,
    )
    .await
    .unwrap();
    let c2 = HttpClient::new(&format!("http://{}", second.egress.unwrap()), ClientConfig::default()).unwrap();
    assert_eq!(c2.oneshot(request("second", "Cother")).await.unwrap().rsc, Rsc::OK);
    assert_eq!(cse_side.node().inbound().len(), 1, "established by the new configuration");

    // The AE host reloads too: its outbound SA keeps carrying its requests …
    let kept = ae_side.runtime().reload(&start_from(&ae_file)).unwrap();
    assert_eq!((kept.sas_kept, kept.sas_removed), (1, 0));
    assert_eq!(client.clone().oneshot(request("after-ae-reload", "Cmeter")).await.unwrap().rsc, Rsc::OK);
    assert!(ae_side.node().outbound().is_empty(), "no new SA: the earlier one carried it");
    // … until the CSE is listed at another address: then it is dropped, and the next request
    // establishes a new SA (under the AE host's current configuration).
    let elsewhere = Node { peer: ("/id-in", "127.0.0.1:1".parse().unwrap()), ..clone_node(&ae) };
    std::fs::write(dir.path("ae-elsewhere.toml"), elsewhere.toml()).unwrap();
    // The load pauses while the CSE is listed at a dead address: a request sent then gets 5103
    // (rightly), and requests around the drop left the CSE a fourth SA (the last step counts 3).
    // Both made this test fail about one run in four.
    paused.store(true, Ordering::SeqCst);
    while busy.load(Ordering::SeqCst) > 0 {
        tokio::task::yield_now().await;
    }
    let moved =
        ae_side.runtime().reload(&Config { path: ae_file.clone(), ..start_from(&dir.path("ae-elsewhere.toml")) });
    assert_eq!(moved.map(|r| (r.sas_kept, r.sas_removed)), Ok((0, 1)));
    ae_side.runtime().reload(&start_from(&ae_file)).unwrap();
    assert_eq!(client.clone().oneshot(request("re-established", "Cmeter")).await.unwrap().rsc, Rsc::OK);
    assert_eq!(ae_side.node().outbound().len(), 1);
    paused.store(false, Ordering::SeqCst);

    // 3. The trust anchor taken away: every SA it vouched for ends; the AE host, whose ticket
    // only that anchor signed, gets no new SA.
    let distrusting =
        Node { ticket: "id-in-other.ticket.json", key: "id-in-new", anchor: "other-anchor", ..clone_node(&cse) };
    std::fs::write(&cse_file, distrusting.toml()).unwrap();
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let failures = failed.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} of {} failed: {failures:?}", failures.len(), sent.load(Ordering::Relaxed));
    let (status, body) = admin_client::request(admin_addr, "POST", "/reload").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let done: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The AE host's first SA (it dropped it, the CSE did not know), the second node's, and the
    // AE host's new one.
    assert_eq!((done["sas_kept"].as_u64(), done["sas_removed"].as_u64()), (Some(0), Some(3)), "{body}");
    assert_eq!(cse_side.runtime().nodes().len(), 1);
    let rsp = client.clone().oneshot(request("distrusted", "Cmeter")).await.unwrap();
    assert!(rsp.rsc.is_error(), "{rsp:?}");
    assert!(calls.load(Ordering::SeqCst) > 0);

    second_side.shutdown().await;
    ae_side.shutdown().await;
    cse_side.shutdown().await;
}

fn clone_node<'a>(n: &Node<'a>) -> Node<'a> {
    Node { upstream: n.upstream.clone(), ..*n }
}

/// A reload that changes how a peer is reached through a transit CSE (`peer.to`, `peer.from`,
/// `peer.carriage`) at the same address drops the outbound SA with it, like a new address: the
/// earlier configuration would otherwise keep sending its requests the old way. (It was kept.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_a_peers_outer_addressing_drops_its_sa() {
    let dir = Dir(tempfile::tempdir().unwrap());
    for k in ["anchor", "id-in", "ae-host"] {
        dir.keygen(k);
    }
    dir.ticket("id-in.ticket.json", "/id-in", "id-in", "anchor", &["/id-in"]);
    dir.ticket("ae-host.ticket.json", "/id-ae-host", "ae-host", "anchor", &["C*"]);
    let upstream = serve_stand_in(
        loopback().await.unwrap(),
        service_fn(|req: RequestPrimitive| async move { Ok::<_, BoxError>(ResponsePrimitive::new(Rsc::OK, &req.rqi)) }),
    )
    .unwrap();
    let (cse_in, ae_in, ae_out) = (loopback().await.unwrap(), loopback().await.unwrap(), loopback().await.unwrap());
    let [cse_in_addr, ae_in_addr, ae_out_addr] = addresses([&cse_in, &ae_in, &ae_out]);
    let node = |id, key, ticket, ingress, egress, peer| Node {
        id,
        key,
        ticket,
        anchor: "anchor",
        upstream: upstream.clone(),
        ingress,
        egress,
        admin: None,
        plaintext: "",
        peer,
    };
    let cse = node("/id-in", "id-in", "id-in.ticket.json", cse_in_addr, None, ("/id-ae-host", ae_in_addr));
    let ae =
        node("/id-ae-host", "ae-host", "ae-host.ticket.json", ae_in_addr, Some(ae_out_addr), ("/id-in", cse_in_addr));
    std::fs::write(dir.path("cse.toml"), cse.toml()).unwrap();
    let ae_file = dir.path("ae.toml");
    std::fs::write(&ae_file, ae.toml()).unwrap();
    let none = || Listeners { ingress_http: None, egress_http: None, admin: None };
    let cse_side =
        Sidecar::start(&start_from(&dir.path("cse.toml")), Listeners { ingress_http: Some(cse_in), ..none() }, None)
            .await
            .unwrap();
    let ae_side = Sidecar::start(
        &start_from(&ae_file),
        Listeners { ingress_http: Some(ae_in), egress_http: Some(ae_out), ..none() },
        None,
    )
    .await
    .unwrap();
    let client = HttpClient::new(&format!("http://{ae_out_addr}"), ClientConfig::default()).unwrap();
    assert_eq!(client.clone().oneshot(request("r1", "Cmeter")).await.unwrap().rsc, Rsc::OK);

    // The same address, the same addressing: the SA stays.
    let same = ae_side.runtime().reload(&start_from(&ae_file)).unwrap();
    assert_eq!((same.sas_kept, same.sas_removed), (1, 0));
    // Another carriage (the peer's sidecar accepts both): the SA is dropped, a new one carries
    // the next request in the new carriage.
    let text = ae.toml().replace(
        &format!("address = \"http://{cse_in_addr}\"\n"),
        &format!("address = \"http://{cse_in_addr}\"\nto = \"/id-in/cse-base\"\ncarriage = \"notification\"\n"),
    );
    std::fs::write(dir.path("ae-transit.toml"), text).unwrap();
    let changed = ae_side
        .runtime()
        .reload(&Config { path: ae_file.clone(), ..start_from(&dir.path("ae-transit.toml")) })
        .unwrap();
    assert_eq!((changed.sas_kept, changed.sas_removed), (0, 1));
    assert_eq!(client.clone().oneshot(request("r2", "Cmeter")).await.unwrap().rsc, Rsc::OK);
    assert_eq!(ae_side.node().outbound().len(), 1, "a new SA, established by the new configuration");

    ae_side.shutdown().await;
    cse_side.shutdown().await;
}
