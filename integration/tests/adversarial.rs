//! Adversarial tests: one per row of the threat checklist (`security.md` §2).
//!
//! Socket-level tests run a demo CSE behind a real CSE-side sidecar on 127.0.0.1:0, and an
//! attacker / legitimate peer (a `Node` with `SendSecureLayer` over an HTTP client, whose rb
//! and data traffic is recorded and may be rewritten in flight). Each of them asserts the
//! specific RSC (or rejection) and that the demo CSE never executed the bad request
//! (`cse.cse.executed()`). Rows where sockets add nothing run on the sans-I/O core through the
//! testkit, with the virtual clock (`Now`) instead of sleeps.
//!
//! | # | Checklist row | Test | What it proves |
//! |---|---|---|---|
//! | 1 | Data replay | `data_replay_is_refused` | Through the sidecar (window 64): replay inside the window, at the left edge, one below it, after a jump far ahead (> window), reverse order: duplicates and too-old get 4115 and never reach the CSE; a forged high-numbered message neither advances the window nor burns its number. |
//! | 2 | Handshake replay | `handshake_replay_is_refused` | Recorded SaInit/SaAuth replayed over HTTP to the live responder (4000 "replayed", cached identical SaAuthReply, no second SA) and to a restarted one (4000 no establishment; a replayed SaInit cannot be completed); the old sealed data request gets 4112. |
//! | 3 | Reflection | `reflection_is_refused` | The CSE sidecar's own sealed answer fed back to its ingress as a request: 4115, nothing executed. |
//! | 4 | Downgrade | `downgrade_stripping_the_strongest_suite_aborts` | A MITM on rb strips the strongest suite (and its key share) from SaInit: the Initiator aborts (4101), no SA at the CSE; an offer the CSE does not support yields no SA (4107). |
//! | 5 | KCI | `key_compromise_impersonation_of_the_peer_fails` | An attacker holding the CSE sidecar's long-term key and the peer's public ticket cannot establish as the peer: 4101, no SA, nothing executed. |
//! | 6 | UKS / misbinding | `unknown_key_share_relay_through_a_third_identity_aborts` | A MITM renames the Initiator to a third (valid) identity in SaInit, or swaps the third identity's ticket into SaAuth: both abort, no SA, nothing executed. |
//! | 7a | Nonce reuse (counter limit) | `usage_limits_force_an_update_before_the_hard_limit` | The seal at the hard limit fails instead of wrapping (see row 14). |
//! | 7c | Nonce reuse (retransmission) | `lost_last_message_of_establishment_and_update_recovers` | The retransmitted SaAuth is byte-identical (no re-signing under new randomness). |
//! | 7d | Nonce reuse (threads) | `nonce_reuse_across_threads_never_happens` | 48 concurrent requests over one SA: every (SA, key phase, seq) on the wire is unique, in both directions, and every request executed exactly once. |
//! | 7b | Nonce reuse (restarts) | `nonce_reuse_across_restarts_never_happens` | A peer restarted with its state lost, and a CSE sidecar restarted: each restart ends with a fresh SA (new identifier, so new keys; the peer recovers from the CSE side's 4112 by itself), all 9 requests execute once, and no (SA, direction, phase, seq) repeats on the wire. |
//! | 8 | Handshake flood | `handshake_flood_from_one_claimed_peer_is_capped_and_others_still_establish` | 20 bogus SaInits from one other source: exactly `max_half_open_per_peer` are held, the rest get Busy; a legitimate peer still establishes. |
//! | 8 | Handshake flood | `handshake_flood_claiming_the_legitimate_peers_id_does_not_lock_it_out` | Bogus SaInits claiming the legitimate peer's own ID, from another source, fill only that source's quota (the bound is per source, not per claimed ID): the real peer establishes. |
//! | 8/9 | Handshake flood | `handshake_flood_from_many_spoofed_ids_does_not_lock_out_other_peers` | Bogus SaInits under 20 IDs from 20 sources: from `cookie_threshold` on each gets a stateless cookie request (no state, no public-key work); the legitimate peer returns its cookie and establishes. |
//! | 9 | State exhaustion | `state_exhaustion_half_open_and_sa_caps_hold` | Half-open state never exceeds the global cap (the surplus gets Busy before any state is allocated); with `max_sas` reached, a further peer gets no SA (4107) and nothing is executed for it. |
//! | 10 | SA-ID guessing | `sa_identifier_guessing_gets_unknown_key_id` | 64 random SA identifiers in otherwise genuine sealed requests: 4112 each, nothing executed; the genuine request still works after. |
//! | 10 | SA-ID collision | `sa_identifier_collision_and_reuse_after_removal_are_avoided` | Core, responder's RNG scripted to repeat a live SA ID, then a removed (tombstoned) one: a different ID is assigned each time. |
//! | 11 | Truncation | `truncation_is_refused_and_unauthenticated_removal_removes_nothing` | Truncated tag / ciphertext / object: 4115 or 4000, nothing executed, the untruncated original still opens; a forged SA Removal for the live SA over rb is refused and the SA keeps working. |
//! | 12 | Rekey races | `simultaneous_update_from_both_sides_converges` | Core: a key update and an identifier update of the same SA started together (one per "side" of the Initiator Agent), and key updates of both directions' SAs crossed: one runs, the other is refused locally, both ends agree and data flows. |
//! | 12 | Rekey races | `update_crossed_with_remove_leaves_no_half_updated_sa` | Core: a key update crossing the Responder's removal: refused (already marked invalid), the Initiator reports it, the Responder holds no keys. |
//! | 12 | Rekey races | `lost_last_message_of_establishment_and_update_recovers` | Core: the last message of establishment and of a key update dropped: retransmission gets the cached answer, both ends agree (epoch, data both ways). |
//! | 13 | Stale key | `stale_key_after_removal_is_refused_cheaply` | The CSE sidecar removes the SA: a message sealed before gets 4112 (no AES), the epoch's keys are freed, the peer re-establishes on its next request. |
//! | 14 | Usage limits | `usage_limits_force_an_update_before_the_hard_limit` | Core: soft limit asks for an update, the update resets the counters under a new epoch, the hard limit refuses (no wrap). |
//! | 15 | Key-transport oracle | `decrypt_failures_look_alike` | Core: every corruption of the transported keying material / key confirmation yields a byte-identical SaAuthReply; socket: every tag failure (ciphertext, tag, IV, header, reflection, other SA's keys) gets the same RSC 4115 and the same error text. |
//! | 15 | Key-transport oracle | `decrypt_failures_look_alike_including_replay_and_staleness` | Replayed and too-old messages get the same RSC 4115 and the same `m2m:dbg` text as a bad tag (no replay-window probe without keys). |
//! | 16 | Clock and suspend | `clock_jumps_do_not_stretch_lifetimes` | Core: half-open expiry follows the monotonic clock even when wall time jumps back; a wall-clock jump forward (suspend) past the ticket expiry expires the SA. |
//! | 17 | Plaintext identity bypass | `sidecar_defaults::plaintext_claiming_an_authorized_originator_is_refused_by_default` | With the sidecar's default policy, plaintext claiming the legitimate peer's AE-ID, any AE-ID, an SP-relative ID, the CSE-ID, an empty or no originator (an AE registration included) gets 4107 and nothing is executed; the peer over its SA is served. |
//! | 18 | Forged authentication header | `sidecar_defaults::forged_authentication_headers_never_reach_the_cse` | `X-SA-*` headers an attacker adds to allow-listed plaintext, to refused plaintext and to a legitimate peer's sealed traffic never reach the CSE; sealed requests arrive with the true `X-SA-Peer` and `X-SA-Id`, plaintext with neither. |
//! | 19 | At most once under a forged "unknown SA" | `faults.rs`: `a_swallowed_answer_and_a_forged_4112_on_the_secured_hop_execute_each_operation_once`, `a_forger_on_the_secured_hop_forces_one_establishment_not_one_per_request`; `crates/tower/tests/exactly_once.rs` | An on-path attacker forwards the sealed request, swallows the sealed answer and answers an unsealed 4112: CREATE, UPDATE, NOTIFY and DELETE are each executed once (the resend over a fresh SA gets the CSE's kept answer); forging 4112 for every request costs one establishment per 5 s per peer, not one per request, and never a second execution (docs/robustness.md, "At most once"). |

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa::credential::Credentials;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite, SuiteCode};
use onem2m_sa::establish::{AcceptAll, Initiator, Responder};
use onem2m_sa::flows::*;
use onem2m_sa::manage::{InitiatorEvent, Limits, ResponderSam, Timing};
use onem2m_sa::message::*;
use onem2m_sa::rng::{SeededRng, SystemRng};
use onem2m_sa::secure::{
    Encoding, SecureError, UsageLimits, decode_compact, decode_jwe, epo_from_content, outer_notify,
};
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::testkit::{Fault, Pair, ScriptedRng, TestPki, initiator_config, linked, responder_config};
use onem2m_sa::{Now, SaId};
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{ServedCse, serve_demo_cse};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient};
use onem2m_sa_integration::request;
use onem2m_sa_sidecar::config::Config;
use onem2m_sa_sidecar::demo::{CSE_BASE, CSE_ID, DemoPki, base_config, cse_sidecar_config, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};
use onem2m_sa_tower::{Node, Route, SendSecureLayer, rb};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

