//! Identities, authorization tickets and trust anchors.
//!
//! A ticket is a compact credential, signed by a trust anchor, that binds a node's oneM2M ID to
//! its long-term signing key, its authorization context (which originators may speak through SAs
//! of the node, for how long) and a validity window. The signature covers a canonical binary
//! encoding ([`Ticket::to_be_signed`]), never the JSON spelling.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, HashAlgorithm, SignatureAlgorithm, SigningKey};

/// Largest ticket JSON accepted.
pub const MAX_TICKET_JSON: usize = 16 * 1024;
const MAX_ID: usize = 256;
const MAX_PATTERNS: usize = 64;
const MAX_DESCRIPTION: usize = 1024;

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
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The oneM2M ID of an M2M Node: a CSE-ID like `/id-in` or an AE-ID like `CAE01`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Validates and wraps an ID: 1–256 printable ASCII bytes, no spaces.
    pub fn new(id: impl Into<String>) -> Result<Self, CredentialError> {
        let id = id.into();
        if valid_id(&id) { Ok(Self(id)) } else { Err(CredentialError::InvalidNodeId) }
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
        n.0
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

/// An originator pattern: an exact oneM2M ID, a prefix ending in `*` (`C*`, `/id-in/*`), or `*`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OriginatorPattern(String);

impl OriginatorPattern {
    /// Whether `originator` matches.
    pub fn covers(&self, originator: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => originator.starts_with(prefix),
            None => self.0 == originator,
        }
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
        if valid_id(s) && star_only_last { Ok(Self(s.to_owned())) } else { Err(CredentialError::InvalidPattern) }
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
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationContext {
    /// Originators allowed.
    #[serde(rename = "orig")]
    pub originators: Vec<OriginatorPattern>,
    /// Longest lifetime of an SA, in seconds.
    #[serde(rename = "lt", default, skip_serializing_if = "Option::is_none")]
    pub max_sa_lifetime_secs: Option<u64>,
    /// A human-readable description.
    #[serde(rename = "dsc", default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl AuthorizationContext {
    /// Whether `originator` may speak through the node's SAs.
    pub fn covers(&self, originator: &str) -> bool {
        self.originators.iter().any(|p| p.covers(originator))
    }

    fn within_limits(&self) -> bool {
        self.originators.len() <= MAX_PATTERNS && self.description.as_ref().is_none_or(|d| d.len() <= MAX_DESCRIPTION)
    }
}

/// An authorization ticket.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

impl Ticket {
    /// Issues a ticket for `subject`, signed by `issuer_key`.
    pub fn issue(
        issuer_id: &NodeId,
        issuer_key: &SigningKey,
        subject: NodeId,
        subject_public: (SignatureAlgorithm, Vec<u8>),
        context: AuthorizationContext,
        not_before: u64,
        not_after: u64,
    ) -> Result<Ticket, CredentialError> {
        if not_after <= not_before || !context.within_limits() {
            return Err(CredentialError::Malformed("empty validity window or context over its limits".into()));
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
        t.signature = issuer_key.sign(&t.to_be_signed())?;
        Ok(t)
    }

    /// The canonical bytes the issuer signs: a domain label, then length-prefixed fields.
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
        out
    }

    /// The ticket reference: SHA-256 over [`Ticket::to_be_signed`] and the signature.
    pub fn digest(&self) -> [u8; 32] {
        let d = crypto::digest(HashAlgorithm::Sha256, &[&self.to_be_signed(), &self.signature]);
        d.as_ref().try_into().expect("32 bytes")
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("tickets serialize")
    }

    /// Parses the JSON form, with limits on every field.
    pub fn from_json(json: &str) -> Result<Ticket, CredentialError> {
        if json.len() > MAX_TICKET_JSON {
            return Err(CredentialError::Malformed("ticket too large".into()));
        }
        let t: Ticket = serde_json::from_str(json).map_err(|e| CredentialError::Malformed(e.to_string()))?;
        t.check_limits()?;
        Ok(t)
    }

    fn check_limits(&self) -> Result<(), CredentialError> {
        if self.version != 1
            || self.public_key.len() > 1024
            || self.signature.len() > 256
            || !self.context.within_limits()
        {
            return Err(CredentialError::Malformed("field over its limit or unknown version".into()));
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
    /// The ticket breaks a limit.
    #[error("malformed ticket")]
    Malformed,
}

/// The trust anchors whose tickets a node accepts.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    anchors: HashMap<NodeId, (SignatureAlgorithm, Vec<u8>)>,
}

impl TrustAnchors {
    /// No anchors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `issuer` with this public key.
    pub fn add(&mut self, issuer: NodeId, alg: SignatureAlgorithm, public_key: Vec<u8>) {
        self.anchors.insert(issuer, (alg, public_key));
    }

    /// Number of anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Verifies a ticket: issuer known → signature → subject → validity window.
    pub fn verify(
        &self,
        ticket: &Ticket,
        expected_subject: &NodeId,
        unix_now: u64,
    ) -> Result<VerifiedTicket, TicketError> {
        ticket.check_limits().map_err(|_| TicketError::Malformed)?;
        let (alg, key) = self.anchors.get(&ticket.issuer).ok_or(TicketError::UnknownIssuer)?;
        crypto::verify(*alg, key, &ticket.to_be_signed(), &ticket.signature).map_err(|_| TicketError::BadSignature)?;
        if &ticket.subject != expected_subject {
            return Err(TicketError::WrongSubject);
        }
        if unix_now < ticket.not_before {
            return Err(TicketError::NotYetValid);
        }
        if unix_now >= ticket.not_after {
            return Err(TicketError::Expired);
        }
        Ok(VerifiedTicket { digest: ticket.digest(), ticket: ticket.clone() })
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

/// A node's own identity: ID, long-term signing key, and ticket.
#[derive(Clone)]
pub struct Credentials {
    /// The node's ID.
    pub node_id: NodeId,
    /// Its signing key.
    pub signing_key: SigningKey,
    /// Its ticket.
    pub ticket: Ticket,
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
    use crate::rng::SeededRng;

    const NOW: u64 = 1_800_000_000;

    fn setup() -> (TrustAnchors, NodeId, SigningKey, Ticket) {
        let mut rng = SeededRng::new([6; 32]);
        let anchor = NodeId::new("/anchor").unwrap();
        let anchor_key = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut rng).unwrap();
        let node_key = SigningKey::generate(SignatureAlgorithm::EcdsaP256Sha256, &mut rng).unwrap();
        let ctx = AuthorizationContext {
            originators: vec!["C*".parse().unwrap(), "/id-in".parse().unwrap()],
            max_sa_lifetime_secs: Some(3600),
            description: Some("test".into()),
        };
        let ticket = Ticket::issue(
            &anchor,
            &anchor_key,
            NodeId::new("/id-in").unwrap(),
            (node_key.algorithm(), node_key.public_key().to_vec()),
            ctx,
            NOW - 10,
            NOW + 10,
        )
        .unwrap();
        let mut anchors = TrustAnchors::new();
        anchors.add(anchor.clone(), anchor_key.algorithm(), anchor_key.public_key().to_vec());
        (anchors, anchor, anchor_key, ticket)
    }

    #[test]
    fn verify_and_each_failure() {
        let (anchors, _, _, t) = setup();
        let me = NodeId::new("/id-in").unwrap();
        let v = anchors.verify(&t, &me, NOW).unwrap();
        assert!(v.authorize("CAE01").is_ok());
        assert!(v.authorize("/id-in").is_ok());
        assert_eq!(v.authorize("SAE01"), Err(TicketError::ContextDoesNotCover));
        assert_eq!(anchors.verify(&t, &me, NOW + 10).unwrap_err(), TicketError::Expired);
        assert_eq!(anchors.verify(&t, &me, NOW - 11).unwrap_err(), TicketError::NotYetValid);
        assert_eq!(anchors.verify(&t, &NodeId::new("/id-x").unwrap(), NOW).unwrap_err(), TicketError::WrongSubject);
        assert_eq!(TrustAnchors::new().verify(&t, &me, NOW).unwrap_err(), TicketError::UnknownIssuer);
        // Every signed field is covered.
        type Mutation = Box<dyn Fn(&mut Ticket)>;
        let mutations: Vec<Mutation> = vec![
            Box::new(|t| t.subject = NodeId::new("/id-x").unwrap()),
            Box::new(|t| t.public_key[3] ^= 1),
            Box::new(|t| t.context.originators.push("*".parse().unwrap())),
            Box::new(|t| t.context.max_sa_lifetime_secs = None),
            Box::new(|t| t.context.description = Some("other".into())),
            Box::new(|t| t.not_after += 1),
            Box::new(|t| t.not_before -= 1),
            Box::new(|t| t.algorithm = SignatureAlgorithm::Ed25519),
            Box::new(|t| t.signature[0] ^= 1),
        ];
        for m in mutations {
            let mut bad = t.clone();
            m(&mut bad);
            let subject = bad.subject.clone();
            assert_eq!(anchors.verify(&bad, &subject, NOW).unwrap_err(), TicketError::BadSignature);
        }
    }

    #[test]
    fn json_round_trip_and_limits() {
        let (_, _, _, t) = setup();
        let json = t.to_json();
        assert_eq!(Ticket::from_json(&json).unwrap(), t);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["extra"] = 1.into();
        assert!(Ticket::from_json(&v.to_string()).is_err(), "unknown fields refused");
        let big = " ".repeat(MAX_TICKET_JSON + 1);
        assert!(Ticket::from_json(&big).is_err());
        assert_ne!(t.digest(), [0; 32]);
    }

    #[test]
    fn patterns_and_ids() {
        assert!("C*".parse::<OriginatorPattern>().unwrap().covers("CAE1"));
        assert!(!"C*".parse::<OriginatorPattern>().unwrap().covers("SAE1"));
        assert!("*".parse::<OriginatorPattern>().unwrap().covers("anything"));
        assert!("/a*b".parse::<OriginatorPattern>().is_err());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("has space").is_err());
        assert!(NodeId::new("x".repeat(257)).is_err());
    }
}
