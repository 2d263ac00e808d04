//! Fixtures for tests, benchmarks, fuzzing and demos: a throwaway PKI and an in-process pair of
//! SA Managements joined by a link that can drop, duplicate, reorder and delay messages.
//!
//! Nothing here weakens the protocol: the PKI issues real tickets with real keys, and the pair
//! runs the same state machines as production, only over an in-memory link with a virtual clock.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::capability::Capabilities;
use crate::credential::{AuthorizationContext, Credentials, NodeId, OriginatorPattern, Ticket, TrustAnchors};
use crate::crypto::{SignatureAlgorithm, SigningKey, Suite};
use crate::establish::{AcceptAll, InitiatorConfig, ResponderAgent, ResponderConfig};
use crate::flows::ChallengeKind;
use crate::manage::{ExchangeId, InitiatorEvent, InitiatorSam, Limits, ResponderEvent, ResponderSam, Timing};
use crate::rng::{Rng, SeededRng};
use crate::table::{SaTable, TableConfig};
use crate::{Now, SaId};

/// A trust anchor that issues tickets on demand.
pub struct TestPki {
    /// The anchor's node ID.
    pub anchor_id: NodeId,
    anchor_key: SigningKey,
    /// Trust anchors holding just this anchor.
    pub anchors: Arc<TrustAnchors>,
    /// The wall-clock time tickets are issued around.
    pub unix_now: u64,
}

impl TestPki {
    /// A new anchor `/trust-anchor` with an Ed25519 key.
    pub fn new(rng: &mut dyn Rng, unix_now: u64) -> Self {
        Self::named("/trust-anchor", rng, unix_now)
    }

    /// A new anchor with this ID and an Ed25519 key.
    pub fn named(anchor: &str, rng: &mut dyn Rng, unix_now: u64) -> Self {
        let anchor_id = NodeId::new(anchor).expect("valid id");
        let anchor_key = SigningKey::generate(SignatureAlgorithm::Ed25519, rng).expect("keygen");
        let mut anchors = TrustAnchors::new();
        anchors.add(anchor_id.clone(), anchor_key.algorithm(), anchor_key.public_key().to_vec());
        Self { anchor_id, anchor_key, anchors: Arc::new(anchors), unix_now }
    }

    /// The anchor's public key.
    pub fn anchor_public_key(&self) -> &[u8] {
        self.anchor_key.public_key()
    }

    /// Credentials for `id`, valid from an hour ago for a day, allowing `originators`.
    pub fn node(&self, id: &str, alg: SignatureAlgorithm, originators: &[&str], rng: &mut dyn Rng) -> Arc<Credentials> {
        let context = AuthorizationContext {
            originators: originators.iter().map(|o| o.parse::<OriginatorPattern>().expect("valid pattern")).collect(),
            ..AuthorizationContext::default()
        };
        self.node_with(id, alg, context, self.unix_now - 3600, self.unix_now + 86_400, rng)
    }

    /// Credentials for `id` with any context and validity window.
    pub fn node_with(
        &self,
        id: &str,
        alg: SignatureAlgorithm,
        context: AuthorizationContext,
        not_before: u64,
        not_after: u64,
        rng: &mut dyn Rng,
    ) -> Arc<Credentials> {
        let node_id = NodeId::new(id).expect("valid id");
        let signing_key = SigningKey::generate(alg, rng).expect("keygen");
        let ticket = Ticket::issue(
            &self.anchor_id,
            &self.anchor_key,
            node_id.clone(),
            (alg, signing_key.public_key().to_vec()),
            context,
            not_before,
            not_after,
        )
        .expect("issue");
        Arc::new(Credentials { node_id, signing_key, ticket })
    }
}

/// An initiator configuration with the default challenge (encryption) and every capability.
pub fn initiator_config(credentials: Arc<Credentials>, anchors: Arc<TrustAnchors>, offer: &[Suite]) -> InitiatorConfig {
    InitiatorConfig {
        credentials,
        trust_anchors: anchors,
        offer: offer.to_vec(),
        responder_challenge: ChallengeKind::Encryption,
        capabilities: Capabilities::ALL,
    }
}

