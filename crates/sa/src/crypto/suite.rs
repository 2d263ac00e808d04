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

    /// The aws-lc digest algorithm.
    pub fn digest_alg(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
        }
    }

    /// The aws-lc HMAC algorithm.
    pub fn hmac_alg(self) -> aws_lc_rs::hmac::Algorithm {
        match self {
            Self::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
            Self::Sha384 => aws_lc_rs::hmac::HMAC_SHA384,
        }
    }

    /// The aws-lc HKDF algorithm.
    pub fn hkdf_alg(self) -> aws_lc_rs::hkdf::Algorithm {
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

impl std::fmt::Display for SuiteCode {
    /// The suite's name when this build knows it, else the code in hex (`0x0005`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Suite::from_code(self.0) {
            Some(s) => f.write_str(s.name()),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

/// A cipher suite: KEM + AEAD + hash. Its wire code is a `u16`; serde uses the code and refuses
/// codes this build does not know (use [`SuiteCode`] where unknown codes must survive decoding).
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

impl Serialize for Suite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code)
    }
}

impl<'de> Deserialize<'de> for Suite {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(d)?;
        Suite::from_code(code).ok_or_else(|| serde::de::Error::custom(format_args!("unknown suite code {code}")))
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

    /// Length of a public key: 32 (Ed25519, raw) or 65 (P-256, uncompressed SEC1).
    pub fn public_key_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::EcdsaP256Sha256 => 65,
        }
    }

    /// Length of a signature: 64 for both (ECDSA as fixed-length `r‖s`).
    pub fn signature_len(self) -> usize {
        64
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

impl std::fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_components() {
        let expected = [
            (1, "X25519_AES128GCM_SHA256", KemAlgorithm::X25519, AeadAlgorithm::Aes128Gcm, HashAlgorithm::Sha256),
            (2, "X25519_AES256GCM_SHA384", KemAlgorithm::X25519, AeadAlgorithm::Aes256Gcm, HashAlgorithm::Sha384),
            (3, "MLKEM768_AES256GCM_SHA384", KemAlgorithm::MlKem768, AeadAlgorithm::Aes256Gcm, HashAlgorithm::Sha384),
            (
                4,
                "X25519MLKEM768_AES256GCM_SHA384",
                KemAlgorithm::X25519MlKem768,
                AeadAlgorithm::Aes256Gcm,
                HashAlgorithm::Sha384,
            ),
        ];
        for (code, name, kem, aead, hash) in expected {
            let s = Suite::from_code(code).unwrap();
            assert_eq!((s.code(), s.name(), s.kem(), s.aead(), s.hash()), (code, name, kem, aead, hash));
            assert_eq!(name.parse::<Suite>().unwrap(), s);
            assert_eq!(s.to_string(), name);
            assert_eq!(Suite::try_from(SuiteCode(code)), Ok(s));
            assert_eq!(KemAlgorithm::from_u8(kem as u8), Some(kem));
            // The aws-lc algorithms agree with the advertised lengths.
            assert_eq!(s.aead().aws_lc().key_len(), s.aead().key_len());
            assert_eq!(s.aead().aws_lc().nonce_len(), s.aead().nonce_len());
            assert_eq!(s.aead().aws_lc().tag_len(), s.aead().tag_len());
            assert_eq!(s.hash().digest_alg().output_len(), s.hash().output_len());
        }
        assert_eq!(Suite::ALL[0], Suite::X25519_AES128GCM_SHA256);
        assert!(Suite::from_code(0).is_none() && Suite::from_code(5).is_none());
        assert_eq!(Suite::try_from(SuiteCode(0x1234)), Err(SuiteCode(0x1234)));
        assert!("nope".parse::<Suite>().is_err());
        assert_eq!(AeadAlgorithm::Aes128Gcm.jwe_name(), "A128GCM");
        assert_eq!(AeadAlgorithm::Aes256Gcm.jwe_name(), "A256GCM");
        assert_eq!(SuiteCode(1).to_string(), "X25519_AES128GCM_SHA256");
        assert_eq!(SuiteCode(0x1234).to_string(), "0x1234");
    }

    #[test]
    fn serde_by_code_and_unknown_codes() {
        assert_eq!(serde_json::to_string(&Suite::X25519MLKEM768_AES256GCM_SHA384).unwrap(), "4");
        assert_eq!(serde_json::from_str::<Suite>("2").unwrap(), Suite::X25519_AES256GCM_SHA384);
        assert!(serde_json::from_str::<Suite>("9").is_err());
        assert!(serde_json::from_str::<Suite>("65536").is_err());
        let offer: Vec<SuiteCode> = serde_json::from_str("[1,9,65535]").unwrap();
        assert_eq!(offer, [SuiteCode(1), SuiteCode(9), SuiteCode(65535)]);
        assert_eq!(serde_json::to_string(&offer).unwrap(), "[1,9,65535]");
    }

    #[test]
    fn signature_algorithms() {
        for (alg, name, code) in
            [(SignatureAlgorithm::Ed25519, "Ed25519", 1), (SignatureAlgorithm::EcdsaP256Sha256, "ES256", 2)]
        {
            assert_eq!(alg.name(), name);
            assert_eq!(alg.to_string(), name);
            assert_eq!(name.parse::<SignatureAlgorithm>().unwrap(), alg);
            assert_eq!(SignatureAlgorithm::from_u8(code), Some(alg));
            assert_eq!(alg as u8, code);
            assert_eq!(serde_json::to_string(&alg).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<SignatureAlgorithm>(&format!("\"{name}\"")).unwrap(), alg);
        }
        assert!(SignatureAlgorithm::from_u8(0).is_none());
        assert!("RS256".parse::<SignatureAlgorithm>().is_err());
        assert!(serde_json::from_str::<SignatureAlgorithm>("\"RS256\"").is_err());
    }
}
