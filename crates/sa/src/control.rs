//! Sealing of the update and removal flows (tables 37–44) under an SA's control keys.
//!
//! The seed says those elements are "encrypted using the keys associated with the existing SA".
//! Each flow is sealed whole with AEAD under the control key of the sender's direction and
//! epoch; the nonce is the control IV XOR a per-direction control sequence number, and the
//! header (SA identifier, epoch, sequence number, direction) is the associated data.

use crate::SaId;
use crate::crypto::{self, AeadAlgorithm};
use crate::establish::Role;
use crate::message::{ControlEnvelope, ControlFlow, Message, PROTOCOL_VERSION};
use crate::schedule::{PROTOCOL_LABEL, SessionKeys};

/// Why a control envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ControlError {
    /// The tag did not verify (wrong key, tampered, reflected).
    #[error("control envelope did not authenticate")]
    BadTag,
    /// The plaintext is not a valid control flow.
    #[error("control flow malformed or breaks a NOTE")]
    Malformed,
}

fn aad(sa_id: SaId, epoch: u32, seq: u64, sender: Role) -> Vec<u8> {
    let mut a = Vec::with_capacity(PROTOCOL_LABEL.len() + 4 + 8 + 4 + 8 + 1);
    a.extend_from_slice(PROTOCOL_LABEL);
    a.extend_from_slice(b" ctl");
    a.extend_from_slice(sa_id.as_bytes());
    a.extend_from_slice(&epoch.to_be_bytes());
    a.extend_from_slice(&seq.to_be_bytes());
    a.push(match sender {
        Role::Initiator => b'I',
        Role::Responder => b'R',
    });
    a
}

fn keys_for(keys: &SessionKeys, sender: Role) -> &crate::schedule::DirectionKeys {
    match sender {
        Role::Initiator => &keys.ctl_i2r,
        Role::Responder => &keys.ctl_r2i,
    }
}

/// Seals `flow` as `sender` under `keys`, returning the encoded [`Message::Control`].
pub(crate) fn seal(
    aead: AeadAlgorithm,
    keys: &SessionKeys,
    sa_id: SaId,
    seq: u64,
    sender: Role,
    flow: &ControlFlow,
) -> Vec<u8> {
    let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(flow).expect("control flows serialize"));
    let dir = keys_for(keys, sender);
    let ciphertext =
        crypto::aead_seal(aead, dir.key(), dir.nonce(seq), &aad(sa_id, keys.epoch, seq, sender), &plaintext)
            .expect("AEAD sealing with a valid key does not fail");
    Message::Control(ControlEnvelope { version: PROTOCOL_VERSION, sa_id, epoch: keys.epoch, seq, ciphertext }).encode()
}

/// Opens an envelope that `sender` sealed under `keys`.
pub(crate) fn open(
    aead: AeadAlgorithm,
    keys: &SessionKeys,
    env: &ControlEnvelope,
    sender: Role,
) -> Result<ControlFlow, ControlError> {
    let dir = keys_for(keys, sender);
    let plaintext = crypto::aead_open(
        aead,
        dir.key(),
        dir.nonce(env.seq),
        &aad(env.sa_id, env.epoch, env.seq, sender),
        &env.ciphertext,
    )
    .map_err(|_| ControlError::BadTag)?;
    let flow: ControlFlow = serde_json::from_slice(&plaintext).map_err(|_| ControlError::Malformed)?;
    flow.validate().map_err(|_| ControlError::Malformed)?;
    Ok(flow)
}
