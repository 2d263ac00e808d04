//! Faults across the whole path: AE → AE-side sidecar → (relay) → CSE-side sidecar → (relay) →
//! demo CSE, with a fault-injecting relay ([`onem2m_sa_integration::relay`]) on one hop at a
//! time, and stand-in CSEs that are slow or down, and sidecars killed with requests in flight.
//!
//! **The invariant** every test checks ([`Net::tally`]): each request is executed at the CSE
//! at most once (the demo CSE's `executed()` log has no duplicate `rqi`), and the client gets
//! either the CSE's answer (2001 with the representation of *its* content instance) or a clear
//! error (a oneM2M 4xxx/5xxx code, or a transport error) — never an answer to another request,
//! and never a success for a request the CSE did not execute. Each test also asserts the
//! relay's counters and the exact outcome its fault must have, so that it can fail.
//!
//! Which faults mean something on which hop: the **secured hop** (AE-side sidecar → CSE-side
//! sidecar) is the network; every fault applies, and the SA must turn duplicates into replays
//! and corruption into refusals. The **CSE hop** (CSE-side sidecar → its CSE) is plaintext on
//! loopback in real deployments: no SA protects it, so a duplicate there *is* executed twice
//! and a byte flipped inside a value is executed as changed. Those two are tested only to
//! document the behaviour (duplicate), or with a flip the CSE's parser must refuse (corrupt at
//! byte 0: `{` becomes `z`).
//!
//! | Fault | Hop | Expected outcome | Test |
//! |---|---|---|---|
//! | drop request | secured | not executed; client 5103 (no resend: `SendSecure` resends only after an unsealed 4112 or 5211) | [`drop_request_on_the_secured_hop`] |
//! | drop answer | secured | executed once; client 5103 (executed, outcome unknown to the client) | [`drop_answer_on_the_secured_hop`] |
//! | duplicate | secured | executed once; the copy is refused as a replay (4115); client 2001 | [`duplicate_on_the_secured_hop_is_refused_as_a_replay`] |
//! | delay 80 ms | secured | executed once; client 2001 | [`delay_on_the_secured_hop`] |
//! | reorder (pairs) | secured | the later request goes first; both accepted (replay window), 2001 each | [`reorder_on_the_secured_hop_stays_within_the_replay_window`] |
//! | corrupt (seeded byte) | secured | refused (4000/4107/4111/4115/5210), never executed; a flip that names an unknown SA (4112) makes `SendSecure` re-establish and resend the intact request once | [`corrupt_on_the_secured_hop_is_refused_and_never_executed`] |
//! | seeded mix of all | secured | the invariant; executed-but-unanswered only for dropped answers; copies refused (4115) | [`seeded_mix_on_the_secured_hop`] |
//! | drop request | CSE | not executed; sealed 5103 back | [`drop_request_on_the_cse_hop`] |
//! | drop answer | CSE | executed once; sealed 5103 back | [`drop_answer_on_the_cse_hop`] |
//! | duplicate | CSE | **executed twice** (the copy: 4105); client 2001 — documented, no SA on this hop | [`duplicate_on_the_plaintext_cse_hop_executes_twice`] |
//! | delay 80 ms | CSE | client 2001 | [`delay_on_the_cse_hop`] |
//! | reorder (pairs) | CSE | the later request executed first; each client gets its own answer | [`reorder_on_the_cse_hop`] |
//! | corrupt (byte 0) | CSE | the CSE refuses the body (4000), not executed; sealed 4000 back | [`corrupt_on_the_cse_hop_is_refused_by_the_cse`] |
//! | seeded mix (no duplicate; corrupt at byte 0) | CSE | the invariant; executed-but-unanswered only for dropped answers | [`seeded_mix_on_the_cse_hop`] |
//! | CSE slow (never answers; `request_timeout` 300 ms) | CSE | 4008; exactly one upstream call per request, one request per client request on the secured hop | [`cse_slow_times_out_with_4008_without_retries`] |
//! | CSE down (port closed) | CSE | 5103, sealed (outer answer 2000); one request per client request | [`cse_down_answers_a_sealed_5103`] |
//! | CSE-side sidecar killed, requests stalled before the CSE | both | in flight: 5103, each executed once after all; after the restart: 4112, re-establish, 2001 | [`cse_side_killed_with_requests_in_flight_at_the_cse`] |
//! | CSE-side sidecar restarted, sealed requests stalled on the secured hop | secured | each meets 4112; one re-establishment, one resend each; 2001, executed once | [`cse_side_restarted_under_sealed_requests_in_flight`] |
//! | AE-side sidecar killed, sealed requests stalled on the secured hop | secured | clients: transport error; the CSE side still executes each once; after the restart: new SA, 2001 | [`ae_side_killed_with_sealed_requests_in_flight`] |
//! | swallowed sealed answer + forged unsealed 4112 (first copy of each CREATE, UPDATE, NOTIFY, DELETE) | secured | executed once each; the resend over a fresh SA gets the CSE's kept answer; client 2001/2004/2000/2002 | [`a_swallowed_answer_and_a_forged_4112_on_the_secured_hop_execute_each_operation_once`] |
//! | forged unsealed 4112 for every request | secured | each executed once; client 4112; one re-establishment and one resend in all (rate limit) | [`a_forger_on_the_secured_hop_forces_one_establishment_not_one_per_request`] |
//! | forged unsealed answer (2001 + representation, request not forwarded) | secured | refused with 4115 ("answer not secured"); an unsealed error code passes as a code alone, its content replaced | [`a_forged_unsealed_success_on_the_secured_hop_is_not_delivered`] |
//!
//! Deterministic: plans are fixed or seeded ([`relay::seeded_plan`]); the only waits on timers
//! are the faults themselves (delays ≤ 200 ms; in the mixes, a reorder with no later request
//! in time is held ≤ 200 ms; the 300 ms request timeout of the slow CSE). Reorders in pairs are
//! released by the pair's other request, in-flight requests are held by the relay
//! ([`Fault::Stall`]) and released by the test. Sidecar ports come from below the ephemeral
//! range (see [`free_port`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use onem2m_primitive::{Operation, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::SaId;
use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{NotificationReceiver, ServedCse, serve_demo_cse, serve_receiver};
use onem2m_sa_http::{ClientConfig, HttpClient};
use onem2m_sa_integration::relay::{self, Counts, Fault, Kind, Relay, read_message, seeded_plan};
use onem2m_sa_integration::{Isolated, free_port, request};
use onem2m_sa_sidecar::config::{Config, HttpSettings};
use onem2m_sa_sidecar::demo::{AE_ID, CSE_BASE, CSE_ID, DemoPki, ae_sidecar_config, cse_sidecar_config, loopback};
use serde_json::json;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Requests per single-fault test.
const N: usize = 12;
/// Bound on any wait for the relay to reach a state.
const WAIT: Duration = Duration::from_secs(10);

