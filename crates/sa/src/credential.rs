//! Identities, authorization tickets and trust anchors.
//!
//! A ticket is a compact credential, signed by a trust anchor, that binds a node's oneM2M ID to
//! its long-term signing key, its authorization context (which originators may speak through SAs
//! of the node, for how long) and a validity window. The signature covers a canonical binary
//! encoding ([`Ticket::to_be_signed`]), never the JSON spelling.
//!
//! Every way of decoding a ticket (from [`Ticket::from_json`] or as part of a larger serde
//! message) enforces the same limits: unknown members refused, version 1, a public key of exactly
//! its algorithm's length, a signature of at most 256 bytes, at most 64 originator patterns and 64
//! exceptions of at most 256 bytes each, a description of at most 1 KiB.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, HashAlgorithm, SignatureAlgorithm, SigningKey};

/// Largest ticket JSON accepted.
pub const MAX_TICKET_JSON: usize = 16 * 1024;
const MAX_ID: usize = 256;
const MAX_PATTERNS: usize = 64;
const MAX_DESCRIPTION: usize = 1024;
const MAX_SIGNATURE: usize = 256;

/// Why an identity or credential is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Not a valid node ID.
    #[error("invalid node ID")]
    InvalidNodeId,
    /// Not a valid originator pattern.
    #[error("invalid originator pattern")]
    InvalidPattern,
    /// A ticket that does not parse or exceeds a limit.
    #[error("malformed ticket: {0}")]
    Malformed(String),
    /// A signing operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A ticket that does not belong to the credentials it is paired with.
    #[error("ticket does not match the credentials: {0}")]
    TicketMismatch(&'static str),
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The oneM2M ID of an M2M Node: a CSE-ID like `/id-in` or an AE-ID like `CAE01`. Shared, not
/// copied, by its clones (every SA with a peer holds its ID, in its record and its table entry).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(std::sync::Arc<str>);

impl NodeId {
    /// Validates and wraps an ID: 1–256 printable ASCII bytes, no spaces.
    pub fn new(id: impl Into<String>) -> Result<Self, CredentialError> {
        let id = id.into();
        if valid_id(&id) { Ok(Self(id.into())) } else { Err(CredentialError::InvalidNodeId) }
    }

    /// The ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = CredentialError;
    fn try_from(s: String) -> Result<Self, CredentialError> {
        Self::new(s)
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0.to_string()
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = CredentialError;
    fn from_str(s: &str) -> Result<Self, CredentialError> {
        Self::new(s)
    }
}

/// An originator pattern: an exact oneM2M ID, a prefix ending in `*` (`C*`, `/id-in/*`), `*`, or
/// the empty pattern `""`, which covers a request without an originator (an absent or empty `fr`:
/// an AE registering for the CSE to assign its AE-ID) and nothing else.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OriginatorPattern(String);

impl OriginatorPattern {
    /// Whether `originator` matches (`""` standing for a request without an originator).
    pub fn covers(&self, originator: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => originator.starts_with(prefix),
            None => self.0 == originator,
        }
    }

    /// Whether the pattern is a prefix (ends in `*`) rather than one exact ID.
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with('*')
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for OriginatorPattern {
    type Err = CredentialError;
    fn from_str(s: &str) -> Result<Self, CredentialError> {
        let star_only_last = s.find('*').is_none_or(|i| i == s.len() - 1);
        if s.is_empty() || (valid_id(s) && star_only_last) {
            Ok(Self(s.to_owned()))
        } else {
            Err(CredentialError::InvalidPattern)
        }
    }
}

impl TryFrom<String> for OriginatorPattern {
    type Error = CredentialError;
    fn try_from(s: String) -> Result<Self, CredentialError> {
        s.parse()
    }
}

impl From<OriginatorPattern> for String {
    fn from(p: OriginatorPattern) -> String {
        p.0
    }
}

/// Which originator IDs may speak through SAs of a node, and for how long.
///
/// An originator is covered when a pattern of `orig` covers it and no pattern of `ex` does: the
/// exceptions carve IDs out of what the wildcards grant, such as a CSE's administrator (`CAdmin`)
/// out of `C*`. A request without an originator is checked as `""`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationContext {
    /// Originators allowed.
    #[serde(rename = "orig")]
    pub originators: Vec<OriginatorPattern>,
    /// Originators refused even when [`Self::originators`] covers them (empty: none). Signed
    /// only when present, so tickets without exceptions keep the to-be-signed bytes of earlier
    /// versions; a verifier that predates them refuses a ticket that has them (unknown member).
    #[serde(rename = "ex", default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<OriginatorPattern>,
    /// Longest lifetime of an SA, in seconds.
    #[serde(rename = "lt", default, skip_serializing_if = "Option::is_none")]
    pub max_sa_lifetime_secs: Option<u64>,
    /// A human-readable description.
    #[serde(rename = "dsc", default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl AuthorizationContext {
    /// Whether `originator` may speak through the node's SAs: some pattern of `orig` covers it
    /// and none of `ex` does. `""` stands for a request without an originator.
    pub fn covers(&self, originator: &str) -> bool {
        self.originators.iter().any(|p| p.covers(originator)) && !self.except.iter().any(|p| p.covers(originator))
    }
}

/// An authorization ticket. JSON form: `{"v":1,"iss":…,"sub":…,"alg":…,"pk":…,"ctx":{…},"nbf":…,
/// "exp":…,"sig":…}`, binary fields base64url; decoding enforces the limits of the module doc.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "TicketWire")]
pub struct Ticket {
    /// Format version, 1.
    #[serde(rename = "v")]
    pub version: u8,
    /// The trust anchor that signed it.
    #[serde(rename = "iss")]
    pub issuer: NodeId,
    /// The node it is about.
    #[serde(rename = "sub")]
    pub subject: NodeId,
    /// The algorithm of the subject's key.
    #[serde(rename = "alg")]
    pub algorithm: SignatureAlgorithm,
    /// The subject's public signing key.
    #[serde(rename = "pk", with = "crate::b64")]
    pub public_key: Vec<u8>,
    /// The subject's authorization context.
    #[serde(rename = "ctx")]
    pub context: AuthorizationContext,
    /// Valid from (UNIX seconds).
    #[serde(rename = "nbf")]
    pub not_before: u64,
    /// Valid until, exclusive (UNIX seconds).
    #[serde(rename = "exp")]
    pub not_after: u64,
    /// The issuer's signature over [`Ticket::to_be_signed`].
    #[serde(rename = "sig", with = "crate::b64")]
    pub signature: Vec<u8>,
}

/// The decoded JSON before its limits are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketWire {
    v: u8,
    iss: NodeId,
    sub: NodeId,
    alg: SignatureAlgorithm,
    #[serde(with = "crate::b64")]
    pk: Vec<u8>,
    ctx: AuthorizationContext,
    nbf: u64,
    exp: u64,
    #[serde(with = "crate::b64")]
    sig: Vec<u8>,
}

