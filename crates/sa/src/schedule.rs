//! The transcript and the key schedule.
//!
//! Every element of an establishment is appended to a transcript in a canonical binary form
//! (label, length, bytes), built from the decoded values so both sides compute the same bytes
//! whatever JSON spelling carried them. Authorization codes sign its hash; confirmation MACs
//! are computed over it; the session keys are extracted with it as the salt. HKDF then yields
//! per-direction AEAD keys and IVs for data and for control flows, and an update secret.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::SaId;
use crate::crypto::{self, Digest, HashAlgorithm, Hasher, Prk, SharedSecret, Suite};

/// Domain separator that starts every transcript, signature and key label.
pub(crate) const PROTOCOL_LABEL: &[u8] = b"onem2m-sa v1";

/// The running transcript of one establishment. Its bytes are hashed as they come: the first
/// [`Transcript::hash`] fixes the algorithm (the suite's), and each later one hashes only what
/// was added since, not the whole transcript again.
#[derive(Clone)]
pub(crate) struct Transcript {
    bytes: Vec<u8>,
    /// The hash of `bytes[..hashed]`, once a hash was asked for.
    running: Option<Hasher>,
    hashed: usize,
}

impl Transcript {
    pub(crate) fn new() -> Self {
        let mut t = Self { bytes: Vec::with_capacity(4096), running: None, hashed: 0 };
        t.add("proto", PROTOCOL_LABEL);
        t
    }

    /// Appends one element: label length (1 byte), label, data length (4 bytes, big-endian), data.
    pub(crate) fn add(&mut self, label: &str, data: &[u8]) {
        debug_assert!(label.len() < 256);
        self.bytes.push(label.len() as u8);
        self.bytes.extend_from_slice(label.as_bytes());
        self.bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(data);
    }

    /// The hash of the whole transcript so far.
    pub(crate) fn hash(&mut self, alg: HashAlgorithm) -> Digest {
        let running = match &mut self.running {
            Some(h) if h.algorithm() == alg => h,
            // First use, or (never in an establishment) another algorithm: start over.
            other => {
                self.hashed = 0;
                other.insert(Hasher::new(alg))
            }
        };
        running.update(&self.bytes[self.hashed..]);
        self.hashed = self.bytes.len();
        running.current()
    }
}

/// The message a party signs to make an authorization code: a role label and a transcript hash.
pub(crate) fn signed_content(role_label: &str, th: &Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROTOCOL_LABEL.len() + role_label.len() + 2 + th.as_ref().len());
    m.extend_from_slice(PROTOCOL_LABEL);
    m.push(b' ');
    m.extend_from_slice(role_label.as_bytes());
    m.push(0);
    m.extend_from_slice(th.as_ref());
    m
}

/// The MAC that demonstrates use of a KEM secret (the *Response* of tables 27, 29, 32, 34).
pub(crate) fn confirmation(hash: HashAlgorithm, secret: &SharedSecret, label: &str, th: &Digest) -> Vec<u8> {
    let key = confirmation_key(hash, secret, label);
    crypto::hmac(hash, &key, &[label.as_bytes(), th.as_ref()])
}

/// Checks a *Response* in constant time.
pub(crate) fn verify_confirmation(
    hash: HashAlgorithm,
    secret: &SharedSecret,
    label: &str,
    th: &Digest,
    response: &[u8],
) -> bool {
    let key = confirmation_key(hash, secret, label);
    crypto::hmac_verify(hash, &key, &[label.as_bytes(), th.as_ref()], response).is_ok()
}

fn confirmation_key(hash: HashAlgorithm, secret: &SharedSecret, label: &str) -> Zeroizing<Vec<u8>> {
    let prk = crypto::hkdf_extract(hash, &[], &[secret.as_bytes()]);
    let mut key = Zeroizing::new(vec![0u8; hash.output_len()]);
    prk.expand(&[PROTOCOL_LABEL, b" confirm ", label.as_bytes()], &mut key)
        .expect("HKDF output no longer than 255 hashes");
    key
}