/// What the CSE-side sidecar has behind it.
enum Upstream {
    /// The demo CSE, behind the CSE-hop relay.
    DemoCse,
    /// Something at this address, directly (a stand-in).
    At(SocketAddr),
}

/// The whole path, each sidecar on its own runtime, on fixed ports (so either can be killed
/// and started again where it was).
struct Net {
    cse: Option<ServedCse>,
    /// CSE-side sidecar → demo CSE.
    cse_hop: Option<Relay>,
    /// AE-side sidecar → CSE-side sidecar.
    secured: Relay,
    cse_config: Config,
    ae_config: Config,
    cse_ports: (SocketAddr, SocketAddr),
    ae_ports: (SocketAddr, SocketAddr),
    cse_side: Option<Isolated>,
    ae_side: Option<Isolated>,
    client: HttpClient,
    cnt: String,
    _receiver: NotificationReceiver,
}

/// One client request and what came of it.
#[derive(Debug)]
struct Outcome {
    rqi: String,
    rn: String,
    con: String,
    answer: Result<ResponsePrimitive, String>,
}

/// What a set of outcomes came to (after [`Net::tally`] checked the invariant on them).
#[derive(Debug, Default)]
struct Tally {
    /// 2001 with the right representation.
    created: usize,
    /// Error answers by RSC.
    errors: BTreeMap<u16, usize>,
    /// Transport errors at the client.
    transport: usize,
    /// Requests the CSE executed (once).
    executed: usize,
    /// Requests the CSE executed although the client got an error.
    executed_unanswered: usize,
    /// Requests the client got an error for and the CSE did not execute.
    refused_unexecuted: usize,
}

impl Tally {
    fn errors(&self) -> usize {
        self.errors.values().sum()
    }
}

fn client_for(addr: SocketAddr) -> HttpClient {
    let config = ClientConfig { request_timeout: Duration::from_secs(10), ..ClientConfig::default() };
    HttpClient::new(&format!("http://{addr}"), config).unwrap()
}

