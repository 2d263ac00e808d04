//! Security Association identifiers and injected time.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rng::Rng;

/// A Security Association identifier: 64 random bits, an octet string on the wire.
///
/// The holder of the SA table draws it ([`SaId::random`]) and draws again on a collision; it
/// is public (it travels in every secured message) but unguessable, so a stranger cannot aim a
/// flow at a live SA without first seeing its traffic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaId(pub [u8; 8]);

impl SaId {
    /// Length on the wire.
    pub const LEN: usize = 8;

    /// Draws a fresh identifier.
    pub fn random(rng: &mut dyn Rng) -> Self {
        Self(crate::rng::random_array(rng))
    }

    /// The identifier as bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// The identifier as a `u64` (big-endian), for compact table keys.
    pub fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// Parses the base64url form used on the wire.
    pub fn from_b64(s: &str) -> Option<Self> {
        use base64::Engine as _;
        if s.len() != 11 {
            return None;
        }
        let mut out = [0u8; 9];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(s, &mut out).ok()?;
        (n == Self::LEN).then(|| Self(out[..8].try_into().expect("8 bytes")))
    }

    /// The base64url form used on the wire (JWE `kid`, flow elements).
    pub fn to_b64(&self) -> String {
        crate::b64::encode(&self.0)
    }
}

impl std::fmt::Debug for SaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SaId({self})")
    }
}

impl std::fmt::Display for SaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for SaId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64())
    }
}

impl<'de> Deserialize<'de> for SaId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.len() > 16 {
            return Err(serde::de::Error::custom("SA identifier too long"));
        }
        Self::from_b64(&s).ok_or_else(|| serde::de::Error::custom("SA identifier must be 8 bytes"))
    }
}

/// A point in time, injected by the caller.
///
/// `mono_ms` is a monotonic clock in milliseconds (deadlines and timeouts are measured on it, so
/// a jump of the wall clock cannot stretch or cut them); `unix_secs` is the wall clock, used only
/// to check ticket validity windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Now {
    /// Monotonic milliseconds from an arbitrary origin.
    pub mono_ms: u64,
    /// Seconds since the UNIX epoch.
    pub unix_secs: u64,
}

impl Now {
    /// A time with both clocks given.
    pub fn new(mono_ms: u64, unix_secs: u64) -> Self {
        Self { mono_ms, unix_secs }
    }

    /// This time advanced by `ms` milliseconds on both clocks.
    pub fn after_ms(self, ms: u64) -> Self {
        Self { mono_ms: self.mono_ms + ms, unix_secs: self.unix_secs + ms / 1000 }
    }
}

/// A deadline on the monotonic clock, in milliseconds.
pub type Deadline = u64;