/// Secret bytes kept inline (no allocation of their own: an SA's keys are one block of its
/// record), up to `N` bytes; zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct InlineSecret<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> InlineSecret<N> {
    /// `None` when `bytes` is longer than `N`.
    fn new(bytes: &[u8]) -> Option<Self> {
        let mut out = Self { bytes: [0; N], len: u8::try_from(bytes.len()).ok()? };
        out.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(out)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The longest AEAD key of a suite (AES-256).
const MAX_KEY_LEN: usize = 32;
/// The longest hash output of a suite (SHA-384).
const MAX_HASH_LEN: usize = 48;

/// An AEAD key and IV for one direction.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DirectionKeys {
    key: InlineSecret<MAX_KEY_LEN>,
    iv: [u8; 12],
}

impl DirectionKeys {
    /// The AEAD key.
    pub fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// The IV, XORed with the sequence number to make each nonce.
    pub fn iv(&self) -> &[u8; 12] {
        &self.iv
    }

    /// Rebuilds direction keys from their parts (a record read back from a store); `None` when
    /// the key is longer than any suite's.
    pub(crate) fn from_parts(key: &[u8], iv: [u8; 12]) -> Option<Self> {
        Some(Self { key: InlineSecret::new(key)?, iv })
    }

    /// The nonce for sequence number `seq`: the IV with `seq` XORed into its last 8 bytes.
    pub fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKeys(<redacted>)")
    }
}

/// All keys of one epoch of an SA.
#[derive(Clone)]
pub struct SessionKeys {
    /// Epoch number: 0 after establishment, +1 on each SA Key Update.
    pub epoch: u32,
    /// Initiator → Responder: requests.
    pub i2r: DirectionKeys,
    /// Responder → Initiator: the responses to those requests.
    pub r2i: DirectionKeys,
    /// Initiator → Responder control flows (update, removal).
    pub ctl_i2r: DirectionKeys,
    /// Responder → Initiator control flows.
    pub ctl_r2i: DirectionKeys,
    update_secret: InlineSecret<MAX_HASH_LEN>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// The secret the next epoch's keys are derived from (a record for a store carries it).
    pub(crate) fn update_secret(&self) -> &[u8] {
        self.update_secret.as_bytes()
    }

    /// Rebuilds the keys of an epoch from their parts (a record read back from a store); `None`
    /// when the update secret is longer than any suite's hash.
    pub(crate) fn from_parts(epoch: u32, dirs: [DirectionKeys; 4], update_secret: &[u8]) -> Option<Self> {
        let [i2r, r2i, ctl_i2r, ctl_r2i] = dirs;
        Some(Self { epoch, i2r, r2i, ctl_i2r, ctl_r2i, update_secret: InlineSecret::new(update_secret)? })
    }

    /// Derives every key of an epoch from its PRK.
    pub(crate) fn derive(suite: Suite, sa_id: SaId, epoch: u32, prk: &Prk) -> Self {
        let key_len = suite.aead().key_len();
        let expand = |label: &str, len: usize| {
            let mut out = Zeroizing::new([0u8; MAX_HASH_LEN]);
            let out_slice = &mut out[..len];
            prk.expand(
                &[
                    PROTOCOL_LABEL,
                    b" ",
                    label.as_bytes(),
                    &suite.code().to_be_bytes(),
                    sa_id.as_bytes(),
                    &epoch.to_be_bytes(),
                ],
                out_slice,
            )
            .expect("HKDF output no longer than 255 hashes");
            InlineSecret::<MAX_HASH_LEN>::new(out_slice).expect("no longer than the buffer")
        };
        let dir = |name: &str| {
            let iv = expand(&format!("{name} iv"), 12);
            let key = expand(&format!("{name} key"), key_len);
            DirectionKeys {
                key: InlineSecret::new(key.as_bytes()).expect("suite keys fit"),
                iv: iv.as_bytes().try_into().expect("12 bytes"),
            }
        };
        Self {
            epoch,
            i2r: dir("i2r"),
            r2i: dir("r2i"),
            ctl_i2r: dir("ctl i2r"),
            ctl_r2i: dir("ctl r2i"),
            update_secret: expand("update", suite.hash().output_len()),
        }
    }

