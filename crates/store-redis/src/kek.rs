//! Records at rest: sealed under the key-encryption key.
//!
//! Every value the store writes to Redis is `version (1) · generation (8, big-endian) · nonce
//! (12) · AES-256-GCM ciphertext and tag`, with the associated data binding it to the Redis key
//! it was written under, the format version and the generation. Someone with the Redis data but
//! not the KEK (a Redis operator) cannot read the keys, forge a record, edit one, move one to
//! another SA's key, or pass an old record off as a new one with a higher generation; an old
//! record put back under its own key is refused by a replica that saw a newer one.
//!
//! The SA records are few (one per establishment and update), so one AES-256-GCM key with
//! random nonces serves them far below the 2^32 bound. The record of executed requests writes
//! two values per request: [`Kek::seal_per_name`] seals each under a key derived for its Redis
//! key name (HKDF-SHA-256 of the KEK, the name as info), so each derived key seals a handful
//! of values at most, whatever the request rate.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use onem2m_sa_tower::store::StoreError;
use zeroize::Zeroizing;

/// Format version of a sealed record.
pub const SEALED_VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"onem2m-sa redis record\0";
const HEADER: usize = 1 + 8 + NONCE_LEN;

/// The key-encryption key: 32 bytes from the sidecar's config, never written to Redis.
pub struct Kek {
    key: LessSafeKey,
    /// Where the per-name keys come from.
    per_name: aws_lc_rs::hkdf::Prk,
    rng: SystemRandom,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

fn aad(name: &str, generation: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_LABEL.len() + name.len() + 10);
    a.extend_from_slice(AAD_LABEL);
    a.extend_from_slice(name.as_bytes());
    a.push(0);
    a.push(SEALED_VERSION);
    a.extend_from_slice(&generation.to_be_bytes());
    a
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != 32 {
            return Err(StoreError::Refused("the key-encryption key must be 32 bytes"));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| StoreError::Refused("key-encryption key"))?;
        let per_name =
            aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"onem2m-sa redis per-name keys").extract(bytes);
        Ok(Self { key: LessSafeKey::new(key), per_name, rng: SystemRandom::new() })
    }

    fn key_for(&self, name: &str) -> LessSafeKey {
        let info = [name.as_bytes()];
        let okm = self.per_name.expand(&info, &AES_256_GCM).expect("one AES-256 key is a valid length");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// [`Self::seal`] under the key derived for `name` (generation 0): for values written at
    /// the request rate.
    pub fn seal_per_name(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.key_for(name), &self.rng, name, 0, plaintext)
    }

    /// Opens what [`Self::seal_per_name`] sealed for `name`.
    pub fn open_per_name(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        open_with(&self.key_for(name), name, sealed).map(|(_, plain)| plain)
    }

    /// Seals `plaintext` for the Redis key `name` at `generation`. Nonces are random (96 bits):
    /// far below 2^32 records per KEK.
    pub fn seal(&self, name: &str, generation: u64, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.key, &self.rng, name, generation, plaintext)
    }

    /// Opens a value read from the Redis key `name`: its generation and plaintext, or
    /// [`StoreError::Refused`] when it was not sealed by a holder of this KEK for this key.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<(u64, Zeroizing<Vec<u8>>), StoreError> {
        open_with(&self.key, name, sealed)
    }
}

fn seal_with(key: &LessSafeKey, rng: &SystemRandom, name: &str, generation: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut n = [0u8; NONCE_LEN];
    rng.fill(&mut n).expect("system randomness");
    let mut out = Vec::with_capacity(HEADER + plaintext.len() + 16);
    out.push(SEALED_VERSION);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&n);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(n),
            Aad::from(aad(name, generation)),
            &mut out[HEADER..],
        )
        .expect("AES-GCM seals any length under the record limit");
    out.extend_from_slice(tag.as_ref());
    out
}

fn open_with(key: &LessSafeKey, name: &str, sealed: &[u8]) -> Result<(u64, Zeroizing<Vec<u8>>), StoreError> {
    if sealed.len() < HEADER + 16 || sealed[0] != SEALED_VERSION {
        return Err(StoreError::Refused("not a sealed record"));
    }
    let generation = u64::from_be_bytes(sealed[1..9].try_into().expect("8 bytes"));
    let n: [u8; NONCE_LEN] = sealed[9..HEADER].try_into().expect("12 bytes");
    let mut body = Zeroizing::new(sealed[HEADER..].to_vec());
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(aad(name, generation)), &mut body)
        .map_err(|_| StoreError::Refused("record does not authenticate under the key-encryption key"))?
        .len();
    body.truncate(len);
    Ok((generation, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_open_only_under_their_own_name_and_unaltered() {
        let kek = Kek::new(&[7; 32]).unwrap();
        let sealed = kek.seal("p:sa:01", 5, b"secret keys");
        assert_eq!(&kek.open("p:sa:01", &sealed).unwrap().1[..], b"secret keys");
        assert_eq!(kek.open("p:sa:01", &sealed).unwrap().0, 5);
        // Moved to another SA's key.
        assert!(kek.open("p:sa:02", &sealed).is_err());
        // Any byte changed, the generation included.
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(kek.open("p:sa:01", &t).is_err(), "byte {i} altered and accepted");
        }
        // Another KEK.
        assert!(Kek::new(&[8; 32]).unwrap().open("p:sa:01", &sealed).is_err());
        assert!(Kek::new(&[1; 16]).is_err());
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }

    #[test]
    fn per_name_values_open_only_under_their_own_name_and_not_as_records() {
        let kek = Kek::new(&[7; 32]).unwrap();
        let sealed = kek.seal_per_name("p:exe:01", b"answer");
        assert_eq!(&kek.open_per_name("p:exe:01", &sealed).unwrap()[..], b"answer");
        assert!(kek.open_per_name("p:exe:02", &sealed).is_err(), "moved to another entry");
        assert!(kek.open("p:exe:01", &sealed).is_err(), "a per-name value is not a record");
        assert!(kek.open_per_name("p:sa:01", &kek.seal("p:sa:01", 0, b"keys")).is_err(), "nor the reverse");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(kek.open_per_name("p:exe:01", &t).is_err(), "byte {i} altered and accepted");
        }
        assert!(Kek::new(&[8; 32]).unwrap().open_per_name("p:exe:01", &sealed).is_err());
    }
}
