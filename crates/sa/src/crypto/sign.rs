//! Long-term signing keys: Ed25519 (default) and ECDSA P-256.
//!
//! Key generation draws the private key from the injected [`Rng`] (an Ed25519 seed, a P-256
//! scalar), so keys are reproducible under a seeded one. ECDSA *signatures* are randomized by
//! aws-lc's own DRBG: `EcdsaKeyPair::sign` ignores the `SecureRandom` it is given and aws-lc-rs
//! exposes no deterministic (RFC 6979) variant, so only Ed25519 signatures are reproducible.

use std::sync::Arc;

use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{CryptoError, SignatureAlgorithm};
use crate::rng::{Rng, random_array};

enum Inner {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// Longest PEM text accepted (a P-256 or Ed25519 PKCS#8 key is well under 1 KiB).
const MAX_PEM: usize = 8 * 1024;

/// A node's long-term signing key. Cheap to clone (shared). The private key lives inside aws-lc,
/// which zeroizes it when freed; `Debug` shows the algorithm and the public key only.
#[derive(Clone)]
pub struct SigningKey {
    alg: SignatureAlgorithm,
    inner: Arc<Inner>,
    public: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, public ", self.alg.name())?;
        for b in &self.public {
            write!(f, "{b:02x}")?;
        }
        write!(f, ", private <redacted>)")
    }
}

impl SigningKey {
    /// A fresh key whose private part is drawn from `rng` (deterministic under a seeded one).
    pub fn generate(alg: SignatureAlgorithm, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        match alg {
            SignatureAlgorithm::Ed25519 => {
                let seed = Zeroizing::new(random_array::<32>(rng));
                let kp = Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).map_err(|_| CryptoError::KeyGeneration)?;
                Ok(Self::from_inner(alg, Inner::Ed25519(kp)))
            }
            SignatureAlgorithm::EcdsaP256Sha256 => {
                // A uniformly random scalar is below the group order with overwhelming
                // probability; draw again in the rare case it is not.
                for _ in 0..8 {
                    let scalar = Zeroizing::new(random_array::<32>(rng));
                    let Ok(agree) = aws_lc_rs::agreement::PrivateKey::from_private_key(
                        &aws_lc_rs::agreement::ECDH_P256,
                        scalar.as_ref(),
                    ) else {
                        continue;
                    };
                    let public = agree.compute_public_key().map_err(|_| CryptoError::KeyGeneration)?;
                    let kp = EcdsaKeyPair::from_private_key_and_public_key(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        scalar.as_ref(),
                        public.as_ref(),
                    )
                    .map_err(|_| CryptoError::KeyGeneration)?;
                    return Ok(Self::from_inner(alg, Inner::Ecdsa(kp)));
                }
                Err(CryptoError::KeyGeneration)
            }
        }
    }

    fn from_inner(alg: SignatureAlgorithm, inner: Inner) -> Self {
        let public = match &inner {
            Inner::Ed25519(k) => k.public_key().as_ref().to_vec(),
            Inner::Ecdsa(k) => k.public_key().as_ref().to_vec(),
        };
        Self { alg, inner: Arc::new(inner), public }
    }

    /// Reads a PKCS#8 (DER) private key of algorithm `alg` (v1 or v2 for Ed25519). A key of
    /// another algorithm, or bytes that do not parse, are [`CryptoError::InvalidKeyEncoding`].
    pub fn from_pkcs8_der(alg: SignatureAlgorithm, der: &[u8]) -> Result<Self, CryptoError> {
        let inner = match alg {
            SignatureAlgorithm::Ed25519 => Inner::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| CryptoError::InvalidKeyEncoding)?,
            ),
            SignatureAlgorithm::EcdsaP256Sha256 => Inner::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| CryptoError::InvalidKeyEncoding)?,
            ),
        };
        Ok(Self::from_inner(alg, inner))
    }

    /// The private key as PKCS#8 (DER), for key files: v2 (with the public key) for Ed25519, v1
    /// for P-256. Panics only if aws-lc cannot serialize a key it holds.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        // aws-lc-rs's `Document` zeroizes itself on drop.
        let doc = match &*self.inner {
            Inner::Ed25519(k) => k.to_pkcs8().expect("serializable"),
            Inner::Ecdsa(k) => k.to_pkcs8v1().expect("serializable"),
        };
        Zeroizing::new(doc.as_ref().to_vec())
    }

    /// The private key as a PEM `PRIVATE KEY` block (PKCS#8), for key files.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let der = self.to_pkcs8_der();
        let b64 = Zeroizing::new(STANDARD.encode(&*der));
        let mut pem = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    /// Reads a PEM `PRIVATE KEY` block (PKCS#8) of algorithm `alg`. Text around the block is
    /// ignored; input over 8 KiB is refused.
    pub fn from_pem(alg: SignatureAlgorithm, pem: &str) -> Result<Self, CryptoError> {
        if pem.len() > MAX_PEM {
            return Err(CryptoError::InvalidKeyEncoding);
        }
        let start = pem.find(PEM_BEGIN).ok_or(CryptoError::InvalidKeyEncoding)? + PEM_BEGIN.len();
        let len = pem[start..].find(PEM_END).ok_or(CryptoError::InvalidKeyEncoding)?;
        let body: Zeroizing<String> =
            Zeroizing::new(pem[start..start + len].chars().filter(|c| !c.is_ascii_whitespace()).collect());
        let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).map_err(|_| CryptoError::InvalidKeyEncoding)?);
        Self::from_pkcs8_der(alg, &der)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// The public key: Ed25519 raw 32 bytes, P-256 uncompressed SEC1 65 bytes.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Signs `message`. Ed25519 signatures are deterministic; ECDSA ones are fixed-length
    /// `r‖s` (64 bytes), randomized by aws-lc.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &*self.inner {
            Inner::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Inner::Ecdsa(k) => k
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CryptoError::Internal),
        }
    }
}

