//! Per-SA ephemeral KEM keys: X25519 as a KEM, ML-KEM-768, and their hybrid.
//!
//! X25519 draws every secret from the injected [`Rng`] and so is deterministic under a seeded
//! one. aws-lc-rs exposes no seeded ML-KEM key generation or encapsulation: ML-KEM draws from
//! aws-lc's own DRBG, and the ML-KEM suites have no fixed test vectors.

use aws_lc_rs::{agreement, kem};
use zeroize::Zeroizing;

use super::{CryptoError, HashAlgorithm, KemAlgorithm, digest};
use crate::rng::{Rng, random_array};

const X25519_LEN: usize = 32;
const MLKEM_PK_LEN: usize = 1184;
const MLKEM_CT_LEN: usize = 1088;

/// A KEM shared secret (32 bytes).
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// Length of an encapsulation (public) key.
pub fn public_key_len(alg: KemAlgorithm) -> usize {
    match alg {
        KemAlgorithm::X25519 => X25519_LEN,
        KemAlgorithm::MlKem768 => MLKEM_PK_LEN,
        KemAlgorithm::X25519MlKem768 => X25519_LEN + MLKEM_PK_LEN,
    }
}

/// Length of a ciphertext.
pub fn ciphertext_len(alg: KemAlgorithm) -> usize {
    match alg {
        KemAlgorithm::X25519 => X25519_LEN,
        KemAlgorithm::MlKem768 => MLKEM_CT_LEN,
        KemAlgorithm::X25519MlKem768 => X25519_LEN + MLKEM_CT_LEN,
    }
}

struct X25519Key {
    private: agreement::PrivateKey,
    public: [u8; X25519_LEN],
}

impl X25519Key {
    fn generate(rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        let scalar = Zeroizing::new(random_array::<X25519_LEN>(rng));
        let private = agreement::PrivateKey::from_private_key(&agreement::X25519, scalar.as_ref())
            .map_err(|_| CryptoError::KeyGeneration)?;
        let public = private.compute_public_key().map_err(|_| CryptoError::KeyGeneration)?;
        let public = public.as_ref().try_into().map_err(|_| CryptoError::KeyGeneration)?;
        Ok(Self { private, public })
    }

    fn secret(
        &self,
        peer_public: &[u8],
        ciphertext: &[u8],
        recipient_public: &[u8],
    ) -> Result<SharedSecret, CryptoError> {
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer_public);
        agreement::agree(&self.private, peer, CryptoError::Decapsulation, |dh| {
            let d = digest(HashAlgorithm::Sha256, &[b"onem2m-sa/kem/x25519", dh, ciphertext, recipient_public]);
            Ok(SharedSecret(Zeroizing::new(d.as_ref().to_vec())))
        })
    }
}

fn x25519_encapsulate(peer_public: &[u8], rng: &mut dyn Rng) -> Result<(Vec<u8>, SharedSecret), CryptoError> {
    if peer_public.len() != X25519_LEN {
        return Err(CryptoError::InvalidPublicKey);
    }
    let eph = X25519Key::generate(rng)?;
    let ss = eph.secret(peer_public, &eph.public, peer_public).map_err(|_| CryptoError::InvalidPublicKey)?;
    Ok((eph.public.to_vec(), ss))
}

fn mlkem_encapsulate(peer_public: &[u8]) -> Result<(Vec<u8>, SharedSecret), CryptoError> {
    let ek = kem::EncapsulationKey::new(&kem::ML_KEM_768, peer_public).map_err(|_| CryptoError::InvalidPublicKey)?;
    let (ct, ss) = ek.encapsulate().map_err(|_| CryptoError::Internal)?;
    Ok((ct.as_ref().to_vec(), SharedSecret(Zeroizing::new(ss.as_ref().to_vec()))))
}

enum Inner {
    X25519(X25519Key),
    MlKem(kem::DecapsulationKey<kem::AlgorithmId>),
    Hybrid(X25519Key, kem::DecapsulationKey<kem::AlgorithmId>),
}

/// An ephemeral KEM private key, used for one establishment and then dropped.
pub struct KemDecapsulationKey {
    alg: KemAlgorithm,
    inner: Inner,
    public: Vec<u8>,
}

impl std::fmt::Debug for KemDecapsulationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KemDecapsulationKey({:?}, <redacted>)", self.alg)
    }
}

fn mlkem_generate() -> Result<(kem::DecapsulationKey<kem::AlgorithmId>, Vec<u8>), CryptoError> {
    let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).map_err(|_| CryptoError::KeyGeneration)?;
    let ek = dk.encapsulation_key().map_err(|_| CryptoError::KeyGeneration)?;
    let bytes = ek.key_bytes().map_err(|_| CryptoError::KeyGeneration)?.as_ref().to_vec();
    Ok((dk, bytes))
}

fn mlkem_decapsulate(dk: &kem::DecapsulationKey<kem::AlgorithmId>, ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    dk.decapsulate(kem::Ciphertext::from(ct)).map(|ss| ss.as_ref().to_vec()).map_err(|_| CryptoError::Decapsulation)
}

