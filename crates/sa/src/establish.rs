//! Establish Security Association (clause 7.3.2), as typestates.
//!
//! The Initiator goes [`Initiator::start`] → [`InitiatorAwaitingReply`] →
//! [`InitiatorAwaitingAuthReply`] → [`EstablishedSa`]; the Responder goes [`Responder::accept`] →
//! [`ResponderAwaitingAuth`] → [`EstablishedSa`]. Each step consumes the previous state, so a
//! caller cannot run the flows out of order; a message that arrives out of order from the network
//! is rejected with [`EstablishError::UnexpectedMessage`]. Each state keeps the exact bytes it
//! sent, so a retransmission is byte-identical and nothing is signed twice.

use std::sync::Arc;

use crate::capability::Capabilities;
use crate::credential::{AuthorizationContext, Credentials, NodeId, TicketError, TrustAnchors};
use crate::crypto::{self, CryptoError, Digest, KemAlgorithm, KemDecapsulationKey, SharedSecret, Suite, SuiteCode};
use crate::flows::*;
use crate::message::*;
use crate::rng::{Rng, random_array};
use crate::schedule::{SessionKeys, Transcript, confirmation, signed_content, verify_confirmation};
use crate::{Now, SaId};

const LABEL_RKM: &str = "responder keying material";
const LABEL_IKM: &str = "initiator keying material";
const LABEL_IAC: &str = "initiator authorization challenge";
const LABEL_RAC: &str = "responder authorization challenge";
const SIG_RESPONDER: &str = "responder authorization";
const SIG_INITIATOR: &str = "initiator authorization";
const SIG_RESPONDER_CHALLENGE: &str = "responder challenge";

/// Which end of an SA a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The node that asked for the SA and sends requests over it.
    Initiator,
    /// The node that accepted the SA and answers requests over it.
    Responder,
}

/// Why an establishment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EstablishError {
    /// The peer refused, giving this cause.
    #[error("the peer rejected the establishment: {0:?}")]
    Rejected(RejectionCause),
    /// No suite of the offer is acceptable to the Responder.
    #[error("no parameters in common with the responder")]
    NoParametersInCommon,
    /// The Responder Agent refused for administrative reasons.
    #[error("rejected for administrative reasons")]
    AdministrativeReasons,
    /// A message that is not well formed or breaks a NOTE.
    #[error("invalid message: {0}")]
    Decode(#[from] DecodeError),
    /// A message that is not the one this state waits for.
    #[error("unexpected message for this state")]
    UnexpectedMessage,
    /// The peer broke the protocol in a way its flows' NOTEs cannot express.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The peer's ticket did not verify.
    #[error("peer ticket rejected: {0}")]
    Ticket(#[from] TicketError),
    /// The peer's authorization code (signature over the transcript) did not verify.
    #[error("peer authorization code did not verify")]
    BadAuthorizationCode,
    /// A *Response* that should prove use of a key did not verify.
    #[error("key confirmation failed")]
    BadConfirmation,
    /// A cryptographic operation failed.
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] CryptoError),
    /// The dialogue did not finish in time.
    #[error("establishment timed out")]
    Timeout,
    /// The local request itself is unusable.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
}

impl EstablishError {
    /// The cause reported in Initiate SA confirm and in failure replies.
    pub fn cause(&self) -> RejectionCause {
        match self {
            Self::Rejected(c) => *c,
            Self::NoParametersInCommon => RejectionCause::NoParametersInCommon,
            Self::AdministrativeReasons => RejectionCause::AdministrativeReasons,
            Self::Ticket(TicketError::ContextDoesNotCover) => RejectionCause::NotAuthorized,
            Self::Ticket(_) | Self::BadAuthorizationCode | Self::BadConfirmation | Self::Crypto(_) => {
                RejectionCause::AuthenticationFailed
            }
            Self::Decode(_) | Self::UnexpectedMessage | Self::Protocol(_) | Self::InvalidRequest(_) => {
                RejectionCause::ProtocolViolation
            }
            Self::Timeout => RejectionCause::Timeout,
        }
    }

    /// The Initiate SA confirm (table 23) that reports this failure to the Initiator Agent.
    pub fn to_confirm(&self) -> InitiateSaConfirm {
        InitiateSaConfirm { result: EstablishResult::Failure, security_association: None, cause: Some(self.cause()) }
    }
}

/// What the Initiator's SA Management needs to establish SAs.
#[derive(Clone)]
pub struct InitiatorConfig {
    /// The node's identity, signing key and ticket.
    pub credentials: Arc<Credentials>,
    /// Issuers whose tickets the node accepts.
    pub trust_anchors: Arc<TrustAnchors>,
    /// The ordered offer: most preferred suite first.
    pub offer: Vec<Suite>,
    /// The kind of Responder Authorization Challenge to send.
    pub responder_challenge: ChallengeKind,
    /// The capabilities this node offers in [`SaInit`] (member `cap`, omitted when empty: a
    /// Responder of the previous version refuses the member as unknown).
    pub capabilities: Capabilities,
}

