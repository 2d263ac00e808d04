//! A fault-injecting HTTP/1.1 relay between two hops (AE-side sidecar → CSE-side sidecar, or
//! CSE-side sidecar → its CSE), acting per request.
//!
//! Every connection accepted is served request by request: the relay reads one request (head
//! and a `Content-Length` body; chunked bodies are refused, sizes are capped), numbers it in
//! arrival order, asks the [plan](Relay::set_plan) what to do with it, and carries it to the
//! target on a fresh upstream connection, reading exactly one answer back. What it can do:
//!
//! * [`Fault::Pass`] — forward and answer unchanged;
//! * [`Fault::DropRequest`] — close the client's connection without forwarding;
//! * [`Fault::DropAnswer`] — forward, then close the client's connection instead of answering;
//! * [`Fault::Duplicate`] — forward the request, then the same bytes again on a second upstream
//!   connection once the first answer is in; the client gets the first answer;
//! * [`Fault::Delay`] — wait (at most [`MAX_DELAY`]) before forwarding;
//! * [`Fault::Reorder`] — hold the request until the next request has been forwarded and
//!   answered (or the [hold limit](Relay::set_hold_limit) passed), then forward it;
//! * [`Fault::Corrupt`] — flip the lowest bit of one body byte, then forward;
//! * [`Fault::Stall`] — hold the request until [`Relay::release_stalled`] (a test's handle on
//!   "requests in flight");
//! * [`Fault::ForgeUnknownSa`] — the attack on at-most-once: forward the request, swallow the
//!   target's answer and answer the client an unsealed 4112 ("unknown SA") itself.
//!
//! The plan is any `FnMut(usize) -> Fault` (the index counts the requests it was asked about);
//! [`seeded_plan`] draws from weighted choices with a seeded generator, so a run is repeatable.
//! SA establishment and control messages (`sa:msg`) can be [spared](Relay::spare_sa_messages):
//! they pass untouched and take no index. [`Relay::counts`] and [`Relay::log`] tell what the
//! relay did.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request or answer head the relay reads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request or answer body the relay reads.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest [`Fault::Delay`] applied (longer ones are cut to this).
pub const MAX_DELAY: Duration = Duration::from_millis(200);
/// Longest a [`Fault::Stall`] holds a request if it is never released.
pub const MAX_STALL: Duration = Duration::from_secs(10);

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Forward it and its answer unchanged.
    Pass,
    /// Close the client's connection without forwarding.
    DropRequest,
    /// Forward it, then close the client's connection without the answer.
    DropAnswer,
    /// Forward it twice, on two upstream connections (the second once the first answer is in),
    /// and answer with the first answer.
    Duplicate,
    /// Forward it after this long (at most [`MAX_DELAY`]).
    Delay(Duration),
    /// Hold it until the next request has been forwarded and answered, then forward it.
    Reorder,
    /// Flip the lowest bit of body byte `at` (modulo the body's length), then forward it.
    Corrupt {
        /// Offset into the body.
        at: usize,
    },
    /// Hold it until [`Relay::release_stalled`], then forward it.
    Stall,
    /// Forward it, swallow the answer and answer the client an unsealed 4112 ("unknown SA"),
    /// as an on-path attacker can.
    ForgeUnknownSa,
}

/// What a request carried, as far as the relay can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An SA establishment or control message (`sa:msg`).
    SaMessage,
    /// A secured primitive (`m2m:seci`, or a body of the compact form's media type).
    Secured,
    /// Anything else.
    Plain,
}

impl Kind {
    /// What a message with this `Content-Type` and body carries.
    pub fn of(content_type: Option<&str>, body: &[u8]) -> Self {
        let compact = content_type.is_some_and(|t| t.eq_ignore_ascii_case(onem2m_primitive::compact::MEDIA_TYPE));
        if !compact && contains(body, b"\"sa:msg\"") {
            Self::SaMessage
        } else if compact || contains(body, b"\"m2m:seci\"") {
            Self::Secured
        } else {
            Self::Plain
        }
    }
}