// ---------------------------------------------------------------------------------------------
// Socket harness

const PEER: &str = "/id-ae2";
const PEER_AE: &str = "Cae2-meter";

fn base() -> String {
    format!("{CSE_ID}/{CSE_BASE}")
}

fn client(addr: SocketAddr) -> HttpClient {
    HttpClient::new(&format!("http://{addr}"), ClientConfig::default()).unwrap()
}

/// The demo CSE behind a real CSE-side sidecar.
struct Cse {
    pki: DemoPki,
    cse: ServedCse,
    sidecar: Sidecar,
    ingress: SocketAddr,
    config: Config,
}

async fn start_sidecar(config: &Config) -> (Sidecar, SocketAddr) {
    let listeners = Listeners { ingress_http: Some(loopback().await.unwrap()), egress_http: None, admin: None };
    let sidecar = Sidecar::start(config, listeners, None).await.unwrap();
    let ingress = sidecar.addresses().ingress_http.unwrap();
    (sidecar, ingress)
}

impl Cse {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let pki = DemoPki::new();
        let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
        // Nobody listens for notifications: these tests never make the CSE notify.
        let nowhere = loopback().await.unwrap().local_addr().unwrap();
        let mut config = cse_sidecar_config(&pki, &cse.base(), nowhere);
        tweak(&mut config);
        let (sidecar, ingress) = start_sidecar(&config).await;
        Self { pki, cse, sidecar, ingress, config }
    }

    /// Requests the demo CSE executed.
    fn executed(&self) -> usize {
        self.cse.cse.executed().len()
    }

    /// SAs the CSE side holds as Responder.
    fn inbound(&self) -> usize {
        self.sidecar.node().inbound().entries().len()
    }

    /// Sends one primitive straight to the ingress, as an attacker on the wire would.
    async fn raw(&self, req: RequestPrimitive) -> ResponsePrimitive {
        client(self.ingress).oneshot(req).await.unwrap()
    }

    /// Like [`Self::raw`], from the loopback address `from` (127.0.0.0/8): another source than
    /// the legitimate peers, which connect from 127.0.0.1.
    async fn raw_from(&self, from: [u8; 4], req: RequestPrimitive) -> ResponsePrimitive {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let http = onem2m_sa_http::primitive_to_request(&req, &format!("http://{}", self.ingress)).unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        let mut stream = socket.connect(self.ingress).await.unwrap();
        let target = http.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut head =
            format!("{} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", http.method(), self.ingress);
        for (name, value) in http.headers() {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", http.body().len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(http.body()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut answer = http::Response::builder().status(status);
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            answer = answer.header(name.trim(), value.trim());
        }
        let answer = answer.body(bytes::Bytes::copy_from_slice(&raw[end + 4..])).unwrap();
        onem2m_sa_http::http_to_response(&answer).unwrap()
    }

    /// Kills the CSE-side sidecar (all SA state lost) and starts it again (new ingress port).
    async fn restart(&mut self) {
        let (sidecar, ingress) = start_sidecar(&self.config).await;
        let old = std::mem::replace(&mut self.sidecar, sidecar);
        old.shutdown().await;
        self.ingress = ingress;
    }

    async fn shutdown(self) {
        self.sidecar.shutdown().await;
        self.cse.shutdown().await;
    }
}

type Log = Arc<Mutex<Vec<(RequestPrimitive, ResponsePrimitive)>>>;
type Mitm = Arc<dyn Fn(RequestPrimitive) -> RequestPrimitive + Send + Sync>;

/// A node talking to the CSE sidecar over HTTP through SendSecure; every outer exchange is
/// recorded after `mitm` rewrote the request.
struct Peer {
    node: Node,
    svc: BoxCloneSyncService<RequestPrimitive, ResponsePrimitive, BoxError>,
    log: Log,
    id: String,
}

fn no_mitm() -> Mitm {
    Arc::new(|r| r)
}

fn peer_with(config: &Config, ingress: SocketAddr, mitm: Mitm) -> Peer {
    let node = Node::new(config.node_config());
    let log: Log = Arc::default();
    let (rec, http) = (log.clone(), client(ingress));
    let transport = service_fn(move |req: RequestPrimitive| {
        let req = mitm(req);
        let (rec, http) = (rec.clone(), http.clone());
        async move {
            let rsp = http.oneshot(req.clone()).await?;
            rec.lock().unwrap().push((req, rsp.clone()));
            Ok::<_, BoxError>(rsp)
        }
    });
    let route: Route = Arc::new(|_: &RequestPrimitive| Some(CSE_ID.parse().unwrap()));
    let svc = BoxCloneSyncService::new(SendSecureLayer::new(node.clone(), route).layer(transport));
    Peer { node, svc, log, id: config.node.id.as_str().to_owned() }
}

fn peer(cse: &Cse, id: &str, mitm: Mitm) -> Peer {
    let pattern = format!("C{}*", &id[4..]);
    peer_with(&base_config(cse.pki.node(id, &[pattern.as_str()])), cse.ingress, mitm)
}

impl Peer {
    async fn get(&self, fr: &str, rqi: &str) -> ResponsePrimitive {
        self.svc.clone().oneshot(request(Operation::Retrieve, &base(), fr, rqi)).await.unwrap()
    }

    fn entry(&self) -> Arc<SaEntry> {
        let entries = self.node.outbound().entries();
        assert_eq!(entries.len(), 1);
        entries[0].clone()
    }

    /// A genuine sealed request (JWE), sealed by hand under the peer's SA.
    fn seal(&self, entry: &SaEntry, rqi: &str) -> RequestPrimitive {
        outer_notify(CSE_ID, &self.id, &format!("o-{rqi}"), &self.seal_jwe(entry, rqi))
    }

    fn seal_jwe(&self, entry: &SaEntry, rqi: &str) -> Vec<u8> {
        let inner = request(Operation::Retrieve, &base(), &format!("C{}-x", &self.id[4..]), rqi);
        let mut jwe = Vec::new();
        entry.seal(Encoding::Jwe, &inner.to_json_vec().unwrap(), &mut jwe).unwrap();
        jwe
    }

    /// The SA messages this peer sent across rb, with the answers.
    fn rb_exchanges(&self) -> Vec<(RequestPrimitive, ResponsePrimitive)> {
        self.log.lock().unwrap().iter().filter(|(q, _)| rb::is_sa_message(q)).cloned().collect()
    }
}

fn sa_message(req: &RequestPrimitive) -> Option<Message> {
    Message::decode(&rb::message_of(req.pc.as_ref())?).ok()
}

fn rewrap(req: &RequestPrimitive, msg: &Message) -> RequestPrimitive {
    rb::request(&req.to, req.fr.as_deref().unwrap_or_default(), req.rqi.clone(), &msg.encode())
}

