//! The messages that carry the flows across relationship rb.
//!
//! On a request/response binding the Initiator drives: a full establishment with mutual
//! authorization is two round trips, four messages, each carrying several flows of tables 25–34:
//!
//! | message | direction | flows |
//! |---|---|---|
//! | [`SaInit`] | I → R | SA Parameter Establishment req, the Initiator's KEM key shares, a nonce |
//! | [`SaInitReply`] | R → I | SA Parameter Establishment cnf, Send Responder Key, Responder Keying Material req, Send Responder Authorization Context (optional), Send Responder Authorization Key, Initiator Authorization Challenge req |
//! | [`SaAuth`] | I → R | Responder Keying Material cnf, Send Initiator Key, Initiator Keying Material req, Send Initiator Authorization Key, Initiator Authorization Challenge cnf, Responder Authorization Challenge req |
//! | [`SaAuthReply`] | R → I | Initiator Keying Material cnf, Responder Authorization Challenge cnf |
//! | [`SaCookie`] | R → I | (none: a stateless request to repeat [`SaInit`] with a cookie, under load) |
//!
//! Update and removal flows travel in a [`ControlEnvelope`], sealed under the SA's control keys.
//! Every message is JSON, at most [`MAX_MESSAGE_BYTES`]; decoding checks every flow's NOTEs and
//! which flows a message must hold.

use serde::{Deserialize, Serialize};

use crate::SaId;
use crate::capability::MAX_CAPABILITY_CODES;
use crate::credential::NodeId;
use crate::crypto::KemAlgorithm;
use crate::flows::*;

/// Largest message a peer may send.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Length of the Initiator's nonce.
pub const NONCE_LEN: usize = 32;

/// An ephemeral KEM public key the Initiator sends ahead, for one KEM of its offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyShare {
    /// The KEM, as its code.
    #[serde(rename = "kem")]
    pub kem: u8,
    /// The encapsulation key.
    #[serde(rename = "pk", with = "crate::b64")]
    pub public_key: Vec<u8>,
}

impl KeyShare {
    /// The KEM, if known.
    pub fn algorithm(&self) -> Option<KemAlgorithm> {
        KemAlgorithm::from_u8(self.kem)
    }
}

/// First message, Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaInit {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// The Initiator's identifier (Initiate SA).
    #[serde(rename = "ini")]
    pub initiator: NodeId,
    /// The Responder's identifier (Initiate SA).
    #[serde(rename = "rsp")]
    pub responder: NodeId,
    /// SA Parameter Establishment, request.
    #[serde(rename = "spe")]
    pub parameters: SaParameterEstablishmentRequest,
    /// One ephemeral KEM public key for each distinct KEM of the offer, in offer order.
    #[serde(rename = "ksh")]
    pub key_shares: Vec<KeyShare>,
    /// The Initiator's fresh nonce.
    #[serde(rename = "nci", with = "crate::b64")]
    pub nonce: Vec<u8>,
    /// The Responder's cookie, when it asked for one ([`SaCookie`]). Not part of the transcript:
    /// it only proves that the Initiator receives at its address.
    #[serde(rename = "ck", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub cookie: Option<Vec<u8>>,
    /// The capability codes the Initiator supports ([`crate::capability`]), in the transcript.
    /// Absent (a peer of the previous version) is the empty set.
    #[serde(rename = "cap", default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<u16>>,
}

/// Largest cookie a Responder may hand out.
pub const MAX_COOKIE_BYTES: usize = 64;

/// The Responder's stateless answer to an [`SaInit`] while it requires cookies: send the same
/// `SaInit` again with this cookie. The Responder keeps no state and does no public-key work
/// for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaCookie {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// The cookie, opaque to the Initiator.
    #[serde(rename = "ck", with = "crate::b64")]
    pub cookie: Vec<u8>,
}

