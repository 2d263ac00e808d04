//! The information flows of TS-0003 clause 7.3, tables 23–44, one type per flow.
//!
//! A confirmed flow has a request part (`…Request`) and a confirm part (`…Confirm`); an
//! unconfirmed flow is a single struct. Each type mirrors the seed's service elements: an `M`
//! element is a plain field, an `O` element an `Option`. The NOTEs of every table are enforced
//! by [`Flow::validate`], which decoding always runs, so a value that breaks a NOTE never leaves
//! this module. The JSON short names are listed in `docs/protocol.md`.
//!
//! Elements the seed marks "encrypted using the keys associated with the existing SA" (tables
//! 37–40, 43, 44) are plain here: those flows only ever travel inside a sealed control envelope
//! (see [`crate::message::ControlEnvelope`]), which encrypts all of them at once.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SaId;
use crate::credential::{NodeId, Ticket};
use crate::crypto::SuiteCode;

/// Largest byte string a peer may put in one flow element (a hybrid KEM public key is 1216 B).
pub const MAX_ELEMENT_BYTES: usize = 2048;
/// Largest number of suites an offer may hold.
pub const MAX_OFFER: usize = 16;
/// Largest explicit context description or reference, in bytes.
pub const MAX_CONTEXT_BYTES: usize = 1024;

/// A NOTE (or an M column) of the seed that a flow breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flow}: {rule}")]
pub struct FlowError {
    /// The flow's name, as in the seed.
    pub flow: &'static str,
    /// The rule that was broken, quoting the table and NOTE.
    pub rule: &'static str,
}

/// Implemented by every flow: its name in the seed and the check of its NOTEs.
pub trait Flow {
    /// The flow's name as the seed writes it.
    const NAME: &'static str;
    /// Checks the M/O columns and every NOTE of the flow's table.
    fn validate(&self) -> Result<(), FlowError>;
}

fn rule(cond: bool, flow: &'static str, rule: &'static str) -> Result<(), FlowError> {
    if cond { Ok(()) } else { Err(FlowError { flow, rule }) }
}

fn bounded(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_ELEMENT_BYTES
}

fn opt_bounded(bytes: &Option<Vec<u8>>) -> bool {
    bytes.as_deref().is_none_or(bounded)
}

/// Declares a `u8`-coded enumeration that serializes as its number.
macro_rules! code_enum_pub {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u8", into = "u8")]
        pub enum $name { $($(#[$vm])* $variant = $code),+ }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 { v as u8 }
        }

        impl TryFrom<u8> for $name {
            type Error = String;
            fn try_from(v: u8) -> Result<Self, String> {
                match v {
                    $($code => Ok(Self::$variant),)+
                    other => Err(format!("unknown {} code {other}", stringify!($name))),
                }
            }
        }
    };
}
pub(crate) use code_enum_pub;
use code_enum_pub as code_enum;

code_enum! {
    /// Result of the establishment flows: "Success" or "Failure".
    EstablishResult { /// Success.
        Success = 1, /// Failure.
        Failure = 2 }
}

code_enum! {
    /// Result of the update and removal flows: "Accepted" or "Rejected".
    UpdateResult { /// Accepted.
        Accepted = 1, /// Rejected.
        Rejected = 2 }
}

code_enum! {
    /// Cause of rejection of Initiate SA (table 23) and SA Parameter Establishment (table 25).
    ///
    /// The first two are the seed's; the others are this implementation's, for failures the seed
    /// does not name (a peer whose ticket does not verify, a dialogue that times out, …).
    RejectionCause {
        /// "No parameters in common with Responder".
        NoParametersInCommon = 1,
        /// "Administrative reasons": the Responder Agent refused.
        AdministrativeReasons = 2,
        /// The peer's ticket, signature or key confirmation failed.
        AuthenticationFailed = 3,
        /// The peer's authorization context does not allow the SA.
        NotAuthorized = 4,
        /// The peer sent a flow that breaks the protocol (malformed, out of order, breaks a NOTE).
        ProtocolViolation = 5,
        /// The dialogue did not finish in time.
        Timeout = 6,
        /// The responder is over its limit of half-open establishments.
        Busy = 7,
    }
}

code_enum! {
    /// Failure cause of SA Establishment Complete (table 35).
    EstablishmentFailureCause {
        /// "Unable to match security parameters with Initiator".
        UnableToMatchSecurityParameters = 1,
        /// The Initiator failed authentication (an extension of the seed's list).
        InitiatorNotAuthenticated = 2,
        /// The Initiator never completed the dialogue (an extension of the seed's list).
        Timeout = 3,
    }
}

code_enum! {
    /// Update operation of Update SA (table 36).
    UpdateOperation {
        /// "Update SA identifier".
        Identifier = 1,
        /// "Update SA keys".
        Keys = 2,
        /// "Update SA identifier and keys".
        IdentifierAndKeys = 3,
    }
}

impl UpdateOperation {
    /// Whether the operation changes the identifier.
    pub fn changes_identifier(self) -> bool {
        matches!(self, Self::Identifier | Self::IdentifierAndKeys)
    }

    /// Whether the operation changes the keys.
    pub fn changes_keys(self) -> bool {
        matches!(self, Self::Keys | Self::IdentifierAndKeys)
    }
}

code_enum! {
    /// Update operation reported by SA Updated (table 41).
    SaUpdatedOperation {
        /// "SA identifier updated".
        IdentifierUpdated = 1,
        /// "SA keys updated".
        KeysUpdated = 2,
        /// "SA identifier and keys update" (named in the NOTE of table 41).
        IdentifierAndKeysUpdated = 3,
    }
}

code_enum! {
    /// Rejection reason of SA Key Update (table 39) and SA Key Update Response (table 40).
    KeyUpdateRejection {
        /// "Decryption failure".
        DecryptionFailure = 1,
        /// "Unable to encrypt with Initiator key" (table 39 only).
        UnableToEncryptWithInitiatorKey = 2,
        /// "Unwilling to change key".
        UnwillingToChangeKey = 3,
    }
}

code_enum! {
    /// Rejection reason of Remove SA (table 42) and SA Removal (table 43).
    RemovalRejection {
        /// "Unknown SA Identifier".
        UnknownSaIdentifier = 1,
        /// "SA Identifier already marked invalid".
        AlreadyMarkedInvalid = 2,
        /// The Responder did not confirm the removal: it could not authenticate the request
        /// (`ctlErr` 3), or never answered (an extension of the seed's list, reported by the
        /// Initiator's SA Management only). The SA is invalid on this side all the same.
        NotConfirmed = 3,
    }
}

/// A ticket carried in full, or by reference (its SHA-256 digest) when the same message
/// already carries it in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketElement {
    /// The ticket itself.
    #[serde(rename = "tkt", default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
    /// Its digest ([`Ticket::digest`]).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub reference: Option<Vec<u8>>,
}

