//! Cryptography, all through aws-lc-rs: suites, per-SA KEMs, signatures, HKDF/HMAC, AEAD.

mod kdf;
mod kem;
mod sign;
mod suite;

pub use kdf::{Digest, Prk, ct_eq, digest, hkdf_extract, hmac, hmac_verify};
pub use kem::{KemDecapsulationKey, SharedSecret, ciphertext_len, encapsulate, public_key_len};
pub use sign::{SigningKey, verify};
pub use suite::{AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureAlgorithm, Suite, SuiteCode};

use aws_lc_rs::aead;
use zeroize::Zeroizing;

/// A cryptographic failure. It never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A public key of the wrong length or not on the curve.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A ciphertext of the wrong length.
    #[error("invalid ciphertext")]
    InvalidCiphertext,
    /// Decapsulation failed (every cause looks the same).
    #[error("decapsulation failed")]
    Decapsulation,
    /// A signature or MAC did not verify.
    #[error("signature or MAC did not verify")]
    InvalidSignature,
    /// A private key file that does not parse.
    #[error("invalid key encoding")]
    InvalidKeyEncoding,
    /// Key generation failed.
    #[error("key generation failed")]
    KeyGeneration,
    /// AEAD sealing or opening failed.
    #[error("AEAD failure")]
    Aead,
    /// An internal error of the crypto library.
    #[error("internal cryptographic error")]
    Internal,
}

fn aead_key(alg: AeadAlgorithm, key: &[u8]) -> Result<aead::LessSafeKey, CryptoError> {
    aead::UnboundKey::new(alg.aws_lc(), key).map(aead::LessSafeKey::new).map_err(|_| CryptoError::Aead)
}

/// Seals `plaintext`, returning ciphertext ‖ tag.
pub fn aead_seal(
    alg: AeadAlgorithm,
    key: &[u8],
    nonce: [u8; 12],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut buf = plaintext.to_vec();
    aead_key(alg, key)?
        .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Aead)?;
    Ok(buf)
}

/// Opens ciphertext ‖ tag.
pub fn aead_open(
    alg: AeadAlgorithm,
    key: &[u8],
    nonce: [u8; 12],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
    let len = aead_key(alg, key)?
        .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Aead)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aead_round_trip_and_tamper() {
        for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm] {
            let key = vec![7u8; alg.key_len()];
            let ct = aead_seal(alg, &key, [1; 12], b"aad", b"hello").unwrap();
            assert_eq!(ct.len(), 5 + alg.tag_len());
            assert_eq!(&aead_open(alg, &key, [1; 12], b"aad", &ct).unwrap()[..], b"hello");
            assert!(aead_open(alg, &key, [1; 12], b"aaD", &ct).is_err());
            assert!(aead_open(alg, &key, [2; 12], b"aad", &ct).is_err());
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert!(aead_open(alg, &key, [1; 12], b"aad", &bad).is_err());
        }
    }
}