/// Second message, Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaInitReply {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// SA Parameter Establishment, confirm.
    #[serde(rename = "spe")]
    pub parameters: SaParameterEstablishmentConfirm,
    /// Send Responder Key.
    #[serde(rename = "srk", default, skip_serializing_if = "Option::is_none")]
    pub send_responder_key: Option<SendResponderKey>,
    /// Responder Keying Material, request.
    #[serde(rename = "rkm", default, skip_serializing_if = "Option::is_none")]
    pub responder_keying_material: Option<ResponderKeyingMaterialRequest>,
    /// Send Responder Authorization Context, when the Responder has a context to state beyond
    /// its ticket.
    #[serde(rename = "src", default, skip_serializing_if = "Option::is_none")]
    pub responder_authorization_context: Option<SendResponderAuthorizationContext>,
    /// Send Responder Authorization Key.
    #[serde(rename = "srak", default, skip_serializing_if = "Option::is_none")]
    pub send_responder_authorization_key: Option<SendResponderAuthorizationKey>,
    /// Initiator Authorization Challenge, request.
    #[serde(rename = "iac", default, skip_serializing_if = "Option::is_none")]
    pub initiator_authorization_challenge: Option<InitiatorAuthorizationChallengeRequest>,
    /// The capability codes of [`SaInit`]'s `cap` that the Responder supports too, in the
    /// transcript. Present in a success reply exactly when [`SaInit`] carried `cap`.
    #[serde(rename = "cap", default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<u16>>,
}

/// Third message, Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaAuth {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// The SA this message continues.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Responder Keying Material, confirm.
    #[serde(rename = "rkmc")]
    pub responder_keying_material: ResponderKeyingMaterialConfirm,
    /// Send Initiator Key.
    #[serde(rename = "sik")]
    pub send_initiator_key: SendInitiatorKey,
    /// Initiator Keying Material, request.
    #[serde(rename = "ikm")]
    pub initiator_keying_material: InitiatorKeyingMaterialRequest,
    /// Send Initiator Authorization Key.
    #[serde(rename = "siak")]
    pub send_initiator_authorization_key: SendInitiatorAuthorizationKey,
    /// Initiator Authorization Challenge, confirm.
    #[serde(rename = "iacc")]
    pub initiator_authorization_challenge: InitiatorAuthorizationChallengeConfirm,
    /// Responder Authorization Challenge, request.
    #[serde(rename = "rac")]
    pub responder_authorization_challenge: ResponderAuthorizationChallengeRequest,
}

/// Fourth message, Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaAuthReply {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// The SA this message concludes.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Establishment result.
    #[serde(rename = "rs")]
    pub result: EstablishResult,
    /// Cause of a failure.
    #[serde(rename = "cr", default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<RejectionCause>,
    /// Initiator Keying Material, confirm.
    #[serde(rename = "ikmc", default, skip_serializing_if = "Option::is_none")]
    pub initiator_keying_material: Option<InitiatorKeyingMaterialConfirm>,
    /// Responder Authorization Challenge, confirm.
    #[serde(rename = "racc", default, skip_serializing_if = "Option::is_none")]
    pub responder_authorization_challenge: Option<ResponderAuthorizationChallengeConfirm>,
}

/// An update or removal flow, sealed under the SA's control keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlEnvelope {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// The SA whose control keys seal the flow.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// The key epoch the sender sealed under.
    #[serde(rename = "ep")]
    pub epoch: u32,
    /// Control sequence number of the sender's direction; strictly increasing.
    #[serde(rename = "seq")]
    pub seq: u64,
    /// AEAD ciphertext and tag of the JSON encoding of a [`ControlFlow`].
    #[serde(rename = "ct", with = "crate::b64")]
    pub ciphertext: Vec<u8>,
}

/// The unauthenticated answer to a control envelope whose SA the receiver cannot use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlError {
    /// Protocol version.
    #[serde(rename = "v")]
    pub version: u8,
    /// The SA named by the envelope.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Why the envelope could not be used.
    #[serde(rename = "rr")]
    pub reason: ControlRejection,
}