impl TicketElement {
    /// A reference to `ticket`.
    pub fn reference_to(ticket: &Ticket) -> Self {
        Self { ticket: None, reference: Some(ticket.digest().to_vec()) }
    }

    /// The digest this element names: the reference, or the full ticket's digest.
    pub fn digest(&self) -> Option<[u8; 32]> {
        match (&self.ticket, &self.reference) {
            (Some(t), _) => Some(t.digest()),
            (None, Some(r)) => r.as_slice().try_into().ok(),
            (None, None) => None,
        }
    }

    fn well_formed(&self) -> bool {
        self.ticket.is_some() != self.reference.is_some() && self.reference.as_ref().is_none_or(|r| r.len() == 32)
    }
}

// ---------------------------------------------------------------------------------------------
// Table 23: Initiate SA (ra)

/// Initiate SA, request part (table 23): the Initiator Agent asks its SA Management for an SA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiateSaRequest {
    /// Initiator's identifier (the session credentials are the node's own [`crate::credential::Credentials`]).
    #[serde(rename = "ini")]
    pub initiator: NodeId,
    /// Responder's identifier.
    #[serde(rename = "rsp")]
    pub responder: NodeId,
}

/// Initiate SA, confirm part (table 23).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiateSaConfirm {
    /// Result.
    #[serde(rename = "rs")]
    pub result: EstablishResult,
    /// Security Association: the parameters agreed (NOTE 1).
    #[serde(rename = "sa", default, skip_serializing_if = "Option::is_none")]
    pub security_association: Option<SaParameters>,
    /// Cause of rejection (NOTE 2).
    #[serde(rename = "cr", default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<RejectionCause>,
}

/// The parameters of an established SA, as reported to the Initiator Agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaParameters {
    /// The SA identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// The suite chosen.
    #[serde(rename = "ste")]
    pub suite: SuiteCode,
}

impl Flow for InitiateSaRequest {
    const NAME: &'static str = "Initiate SA request";
    fn validate(&self) -> Result<(), FlowError> {
        rule(self.initiator != self.responder, Self::NAME, "initiator and responder must differ")
    }
}

impl Flow for InitiateSaConfirm {
    const NAME: &'static str = "Initiate SA confirm";
    fn validate(&self) -> Result<(), FlowError> {
        let ok = self.result == EstablishResult::Success;
        rule(
            ok == self.security_association.is_some(),
            Self::NAME,
            "table 23 NOTE 1: Security Association included exactly when the result is Success",
        )?;
        rule(
            ok != self.cause.is_some(),
            Self::NAME,
            "table 23 NOTE 2: Cause of rejection included exactly when the result is Failure",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Table 24: Initiate SA Received (rc)

/// Initiate SA Received, request part (table 24): the Responder's SA Management asks its Agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiateSaReceivedRequest {
    /// Initiator's identifier, as claimed; the Initiator's ticket must later name the same node.
    #[serde(rename = "ini")]
    pub initiator: NodeId,
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
}

/// Initiate SA Received, confirm part (table 24).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiateSaReceivedConfirm {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Result.
    #[serde(rename = "rs")]
    pub result: EstablishResult,
    /// Cause of rejection: only "Administrative reasons" (NOTE).
    #[serde(rename = "cr", default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<RejectionCause>,
}

impl InitiateSaReceivedConfirm {
    /// The Agent accepts.
    pub fn accept(sa_id: SaId) -> Self {
        Self { sa_id, result: EstablishResult::Success, cause: None }
    }

