//! Send / Receive Secure Message (clauses 7.3.4 and 7.3.5): the sealed object and its two
//! encodings.
//!
//! A primitive sent over an SA is sealed with AEAD under the sender's direction key of the SA's
//! current epoch; the nonce is the direction IV XOR a 64-bit sequence number taken from one
//! atomic counter; the protected header is the associated data. The same object has two
//! encodings that decode to one type, [`Sealed`]:
//!
//! * **ESPrim JWE** (TS-0003 §8.4): a JWE Compact Serialization with `alg` "dir", `enc`
//!   A128GCM/A256GCM, `kid` = the SA identifier, and our `seq` and `kp` (key phase) members in the
//!   protected header; carried as `epo` of `m2m:seci` with `sit` = 5 in an outer NOTIFY
//!   ([`to_notify_content`], [`epo_from_content`]). Any RFC 7516 implementation can open it given
//!   the key.
//! * **Compact binary**: one byte (version, key phase, suite), the 8-byte SA identifier, the
//!   sequence number as a LEB128 varint, the ciphertext and the 16-byte tag. This layer seals
//!   whatever bytes it is given; the runtime gives it the binary form of the primitive
//!   (docs/protocol.md §4.5) in this form and the JSON in the JWE form.
//!
//! Decoding refuses anything over its limit before any cryptography runs; each failure maps to
//! the TS-0004 response status code a receiver answers with ([`SecureError::rsc`]).

use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use onem2m_primitive::ResponseStatusCode as Rsc;
use onem2m_primitive::varint::{self, VarintError};
use serde::Deserialize;

use crate::SaId;
use crate::crypto::{AeadAlgorithm, Suite};
use crate::establish::Role;
use crate::lease::{LeaseKey, SeqLease};
use crate::replay::{ReplayError, ReplayWindow};
use crate::schedule::{DirectionKeys, SessionKeys};

/// Largest plaintext (a serialized primitive) this layer seals or opens.
pub const MAX_PLAINTEXT: usize = 1024 * 1024;
/// Largest JWE protected header, encoded.
pub const MAX_JWE_HEADER: usize = 512;
/// Tag length of every suite.
pub const TAG_LEN: usize = 16;
/// Version carried in the first byte of the compact form: 2, whose plaintext is the binary form
/// of the primitive (docs/protocol.md §4.5). Version 1 (earlier builds) sealed its JSON and is
/// refused like any other version.
pub const COMPACT_VERSION: u8 = 2;

/// Why a secured message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// Not a well-formed sealed object, or over a size limit.
    #[error("malformed secured message: {0}")]
    Malformed(&'static str),
    /// An algorithm, version or ESPrim option this implementation does not support.
    #[error("unsupported algorithm or option")]
    UnsupportedAlgorithm,
    /// No live SA with this identifier, or its keys for this key phase are gone.
    #[error("unknown or expired SA identifier")]
    UnknownSa,
    /// The tag did not verify: tampered, truncated, reflected, or sealed under other keys.
    #[error("authentication tag did not verify")]
    BadTag,
    /// The sequence number was already accepted.
    #[error("replayed message")]
    Replayed,
    /// The sequence number is older than the replay window.
    #[error("message too old for the replay window")]
    TooOld,
    /// The inner primitive's originator is outside the peer's authorization context.
    #[error("originator outside the SA peer's authorization context")]
    Impersonation,
    /// Decryption failed for another reason.
    #[error("decryption failure")]
    Decryption,
    /// The key reached its hard usage limit, or sealing failed.
    #[error("encryption failure")]
    Encryption,
}