impl KemDecapsulationKey {
    /// A fresh key pair.
    pub fn generate(alg: KemAlgorithm, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        let (inner, public) = match alg {
            KemAlgorithm::X25519 => {
                let k = X25519Key::generate(rng)?;
                let public = k.public.to_vec();
                (Inner::X25519(k), public)
            }
            KemAlgorithm::MlKem768 => {
                let (dk, public) = mlkem_generate()?;
                (Inner::MlKem(dk), public)
            }
            KemAlgorithm::X25519MlKem768 => {
                let x = X25519Key::generate(rng)?;
                let (dk, mlkem_pk) = mlkem_generate()?;
                let public = [x.public.as_slice(), &mlkem_pk].concat();
                (Inner::Hybrid(x, dk), public)
            }
        };
        Ok(Self { alg, inner, public })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KemAlgorithm {
        self.alg
    }

    /// The encapsulation key sent to the peer.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Recovers the secret from a ciphertext. Every failure is the same error.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<SharedSecret, CryptoError> {
        if ciphertext.len() != ciphertext_len(self.alg) {
            return Err(CryptoError::Decapsulation);
        }
        match &self.inner {
            Inner::X25519(k) => k.secret(ciphertext, ciphertext, &self.public),
            Inner::MlKem(dk) => Ok(SharedSecret(Zeroizing::new(mlkem_decapsulate(dk, ciphertext)?))),
            Inner::Hybrid(x, dk) => {
                let (ct_x, ct_m) = ciphertext.split_at(X25519_LEN);
                let ss_x = x.secret(ct_x, ct_x, &x.public)?;
                let ss_m = Zeroizing::new(mlkem_decapsulate(dk, ct_m)?);
                Ok(hybrid_secret(&ss_m, &ss_x, ct_x, &x.public))
            }
        }
    }
}

fn hybrid_secret(ss_m: &[u8], ss_x: &SharedSecret, ct_x: &[u8], pk_x: &[u8]) -> SharedSecret {
    let d = digest(HashAlgorithm::Sha256, &[b"onem2m-sa/kem/x25519mlkem768", ss_m, ss_x.as_bytes(), ct_x, pk_x]);
    SharedSecret(Zeroizing::new(d.as_ref().to_vec()))
}

/// Encapsulates a fresh secret to `peer_public_key`: returns (ciphertext, secret).
pub fn encapsulate(
    alg: KemAlgorithm,
    peer_public_key: &[u8],
    rng: &mut dyn Rng,
) -> Result<(Vec<u8>, SharedSecret), CryptoError> {
    if peer_public_key.len() != public_key_len(alg) {
        return Err(CryptoError::InvalidPublicKey);
    }
    match alg {
        KemAlgorithm::X25519 => x25519_encapsulate(peer_public_key, rng),
        KemAlgorithm::MlKem768 => mlkem_encapsulate(peer_public_key),
        KemAlgorithm::X25519MlKem768 => {
            let (pk_x, pk_m) = peer_public_key.split_at(X25519_LEN);
            let (ct_x, ss_x) = x25519_encapsulate(pk_x, rng)?;
            let (ct_m, ss_m) = mlkem_encapsulate(pk_m)?;
            let ss = hybrid_secret(ss_m.as_bytes(), &ss_x, &ct_x, pk_x);
            Ok(([ct_x, ct_m].concat(), ss))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    const ALL: [KemAlgorithm; 3] = [KemAlgorithm::X25519, KemAlgorithm::MlKem768, KemAlgorithm::X25519MlKem768];

    #[test]
    fn encapsulation_agrees_and_tampering_changes_or_fails() {
        let mut rng = SeededRng::new([3; 32]);
        for alg in ALL {
            let dk = KemDecapsulationKey::generate(alg, &mut rng).unwrap();
            assert_eq!(dk.public_key().len(), public_key_len(alg));
            let (ct, ss) = encapsulate(alg, dk.public_key(), &mut rng).unwrap();
            assert_eq!(ct.len(), ciphertext_len(alg));
            assert_eq!(dk.decapsulate(&ct).unwrap().as_bytes(), ss.as_bytes(), "{alg:?}");
            let mut bad = ct.clone();
            bad[ct.len() - 1] ^= 1;
            if let Ok(other) = dk.decapsulate(&bad) {
                assert_ne!(other.as_bytes(), ss.as_bytes(), "{alg:?}: tampered ciphertext");
            }
            assert_eq!(dk.decapsulate(&ct[1..]).unwrap_err(), CryptoError::Decapsulation);
            assert_eq!(encapsulate(alg, &dk.public_key()[1..], &mut rng).unwrap_err(), CryptoError::InvalidPublicKey);
            assert!(!format!("{dk:?} {ss:?}").contains(&format!("{:?}", &ss.as_bytes()[..4])));
        }
    }

    #[test]
    fn x25519_is_deterministic_under_a_seed() {
        let run = || {
            let mut rng = SeededRng::new([9; 32]);
            let dk = KemDecapsulationKey::generate(KemAlgorithm::X25519, &mut rng).unwrap();
            let (ct, ss) = encapsulate(KemAlgorithm::X25519, dk.public_key(), &mut rng).unwrap();
            (dk.public_key().to_vec(), ct, ss.as_bytes().to_vec())
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn x25519_low_order_point_is_refused() {
        let mut rng = SeededRng::new([4; 32]);
        assert!(encapsulate(KemAlgorithm::X25519, &[0u8; 32], &mut rng).is_err());
    }
}