/// What the Responder's SA Management needs to accept SAs.
#[derive(Clone)]
pub struct ResponderConfig {
    /// The node's identity, signing key and ticket.
    pub credentials: Arc<Credentials>,
    /// Issuers whose tickets the node accepts.
    pub trust_anchors: Arc<TrustAnchors>,
    /// The suites the Responder's policy allows; it picks the Initiator's most preferred of these.
    pub supported: Vec<Suite>,
    /// The kind of Initiator Authorization Challenge to send.
    pub initiator_challenge: ChallengeKind,
    /// An explicit context description sent in Send Responder Authorization Context.
    pub explicit_context: Option<String>,
    /// A context description reference sent in Send Responder Authorization Context.
    pub context_reference: Option<String>,
    /// The capabilities this node supports; it answers an [`SaInit`]'s `cap` with those of them
    /// the Initiator listed.
    pub capabilities: Capabilities,
}

/// The Security Association Responder Agent's decision (relationship rc).
pub trait ResponderAgent {
    /// Answers Initiate SA Received (table 24): accept, or reject for administrative reasons.
    fn initiate_sa_received(&mut self, request: &InitiateSaReceivedRequest) -> InitiateSaReceivedConfirm;
}

/// A Responder Agent that accepts every Initiator whose ticket verifies.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl ResponderAgent for AcceptAll {
    fn initiate_sa_received(&mut self, request: &InitiateSaReceivedRequest) -> InitiateSaReceivedConfirm {
        InitiateSaReceivedConfirm::accept(request.sa_id)
    }
}

impl<F: FnMut(&InitiateSaReceivedRequest) -> InitiateSaReceivedConfirm> ResponderAgent for F {
    fn initiate_sa_received(&mut self, request: &InitiateSaReceivedRequest) -> InitiateSaReceivedConfirm {
        self(request)
    }
}

/// An SA both sides hold once establishment is complete.
#[derive(Debug, Clone)]
pub struct EstablishedSa {
    /// The SA identifier.
    pub sa_id: SaId,
    /// This node's role.
    pub role: Role,
    /// The suite agreed.
    pub suite: Suite,
    /// This node's identifier.
    pub local: NodeId,
    /// The peer's identifier, proved by its ticket and signature.
    pub peer: NodeId,
    /// The peer's authorization context, from its verified ticket.
    pub peer_context: Arc<AuthorizationContext>,
    /// When the peer's ticket expires (UNIX seconds); the SA must not outlive it.
    pub peer_ticket_not_after: u64,
    /// When the SA was established (UNIX seconds), for lifetimes in authorization contexts.
    pub established_unix: u64,
    /// The keys of the current epoch.
    pub keys: SessionKeys,
    /// The final transcript hash, which both sides share.
    pub transcript_hash: Digest,
    /// The capabilities both sides support, negotiated in [`SaInit`] and [`SaInitReply`]
    /// (authenticated: both lists are in the transcript).
    pub capabilities: Capabilities,
}

impl EstablishedSa {
    /// The Initiate SA confirm (table 23) reporting this SA.
    pub fn to_confirm(&self) -> InitiateSaConfirm {
        InitiateSaConfirm {
            result: EstablishResult::Success,
            security_association: Some(SaParameters { sa_id: self.sa_id, suite: self.suite.into() }),
            cause: None,
        }
    }

    /// When the SA expires (UNIX seconds): the peer's ticket expiry or the end of the lifetime
    /// its authorization context allows, whichever comes first. The SA Managements and the
    /// table apply this one rule.
    pub fn expires_unix(&self) -> u64 {
        let lifetime_end =
            self.peer_context.max_sa_lifetime_secs.map_or(u64::MAX, |lt| self.established_unix.saturating_add(lt));
        self.peer_ticket_not_after.min(lifetime_end)
    }
}

fn kem_digest(pk: &[u8]) -> Vec<u8> {
    crypto::digest(crypto::HashAlgorithm::Sha256, &[pk]).as_ref().to_vec()
}

fn challenge_bytes(c: &ChallengeRequest) -> Vec<u8> {
    let mut v = vec![match c.kind() {
        ChallengeKind::Encryption => 1u8,
        ChallengeKind::Authentication => 2u8,
    }];
    v.extend_from_slice(c.value());
    v
}

fn capability_bytes(codes: &[u16]) -> Vec<u8> {
    codes.iter().flat_map(|c| c.to_be_bytes()).collect()
}

fn add_init(t: &mut Transcript, m: &SaInit) {
    t.add("ver", &[m.version]);
    t.add("ini", m.initiator.as_str().as_bytes());
    t.add("rsp", m.responder.as_str().as_bytes());
    let offer: Vec<u8> = m.parameters.possible.iter().flat_map(|c| c.0.to_be_bytes()).collect();
    t.add("pss", &offer);
    for share in &m.key_shares {
        let mut s = vec![share.kem];
        s.extend_from_slice(&share.public_key);
        t.add("ksh", &s);
    }
    t.add("nci", &m.nonce);
    if let Some(cap) = &m.capabilities {
        t.add("cap", &capability_bytes(cap));
    }
}

fn add_init_reply(t: &mut Transcript, m: &SaInitReply) {
    let (Some(srk), Some(rkm), Some(_), Some(iac)) = (
        &m.send_responder_key,
        &m.responder_keying_material,
        &m.send_responder_authorization_key,
        &m.initiator_authorization_challenge,
    ) else {
        unreachable!("validated success reply")
    };
    let suite = m.parameters.security_association.expect("validated");
    t.add("sel", &suite.0.to_be_bytes());
    t.add("sid", m.parameters.sa_id.expect("validated").as_bytes());
    t.add("rpk", srk.0.encryption_key.as_deref().unwrap_or_default());
    t.add("rtk", &srk.0.key_authorization_ticket.digest());
    t.add("rkm", &rkm.0.keying_material);
    if let Some(ctx) = &m.responder_authorization_context {
        t.add("ecd", ctx.explicit_context.as_deref().unwrap_or_default().as_bytes());
        t.add("cdr", ctx.context_reference.as_deref().unwrap_or_default().as_bytes());
    }
    t.add("iac", &challenge_bytes(&iac.0));
    if let Some(cap) = &m.capabilities {
        t.add("rcap", &capability_bytes(cap));
    }
}

