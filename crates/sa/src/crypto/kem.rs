//! Per-SA ephemeral KEM keys: X25519 as a KEM, ML-KEM-768, and their hybrid.
//!
//! X25519 draws every secret from the injected [`Rng`] and so is deterministic under a seeded
//! one. ML-KEM is not: aws-lc-rs 1.19 has no seeded ML-KEM key generation or encapsulation in its
//! safe API (`kem::DecapsulationKey::generate` and `EncapsulationKey::encapsulate` take no RNG,
//! and `DecapsulationKey::new` wants the 2400-byte expanded key, not the 64-byte FIPS 203 seed).
//! aws-lc-sys does export `EVP_PKEY_keygen_deterministic` / `EVP_PKEY_encapsulate_deterministic`,
//! but only through `unsafe` FFI, which this crate forbids. ML-KEM therefore draws from aws-lc's
//! own DRBG and the ML-KEM suites have no fixed test vectors.
//!
//! Every decapsulation failure, whatever its cause (length, low-order X25519 point), is
//! [`CryptoError::Decapsulation`]; a modified ML-KEM ciphertext decapsulates to an unrelated secret
//! (implicit rejection), which the key confirmation then refuses.

use aws_lc_rs::{agreement, kem};
use zeroize::Zeroizing;

use super::{CryptoError, HashAlgorithm, KemAlgorithm, digest};
use crate::rng::{Rng, random_array};

const X25519_LEN: usize = 32;
const MLKEM_PK_LEN: usize = 1184;
const MLKEM_CT_LEN: usize = 1088;

/// A KEM shared secret (32 bytes for every KEM here). Zeroized on drop; `Debug` is redacted.
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

/// An ephemeral KEM private key, used for one establishment and then dropped. The private parts
/// live inside aws-lc, which zeroizes them when they are freed; `Debug` shows only the algorithm.
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

fn mlkem_decapsulate(
    dk: &kem::DecapsulationKey<kem::AlgorithmId>,
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    // aws-lc's `SharedSecret` zeroizes itself on drop; our copy is zeroizing too.
    dk.decapsulate(kem::Ciphertext::from(ct))
        .map(|ss| Zeroizing::new(ss.as_ref().to_vec()))
        .map_err(|_| CryptoError::Decapsulation)
}