/// Creates content instance `{tag}-c{i}` with rqi `{tag}-{i}`.
async fn create(client: HttpClient, cnt: String, tag: String, i: usize) -> Outcome {
    let (rqi, rn, con) = (format!("{tag}-{i}"), format!("{tag}-c{i}"), format!("{tag}:{i}"));
    let mut req = request(Operation::Create, &cnt, AE_ID, &rqi);
    req.ty = Some(4);
    req.pc = Some(json!({"m2m:cin": {"rn": rn, "con": con}}));
    let answer = client.oneshot(req).await.map_err(|e| e.to_string());
    Outcome { rqi, rn, con, answer }
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Net {
    async fn start(upstream: Upstream, cse_http: impl FnOnce(&mut HttpSettings)) -> Self {
        let pki = DemoPki::new();
        let receiver = serve_receiver(loopback().await.unwrap()).await.unwrap();
        let (cse, cse_hop, upstream_base) = match upstream {
            Upstream::DemoCse => {
                let cse = serve_demo_cse(loopback().await.unwrap(), DemoCse::new(CSE_ID, CSE_BASE)).await.unwrap();
                let hop = Relay::start(cse.addr).await.unwrap();
                let base = format!("http://{}", hop.addr());
                (Some(cse), Some(hop), base)
            }
            Upstream::At(addr) => (None, None, format!("http://{addr}")),
        };
        let cse_ports = (free_port(), free_port());
        let ae_ports = (free_port(), free_port());
        let secured = Relay::start(cse_ports.0).await.unwrap();
        // Establishment is not under test here: SA messages pass, outside the plans.
        secured.spare_sa_messages(true);
        let mut cse_config = cse_sidecar_config(&pki, &upstream_base, ae_ports.0);
        cse_http(&mut cse_config.http);
        let ae_config = ae_sidecar_config(&pki, secured.addr(), &format!("http://{}", receiver.addr));
        let mut net = Self {
            cse,
            cse_hop,
            secured,
            cse_config,
            ae_config,
            cse_ports,
            ae_ports,
            cse_side: None,
            ae_side: None,
            client: client_for(ae_ports.1),
            cnt: format!("{CSE_ID}/{CSE_BASE}/meter/data"),
            _receiver: receiver,
        };
        net.start_cse_side();
        net.start_ae_side();
        if net.cse.is_some() {
            net.register().await;
        }
        net
    }

    fn start_cse_side(&mut self) {
        let (config, (i, e)) = (&self.cse_config, self.cse_ports);
        self.cse_side = Some(blocking(|| Isolated::start(config, Some(i), Some(e))));
    }

    fn start_ae_side(&mut self) {
        let (config, (i, e)) = (&self.ae_config, self.ae_ports);
        self.ae_side = Some(blocking(|| Isolated::start(config, Some(i), Some(e))));
        // A fresh pool: the old one's connections went with the old process.
        self.client = client_for(e);
    }

    fn kill_cse_side(&mut self) {
        let side = self.cse_side.take().expect("running");
        blocking(|| side.kill());
    }

    fn kill_ae_side(&mut self) {
        let side = self.ae_side.take().expect("running");
        blocking(|| side.kill());
    }

    /// The SA the AE side sends over.
    fn ae_sa(&self) -> SaId {
        let entries = self.ae_side.as_ref().expect("running").sidecar().node().outbound().entries();
        assert_eq!(entries.len(), 1, "one outbound SA");
        entries[0].sa_id()
    }

    fn cse_hop(&self) -> &Relay {
        self.cse_hop.as_ref().expect("a demo CSE behind the CSE-hop relay")
    }

    /// Registers the AE and creates its container (and so establishes the SA), all passing.
    async fn register(&self) {
        let base = format!("{CSE_ID}/{CSE_BASE}");
        let mut ae = request(Operation::Create, &base, AE_ID, "ae");
        ae.ty = Some(2);
        ae.pc = Some(json!({"m2m:ae": {"rn": "meter", "api": "Nm", "rr": true, "srv": ["3"]}}));
        assert_eq!(self.client.clone().oneshot(ae).await.unwrap().rsc, Rsc::CREATED);
        let mut cnt = request(Operation::Create, &format!("{base}/meter"), AE_ID, "cnt");
        cnt.ty = Some(3);
        cnt.pc = Some(json!({"m2m:cnt": {"rn": "data"}}));
        assert_eq!(self.client.clone().oneshot(cnt).await.unwrap().rsc, Rsc::CREATED);
    }

    /// Starts `ids` concurrently; they are in flight until joined.
    fn spawn(&self, tag: &str, ids: std::ops::Range<usize>) -> JoinSet<Outcome> {
        let mut set = JoinSet::new();
        for i in ids {
            set.spawn(create(self.client.clone(), self.cnt.clone(), tag.to_owned(), i));
        }
        set
    }

    /// Creates `{tag}-c0` … in waves of `wave` concurrent requests.
    async fn run(&self, tag: &str, n: usize, wave: usize) -> Vec<Outcome> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + wave).min(n);
            out.extend(join(self.spawn(tag, start..end)).await);
            start = end;
        }
        out
    }

    /// How often the CSE executed each rqi.
    fn executions(&self) -> HashMap<String, usize> {
        let mut runs = HashMap::new();
        for (_, rqi) in self.cse.as_ref().expect("a demo CSE").cse.executed() {
            *runs.entry(rqi).or_default() += 1;
        }
        runs
    }

    /// Checks the invariant for `outcomes` (and that nothing at all ran twice at the CSE),
    /// and counts.
    fn tally(&self, outcomes: &[Outcome]) -> Tally {
        let runs = self.executions();
        let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "executed more than once at the CSE: {twice:?}");
        Self::count(outcomes, &runs)
    }

    fn count(outcomes: &[Outcome], runs: &HashMap<String, usize>) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            let executed = runs.get(&o.rqi).copied().unwrap_or(0) > 0;
            t.executed += usize::from(executed);
            let failed = match &o.answer {
                Err(_) => {
                    t.transport += 1;
                    true
                }
                Ok(rsp) => {
                    assert_eq!(rsp.rqi, o.rqi, "an answer to another request: {rsp:?}");
                    if rsp.rsc == Rsc::CREATED {
                        let cin = &rsp.pc.as_ref().expect("a representation")["m2m:cin"];
                        assert_eq!(
                            (cin["rn"].as_str(), cin["con"].as_str()),
                            (Some(o.rn.as_str()), Some(o.con.as_str())),
                            "{}: the representation of another resource",
                            o.rqi
                        );
                        assert!(executed, "{}: a success for a request the CSE did not execute", o.rqi);
                        t.created += 1;
                        false
                    } else {
                        assert!(
                            (4000..6000).contains(&rsp.rsc.code()),
                            "{}: neither the CSE's answer nor a clear error: {rsp:?}",
                            o.rqi
                        );
                        *t.errors.entry(rsp.rsc.code()).or_default() += 1;
                        true
                    }
                }
            };
            if failed {
                if executed {
                    t.executed_unanswered += 1;
                } else {
                    t.refused_unexecuted += 1;
                }
            }
        }
        t
    }

    /// Every rqi the CSE executed was sent by this test (registration included): nothing
    /// corrupted into another request ran.
    fn only_known_executed(&self, all: &[&[Outcome]]) {
        let known: HashSet<&str> =
            all.iter().flat_map(|o| o.iter()).map(|o| o.rqi.as_str()).chain(["ae", "cnt"]).collect();
        for rqi in self.executions().keys() {
            assert!(known.contains(rqi.as_str()), "the CSE executed an rqi nobody sent: {rqi}");
        }
    }

    async fn stop(mut self) {
        let sides = (self.ae_side.take(), self.cse_side.take());
        blocking(|| drop(sides));
        if let Some(cse) = self.cse.take() {
            cse.shutdown().await;
        }
    }
}

async fn join(mut set: JoinSet<Outcome>) -> Vec<Outcome> {
    let mut out = Vec::new();
    while let Some(o) = set.join_next().await {
        out.push(o.expect("request task"));
    }
    out.sort_by(|a, b| a.rqi.cmp(&b.rqi));
    out
}

async fn wait(relay: &Relay, what: &str, done: impl FnMut(&Counts) -> bool) {
    if tokio::time::timeout(WAIT, relay.wait_until(done)).await.is_err() {
        panic!("relay never reached: {what}; {:?}", relay.counts());
    }
}

/// Every other request (0, 2, 4, …) gets `fault`; the rest pass.
fn every_other(fault: Fault) -> impl FnMut(usize) -> Fault + Send + 'static {
    move |i| if i % 2 == 0 { fault } else { Fault::Pass }
}