impl SecureError {
    /// The response status code a receiver answers with (TS-0004 §6.6.3).
    ///
    /// Replay and staleness are integrity failures of the message as received, so they share
    /// 4115 with a bad tag; the variants stay distinct for logs and metrics.
    pub fn rsc(self) -> Rsc {
        match self {
            Self::Malformed(_) => Rsc::BAD_REQUEST,
            Self::UnsupportedAlgorithm => Rsc::ESPRIM_UNSUPPORTED_OPTION,
            Self::UnknownSa => Rsc::ESPRIM_UNKNOWN_KEY_ID,
            Self::BadTag | Self::Replayed | Self::TooOld => Rsc::ESPRIM_BAD_MAC,
            Self::Impersonation => Rsc::ESPRIM_IMPERSONATION_ERROR,
            Self::Decryption => Rsc::ESPRIM_DECRYPTION_ERROR,
            Self::Encryption => Rsc::ESPRIM_ENCRYPTION_ERROR,
        }
    }

    /// The text a receiver may tell the sender. Replay, staleness and a bad tag read alike, as
    /// they share their RSC: a prober without keys must not learn the receiver's replay-window
    /// state from the answer (the variant still reaches logs and metrics through [`Self::label`]).
    pub fn peer_text(self) -> String {
        match self {
            Self::BadTag | Self::Replayed | Self::TooOld => "secured message not authentic".to_owned(),
            other => other.to_string(),
        }
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedAlgorithm => "unsupported",
            Self::UnknownSa => "unknown_sa",
            Self::BadTag => "bad_tag",
            Self::Replayed => "replayed",
            Self::TooOld => "too_old",
            Self::Impersonation => "impersonation",
            Self::Decryption => "decryption",
            Self::Encryption => "encryption",
        }
    }
}

impl From<ReplayError> for SecureError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::TooOld => Self::TooOld,
            _ => Self::Replayed,
        }
    }
}

/// Limits on the use of one key, below the AES-GCM bounds.
///
/// The defaults follow the TLS 1.3 analysis (RFC 8446 §5.5: 2^24.5 full-size records, about
/// 2^38.5 bytes, per AES-GCM key for a 2^-57 distinguishing advantage): the hard limits are
/// 2^38 bytes and 2^32 messages, the soft limits half of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// Past this many messages, sealing asks for Update SA (keys).
    pub soft_messages: u64,
    /// At this many messages, sealing refuses.
    pub hard_messages: u64,
    /// Past this many plaintext bytes, sealing asks for Update SA (keys).
    pub soft_bytes: u64,
    /// At this many plaintext bytes, sealing refuses.
    pub hard_bytes: u64,
}

impl Default for UsageLimits {
    fn default() -> Self {
        Self { soft_messages: 1 << 31, hard_messages: 1 << 32, soft_bytes: 1 << 37, hard_bytes: 1 << 38 }
    }
}

/// The protected header both encodings carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    /// The SA.
    pub sa_id: SaId,
    /// The AEAD (from the JWE `enc`, or the compact suite code).
    pub aead: AeadAlgorithm,
    /// The low bit of the key epoch the sender sealed under.
    pub key_phase: u8,
    /// The sender's sequence number.
    pub seq: u64,
}

/// The encoding of a sealed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JWE Compact Serialization (ESPrim).
    Jwe,
    /// The compact binary form.
    Compact,
}

/// A decoded sealed object, not yet opened.
#[derive(Debug)]
pub struct Sealed<'a> {
    /// The protected header.
    pub header: SealedHeader,
    /// Which encoding it came in.
    pub encoding: Encoding,
    aad: &'a [u8],
    iv: Option<[u8; 12]>,
    body: &'a mut [u8],
}

/// One epoch's keys as the data path uses them, with its counters and replay window.
///
/// The AEAD contexts (aws-lc's expanded key schedule and GHASH tables, ≈ 600 bytes a
/// direction) are built on the first message. The table's sweep releases them once no message
/// used them for a while ([`crate::table::SaTable::sweep`]) by putting in the SA's slot a copy
/// of the epoch without them ([`Epoch::idle_copy`]) that shares its counters and replay
/// window: an SA at rest keeps only its raw keys, and rebuilding costs ≈ 0.25 µs on its next
/// message. A message in flight keeps the copy it started with.
pub struct Epoch {
    /// Epoch number.
    pub number: u32,
    state: Arc<EpochState>,
    contexts: std::sync::OnceLock<Box<AeadContexts>>,
}