fn add_auth(t: &mut Transcript, m: &SaAuth) {
    t.add("rkr", &m.responder_keying_material.0.response);
    if let Some(r) = &m.initiator_authorization_challenge.0.response {
        t.add("icr", r);
    }
    t.add("itk", &m.send_initiator_key.0.key_authorization_ticket.digest());
    t.add("ikm", &m.initiator_keying_material.0.keying_material);
    t.add("rac", &challenge_bytes(&m.responder_authorization_challenge.0));
}

// =============================================================================================
// Initiator

/// Entry point of the Initiator's SA Management.
#[derive(Debug, Clone, Copy)]
pub struct Initiator;

/// Cookies one establishment takes before it gives up (the second covers a key rotation at the
/// Responder between the two sends).
pub const MAX_COOKIES: u8 = 2;

/// The Initiator after sending [`SaInit`], waiting for [`SaInitReply`].
pub struct InitiatorAwaitingReply {
    config: InitiatorConfig,
    responder: NodeId,
    shares: Vec<KemDecapsulationKey>,
    transcript: Transcript,
    sent: Vec<u8>,
    cookies: u8,
}

/// The Initiator after sending [`SaAuth`], waiting for [`SaAuthReply`].
pub struct InitiatorAwaitingAuthReply {
    sa_id: SaId,
    suite: Suite,
    local: NodeId,
    peer: NodeId,
    peer_context: Arc<AuthorizationContext>,
    peer_not_after: u64,
    peer_public: (crypto::SignatureAlgorithm, Vec<u8>),
    peer_ticket_digest: [u8; 32],
    ss_r: SharedSecret,
    ss_i: SharedSecret,
    responder_challenge: ChallengeRequest,
    challenge_secret: Option<SharedSecret>,
    th3s: Digest,
    started_unix: u64,
    sent: Vec<u8>,
    capabilities: Capabilities,
}

impl Initiator {
    /// Initiate SA (table 23): builds [`SaInit`] for `request.responder`.
    pub fn start(
        config: InitiatorConfig,
        request: &InitiateSaRequest,
        rng: &mut dyn Rng,
    ) -> Result<(InitiatorAwaitingReply, Vec<u8>), EstablishError> {
        request.validate().map_err(|_| EstablishError::InvalidRequest("initiator equals responder"))?;
        if request.initiator != config.credentials.node_id {
            return Err(EstablishError::InvalidRequest("initiator is not this node"));
        }
        if config.offer.is_empty() || config.offer.len() > MAX_OFFER {
            return Err(EstablishError::InvalidRequest("the offer must hold 1 to 16 suites"));
        }
        let mut kems: Vec<KemAlgorithm> = Vec::new();
        for s in &config.offer {
            if !kems.contains(&s.kem()) {
                kems.push(s.kem());
            }
        }
        let shares = kems.iter().map(|k| KemDecapsulationKey::generate(*k, rng)).collect::<Result<Vec<_>, _>>()?;
        let msg = SaInit {
            version: PROTOCOL_VERSION,
            initiator: request.initiator.clone(),
            responder: request.responder.clone(),
            parameters: SaParameterEstablishmentRequest {
                possible: config.offer.iter().map(|s| SuiteCode::from(*s)).collect(),
            },
            key_shares: shares
                .iter()
                .map(|k| KeyShare { kem: k.algorithm() as u8, public_key: k.public_key().to_vec() })
                .collect(),
            nonce: random_array::<NONCE_LEN>(rng).to_vec(),
            cookie: None,
            capabilities: (!config.capabilities.is_empty()).then(|| config.capabilities.to_codes()),
        };
        let mut transcript = Transcript::new();
        add_init(&mut transcript, &msg);
        let sent = Message::Init(msg).encode();
        let state = InitiatorAwaitingReply {
            config,
            responder: request.responder.clone(),
            shares,
            transcript,
            sent: sent.clone(),
            cookies: 0,
        };
        Ok((state, sent))
    }
}

macro_rules! redacted_debug {
    ($($ty:ident { $($field:ident),* })+) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))$(.field(stringify!($field), &self.$field))*.finish_non_exhaustive()
            }
        }
    )+};
}

redacted_debug! {
    InitiatorAwaitingReply { responder }
    InitiatorAwaitingAuthReply { sa_id, suite, peer }
    ResponderAwaitingAuth { sa_id, suite, initiator }
    Accepted { state }
}

impl InitiatorAwaitingReply {
    /// The bytes of [`SaInit`], for a byte-identical retransmission.
    pub fn sent(&self) -> &[u8] {
        &self.sent
    }

    /// The Responder this establishment is with.
    pub fn responder(&self) -> &NodeId {
        &self.responder
    }

