//! Suites: the KEM for the per-SA ephemeral keys, the AEAD and the hash (docs/protocol.md §2).

use serde::{Deserialize, Serialize};

/// Key encapsulation mechanisms for the per-SA ephemeral keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KemAlgorithm {
    /// X25519 used as a KEM (ephemeral-static Diffie-Hellman).
    X25519 = 1,
    /// ML-KEM-768 (FIPS 203).
    MlKem768 = 2,
    /// X25519 and ML-KEM-768 combined.
    X25519MlKem768 = 3,
}

impl KemAlgorithm {
    /// The algorithm with this wire code.
    pub fn from_u8(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::X25519),
            2 => Some(Self::MlKem768),
            3 => Some(Self::X25519MlKem768),
            _ => None,
        }
    }
}

/// AEAD algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AeadAlgorithm {
    /// AES-128-GCM.
    Aes128Gcm = 1,
    /// AES-256-GCM.
    Aes256Gcm = 2,
}

impl AeadAlgorithm {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm => 32,
        }
    }

    /// Nonce length in bytes.
    pub fn nonce_len(self) -> usize {
        12
    }

    /// Tag length in bytes.
    pub fn tag_len(self) -> usize {
        16
    }

    /// The JWE `enc` name (RFC 7518).
    pub fn jwe_name(self) -> &'static str {
        match self {
            Self::Aes128Gcm => "A128GCM",
            Self::Aes256Gcm => "A256GCM",
        }
    }

    /// The aws-lc algorithm.
    pub fn aws_lc(self) -> &'static aws_lc_rs::aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aws_lc_rs::aead::AES_128_GCM,
            Self::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
        }
    }
}

/// Hash functions for the transcript, HKDF and HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl HashAlgorithm {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    pub(crate) fn digest_alg(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
        }
    }

    pub(crate) fn hmac_alg(self) -> aws_lc_rs::hmac::Algorithm {
        match self {
            Self::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
            Self::Sha384 => aws_lc_rs::hmac::HMAC_SHA384,
        }
    }

    pub(crate) fn hkdf_alg(self) -> aws_lc_rs::hkdf::Algorithm {
        match self {
            Self::Sha256 => aws_lc_rs::hkdf::HKDF_SHA256,
            Self::Sha384 => aws_lc_rs::hkdf::HKDF_SHA384,
        }
    }
}

/// A suite's wire code as it appears in an offer; a peer may offer codes this build does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SuiteCode(pub u16);

/// A cipher suite: KEM + AEAD + hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Suite {
    code: u16,
    name: &'static str,
    kem: KemAlgorithm,
    aead: AeadAlgorithm,
    hash: HashAlgorithm,
}

impl Suite {
    /// X25519, AES-128-GCM, SHA-256: the default.
    pub const X25519_AES128GCM_SHA256: Suite = Suite {
        code: 1,
        name: "X25519_AES128GCM_SHA256",
        kem: KemAlgorithm::X25519,
        aead: AeadAlgorithm::Aes128Gcm,
        hash: HashAlgorithm::Sha256,
    };
    /// X25519, AES-256-GCM, SHA-384.
    pub const X25519_AES256GCM_SHA384: Suite = Suite {
        code: 2,
        name: "X25519_AES256GCM_SHA384",
        kem: KemAlgorithm::X25519,
        aead: AeadAlgorithm::Aes256Gcm,
        hash: HashAlgorithm::Sha384,
    };
    /// ML-KEM-768, AES-256-GCM, SHA-384.
    pub const MLKEM768_AES256GCM_SHA384: Suite = Suite {
        code: 3,
        name: "MLKEM768_AES256GCM_SHA384",
        kem: KemAlgorithm::MlKem768,
        aead: AeadAlgorithm::Aes256Gcm,
        hash: HashAlgorithm::Sha384,
    };
    /// X25519 + ML-KEM-768 hybrid, AES-256-GCM, SHA-384.
    pub const X25519MLKEM768_AES256GCM_SHA384: Suite = Suite {
        code: 4,
        name: "X25519MLKEM768_AES256GCM_SHA384",
        kem: KemAlgorithm::X25519MlKem768,
        aead: AeadAlgorithm::Aes256Gcm,
        hash: HashAlgorithm::Sha384,
    };
    /// Every suite, in the default order of preference.
    pub const ALL: [Suite; 4] = [
        Self::X25519_AES128GCM_SHA256,
        Self::X25519_AES256GCM_SHA384,
        Self::X25519MLKEM768_AES256GCM_SHA384,
        Self::MLKEM768_AES256GCM_SHA384,
    ];

    /// Wire code.
    pub fn code(self) -> u16 {
        self.code
    }

    /// The suite with this code.
    pub fn from_code(code: u16) -> Option<Suite> {
        Self::ALL.into_iter().find(|s| s.code == code)
    }

    /// Name, e.g. `X25519_AES128GCM_SHA256`.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The KEM.
    pub fn kem(self) -> KemAlgorithm {
        self.kem
    }

    /// The AEAD.
    pub fn aead(self) -> AeadAlgorithm {
        self.aead
    }

    /// The hash.
    pub fn hash(self) -> HashAlgorithm {
        self.hash
    }
}

impl From<Suite> for SuiteCode {
    fn from(s: Suite) -> Self {
        SuiteCode(s.code)
    }
}

impl TryFrom<SuiteCode> for Suite {
    type Error = SuiteCode;
    fn try_from(c: SuiteCode) -> Result<Self, SuiteCode> {
        Suite::from_code(c.0).ok_or(c)
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl std::str::FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|x| x.name.eq_ignore_ascii_case(s)).ok_or_else(|| format!("unknown suite {s:?}"))
    }
}

/// Long-term signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SignatureAlgorithm {
    /// Ed25519 (the default).
    Ed25519 = 1,
    /// ECDSA over P-256 with SHA-256, fixed-length `r‖s` signatures.
    EcdsaP256Sha256 = 2,
}

impl SignatureAlgorithm {
    /// The name used in tickets: `Ed25519` or `ES256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::EcdsaP256Sha256 => "ES256",
        }
    }

    /// The algorithm with this code.
    pub fn from_u8(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Ed25519),
            2 => Some(Self::EcdsaP256Sha256),
            _ => None,
        }
    }
}

impl std::str::FromStr for SignatureAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "Ed25519" | "ed25519" => Ok(Self::Ed25519),
            "ES256" | "es256" | "ecdsa-p256" => Ok(Self::EcdsaP256Sha256),
            _ => Err(format!("unknown signature algorithm {s:?}")),
        }
    }
}

impl Serialize for SignatureAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for SignatureAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