/// What every copy of an epoch shares: keys, counters, replay window.
struct EpochState {
    aead: AeadAlgorithm,
    seal_keys: DirectionKeys,
    open_keys: DirectionKeys,
    /// A message used the contexts since the last [`Epoch::idle_copy`].
    warm: std::sync::atomic::AtomicBool,
    send_seq: std::sync::atomic::AtomicU64,
    sent_bytes: std::sync::atomic::AtomicU64,
    window: ReplayWindow,
    /// A message opened under this epoch: the peer uses it.
    opened: std::sync::atomic::AtomicBool,
    /// Replicas sharing the SA: sequence numbers come from leased blocks, not `send_seq`.
    lease: Option<Arc<SeqLease>>,
}

/// The prepared AEAD keys of an epoch, one per direction (freed and zeroized by aws-lc).
struct AeadContexts {
    seal: LessSafeKey,
    open: LessSafeKey,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch").field("number", &self.number).field("aead", &self.state.aead).finish_non_exhaustive()
    }
}

fn nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

fn less_safe(aead: AeadAlgorithm, keys: &DirectionKeys) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(aead.aws_lc(), keys.key()).expect("key length fixed by the suite"))
}

/// Outcome of a successful seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealInfo {
    /// The sequence number used.
    pub seq: u64,
    /// The key passed a soft usage limit: time for Update SA (keys).
    pub update_due: bool,
}

impl Epoch {
    /// Builds the data-path keys of `keys` for a node in `role`, with a replay window of
    /// `window` sequence numbers.
    pub fn new(suite: Suite, keys: &SessionKeys, role: Role, window: usize) -> Self {
        Self::build(suite, keys, role, window, None)
    }

    /// [`Self::new`] sealing with sequence numbers of `lease` only (replicas sharing the SA, see
    /// [`crate::lease`]): a seal with no leased number left is refused
    /// ([`SecureError::Encryption`]).
    pub fn with_lease(suite: Suite, keys: &SessionKeys, role: Role, window: usize, lease: Arc<SeqLease>) -> Self {
        Self::build(suite, keys, role, window, Some(lease))
    }

    fn build(suite: Suite, keys: &SessionKeys, role: Role, window: usize, lease: Option<Arc<SeqLease>>) -> Self {
        let (send, recv) = match role {
            Role::Initiator => (&keys.i2r, &keys.r2i),
            Role::Responder => (&keys.r2i, &keys.i2r),
        };
        let state = EpochState {
            aead: suite.aead(),
            seal_keys: send.clone(),
            open_keys: recv.clone(),
            warm: false.into(),
            send_seq: 0.into(),
            sent_bytes: 0.into(),
            window: ReplayWindow::new(window),
            opened: false.into(),
            lease,
        };
        Self { number: keys.epoch, state: Arc::new(state), contexts: std::sync::OnceLock::new() }
    }

    /// The name of the shared counter for this epoch's sending direction in `role`: SHA-256 of
    /// a label, the sending key and IV, truncated. Equal for every holder of the same keys.
    pub fn lease_key(sa_id: SaId, suite: Suite, keys: &SessionKeys, role: Role) -> LeaseKey {
        let send = match role {
            Role::Initiator => &keys.i2r,
            Role::Responder => &keys.r2i,
        };
        let d = crate::crypto::digest(
            crate::crypto::HashAlgorithm::Sha256,
            &[b"onem2m-sa seq lease", &suite.code().to_be_bytes(), send.key(), send.iv()],
        );
        let mut id = [0u8; 16];
        id.copy_from_slice(&d.as_ref()[..16]);
        LeaseKey { sa_id, epoch: keys.epoch, id }
    }