/// One request the relay handled.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Which plan it met: the number of [`Relay::set_plan`] calls before it arrived.
    pub plan: usize,
    /// Its index in the plan, `None` if it was spared.
    pub index: Option<usize>,
    /// What was done to it.
    pub fault: Fault,
    /// What it carried.
    pub kind: Kind,
    /// Its `X-M2M-RI`.
    pub rqi: Option<String>,
    /// The `X-M2M-RSC` of the target's answer (forwarded or dropped), if one came.
    pub answer: Option<u16>,
    /// The `X-M2M-RSC` of the answer to the duplicate, for [`Fault::Duplicate`].
    pub duplicate_answer: Option<u16>,
}

/// Counters of what the relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests read from clients.
    pub requests: usize,
    /// Requests spared from the plan (SA messages, when asked).
    pub spared: usize,
    /// Requests forwarded unchanged ([`Fault::Pass`]).
    pub passed: usize,
    /// Requests dropped before forwarding.
    pub dropped_requests: usize,
    /// Answers dropped after forwarding.
    pub dropped_answers: usize,
    /// Requests forwarded a second time.
    pub duplicated: usize,
    /// Requests delayed.
    pub delayed: usize,
    /// Requests held until a later request had been answered.
    pub reordered: usize,
    /// Requests held for reordering that no later request released in time.
    pub reorder_timeouts: usize,
    /// Requests whose body had a bit flipped.
    pub corrupted: usize,
    /// Requests stalled (counted when the stall begins).
    pub stalled: usize,
    /// Answers swallowed and replaced with a forged unsealed 4112.
    pub forged_unknown_sa: usize,
    /// Exchanges with the target that completed (an answer was read), duplicates included.
    pub upstream_answers: usize,
    /// Exchanges with the target that failed (connect, write, or no complete answer).
    pub upstream_failures: usize,
    /// Answers written back to clients.
    pub answers_forwarded: usize,
    /// Answers that could not be written back (the client had gone).
    pub answers_lost: usize,
    /// Requests or answers that could not be parsed (or were over the caps).
    pub malformed: usize,
}

/// A plan: the fault for the request with the given index.
pub type Plan = Box<dyn FnMut(usize) -> Fault + Send>;

/// Every request passes.
pub fn pass() -> Plan {
    Box::new(|_| Fault::Pass)
}

/// A small deterministic generator (SplitMix64) for seeded plans.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A plan drawing from `choices` (weight, fault) with a generator seeded with `seed`; a chosen
/// [`Fault::Corrupt`] gets a random offset. The same seed gives the same sequence of faults.
pub fn seeded_plan(seed: u64, choices: Vec<(u32, Fault)>) -> Plan {
    let total: u64 = choices.iter().map(|(w, _)| u64::from(*w)).sum();
    assert!(total > 0, "a seeded plan needs a positive weight");
    let mut rng = Rng::new(seed);
    Box::new(move |_| {
        let mut pick = rng.below(total);
        for (w, fault) in &choices {
            if pick < u64::from(*w) {
                return match fault {
                    Fault::Corrupt { .. } => Fault::Corrupt { at: rng.below(1 << 20) as usize },
                    other => *other,
                };
            }
            pick -= u64::from(*w);
        }
        Fault::Pass
    })
}