/// Verifies `signature` over `message` with a public key of `alg` (Ed25519 raw 32 bytes; P-256
/// uncompressed SEC1, signature fixed-length `r‖s`). Every failure is
/// [`CryptoError::InvalidSignature`].
pub fn verify(alg: SignatureAlgorithm, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    #[cfg(fuzzing)]
    if super::fuzzing::active() {
        return Ok(());
    }
    let verifier: &dyn signature::VerificationAlgorithm = match alg {
        SignatureAlgorithm::Ed25519 => &signature::ED25519,
        SignatureAlgorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
    };
    signature::UnparsedPublicKey::new(verifier, public_key)
        .verify(message, signature)
        .map_err(|_| CryptoError::InvalidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    const BOTH: [SignatureAlgorithm; 2] = [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256];

    #[test]
    fn sign_verify_and_tamper() {
        let mut rng = SeededRng::new([8; 32]);
        for alg in BOTH {
            let k = SigningKey::generate(alg, &mut rng).unwrap();
            assert_eq!(k.algorithm(), alg);
            let sig = k.sign(b"transcript").unwrap();
            assert_eq!(sig.len(), 64);
            verify(alg, k.public_key(), b"transcript", &sig).unwrap();
            assert_eq!(verify(alg, k.public_key(), b"transcripT", &sig), Err(CryptoError::InvalidSignature));
            for i in [0, 10, 63] {
                let mut bad = sig.clone();
                bad[i] ^= 1;
                assert_eq!(verify(alg, k.public_key(), b"transcript", &bad), Err(CryptoError::InvalidSignature));
            }
            assert!(verify(alg, k.public_key(), b"transcript", &sig[..63]).is_err());
            let other = SigningKey::generate(alg, &mut rng).unwrap();
            assert!(verify(alg, other.public_key(), b"transcript", &sig).is_err());
            assert!(verify(alg, &k.public_key()[1..], b"transcript", &sig).is_err());
        }
        let ed = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut rng).unwrap();
        let sig = ed.sign(b"m").unwrap();
        assert!(verify(SignatureAlgorithm::EcdsaP256Sha256, ed.public_key(), b"m", &sig).is_err());
    }

    #[test]
    fn public_key_formats() {
        let mut rng = SeededRng::new([8; 32]);
        let ed = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut rng).unwrap();
        assert_eq!(ed.public_key().len(), 32);
        let ec = SigningKey::generate(SignatureAlgorithm::EcdsaP256Sha256, &mut rng).unwrap();
        assert_eq!(ec.public_key().len(), 65);
        assert_eq!(ec.public_key()[0], 4, "uncompressed SEC1");
    }

    #[test]
    fn pkcs8_and_pem_round_trip() {
        let mut rng = SeededRng::new([8; 32]);
        for alg in BOTH {
            let k = SigningKey::generate(alg, &mut rng).unwrap();
            let again = SigningKey::from_pkcs8_der(alg, &k.to_pkcs8_der()).unwrap();
            assert_eq!(again.public_key(), k.public_key());
            verify(alg, k.public_key(), b"x", &again.sign(b"x").unwrap()).unwrap();
            let pem = k.to_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
            assert!(pem.lines().all(|l| l.len() <= 64));
            let framed = format!("key file\r\n{}\r\ntrailer", pem.replace('\n', "\r\n"));
            assert_eq!(SigningKey::from_pem(alg, &framed).unwrap().public_key(), k.public_key());
            let wrong = match alg {
                SignatureAlgorithm::Ed25519 => SignatureAlgorithm::EcdsaP256Sha256,
                SignatureAlgorithm::EcdsaP256Sha256 => SignatureAlgorithm::Ed25519,
            };
            assert_eq!(
                SigningKey::from_pkcs8_der(wrong, &k.to_pkcs8_der()).unwrap_err(),
                CryptoError::InvalidKeyEncoding
            );
            assert_eq!(SigningKey::from_pem(wrong, &pem).unwrap_err(), CryptoError::InvalidKeyEncoding);
        }
        assert!(SigningKey::from_pkcs8_der(SignatureAlgorithm::Ed25519, b"junk").is_err());
        assert!(SigningKey::from_pem(SignatureAlgorithm::Ed25519, "no block").is_err());
        assert!(
            SigningKey::from_pem(
                SignatureAlgorithm::Ed25519,
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----"
            )
            .is_err()
        );
        assert!(SigningKey::from_pem(SignatureAlgorithm::Ed25519, &" ".repeat(MAX_PEM + 1)).is_err());
    }

    #[test]
    fn generation_is_deterministic_under_a_seed() {
        for alg in BOTH {
            let a = SigningKey::generate(alg, &mut SeededRng::new([1; 32])).unwrap();
            let b = SigningKey::generate(alg, &mut SeededRng::new([1; 32])).unwrap();
            let c = SigningKey::generate(alg, &mut SeededRng::new([2; 32])).unwrap();
            assert_eq!(a.public_key(), b.public_key());
            assert_ne!(a.public_key(), c.public_key());
        }
        // Ed25519 signatures are reproducible too (test vectors rely on it).
        let a = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut SeededRng::new([1; 32])).unwrap();
        let b = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut SeededRng::new([1; 32])).unwrap();
        assert_eq!(a.sign(b"m").unwrap(), b.sign(b"m").unwrap());
    }

    #[test]
    fn debug_shows_public_key_only() {
        use base64::Engine as _;
        for alg in BOTH {
            let k = SigningKey::generate(alg, &mut SeededRng::new([13; 32])).unwrap();
            let private: [u8; 32] = random_array(&mut SeededRng::new([13; 32]));
            let debug = format!("{k:?} {k:#?}");
            let public_hex: String = k.public_key().iter().map(|b| format!("{b:02x}")).collect();
            assert!(debug.contains(&public_hex) && debug.contains(alg.name()) && debug.contains("<redacted>"));
            let private_hex: String = private.iter().map(|b| format!("{b:02x}")).collect();
            let der = k.to_pkcs8_der();
            for leak in [
                private_hex.clone(),
                private_hex.to_uppercase(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(private),
                base64::engine::general_purpose::STANDARD.encode(private),
                base64::engine::general_purpose::STANDARD.encode(&*der),
            ] {
                assert!(!debug.contains(&leak), "{debug}");
            }
        }
    }
}