    /// The Agent rejects for administrative reasons.
    pub fn reject(sa_id: SaId) -> Self {
        Self { sa_id, result: EstablishResult::Failure, cause: Some(RejectionCause::AdministrativeReasons) }
    }
}

impl Flow for InitiateSaReceivedRequest {
    const NAME: &'static str = "Initiate SA Received request";
    fn validate(&self) -> Result<(), FlowError> {
        Ok(())
    }
}

impl Flow for InitiateSaReceivedConfirm {
    const NAME: &'static str = "Initiate SA Received confirm";
    fn validate(&self) -> Result<(), FlowError> {
        let failed = self.result == EstablishResult::Failure;
        rule(
            failed == self.cause.is_some(),
            Self::NAME,
            "table 24 NOTE: Cause of rejection included exactly when the result is Failure",
        )?;
        rule(
            self.cause.is_none_or(|c| c == RejectionCause::AdministrativeReasons),
            Self::NAME,
            "table 24: the only cause of rejection is Administrative reasons",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Table 25: SA Parameter Establishment (rb)

/// SA Parameter Establishment, request part (table 25): the Initiator's ordered offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaParameterEstablishmentRequest {
    /// Possible Security Associations: suite codes, most preferred first.
    #[serde(rename = "pss")]
    pub possible: Vec<SuiteCode>,
}

/// SA Parameter Establishment, confirm part (table 25).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaParameterEstablishmentConfirm {
    /// Result.
    #[serde(rename = "rs")]
    pub result: EstablishResult,
    /// Security Association: the suite chosen (NOTE 1).
    #[serde(rename = "sa", default, skip_serializing_if = "Option::is_none")]
    pub security_association: Option<SuiteCode>,
    /// Security Association Identifier (NOTE 1).
    #[serde(rename = "sid", default, skip_serializing_if = "Option::is_none")]
    pub sa_id: Option<SaId>,
    /// Cause of rejection (NOTE 2).
    #[serde(rename = "cr", default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<RejectionCause>,
}

impl Flow for SaParameterEstablishmentRequest {
    const NAME: &'static str = "SA Parameter Establishment request";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            !self.possible.is_empty() && self.possible.len() <= MAX_OFFER,
            Self::NAME,
            "table 25: Possible Security Associations is mandatory (1 to 16 suites)",
        )?;
        let mut seen = self.possible.clone();
        seen.sort_unstable();
        seen.dedup();
        rule(seen.len() == self.possible.len(), Self::NAME, "a suite is offered twice")
    }
}

impl Flow for SaParameterEstablishmentConfirm {
    const NAME: &'static str = "SA Parameter Establishment confirm";
    fn validate(&self) -> Result<(), FlowError> {
        let ok = self.result == EstablishResult::Success;
        rule(
            ok == (self.security_association.is_some() && self.sa_id.is_some())
                && (ok || (self.security_association.is_none() && self.sa_id.is_none())),
            Self::NAME,
            "table 25 NOTE 1: Security Association and its identifier included exactly on Success",
        )?;
        rule(ok != self.cause.is_some(), Self::NAME, "table 25 NOTE 2: Cause of rejection included exactly on Failure")
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 26 and 28: Send Responder Key, Send Initiator Key (rb)

/// The elements shared by Send Responder Key (table 26) and Send Initiator Key (table 28).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAnnouncement {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Encryption key: the sender's ephemeral KEM public key for this SA (NOTE 1).
    #[serde(rename = "ek", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub encryption_key: Option<Vec<u8>>,
    /// Encryption key reference: the SHA-256 digest of a KEM public key the sender sent earlier
    /// in the same dialogue (NOTE 1, NOTE 2).
    #[serde(rename = "ekr", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub encryption_key_reference: Option<Vec<u8>>,
    /// Key authorization ticket: the sender's ticket, which vouches for its signing key.
    #[serde(rename = "kat")]
    pub key_authorization_ticket: Ticket,
}

/// Send Responder Key (table 26), unconfirmed, Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SendResponderKey(pub KeyAnnouncement);

/// Send Initiator Key (table 28), unconfirmed, Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SendInitiatorKey(pub KeyAnnouncement);

fn validate_key_announcement(k: &KeyAnnouncement, name: &'static str) -> Result<(), FlowError> {
    rule(
        k.encryption_key.is_some() || k.encryption_key_reference.is_some(),
        name,
        "NOTE 1: at least one of Encryption key and Encryption key reference",
    )?;
    rule(
        opt_bounded(&k.encryption_key) && k.encryption_key_reference.as_ref().is_none_or(|r| r.len() == 32),
        name,
        "encryption key too long, or key reference not a SHA-256 digest",
    )
}

impl Flow for SendResponderKey {
    const NAME: &'static str = "Send Responder Key";
    fn validate(&self) -> Result<(), FlowError> {
        validate_key_announcement(&self.0, Self::NAME)
    }
}

impl Flow for SendInitiatorKey {
    const NAME: &'static str = "Send Initiator Key";
    fn validate(&self) -> Result<(), FlowError> {
        validate_key_announcement(&self.0, Self::NAME)
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 27 and 29: Initiator Keying Material, Responder Keying Material (rb)

/// Request part of Initiator Keying Material (table 27) and Responder Keying Material (table 29):
/// a KEM ciphertext under the peer's ephemeral public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyingMaterialRequest {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// The keying material: "a cryptographically secure random string encrypted using the peer's
    /// public key", i.e. the KEM ciphertext.
    #[serde(rename = "km", with = "crate::b64")]
    pub keying_material: Vec<u8>,
}

/// Confirm part of tables 27 and 29.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyingMaterialConfirm {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Response: "other valid information demonstrating the use of the key(s) derived from the
    /// keying material", a MAC under a confirmation key; never the secret or its hash.
    #[serde(rename = "rsp", with = "crate::b64")]
    pub response: Vec<u8>,
}

/// Initiator Keying Material, request part (table 27), Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InitiatorKeyingMaterialRequest(pub KeyingMaterialRequest);
/// Initiator Keying Material, confirm part (table 27), Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InitiatorKeyingMaterialConfirm(pub KeyingMaterialConfirm);
/// Responder Keying Material, request part (table 29), Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponderKeyingMaterialRequest(pub KeyingMaterialRequest);
/// Responder Keying Material, confirm part (table 29), Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponderKeyingMaterialConfirm(pub KeyingMaterialConfirm);

macro_rules! keying_flows {
    ($($ty:ident: $name:literal, $field:ident;)+) => {$(
        impl Flow for $ty {
            const NAME: &'static str = $name;
            fn validate(&self) -> Result<(), FlowError> {
                rule(bounded(&self.0.$field), Self::NAME, "element missing or too long")
            }
        }
    )+};
}

keying_flows! {
    InitiatorKeyingMaterialRequest: "Initiator Keying Material request", keying_material;
    InitiatorKeyingMaterialConfirm: "Initiator Keying Material confirm", response;
    ResponderKeyingMaterialRequest: "Responder Keying Material request", keying_material;
    ResponderKeyingMaterialConfirm: "Responder Keying Material confirm", response;
}

// ---------------------------------------------------------------------------------------------
// Table 30: Send Responder Authorization Context (rb)

/// Send Responder Authorization Context (table 30), unconfirmed, Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendResponderAuthorizationContext {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Authorization ticket (by reference when the message carries it in full elsewhere).
    #[serde(rename = "atk")]
    pub authorization_ticket: TicketElement,
    /// Explicit context description (NOTE 1).
    #[serde(rename = "ecd", default, skip_serializing_if = "Option::is_none")]
    pub explicit_context: Option<String>,
    /// Context description reference (NOTE 1, NOTE 2): a URI naming the context.
    #[serde(rename = "cdr", default, skip_serializing_if = "Option::is_none")]
    pub context_reference: Option<String>,
}