/// A MITM that rewrites SA messages of one kind.
fn mitm(f: impl Fn(&mut Message) + Send + Sync + 'static) -> Mitm {
    Arc::new(move |req: RequestPrimitive| {
        if !rb::is_sa_message(&req) {
            return req;
        }
        match sa_message(&req) {
            Some(mut m) => {
                f(&mut m);
                rewrap(&req, &m)
            }
            None => req,
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// The JWE of a sealed outer request.
fn epo(req: &RequestPrimitive) -> String {
    epo_from_content(req.pc.as_ref().unwrap()).unwrap().to_owned()
}

fn with_epo(req: &RequestPrimitive, rqi: &str, jwe: &str) -> RequestPrimitive {
    outer_notify(&req.to, req.fr.as_deref().unwrap(), rqi, jwe.as_bytes())
}

/// Rewrites the protected header (first JWE segment) of `jwe`.
fn with_header(jwe: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let (head, rest) = jwe.split_once('.').unwrap();
    let mut h: serde_json::Value = serde_json::from_slice(&unb64(head)).unwrap();
    f(&mut h);
    format!("{}.{rest}", b64(&serde_json::to_vec(&h).unwrap()))
}

/// Flips one bit of the decoded bytes of JWE segment `seg` at `at` (from the end if negative).
fn flip_segment(jwe: &str, seg: usize, at: isize) -> String {
    let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
    let mut bytes = unb64(&parts[seg]);
    let i = if at < 0 { bytes.len() - at.unsigned_abs() } else { at as usize };
    bytes[i] ^= 0x01;
    parts[seg] = b64(&bytes);
    parts.join(".")
}

/// A bogus SaInit claiming to come from `claimed`, as a flood would send it.
fn bogus_init(pki: &DemoPki, claimed: &str) -> RequestPrimitive {
    let creds = pki.credentials(claimed, &["C*"]);
    let req = InitiateSaRequest { initiator: creds.node_id.clone(), responder: CSE_ID.parse().unwrap() };
    let (_, m1) = Initiator::start(initiator_config(creds, pki.anchors(), &Suite::ALL), &req, &mut SystemRng).unwrap();
    rb::request(CSE_ID, claimed, format!("flood-{}", b64(&SaId::random(&mut SystemRng).0)), &m1)
}

fn is_busy(rsp: &ResponsePrimitive) -> bool {
    let m = Message::decode(&rb::message_of(rsp.pc.as_ref()).expect("an SA reply")).unwrap();
    matches!(m, Message::InitReply(r) if r.parameters.cause == Some(RejectionCause::Busy))
}

fn assert_ok(rsp: &ResponsePrimitive, what: &str) {
    assert!(!rsp.rsc.is_error(), "{what}: {} {:?}", rsp.rsc, rsp.pc);
}

// ---------------------------------------------------------------------------------------------
// 1. Data replay

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_replay_is_refused() {
    const W: usize = 64;
    let cse = Cse::start(|c| c.sa.replay_window = W).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let entry = p.entry();
    // Sequence numbers 1..=80 (0 went with the first request).
    let m: Vec<RequestPrimitive> = (1..=80).map(|s| p.seal(&entry, &format!("m{s}"))).collect();
    let at = |seq: usize| m[seq - 1].clone();
    let mut accepted = 1;

    // A forged copy of seq 80 (one ciphertext bit): refused, and it must not move the window.
    let forged = with_epo(&at(80), "forged", &flip_segment(&epo(&at(80)), 3, 0));
    assert_eq!(cse.raw(forged).await.rsc, Rsc::ESPRIM_BAD_MAC);
    // Had it moved the window to 80, 10 would now be too old.
    assert_ok(&cse.raw(at(10)).await, "seq 10 after a forged 80");
    accepted += 1;
    assert_eq!(cse.raw(at(10)).await.rsc, Rsc::ESPRIM_BAD_MAC, "replay inside the window");
    // Reverse order below the highest: each accepted once.
    for s in [6, 5, 4] {
        assert_ok(&cse.raw(at(s)).await, "reverse order");
        accepted += 1;
    }
    assert_eq!(cse.raw(at(5)).await.rsc, Rsc::ESPRIM_BAD_MAC, "replay of a reordered one");
    // Far ahead: 79 is more than a window past 10.
    assert_ok(&cse.raw(at(79)).await, "far ahead");
    accepted += 1;
    // The window is now 16..=79: the left edge opens once, one below is too old.
    let edge = 79 - W + 1;
    assert_ok(&cse.raw(at(edge)).await, "left edge");
    accepted += 1;
    assert_eq!(cse.raw(at(edge)).await.rsc, Rsc::ESPRIM_BAD_MAC, "left edge replayed");
    assert_eq!(cse.raw(at(edge - 1)).await.rsc, Rsc::ESPRIM_BAD_MAC, "one below the edge");
    assert_eq!(cse.raw(at(10)).await.rsc, Rsc::ESPRIM_BAD_MAC, "far below the edge");
    // The forgery did not burn number 80: the genuine one opens.
    assert_ok(&cse.raw(at(80)).await, "genuine 80 after its forged copy");
    accepted += 1;
    assert_eq!(cse.raw(at(80)).await.rsc, Rsc::ESPRIM_BAD_MAC);

    let executed = cse.cse.cse.executed();
    assert_eq!(executed.len(), accepted, "{executed:?}");
    let mut rqis: Vec<_> = executed.iter().map(|(_, r)| r.clone()).collect();
    rqis.sort();
    rqis.dedup();
    assert_eq!(rqis.len(), accepted, "something was executed twice");
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Handshake replay

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_replay_is_refused() {
    let mut cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let data = p.log.lock().unwrap().iter().rev().find(|(q, _)| !rb::is_sa_message(q)).cloned().unwrap().0;
    let rbx = p.rb_exchanges();
    let (init, _) = rbx.iter().find(|(q, _)| matches!(sa_message(q), Some(Message::Init(_)))).cloned().unwrap();
    let (auth, auth_reply) =
        rbx.iter().find(|(q, _)| matches!(sa_message(q), Some(Message::Auth(_)))).cloned().unwrap();
    assert_eq!(cse.inbound(), 1);

    // Live responder: the SaInit is recognised as replayed (no state, no signature) …
    let rsp = cse.raw(init.clone()).await;
    assert_eq!(rsp.rsc, Rsc::BAD_REQUEST);
    assert!(format!("{:?}", rsp.pc).contains("replayed"), "{:?}", rsp.pc);
    // … the SaAuth (ticket, challenge response) gets the cached reply, no second SA.
    let rsp = cse.raw(auth.clone()).await;
    assert_eq!(rb::message_of(rsp.pc.as_ref()), rb::message_of(auth_reply.pc.as_ref()));
    assert_eq!(cse.inbound(), 1);

    // Restarted responder: the SaAuth has nothing to continue; the SaInit opens a half-open SA
    // under a new identifier that the recorded SaAuth cannot complete.
    cse.restart().await;
    let rsp = cse.raw(auth.clone()).await;
    assert_eq!(rsp.rsc, Rsc::BAD_REQUEST);
    assert!(format!("{:?}", rsp.pc).contains("no establishment"), "{:?}", rsp.pc);
    let rsp = cse.raw(init).await;
    assert!(matches!(Message::decode(&rb::message_of(rsp.pc.as_ref()).unwrap()).unwrap(),
        Message::InitReply(r) if r.parameters.result == EstablishResult::Success));
    assert_eq!(cse.raw(auth).await.rsc, Rsc::BAD_REQUEST);
    assert_eq!(cse.inbound(), 0, "no SA from replayed flows");
    // The old sealed request names an SA the restarted side never had.
    assert_eq!(cse.raw(data).await.rsc, Rsc::ESPRIM_UNKNOWN_KEY_ID);
    assert_eq!(cse.executed(), 1);
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Reflection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_is_refused() {
    let cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let (req, rsp) = p.log.lock().unwrap().last().cloned().unwrap();
    // The CSE side's own sealed answer, under the same SA, fed back to it as a request (in the
    // form it came in: compact, negotiated by the two sidecars).
    assert!(compact::is_compact(rsp.pc.as_ref().unwrap()), "{:?}", rsp.pc);
    let mut reflected = req.clone();
    reflected.rqi = "reflected".to_owned();
    reflected.pc = rsp.pc.clone();
    let rsp = cse.raw(reflected).await;
    assert_eq!(rsp.rsc, Rsc::ESPRIM_BAD_MAC);
    assert_eq!(cse.executed(), 1);
    // Core: a node's own request reflected at it.
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 3, T0);
    let ei = l.initiator_table.get(l.sa_id).unwrap();
    let mut wire = Vec::new();
    ei.seal(Encoding::Jwe, b"{}", &mut wire).unwrap();
    let mut scratch = Vec::new();
    assert_eq!(ei.open(decode_jwe(&wire, &mut scratch).unwrap()).unwrap_err(), SecureError::BadTag);
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Downgrade

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_stripping_the_strongest_suite_aborts() {
    let cse = Cse::start(|_| {}).await;
    let strongest = Suite::X25519MLKEM768_AES256GCM_SHA384;
    let strip = mitm(move |m| {
        if let Message::Init(init) = m {
            init.parameters.possible.retain(|c| *c != SuiteCode::from(strongest));
            init.key_shares.retain(|k| k.kem == 1);
        }
    });
    let mut config = base_config(cse.pki.node(PEER, &["Cae2*"]));
    config.node.suites = vec![strongest, Suite::X25519_AES128GCM_SHA256];
    let p = peer_with(&config, cse.ingress, strip);
    let rsp = p.get(PEER_AE, "downgraded").await;
    assert_eq!(rsp.rsc, Rsc::ORIGINATOR_NOT_AUTHENTICATED);
    assert!(p.node.outbound().entries().is_empty());
    assert_eq!(cse.inbound(), 0);
    // The MITM really did strip it: the CSE saw (and answered) the reduced offer.
    let init = p.rb_exchanges().into_iter().find_map(|(q, _)| match sa_message(&q) {
        Some(Message::Init(i)) => Some(i),
        _ => None,
    });
    assert!(!init.unwrap().parameters.possible.contains(&SuiteCode::from(strongest)));

    // An offer the responder does not support at all.
    let cse2 = Cse::start(|c| c.node.suites = vec![Suite::X25519_AES128GCM_SHA256]).await;
    let mut config2 = base_config(cse2.pki.node("/id-ae3", &["Cae3*"]));
    config2.node.suites = vec![Suite::MLKEM768_AES256GCM_SHA384];
    let p = peer_with(&config2, cse2.ingress, no_mitm());
    let rsp = p.get("Cae3-x", "unsupported").await;
    assert_eq!(rsp.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);
    assert_eq!((cse.executed(), cse2.executed(), cse2.inbound()), (0, 0, 0));
    cse.shutdown().await;
    cse2.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Key-compromise impersonation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compromise_impersonation_of_the_peer_fails() {
    let cse = Cse::start(|_| {}).await;
    let legit = cse.pki.node(PEER, &["Cae2*"]);
    // The attacker stole the CSE sidecar's long-term key, and has the peer's (public) ticket.
    let stolen = Arc::new(Credentials {
        node_id: legit.id.clone(),
        signing_key: cse.config.node.credentials.signing_key.clone(),
        ticket: legit.credentials.ticket.clone(),
    });
    let mut config = base_config(legit);
    config.node.credentials = stolen;
    let attacker = peer_with(&config, cse.ingress, no_mitm());
    let rsp = attacker.get(PEER_AE, "kci").await;
    assert_eq!(rsp.rsc, Rsc::ORIGINATOR_NOT_AUTHENTICATED);
    assert!(attacker.node.outbound().entries().is_empty());
    // The CSE side answered the SaAuth with an authentication failure, and holds no SA.
    let (_, reply) =
        attacker.rb_exchanges().into_iter().find(|(q, _)| matches!(sa_message(q), Some(Message::Auth(_)))).unwrap();
    assert!(matches!(Message::decode(&rb::message_of(reply.pc.as_ref()).unwrap()).unwrap(),
        Message::AuthReply(r) if r.cause == Some(RejectionCause::AuthenticationFailed)));
    assert_eq!((cse.inbound(), cse.executed()), (0, 0));
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Unknown key share / identity misbinding

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_share_relay_through_a_third_identity_aborts() {
    let cse = Cse::start(|_| {}).await;
    // Mallory holds a genuine ticket of her own, for AE-IDs that cover the peer's.
    let mallory = cse.pki.credentials("/id-mallory", &["C*"]);
    // (a) Mallory relays the peer's SaInit under her own name.
    let who = mallory.node_id.clone();
    let rename = mitm(move |m| {
        if let Message::Init(init) = m {
            init.initiator = who.clone();
        }
    });
    let p = peer(&cse, PEER, rename);
    assert_eq!(p.get(PEER_AE, "uks-a").await.rsc, Rsc::ORIGINATOR_NOT_AUTHENTICATED);
    assert!(p.node.outbound().entries().is_empty(), "the peer did not accept a key shared with Mallory");
    // (b) The peer's own SaInit goes through; Mallory swaps her ticket into its SaAuth.
    let ticket = mallory.ticket.clone();
    let swap = mitm(move |m| {
        if let Message::Auth(auth) = m {
            auth.send_initiator_key.0.key_authorization_ticket = ticket.clone();
            auth.send_initiator_authorization_key.0.authorization_ticket_reference = Some(ticket.digest().to_vec());
        }
    });
    let p = peer(&cse, "/id-ae3", swap);
    assert!(p.get("Cae3-x", "uks-b").await.rsc.is_error());
    assert!(p.node.outbound().entries().is_empty());
    let (_, reply) =
        p.rb_exchanges().into_iter().find(|(q, _)| matches!(sa_message(q), Some(Message::Auth(_)))).unwrap();
    assert!(matches!(Message::decode(&rb::message_of(reply.pc.as_ref()).unwrap()).unwrap(),
        Message::AuthReply(r) if r.result == EstablishResult::Failure));
    assert_eq!((cse.inbound(), cse.executed()), (0, 0), "no SA bound to the wrong identity");
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Nonce reuse

/// (SA, key phase, seq) of every sealed message on the wire, both directions.
fn nonces(log: &Log) -> Vec<(SaId, u8, u64)> {
    let mut out = Vec::new();
    for (q, r) in log.lock().unwrap().iter() {
        for pc in [q.pc.as_ref(), r.pc.as_ref()].into_iter().flatten() {
            // Either form: the JWE in `m2m:seci`, or the compact bytes.
            let header = match compact::bytes(pc) {
                Some(bytes) => Some(decode_compact(&mut bytes.unwrap()).unwrap().header),
                None => epo_from_content(pc).ok().map(|e| decode_jwe(e.as_bytes(), &mut Vec::new()).unwrap().header),
            };
            if let Some(h) = header {
                // Requests and answers use different keys: tell them apart by direction.
                out.push((
                    h.sa_id,
                    h.key_phase + if std::ptr::eq(pc, q.pc.as_ref().unwrap()) { 0 } else { 128 },
                    h.seq,
                ));
            }
        }
    }
    out
}

fn assert_unique(n: &[(SaId, u8, u64)]) {
    let mut sorted = n.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), n.len(), "a (key, nonce) pair was used twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_reuse_across_threads_never_happens() {
    let cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let svc = p.svc.clone();
            tokio::spawn(async move {
                svc.oneshot(request(Operation::Retrieve, &base(), PEER_AE, &format!("c{i}"))).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_ok(&t.await.unwrap(), "concurrent");
    }
    let n = nonces(&p.log);
    assert_eq!(n.len(), 2 * 49);
    assert_unique(&n);
    assert_eq!(cse.executed(), 49);
    cse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_reuse_across_restarts_never_happens() {
    let mut cse = Cse::start(|_| {}).await;
    let config = base_config(cse.pki.node(PEER, &["Cae2*"]));
    let mut all = Vec::new();
    let mut sas = Vec::new();
    for round in 0..3 {
        if round == 2 {
            cse.restart().await;
        }
        // A peer "restarted": same credentials, no state.
        let p = peer_with(&config, cse.ingress, no_mitm());
        for i in 0..3 {
            assert_ok(&p.get(PEER_AE, &format!("r{round}-{i}")).await, "after restart");
        }
        sas.push(p.entry().sa_id());
        all.extend(nonces(&p.log));
    }
    assert_eq!(all.len(), 3 * 3 * 2);
    sas.dedup();
    assert_eq!(sas.len(), 3, "each restart made a fresh SA: {sas:?}");
    assert_unique(&all);
    assert_eq!(cse.executed(), 9);
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8/9. Handshake flood and state exhaustion

/// Small bounds: cookies from 4 half-open establishments on, 8 at most, 3 per source.
const FLOOD_LIMITS: Limits = Limits {
    max_half_open: 8,
    max_half_open_per_peer: 3,
    max_sas: 100,
    cookie_threshold: 4,
    init_rate_per_source: u32::MAX,
};

/// An attacker's address: another loopback address than the peers' 127.0.0.1.
fn attacker(n: u8) -> [u8; 4] {
    [127, 0, 1, n]
}

fn is_cookie(rsp: &ResponsePrimitive) -> bool {
    matches!(Message::decode(&rb::message_of(rsp.pc.as_ref()).expect("an SA reply")), Ok(Message::Cookie(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_from_one_claimed_peer_is_capped_and_others_still_establish() {
    let cse = Cse::start(|c| c.sa.limits = FLOOD_LIMITS).await;
    let rogue = DemoPki::new(); // a stranger's keys: nothing of it will ever complete
    let mut busy = 0;
    for _ in 0..20 {
        let rsp = cse.raw_from(attacker(1), bogus_init(&rogue, "/id-flood")).await;
        busy += usize::from(is_busy(&rsp));
    }
    assert_eq!(busy, 20 - FLOOD_LIMITS.max_half_open_per_peer, "half-open state for one source is capped");
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "legit").await, "a legitimate peer during the flood");
    assert_eq!((cse.inbound(), cse.executed()), (1, 1));
    cse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_claiming_the_legitimate_peers_id_does_not_lock_it_out() {
    let cse = Cse::start(|c| c.sa.limits = FLOOD_LIMITS).await;
    let rogue = DemoPki::new();
    for _ in 0..10 {
        cse.raw_from(attacker(1), bogus_init(&rogue, PEER)).await;
    }
    // The bound is per source: a claimed ID proves nothing before the establishment completes.
    let p = peer(&cse, PEER, no_mitm());
    let rsp = p.get(PEER_AE, "legit").await;
    assert_ok(&rsp, "the real /id-ae2 during a flood under its name");
    cse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_from_many_spoofed_ids_does_not_lock_out_other_peers() {
    let cse = Cse::start(|c| c.sa.limits = FLOOD_LIMITS).await;
    let rogue = DemoPki::new();
    let mut cookies = 0;
    for n in 0..20 {
        let rsp = cse.raw_from(attacker(n + 1), bogus_init(&rogue, &format!("/id-spoof{n}"))).await;
        cookies += usize::from(is_cookie(&rsp));
    }
    // From the threshold on, a flooder that does not return cookies costs no state and no
    // public-key work.
    assert_eq!(cookies, 20 - FLOOD_LIMITS.cookie_threshold);
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "legit").await, "a legitimate peer during a spoofed flood");
    let cookie_rounds = p.rb_exchanges().iter().filter(|(_, a)| is_cookie(a)).count();
    assert_eq!(cookie_rounds, 1, "the legitimate peer returned its cookie");
    cse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_exhaustion_half_open_and_sa_caps_hold() {
    // No cookies here, so that only the caps stand between the flood and the state.
    let caps = Limits { cookie_threshold: usize::MAX, ..FLOOD_LIMITS };
    let cse = Cse::start(|c| c.sa.limits = caps).await;
    let rogue = DemoPki::new();
    let mut held = 0;
    for n in 0..30 {
        let rsp = cse.raw_from(attacker(n + 1), bogus_init(&rogue, &format!("/id-spoof{n}"))).await;
        held += usize::from(!is_busy(&rsp));
    }
    assert_eq!(held, caps.max_half_open, "the global half-open cap holds");
    assert_eq!(cse.inbound(), 0);
    cse.shutdown().await;

    // Established SAs are capped too.
    let cse = Cse::start(|c| c.sa.limits = Limits { max_sas: 2, ..Limits::default() }).await;
    for (id, ae) in [("/id-ae2", "Cae2-x"), ("/id-ae3", "Cae3-x")] {
        assert_ok(&peer(&cse, id, no_mitm()).get(ae, id).await, id);
    }
    let third = peer(&cse, "/id-ae4", no_mitm());
    assert_eq!(third.get("Cae4-x", "third").await.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);
    assert!(is_busy(&third.rb_exchanges()[0].1));
    assert_eq!((cse.inbound(), cse.executed()), (2, 2));
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 10. SA identifiers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sa_identifier_guessing_gets_unknown_key_id() {
    let cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let entry = p.entry();
    let genuine = p.seal(&entry, "genuine");
    let jwe = epo(&genuine);
    let mut rng = SeededRng::new([9; 32]);
    for i in 0..64 {
        let guess = SaId::random(&mut rng);
        assert_ne!(guess, entry.sa_id());
        let forged = with_header(&jwe, |h| h["kid"] = b64(&guess.0).into());
        let rsp = cse.raw(with_epo(&genuine, &format!("g{i}"), &forged)).await;
        assert_eq!(rsp.rsc, Rsc::ESPRIM_UNKNOWN_KEY_ID, "guess {i}");
    }
    assert_eq!(cse.executed(), 1);
    assert_ok(&cse.raw(genuine).await, "the genuine one after the guesses");
    assert_eq!(cse.executed(), 2);
    cse.shutdown().await;
}

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

fn test_pair(seed: u8) -> (TestPki, Pair, Arc<Credentials>) {
    let mut rng = SeededRng::new([seed; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*", "/id-asn"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let p = Pair::new(
        initiator_config(i, pki.anchors.clone(), &Suite::ALL),
        responder_config(r.clone(), pki.anchors.clone(), &Suite::ALL),
        seed,
        T0,
    );
    (pki, p, r)
}

fn init_from(pki: &TestPki, id: &str, rng: &mut SeededRng) -> Vec<u8> {
    let creds = pki.node(id, SignatureAlgorithm::Ed25519, &["C*"], rng);
    let req = InitiateSaRequest { initiator: creds.node_id.clone(), responder: "/id-in".parse().unwrap() };
    Initiator::start(initiator_config(creds, pki.anchors.clone(), &Suite::ALL), &req, rng).unwrap().1
}

fn assigned(reply: &[u8]) -> SaId {
    let Message::InitReply(r) = Message::decode(reply).unwrap() else { panic!("SaInitReply expected") };
    r.parameters.sa_id.unwrap()
}

fn establish(p: &mut Pair) -> SaId {
    let req = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
    let ex = p.initiator.initiate(&req, p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(50);
    p.initiator.sas().next().expect("established").sa.sa_id
}

#[test]
fn sa_identifier_collision_and_reuse_after_removal_are_avoided() {
    let (pki, mut p, _) = test_pair(31);
    let live = establish(&mut p);
    // The responder's RNG (scripted) first proposes the live SA's identifier.
    let m1 = init_from(&pki, "/id-mn", &mut p.rng);
    let mut forced = ScriptedRng::new(vec![live.0.to_vec()], 5);
    let out = p.responder.handle(&m1, p.now, &mut forced, &mut AcceptAll);
    let got = assigned(&out.reply.unwrap());
    assert_ne!(got, live, "a live identifier was handed out twice");
    // After removal the identifier is tombstoned: not reissued either.
    let ex = p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: live }), p.now).unwrap();
    p.send(ex);
    p.run(10);
    assert!(p.responder.sa(live).is_none());
    let m1 = init_from(&pki, "/id-mn2", &mut p.rng);
    let mut forced = ScriptedRng::new(vec![live.0.to_vec(), got.0.to_vec()], 6);
    let out = p.responder.handle(&m1, p.now, &mut forced, &mut AcceptAll);
    let again = assigned(&out.reply.unwrap());
    assert!(again != live && again != got, "a removed or half-open identifier was reissued");
}

// ---------------------------------------------------------------------------------------------
// 11. Truncation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_is_refused_and_unauthenticated_removal_removes_nothing() {
    let cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let entry = p.entry();
    let genuine = p.seal(&entry, "genuine");
    let jwe = epo(&genuine);
    let parts: Vec<&str> = jwe.split('.').collect();
    let cut = |seg: usize, by: usize| {
        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let bytes = unb64(&p[seg]);
        p[seg] = b64(&bytes[..bytes.len() - by]);
        p.join(".")
    };
    let truncated =
        [cut(4, 1), cut(4, 8), cut(4, 16), cut(3, 1), cut(3, 4), parts[..4].join("."), jwe[..jwe.len() / 2].to_owned()];
    for (i, t) in truncated.iter().enumerate() {
        let rsp = cse.raw(with_epo(&genuine, &format!("t{i}"), t)).await;
        assert!([Rsc::ESPRIM_BAD_MAC, Rsc::BAD_REQUEST].contains(&rsp.rsc), "truncation {i}: {}", rsp.rsc);
    }
    assert_eq!(cse.executed(), 1);
    assert_ok(&cse.raw(genuine).await, "the untruncated message still opens");

    // A forged SA Removal (no keys) for the live SA, straight to the rb endpoint.
    let forged = Message::Control(ControlEnvelope {
        version: PROTOCOL_VERSION,
        sa_id: entry.sa_id(),
        epoch: 0,
        seq: 1_000,
        ciphertext: vec![0x5a; 96],
    });
    let rsp = cse.raw(rb::request(CSE_ID, PEER, "forged-removal".into(), &forged.encode())).await;
    let reply = rb::message_of(rsp.pc.as_ref()).map(|b| Message::decode(&b).unwrap());
    assert!(
        matches!(&reply, Some(Message::ControlError(e)) if e.reason == ControlRejection::DecryptionFailure),
        "{reply:?}"
    );
    assert_eq!(cse.inbound(), 1, "the SA survived");
    assert_ok(&p.get(PEER_AE, "after").await, "the SA still works");
    assert_eq!(p.entry().sa_id(), entry.sa_id(), "no re-establishment was needed");
    assert_eq!(cse.executed(), 3);
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 12. Rekey races (core: the Node does not expose updates, and the races need exact ordering)

fn open(table: &SaTable, id: SaId, wire: &[u8]) -> Result<Vec<u8>, SecureError> {
    let entry = table.get(id).ok_or(SecureError::UnknownSa)?;
    let mut scratch = Vec::new();
    entry.open(decode_jwe(wire, &mut scratch)?).map(|(p, _)| p.to_vec())
}

fn seal(table: &SaTable, id: SaId) -> Vec<u8> {
    let mut out = Vec::new();
    table.get(id).unwrap().seal(Encoding::Jwe, b"{\"x\":1}", &mut out).unwrap();
    out
}

/// Data flows both ways between two tables over the SA.
fn data_flows(ti: &SaTable, tr: &SaTable, id: SaId) {
    assert_eq!(open(tr, id, &seal(ti, id)).unwrap(), b"{\"x\":1}");
    let er = tr.get(id).unwrap();
    let mut out = Vec::new();
    er.seal_with(&er.current_epoch().unwrap(), Encoding::Jwe, b"{}", &mut out).unwrap();
    assert_eq!(open(ti, id, &out).unwrap(), b"{}");
}

#[test]
fn simultaneous_update_from_both_sides_converges() {
    let mut l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 41, T0);
    l.pair.advance(5_000);
    let id = l.sa_id;
    // Keys and identifier updates of the same SA requested at once: one runs, one is refused
    // locally (no two control exchanges of one SA in flight).
    let keys = l.pair.initiator.update(
        &UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys },
        l.pair.now,
        &mut l.pair.rng,
    );
    let ident = l.pair.initiator.update(
        &UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Identifier },
        l.pair.now,
        &mut l.pair.rng,
    );
    let ex = keys.expect("the first update starts");
    assert_eq!(ident.unwrap_err().result, UpdateResult::Rejected);
    l.pair.send(ex);
    l.pair.run(50);
    assert!(
        matches!(l.pair.initiator_events.last(), Some(InitiatorEvent::Updated { confirm, .. }) if confirm.result == UpdateResult::Accepted)
    );
    assert_eq!(l.initiator_table.get(id).unwrap().current_epoch().unwrap().number, 1);
    assert_eq!(l.responder_table.get(id).unwrap().current_epoch().unwrap().number, 1);
    data_flows(&l.initiator_table, &l.responder_table, id);

    // Both directions' SAs (one per side as Initiator) updated with their exchanges crossed.
    let mut a = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 42, T0);
    let mut b = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 43, T0);
    a.pair.advance(5_000);
    b.pair.advance(5_000);
    let xa = a
        .pair
        .initiator
        .update(
            &UpdateSaRequest { existing_sa_id: a.sa_id, operation: UpdateOperation::Keys },
            a.pair.now,
            &mut a.pair.rng,
        )
        .unwrap();
    let xb = b
        .pair
        .initiator
        .update(
            &UpdateSaRequest { existing_sa_id: b.sa_id, operation: UpdateOperation::Keys },
            b.pair.now,
            &mut b.pair.rng,
        )
        .unwrap();
    // Traffic under the old keys in both directions while both updates are in flight.
    let (old_a, old_b) = (seal(&a.initiator_table, a.sa_id), seal(&b.initiator_table, b.sa_id));
    a.pair.send(xa);
    b.pair.send(xb);
    a.pair.run(50);
    b.pair.run(50);
    for l in [&a, &b] {
        assert_eq!(l.responder_table.get(l.sa_id).unwrap().current_epoch().unwrap().number, 1);
        data_flows(&l.initiator_table, &l.responder_table, l.sa_id);
    }
    assert!(open(&a.responder_table, a.sa_id, &old_a).is_ok(), "old-epoch traffic opens in the grace period");
    assert!(open(&b.responder_table, b.sa_id, &old_b).is_ok());
}

#[test]
fn update_crossed_with_remove_leaves_no_half_updated_sa() {
    let mut l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 44, T0);
    l.pair.advance(5_000);
    let id = l.sa_id;
    let ex = l
        .pair
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, l.pair.now, &mut l.pair.rng)
        .unwrap();
    // The Responder removes the SA while the update is on the wire.
    assert_eq!(l.pair.responder.remove_local(id, l.pair.now).0.result, UpdateResult::Accepted);
    let out = l.pair.responder.handle(&ex.bytes, l.pair.now, &mut l.pair.rng, l.pair.agent.as_mut());
    let reply = out.reply.unwrap();
    assert!(matches!(Message::decode(&reply).unwrap(),
        Message::ControlError(e) if e.reason == ControlRejection::AlreadyMarkedInvalid));
    let events = l.pair.initiator.handle_response(ex.id, &reply, l.pair.now, &mut l.pair.rng);
    assert!(
        matches!(&events[..], [InitiatorEvent::Updated { confirm, .. }] if confirm.result == UpdateResult::Rejected),
        "{events:?}"
    );
    assert!(l.responder_table.get(id).is_none(), "no keys at the Responder");
    assert_eq!(open(&l.responder_table, id, &seal(&l.initiator_table, id)), Err(SecureError::UnknownSa));
}

#[test]
fn lost_last_message_of_establishment_and_update_recovers() {
    let (_, mut p, _) = test_pair(45);
    let (ti, tr) = (Arc::new(SaTable::new(TableConfig::default())), Arc::new(SaTable::new(TableConfig::default())));
    p.initiator.attach_table(ti.clone());
    p.responder.attach_table(tr.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let drop_at = Arc::new(AtomicUsize::new(3)); // SaAuthReply: the 4th message
    let (n, d) = (next.clone(), drop_at.clone());
    p.set_faults(move |i, _| {
        n.store(i + 1, Ordering::SeqCst);
        if i == d.load(Ordering::SeqCst) { Fault::Drop } else { Fault::Pass }
    });
    let id = establish(&mut p);
    assert!(p.responder.sa(id).is_some());
    // The SaAuth was resent byte for byte (no re-signing, no new nonces), and answered again.
    let to_r: Vec<&Vec<u8>> = p.wire.iter().filter(|(to_r, _)| *to_r).map(|(_, b)| b).collect();
    assert_eq!(to_r.len(), 3, "SaInit, SaAuth, SaAuth again");
    assert_eq!(to_r[1], to_r[2], "a retransmitted handshake message is byte-identical");
    data_flows(&ti, &tr, id);
    // Key update: request, confirm, response, ack: the ack is lost.
    p.advance(5_000);
    drop_at.store(next.load(Ordering::SeqCst) + 3, Ordering::SeqCst);
    let ex = p
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, p.now, &mut p.rng)
        .unwrap();
    p.send(ex);
    p.run(50);
    assert!(next.load(Ordering::SeqCst) > drop_at.load(Ordering::SeqCst) + 1, "something was retransmitted");
    assert!(
        matches!(p.initiator_events.last(), Some(InitiatorEvent::Updated { confirm, .. }) if confirm.result == UpdateResult::Accepted)
    );
    assert_eq!(ti.get(id).unwrap().current_epoch().unwrap().number, 1);
    assert_eq!(tr.get(id).unwrap().current_epoch().unwrap().number, 1);
    data_flows(&ti, &tr, id);
}

// ---------------------------------------------------------------------------------------------
// 13. Stale keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_key_after_removal_is_refused_cheaply() {
    let cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "first").await, "establish");
    let entry = p.entry();
    let pending = p.seal(&entry, "pending");
    let node = cse.sidecar.node();
    let weak = Arc::downgrade(&node.inbound().get(entry.sa_id()).unwrap().current_epoch().unwrap());
    assert_eq!(node.remove_inbound(entry.sa_id()).0.result, UpdateResult::Accepted);
    let rsp = cse.raw(pending.clone()).await;
    assert_eq!(rsp.rsc, Rsc::ESPRIM_UNKNOWN_KEY_ID, "refused at the lookup, before any AES");
    assert!(weak.upgrade().is_none(), "the removed SA's keys were freed");
    assert_eq!(cse.executed(), 1);
    // The peer's next request meets 4112, re-establishes and goes through.
    assert_ok(&p.get(PEER_AE, "after").await, "recovery");
    assert_ne!(p.entry().sa_id(), entry.sa_id());
    assert_eq!(cse.raw(pending).await.rsc, Rsc::ESPRIM_UNKNOWN_KEY_ID);
    assert_eq!(cse.executed(), 2);
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 14. Usage limits

#[test]
fn usage_limits_force_an_update_before_the_hard_limit() {
    let limits = UsageLimits { soft_messages: 3, hard_messages: 5, soft_bytes: u64::MAX, hard_bytes: u64::MAX };
    let mut l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig { limits, ..TableConfig::default() }, 46, T0);
    let (ti, tr, id) = (l.initiator_table.clone(), l.responder_table.clone(), l.sa_id);
    let ei = ti.get(id).unwrap();
    let mut out = Vec::new();
    let due: Vec<bool> = (0..5).map(|_| ei.seal(Encoding::Jwe, b"{}", &mut out).unwrap().update_due).collect();
    assert_eq!(due, [false, false, false, true, true], "the soft limit asks for an update before the hard one");
    assert_eq!(ei.seal(Encoding::Jwe, b"{}", &mut out).unwrap_err(), SecureError::Encryption, "hard limit: no wrap");
    l.pair.advance(5_000);
    let ex = l
        .pair
        .initiator
        .update(&UpdateSaRequest { existing_sa_id: id, operation: UpdateOperation::Keys }, l.pair.now, &mut l.pair.rng)
        .unwrap();
    l.pair.send(ex);
    l.pair.run(50);
    let epoch = ei.current_epoch().unwrap();
    assert_eq!((epoch.number, epoch.sent()), (1, 0), "fresh keys, fresh counters");
    assert!(!ei.update_requested());
    data_flows(&ti, &tr, id);
}

// ---------------------------------------------------------------------------------------------
// 15. Key transport: no decryption oracle

/// Runs an establishment by hand with the SaAuth corrupted by `corrupt`; returns the Responder's
/// reply bytes.
fn auth_reply_with(corrupt: impl FnOnce(&mut SaAuth, &SaAuth)) -> Vec<u8> {
    let mut rng = SeededRng::new([51; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let req = InitiateSaRequest { initiator: i.node_id.clone(), responder: r.node_id.clone() };
    let run = |rng: &mut SeededRng| {
        let (ini, m1) =
            Initiator::start(initiator_config(i.clone(), pki.anchors.clone(), &Suite::ALL), &req, rng).unwrap();
        let Message::Init(init) = Message::decode(&m1).unwrap() else { panic!() };
        let acc = Responder::accept(
            responder_config(r.clone(), pki.anchors.clone(), &Suite::ALL),
            &mut AcceptAll,
            &init,
            SaId([7; 8]),
            rng,
        )
        .ok()
        .unwrap();
        let (_, m3) = ini.handle(&acc.reply, T0, rng).unwrap();
        let Message::Auth(auth) = Message::decode(&m3).unwrap() else { panic!() };
        (acc, auth)
    };
    // Another run's SaAuth: well-formed keying material under the Responder's key, other secret.
    let (_, other) = run(&mut SeededRng::new([52; 32]));
    let (acc, mut auth) = run(&mut rng);
    corrupt(&mut auth, &other);
    match acc.state.handle(&auth, T0) {
        Ok(_) => panic!("a corrupted SaAuth was accepted"),
        Err(refusal) => refusal.reply,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_failures_look_alike() {
    // (a) Key transport: every way the transported keying material or its confirmation can fail
    // to decrypt / verify gets the byte-identical SaAuthReply.
    let replies = [
        auth_reply_with(|a, _| a.initiator_keying_material.0.keying_material[0] ^= 1),
        auth_reply_with(|a, _| *a.initiator_keying_material.0.keying_material.last_mut().unwrap() ^= 0x80),
        auth_reply_with(|a, _| a.initiator_keying_material.0.keying_material.iter_mut().for_each(|b| *b = 0)),
        auth_reply_with(|a, o| {
            a.initiator_keying_material.0.keying_material = o.initiator_keying_material.0.keying_material.clone()
        }),
        auth_reply_with(|a, _| a.responder_keying_material.0.response[0] ^= 1),
        auth_reply_with(|a, o| a.responder_keying_material.0.response = o.responder_keying_material.0.response.clone()),
    ];
    for (n, r) in replies.iter().enumerate() {
        assert_eq!(r, &replies[0], "corruption {n} answered differently: an oracle");
    }
    assert!(matches!(Message::decode(&replies[0]).unwrap(),
        Message::AuthReply(r) if r.cause == Some(RejectionCause::AuthenticationFailed)));

    // (b) Data path through the sidecar: every kind of tag failure, same RSC and same text.
    let cse = Cse::start(|_| {}).await;
    let p = peer(&cse, PEER, no_mitm());
    let q = peer(&cse, "/id-ae3", no_mitm());
    assert_ok(&p.get(PEER_AE, "p").await, "establish p");
    assert_ok(&q.get("Cae3-x", "q").await, "establish q");
    let (ep, eq) = (p.entry(), q.entry());
    // Numbers 1..=5 sealed; only 5 delivered: 1..=4 stay unseen, so every forgery below reaches
    // the tag check (not the replay check). The CSE side's answer to 5 goes out as its seq 1.
    let sealed: Vec<RequestPrimitive> = (1..=5).map(|s| p.seal(&ep, &format!("s{s}"))).collect();
    let answer = cse.raw(sealed[4].clone()).await;
    assert_ok(&answer, "seq 5");
    let req = sealed[4].clone();
    let reflected = epo_from_content(answer.pc.as_ref().unwrap()).unwrap().to_owned();
    let genuine = sealed[1].clone();
    let jwe = epo(&genuine);
    let other = String::from_utf8(q.seal_jwe(&eq, "other")).unwrap();
    let kid = b64(&ep.sa_id().0);
    let bad = [
        flip_segment(&jwe, 3, 0),                               // ciphertext
        flip_segment(&jwe, 3, -1),                              // ciphertext, last byte
        flip_segment(&jwe, 4, 0),                               // tag
        flip_segment(&jwe, 4, -1),                              // tag, last byte
        flip_segment(&jwe, 2, 0),                               // IV
        with_header(&jwe, |h| h["x"] = "y".into()),             // protected header (AAD)
        reflected,                                              // the CSE side's own output
        with_header(&other, |h| h["kid"] = kid.clone().into()), // sealed under another SA's keys
    ];
    let mut seen = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        let rsp = cse.raw(with_epo(&req, &format!("bad{i}"), b)).await;
        seen.push((rsp.rsc, format!("{:?}", rsp.pc)));
    }
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s, &seen[0], "tag failure {i} is distinguishable");
    }
    assert_eq!(seen[0].0, Rsc::ESPRIM_BAD_MAC);
    assert_eq!(cse.executed(), 3);
    assert_ok(&cse.raw(genuine).await, "the genuine message after all the forgeries");
    cse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_failures_look_alike_including_replay_and_staleness() {
    let cse = Cse::start(|c| c.sa.replay_window = 64).await;
    let p = peer(&cse, PEER, no_mitm());
    assert_ok(&p.get(PEER_AE, "p").await, "establish");
    let ep = p.entry();
    let sealed: Vec<RequestPrimitive> = (1..=100).map(|s| p.seal(&ep, &format!("s{s}"))).collect();
    assert_ok(&cse.raw(sealed[99].clone()).await, "seq 100");
    let jwe = epo(&sealed[50]);
    let probes = [
        with_epo(&sealed[50], "tag", &flip_segment(&jwe, 4, 0)), // bad tag
        sealed[99].clone(),                                      // replayed
        sealed[0].clone(),                                       // too old
    ];
    let mut seen = Vec::new();
    for probe in probes {
        let rsp = cse.raw(probe).await;
        seen.push((rsp.rsc, format!("{:?}", rsp.pc)));
    }
    assert_eq!(cse.executed(), 2);
    assert_eq!(seen[1], seen[0], "a replay is told apart from a forgery");
    assert_eq!(seen[2], seen[0], "a too-old message is told apart from a forgery");
    cse.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 16. Clock jumps

#[test]
fn clock_jumps_do_not_stretch_lifetimes() {
    // Half-open state: the wall clock jumps back a day, the monotonic clock moves past the
    // half-open lifetime: the state is gone, the SaAuth has nothing to continue.
    let (pki, mut p, r) = test_pair(61);
    let timing = Timing::default();
    let mut sam = ResponderSam::new(responder_config(r, pki.anchors.clone(), &Suite::ALL), timing, Limits::default());
    let m1 = init_from(&pki, "/id-asn2", &mut p.rng);
    sam.handle(&m1, T0, &mut p.rng, &mut AcceptAll);
    assert_eq!(sam.half_open(), 1);
    let back = Now { mono_ms: T0.mono_ms + timing.half_open_ms + 1, unix_secs: T0.unix_secs - 86_400 };
    sam.handle_timeout(back);
    assert_eq!(sam.half_open(), 0, "a wall clock set back does not keep half-open state alive");

    // An SA across a suspend: the monotonic clock barely moved, the wall clock jumped past the
    // peer's ticket expiry: the SA expires.
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 62, T0);
    let er = l.responder_table.get(l.sa_id).unwrap();
    assert!(l.responder_table.sweep(Now { mono_ms: T0.mono_ms + 10, unix_secs: T0.unix_secs + 60 }).is_empty());
    let resumed = Now { mono_ms: T0.mono_ms + 20, unix_secs: er.expires_unix() + 1 };
    assert_eq!(l.responder_table.sweep(resumed), [l.sa_id]);
    assert_eq!(open(&l.responder_table, l.sa_id, &seal(&l.initiator_table, l.sa_id)), Err(SecureError::UnknownSa));
    // And the wall clock set back after expiry does not revive it.
    assert!(l.responder_table.sweep(Now { mono_ms: T0.mono_ms + 30, unix_secs: T0.unix_secs }).is_empty());
    assert!(l.responder_table.get(l.sa_id).is_none());
}

// ---------------------------------------------------------------------------------------------
// 17. Plaintext identity bypass and 18. forged authentication headers (secure by default at the
// sidecar). Self-contained, so that it merges with the rows others add.

mod sidecar_defaults {
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};
    use onem2m_sa_http::{ServerConfig, request_to_primitive, response_to_http, serve};
    use onem2m_sa_sidecar::proxy::{PEER_HEADER, SA_ID_HEADER};
    use onem2m_sa_tower::PlaintextPolicy;

    use super::*;

    fn from(fr: Option<&str>, rqi: &str) -> RequestPrimitive {
        let mut req = request(Operation::Retrieve, &base(), "-", rqi);
        req.fr = fr.map(str::to_owned);
        req
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plaintext_claiming_an_authorized_originator_is_refused_by_default() {
        // The sidecar's default policy: no allow-list. An attacker on the network claims, in
        // plaintext, the legitimate peer's AE-ID (inside its ticket), an AE-ID in general, the
        // CSE's own ID, or no originator at all (an AE registration asking for an AE-ID).
        let cse = Cse::start(|c| c.ingress.as_mut().unwrap().plaintext = PlaintextPolicy::default()).await;
        for (n, fr) in
            [Some(PEER_AE), Some("Cattacker"), Some("Sattacker"), Some(CSE_ID), Some(""), None].into_iter().enumerate()
        {
            let rsp = cse.raw(from(fr, &format!("plain-{n}"))).await;
            assert_eq!(rsp.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED, "{fr:?}");
        }
        let mut register = request(Operation::Create, &base(), "-", "register");
        (register.fr, register.ty) = (None, Some(2));
        register.pc = Some(serde_json::json!({"m2m:ae": {"rn": "intruder", "api": "Nx", "rr": false, "srv": ["3"]}}));
        assert_eq!(cse.raw(register).await.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);
        assert_eq!(cse.executed(), 0, "nothing in plaintext reached the CSE");
        // The legitimate peer, over its SA, is served.
        let legit = peer(&cse, PEER, no_mitm());
        assert_ok(&legit.get(PEER_AE, "legit").await, "over the SA");
        assert_eq!(cse.executed(), 1);
        cse.shutdown().await;
    }

    /// Every request the upstream received: its `rqi` and its `X-SA-Peer` / `X-SA-Id` values.
    type Seen = Arc<Mutex<Vec<(String, Vec<String>, Vec<String>)>>>;

    /// A stand-in CSE on raw HTTP (the demo CSE sees primitives only, not headers).
    async fn recording_cse() -> (String, Seen) {
        let listener = loopback().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let rec = seen.clone();
        let svc = service_fn(move |req: http::Request<Bytes>| {
            let values = |name| req.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
            let prim = request_to_primitive(&req).unwrap();
            rec.lock().unwrap().push((prim.rqi.clone(), values(PEER_HEADER), values(SA_ID_HEADER)));
            let answer = response_to_http(&ResponsePrimitive::new(Rsc::OK, &prim.rqi)).unwrap();
            async move { Ok::<_, std::convert::Infallible>(answer) }
        });
        tokio::spawn(serve(listener, svc, ServerConfig::default(), std::future::pending()));
        (format!("http://{addr}"), seen)
    }

    /// What an attacker adds: the legitimate peer's ID, another SA's identifier, in every case
    /// variant a header name may come in.
    fn forged() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("X-SA-Peer", HeaderValue::from_static(PEER));
        h.append("x-sa-peer", HeaderValue::from_static(CSE_ID));
        h.append("X-SA-Id", HeaderValue::from_static("0123456789abcdef"));
        h.append("X-Sa-Anything", HeaderValue::from_static("reserved"));
        h
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forged_authentication_headers_never_reach_the_cse() {
        let (upstream, seen) = recording_cse().await;
        let pki = DemoPki::new();
        let nowhere = loopback().await.unwrap().local_addr().unwrap();
        let mut config = cse_sidecar_config(&pki, &upstream, nowhere);
        config.ingress.as_mut().unwrap().plaintext.allow = vec!["Clegacy".parse().unwrap()];
        let (sidecar, ingress) = start_sidecar(&config).await;
        let http = client(ingress);

        // Plaintext, allow-listed, claiming to have come over the legitimate peer's SA.
        let rsp = http.call_with_headers(&from(Some("Clegacy"), "plain-listed"), forged()).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK);
        // Plaintext, not allow-listed: refused whatever it claims.
        let rsp = http.call_with_headers(&from(Some(PEER_AE), "plain-refused"), forged()).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::SECURITY_ASSOCIATION_REQUIRED);

        // The legitimate peer over its SA, with a MITM adding the forged headers to every outer
        // request (rb and data).
        let node = Node::new(base_config(pki.node(PEER, &["Cae2*"])).node_config());
        let transport = service_fn(move |req: RequestPrimitive| http.call_with_headers(&req, forged()));
        let route: Route = Arc::new(|_: &RequestPrimitive| Some(CSE_ID.parse().unwrap()));
        let svc = SendSecureLayer::new(node.clone(), route).layer(transport);
        for rqi in ["sealed-1", "sealed-2"] {
            assert_ok(&svc.clone().oneshot(request(Operation::Retrieve, &base(), PEER_AE, rqi)).await.unwrap(), rqi);
        }

        let sa_id = sidecar.node().inbound().entries()[0].sa_id().to_string();
        let sealed = |rqi: &str| (rqi.to_owned(), vec![PEER.to_owned()], vec![sa_id.clone()]);
        assert_eq!(
            *seen.lock().unwrap(),
            [("plain-listed".to_owned(), vec![], vec![]), sealed("sealed-1"), sealed("sealed-2")],
            "the CSE learns the true peer of sealed requests, and nothing else"
        );
        sidecar.shutdown().await;
    }
}