/// A responder configuration with the default challenge (authentication) and every capability.
pub fn responder_config(
    credentials: Arc<Credentials>,
    anchors: Arc<TrustAnchors>,
    supported: &[Suite],
) -> ResponderConfig {
    ResponderConfig {
        credentials,
        trust_anchors: anchors,
        supported: supported.to_vec(),
        initiator_challenge: ChallengeKind::Authentication,
        explicit_context: None,
        context_reference: None,
        capabilities: Capabilities::ALL,
    }
}

/// A random source that first hands out scripted values, then falls back to a seeded stream.
///
/// A scripted value is used only for a request of exactly its length (an 8-byte SA identifier,
/// a 32-byte nonce), so a test can force one identifier or nonce and let the rest be random.
pub struct ScriptedRng {
    script: VecDeque<Vec<u8>>,
    fallback: SeededRng,
}

impl ScriptedRng {
    /// Hands out `script` in order, then the stream of `SeededRng::new([seed; 32])`.
    pub fn new(script: Vec<Vec<u8>>, seed: u8) -> Self {
        Self { script: script.into(), fallback: SeededRng::new([seed; 32]) }
    }
}

impl Rng for ScriptedRng {
    fn fill(&mut self, dest: &mut [u8]) {
        match self.script.front() {
            Some(next) if next.len() == dest.len() => {
                dest.copy_from_slice(next);
                self.script.pop_front();
            }
            _ => self.fallback.fill(dest),
        }
    }
}

/// What the link does to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Deliver it.
    Pass,
    /// Lose it.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it after the next message in the same direction.
    Reorder,
}

/// Decides the fate of each message: called with the message's index on the link and its bytes.
pub type FaultPlan = Box<dyn FnMut(usize, &[u8]) -> Fault>;

/// A lossy link with a virtual clock between one [`InitiatorSam`] and one [`ResponderSam`].
pub struct Pair {
    /// The Initiator's SA Management.
    pub initiator: InitiatorSam,
    /// The Responder's SA Management.
    pub responder: ResponderSam,
    /// The Responder Agent.
    pub agent: Box<dyn ResponderAgent>,
    /// The virtual clock.
    pub now: Now,
    /// Randomness for both sides.
    pub rng: SeededRng,
    /// Events the Initiator reported, in order.
    pub initiator_events: Vec<InitiatorEvent>,
    /// Events the Responder reported, in order.
    pub responder_events: Vec<ResponderEvent>,
    /// Every message that crossed the link (after faults), in order, with its direction.
    pub wire: Vec<(bool, Vec<u8>)>,
    faults: FaultPlan,
    sent: usize,
    to_responder: VecDeque<(ExchangeId, Vec<u8>)>,
    to_initiator: VecDeque<(ExchangeId, Vec<u8>)>,
}

impl Pair {
    /// A pair over a perfect link.
    pub fn new(initiator: InitiatorConfig, responder: ResponderConfig, seed: u8, now: Now) -> Self {
        Self {
            initiator: InitiatorSam::new(initiator, Timing::default()),
            responder: ResponderSam::new(responder, Timing::default(), Limits::default()),
            agent: Box::new(AcceptAll),
            now,
            rng: SeededRng::new([seed; 32]),
            initiator_events: Vec::new(),
            responder_events: Vec::new(),
            wire: Vec::new(),
            faults: Box::new(|_, _| Fault::Pass),
            sent: 0,
            to_responder: VecDeque::new(),
            to_initiator: VecDeque::new(),
        }
    }

    /// Replaces the fault plan.
    pub fn set_faults(&mut self, plan: impl FnMut(usize, &[u8]) -> Fault + 'static) {
        self.faults = Box::new(plan);
    }