impl Flow for SendResponderAuthorizationContext {
    const NAME: &'static str = "Send Responder Authorization Context";
    fn validate(&self) -> Result<(), FlowError> {
        rule(self.authorization_ticket.well_formed(), Self::NAME, "Authorization ticket is mandatory")?;
        let ticket_has_context = self
            .authorization_ticket
            .ticket
            .as_ref()
            .is_some_and(|t| !t.context.originators.is_empty() || t.context.description.is_some());
        rule(
            ticket_has_context || self.explicit_context.is_some() || self.context_reference.is_some(),
            Self::NAME,
            "table 30 NOTE 1: a context description or reference is needed when the ticket has none",
        )?;
        rule(
            [&self.explicit_context, &self.context_reference]
                .iter()
                .all(|s| s.as_ref().is_none_or(|s| !s.is_empty() && s.len() <= MAX_CONTEXT_BYTES)),
            Self::NAME,
            "context description too long",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 31 and 33: Send Responder / Initiator Authorization Key (rb)

/// The elements shared by Send Responder Authorization Key (table 31) and Send Initiator
/// Authorization Key (table 33).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationKey {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Encryption key (NOTE 1).
    #[serde(rename = "ek", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub encryption_key: Option<Vec<u8>>,
    /// Encryption key reference: the digest of the sender's KEM public key (NOTE 1).
    #[serde(rename = "ekr", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub encryption_key_reference: Option<Vec<u8>>,
    /// Authorization ticket (NOTE 2).
    #[serde(rename = "atk", default, skip_serializing_if = "Option::is_none")]
    pub authorization_ticket: Option<Ticket>,
    /// Authorization ticket reference: the ticket's digest (NOTE 2, NOTE 4).
    #[serde(rename = "atr", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub authorization_ticket_reference: Option<Vec<u8>>,
    /// Authorization code: the sender's signature over the transcript hash (NOTE 3).
    #[serde(rename = "acd", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub authorization_code: Option<Vec<u8>>,
}

/// Send Responder Authorization Key (table 31), unconfirmed, Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SendResponderAuthorizationKey(pub AuthorizationKey);

/// Send Initiator Authorization Key (table 33), unconfirmed, Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SendInitiatorAuthorizationKey(pub AuthorizationKey);

fn validate_authorization_key(k: &AuthorizationKey, name: &'static str) -> Result<(), FlowError> {
    // Our tickets vouch for a signing key, never for the per-SA encryption key, so the
    // conditions of NOTE 1 and NOTE 3 ("if the Authorization ticket does not include the relevant
    // public encryption key") always hold.
    rule(
        k.encryption_key.is_some() || k.encryption_key_reference.is_some(),
        name,
        "NOTE 1: Encryption key or its reference, since the ticket does not hold the encryption key",
    )?;
    rule(
        k.authorization_ticket.is_some() || k.authorization_ticket_reference.is_some(),
        name,
        "NOTE 2: at least one of Authorization ticket and Authorization ticket reference",
    )?;
    rule(
        k.authorization_code.is_some(),
        name,
        "NOTE 3: Authorization code, since the ticket does not hold the encryption key",
    )?;
    rule(
        opt_bounded(&k.encryption_key)
            && opt_bounded(&k.authorization_code)
            && [&k.encryption_key_reference, &k.authorization_ticket_reference]
                .iter()
                .all(|r| r.as_ref().is_none_or(|r| r.len() == 32)),
        name,
        "element too long, or a reference that is not a SHA-256 digest",
    )
}

impl Flow for SendResponderAuthorizationKey {
    const NAME: &'static str = "Send Responder Authorization Key";
    fn validate(&self) -> Result<(), FlowError> {
        validate_authorization_key(&self.0, Self::NAME)
    }
}

impl Flow for SendInitiatorAuthorizationKey {
    const NAME: &'static str = "Send Initiator Authorization Key";
    fn validate(&self) -> Result<(), FlowError> {
        validate_authorization_key(&self.0, Self::NAME)
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 32 and 34: Responder / Initiator Authorization Challenge (rb)

/// Request part of the authorization challenges (tables 32 and 34).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Encryption challenge: a KEM ciphertext under the challenged party's KEM public key (NOTE 1).
    #[serde(rename = "ech", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub encryption_challenge: Option<Vec<u8>>,
    /// Authentication challenge: a fresh random string the challenged party signs (NOTE 1).
    #[serde(rename = "ach", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub authentication_challenge: Option<Vec<u8>>,
}

/// Confirm part of the authorization challenges (tables 32 and 34).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeConfirm {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Response to an encryption challenge: a MAC under a key derived from it (NOTE 2).
    #[serde(rename = "rsp", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub response: Option<Vec<u8>>,
    /// Authorization ticket, for an authentication challenge (NOTE 3).
    #[serde(rename = "atk", default, skip_serializing_if = "Option::is_none")]
    pub authorization_ticket: Option<TicketElement>,
    /// Authorization code: a signature over the transcript that includes the challenge (NOTE 3).
    #[serde(rename = "acd", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub authorization_code: Option<Vec<u8>>,
}

/// The two kinds of authorization challenge of tables 32 and 34.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeKind {
    /// A KEM ciphertext that only the holder of the peer's KEM key can turn into a MAC key.
    Encryption,
    /// A random string that the peer must sign with the key its ticket vouches for.
    Authentication,
}

impl ChallengeRequest {
    /// The kind of this challenge (valid after [`Flow::validate`]).
    pub fn kind(&self) -> ChallengeKind {
        if self.encryption_challenge.is_some() { ChallengeKind::Encryption } else { ChallengeKind::Authentication }
    }