/// Data requests (not SA messages) the relay saw under its current plan.
fn data_requests(relay: &Relay) -> usize {
    relay.plan_log().iter().filter(|e| e.kind != Kind::SaMessage).count()
}

// ---------------------------------------------------------------------------------------------
// The secured hop: AE-side sidecar → CSE-side sidecar.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_request_on_the_secured_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.secured.set_plan(every_other(Fault::DropRequest));
    let out = net.run("dq", N, 1).await;
    let t = net.tally(&out);
    let c = net.secured.counts();
    assert_eq!(c.dropped_requests, N / 2, "{c:?}");
    assert_eq!(data_requests(&net.secured), N, "no resend of a dropped request");
    assert_eq!((t.created, t.executed), (N / 2, N / 2), "{t:?}");
    assert_eq!(t.errors, BTreeMap::from([(Rsc::TARGET_NOT_REACHABLE.code(), N / 2)]), "{t:?}");
    assert_eq!(t.refused_unexecuted, N / 2);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_answer_on_the_secured_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.secured.set_plan(every_other(Fault::DropAnswer));
    let out = net.run("da", N, 1).await;
    let t = net.tally(&out);
    let c = net.secured.counts();
    assert_eq!(c.dropped_answers, N / 2, "{c:?}");
    assert_eq!(data_requests(&net.secured), N, "no resend after a lost answer");
    assert_eq!((t.created, t.executed), (N / 2, N), "{t:?}");
    assert_eq!(t.errors, BTreeMap::from([(Rsc::TARGET_NOT_REACHABLE.code(), N / 2)]), "{t:?}");
    assert_eq!(t.executed_unanswered, N / 2, "executed, the answer lost: once, never again");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_on_the_secured_hop_is_refused_as_a_replay() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.secured.set_plan(every_other(Fault::Duplicate));
    let out = net.run("dup", N, 1).await;
    let t = net.tally(&out);
    assert_eq!(net.secured.counts().duplicated, N / 2);
    let copies: Vec<Option<u16>> =
        net.secured.log().iter().filter(|e| e.fault == Fault::Duplicate).map(|e| e.duplicate_answer).collect();
    assert_eq!(copies, vec![Some(Rsc::ESPRIM_BAD_MAC.code()); N / 2], "every copy refused as a replay");
    assert_eq!((t.created, t.executed, t.errors()), (N, N, 0), "{t:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_on_the_secured_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.secured.set_plan(every_other(Fault::Delay(Duration::from_millis(80))));
    let out = net.run("dl", N, 1).await;
    let t = net.tally(&out);
    assert_eq!(net.secured.counts().delayed, N / 2);
    assert_eq!((t.created, t.executed, t.errors(), t.transport), (N, N, 0, 0), "{t:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_on_the_secured_hop_stays_within_the_replay_window() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    // In pairs: the first of each pair to reach the relay (an even index) is held until the
    // second has been answered.
    net.secured.set_plan(every_other(Fault::Reorder));
    // Each pair is sent together: the partner always comes, however slow the machine.
    net.secured.set_hold_limit(Duration::from_secs(5));
    let out = net.run("ro", N, 2).await;
    let t = net.tally(&out);
    let c = net.secured.counts();
    assert_eq!((c.reordered, c.reorder_timeouts), (N / 2, 0), "{c:?}");
    // The held request ended after the one that arrived after it.
    let log = net.secured.plan_log();
    let ended = |i: usize| log.iter().position(|e| e.index == Some(i)).unwrap();
    for pair in 0..N / 2 {
        assert!(ended(2 * pair) > ended(2 * pair + 1), "pair {pair} not reordered: {log:?}");
    }
    assert_eq!((t.created, t.executed, t.errors()), (N, N, 0), "{t:?}");
    net.stop().await;
}

/// Refusals a corrupted secured request may meet.
const CORRUPT_REFUSALS: [Rsc; 6] = [
    Rsc::BAD_REQUEST,
    Rsc::SECURITY_ASSOCIATION_REQUIRED,
    Rsc::ESPRIM_UNSUPPORTED_OPTION,
    Rsc::ESPRIM_UNKNOWN_KEY_ID,
    Rsc::ESPRIM_BAD_MAC,
    Rsc::ESPRIM_DECRYPTION_ERROR,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_on_the_secured_hop_is_refused_and_never_executed() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    let mut rng = relay::Rng::new(0x5eed_c0de);
    net.secured
        .set_plan(move |i| if i % 2 == 0 { Fault::Corrupt { at: rng.below(1 << 16) as usize } } else { Fault::Pass });
    let out = net.run("cr", N, 1).await;
    let t = net.tally(&out);
    let log = net.secured.log();
    let corrupted: Vec<_> = log.iter().filter(|e| matches!(e.fault, Fault::Corrupt { .. })).collect();
    assert_eq!(net.secured.counts().corrupted, corrupted.len());
    assert!(corrupted.len() >= N / 2, "{log:?}");
    for e in &corrupted {
        let refused = e.answer.is_some_and(|rsc| CORRUPT_REFUSALS.iter().any(|r| r.code() == rsc));
        assert!(refused, "a corrupted request was not refused: {e:?}");
    }
    // 4112 ("unknown SA") is the one refusal SendSecure acts on: it re-establishes and resends
    // the intact request once.
    let unknown_sa = corrupted.iter().filter(|e| e.answer == Some(Rsc::ESPRIM_UNKNOWN_KEY_ID.code())).count();
    assert_eq!(t.errors(), corrupted.len() - unknown_sa, "{t:?}");
    assert_eq!(t.refused_unexecuted, t.errors(), "a refused request was executed: {t:?}");
    assert_eq!((t.created, t.executed, t.transport), (N - t.errors(), N - t.errors(), 0), "{t:?}");
    net.only_known_executed(&[&out]);
    eprintln!("corrupt/secured: refusals {:?}", corrupted.iter().map(|e| e.answer).collect::<Vec<_>>());
    net.stop().await;
}

/// A seeded mix of every fault.
fn mix(seed: u64) -> relay::Plan {
    seeded_plan(
        seed,
        vec![
            (5, Fault::Pass),
            (1, Fault::DropRequest),
            (1, Fault::DropAnswer),
            (1, Fault::Duplicate),
            (1, Fault::Delay(Duration::from_millis(40))),
            (1, Fault::Reorder),
            (1, Fault::Corrupt { at: 0 }),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_mix_on_the_secured_hop() {
    const SEED: u64 = 20_240_611;
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.secured.set_plan(mix(SEED));
    let out = net.run("mx", 3 * N, 3).await;
    let t = net.tally(&out);
    let c = net.secured.counts();
    eprintln!("mix/secured: {c:?}\n{t:?}");
    assert!(
        c.dropped_requests > 0
            && c.dropped_answers > 0
            && c.duplicated > 0
            && c.delayed > 0
            && c.corrupted > 0
            && c.reordered + c.reorder_timeouts > 0,
        "the seed exercises every fault: {c:?}"
    );
    assert_eq!(t.created + t.errors() + t.transport, 3 * N);
    assert_eq!(t.transport, 0, "the AE side always answers: {t:?}");
    assert!(t.executed_unanswered <= c.dropped_answers, "executed without an answer only when one was dropped: {t:?}");
    assert!(t.errors() >= c.dropped_requests, "{t:?}");
    for e in net.secured.log().iter().filter(|e| e.fault == Fault::Duplicate && e.answer == Some(2000)) {
        assert_eq!(e.duplicate_answer, Some(Rsc::ESPRIM_BAD_MAC.code()), "a copy not refused: {e:?}");
    }
    net.only_known_executed(&[&out]);
    net.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The CSE hop: CSE-side sidecar → demo CSE (plaintext loopback).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_request_on_the_cse_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.cse_hop().set_plan(every_other(Fault::DropRequest));
    let out = net.run("uq", N, 1).await;
    let t = net.tally(&out);
    assert_eq!(net.cse_hop().counts().dropped_requests, N / 2);
    assert_eq!(data_requests(net.cse_hop()), N, "no resend of a dropped request");
    assert_eq!((t.created, t.executed, t.refused_unexecuted), (N / 2, N / 2, N / 2), "{t:?}");
    assert_eq!(t.errors, BTreeMap::from([(Rsc::TARGET_NOT_REACHABLE.code(), N / 2)]), "{t:?}");
    // The 5103 came back sealed: every answer on the secured hop is a sealed 2000.
    assert!(net.secured.log().iter().filter(|e| e.kind == Kind::Secured).all(|e| e.answer == Some(2000)));
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_answer_on_the_cse_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.cse_hop().set_plan(every_other(Fault::DropAnswer));
    let out = net.run("ua", N, 1).await;
    let t = net.tally(&out);
    assert_eq!(net.cse_hop().counts().dropped_answers, N / 2);
    assert_eq!(data_requests(net.cse_hop()), N, "no resend after a lost answer");
    assert_eq!((t.created, t.executed, t.executed_unanswered), (N / 2, N, N / 2), "{t:?}");
    assert_eq!(t.errors, BTreeMap::from([(Rsc::TARGET_NOT_REACHABLE.code(), N / 2)]), "{t:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_on_the_plaintext_cse_hop_executes_twice() {
    // Documents the behaviour: this hop is loopback plaintext, outside any SA; nothing on it
    // can tell a copy from a new request. The copy of a CREATE runs again and meets 4105.
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.cse_hop().set_plan(every_other(Fault::Duplicate));
    let out = net.run("ud", N, 1).await;
    let runs = net.executions();
    let twice: HashSet<&str> = runs.iter().filter(|(_, n)| **n == 2).map(|(r, _)| r.as_str()).collect();
    assert_eq!(twice.len(), N / 2, "{runs:?}");
    assert!(runs.values().all(|n| *n <= 2));
    let copies: Vec<_> = net.cse_hop().log().into_iter().filter(|e| e.fault == Fault::Duplicate).collect();
    assert_eq!(copies.len(), N / 2);
    for e in &copies {
        assert_eq!((e.answer, e.duplicate_answer), (Some(2001), Some(Rsc::CONFLICT.code())), "{e:?}");
        assert!(twice.contains(e.rqi.as_deref().unwrap()), "{e:?}");
    }
    let t = Net::count(&out, &runs);
    assert_eq!((t.created, t.executed, t.errors()), (N, N, 0), "the client still gets the first answer: {t:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_on_the_cse_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.cse_hop().set_plan(every_other(Fault::Delay(Duration::from_millis(80))));
    let out = net.run("ul", N, 1).await;
    let t = net.tally(&out);
    assert_eq!(net.cse_hop().counts().delayed, N / 2);
    assert_eq!((t.created, t.executed, t.errors(), t.transport), (N, N, 0, 0), "{t:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_on_the_cse_hop() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    net.cse_hop().set_plan(every_other(Fault::Reorder));
    // Each pair is sent together: the partner always comes, however slow the machine.
    net.cse_hop().set_hold_limit(Duration::from_secs(5));
    let out = net.run("ur", N, 2).await;
    let t = net.tally(&out);
    let c = net.cse_hop().counts();
    assert_eq!((c.reordered, c.reorder_timeouts), (N / 2, 0), "{c:?}");
    // The CSE executed the later request of each pair first; each client got its own answer.
    let log = net.cse_hop().plan_log();
    let order: Vec<String> = net.cse.as_ref().unwrap().cse.executed().into_iter().map(|(_, r)| r).collect();
    let at = |i: usize| {
        let rqi = log.iter().find(|e| e.index == Some(i)).and_then(|e| e.rqi.clone()).unwrap();
        order.iter().position(|r| *r == rqi).unwrap()
    };
    for pair in 0..N / 2 {
        assert!(at(2 * pair) > at(2 * pair + 1), "pair {pair} not reordered at the CSE");
    }
    assert_eq!((t.created, t.executed, t.errors()), (N, N, 0), "{t:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_on_the_cse_hop_is_refused_by_the_cse() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    // Byte 0 of the JSON body (`{` → `z`): a flip the CSE must refuse. A flip inside a value
    // would be executed as changed; nothing protects this hop.
    net.cse_hop().set_plan(every_other(Fault::Corrupt { at: 0 }));
    let out = net.run("uc", N, 1).await;
    let t = net.tally(&out);
    assert_eq!(net.cse_hop().counts().corrupted, N / 2);
    assert_eq!((t.created, t.executed, t.refused_unexecuted), (N / 2, N / 2, N / 2), "{t:?}");
    assert_eq!(t.errors, BTreeMap::from([(Rsc::BAD_REQUEST.code(), N / 2)]), "{t:?}");
    net.only_known_executed(&[&out]);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_mix_on_the_cse_hop() {
    const SEED: u64 = 1;
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    let mut plan = mix(SEED);
    net.cse_hop().set_plan(move |i| match plan(i) {
        // No duplicates on this hop (see the table), and only flips the CSE must refuse.
        Fault::Duplicate => Fault::Pass,
        Fault::Corrupt { .. } => Fault::Corrupt { at: 0 },
        other => other,
    });
    let out = net.run("um", 3 * N, 3).await;
    let t = net.tally(&out);
    let c = net.cse_hop().counts();
    eprintln!("mix/cse: {c:?}\n{t:?}");
    assert!(
        c.dropped_requests > 0
            && c.dropped_answers > 0
            && c.delayed > 0
            && c.corrupted > 0
            && c.reordered + c.reorder_timeouts > 0,
        "the seed exercises every fault: {c:?}"
    );
    assert_eq!((t.created + t.errors(), t.transport), (3 * N, 0), "{t:?}");
    assert_eq!(t.executed_unanswered, c.dropped_answers, "{t:?}");
    assert_eq!(t.refused_unexecuted, c.dropped_requests + c.corrupted, "{t:?}");
    net.only_known_executed(&[&out]);
    net.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The CSE slow or down.

/// A stand-in CSE that reads requests and never answers.
struct Blackhole {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    async fn start() -> Self {
        let listener = loopback().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let count = count.clone();
                connections.spawn(async move {
                    let mut buf = Vec::new();
                    while let Ok(Some(_)) = read_message(&mut stream, &mut buf).await {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { addr, requests, task }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cse_slow_times_out_with_4008_without_retries() {
    let slow = Blackhole::start().await;
    let net = Net::start(Upstream::At(slow.addr), |h| h.request_timeout = Duration::from_millis(300)).await;
    let out = net.run("slow", 3, 1).await;
    for o in &out {
        let rsp = o.answer.as_ref().expect("an answer");
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::REQUEST_TIMEOUT, o.rqi.as_str()), "{rsp:?}");
    }
    assert_eq!(slow.requests.load(Ordering::SeqCst), 3, "one upstream call per request");
    assert_eq!(data_requests(&net.secured), 3, "one secured request per client request");
    // The sidecar's upstream gives up before the server's own timeout: the 4008 travels sealed.
    let outer: Vec<_> = net.secured.log().iter().map(|e| e.answer).collect();
    assert!(outer.iter().all(|a| *a == Some(2000)), "answered sealed: {outer:?}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cse_down_answers_a_sealed_5103() {
    let closed = free_port();
    let net = Net::start(Upstream::At(closed), |_| {}).await;
    let out = net.run("down", 3, 1).await;
    for o in &out {
        let rsp = o.answer.as_ref().expect("an answer");
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (Rsc::TARGET_NOT_REACHABLE, o.rqi.as_str()), "{rsp:?}");
    }
    let secured: Vec<_> = net.secured.log().into_iter().filter(|e| e.kind == Kind::Secured).collect();
    assert_eq!(secured.len(), 3, "one secured request per client request");
    assert!(secured.iter().all(|e| e.answer == Some(2000)), "answered sealed: {secured:?}");
    net.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Sidecars killed with requests in flight.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cse_side_killed_with_requests_in_flight_at_the_cse() {
    let mut net = Net::start(Upstream::DemoCse, |_| {}).await;
    let before = net.run("pre", 2, 1).await;
    let sa = net.ae_sa();

    // Four requests opened by the CSE side and on their way to the CSE when it dies.
    let answered = net.cse_hop().counts().upstream_answers;
    net.cse_hop().set_plan(|_| Fault::Stall);
    let flight = net.spawn("fly", 0..4);
    wait(net.cse_hop(), "4 stalled", |c| c.stalled == 4).await;
    net.kill_cse_side();
    let flown = join(flight).await;
    // The packets already sent still arrive: each is executed, once; the answers go nowhere.
    net.cse_hop().set_plan(|_| Fault::Pass);
    net.cse_hop().release_stalled();
    wait(net.cse_hop(), "4 answered by the CSE", |c| c.upstream_answers >= answered + 4).await;

    net.start_cse_side();
    let after = net.run("post", 3, 1).await;

    let (tb, tf, ta) = (net.tally(&before), net.tally(&flown), net.tally(&after));
    assert_eq!(tb.created, 2);
    assert_eq!(tf.errors, BTreeMap::from([(Rsc::TARGET_NOT_REACHABLE.code(), 4)]), "{tf:?}");
    assert_eq!(tf.executed_unanswered, 4, "executed once, the answer lost with the sidecar: {tf:?}");
    assert_eq!(ta.created, 3, "after the restart: 4112, re-established, resent: {ta:?}");
    assert_ne!(net.ae_sa(), sa, "the AE side re-established");
    let refused = net.secured.log().iter().filter(|e| e.answer == Some(Rsc::ESPRIM_UNKNOWN_KEY_ID.code())).count();
    assert_eq!(refused, 1, "one 4112, then the new SA");
    net.only_known_executed(&[&before, &flown, &after]);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cse_side_restarted_under_sealed_requests_in_flight() {
    let mut net = Net::start(Upstream::DemoCse, |_| {}).await;
    let sa = net.ae_sa();

    // Three sealed requests on the wire while the CSE side dies and comes back without its SAs.
    let mark = net.secured.log().len();
    net.secured.set_plan(|_| Fault::Stall);
    let flight = net.spawn("fly", 0..3);
    wait(&net.secured, "3 stalled", |c| c.stalled == 3).await;
    net.kill_cse_side();
    net.start_cse_side();
    net.secured.set_plan(|_| Fault::Pass);
    net.secured.release_stalled();
    let flown = join(flight).await;

    let t = net.tally(&flown);
    assert_eq!((t.created, t.executed), (3, 3), "4112 → re-establish → resend, once each: {t:?}");
    let log = net.secured.log().split_off(mark);
    let stalled: Vec<_> = log.iter().filter(|e| e.fault == Fault::Stall).collect();
    assert_eq!(stalled.len(), 3);
    assert!(stalled.iter().all(|e| e.answer == Some(Rsc::ESPRIM_UNKNOWN_KEY_ID.code())), "{stalled:?}");
    let resent = log.iter().filter(|e| e.kind == Kind::Secured && e.fault == Fault::Pass).count();
    assert_eq!(resent, 3, "one resend each");
    assert_ne!(net.ae_sa(), sa);
    let after = net.run("post", 2, 1).await;
    assert_eq!(net.tally(&after).created, 2);
    net.only_known_executed(&[&flown, &after]);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ae_side_killed_with_sealed_requests_in_flight() {
    let mut net = Net::start(Upstream::DemoCse, |_| {}).await;
    let sa = net.ae_sa();

    let answered = net.secured.counts().upstream_answers;
    net.secured.set_plan(|_| Fault::Stall);
    let flight = net.spawn("fly", 0..3);
    wait(&net.secured, "3 stalled", |c| c.stalled == 3).await;
    net.kill_ae_side();
    let flown = join(flight).await;
    assert!(flown.iter().all(|o| o.answer.is_err()), "the AE side died under them: {flown:?}");
    // Sealed requests already on the wire still arrive, over an SA the CSE side holds.
    net.secured.set_plan(|_| Fault::Pass);
    net.secured.release_stalled();
    wait(&net.secured, "3 answered", |c| c.upstream_answers >= answered + 3).await;

    net.start_ae_side();
    let after = net.run("post", 3, 1).await;
    let (tf, ta) = (net.tally(&flown), net.tally(&after));
    assert_eq!((tf.transport, tf.executed_unanswered), (3, 3), "{tf:?}");
    assert_eq!(ta.created, 3, "{ta:?}");
    assert_ne!(net.ae_sa(), sa, "the restarted AE side established anew");
    net.only_known_executed(&[&flown, &after]);
    net.stop().await;
}

// ---------------------------------------------------------------------------------------------
// At most once under an attacker who swallows sealed answers and forges unsealed 4112s.

impl Net {
    /// The AE side's node (its SendSecure's SAs and recovery settings).
    fn ae_node(&self) -> onem2m_sa_tower::Node {
        self.ae_side.as_ref().expect("running").sidecar().node().clone()
    }

    /// Sends `req` through the AE side.
    async fn send(&self, req: onem2m_primitive::RequestPrimitive) -> ResponsePrimitive {
        self.client.clone().oneshot(req).await.expect("an answer")
    }
}

/// A CREATE, UPDATE, NOTIFY and DELETE under the AE's container, with rqis `{tag}-create` …
fn four_operations(net: &Net, tag: &str) -> Vec<(onem2m_primitive::RequestPrimitive, Rsc)> {
    let cin = format!("{}/{tag}-cin", net.cnt);
    let mut create = request(Operation::Create, &net.cnt, AE_ID, &format!("{tag}-create"));
    create.ty = Some(4);
    create.pc = Some(json!({"m2m:cin": {"rn": format!("{tag}-cin"), "con": "v1"}}));
    let mut update = request(Operation::Update, &net.cnt, AE_ID, &format!("{tag}-update"));
    update.pc = Some(json!({"m2m:cnt": {"lbl": [tag]}}));
    let mut notify = request(Operation::Notify, &net.cnt, AE_ID, &format!("{tag}-notify"));
    notify.pc = Some(json!({"m2m:sgn": {"sur": "sub", "nev": {"rep": {}, "net": 3}}}));
    let delete = request(Operation::Delete, &cin, AE_ID, &format!("{tag}-delete"));
    vec![(create, Rsc::CREATED), (update, Rsc::UPDATED), (notify, Rsc::OK), (delete, Rsc::DELETED)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_answer_and_a_forged_4112_on_the_secured_hop_execute_each_operation_once() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    // Every operation makes the AE side re-establish: no rate limit here (the next test has it).
    let node = net.ae_node();
    node.set_recovery(onem2m_sa_tower::Recovery { min_interval: Duration::ZERO, ..node.recovery() });
    // The first copy of each request reaches the CSE side and is executed; its sealed answer is
    // swallowed and the client's sidecar told "unknown SA". The resend passes.
    net.secured.set_plan(every_other(Fault::ForgeUnknownSa));
    let before = net.ae_sa();
    for (req, expected) in four_operations(&net, "fx") {
        let (op, rqi) = (req.op, req.rqi.clone());
        let rsp = net.send(req).await;
        assert_eq!((rsp.rsc, rsp.rqi.as_str()), (expected, rqi.as_str()), "{op:?}: {rsp:?}");
        if op == Operation::Create {
            assert_eq!(rsp.pc.as_ref().unwrap()["m2m:cin"]["con"], "v1", "the CSE's own answer");
        }
    }
    let c = net.secured.counts();
    assert_eq!(c.forged_unknown_sa, 4, "{c:?}");
    assert_eq!(data_requests(&net.secured), 8, "one resend per request");
    let log = net.secured.plan_log();
    let swallowed: Vec<_> = log.iter().filter(|e| e.fault == Fault::ForgeUnknownSa).map(|e| e.answer).collect();
    assert_eq!(swallowed, vec![Some(Rsc::OK.code()); 4], "every swallowed answer was a sealed one");
    let runs = net.executions();
    for op in ["create", "update", "notify", "delete"] {
        assert_eq!(runs.get(&format!("fx-{op}")), Some(&1), "{op}: {runs:?}");
    }
    assert_ne!(net.ae_sa(), before, "the AE side re-established");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forger_on_the_secured_hop_forces_one_establishment_not_one_per_request() {
    let net = Net::start(Upstream::DemoCse, |_| {}).await;
    let node = net.ae_node();
    let established = || node.outbound().entries().len();
    assert_eq!(established(), 1);
    net.secured.set_plan(|_| Fault::ForgeUnknownSa);
    let before = net.ae_sa();
    let out = net.run("fall", N, 1).await;
    let t = net.tally(&out);
    // The first request re-established and resent once (the copy got the kept answer, which
    // was swallowed too); every later one, within the recovery interval, got the error at once.
    assert_eq!(t.errors, BTreeMap::from([(Rsc::ESPRIM_UNKNOWN_KEY_ID.code(), N)]), "{t:?}");
    assert_eq!((t.executed, t.executed_unanswered), (N, N), "each executed exactly once: {t:?}");
    assert_eq!(data_requests(&net.secured), N + 1, "one resend in all");
    let after = net.ae_sa();
    assert_ne!(after, before, "one re-establishment");
    net.secured.set_plan(|_| Fault::Pass);
    let later = net.run("fpass", 2, 1).await;
    assert_eq!(net.tally(&later).created, 2);
    assert_eq!(net.ae_sa(), after, "no further establishment");
    net.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A forged answer on the secured hop.

/// A stand-in on the secured hop that forwards SA messages to `target` (so the SA is real) and
/// answers every other request itself, unsealed, with `2001` and a representation: what an
/// on-path attacker, or a broken middlebox, can send.
async fn forger(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = loopback().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let forged = Arc::new(AtomicUsize::new(0));
    let count = forged.clone();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            connections.spawn(async move {
                let mut buf = Vec::new();
                while let Ok(Some(req)) = read_message(&mut stream, &mut buf).await {
                    let answer = if String::from_utf8_lossy(&req.body).contains("\"sa:msg\"") {
                        let mut up = tokio::net::TcpStream::connect(target).await.unwrap();
                        up.write_all(&[req.head.as_slice(), req.body.as_slice()].concat()).await.unwrap();
                        let rsp = read_message(&mut up, &mut Vec::new()).await.unwrap().unwrap();
                        [rsp.head, rsp.body].concat()
                    } else {
                        count.fetch_add(1, Ordering::SeqCst);
                        let rqi = req.header("x-m2m-ri").unwrap_or_default();
                        let body = r#"{"m2m:cin":{"rn":"forged","con":"forged"}}"#;
                        format!(
                            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-M2M-RSC: 2001\r\n\
                             X-M2M-RI: {rqi}\r\nX-M2M-RVI: 3\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes()
                    };
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, forged, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_unsealed_success_on_the_secured_hop_is_not_delivered() {
    let mut net = Net::start(Upstream::DemoCse, |_| {}).await;
    // The AE side now reaches the CSE side through the forger.
    let (forger_addr, forged, task) = forger(net.cse_ports.0).await;
    net.kill_ae_side();
    net.ae_config = {
        let mut c = net.ae_config.clone();
        c.peers[0].address = format!("http://{forger_addr}");
        c
    };
    net.start_ae_side();
    let out = net.run("forged", 2, 1).await;
    task.abort();
    assert_eq!(forged.load(Ordering::SeqCst), 2, "both requests met the forger");
    for o in &out {
        let rsp = o.answer.as_ref().expect("an answer");
        assert!(
            rsp.rsc.is_error(),
            "{}: an unsealed {} with content {:?} was delivered as the CSE's answer",
            o.rqi,
            rsp.rsc,
            rsp.pc
        );
        assert!(!format!("{:?}", rsp.pc).contains("forged"), "nothing of the forged content reaches the client");
    }
    let t = net.tally(&out);
    assert_eq!((t.created, t.executed), (0, 0), "{t:?}");
    net.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The relay itself.

#[tokio::test]
async fn the_relay_reads_messages_one_at_a_time_and_seeded_plans_repeat() {
    let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nX-M2M-RI: r1\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
    let (mut stream, mut buf) = (&wire[..], Vec::new());
    let first = read_message(&mut stream, &mut buf).await.unwrap().unwrap();
    assert_eq!((first.body.as_slice(), first.header("x-m2m-ri").as_deref()), (&b"abc"[..], Some("r1")));
    let second = read_message(&mut stream, &mut buf).await.unwrap().unwrap();
    assert!(second.body.is_empty() && second.head.starts_with(b"GET /b"));
    assert!(read_message(&mut stream, &mut buf).await.unwrap().is_none());
    let mut chunked = &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..];
    assert!(read_message(&mut chunked, &mut Vec::new()).await.is_err());

    let (mut a, mut b) = (mix(9), mix(9));
    let run_a: Vec<Fault> = (0..200).map(&mut a).collect();
    let run_b: Vec<Fault> = (0..200).map(&mut b).collect();
    assert_eq!(run_a, run_b);
    assert!(run_a.contains(&Fault::DropRequest) && run_a.iter().any(|f| matches!(f, Fault::Corrupt { .. })));
}