/// A request or an answer as read off the wire.
#[derive(Debug, Clone)]
pub struct Message {
    /// Start line and header fields, through the empty line.
    pub head: Vec<u8>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Message {
    /// The value of header `name` (case-insensitive), if present once or more (the first).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = std::str::from_utf8(&self.head).ok()?;
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// Whether either side asked to close the connection after this message.
    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Its `X-M2M-RSC`, if it has one.
    pub fn rsc(&self) -> Option<u16> {
        self.header("x-m2m-rsc").and_then(|v| v.parse().ok())
    }

    /// The message as it goes on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.head.len() + self.body.len());
        all.extend_from_slice(&self.head);
        all.extend_from_slice(&self.body);
        all
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn invalid(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// Reads one HTTP/1.1 message (head and `Content-Length` body) from `stream`; `buf` keeps bytes
/// read past its end for the next call. `Ok(None)` if the stream ends cleanly before a message
/// starts. Chunked bodies and messages over the caps are errors.
pub async fn read_message<R: AsyncRead + Unpin>(stream: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<Message>> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(invalid("head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(invalid("stream ended inside a head")) };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head: Vec<u8> = buf.drain(..head_end).collect();
    let probe = Message { head, body: Vec::new() };
    if probe.header("transfer-encoding").is_some() {
        return Err(invalid("chunked bodies are not supported"));
    }
    let len = match probe.header("content-length") {
        Some(v) => v.parse::<usize>().map_err(|_| invalid("bad content-length"))?,
        None => 0,
    };
    if len > MAX_BODY_BYTES {
        return Err(invalid("body too large"));
    }
    while buf.len() < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid("stream ended inside a body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..len).collect();
    Ok(Some(Message { head: probe.head, body }))
}

struct State {
    plan: Plan,
    generation: usize,
    next: usize,
    spare_sa_messages: bool,
    hold_limit: Duration,
    /// The request held by [`Fault::Reorder`]: its index, and the sender that releases it.
    held: Option<(usize, oneshot::Sender<()>)>,
    counts: Counts,
    log: Vec<Exchange>,
    /// Every request and answer as read, in order, once [`Relay::record_wire`] was called.
    wire: Option<Vec<u8>>,
}

struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    changed: Notify,
    stall_gate: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.lock().counts);
        self.changed.notify_waiters();
    }
}

/// A running relay; dropping it stops it and every connection it serves.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("addr", &self.addr).field("target", &self.shared.target).finish()
    }
}

impl Relay {
    /// A relay on a free loopback port, forwarding to `target`; every request passes until
    /// [`Self::set_plan`].
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Self::start_on(listener, target)
    }

