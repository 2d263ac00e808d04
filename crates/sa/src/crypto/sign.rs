//! Long-term signing keys: Ed25519 (default) and ECDSA P-256.

use std::sync::Arc;

use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use super::{CryptoError, SignatureAlgorithm};
use crate::rng::{Rng, random_array};

enum Inner {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// A node's long-term signing key. Cheap to clone (shared).
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

    /// Reads a PKCS#8 (DER) private key.
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

    /// The private key as PKCS#8 (DER), for key files.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = match &*self.inner {
            Inner::Ed25519(k) => k.to_pkcs8().expect("serializable"),
            Inner::Ecdsa(k) => k.to_pkcs8v1().expect("serializable"),
        };
        Zeroizing::new(doc.as_ref().to_vec())
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// The public key: Ed25519 raw 32 bytes, P-256 uncompressed SEC1 65 bytes.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Signs `message`. Ed25519 signatures are deterministic; ECDSA ones are not.
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

/// Verifies `signature` over `message` with a public key of `alg`.
pub fn verify(alg: SignatureAlgorithm, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
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

    #[test]
    fn sign_verify_tamper_and_pkcs8_round_trip() {
        let mut rng = SeededRng::new([8; 32]);
        for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256] {
            let k = SigningKey::generate(alg, &mut rng).unwrap();
            let sig = k.sign(b"transcript").unwrap();
            verify(alg, k.public_key(), b"transcript", &sig).unwrap();
            assert!(verify(alg, k.public_key(), b"transcripT", &sig).is_err());
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(verify(alg, k.public_key(), b"transcript", &bad).is_err());
            let again = SigningKey::from_pkcs8_der(alg, &k.to_pkcs8_der()).unwrap();
            assert_eq!(again.public_key(), k.public_key());
            verify(alg, k.public_key(), b"x", &again.sign(b"x").unwrap()).unwrap();
            let debug = format!("{k:?}");
            assert!(debug.contains("redacted"));
        }
    }

    #[test]
    fn generation_is_deterministic_under_a_seed() {
        for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256] {
            let a = SigningKey::generate(alg, &mut SeededRng::new([1; 32])).unwrap();
            let b = SigningKey::generate(alg, &mut SeededRng::new([1; 32])).unwrap();
            assert_eq!(a.public_key(), b.public_key());
        }
    }
}