    /// The challenge value, whichever kind it is.
    pub fn value(&self) -> &[u8] {
        self.encryption_challenge.as_deref().or(self.authentication_challenge.as_deref()).unwrap_or_default()
    }
}

fn validate_challenge_request(c: &ChallengeRequest, name: &'static str) -> Result<(), FlowError> {
    rule(
        c.encryption_challenge.is_some() != c.authentication_challenge.is_some(),
        name,
        "NOTE 1: exactly one of Encryption challenge and Authentication challenge",
    )?;
    rule(
        opt_bounded(&c.encryption_challenge)
            && c.authentication_challenge.as_ref().is_none_or(|a| (16..=64).contains(&a.len())),
        name,
        "challenge too long, or an authentication challenge outside 16..=64 bytes",
    )
}

impl ChallengeConfirm {
    /// Checks NOTE 2 and NOTE 3, which depend on the request this confirm answers.
    pub fn validate_against(&self, request: &ChallengeRequest, name: &'static str) -> Result<(), FlowError> {
        rule(self.sa_id == request.sa_id, name, "Security Association Identifier differs from the request")?;
        match request.kind() {
            ChallengeKind::Encryption => rule(
                self.response.as_ref().is_some_and(|r| bounded(r)),
                name,
                "NOTE 2: Response is mandatory after an Encryption challenge",
            ),
            ChallengeKind::Authentication => rule(
                self.authorization_ticket.as_ref().is_some_and(TicketElement::well_formed)
                    && self.authorization_code.as_ref().is_some_and(|c| bounded(c)),
                name,
                "NOTE 3: Authorization ticket and code are mandatory after an Authentication challenge",
            ),
        }
    }
}

fn validate_challenge_confirm(c: &ChallengeConfirm, name: &'static str) -> Result<(), FlowError> {
    rule(
        c.response.is_some() || (c.authorization_ticket.is_some() && c.authorization_code.is_some()),
        name,
        "NOTE 2/3: a Response, or an Authorization ticket with an Authorization code",
    )?;
    rule(
        opt_bounded(&c.response)
            && opt_bounded(&c.authorization_code)
            && c.authorization_ticket.as_ref().is_none_or(TicketElement::well_formed),
        name,
        "element too long, or a malformed ticket element",
    )
}

/// Responder Authorization Challenge, request part (table 32), Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponderAuthorizationChallengeRequest(pub ChallengeRequest);
/// Responder Authorization Challenge, confirm part (table 32), Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponderAuthorizationChallengeConfirm(pub ChallengeConfirm);
/// Initiator Authorization Challenge, request part (table 34), Responder → Initiator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InitiatorAuthorizationChallengeRequest(pub ChallengeRequest);
/// Initiator Authorization Challenge, confirm part (table 34), Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InitiatorAuthorizationChallengeConfirm(pub ChallengeConfirm);

impl Flow for ResponderAuthorizationChallengeRequest {
    const NAME: &'static str = "Responder Authorization Challenge request";
    fn validate(&self) -> Result<(), FlowError> {
        validate_challenge_request(&self.0, Self::NAME)
    }
}
impl Flow for ResponderAuthorizationChallengeConfirm {
    const NAME: &'static str = "Responder Authorization Challenge confirm";
    fn validate(&self) -> Result<(), FlowError> {
        validate_challenge_confirm(&self.0, Self::NAME)
    }
}
impl Flow for InitiatorAuthorizationChallengeRequest {
    const NAME: &'static str = "Initiator Authorization Challenge request";
    fn validate(&self) -> Result<(), FlowError> {
        validate_challenge_request(&self.0, Self::NAME)
    }
}
impl Flow for InitiatorAuthorizationChallengeConfirm {
    const NAME: &'static str = "Initiator Authorization Challenge confirm";
    fn validate(&self) -> Result<(), FlowError> {
        validate_challenge_confirm(&self.0, Self::NAME)
    }
}

// ---------------------------------------------------------------------------------------------
// Table 35: SA Establishment Complete (rc)

/// SA Establishment Complete (table 35), unconfirmed, Responder's SA Management → Responder Agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaEstablishmentComplete {
    /// Security Association Identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Establishment result.
    #[serde(rename = "rs")]
    pub result: EstablishResult,
    /// Failure cause (NOTE).
    #[serde(rename = "fc", default, skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<EstablishmentFailureCause>,
}