    /// A relay accepting on `listener`, forwarding to `target`.
    pub fn start_on(listener: TcpListener, target: SocketAddr) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State {
                plan: pass(),
                generation: 0,
                next: 0,
                spare_sa_messages: false,
                hold_limit: MAX_DELAY,
                held: None,
                counts: Counts::default(),
                log: Vec::new(),
                wire: None,
            }),
            changed: Notify::new(),
            stall_gate: watch::channel(0).0,
        });
        let accept = spawn_accept(listener, shared.clone(), serve);
        Ok(Self { addr, shared, accept })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Applies `plan` to the requests read from now on; indices start again at 0.
    pub fn set_plan(&self, plan: impl FnMut(usize) -> Fault + Send + 'static) {
        let mut state = self.shared.lock();
        state.plan = Box::new(plan);
        state.generation += 1;
        state.next = 0;
    }

    /// Whether SA messages (`sa:msg`) pass untouched, outside the plan.
    pub fn spare_sa_messages(&self, spare: bool) {
        self.shared.lock().spare_sa_messages = spare;
    }

    /// How long a [`Fault::Reorder`] waits for a later request at most ([`MAX_DELAY`] by
    /// default, at most [`MAX_STALL`]). Reaching it makes the reorder a delay; a workload that
    /// always sends a later request (pairs in flight together) can set it high, so that a slow
    /// machine does not turn its reorders into delays.
    pub fn set_hold_limit(&self, limit: Duration) {
        self.shared.lock().hold_limit = limit.min(MAX_STALL);
    }

    /// Releases every request [`Fault::Stall`] holds now.
    pub fn release_stalled(&self) {
        self.shared.stall_gate.send_modify(|g| *g += 1);
    }

    /// What it did so far.
    pub fn counts(&self) -> Counts {
        self.shared.lock().counts
    }

    /// From now on, keep a copy of every request and answer that crosses the relay (a tap).
    pub fn record_wire(&self) {
        self.shared.lock().wire.get_or_insert_with(Vec::new);
    }

    /// What crossed the relay since [`Self::record_wire`], requests and answers as read (an
    /// answer the plan swallowed included), in order.
    pub fn wire(&self) -> Vec<u8> {
        self.shared.lock().wire.clone().unwrap_or_default()
    }

    /// Every request handled so far, in the order they ended (an exchange is logged before its
    /// answer is forwarded).
    pub fn log(&self) -> Vec<Exchange> {
        self.shared.lock().log.clone()
    }

    /// The requests of [`Self::log`] that met the current plan.
    pub fn plan_log(&self) -> Vec<Exchange> {
        let state = self.shared.lock();
        state.log.iter().filter(|e| e.plan == state.generation).cloned().collect()
    }

    /// Waits until `done` holds for the counters.
    pub async fn wait_until(&self, mut done: impl FnMut(&Counts) -> bool) {
        loop {
            let mut changed = std::pin::pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            if done(&self.counts()) {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What became of one request.
enum Outcome {
    /// Answer the client with this.
    Answer(Message),
    /// Close the client's connection without an answer.
    Close,
}

/// Accepts connections on `listener` until the returned task is aborted, serving each with
/// `serve(stream, state)` in a task of its own; aborting the accept task aborts them all.
pub(crate) fn spawn_accept<S, F>(
    listener: TcpListener,
    state: Arc<S>,
    serve: fn(TcpStream, Arc<S>) -> F,
) -> tokio::task::JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve(stream, state.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let request = match read_message(&mut client, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    shared.bump(|c| c.malformed += 1);
                }
                return;
            }
        };
        let kind = Kind::of(request.header("content-type").as_deref(), &request.body);
        let rqi = request.header("x-m2m-ri");
        if let Some(wire) = shared.lock().wire.as_mut() {
            wire.extend_from_slice(&request.bytes());
        }
        let closes = request.closes();

        // Decide under the lock, so the plan sees requests in arrival order and a held request
        // is released by the request that arrived after it.
        let (generation, index, fault, hold, release) = {
            let mut state = shared.lock();
            state.counts.requests += 1;
            let (index, fault) = if state.spare_sa_messages && kind == Kind::SaMessage {
                state.counts.spared += 1;
                (None, Fault::Pass)
            } else {
                let i = state.next;
                state.next += 1;
                (Some(i), (state.plan)(i))
            };
            let (mut hold, mut release) = (None, None);
            match (fault, index) {
                (_, None) => {}
                (Fault::Reorder, Some(i)) if state.held.is_none() => {
                    let (tx, rx) = oneshot::channel();
                    state.held = Some((i, tx));
                    hold = Some((i, rx, state.hold_limit));
                }
                _ => release = state.held.take(),
            }
            (state.generation, index, fault, hold, release)
        };
        shared.changed.notify_waiters();

        if let Some((i, rx, limit)) = hold {
            match tokio::time::timeout(limit, rx).await {
                // Released (or the releasing request's handling ended): a later request went first.
                Ok(_) => shared.bump(|c| c.reordered += 1),
                Err(_) => {
                    let mut state = shared.lock();
                    if state.held.as_ref().is_some_and(|(h, _)| *h == i) {
                        state.held = None;
                    }
                    state.counts.reorder_timeouts += 1;
                    drop(state);
                    shared.changed.notify_waiters();
                }
            }
        }

        let mut exchange = Exchange { plan: generation, index, fault, kind, rqi, answer: None, duplicate_answer: None };
        let outcome = apply(&shared, fault, request, &mut exchange).await;
        if let (Outcome::Answer(answer), Some(wire)) = (&outcome, shared.lock().wire.as_mut()) {
            wire.extend_from_slice(&answer.bytes());
        }
        // The request held for reordering goes now that this one has been answered.
        drop(release);
        // Logged before the answer is forwarded: whoever sees the answer finds the exchange in
        // the log.
        shared.lock().log.push(exchange);
        shared.changed.notify_waiters();
        let keep_open = match outcome {
            Outcome::Answer(answer) => {
                let closes_after = closes || answer.closes();
                match client.write_all(&answer.bytes()).await {
                    Ok(()) => {
                        shared.bump(|c| c.answers_forwarded += 1);
                        !closes_after
                    }
                    Err(_) => {
                        shared.bump(|c| c.answers_lost += 1);
                        false
                    }
                }
            }
            Outcome::Close => false,
        };
        if !keep_open {
            let _ = client.shutdown().await;
            return;
        }
    }
}