    /// The lease this epoch seals from, when replicas share it.
    pub fn lease(&self) -> Option<&Arc<SeqLease>> {
        self.state.lease.as_ref()
    }

    /// The key phase bit carried in headers.
    pub fn key_phase(&self) -> u8 {
        (self.number & 1) as u8
    }

    /// Messages sealed so far under this epoch.
    pub fn sent(&self) -> u64 {
        self.state.send_seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a message from the peer has opened under this epoch.
    pub fn has_opened(&self) -> bool {
        self.state.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The prepared AEAD keys, built first when this copy has none.
    #[inline]
    fn contexts(&self) -> &AeadContexts {
        use std::sync::atomic::Ordering::Relaxed;
        // Load first: a store on every message would bounce the cache line between cores.
        if !self.state.warm.load(Relaxed) {
            self.state.warm.store(true, Relaxed);
        }
        self.contexts.get_or_init(|| {
            Box::new(AeadContexts {
                seal: less_safe(self.state.aead, &self.state.seal_keys),
                open: less_safe(self.state.aead, &self.state.open_keys),
            })
        })
    }

    /// A copy of this epoch without AEAD contexts, sharing its keys, counters and replay
    /// window, when this one has them and no message used them since the last call; the table's
    /// sweep puts it in the SA's slot, so the contexts are freed with the last message using them.
    pub fn idle_copy(&self) -> Option<Epoch> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.contexts.get().is_none() || self.state.warm.swap(false, Relaxed) {
            return None;
        }
        Some(Self { number: self.number, state: self.state.clone(), contexts: std::sync::OnceLock::new() })
    }

    /// Whether this copy has its AEAD contexts built (for tests and the memory figures).
    pub fn has_contexts(&self) -> bool {
        self.contexts.get().is_some()
    }

    /// Whether `other` is a copy of this epoch (the same keys, counters and window).
    pub fn same_epoch(&self, other: &Epoch) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// Replay window memory, for the memory-per-SA figure.
    pub fn window_bytes(&self) -> usize {
        self.state.window.memory_bytes()
    }

    /// Takes a sequence number and accounts for `len` bytes against the limits.
    fn take_seq(&self, len: usize, limits: &UsageLimits) -> Result<SealInfo, SecureError> {
        use std::sync::atomic::Ordering::Relaxed;
        let seq = match &self.state.lease {
            None => self.state.send_seq.fetch_add(1, Relaxed),
            Some(lease) => lease.take().ok_or(SecureError::Encryption)?,
        };
        if seq >= limits.hard_messages {
            // Keep the counter saturated so it can never wrap to a used value.
            self.state.send_seq.store(limits.hard_messages, Relaxed);
            return Err(SecureError::Encryption);
        }
        let bytes = self.state.sent_bytes.fetch_add(len as u64, Relaxed) + len as u64;
        if bytes > limits.hard_bytes {
            return Err(SecureError::Encryption);
        }
        Ok(SealInfo { seq, update_due: seq >= limits.soft_messages || bytes >= limits.soft_bytes })
    }

    /// Seals `plaintext` into `out` (cleared first; its capacity is reused, so a warm buffer
    /// means no allocation).
    pub fn seal(
        &self,
        sa_id: SaId,
        suite: Suite,
        encoding: Encoding,
        plaintext: &[u8],
        limits: &UsageLimits,
        out: &mut Vec<u8>,
    ) -> Result<SealInfo, SecureError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SecureError::Malformed("plaintext over the size limit"));
        }
        let info = self.take_seq(plaintext.len(), limits)?;
        let n = nonce(self.state.seal_keys.iv(), info.seq);
        out.clear();
        match encoding {
            Encoding::Compact => {
                out.push((COMPACT_VERSION << 5) | (self.key_phase() << 4) | (suite.code() as u8 & 0x0f));
                out.extend_from_slice(sa_id.as_bytes());
                varint::put(out, info.seq);
                let header_len = out.len();
                out.extend_from_slice(plaintext);
                let (aad, body) = out.split_at_mut(header_len);
                let tag = self
                    .contexts()
                    .seal
                    .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&*aad), body)
                    .map_err(|_| SecureError::Encryption)?;
                out.extend_from_slice(tag.as_ref());
            }
            Encoding::Jwe => {
                // Protected header, written by hand so the bytes (and so the AAD) are fixed.
                let mut header = [0u8; 160];
                let header_len = {
                    use std::io::Write;
                    let mut w = &mut header[..];
                    write!(
                        w,
                        r#"{{"alg":"dir","enc":"{}","kid":"{}","seq":{},"kp":{}}}"#,
                        self.state.aead.jwe_name(),
                        sa_id.to_b64(),
                        info.seq,
                        self.key_phase()
                    )
                    .expect("header fits");
                    160 - w.len()
                };
                let b64_len = base64::encoded_len(header_len, false).expect("small");
                out.resize(b64_len, 0);
                URL_SAFE_NO_PAD.encode_slice(&header[..header_len], out).expect("sized");
                // Encrypt in `out` past the header, then base64 the ciphertext in place of it.
                let start = out.len();
                out.extend_from_slice(plaintext);
                let (aad, body) = out.split_at_mut(start);
                let tag = self
                    .contexts()
                    .seal
                    .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&*aad), body)
                    .map_err(|_| SecureError::Encryption)?;
                let ct_len = out.len() - start;
                let ct_b64 = base64::encoded_len(ct_len, false).expect("bounded");
                let iv_b64 = base64::encoded_len(12, false).expect("small");
                let tag_b64 = base64::encoded_len(TAG_LEN, false).expect("small");
                // Layout: header . . iv . ct . tag — move the raw ciphertext to the end first.
                let total = start + 2 + iv_b64 + 1 + ct_b64 + 1 + tag_b64;
                out.resize(total + ct_len, 0);
                out.copy_within(start..start + ct_len, total);
                let mut pos = start;
                out[pos..pos + 2].copy_from_slice(b"..");
                pos += 2;
                URL_SAFE_NO_PAD.encode_slice(n, &mut out[pos..pos + iv_b64]).expect("sized");
                pos += iv_b64;
                out[pos] = b'.';
                pos += 1;
                let (head, raw) = out.split_at_mut(total);
                // The body is the bulk of the work: SIMD base64.
                let written = base64_simd::URL_SAFE_NO_PAD
                    .encode(&raw[..ct_len], base64_simd::Out::from_slice(&mut head[pos..pos + ct_b64]))
                    .len();
                debug_assert_eq!(written, ct_b64);
                pos += ct_b64;
                out[pos] = b'.';
                pos += 1;
                URL_SAFE_NO_PAD.encode_slice(tag.as_ref(), &mut out[pos..pos + tag_b64]).expect("sized");
                out.truncate(total);
            }
        }
        Ok(info)
    }

    /// Opens `sealed` in place; on success the sequence number is marked in the replay window.
    pub fn open<'a>(&self, sealed: Sealed<'a>) -> Result<&'a mut [u8], SecureError> {
        let Sealed { header, aad, iv, body, .. } = sealed;
        if header.aead != self.state.aead {
            return Err(SecureError::UnsupportedAlgorithm);
        }
        // The cheap replay check first: a stale number costs no AES.
        self.state.window.check(header.seq)?;
        let n = nonce(self.state.open_keys.iv(), header.seq);
        if iv.is_some_and(|iv| iv != n) {
            return Err(SecureError::BadTag);
        }
        let plaintext = self
            .contexts()
            .open
            .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(aad), body)
            .map_err(|_| SecureError::BadTag)?;
        // Mark only now that the tag verified, so forgeries never move the window.
        self.state.window.mark(header.seq)?;
        if !self.state.opened.load(std::sync::atomic::Ordering::Relaxed) {
            self.state.opened.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(plaintext)
    }
}