impl KemDecapsulationKey {
    /// A fresh key pair. The X25519 scalar comes from `rng`; the ML-KEM key from aws-lc's DRBG.
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
            Inner::MlKem(dk) => Ok(SharedSecret(mlkem_decapsulate(dk, ciphertext)?)),
            Inner::Hybrid(x, dk) => {
                let (ct_x, ct_m) = ciphertext.split_at(X25519_LEN);
                let ss_x = x.secret(ct_x, ct_x, &x.public)?;
                let ss_m = mlkem_decapsulate(dk, ct_m)?;
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
///
/// The X25519 ephemeral scalar comes from `rng`; ML-KEM encapsulation draws from aws-lc's DRBG.
/// A key of the wrong length, an ML-KEM key that fails the FIPS 203 modulus check or a low-order
/// X25519 point is [`CryptoError::InvalidPublicKey`].
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
    use base64::Engine as _;

    use super::*;
    use crate::rng::SeededRng;

    const ALL: [KemAlgorithm; 3] = [KemAlgorithm::X25519, KemAlgorithm::MlKem768, KemAlgorithm::X25519MlKem768];

    fn spellings(secret: &[u8]) -> [String; 4] {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        [
            hex.clone(),
            hex.to_uppercase(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
            format!("{:?}", &secret[..8]).trim_end_matches(']').to_owned(),
        ]
    }

    #[test]
    fn encapsulation_agrees() {
        let mut rng = SeededRng::new([3; 32]);
        for alg in ALL {
            let dk = KemDecapsulationKey::generate(alg, &mut rng).unwrap();
            assert_eq!(dk.algorithm(), alg);
            assert_eq!(dk.public_key().len(), public_key_len(alg));
            let (ct, ss) = encapsulate(alg, dk.public_key(), &mut rng).unwrap();
            assert_eq!(ct.len(), ciphertext_len(alg));
            assert_eq!(ss.as_bytes().len(), 32);
            assert_eq!(dk.decapsulate(&ct).unwrap().as_bytes(), ss.as_bytes(), "{alg:?}");
            let (ct2, ss2) = encapsulate(alg, dk.public_key(), &mut rng).unwrap();
            assert_ne!(ct, ct2, "{alg:?}: fresh randomness per encapsulation");
            assert_ne!(ss.as_bytes(), ss2.as_bytes());
        }
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        let mut rng = SeededRng::new([3; 32]);
        for alg in ALL {
            let dk = KemDecapsulationKey::generate(alg, &mut rng).unwrap();
            let (ct, _) = encapsulate(alg, dk.public_key(), &mut rng).unwrap();
            let pk = dk.public_key();
            for bad_pk in [&pk[1..], &[pk, &[0][..]].concat()[..], &[][..]] {
                assert_eq!(encapsulate(alg, bad_pk, &mut rng).unwrap_err(), CryptoError::InvalidPublicKey, "{alg:?}");
            }
            for bad_ct in [&ct[1..], &[&ct[..], &[0][..]].concat()[..], &[][..]] {
                assert_eq!(dk.decapsulate(bad_ct).unwrap_err(), CryptoError::Decapsulation, "{alg:?}");
            }
        }
        // The other algorithm's key is refused by length, and so is its ciphertext.
        let x = KemDecapsulationKey::generate(KemAlgorithm::X25519, &mut rng).unwrap();
        assert!(encapsulate(KemAlgorithm::MlKem768, x.public_key(), &mut rng).is_err());
        let m = KemDecapsulationKey::generate(KemAlgorithm::MlKem768, &mut rng).unwrap();
        let (ct_m, _) = encapsulate(KemAlgorithm::MlKem768, m.public_key(), &mut rng).unwrap();
        assert_eq!(x.decapsulate(&ct_m).unwrap_err(), CryptoError::Decapsulation);
    }

    #[test]
    fn modified_ciphertext_changes_the_secret_or_fails() {
        let mut rng = SeededRng::new([7; 32]);
        for alg in ALL {
            let dk = KemDecapsulationKey::generate(alg, &mut rng).unwrap();
            let (ct, ss) = encapsulate(alg, dk.public_key(), &mut rng).unwrap();
            // First byte, last byte, and (for the hybrid) the first ML-KEM byte.
            for i in [0, ct.len() - 1, X25519_LEN.min(ct.len() - 1)] {
                let mut bad = ct.clone();
                bad[i] ^= 0x40;
                match dk.decapsulate(&bad) {
                    Ok(other) => assert_ne!(other.as_bytes(), ss.as_bytes(), "{alg:?} byte {i}"),
                    Err(e) => assert_eq!(e, CryptoError::Decapsulation),
                }
            }
        }
    }

    #[test]
    fn x25519_is_deterministic_under_a_seed() {
        let run = |seed| {
            let mut rng = SeededRng::new(seed);
            let dk = KemDecapsulationKey::generate(KemAlgorithm::X25519, &mut rng).unwrap();
            let (ct, ss) = encapsulate(KemAlgorithm::X25519, dk.public_key(), &mut rng).unwrap();
            (dk.public_key().to_vec(), ct, ss.as_bytes().to_vec())
        };
        assert_eq!(run([9; 32]), run([9; 32]));
        assert_ne!(run([9; 32]), run([10; 32]));
    }

    #[test]
    fn x25519_secret_follows_the_documented_formula() {
        let mut rng = SeededRng::new([11; 32]);
        let dk = KemDecapsulationKey::generate(KemAlgorithm::X25519, &mut rng).unwrap();
        let mut replay = SeededRng::new([11; 32]);
        let _recipient_scalar: [u8; 32] = random_array(&mut replay);
        let eph_scalar: [u8; 32] = random_array(&mut replay);
        let (ct, ss) = encapsulate(KemAlgorithm::X25519, dk.public_key(), &mut rng).unwrap();
        let eph = agreement::PrivateKey::from_private_key(&agreement::X25519, &eph_scalar).unwrap();
        assert_eq!(eph.compute_public_key().unwrap().as_ref(), &ct[..]);
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, dk.public_key());
        let dh = agreement::agree(&eph, peer, (), |dh| Ok(dh.to_vec())).unwrap();
        let expected = digest(HashAlgorithm::Sha256, &[b"onem2m-sa/kem/x25519", &dh, &ct, dk.public_key()]);
        assert_eq!(ss.as_bytes(), expected.as_ref());
    }

    #[test]
    fn x25519_low_order_points_are_refused() {
        let mut rng = SeededRng::new([4; 32]);
        let mut one = [0u8; 32];
        one[0] = 1;
        let dk = KemDecapsulationKey::generate(KemAlgorithm::X25519MlKem768, &mut rng).unwrap();
        for point in [[0u8; 32], one] {
            assert_eq!(encapsulate(KemAlgorithm::X25519, &point, &mut rng).unwrap_err(), CryptoError::InvalidPublicKey);
            let x = KemDecapsulationKey::generate(KemAlgorithm::X25519, &mut rng).unwrap();
            assert_eq!(x.decapsulate(&point).unwrap_err(), CryptoError::Decapsulation);
            // In the hybrid, a low-order X25519 half fails the same way.
            let (mut ct, _) = encapsulate(KemAlgorithm::X25519MlKem768, dk.public_key(), &mut rng).unwrap();
            ct[..X25519_LEN].copy_from_slice(&point);
            assert_eq!(dk.decapsulate(&ct).unwrap_err(), CryptoError::Decapsulation);
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let mut rng = SeededRng::new([12; 32]);
        let mut replay = SeededRng::new([12; 32]);
        let scalar: [u8; 32] = random_array(&mut replay);
        let dk = KemDecapsulationKey::generate(KemAlgorithm::X25519, &mut rng).unwrap();
        let (_, ss) = encapsulate(KemAlgorithm::X25519, dk.public_key(), &mut rng).unwrap();
        let debug = format!("{dk:?} {ss:?} {dk:#?} {ss:#?}");
        assert!(debug.contains("<redacted>"));
        for s in spellings(&scalar).iter().chain(spellings(ss.as_bytes()).iter()) {
            assert!(!debug.contains(s.as_str()), "{debug} leaks {s}");
        }
    }
}