impl Flow for SaEstablishmentComplete {
    const NAME: &'static str = "SA Establishment Complete";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            (self.result == EstablishResult::Failure) == self.failure_cause.is_some(),
            Self::NAME,
            "table 35 NOTE: Failure cause included exactly when the result is Failure",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Table 36: Update SA (ra)

/// Update SA, request part (table 36).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSaRequest {
    /// Existing Security Association identifier.
    #[serde(rename = "esid")]
    pub existing_sa_id: SaId,
    /// Update operation.
    #[serde(rename = "op")]
    pub operation: UpdateOperation,
}

/// Update SA, confirm part (table 36).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSaConfirm {
    /// Existing Security Association identifier.
    #[serde(rename = "esid")]
    pub existing_sa_id: SaId,
    /// New Security Association identifier (NOTE).
    #[serde(rename = "nsid", default, skip_serializing_if = "Option::is_none")]
    pub new_sa_id: Option<SaId>,
    /// Result.
    #[serde(rename = "rs")]
    pub result: UpdateResult,
    /// The operation this confirm answers (not in table 36; it makes the NOTE checkable alone).
    #[serde(rename = "op")]
    pub operation: UpdateOperation,
}

impl Flow for UpdateSaRequest {
    const NAME: &'static str = "Update SA request";
    fn validate(&self) -> Result<(), FlowError> {
        Ok(())
    }
}

impl Flow for UpdateSaConfirm {
    const NAME: &'static str = "Update SA confirm";
    fn validate(&self) -> Result<(), FlowError> {
        let needs_new = self.result == UpdateResult::Accepted && self.operation.changes_identifier();
        rule(
            needs_new == self.new_sa_id.is_some(),
            Self::NAME,
            "table 36 NOTE: New SA identifier included exactly when an identifier update was Accepted",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 37 and 38: SA Identifier Update, SA Identifier Update Response (rb)

/// SA Identifier Update, request part (table 37), Initiator → Responder, inside the sealed
/// control envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaIdentifierUpdateRequest {
    /// Existing Security Association identifier.
    #[serde(rename = "esid")]
    pub existing_sa_id: SaId,
    /// New Security Association identifier proposed by the Initiator.
    #[serde(rename = "nsid")]
    pub new_sa_id: SaId,
}

/// SA Identifier Update, confirm part (table 37).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaIdentifierUpdateConfirm {
    /// Existing Security Association identifier (NOTE 1).
    #[serde(rename = "esid", default, skip_serializing_if = "Option::is_none")]
    pub existing_sa_id: Option<SaId>,
    /// New Security Association identifier: the proposal if Accepted, the Responder's
    /// counter-proposal if Rejected (NOTE 2).
    #[serde(rename = "nsid")]
    pub new_sa_id: SaId,
    /// Result.
    #[serde(rename = "rs")]
    pub result: UpdateResult,
}

/// SA Identifier Update Response (table 38), unconfirmed, Initiator → Responder: the Initiator's
/// answer to a counter-proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaIdentifierUpdateResponse {
    /// Existing Security Association identifier (NOTE).
    #[serde(rename = "esid", default, skip_serializing_if = "Option::is_none")]
    pub existing_sa_id: Option<SaId>,
    /// New Security Association identifier.
    #[serde(rename = "nsid")]
    pub new_sa_id: SaId,
    /// Result.
    #[serde(rename = "rs")]
    pub result: UpdateResult,
}

impl Flow for SaIdentifierUpdateRequest {
    const NAME: &'static str = "SA Identifier Update request";
    fn validate(&self) -> Result<(), FlowError> {
        rule(self.existing_sa_id != self.new_sa_id, Self::NAME, "the new identifier equals the existing one")
    }
}

impl SaIdentifierUpdateConfirm {
    /// Checks NOTE 2 against the request this confirm answers.
    pub fn validate_against(&self, request: &SaIdentifierUpdateRequest) -> Result<(), FlowError> {
        let accepted = self.result == UpdateResult::Accepted;
        rule(
            accepted == (self.new_sa_id == request.new_sa_id),
            Self::NAME,
            "table 37 NOTE 2: the proposed identifier if Accepted, a different one if Rejected",
        )?;
        rule(
            self.existing_sa_id.is_none_or(|e| e == request.existing_sa_id),
            Self::NAME,
            "Existing SA identifier differs from the request",
        )
    }
}

impl Flow for SaIdentifierUpdateConfirm {
    const NAME: &'static str = "SA Identifier Update confirm";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            (self.result == UpdateResult::Rejected) == self.existing_sa_id.is_some(),
            Self::NAME,
            "table 37 NOTE 1: Existing SA identifier included exactly when the result is Rejected",
        )
    }
}