fn get_varint(buf: &[u8]) -> Result<(u64, usize), SecureError> {
    varint::get(buf).map_err(|e| {
        SecureError::Malformed(match e {
            VarintError::Overflow => "sequence number overflows 64 bits",
            VarintError::NonMinimal => "non-minimal sequence number",
            VarintError::Truncated => "truncated sequence number",
        })
    })
}

/// Decodes the compact binary form in place.
pub fn decode_compact(buf: &mut [u8]) -> Result<Sealed<'_>, SecureError> {
    if buf.len() > MAX_PLAINTEXT + 64 {
        return Err(SecureError::Malformed("over the size limit"));
    }
    let first = *buf.first().ok_or(SecureError::Malformed("empty"))?;
    if first >> 5 != COMPACT_VERSION {
        return Err(SecureError::UnsupportedAlgorithm);
    }
    let suite = Suite::from_code(u16::from(first & 0x0f)).ok_or(SecureError::UnsupportedAlgorithm)?;
    if buf.len() < 1 + SaId::LEN + 1 + TAG_LEN {
        return Err(SecureError::Malformed("shorter than header and tag"));
    }
    let sa_id = SaId(buf[1..1 + SaId::LEN].try_into().expect("8 bytes"));
    let (seq, n) = get_varint(&buf[1 + SaId::LEN..])?;
    let header_len = 1 + SaId::LEN + n;
    if buf.len() < header_len + TAG_LEN {
        return Err(SecureError::Malformed("shorter than header and tag"));
    }
    let (aad, body) = buf.split_at_mut(header_len);
    Ok(Sealed {
        header: SealedHeader { sa_id, aead: suite.aead(), key_phase: (first >> 4) & 1, seq },
        encoding: Encoding::Compact,
        aad,
        iv: None,
        body,
    })
}