    /// The keys after establishment: PRK = HKDF-Extract(salt = transcript hash, Responder's
    /// KEM secret ‖ Initiator's KEM secret).
    pub(crate) fn establish(suite: Suite, sa_id: SaId, th: &Digest, ss_r: &SharedSecret, ss_i: &SharedSecret) -> Self {
        let prk = crypto::hkdf_extract(suite.hash(), th.as_ref(), &[ss_r.as_bytes(), ss_i.as_bytes()]);
        Self::derive(suite, sa_id, 0, &prk)
    }

    /// The keys of the next epoch after an SA Key Update: PRK = HKDF-Extract(salt = this epoch's
    /// update secret, new keying material ‖ Responder keying material if any ‖ the secret of a
    /// fresh KEM exchange if any).
    pub(crate) fn next_epoch(
        &self,
        suite: Suite,
        sa_id: SaId,
        initiator_km: &[u8],
        responder_km: Option<&[u8]>,
        kem_secret: Option<&[u8]>,
    ) -> Self {
        let prk = crypto::hkdf_extract(
            suite.hash(),
            self.update_secret.as_bytes(),
            &[initiator_km, responder_km.unwrap_or_default(), kem_secret.unwrap_or_default()],
        );
        Self::derive(suite, sa_id, self.epoch + 1, &prk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published vector of a key update with a fresh KEM secret (docs/protocol.md §3.4):
    /// epoch 0 from PRK_0 = HKDF-Extract(salt = 0x01 × 32, IKM = 0x02 × 32), suite 1,
    /// sa_id = 0x5a × 8; m_i = 0x11 × 32, m_r = 0x22 × 32, KEM secret 0x33 × 32.
    #[test]
    fn key_update_vector_with_and_without_a_fresh_kem_secret() {
        let suite = Suite::X25519_AES128GCM_SHA256;
        let sa_id = SaId([0x5a; 8]);
        let prk = crypto::hkdf_extract(HashAlgorithm::Sha256, &[0x01; 32], &[&[0x02; 32]]);
        let epoch0 = SessionKeys::derive(suite, sa_id, 0, &prk);
        let plain = epoch0.next_epoch(suite, sa_id, &[0x11; 32], Some(&[0x22; 32]), None);
        let kem = epoch0.next_epoch(suite, sa_id, &[0x11; 32], Some(&[0x22; 32]), Some(&[0x33; 32]));
        let show = |k: &SessionKeys| {
            [
                hex::encode(k.i2r.key()),
                hex::encode(k.i2r.iv()),
                hex::encode(k.ctl_i2r.key()),
                hex::encode(k.update_secret.as_bytes()),
            ]
        };
        assert_eq!(
            hex::encode(epoch0.update_secret.as_bytes()),
            "f9954e2c973e6f66ba8afee9ae7a99b978eedd47a3107b2044be072def2ef2f0"
        );
        // Without the KEM secret: the key update as before (IKM = m_i ‖ m_r).
        assert_eq!(
            show(&plain),
            [
                "54444b85abed574e829272bce9793dca",
                "8f3630f4696a907b161edbac",
                "b2b27cf77f42a67554329408caf88cb5",
                "b3117c29cc1aca2da81dc7c1948d861f0998ebab552210734340da73be71330e",
            ]
        );
        // With it: IKM = m_i ‖ m_r ‖ ss.
        assert_eq!(
            show(&kem),
            [
                "9f947d3bd6581c28fc2daf8605e2a14e",
                "920e32dd8ea7e9413ec7690e",
                "7cd999a91269c39ad7f42367bfec04da",
                "fe818b1978a65b3c8a57517d90245028d2a79385eee1137cb091f0060eb1f57d",
            ]
        );
        assert_eq!((plain.epoch, kem.epoch), (1, 1));
        assert_ne!(plain.i2r.key(), kem.i2r.key());
    }
}