    /// Takes the Responder's cookie: [`SaInit`] is the same but for it (the transcript does not
    /// cover it). Returns the bytes to send from now on, or `None` once [`MAX_COOKIES`] cookies
    /// were taken (a Responder that keeps asking is not answering).
    pub fn set_cookie(&mut self, cookie: Vec<u8>) -> Option<&[u8]> {
        if self.cookies >= MAX_COOKIES {
            return None;
        }
        self.cookies += 1;
        let Ok(Message::Init(mut init)) = Message::decode(&self.sent) else {
            unreachable!("sent holds the SaInit this state built")
        };
        init.cookie = Some(cookie);
        self.sent = Message::Init(init).encode();
        Some(&self.sent)
    }

    /// Processes [`SaInitReply`]; on success returns the next state and the bytes of [`SaAuth`].
    pub fn handle(
        self,
        bytes: &[u8],
        now: Now,
        rng: &mut dyn Rng,
    ) -> Result<(InitiatorAwaitingAuthReply, Vec<u8>), EstablishError> {
        let Message::InitReply(reply) = Message::decode(bytes)? else {
            return Err(EstablishError::UnexpectedMessage);
        };
        if reply.parameters.result == EstablishResult::Failure {
            return Err(match reply.parameters.cause.expect("validated") {
                RejectionCause::NoParametersInCommon => EstablishError::NoParametersInCommon,
                RejectionCause::AdministrativeReasons => EstablishError::AdministrativeReasons,
                other => EstablishError::Rejected(other),
            });
        }
        let sa_id = reply.parameters.sa_id.expect("validated");
        let code = reply.parameters.security_association.expect("validated");
        let suite = Suite::try_from(code)
            .ok()
            .filter(|s| self.config.offer.contains(s))
            .ok_or(EstablishError::Protocol("the responder chose a suite that was not offered"))?;
        let share = self
            .shares
            .iter()
            .find(|k| k.algorithm() == suite.kem())
            .expect("a share exists for every KEM of the offer");
        let srk = &reply.send_responder_key.as_ref().expect("validated").0;
        let srak = &reply.send_responder_authorization_key.as_ref().expect("validated").0;
        let rkm = &reply.responder_keying_material.as_ref().expect("validated").0;
        let iac = &reply.initiator_authorization_challenge.as_ref().expect("validated").0;

        // The Responder's ticket must name the node we asked for, under an anchor we trust.
        let ticket = self.config.trust_anchors.verify(&srk.key_authorization_ticket, &self.responder, now.unix_secs)?;
        let responder_pk = srk
            .encryption_key
            .as_deref()
            .filter(|pk| pk.len() == crypto::public_key_len(suite.kem()))
            .ok_or(EstablishError::Protocol("Send Responder Key lacks a KEM key of the chosen suite"))?;
        if srak.authorization_ticket_reference.as_deref().is_some_and(|r| r != ticket.digest())
            || srak.authorization_ticket.as_ref().is_some_and(|t| t.digest() != ticket.digest())
            || srak.encryption_key_reference.as_deref().is_some_and(|r| r != kem_digest(responder_pk))
            || srak.encryption_key.as_deref().is_some_and(|k| k != responder_pk)
        {
            return Err(EstablishError::Protocol("authorization key flow names another key or ticket"));
        }
        if let Some(ctx) = &reply.responder_authorization_context {
            if ctx.authorization_ticket.digest() != Some(ticket.digest()) {
                return Err(EstablishError::Protocol("authorization context names another ticket"));
            }
        }

        let mut transcript = self.transcript;
        add_init_reply(&mut transcript, &reply);
        let th2 = transcript.hash(suite.hash());
        let code = srak.authorization_code.as_deref().expect("validated");
        crypto::verify(ticket.algorithm(), ticket.public_key(), &signed_content(SIG_RESPONDER, &th2), code)
            .map_err(|_| EstablishError::BadAuthorizationCode)?;
        transcript.add("rsg", code);
        let th2s = transcript.hash(suite.hash());

        // Responder Keying Material: decapsulate and prove it.
        let ss_r = share.decapsulate(&rkm.keying_material)?;
        let rkm_response = confirmation(suite.hash(), &ss_r, LABEL_RKM, &th2s);

        // Initiator Authorization Challenge.
        let creds = &self.config.credentials;
        let my_ticket_ref = TicketElement::reference_to(&creds.ticket);
        let iac_response = match iac.kind() {
            ChallengeKind::Encryption => {
                let ss = share.decapsulate(iac.value())?;
                Some(confirmation(suite.hash(), &ss, LABEL_IAC, &th2s))
            }
            ChallengeKind::Authentication => None,
        };

        // Initiator Keying Material and the Responder Authorization Challenge.
        let (ikm_ct, ss_i) = crypto::encapsulate(suite.kem(), responder_pk, rng)?;
        let (responder_challenge, challenge_secret) = match self.config.responder_challenge {
            ChallengeKind::Encryption => {
                let (ct, ss) = crypto::encapsulate(suite.kem(), responder_pk, rng)?;
                (ChallengeRequest { sa_id, encryption_challenge: Some(ct), authentication_challenge: None }, Some(ss))
            }
            ChallengeKind::Authentication => (
                ChallengeRequest {
                    sa_id,
                    encryption_challenge: None,
                    authentication_challenge: Some(random_array::<32>(rng).to_vec()),
                },
                None,
            ),
        };

        let mut msg = SaAuth {
            version: PROTOCOL_VERSION,
            sa_id,
            responder_keying_material: ResponderKeyingMaterialConfirm(KeyingMaterialConfirm {
                sa_id,
                response: rkm_response,
            }),
            send_initiator_key: SendInitiatorKey(KeyAnnouncement {
                sa_id,
                encryption_key: None,
                encryption_key_reference: Some(kem_digest(share.public_key())),
                key_authorization_ticket: creds.ticket.clone(),
            }),
            initiator_keying_material: InitiatorKeyingMaterialRequest(KeyingMaterialRequest {
                sa_id,
                keying_material: ikm_ct,
            }),
            send_initiator_authorization_key: SendInitiatorAuthorizationKey(AuthorizationKey {
                sa_id,
                encryption_key: None,
                encryption_key_reference: Some(kem_digest(share.public_key())),
                authorization_ticket: None,
                authorization_ticket_reference: my_ticket_ref.reference.clone(),
                authorization_code: None,
            }),
            initiator_authorization_challenge: InitiatorAuthorizationChallengeConfirm(ChallengeConfirm {
                sa_id,
                response: iac_response,
                authorization_ticket: None,
                authorization_code: None,
            }),
            responder_authorization_challenge: ResponderAuthorizationChallengeRequest(responder_challenge.clone()),
        };
        add_auth(&mut transcript, &msg);
        let th3 = transcript.hash(suite.hash());
        let signature = creds.signing_key.sign(&signed_content(SIG_INITIATOR, &th3))?;
        transcript.add("isg", &signature);
        let th3s = transcript.hash(suite.hash());
        msg.send_initiator_authorization_key.0.authorization_code = Some(signature.clone());
        if iac.kind() == ChallengeKind::Authentication {
            let c = &mut msg.initiator_authorization_challenge.0;
            c.authorization_ticket = Some(my_ticket_ref);
            c.authorization_code = Some(signature);
        }
        let sent = Message::Auth(msg).encode();
        // What both support: the Responder's answer, checked by its signature over TH2, within
        // what this node offered (codes it did not offer are ignored).
        let capabilities = self
            .config
            .capabilities
            .intersection(Capabilities::from_codes(reply.capabilities.as_deref().unwrap_or_default()));
        let state = InitiatorAwaitingAuthReply {
            capabilities,
            sa_id,
            suite,
            local: creds.node_id.clone(),
            peer: self.responder,
            peer_context: Arc::new(ticket.context().clone()),
            peer_not_after: ticket.ticket().not_after,
            peer_public: (ticket.algorithm(), ticket.public_key().to_vec()),
            peer_ticket_digest: ticket.digest(),
            ss_r,
            ss_i,
            responder_challenge,
            challenge_secret,
            th3s,
            started_unix: now.unix_secs,
            sent: sent.clone(),
        };
        Ok((state, sent))
    }
}