#[derive(Deserialize)]
struct JweHeader<'a> {
    alg: &'a str,
    enc: &'a str,
    #[serde(borrow)]
    kid: std::borrow::Cow<'a, str>,
    seq: u64,
    #[serde(default)]
    kp: u8,
    #[serde(default)]
    zip: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Decodes a JWE Compact Serialization; the ciphertext and tag are decoded into `scratch`
/// (cleared first, capacity reused) and opened there.
pub fn decode_jwe<'a>(jwe: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Sealed<'a>, SecureError> {
    if jwe.len() > (MAX_PLAINTEXT + TAG_LEN) * 4 / 3 + MAX_JWE_HEADER + 64 {
        return Err(SecureError::Malformed("over the size limit"));
    }
    // Locate the five parts without scanning the (large) ciphertext: the header ends at the
    // first dot, the tag is the last 22 characters; the ciphertext's base64 decoder refuses any
    // dot left inside it.
    let h_end = jwe
        .iter()
        .take(MAX_JWE_HEADER + 1)
        .position(|b| *b == b'.')
        .ok_or(SecureError::Malformed("protected header over its limit or not a JWE"))?;
    let h = &jwe[..h_end];
    let rest = &jwe[h_end + 1..];
    let ek_end = rest.iter().position(|b| *b == b'.').ok_or(SecureError::Malformed("not five JWE parts"))?;
    if ek_end != 0 {
        return Err(SecureError::UnsupportedAlgorithm);
    }
    let rest = &rest[1..];
    let iv_end = rest.iter().take(17).position(|b| *b == b'.').ok_or(SecureError::Malformed("IV must be 12 bytes"))?;
    let iv = &rest[..iv_end];
    let rest = &rest[iv_end + 1..];
    let tag_start = rest.iter().rposition(|b| *b == b'.').ok_or(SecureError::Malformed("not five JWE parts"))?;
    let (ct, tag) = (&rest[..tag_start], &rest[tag_start + 1..]);
    let mut header_json = [0u8; MAX_JWE_HEADER];
    let hl = URL_SAFE_NO_PAD.decode_slice(h, &mut header_json).map_err(|_| SecureError::Malformed("header base64"))?;
    let header: JweHeader<'_> =
        serde_json::from_slice(&header_json[..hl]).map_err(|_| SecureError::Malformed("header JSON"))?;
    if header.alg != "dir" || header.zip.is_some() || header.crit.is_some() || header.kp > 1 {
        return Err(SecureError::UnsupportedAlgorithm);
    }
    let aead = match header.enc {
        "A128GCM" => AeadAlgorithm::Aes128Gcm,
        "A256GCM" => AeadAlgorithm::Aes256Gcm,
        _ => return Err(SecureError::UnsupportedAlgorithm),
    };
    let sa_id = SaId::from_b64(&header.kid).ok_or(SecureError::UnknownSa)?;
    let mut iv_bytes = [0u8; 12];
    if iv.len() != 16 || URL_SAFE_NO_PAD.decode_slice(iv, &mut iv_bytes).ok() != Some(12) {
        return Err(SecureError::Malformed("IV must be 12 bytes"));
    }
    if tag.len() != 22 {
        return Err(SecureError::Malformed("tag must be 16 bytes"));
    }
    scratch.clear();
    scratch.resize(base64::decoded_len_estimate(ct.len()) + TAG_LEN, 0);
    let n = base64_simd::URL_SAFE_NO_PAD
        .decode(ct, base64_simd::Out::from_slice(&mut scratch[..]))
        .map_err(|_| SecureError::Malformed("ciphertext base64"))?
        .len();
    let t = URL_SAFE_NO_PAD.decode_slice(tag, &mut scratch[n..]).map_err(|_| SecureError::Malformed("tag base64"))?;
    if t != TAG_LEN {
        return Err(SecureError::Malformed("tag must be 16 bytes"));
    }
    scratch.truncate(n + TAG_LEN);
    Ok(Sealed {
        header: SealedHeader { sa_id, aead, key_phase: header.kp, seq: header.seq },
        encoding: Encoding::Jwe,
        aad: h,
        iv: Some(iv_bytes),
        body: scratch.as_mut_slice(),
    })
}