impl TryFrom<TicketWire> for Ticket {
    type Error = CredentialError;
    fn try_from(w: TicketWire) -> Result<Self, CredentialError> {
        let t = Ticket {
            version: w.v,
            issuer: w.iss,
            subject: w.sub,
            algorithm: w.alg,
            public_key: w.pk,
            context: w.ctx,
            not_before: w.nbf,
            not_after: w.exp,
            signature: w.sig,
        };
        t.check_limits().map_err(|what| CredentialError::Malformed(what.into()))?;
        Ok(t)
    }
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

impl Ticket {
    /// Issues a ticket for `subject`, signed by `issuer_key`. Refuses an empty validity window, a
    /// public key of the wrong length for its algorithm and a context over its limits.
    pub fn issue(
        issuer_id: &NodeId,
        issuer_key: &SigningKey,
        subject: NodeId,
        subject_public: (SignatureAlgorithm, Vec<u8>),
        context: AuthorizationContext,
        not_before: u64,
        not_after: u64,
    ) -> Result<Ticket, CredentialError> {
        if not_after <= not_before {
            return Err(CredentialError::Malformed("empty validity window".into()));
        }
        let mut t = Ticket {
            version: 1,
            issuer: issuer_id.clone(),
            subject,
            algorithm: subject_public.0,
            public_key: subject_public.1,
            context,
            not_before,
            not_after,
            signature: Vec::new(),
        };
        t.check_fields().map_err(|what| CredentialError::Malformed(what.into()))?;
        t.signature = issuer_key.sign(&t.to_be_signed())?;
        Ok(t)
    }

    /// The canonical bytes the issuer signs: the length-prefixed domain label
    /// `onem2m-sa ticket v1`, then every field but the signature in declaration order. Strings and
    /// byte strings carry a u32 big-endian length, integers are big-endian, the algorithm is its
    /// `u8` code, the pattern list is preceded by its u32 count, and each optional context field
    /// by a presence byte (0 or 1); then the validity window. Exceptions (`ctx.ex`), when there
    /// are any, follow the window as the tag byte 1, their u32 count and each pattern; without
    /// them nothing follows, so a ticket without exceptions has the bytes it had before they
    /// existed. The encoding is injective: different signed fields never give the same bytes.
    pub fn to_be_signed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put(&mut out, b"onem2m-sa ticket v1");
        out.push(self.version);
        put(&mut out, self.issuer.as_str().as_bytes());
        put(&mut out, self.subject.as_str().as_bytes());
        out.push(self.algorithm as u8);
        put(&mut out, &self.public_key);
        out.extend_from_slice(&(self.context.originators.len() as u32).to_be_bytes());
        for p in &self.context.originators {
            put(&mut out, p.as_str().as_bytes());
        }
        match self.context.max_sa_lifetime_secs {
            Some(lt) => {
                out.push(1);
                out.extend_from_slice(&lt.to_be_bytes());
            }
            None => out.push(0),
        }
        match &self.context.description {
            Some(d) => {
                out.push(1);
                put(&mut out, d.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        if !self.context.except.is_empty() {
            out.push(1);
            out.extend_from_slice(&(self.context.except.len() as u32).to_be_bytes());
            for p in &self.context.except {
                put(&mut out, p.as_str().as_bytes());
            }
        }
        out
    }

    /// The ticket reference: SHA-256 over [`Ticket::to_be_signed`] and the signature.
    pub fn digest(&self) -> [u8; 32] {
        reference(&self.to_be_signed(), &self.signature)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("tickets serialize")
    }

    /// Parses the JSON form (at most 16 KiB), with limits on every field.
    pub fn from_json(json: &str) -> Result<Ticket, CredentialError> {
        if json.len() > MAX_TICKET_JSON {
            return Err(CredentialError::Malformed("ticket over 16 KiB".into()));
        }
        serde_json::from_str(json).map_err(|e| CredentialError::Malformed(e.to_string()))
    }

    /// The limits on the signed fields.
    fn check_fields(&self) -> Result<(), &'static str> {
        if self.version != 1 {
            return Err("unknown ticket version");
        }
        if self.public_key.len() != self.algorithm.public_key_len() {
            return Err("public key length does not match its algorithm");
        }
        if self.context.originators.len() > MAX_PATTERNS {
            return Err("more than 64 originator patterns");
        }
        if self.context.except.len() > MAX_PATTERNS {
            return Err("more than 64 exceptions");
        }
        if self.context.description.as_ref().is_some_and(|d| d.len() > MAX_DESCRIPTION) {
            return Err("description over 1 KiB");
        }
        Ok(())
    }

    /// Every limit, the signature's included.
    fn check_limits(&self) -> Result<(), &'static str> {
        self.check_fields()?;
        if self.signature.len() > MAX_SIGNATURE {
            return Err("signature over 256 bytes");
        }
        Ok(())
    }
}

/// Why a ticket was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Past its validity window.
    #[error("ticket expired")]
    Expired,
    /// Before its validity window.
    #[error("ticket not yet valid")]
    NotYetValid,
    /// Signed by an issuer that is not a trust anchor.
    #[error("ticket issuer is not a trust anchor")]
    UnknownIssuer,
    /// About another node than the one the dialogue names.
    #[error("ticket names another node")]
    WrongSubject,
    /// The issuer's signature does not verify.
    #[error("ticket signature does not verify")]
    BadSignature,
    /// The authorization context does not cover the originator.
    #[error("authorization context does not cover the originator")]
    ContextDoesNotCover,
    /// The ticket breaks a limit (which one is named).
    #[error("malformed ticket: {0}")]
    Malformed(&'static str),
}

/// Most tickets a [`TrustAnchors`] remembers as verified (about 64 KiB at most).
pub const VERIFIED_TICKETS: usize = 1024;

/// The trust anchors whose tickets a node accepts.
///
/// It remembers the tickets whose issuer signature has verified (at most [`VERIFIED_TICKETS`]),
/// so a peer that establishes many SAs with the same ticket costs one signature verification,
/// not one per SA. A clone starts with an empty cache, and [`TrustAnchors::add`] empties it.
#[derive(Debug, Default)]
pub struct TrustAnchors {
    anchors: HashMap<NodeId, (SignatureAlgorithm, Vec<u8>)>,
    verified: VerifiedTickets,
}

impl Clone for TrustAnchors {
    fn clone(&self) -> Self {
        Self { anchors: self.anchors.clone(), verified: VerifiedTickets::default() }
    }
}

/// Tickets whose issuer signature verified under the current anchors, by [`cache_key`], with
/// their `not_after` (to drop expired ones first), and how many signatures were checked.
#[derive(Default)]
struct VerifiedTickets {
    tickets: Mutex<HashMap<[u8; 32], u64>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for VerifiedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTickets").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl VerifiedTickets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], u64>> {
        // The map is consistent after any panic (every change is one insert, retain or clear).
        self.tickets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.lock().contains_key(key)
    }