impl Flow for SaIdentifierUpdateResponse {
    const NAME: &'static str = "SA Identifier Update Response";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            (self.result == UpdateResult::Accepted) == self.existing_sa_id.is_some(),
            Self::NAME,
            "table 38 NOTE: Existing SA identifier included exactly when the result is Accepted",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 39 and 40: SA Key Update, SA Key Update Response (rb)

/// Keying material of a key update (`nkm`, `rkm`): zeroized when dropped, never printed by
/// `Debug`; base64url on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(Zeroizing<Vec<u8>>);

impl KeyMaterial {
    /// The material's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for KeyMaterial {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for KeyMaterial {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

impl From<&[u8]> for KeyMaterial {
    fn from(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial(<{} bytes redacted>)", self.0.len())
    }
}

impl Serialize for KeyMaterial {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::b64::serialize(&self.0.as_slice(), s)
    }
}

impl<'de> Deserialize<'de> for KeyMaterial {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::b64::deserialize(d).map(Into::into)
    }
}

/// SA Key Update, request part (table 39), Initiator → Responder, inside the sealed envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaKeyUpdateRequest {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// New keying material: a random string from which the new keys are derived (NOTE 1).
    #[serde(rename = "nkm")]
    pub new_keying_material: KeyMaterial,
    /// Responder keying material requested (the seed lists it in the confirm column; it is the
    /// Initiator's request, see "Clarifications of the seed").
    #[serde(rename = "rkq", default, skip_serializing_if = "std::ops::Not::not")]
    pub responder_keying_material_requested: bool,
    /// A fresh KEM public key of the SA's suite (an extension of the seed): the Responder
    /// encapsulates a secret to it and the next epoch's keys mix that secret in, so that whoever
    /// knew this epoch's secrets (and only listened) cannot derive the next one. Absent: the
    /// update derives from `nkm` and `rkm` alone, byte for byte as before.
    #[serde(rename = "kpk", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub fresh_kem_public_key: Option<Vec<u8>>,
}

/// SA Key Update, confirm part (table 39).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaKeyUpdateConfirm {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Responder keying material (NOTE 1, NOTE 2).
    #[serde(rename = "rkm", default, skip_serializing_if = "Option::is_none")]
    pub responder_keying_material: Option<KeyMaterial>,
    /// Result.
    #[serde(rename = "rs")]
    pub result: UpdateResult,
    /// Rejection reason (NOTE 3).
    #[serde(rename = "rr", default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<KeyUpdateRejection>,
    /// The KEM ciphertext encapsulated to the request's `kpk`: present exactly when the request
    /// carried one and the update is accepted.
    #[serde(rename = "kct", default, skip_serializing_if = "Option::is_none", with = "crate::b64::option")]
    pub fresh_kem_ciphertext: Option<Vec<u8>>,
}

/// SA Key Update Response (table 40), unconfirmed, Initiator → Responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaKeyUpdateResponse {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Result.
    #[serde(rename = "rs")]
    pub result: UpdateResult,
    /// Rejection reason (NOTE, read as "if Rejected").
    #[serde(rename = "rr", default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<KeyUpdateRejection>,
}

/// Length of the random keying material of an SA Key Update.
pub const KEY_UPDATE_MATERIAL_LEN: usize = 32;

impl Flow for SaKeyUpdateRequest {
    const NAME: &'static str = "SA Key Update request";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            self.new_keying_material.len() == KEY_UPDATE_MATERIAL_LEN,
            Self::NAME,
            "New keying material must be 32 random bytes",
        )?;
        rule(
            self.fresh_kem_public_key.as_deref().is_none_or(bounded),
            Self::NAME,
            "fresh KEM public key empty or over the element limit",
        )
    }
}

impl SaKeyUpdateConfirm {
    /// Checks NOTE 2 against the request this confirm answers.
    pub fn validate_against(&self, request: &SaKeyUpdateRequest) -> Result<(), FlowError> {
        rule(self.sa_id == request.sa_id, Self::NAME, "SA identifier differs from the request")?;
        let expected = request.responder_keying_material_requested && self.result == UpdateResult::Accepted;
        rule(
            expected == self.responder_keying_material.is_some(),
            Self::NAME,
            "table 39 NOTE 2: Responder keying material included exactly when it was requested",
        )?;
        let kem = request.fresh_kem_public_key.is_some() && self.result == UpdateResult::Accepted;
        rule(
            kem == self.fresh_kem_ciphertext.is_some(),
            Self::NAME,
            "KEM ciphertext included exactly when a fresh KEM public key was sent and the update accepted",
        )
    }
}

impl Flow for SaKeyUpdateConfirm {
    const NAME: &'static str = "SA Key Update confirm";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            (self.result == UpdateResult::Rejected) == self.rejection_reason.is_some(),
            Self::NAME,
            "table 39 NOTE 3: Rejection reason included exactly when the result is Rejected",
        )?;
        rule(
            self.responder_keying_material.as_ref().is_none_or(|m| m.len() == KEY_UPDATE_MATERIAL_LEN),
            Self::NAME,
            "Responder keying material must be 32 random bytes",
        )?;
        rule(
            self.fresh_kem_ciphertext.as_deref().is_none_or(bounded),
            Self::NAME,
            "KEM ciphertext empty or over the element limit",
        )
    }
}