/// `sit` of `m2m:seci` for an ESPrim object (TS-0004 §6.3.5: e2eSecInfo, sit 5 = ESPrim).
pub const SIT_ESPRIM: u64 = 5;

/// The content (`pc`) of the outer NOTIFY that carries a JWE: `{"m2m:seci":{"sit":5,"epo":…}}`.
pub fn to_notify_content(jwe: &[u8]) -> serde_json::Value {
    let epo = std::str::from_utf8(jwe).expect("JWE compact is ASCII");
    serde_json::json!({ "m2m:seci": { "sit": SIT_ESPRIM, "epo": epo } })
}

/// Extracts the JWE from an outer primitive's content.
pub fn epo_from_content(pc: &serde_json::Value) -> Result<&str, SecureError> {
    let seci = pc.get("m2m:seci").ok_or(SecureError::Malformed("no m2m:seci"))?;
    match seci.get("sit").and_then(|s| s.as_u64()) {
        Some(SIT_ESPRIM) => {}
        Some(_) => return Err(SecureError::UnsupportedAlgorithm),
        None => return Err(SecureError::Malformed("no sit")),
    }
    seci.get("epo").and_then(|e| e.as_str()).ok_or(SecureError::Malformed("no epo"))
}

/// The outer NOTIFY of TS-0004 §7.6.2 that carries a sealed request to the peer node `to`.
pub fn outer_notify(to: &str, from: &str, rqi: &str, jwe: &[u8]) -> onem2m_primitive::RequestPrimitive {
    let mut req =
        onem2m_primitive::RequestPrimitive::new(onem2m_primitive::Operation::Notify, to, Some(from.to_owned()), rqi);
    req.rvi = Some("3".to_owned());
    req.pc = Some(to_notify_content(jwe));
    req
}

/// A shared handle to an epoch, as the data path holds it.
pub type EpochRef = Arc<Epoch>;