    /// Remembers a verified ticket. When full, forgets the tickets expired at `unix_now`, and
    /// if none had, all of them.
    fn insert(&self, key: [u8; 32], not_after: u64, unix_now: u64) {
        let mut map = self.lock();
        if map.len() >= VERIFIED_TICKETS && !map.contains_key(&key) {
            map.retain(|_, t| *t > unix_now);
            if map.len() >= VERIFIED_TICKETS {
                map.clear();
            }
        }
        map.insert(key, not_after);
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// The ticket reference ([`Ticket::digest`]) from its signed bytes and signature.
fn reference(to_be_signed: &[u8], signature: &[u8]) -> [u8; 32] {
    let d = crypto::digest(HashAlgorithm::Sha256, &[to_be_signed, signature]);
    d.as_ref().try_into().expect("32 bytes")
}

/// The cache key of a ticket: SHA-256 over the length of [`Ticket::to_be_signed`], those bytes
/// and the signature, so that two tickets share a key only if their signed bytes and signatures
/// are both the same. (The ticket reference hashes the two without the length.)
fn cache_key(to_be_signed: &[u8], signature: &[u8]) -> [u8; 32] {
    let len = (to_be_signed.len() as u64).to_be_bytes();
    let d = crypto::digest(HashAlgorithm::Sha256, &[b"onem2m-sa verified ticket", &len, to_be_signed, signature]);
    d.as_ref().try_into().expect("32 bytes")
}

impl TrustAnchors {
    /// No anchors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `issuer` with this public key, replacing any key it had.
    pub fn add(&mut self, issuer: NodeId, alg: SignatureAlgorithm, public_key: Vec<u8>) {
        self.anchors.insert(issuer, (alg, public_key));
        self.verified.clear();
    }

    /// How many ticket signatures this set has verified (cache misses), for metrics and tests.
    pub fn signature_checks(&self) -> u64 {
        self.verified.checks.load(Ordering::Relaxed)
    }

    /// How many verified tickets it remembers.
    pub fn cached_tickets(&self) -> usize {
        self.verified.len()
    }

    /// Whether every anchor of `self` is in `other` with the same key: a node moving from
    /// `self` to `other` trusts no ticket less.
    pub fn is_subset_of(&self, other: &TrustAnchors) -> bool {
        self.anchors.iter().all(|(id, key)| other.anchors.get(id) == Some(key))
    }

    /// Number of anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Verifies a ticket, in this order, stopping at the first failure:
    ///
    /// 0. structural limits ([`TicketError::Malformed`]; a decoded ticket already passed them);
    /// 1. the issuer is a trust anchor ([`TicketError::UnknownIssuer`]);
    /// 2. the anchor's signature over [`Ticket::to_be_signed`] ([`TicketError::BadSignature`]);
    /// 3. the subject is `expected_subject` ([`TicketError::WrongSubject`]);
    /// 4. `not_before ≤ unix_now < not_after` ([`TicketError::NotYetValid`], [`TicketError::Expired`]).
    ///
    /// The signature is checked before any signed field is believed, so a forged ticket is
    /// reported as a bad signature, never as a wrong subject or an expired ticket. Step 2 is
    /// skipped for a ticket of exactly the same signed bytes and signature that verified before
    /// under these anchors; steps 0, 1, 3 and 4 run on every call.
    pub fn verify(
        &self,
        ticket: &Ticket,
        expected_subject: &NodeId,
        unix_now: u64,
    ) -> Result<VerifiedTicket, TicketError> {
        ticket.check_limits().map_err(TicketError::Malformed)?;
        let (alg, key) = self.anchors.get(&ticket.issuer).ok_or(TicketError::UnknownIssuer)?;
        let tbs = ticket.to_be_signed();
        let cache_key = cache_key(&tbs, &ticket.signature);
        // Under a fuzzing build's permissive checks nothing is remembered or believed.
        #[cfg(fuzzing)]
        let use_cache = !crypto::fuzzing::active();
        #[cfg(not(fuzzing))]
        let use_cache = true;
        if !(use_cache && self.verified.contains(&cache_key)) {
            self.verified.checks.fetch_add(1, Ordering::Relaxed);
            crypto::verify(*alg, key, &tbs, &ticket.signature).map_err(|_| TicketError::BadSignature)?;
            if use_cache {
                self.verified.insert(cache_key, ticket.not_after, unix_now);
            }
        }
        if &ticket.subject != expected_subject {
            return Err(TicketError::WrongSubject);
        }
        if unix_now < ticket.not_before {
            return Err(TicketError::NotYetValid);
        }
        if unix_now >= ticket.not_after {
            return Err(TicketError::Expired);
        }
        Ok(VerifiedTicket { digest: reference(&tbs, &ticket.signature), ticket: ticket.clone() })
    }
}

/// A ticket whose issuer, signature, subject and validity have been checked.
#[derive(Clone, Debug)]
pub struct VerifiedTicket {
    ticket: Ticket,
    digest: [u8; 32],
}

impl VerifiedTicket {
    /// The ticket.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// The node it names.
    pub fn subject(&self) -> &NodeId {
        &self.ticket.subject
    }

    /// Its authorization context.
    pub fn context(&self) -> &AuthorizationContext {
        &self.ticket.context
    }

    /// The subject's public key.
    pub fn public_key(&self) -> &[u8] {
        &self.ticket.public_key
    }

    /// The subject's key algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.ticket.algorithm
    }

    /// The ticket reference.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Checks that `originator` may speak through the subject's SAs.
    pub fn authorize(&self, originator: &str) -> Result<(), TicketError> {
        if self.ticket.context.covers(originator) { Ok(()) } else { Err(TicketError::ContextDoesNotCover) }
    }
}

/// A node's own identity: ID, long-term signing key, and ticket. `Debug` shows the ID and the
/// ticket reference, never the key.
#[derive(Clone)]
pub struct Credentials {
    /// The node's ID.
    pub node_id: NodeId,
    /// Its signing key.
    pub signing_key: SigningKey,
    /// Its ticket.
    pub ticket: Ticket,
}

impl Credentials {
    /// Pairs a node's key with its ticket, checking that the ticket names `node_id` and carries
    /// the public half of `signing_key`. (The fields are public; this is the checked way in.)
    pub fn new(node_id: NodeId, signing_key: SigningKey, ticket: Ticket) -> Result<Self, CredentialError> {
        if ticket.subject != node_id {
            return Err(CredentialError::TicketMismatch("the ticket names another node"));
        }
        if ticket.algorithm != signing_key.algorithm() || ticket.public_key != signing_key.public_key() {
            return Err(CredentialError::TicketMismatch("the ticket carries another public key"));
        }
        Ok(Self { node_id, signing_key, ticket })
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("node_id", &self.node_id)
            .field("ticket", &self.ticket.digest())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{SeededRng, random_array};

    const NOW: u64 = 1_800_000_000;

    struct Setup {
        anchors: TrustAnchors,
        anchor: NodeId,
        anchor_key: SigningKey,
        node_key: SigningKey,
        me: NodeId,
        ticket: Ticket,
    }

    fn context() -> AuthorizationContext {
        AuthorizationContext {
            originators: vec!["C*".parse().unwrap(), "/id-in".parse().unwrap()],
            max_sa_lifetime_secs: Some(3600),
            description: Some("test".into()),
            except: Vec::new(),
        }
    }

    fn setup() -> Setup {
        let mut rng = SeededRng::new([6; 32]);
        let anchor = NodeId::new("/anchor").unwrap();
        let anchor_key = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut rng).unwrap();
        let node_key = SigningKey::generate(SignatureAlgorithm::EcdsaP256Sha256, &mut rng).unwrap();
        let me = NodeId::new("/id-in").unwrap();
        let ticket = Ticket::issue(
            &anchor,
            &anchor_key,
            me.clone(),
            (node_key.algorithm(), node_key.public_key().to_vec()),
            context(),
            NOW - 10,
            NOW + 10,
        )
        .unwrap();
        let mut anchors = TrustAnchors::new();
        anchors.add(anchor.clone(), anchor_key.algorithm(), anchor_key.public_key().to_vec());
        Setup { anchors, anchor, anchor_key, node_key, me, ticket }
    }