code_enum_pub! {
    /// Why a receiver could not use a control envelope, said without authentication.
    ControlRejection {
        /// "Unknown SA Identifier".
        UnknownSaIdentifier = 1,
        /// "SA Identifier already marked invalid".
        AlreadyMarkedInvalid = 2,
        /// "Decryption failure": the envelope did not authenticate under the SA's keys.
        DecryptionFailure = 3,
    }
}

/// A flow that travels inside a [`ControlEnvelope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum ControlFlow {
    /// SA Identifier Update, request (table 37).
    #[serde(rename = "siu")]
    SaIdentifierUpdateRequest(SaIdentifierUpdateRequest),
    /// SA Identifier Update, confirm (table 37).
    #[serde(rename = "siuc")]
    SaIdentifierUpdateConfirm(SaIdentifierUpdateConfirm),
    /// SA Identifier Update Response (table 38).
    #[serde(rename = "siur")]
    SaIdentifierUpdateResponse(SaIdentifierUpdateResponse),
    /// SA Key Update, request (table 39).
    #[serde(rename = "sku")]
    SaKeyUpdateRequest(SaKeyUpdateRequest),
    /// SA Key Update, confirm (table 39).
    #[serde(rename = "skuc")]
    SaKeyUpdateConfirm(SaKeyUpdateConfirm),
    /// SA Key Update Response (table 40).
    #[serde(rename = "skur")]
    SaKeyUpdateResponse(SaKeyUpdateResponse),
    /// SA Removal, request (table 43).
    #[serde(rename = "sar")]
    SaRemovalRequest(SaRemovalRequest),
    /// SA Removal, confirm (table 43).
    #[serde(rename = "sarc")]
    SaRemovalConfirm(SaRemovalConfirm),
    /// An empty acknowledgement of an unconfirmed flow (tables 38 and 40), so that the
    /// Initiator knows it arrived and can stop retransmitting.
    #[serde(rename = "ack")]
    Ack {
        /// The control sequence number acknowledged.
        #[serde(rename = "seq")]
        seq: u64,
    },
}

impl ControlFlow {
    /// Checks the NOTEs of the flow inside.
    pub fn validate(&self) -> Result<(), FlowError> {
        match self {
            Self::SaIdentifierUpdateRequest(f) => f.validate(),
            Self::SaIdentifierUpdateConfirm(f) => f.validate(),
            Self::SaIdentifierUpdateResponse(f) => f.validate(),
            Self::SaKeyUpdateRequest(f) => f.validate(),
            Self::SaKeyUpdateConfirm(f) => f.validate(),
            Self::SaKeyUpdateResponse(f) => f.validate(),
            Self::SaRemovalRequest(f) => f.validate(),
            Self::SaRemovalConfirm(f) => f.validate(),
            Self::Ack { .. } => Ok(()),
        }
    }
}

/// Every message of the protocol, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Message {
    /// First establishment message.
    #[serde(rename = "init")]
    Init(SaInit),
    /// Second establishment message.
    #[serde(rename = "initReply")]
    InitReply(SaInitReply),
    /// Third establishment message.
    #[serde(rename = "auth")]
    Auth(SaAuth),
    /// Fourth establishment message.
    #[serde(rename = "authReply")]
    AuthReply(SaAuthReply),
    /// A sealed update or removal flow.
    #[serde(rename = "ctl")]
    Control(ControlEnvelope),
    /// The answer to a control envelope for an SA the receiver does not hold.
    #[serde(rename = "ctlErr")]
    ControlError(ControlError),
    /// The Responder asks for its cookie before it spends anything on an [`SaInit`].
    #[serde(rename = "cookie")]
    Cookie(SaCookie),
}

/// Why a message was refused before any cryptography ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not a well-formed message.
    #[error("malformed message")]
    Malformed,
    /// A protocol version this crate does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A flow breaks a NOTE of its table, or a message lacks a flow it must hold.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

fn need<T>(v: &Option<T>, flow: &'static str) -> Result<(), FlowError> {
    match v {
        Some(_) => Ok(()),
        None => Err(FlowError { flow, rule: "mandatory in this message" }),
    }
}