impl InitiatorAwaitingAuthReply {
    /// The bytes of [`SaAuth`], for a byte-identical retransmission.
    pub fn sent(&self) -> &[u8] {
        &self.sent
    }

    /// The SA identifier the Responder assigned.
    pub fn sa_id(&self) -> SaId {
        self.sa_id
    }

    /// Processes [`SaAuthReply`]; on success the SA is established.
    pub fn handle(self, bytes: &[u8]) -> Result<EstablishedSa, EstablishError> {
        let Message::AuthReply(reply) = Message::decode(bytes)? else {
            return Err(EstablishError::UnexpectedMessage);
        };
        if reply.sa_id != self.sa_id {
            return Err(EstablishError::Protocol("reply for another SA"));
        }
        if reply.result == EstablishResult::Failure {
            return Err(EstablishError::Rejected(reply.cause.expect("validated")));
        }
        let hash = self.suite.hash();
        let ikm = &reply.initiator_keying_material.as_ref().expect("validated").0;
        if !verify_confirmation(hash, &self.ss_i, LABEL_IKM, &self.th3s, &ikm.response) {
            return Err(EstablishError::BadConfirmation);
        }
        let rac = &reply.responder_authorization_challenge.as_ref().expect("validated").0;
        rac.validate_against(&self.responder_challenge, ResponderAuthorizationChallengeConfirm::NAME)
            .map_err(|e| EstablishError::Decode(DecodeError::Flow(e)))?;
        match self.responder_challenge.kind() {
            ChallengeKind::Encryption => {
                let ss = self.challenge_secret.as_ref().expect("kept for an encryption challenge");
                if !verify_confirmation(hash, ss, LABEL_RAC, &self.th3s, rac.response.as_deref().expect("validated")) {
                    return Err(EstablishError::BadConfirmation);
                }
            }
            ChallengeKind::Authentication => {
                let element = rac.authorization_ticket.as_ref().expect("validated");
                if element.digest() != Some(self.peer_ticket_digest) {
                    return Err(EstablishError::Protocol("challenge answered with another ticket"));
                }
                let (alg, pk) = &self.peer_public;
                crypto::verify(
                    *alg,
                    pk,
                    &signed_content(SIG_RESPONDER_CHALLENGE, &self.th3s),
                    rac.authorization_code.as_deref().expect("validated"),
                )
                .map_err(|_| EstablishError::BadAuthorizationCode)?;
            }
        }
        Ok(EstablishedSa {
            sa_id: self.sa_id,
            role: Role::Initiator,
            suite: self.suite,
            local: self.local,
            peer: self.peer,
            peer_context: self.peer_context,
            peer_ticket_not_after: self.peer_not_after,
            established_unix: self.started_unix,
            keys: SessionKeys::establish(self.suite, self.sa_id, &self.th3s, &self.ss_r, &self.ss_i),
            transcript_hash: self.th3s,
            capabilities: self.capabilities,
        })
    }
}