    #[test]
    fn issue_and_verify() {
        let s = setup();
        assert_eq!(s.anchors.len(), 1);
        assert!(!s.anchors.is_empty());
        let v = s.anchors.verify(&s.ticket, &s.me, NOW).unwrap();
        assert_eq!(v.ticket(), &s.ticket);
        assert_eq!(v.subject(), &s.me);
        assert_eq!(v.context(), &context());
        assert_eq!(v.public_key(), s.node_key.public_key());
        assert_eq!(v.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
        assert_eq!(v.digest(), s.ticket.digest());
        assert_eq!(s.ticket.issuer, s.anchor);
        assert_eq!(s.ticket.version, 1);
        // Validity edges: not_before is inclusive, not_after exclusive.
        assert!(s.anchors.verify(&s.ticket, &s.me, NOW - 10).is_ok());
        assert!(s.anchors.verify(&s.ticket, &s.me, NOW + 9).is_ok());
        // An ECDSA anchor works as well.
        let mut rng = SeededRng::new([1; 32]);
        let ec_anchor = SigningKey::generate(SignatureAlgorithm::EcdsaP256Sha256, &mut rng).unwrap();
        let t = Ticket::issue(
            &s.anchor,
            &ec_anchor,
            s.me.clone(),
            (s.node_key.algorithm(), s.node_key.public_key().to_vec()),
            context(),
            0,
            u64::MAX,
        )
        .unwrap();
        let mut anchors = TrustAnchors::new();
        anchors.add(s.anchor.clone(), ec_anchor.algorithm(), ec_anchor.public_key().to_vec());
        assert!(anchors.verify(&t, &s.me, NOW).is_ok());
    }

    #[test]
    fn authorize_checks_the_context() {
        let s = setup();
        let v = s.anchors.verify(&s.ticket, &s.me, NOW).unwrap();
        assert_eq!(v.authorize("CAE01"), Ok(()));
        assert_eq!(v.authorize("/id-in"), Ok(()));
        assert_eq!(v.authorize("SAE01"), Err(TicketError::ContextDoesNotCover));
        assert_eq!(v.authorize("/id-in/x"), Err(TicketError::ContextDoesNotCover));
        assert_eq!(v.authorize(""), Err(TicketError::ContextDoesNotCover));
    }

    #[test]
    fn anchor_sets_compare() {
        let s = setup();
        let mut more = s.anchors.clone();
        more.add(NodeId::new("/other").unwrap(), s.node_key.algorithm(), s.node_key.public_key().to_vec());
        assert!(s.anchors.is_subset_of(&more) && !more.is_subset_of(&s.anchors));
        assert!(TrustAnchors::new().is_subset_of(&s.anchors) && s.anchors.is_subset_of(&s.anchors));
        let mut rekeyed = s.anchors.clone();
        rekeyed.add(s.anchor.clone(), s.node_key.algorithm(), s.node_key.public_key().to_vec());
        assert!(!s.anchors.is_subset_of(&rekeyed), "the same anchor ID with another key");
    }

    #[test]
    fn expired() {
        let s = setup();
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, NOW + 10).unwrap_err(), TicketError::Expired);
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, u64::MAX).unwrap_err(), TicketError::Expired);
    }

    #[test]
    fn not_yet_valid() {
        let s = setup();
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, NOW - 11).unwrap_err(), TicketError::NotYetValid);
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, 0).unwrap_err(), TicketError::NotYetValid);
    }

    #[test]
    fn unknown_issuer() {
        let s = setup();
        assert_eq!(TrustAnchors::new().verify(&s.ticket, &s.me, NOW).unwrap_err(), TicketError::UnknownIssuer);
        // Another anchor's name with the right key is still unknown: anchors are looked up by ID.
        let mut other = TrustAnchors::new();
        other.add(NodeId::new("/other").unwrap(), s.anchor_key.algorithm(), s.anchor_key.public_key().to_vec());
        assert_eq!(other.verify(&s.ticket, &s.me, NOW).unwrap_err(), TicketError::UnknownIssuer);
    }

    #[test]
    fn wrong_subject() {
        let s = setup();
        assert_eq!(
            s.anchors.verify(&s.ticket, &NodeId::new("/id-x").unwrap(), NOW).unwrap_err(),
            TicketError::WrongSubject
        );
    }

    #[test]
    fn bad_signature_for_every_signed_field() {
        let s = setup();
        type Mutation = Box<dyn Fn(&mut Ticket)>;
        let mutations: Vec<(&str, Mutation)> = vec![
            ("issuer key", Box::new(|_| {})),
            ("subject", Box::new(|t| t.subject = NodeId::new("/id-x").unwrap())),
            ("public key", Box::new(|t| t.public_key[3] ^= 1)),
            ("pattern added", Box::new(|t| t.context.originators.push("*".parse().unwrap()))),
            ("pattern changed", Box::new(|t| t.context.originators[0] = "S*".parse().unwrap())),
            ("patterns reordered", Box::new(|t| t.context.originators.reverse())),
            ("lifetime removed", Box::new(|t| t.context.max_sa_lifetime_secs = None)),
            ("lifetime changed", Box::new(|t| t.context.max_sa_lifetime_secs = Some(3601))),
            ("description", Box::new(|t| t.context.description = Some("other".into()))),
            ("description removed", Box::new(|t| t.context.description = None)),
            ("exception added", Box::new(|t| t.context.except.push("CAdmin".parse().unwrap()))),
            ("not_after", Box::new(|t| t.not_after += 1)),
            ("not_before", Box::new(|t| t.not_before -= 1)),
            ("signature", Box::new(|t| t.signature[0] ^= 1)),
            ("signature truncated", Box::new(|t| t.signature.truncate(63))),
        ];
        for (what, m) in mutations {
            let mut bad = s.ticket.clone();
            m(&mut bad);
            if what == "issuer key" {
                // The anchor's name with another key.
                let mut anchors = TrustAnchors::new();
                let k = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut SeededRng::new([2; 32])).unwrap();
                anchors.add(s.anchor.clone(), k.algorithm(), k.public_key().to_vec());
                assert_eq!(anchors.verify(&bad, &s.me, NOW).unwrap_err(), TicketError::BadSignature);
                continue;
            }
            let subject = bad.subject.clone();
            assert_eq!(s.anchors.verify(&bad, &subject, NOW).unwrap_err(), TicketError::BadSignature, "{what}");
        }
        // The algorithm byte is signed too: swap in an Ed25519 key of the right length.
        let mut bad = s.ticket.clone();
        bad.algorithm = SignatureAlgorithm::Ed25519;
        bad.public_key.truncate(32);
        assert_eq!(s.anchors.verify(&bad, &s.me, NOW).unwrap_err(), TicketError::BadSignature);
    }

    /// A ticket's issuer signature is checked once per anchor set: the second establishment with
    /// the same peer and ticket skips it, and everything else is still checked on every call.
    #[test]
    fn verified_tickets_are_cached_by_their_exact_bytes() {
        let s = setup();
        assert_eq!(s.anchors.signature_checks(), 0);
        for _ in 0..3 {
            s.anchors.verify(&s.ticket, &s.me, NOW).unwrap();
        }
        assert_eq!(s.anchors.signature_checks(), 1, "one signature verification for three establishments");
        // A cache hit still checks the subject and the validity window.
        assert_eq!(
            s.anchors.verify(&s.ticket, &NodeId::new("/id-x").unwrap(), NOW).unwrap_err(),
            TicketError::WrongSubject
        );
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, NOW + 10).unwrap_err(), TicketError::Expired);
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, NOW - 11).unwrap_err(), TicketError::NotYetValid);
        assert_eq!(s.anchors.signature_checks(), 1);
        // Any other bytes are verified again: a signed field changed, or the signature.
        let mut longer = s.ticket.clone();
        longer.not_after += 1000;
        assert_eq!(s.anchors.verify(&longer, &s.me, NOW).unwrap_err(), TicketError::BadSignature);
        let mut resigned = s.ticket.clone();
        resigned.signature[5] ^= 1;
        assert_eq!(s.anchors.verify(&resigned, &s.me, NOW).unwrap_err(), TicketError::BadSignature);
        assert_eq!(s.anchors.signature_checks(), 3);
        // A failure is not remembered.
        assert_eq!(s.anchors.verify(&longer, &s.me, NOW).unwrap_err(), TicketError::BadSignature);
        assert_eq!(s.anchors.signature_checks(), 4);
        // A clone starts with its own, empty cache.
        let copy = s.anchors.clone();
        copy.verify(&s.ticket, &s.me, NOW).unwrap();
        assert_eq!(copy.signature_checks(), 1);
    }

    /// Rekeying an anchor forgets what its old key verified.
    #[test]
    fn rekeying_an_anchor_empties_the_cache() {
        let mut s = setup();
        s.anchors.verify(&s.ticket, &s.me, NOW).unwrap();
        let other = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut SeededRng::new([9; 32])).unwrap();
        s.anchors.add(s.anchor.clone(), other.algorithm(), other.public_key().to_vec());
        assert_eq!(s.anchors.verify(&s.ticket, &s.me, NOW).unwrap_err(), TicketError::BadSignature);
        // Adding another anchor leaves the old one's tickets valid, but they are checked again.
        s.anchors.add(s.anchor.clone(), s.anchor_key.algorithm(), s.anchor_key.public_key().to_vec());
        let before = s.anchors.signature_checks();
        s.anchors.verify(&s.ticket, &s.me, NOW).unwrap();
        assert_eq!(s.anchors.signature_checks(), before + 1);
    }

    /// The cache holds at most `VERIFIED_TICKETS` tickets: expired ones go first, then all.
    #[test]
    fn the_cache_is_bounded() {
        let s = setup();
        let subject = (s.node_key.algorithm(), s.node_key.public_key().to_vec());
        let issue = |not_after: u64| {
            Ticket::issue(&s.anchor, &s.anchor_key, s.me.clone(), subject.clone(), context(), NOW - 10, not_after)
                .unwrap()
        };
        let short: Vec<Ticket> = (0..VERIFIED_TICKETS as u64 / 2).map(|i| issue(NOW + 1 + i)).collect();
        for t in &short {
            s.anchors.verify(t, &s.me, NOW).unwrap();
        }
        assert_eq!(s.anchors.cached_tickets(), short.len());
        // Later, when the short tickets have expired, longer ones fill the cache past its bound.
        let later = NOW + VERIFIED_TICKETS as u64;
        let long: Vec<Ticket> = (0..VERIFIED_TICKETS as u64).map(|i| issue(later + 1 + i)).collect();
        for t in &long {
            s.anchors.verify(t, &s.me, later).unwrap();
            assert!(s.anchors.cached_tickets() <= VERIFIED_TICKETS);
        }
        let checks = s.anchors.signature_checks();
        // The most recent is cached; the expired ones are gone.
        s.anchors.verify(&long[VERIFIED_TICKETS - 1], &s.me, later).unwrap();
        assert_eq!(s.anchors.signature_checks(), checks);
        assert!(s.anchors.cached_tickets() <= VERIFIED_TICKETS);
    }

    /// What real deployments need: AE self-registration without an originator (`""`), AE-IDs the
    /// CSE assigns (`C*`, `S*`), a registrar speaking for the originators it relays
    /// (`/id-in/*`), and the CSE's administrator carved out of the wildcards (`ex`).
    #[test]
    fn exceptions_carve_ids_out_of_the_wildcards() {
        let ctx = AuthorizationContext {
            originators: ["C*", "S*", "", "/id-in/*"].iter().map(|p| p.parse().unwrap()).collect(),
            except: vec!["CAdmin".parse().unwrap(), "/id-in/CAdmin".parse().unwrap()],
            ..AuthorizationContext::default()
        };
        for ok in ["CAE01", "C", "S", "Sxyz", "", "/id-in/Cxyz", "CAdmin2"] {
            assert!(ctx.covers(ok), "{ok:?}");
        }
        for refused in ["CAdmin", "/id-in/CAdmin", "/id-in", "/id-mn/Cxyz", "admin"] {
            assert!(!ctx.covers(refused), "{refused:?}");
        }
        // An exception wins over an exact grant too: it is a deny list.
        let both = AuthorizationContext {
            originators: vec!["CAdmin".parse().unwrap()],
            except: vec!["CAdmin".parse().unwrap()],
            ..AuthorizationContext::default()
        };
        assert!(!both.covers("CAdmin"));
    }

    /// A ticket without exceptions signs exactly the bytes it signed before they existed; one
    /// with them signs them after the validity window, and they travel as `ctx.ex`.
    #[test]
    fn exceptions_are_signed_and_absent_ones_change_nothing() {
        let s = setup();
        let plain = s.ticket.to_be_signed();
        // The old encoding ends with the validity window.
        assert_eq!(&plain[plain.len() - 16..plain.len() - 8], &s.ticket.not_before.to_be_bytes());
        assert_eq!(&plain[plain.len() - 8..], &s.ticket.not_after.to_be_bytes());
        assert!(!s.ticket.to_json().contains("\"ex\""));

        let mut ctx = context();
        ctx.except = vec!["CAdmin".parse().unwrap()];
        let subject = (s.node_key.algorithm(), s.node_key.public_key().to_vec());
        let t = Ticket::issue(&s.anchor, &s.anchor_key, s.me.clone(), subject, ctx, NOW - 10, NOW + 10).unwrap();
        let tbs = t.to_be_signed();
        assert_eq!(&tbs[..plain.len()], &plain[..], "the same fields, then the exceptions");
        assert_eq!(&tbs[plain.len()..], &[&[1u8, 0, 0, 0, 1, 0, 0, 0, 6][..], b"CAdmin"].concat()[..]);
        let json = t.to_json();
        assert!(json.contains(r#""ex":["CAdmin"]"#), "{json}");
        let back = Ticket::from_json(&json).unwrap();
        assert_eq!(back, t);
        let v = s.anchors.verify(&back, &s.me, NOW).unwrap();
        assert_eq!(v.authorize("CAE01"), Ok(()));
        assert_eq!(v.authorize("CAdmin"), Err(TicketError::ContextDoesNotCover));
        // Stripping the exceptions from the JSON breaks the signature.
        let stripped = json.replace(r#","ex":["CAdmin"]"#, "");
        assert_eq!(
            s.anchors.verify(&Ticket::from_json(&stripped).unwrap(), &s.me, NOW).unwrap_err(),
            TicketError::BadSignature
        );
        // Limits: at most 64.
        let mut ctx = context();
        ctx.except = vec!["x".parse().unwrap(); MAX_PATTERNS + 1];
        let subject = (s.node_key.algorithm(), s.node_key.public_key().to_vec());
        assert!(Ticket::issue(&s.anchor, &s.anchor_key, s.me.clone(), subject, ctx, 0, 1).is_err());
    }

    #[test]
    fn context_does_not_cover() {
        let s = setup();
        let v = s.anchors.verify(&s.ticket, &s.me, NOW).unwrap();
        let err = v.authorize("SAE01").unwrap_err();
        assert_eq!(err, TicketError::ContextDoesNotCover);
        assert_eq!(err.to_string(), "authorization context does not cover the originator");
        let empty = AuthorizationContext::default();
        assert!(!empty.covers("CAE01"));
    }

    #[test]
    fn malformed() {
        let s = setup();
        let mut bad = s.ticket.clone();
        bad.version = 2;
        assert_eq!(s.anchors.verify(&bad, &s.me, NOW).unwrap_err(), TicketError::Malformed("unknown ticket version"));
        let mut bad = s.ticket.clone();
        bad.signature = vec![0; 257];
        assert!(matches!(s.anchors.verify(&bad, &s.me, NOW).unwrap_err(), TicketError::Malformed(_)));
        let mut bad = s.ticket.clone();
        bad.public_key.push(0);
        assert!(matches!(s.anchors.verify(&bad, &s.me, NOW).unwrap_err(), TicketError::Malformed(_)));
        assert!(TicketError::Malformed("x").to_string().contains('x'));
    }

    /// issuer → signature → subject → validity: with several faults, the earliest check reports.
    #[test]
    fn check_order() {
        let s = setup();
        let stranger = NodeId::new("/id-x").unwrap();
        let late = NOW + 100;
        // Unknown issuer beats everything else.
        assert_eq!(TrustAnchors::new().verify(&s.ticket, &stranger, late).unwrap_err(), TicketError::UnknownIssuer);
        // Bad signature beats a wrong subject and an expired window.
        let mut forged = s.ticket.clone();
        forged.signature[1] ^= 1;
        assert_eq!(s.anchors.verify(&forged, &stranger, late).unwrap_err(), TicketError::BadSignature);
        // Wrong subject beats the validity window.
        assert_eq!(s.anchors.verify(&s.ticket, &stranger, late).unwrap_err(), TicketError::WrongSubject);
        assert_eq!(s.anchors.verify(&s.ticket, &stranger, 0).unwrap_err(), TicketError::WrongSubject);
    }

    #[test]
    fn issue_refuses_bad_input() {
        let s = setup();
        let subject = (s.node_key.algorithm(), s.node_key.public_key().to_vec());
        let issue = |subject: (SignatureAlgorithm, Vec<u8>), ctx: AuthorizationContext, nbf, exp| {
            Ticket::issue(&s.anchor, &s.anchor_key, s.me.clone(), subject, ctx, nbf, exp)
        };
        assert!(issue(subject.clone(), context(), NOW, NOW).is_err(), "empty window");
        assert!(issue(subject.clone(), context(), NOW + 1, NOW).is_err(), "reversed window");
        assert!(issue((SignatureAlgorithm::Ed25519, subject.1.clone()), context(), 0, 1).is_err(), "key length");
        let mut ctx = context();
        ctx.originators = vec!["*".parse().unwrap(); MAX_PATTERNS + 1];
        assert!(issue(subject.clone(), ctx, 0, 1).is_err(), "too many patterns");
        let mut ctx = context();
        ctx.description = Some("d".repeat(MAX_DESCRIPTION + 1));
        assert!(issue(subject.clone(), ctx, 0, 1).is_err(), "description");
        let mut ctx = context();
        ctx.originators = vec!["*".parse().unwrap(); MAX_PATTERNS];
        ctx.description = Some("d".repeat(MAX_DESCRIPTION));
        assert!(issue(subject, ctx, 0, 1).is_ok(), "at the limits");
    }

    #[test]
    fn json_round_trip_and_shape() {
        let s = setup();
        let json = s.ticket.to_json();
        assert_eq!(Ticket::from_json(&json).unwrap(), s.ticket);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["v", "iss", "sub", "alg", "pk", "ctx", "nbf", "exp", "sig"]);
        assert_eq!(v["alg"], "ES256");
        assert_eq!(v["ctx"], serde_json::json!({"orig": ["C*", "/id-in"], "lt": 3600, "dsc": "test"}));
        assert_eq!(crate::b64::decode(v["pk"].as_str().unwrap()).unwrap(), s.node_key.public_key());
        // Optional context members may be absent.
        let mut t = s.ticket.clone();
        t.context.max_sa_lifetime_secs = None;
        t.context.description = None;
        let json = t.to_json();
        assert!(json.contains(r#""ctx":{"orig":["C*","/id-in"]}"#), "{json}");
        assert_eq!(Ticket::from_json(&json).unwrap(), t);
        // The digest covers the signature and is stable across a round trip.
        assert_eq!(Ticket::from_json(&s.ticket.to_json()).unwrap().digest(), s.ticket.digest());
        assert_ne!(t.digest(), s.ticket.digest());
    }

    #[test]
    fn json_unknown_fields_are_refused() {
        let s = setup();
        let mut v: serde_json::Value = serde_json::from_str(&s.ticket.to_json()).unwrap();
        v["extra"] = 1.into();
        assert!(Ticket::from_json(&v.to_string()).is_err(), "top level");
        let mut v: serde_json::Value = serde_json::from_str(&s.ticket.to_json()).unwrap();
        v["ctx"]["extra"] = 1.into();
        assert!(Ticket::from_json(&v.to_string()).is_err(), "in the context");
        let mut v: serde_json::Value = serde_json::from_str(&s.ticket.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("sig");
        assert!(Ticket::from_json(&v.to_string()).is_err(), "missing member");
    }

    #[test]
    fn json_oversize_is_refused() {
        let s = setup();
        assert!(Ticket::from_json(&" ".repeat(MAX_TICKET_JSON + 1)).is_err());
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(&s.ticket.to_json()).unwrap();
            f(&mut v);
            let json = v.to_string();
            assert!(json.len() <= MAX_TICKET_JSON);
            Ticket::from_json(&json)
        };
        assert!(edit(&|v| v["pk"] = crate::b64::encode(&[4; 66]).into()).is_err(), "key longer than P-256");
        assert!(edit(&|v| v["pk"] = crate::b64::encode(&[4; 1025]).into()).is_err(), "key over 1 KiB");
        assert!(edit(&|v| v["sig"] = crate::b64::encode(&[0; 257]).into()).is_err(), "signature");
        assert!(edit(&|v| v["ctx"]["dsc"] = "d".repeat(MAX_DESCRIPTION + 1).into()).is_err(), "description");
        assert!(edit(&|v| v["ctx"]["orig"] = vec!["*"; MAX_PATTERNS + 1].into()).is_err(), "patterns");
        assert!(edit(&|v| v["ctx"]["orig"] = vec!["*"; MAX_PATTERNS].into()).is_ok(), "at the limit");
        assert!(edit(&|v| v["ctx"]["orig"] = vec!["a*b"].into()).is_err(), "bad pattern");
        assert!(edit(&|v| v["sub"] = "has space".into()).is_err(), "bad node ID");
        assert!(edit(&|v| v["v"] = 2.into()).is_err(), "version");
        assert!(edit(&|v| v["alg"] = "RS256".into()).is_err(), "algorithm");
        assert!(edit(&|v| v["nbf"] = (-1).into()).is_err(), "negative time");
        // The limits hold when a ticket is decoded inside a larger message, too.
        let mut v: serde_json::Value = serde_json::from_str(&s.ticket.to_json()).unwrap();
        v["v"] = 2.into();
        assert!(serde_json::from_value::<Ticket>(v).is_err());
    }

    #[test]
    fn credentials_pairing_and_debug() {
        let s = setup();
        let c = Credentials::new(s.me.clone(), s.node_key.clone(), s.ticket.clone()).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("/id-in"));
        let private: [u8; 32] = {
            // The node key is the second key drawn in `setup`.
            let mut rng = SeededRng::new([6; 32]);
            let _anchor: [u8; 32] = random_array(&mut rng);
            random_array(&mut rng)
        };
        let hex: String = private.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!debug.contains(&hex));
        assert!(!debug.contains(&format!("{:?}", &private[..4]).trim_end_matches(']').to_owned()));
        assert_eq!(
            Credentials::new(NodeId::new("/id-x").unwrap(), s.node_key.clone(), s.ticket.clone()).unwrap_err(),
            CredentialError::TicketMismatch("the ticket names another node")
        );
        assert!(matches!(
            Credentials::new(s.me.clone(), s.anchor_key.clone(), s.ticket.clone()),
            Err(CredentialError::TicketMismatch(_))
        ));
    }

    #[test]
    fn patterns_and_ids() {
        let p = |s: &str| s.parse::<OriginatorPattern>();
        assert!(p("C*").unwrap().covers("CAE1"));
        assert!(p("C*").unwrap().covers("C"));
        assert!(!p("C*").unwrap().covers("SAE1"));
        assert!(p("/id-in/*").unwrap().covers("/id-in/CAE1"));
        assert!(!p("/id-in/*").unwrap().covers("/id-in"));
        assert!(p("*").unwrap().covers("anything"));
        assert!(p("CAE01").unwrap().covers("CAE01"));
        assert!(!p("CAE01").unwrap().covers("CAE011"));
        assert_eq!(p("C*").unwrap().as_str(), "C*");
        for bad in ["/a*b", "**", "a b", "*x"] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        // The empty pattern: a request without an originator, and nothing else.
        assert!(p("").unwrap().covers(""));
        assert!(!p("").unwrap().covers("CAE1"));
        assert!(!p("C*").unwrap().covers(""));
        assert!(p("C*").unwrap().is_wildcard() && !p("CAE01").unwrap().is_wildcard() && !p("").unwrap().is_wildcard());
        assert!(p(&format!("{}*", "x".repeat(255))).is_ok());
        assert!(p(&format!("{}*", "x".repeat(256))).is_err());

        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("has space").is_err());
        assert!(NodeId::new("tab\t").is_err());
        assert!(NodeId::new("é").is_err());
        assert!(NodeId::new("x".repeat(257)).is_err());
        let id: NodeId = "/id-in".parse().unwrap();
        assert_eq!(id.as_str(), "/id-in");
        assert_eq!(id.to_string(), "/id-in");
        assert_eq!(NodeId::new("x".repeat(256)).unwrap().as_str().len(), 256);
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""/id-in""#);
        assert_eq!(serde_json::from_str::<NodeId>(r#""/id-in""#).unwrap(), id);
        assert!(serde_json::from_str::<NodeId>(r#""a b""#).is_err());
    }
}
