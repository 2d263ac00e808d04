//! Cryptography, all through aws-lc-rs: suites, per-SA KEMs, signatures, HKDF/HMAC, AEAD.

mod kdf;
mod kem;
mod sign;
mod suite;

pub use kdf::{Digest, Hasher, Prk, ct_eq, digest, hkdf_extract, hmac, hmac_verify};
pub use kem::{KemDecapsulationKey, SharedSecret, ciphertext_len, encapsulate, public_key_len};
pub use sign::{SigningKey, verify};
pub use suite::{AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureAlgorithm, Suite, SuiteCode};

use aws_lc_rs::aead;
use zeroize::Zeroizing;

/// **Fuzzing only**: a switch under which signature and MAC checks pass, so that a fuzzer feeding
/// arbitrary messages to the state machines reaches the states behind them (a test-only stand-in
/// for rustls' fuzzing provider).
///
/// It exists only in builds with `--cfg fuzzing`, which cargo-fuzz sets for its own builds; no
/// other build compiles it, and inside one it is off unless a fuzz target turns it on for the
/// duration of a closure, on its own thread.
#[cfg(fuzzing)]
pub mod fuzzing {
    use std::cell::Cell;

    thread_local! {
        static PERMISSIVE: Cell<bool> = const { Cell::new(false) };
    }

    /// Runs `f` with every signature and MAC check passing, on this thread.
    pub fn permissive<T>(f: impl FnOnce() -> T) -> T {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                PERMISSIVE.with(|p| p.set(self.0));
            }
        }
        let _reset = Reset(PERMISSIVE.with(|p| p.replace(true)));
        f()
    }

    pub(crate) fn active() -> bool {
        PERMISSIVE.with(Cell::get)
    }
}

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

/// Seals `plaintext`, returning ciphertext ‖ tag. For the small update/remove flows, not the hot
/// path (which seals in place). A key of the wrong length is [`CryptoError::Aead`].
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

/// Opens ciphertext ‖ tag. A wrong key, nonce, AAD or tag, a truncated input or a key of the
/// wrong length are all [`CryptoError::Aead`]. The plaintext is zeroized on drop.
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
            let mut other_key = key.clone();
            other_key[0] ^= 1;
            assert!(aead_open(alg, &other_key, [1; 12], b"aad", &ct).is_err());
            for i in [0, ct.len() - 1] {
                let mut bad = ct.clone();
                bad[i] ^= 1;
                assert_eq!(aead_open(alg, &key, [1; 12], b"aad", &bad).unwrap_err(), CryptoError::Aead);
            }
            assert!(aead_open(alg, &key, [1; 12], b"aad", &ct[..ct.len() - 1]).is_err());
            assert!(aead_open(alg, &key, [1; 12], b"aad", &ct[..alg.tag_len() - 1]).is_err());
            assert!(aead_open(alg, &key, [1; 12], b"aad", &[]).is_err());
            let empty = aead_seal(alg, &key, [3; 12], b"", b"").unwrap();
            assert_eq!(empty.len(), alg.tag_len());
            assert!(aead_open(alg, &key, [3; 12], b"", &empty).unwrap().is_empty());
            assert_eq!(aead_seal(alg, &key[1..], [1; 12], b"", b"x").unwrap_err(), CryptoError::Aead);
            assert_eq!(aead_open(alg, &key[1..], [1; 12], b"aad", &ct).unwrap_err(), CryptoError::Aead);
        }
    }

    /// AES-128-GCM, NIST GCM test case 3 (key feffe992…, IV cafebabefacedbaddecaf888).
    #[test]
    fn aes128gcm_known_answer() {
        let unhex = |s: &str| -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        };
        let key = unhex("feffe9928665731c6d6a8f9467308308");
        let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = unhex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
        ));
        let ct = aead_seal(AeadAlgorithm::Aes128Gcm, &key, nonce, b"", &pt).unwrap();
        assert_eq!(
            ct,
            unhex(concat!(
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
                "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
                "4d5c2af327cd64a62cf35abd2ba6fab4"
            ))
        );
    }
}