impl Flow for SaKeyUpdateResponse {
    const NAME: &'static str = "SA Key Update Response";
    fn validate(&self) -> Result<(), FlowError> {
        rule(
            (self.result == UpdateResult::Rejected) == self.rejection_reason.is_some(),
            Self::NAME,
            "table 40 NOTE: Rejection reason included exactly when the result is Rejected",
        )?;
        rule(
            self.rejection_reason != Some(KeyUpdateRejection::UnableToEncryptWithInitiatorKey),
            Self::NAME,
            "table 40: Unable to encrypt with Initiator key is not a reason the Initiator gives",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Table 41: SA Updated (rc)

/// SA Updated (table 41), unconfirmed, Responder's SA Management → Responder Agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaUpdated {
    /// Existing Security Association identifier.
    #[serde(rename = "esid")]
    pub existing_sa_id: SaId,
    /// Update operation.
    #[serde(rename = "op")]
    pub operation: SaUpdatedOperation,
    /// New Security Association identifier (NOTE).
    #[serde(rename = "nsid", default, skip_serializing_if = "Option::is_none")]
    pub new_sa_id: Option<SaId>,
}

impl Flow for SaUpdated {
    const NAME: &'static str = "SA Updated";
    fn validate(&self) -> Result<(), FlowError> {
        let with_id = matches!(
            self.operation,
            SaUpdatedOperation::IdentifierUpdated | SaUpdatedOperation::IdentifierAndKeysUpdated
        );
        rule(
            with_id == self.new_sa_id.is_some(),
            Self::NAME,
            "table 41 NOTE: New SA identifier included exactly when the identifier was updated",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tables 42–44: Remove SA, SA Removal, SA Removed

/// Remove SA (ra, table 42) and SA Removal (rb, table 43), request part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovalRequest {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
}

/// Remove SA (table 42) and SA Removal (table 43), confirm part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovalConfirm {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
    /// Result.
    #[serde(rename = "rs")]
    pub result: UpdateResult,
    /// Rejection reason (NOTE).
    #[serde(rename = "rr", default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<RemovalRejection>,
}

impl RemovalConfirm {
    /// An accepted removal.
    pub fn accepted(sa_id: SaId) -> Self {
        Self { sa_id, result: UpdateResult::Accepted, rejection_reason: None }
    }

    /// A rejected removal.
    pub fn rejected(sa_id: SaId, reason: RemovalRejection) -> Self {
        Self { sa_id, result: UpdateResult::Rejected, rejection_reason: Some(reason) }
    }
}

/// Remove SA, request part (table 42), Initiator Agent → Initiator's SA Management.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoveSaRequest(pub RemovalRequest);
/// Remove SA, confirm part (table 42).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoveSaConfirm(pub RemovalConfirm);
/// SA Removal, request part (table 43), Initiator → Responder, inside the sealed envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SaRemovalRequest(pub RemovalRequest);
/// SA Removal, confirm part (table 43).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SaRemovalConfirm(pub RemovalConfirm);

/// SA Removed (table 44), unconfirmed, Responder's SA Management → Responder Agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaRemoved {
    /// Security Association identifier.
    #[serde(rename = "sid")]
    pub sa_id: SaId,
}

fn validate_removal_confirm(c: &RemovalConfirm, name: &'static str) -> Result<(), FlowError> {
    rule(
        (c.result == UpdateResult::Rejected) == c.rejection_reason.is_some(),
        name,
        "NOTE: Rejection reason included exactly when the result is Rejected",
    )
}

impl Flow for RemoveSaRequest {
    const NAME: &'static str = "Remove SA request";
    fn validate(&self) -> Result<(), FlowError> {
        Ok(())
    }
}
impl Flow for RemoveSaConfirm {
    const NAME: &'static str = "Remove SA confirm";
    fn validate(&self) -> Result<(), FlowError> {
        validate_removal_confirm(&self.0, Self::NAME)
    }
}
impl Flow for SaRemovalRequest {
    const NAME: &'static str = "SA Removal request";
    fn validate(&self) -> Result<(), FlowError> {
        Ok(())
    }
}
impl Flow for SaRemovalConfirm {
    const NAME: &'static str = "SA Removal confirm";
    fn validate(&self) -> Result<(), FlowError> {
        validate_removal_confirm(&self.0, Self::NAME)?;
        rule(
            self.0.rejection_reason != Some(RemovalRejection::NotConfirmed),
            Self::NAME,
            "\"not confirmed\" is the Initiator's local report, never sent",
        )
    }
}
impl Flow for SaRemoved {
    const NAME: &'static str = "SA Removed";
    fn validate(&self) -> Result<(), FlowError> {
        Ok(())
    }
}

/// Decodes a flow from JSON and checks its NOTEs; the form every local (ra/rc) flow is read in.
pub fn decode<F: Flow + for<'de> Deserialize<'de>>(json: &[u8]) -> Result<F, FlowError> {
    if json.len() > crate::message::MAX_MESSAGE_BYTES {
        return Err(FlowError { flow: F::NAME, rule: "flow larger than the message limit" });
    }
    let flow: F = serde_json::from_slice(json)
        .map_err(|_| FlowError { flow: F::NAME, rule: "not a well-formed encoding of the flow" })?;
    flow.validate()?;
    Ok(flow)
}

/// Encodes a flow as JSON after checking its NOTEs, so a broken flow is never sent.
pub fn encode<F: Flow + Serialize>(flow: &F) -> Result<Vec<u8>, FlowError> {
    flow.validate()?;
    serde_json::to_vec(flow).map_err(|_| FlowError { flow: F::NAME, rule: "not encodable" })
}