// =============================================================================================
// Responder

/// Entry point of the Responder's SA Management.
#[derive(Debug, Clone, Copy)]
pub struct Responder;

/// The Responder after sending [`SaInitReply`], waiting for [`SaAuth`].
pub struct ResponderAwaitingAuth {
    config: ResponderConfig,
    sa_id: SaId,
    suite: Suite,
    initiator: NodeId,
    initiator_share_digest: Vec<u8>,
    ephemeral: KemDecapsulationKey,
    ss_r: SharedSecret,
    challenge: ChallengeRequest,
    challenge_secret: Option<SharedSecret>,
    transcript: Transcript,
    sent: Vec<u8>,
    capabilities: Capabilities,
}

/// A refused [`SaInit`]: the reply to send and the event for the Responder Agent.
#[derive(Debug)]
pub struct InitRefusal {
    /// The failure [`SaInitReply`] to send (none when the message was not even well formed).
    pub reply: Option<Vec<u8>>,
    /// Why.
    pub error: EstablishError,
}

/// The outcome of [`ResponderAwaitingAuth::handle`] when the Initiator fails authentication.
#[derive(Debug)]
pub struct AuthRefusal {
    /// The failure [`SaAuthReply`] to send.
    pub reply: Vec<u8>,
    /// The SA Establishment Complete (failure) event for the Responder Agent.
    pub complete: SaEstablishmentComplete,
    /// Why.
    pub error: EstablishError,
}

/// The Responder's answer to [`SaInit`] once accepted.
pub struct Accepted {
    /// The state waiting for [`SaAuth`].
    pub state: ResponderAwaitingAuth,
    /// The bytes of [`SaInitReply`] to send.
    pub reply: Vec<u8>,
    /// The Initiate SA Received exchange with the Responder Agent, for the record.
    pub received: (InitiateSaReceivedRequest, InitiateSaReceivedConfirm),
}

fn init_failure(cause: RejectionCause) -> Vec<u8> {
    Message::InitReply(SaInitReply {
        version: PROTOCOL_VERSION,
        parameters: SaParameterEstablishmentConfirm {
            result: EstablishResult::Failure,
            security_association: None,
            sa_id: None,
            cause: Some(cause),
        },
        send_responder_key: None,
        responder_keying_material: None,
        responder_authorization_context: None,
        send_responder_authorization_key: None,
        initiator_authorization_challenge: None,
        capabilities: None,
    })
    .encode()
}

/// The failure [`SaAuthReply`] for `sa_id`.
pub fn auth_failure(sa_id: SaId, cause: RejectionCause) -> Vec<u8> {
    Message::AuthReply(SaAuthReply {
        version: PROTOCOL_VERSION,
        sa_id,
        result: EstablishResult::Failure,
        cause: Some(cause),
        initiator_keying_material: None,
        responder_authorization_challenge: None,
    })
    .encode()
}