fn absent<T>(v: &Option<T>, flow: &'static str) -> Result<(), FlowError> {
    match v {
        None => Ok(()),
        Some(_) => Err(FlowError { flow, rule: "not allowed in a failure reply" }),
    }
}

/// A `cap` member: at most [`MAX_CAPABILITY_CODES`] codes, none twice (unknown codes allowed).
fn check_capabilities(codes: &Option<Vec<u16>>, flow: &'static str) -> Result<(), FlowError> {
    let Some(codes) = codes else { return Ok(()) };
    let repeats = codes.iter().enumerate().any(|(i, c)| codes[..i].contains(c));
    if codes.len() > MAX_CAPABILITY_CODES || repeats {
        return Err(FlowError { flow, rule: "at most 16 capability codes, none twice" });
    }
    Ok(())
}

fn check_sid(actual: SaId, expected: SaId, flow: &'static str) -> Result<(), FlowError> {
    if actual == expected {
        Ok(())
    } else {
        Err(FlowError { flow, rule: "Security Association Identifier differs from the message's" })
    }
}

impl Message {
    /// Decodes a message and checks it: size, version, every flow's NOTEs, and which flows the
    /// message must hold.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let msg: Message = serde_json::from_slice(bytes).map_err(|_| DecodeError::Malformed)?;
        let version = msg.version();
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        msg.validate()?;
        Ok(msg)
    }

    /// Encodes a message.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages always serialize")
    }

    fn version(&self) -> u8 {
        match self {
            Self::Init(m) => m.version,
            Self::InitReply(m) => m.version,
            Self::Auth(m) => m.version,
            Self::AuthReply(m) => m.version,
            Self::Control(m) => m.version,
            Self::ControlError(m) => m.version,
            Self::Cookie(m) => m.version,
        }
    }

    /// Checks every flow's NOTEs and the flows each message must hold.
    pub fn validate(&self) -> Result<(), FlowError> {
        match self {
            Self::Init(m) => {
                m.parameters.validate()?;
                let ok = (1..=3).contains(&m.key_shares.len())
                    && m.key_shares.iter().all(|k| !k.public_key.is_empty() && k.public_key.len() <= MAX_ELEMENT_BYTES)
                    && m.nonce.len() == NONCE_LEN;
                if !ok {
                    return Err(FlowError { flow: "SaInit", rule: "1 to 3 key shares and a 32-byte nonce" });
                }
                check_capabilities(&m.capabilities, "SaInit")?;
                if m.cookie.as_ref().is_some_and(|c| c.is_empty() || c.len() > MAX_COOKIE_BYTES) {
                    return Err(FlowError { flow: "SaInit", rule: "a cookie of 1 to 64 bytes" });
                }
                InitiateSaRequest { initiator: m.initiator.clone(), responder: m.responder.clone() }.validate()
            }
            Self::InitReply(m) => {
                m.parameters.validate()?;
                if m.parameters.result == EstablishResult::Failure {
                    absent(&m.send_responder_key, SendResponderKey::NAME)?;
                    absent(&m.responder_keying_material, ResponderKeyingMaterialRequest::NAME)?;
                    absent(&m.responder_authorization_context, SendResponderAuthorizationContext::NAME)?;
                    absent(&m.send_responder_authorization_key, SendResponderAuthorizationKey::NAME)?;
                    absent(&m.capabilities, "SaInitReply")?;
                    return absent(&m.initiator_authorization_challenge, InitiatorAuthorizationChallengeRequest::NAME);
                }
                let sid = m.parameters.sa_id.expect("validated: present on Success");
                check_capabilities(&m.capabilities, "SaInitReply")?;
                need(&m.send_responder_key, SendResponderKey::NAME)?;
                need(&m.responder_keying_material, ResponderKeyingMaterialRequest::NAME)?;
                need(&m.send_responder_authorization_key, SendResponderAuthorizationKey::NAME)?;
                need(&m.initiator_authorization_challenge, InitiatorAuthorizationChallengeRequest::NAME)?;
                let srk = m.send_responder_key.as_ref().expect("checked");
                srk.validate()?;
                check_sid(srk.0.sa_id, sid, SendResponderKey::NAME)?;
                let rkm = m.responder_keying_material.as_ref().expect("checked");
                rkm.validate()?;
                check_sid(rkm.0.sa_id, sid, ResponderKeyingMaterialRequest::NAME)?;
                if let Some(ctx) = &m.responder_authorization_context {
                    ctx.validate()?;
                    check_sid(ctx.sa_id, sid, SendResponderAuthorizationContext::NAME)?;
                }
                let srak = m.send_responder_authorization_key.as_ref().expect("checked");
                srak.validate()?;
                check_sid(srak.0.sa_id, sid, SendResponderAuthorizationKey::NAME)?;
                let iac = m.initiator_authorization_challenge.as_ref().expect("checked");
                iac.validate()?;
                check_sid(iac.0.sa_id, sid, InitiatorAuthorizationChallengeRequest::NAME)
            }
            Self::Auth(m) => {
                m.responder_keying_material.validate()?;
                check_sid(m.responder_keying_material.0.sa_id, m.sa_id, ResponderKeyingMaterialConfirm::NAME)?;
                m.send_initiator_key.validate()?;
                check_sid(m.send_initiator_key.0.sa_id, m.sa_id, SendInitiatorKey::NAME)?;
                m.initiator_keying_material.validate()?;
                check_sid(m.initiator_keying_material.0.sa_id, m.sa_id, InitiatorKeyingMaterialRequest::NAME)?;
                m.send_initiator_authorization_key.validate()?;
                check_sid(m.send_initiator_authorization_key.0.sa_id, m.sa_id, SendInitiatorAuthorizationKey::NAME)?;
                m.initiator_authorization_challenge.validate()?;
                check_sid(
                    m.initiator_authorization_challenge.0.sa_id,
                    m.sa_id,
                    InitiatorAuthorizationChallengeConfirm::NAME,
                )?;
                m.responder_authorization_challenge.validate()?;
                check_sid(
                    m.responder_authorization_challenge.0.sa_id,
                    m.sa_id,
                    ResponderAuthorizationChallengeRequest::NAME,
                )
            }
            Self::AuthReply(m) => {
                if m.result == EstablishResult::Failure {
                    need(&m.cause, "SaAuthReply")?;
                    absent(&m.initiator_keying_material, InitiatorKeyingMaterialConfirm::NAME)?;
                    return absent(&m.responder_authorization_challenge, ResponderAuthorizationChallengeConfirm::NAME);
                }
                absent(&m.cause, "SaAuthReply")?;
                need(&m.initiator_keying_material, InitiatorKeyingMaterialConfirm::NAME)?;
                need(&m.responder_authorization_challenge, ResponderAuthorizationChallengeConfirm::NAME)?;
                let ikm = m.initiator_keying_material.as_ref().expect("checked");
                ikm.validate()?;
                check_sid(ikm.0.sa_id, m.sa_id, InitiatorKeyingMaterialConfirm::NAME)?;
                let rac = m.responder_authorization_challenge.as_ref().expect("checked");
                rac.validate()?;
                check_sid(rac.0.sa_id, m.sa_id, ResponderAuthorizationChallengeConfirm::NAME)
            }
            Self::Control(m) => {
                if m.ciphertext.len() < 16 || m.ciphertext.len() > MAX_MESSAGE_BYTES {
                    return Err(FlowError { flow: "ControlEnvelope", rule: "ciphertext shorter than a tag" });
                }
                Ok(())
            }
            Self::ControlError(_) => Ok(()),
            Self::Cookie(m) => {
                if m.cookie.is_empty() || m.cookie.len() > MAX_COOKIE_BYTES {
                    return Err(FlowError { flow: "SaCookie", rule: "a cookie of 1 to 64 bytes" });
                }
                Ok(())
            }
        }
    }
}