async fn apply(shared: &Shared, fault: Fault, mut request: Message, exchange: &mut Exchange) -> Outcome {
    match fault {
        Fault::DropRequest => {
            shared.bump(|c| c.dropped_requests += 1);
            return Outcome::Close;
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d.min(MAX_DELAY)).await;
            shared.bump(|c| c.delayed += 1);
        }
        Fault::Corrupt { at } => {
            if !request.body.is_empty() {
                let at = at % request.body.len();
                request.body[at] ^= 0x01;
                shared.bump(|c| c.corrupted += 1);
            }
        }
        Fault::Stall => {
            let mut gate = shared.stall_gate.subscribe();
            gate.borrow_and_update();
            shared.bump(|c| c.stalled += 1);
            let _ = tokio::time::timeout(MAX_STALL, gate.changed()).await;
        }
        Fault::Pass => shared.bump(|c| c.passed += 1),
        Fault::DropAnswer | Fault::Duplicate | Fault::Reorder | Fault::ForgeUnknownSa => {}
    }
    let rqi = request.header("x-m2m-ri").unwrap_or_default();
    let bytes = request.bytes();
    let Some(answer) = forward(shared, &bytes).await else { return Outcome::Close };
    exchange.answer = answer.rsc();
    match fault {
        Fault::DropAnswer => {
            shared.bump(|c| c.dropped_answers += 1);
            Outcome::Close
        }
        Fault::ForgeUnknownSa => {
            shared.bump(|c| c.forged_unknown_sa += 1);
            Outcome::Answer(forged_unknown_sa(&rqi))
        }
        Fault::Duplicate => {
            let again = forward(shared, &bytes).await;
            exchange.duplicate_answer = again.as_ref().and_then(Message::rsc);
            shared.bump(|c| c.duplicated += 1);
            Outcome::Answer(answer)
        }
        _ => Outcome::Answer(answer),
    }
}

/// An unsealed "unknown SA" answer to the request `rqi`, as the HTTP binding carries it.
fn forged_unknown_sa(rqi: &str) -> Message {
    let body = br#"{"m2m:dbg":"unknown or expired SA identifier"}"#.to_vec();
    let head = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nX-M2M-RSC: 4112\r\nX-M2M-RI: {rqi}\r\n\
         X-M2M-RVI: 3\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    Message { head: head.into_bytes(), body }
}

/// One exchange with the target on a connection of its own.
async fn forward(shared: &Shared, bytes: &[u8]) -> Option<Message> {
    let exchange = async {
        let mut upstream = TcpStream::connect(shared.target).await?;
        upstream.set_nodelay(true)?;
        upstream.write_all(bytes).await?;
        let mut buf = Vec::new();
        read_message(&mut upstream, &mut buf).await?.ok_or_else(|| invalid("no answer"))
    };
    match exchange.await {
        Ok(answer) => {
            shared.bump(|c| c.upstream_answers += 1);
            Some(answer)
        }
        Err(_) => {
            shared.bump(|c| c.upstream_failures += 1);
            None
        }
    }
}