impl Responder {
    /// Processes an already decoded [`SaInit`]: SA Parameter Establishment, the Responder
    /// Agent's decision (Initiate SA Received), then the Responder's key, keying material,
    /// authorization key and challenge. `sa_id` is a fresh identifier the caller drew and
    /// checked against its table.
    pub fn accept(
        config: ResponderConfig,
        agent: &mut dyn ResponderAgent,
        init: &SaInit,
        sa_id: SaId,
        rng: &mut dyn Rng,
    ) -> Result<Accepted, InitRefusal> {
        let refuse = |error: EstablishError| InitRefusal { reply: Some(init_failure(error.cause())), error };
        let creds = config.credentials.clone();
        if init.responder != creds.node_id {
            return Err(refuse(EstablishError::Protocol("SaInit names another responder")));
        }
        // The Initiator's most preferred suite that the Responder's policy allows.
        let Some(suite) = init
            .parameters
            .possible
            .iter()
            .filter_map(|c| Suite::try_from(*c).ok())
            .find(|s| config.supported.contains(s))
        else {
            return Err(refuse(EstablishError::NoParametersInCommon));
        };
        let Some(share) = init.key_shares.iter().find(|k| k.algorithm() == Some(suite.kem())) else {
            return Err(refuse(EstablishError::Protocol("no key share for a KEM of the offer")));
        };
        if share.public_key.len() != crypto::public_key_len(suite.kem()) {
            return Err(refuse(EstablishError::Protocol("key share of the wrong length")));
        }
        let request = InitiateSaReceivedRequest { initiator: init.initiator.clone(), sa_id };
        let decision = agent.initiate_sa_received(&request);
        if decision.validate().is_err() || decision.sa_id != sa_id {
            return Err(refuse(EstablishError::InvalidRequest("the Responder Agent's answer breaks table 24")));
        }
        if decision.result == EstablishResult::Failure {
            return Err(refuse(EstablishError::AdministrativeReasons));
        }

        // The capabilities the Initiator listed that this node supports; unknown codes ignored.
        let capabilities = config
            .capabilities
            .intersection(Capabilities::from_codes(init.capabilities.as_deref().unwrap_or_default()));
        let mut run = || -> Result<Accepted, EstablishError> {
            let ephemeral = KemDecapsulationKey::generate(suite.kem(), rng)?;
            let (rkm_ct, ss_r) = crypto::encapsulate(suite.kem(), &share.public_key, rng)?;
            let (challenge, challenge_secret) = match config.initiator_challenge {
                ChallengeKind::Encryption => {
                    let (ct, ss) = crypto::encapsulate(suite.kem(), &share.public_key, rng)?;
                    (
                        ChallengeRequest { sa_id, encryption_challenge: Some(ct), authentication_challenge: None },
                        Some(ss),
                    )
                }
                ChallengeKind::Authentication => (
                    ChallengeRequest {
                        sa_id,
                        encryption_challenge: None,
                        authentication_challenge: Some(random_array::<32>(rng).to_vec()),
                    },
                    None,
                ),
            };
            let context = (config.explicit_context.is_some() || config.context_reference.is_some()).then(|| {
                SendResponderAuthorizationContext {
                    sa_id,
                    authorization_ticket: TicketElement::reference_to(&creds.ticket),
                    explicit_context: config.explicit_context.clone(),
                    context_reference: config.context_reference.clone(),
                }
            });
            let mut reply = SaInitReply {
                version: PROTOCOL_VERSION,
                parameters: SaParameterEstablishmentConfirm {
                    result: EstablishResult::Success,
                    security_association: Some(suite.into()),
                    sa_id: Some(sa_id),
                    cause: None,
                },
                send_responder_key: Some(SendResponderKey(KeyAnnouncement {
                    sa_id,
                    encryption_key: Some(ephemeral.public_key().to_vec()),
                    encryption_key_reference: None,
                    key_authorization_ticket: creds.ticket.clone(),
                })),
                responder_keying_material: Some(ResponderKeyingMaterialRequest(KeyingMaterialRequest {
                    sa_id,
                    keying_material: rkm_ct,
                })),
                responder_authorization_context: context,
                send_responder_authorization_key: None,
                initiator_authorization_challenge: Some(InitiatorAuthorizationChallengeRequest(challenge.clone())),
                capabilities: init.capabilities.as_ref().map(|_| capabilities.to_codes()),
            };
            let mut transcript = Transcript::new();
            add_init(&mut transcript, init);
            // The authorization key flow is not in the transcript before it is signed; fill a
            // placeholder so `add_init_reply` sees a complete reply.
            reply.send_responder_authorization_key = Some(SendResponderAuthorizationKey(AuthorizationKey {
                sa_id,
                encryption_key: None,
                encryption_key_reference: Some(kem_digest(ephemeral.public_key())),
                authorization_ticket: None,
                authorization_ticket_reference: Some(creds.ticket.digest().to_vec()),
                authorization_code: None,
            }));
            add_init_reply(&mut transcript, &reply);
            let th2 = transcript.hash(suite.hash());
            let signature = creds.signing_key.sign(&signed_content(SIG_RESPONDER, &th2))?;
            transcript.add("rsg", &signature);
            reply.send_responder_authorization_key.as_mut().expect("set above").0.authorization_code = Some(signature);
            let sent = Message::InitReply(reply).encode();
            Ok(Accepted {
                state: ResponderAwaitingAuth {
                    initiator_share_digest: kem_digest(&share.public_key),
                    config: config.clone(),
                    sa_id,
                    suite,
                    initiator: init.initiator.clone(),
                    ephemeral,
                    ss_r,
                    challenge,
                    challenge_secret,
                    transcript,
                    sent: sent.clone(),
                    capabilities,
                },
                reply: sent,
                received: (request.clone(), decision.clone()),
            })
        };
        run().map_err(refuse)
    }
}

impl ResponderAwaitingAuth {
    /// The bytes of [`SaInitReply`], for a byte-identical retransmission.
    pub fn sent(&self) -> &[u8] {
        &self.sent
    }

    /// The SA identifier.
    pub fn sa_id(&self) -> SaId {
        self.sa_id
    }

    /// The Initiator, as it claimed to be in [`SaInit`].
    pub fn initiator(&self) -> &NodeId {
        &self.initiator
    }

    /// Processes an already decoded [`SaAuth`]: checks the Initiator's keying material
    /// confirmation, ticket, authorization code and challenge answer, then answers the
    /// Responder Authorization Challenge. On success returns the SA, the bytes of
    /// [`SaAuthReply`] and SA Establishment Complete.
    pub fn handle(
        self,
        auth: &SaAuth,
        now: Now,
    ) -> Result<(EstablishedSa, Vec<u8>, SaEstablishmentComplete), AuthRefusal> {
        self.verify(auth, now)
    }

    /// [`Self::handle`] without giving up the state: a [`SaAuth`] that fails verification (a
    /// forgery by anyone who saw the identifier in the clear [`SaInitReply`]) leaves the
    /// establishment waiting for the genuine one.
    pub fn verify(
        &self,
        auth: &SaAuth,
        now: Now,
    ) -> Result<(EstablishedSa, Vec<u8>, SaEstablishmentComplete), AuthRefusal> {
        let sa_id = self.sa_id;
        let refuse = |error: EstablishError| AuthRefusal {
            reply: auth_failure(sa_id, error.cause()),
            complete: SaEstablishmentComplete {
                sa_id,
                result: EstablishResult::Failure,
                failure_cause: Some(EstablishmentFailureCause::InitiatorNotAuthenticated),
            },
            error,
        };
        if auth.sa_id != sa_id {
            return Err(refuse(EstablishError::Protocol("SaAuth for another SA")));
        }
        self.finish(auth, now).map_err(refuse)
    }