    fn enqueue(&mut self, to_responder: bool, id: ExchangeId, bytes: Vec<u8>) {
        let index = self.sent;
        self.sent += 1;
        let queue = if to_responder { &mut self.to_responder } else { &mut self.to_initiator };
        match (self.faults)(index, &bytes) {
            Fault::Pass => queue.push_back((id, bytes)),
            Fault::Drop => {}
            Fault::Duplicate => {
                queue.push_back((id, bytes.clone()));
                queue.push_back((id, bytes));
            }
            Fault::Reorder => queue.push_front((id, bytes)),
        }
    }

    /// Queues an Initiator request on the link.
    pub fn send(&mut self, exchange: crate::manage::Exchange) {
        self.enqueue(true, exchange.id, exchange.bytes);
    }

    fn absorb(&mut self, events: Vec<InitiatorEvent>) {
        for e in events {
            match e {
                InitiatorEvent::Transmit(ex) => self.send(ex),
                other => self.initiator_events.push(other),
            }
        }
    }

    /// Delivers everything, advancing the virtual clock to each deadline when the link is idle,
    /// until neither side has anything left to do (or `max_steps` deliveries happened).
    pub fn run(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if let Some((id, bytes)) = self.to_responder.pop_front() {
                self.wire.push((true, bytes.clone()));
                let out = self.responder.handle(&bytes, self.now, &mut self.rng, self.agent.as_mut());
                self.responder_events.extend(out.events);
                if let Some(reply) = out.reply {
                    self.enqueue(false, id, reply);
                }
                continue;
            }
            if let Some((id, bytes)) = self.to_initiator.pop_front() {
                self.wire.push((false, bytes.clone()));
                let events = self.initiator.handle_response(id, &bytes, self.now, &mut self.rng);
                self.absorb(events);
                continue;
            }
            // Idle: move the clock to the next deadline of the Initiator (retransmissions).
            match self.initiator.poll_timeout() {
                Some(t) if self.initiator.in_flight() > 0 => {
                    self.now = Now::new(
                        t.max(self.now.mono_ms),
                        self.now.unix_secs + (t.saturating_sub(self.now.mono_ms)) / 1000,
                    );
                    let events = self.initiator.handle_timeout(self.now);
                    self.absorb(events);
                }
                _ => return,
            }
        }
    }

    /// Moves the virtual clock forward and runs both sides' timers.
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.after_ms(ms);
        let events = self.initiator.handle_timeout(self.now);
        self.absorb(events);
        let events = self.responder.handle_timeout(self.now);
        self.responder_events.extend(events);
    }
}

/// An SA established in-process between `/id-asn` (Initiator) and `/id-in` (Responder), with
/// each side's SA table attached: the starting point of data-path tests and benchmarks.
pub struct Linked {
    /// The pair that established it (drive further updates through it).
    pub pair: Pair,
    /// The Initiator's table.
    pub initiator_table: Arc<SaTable>,
    /// The Responder's table.
    pub responder_table: Arc<SaTable>,
    /// The SA.
    pub sa_id: SaId,
}

/// Establishes one SA with `suite` (Ed25519 credentials, a fresh PKI from `seed`), both tables
/// built with `config`.
pub fn linked(suite: Suite, config: TableConfig, seed: u8, now: Now) -> Linked {
    let mut rng = SeededRng::new([seed; 32]);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*", "/id-asn"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let mut pair = Pair::new(
        initiator_config(i, pki.anchors.clone(), &[suite]),
        responder_config(r, pki.anchors.clone(), &Suite::ALL),
        seed,
        now,
    );
    let initiator_table = Arc::new(SaTable::new(config));
    let responder_table = Arc::new(SaTable::new(config));
    pair.initiator.attach_table(initiator_table.clone());
    pair.responder.attach_table(responder_table.clone());
    let request = crate::flows::InitiateSaRequest {
        initiator: NodeId::new("/id-asn").expect("valid"),
        responder: NodeId::new("/id-in").expect("valid"),
    };
    let exchange = pair.initiator.initiate(&request, pair.now, &mut pair.rng).expect("starts");
    pair.send(exchange);
    pair.run(100);
    let sa_id = pair.initiator.sas().next().expect("established").sa.sa_id;
    Linked { pair, initiator_table, responder_table, sa_id }
}