    fn finish(
        &self,
        auth: &SaAuth,
        now: Now,
    ) -> Result<(EstablishedSa, Vec<u8>, SaEstablishmentComplete), EstablishError> {
        let hash = self.suite.hash();
        let mut transcript = self.transcript.clone();
        let th2s = transcript.hash(hash);
        if !verify_confirmation(hash, &self.ss_r, LABEL_RKM, &th2s, &auth.responder_keying_material.0.response) {
            return Err(EstablishError::BadConfirmation);
        }
        let sik = &auth.send_initiator_key.0;
        if sik.encryption_key_reference.as_deref().is_some_and(|r| r != self.initiator_share_digest)
            || sik.encryption_key.as_deref().is_some_and(|k| kem_digest(k) != self.initiator_share_digest)
        {
            return Err(EstablishError::Protocol("Send Initiator Key names a key other than the key share"));
        }
        let ticket = self.config.trust_anchors.verify(&sik.key_authorization_ticket, &self.initiator, now.unix_secs)?;
        let siak = &auth.send_initiator_authorization_key.0;
        if siak.authorization_ticket_reference.as_deref().is_some_and(|r| r != ticket.digest())
            || siak.authorization_ticket.as_ref().is_some_and(|t| t.digest() != ticket.digest())
            || siak.encryption_key_reference.as_deref().is_some_and(|r| r != self.initiator_share_digest)
        {
            return Err(EstablishError::Protocol("authorization key flow names another key or ticket"));
        }

        // Initiator Authorization Challenge: the answer must fit the challenge we sent.
        let iacc = &auth.initiator_authorization_challenge.0;
        iacc.validate_against(&self.challenge, InitiatorAuthorizationChallengeConfirm::NAME)
            .map_err(|e| EstablishError::Decode(DecodeError::Flow(e)))?;
        if let ChallengeKind::Encryption = self.challenge.kind() {
            let ss = self.challenge_secret.as_ref().expect("kept for an encryption challenge");
            if !verify_confirmation(hash, ss, LABEL_IAC, &th2s, iacc.response.as_deref().expect("validated")) {
                return Err(EstablishError::BadConfirmation);
            }
        }

        add_auth(&mut transcript, auth);
        let th3 = transcript.hash(hash);
        let code = siak.authorization_code.as_deref().expect("validated");
        crypto::verify(ticket.algorithm(), ticket.public_key(), &signed_content(SIG_INITIATOR, &th3), code)
            .map_err(|_| EstablishError::BadAuthorizationCode)?;
        if self.challenge.kind() == ChallengeKind::Authentication {
            // The challenge confirm carries the same signature, over a transcript holding the nonce.
            let element = iacc.authorization_ticket.as_ref().expect("validated");
            if element.digest() != Some(ticket.digest()) || iacc.authorization_code.as_deref() != Some(code) {
                return Err(EstablishError::BadAuthorizationCode);
            }
        }
        transcript.add("isg", code);
        let th3s = transcript.hash(hash);

        let ss_i = self.ephemeral.decapsulate(&auth.initiator_keying_material.0.keying_material)?;
        let rac = &auth.responder_authorization_challenge.0;
        let creds = &self.config.credentials;
        let rac_confirm = match rac.kind() {
            ChallengeKind::Encryption => {
                let ss = self.ephemeral.decapsulate(rac.value())?;
                ChallengeConfirm {
                    sa_id: self.sa_id,
                    response: Some(confirmation(hash, &ss, LABEL_RAC, &th3s)),
                    authorization_ticket: None,
                    authorization_code: None,
                }
            }
            ChallengeKind::Authentication => ChallengeConfirm {
                sa_id: self.sa_id,
                response: None,
                authorization_ticket: Some(TicketElement::reference_to(&creds.ticket)),
                authorization_code: Some(creds.signing_key.sign(&signed_content(SIG_RESPONDER_CHALLENGE, &th3s))?),
            },
        };
        let reply = Message::AuthReply(SaAuthReply {
            version: PROTOCOL_VERSION,
            sa_id: self.sa_id,
            result: EstablishResult::Success,
            cause: None,
            initiator_keying_material: Some(InitiatorKeyingMaterialConfirm(KeyingMaterialConfirm {
                sa_id: self.sa_id,
                response: confirmation(hash, &ss_i, LABEL_IKM, &th3s),
            })),
            responder_authorization_challenge: Some(ResponderAuthorizationChallengeConfirm(rac_confirm)),
        })
        .encode();
        let sa = EstablishedSa {
            sa_id: self.sa_id,
            role: Role::Responder,
            suite: self.suite,
            local: creds.node_id.clone(),
            peer: self.initiator.clone(),
            peer_context: Arc::new(ticket.context().clone()),
            peer_ticket_not_after: ticket.ticket().not_after,
            established_unix: now.unix_secs,
            keys: SessionKeys::establish(self.suite, self.sa_id, &th3s, &self.ss_r, &ss_i),
            transcript_hash: th3s,
            capabilities: self.capabilities,
        };
        let complete =
            SaEstablishmentComplete { sa_id: self.sa_id, result: EstablishResult::Success, failure_cause: None };
        Ok((sa, reply, complete))
    }
}

/// The SA Establishment Complete event for an establishment refused at [`SaInit`].
pub fn unmatched_parameters(sa_id: SaId) -> SaEstablishmentComplete {
    SaEstablishmentComplete {
        sa_id,
        result: EstablishResult::Failure,
        failure_cause: Some(EstablishmentFailureCause::UnableToMatchSecurityParameters),
    }
}
