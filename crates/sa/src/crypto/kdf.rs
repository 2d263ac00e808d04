//! Hashes, HKDF, HMAC and constant-time comparison.

use aws_lc_rs::{digest, hkdf, hmac};
use zeroize::Zeroizing;

use super::{CryptoError, HashAlgorithm};

/// A hash output (up to 48 bytes). Public values only: compared in variable time.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    bytes: [u8; 48],
    len: u8,
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest(")?;
        for b in self.as_ref() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The hash of the concatenation of `data`.
pub fn digest(alg: HashAlgorithm, data: &[&[u8]]) -> Digest {
    let mut ctx = digest::Context::new(alg.digest_alg());
    for d in data {
        ctx.update(d);
    }
    let out = ctx.finish();
    let mut bytes = [0u8; 48];
    bytes[..out.as_ref().len()].copy_from_slice(out.as_ref());
    Digest { bytes, len: out.as_ref().len() as u8 }
}

/// An HKDF pseudorandom key.
pub struct Prk {
    prk: hkdf::Prk,
}

impl std::fmt::Debug for Prk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prk(<redacted>)")
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Extract over the concatenation of `ikm`.
pub fn hkdf_extract(alg: HashAlgorithm, salt: &[u8], ikm: &[&[u8]]) -> Prk {
    let joined = Zeroizing::new(ikm.concat());
    Prk { prk: hkdf::Salt::new(alg.hkdf_alg(), salt).extract(&joined) }
}

impl Prk {
    /// HKDF-Expand with the concatenation of `info`, filling `out`.
    pub fn expand(&self, info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        self.prk.expand(info, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| CryptoError::Internal)
    }
}

/// HMAC over the concatenation of `data`.
pub fn hmac(alg: HashAlgorithm, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(alg.hmac_alg(), key);
    let mut ctx = hmac::Context::with_key(&key);
    for d in data {
        ctx.update(d);
    }
    ctx.sign().as_ref().to_vec()
}

/// Checks an HMAC tag in constant time.
pub fn hmac_verify(alg: HashAlgorithm, key: &[u8], data: &[&[u8]], tag: &[u8]) -> Result<(), CryptoError> {
    let expected = hmac(alg, key, data);
    if ct_eq(&expected, tag) { Ok(()) } else { Err(CryptoError::InvalidSignature) }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn rfc5869_case_1() {
        let ikm = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf_extract(HashAlgorithm::Sha256, &salt, &[&ikm]).expand(&[&info], &mut okm).unwrap();
        assert_eq!(
            okm.to_vec(),
            unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    #[test]
    fn hmac_verify_rejects_a_flipped_bit() {
        let tag = hmac(HashAlgorithm::Sha384, b"key", &[b"a", b"b"]);
        assert!(hmac_verify(HashAlgorithm::Sha384, b"key", &[b"ab"], &tag).is_ok());
        let mut bad = tag.clone();
        bad[5] ^= 1;
        assert!(hmac_verify(HashAlgorithm::Sha384, b"key", &[b"ab"], &bad).is_err());
        assert!(hmac_verify(HashAlgorithm::Sha384, b"key", &[b"ab"], &tag[..47]).is_err());
    }

    #[test]
    fn prk_debug_is_redacted() {
        let prk = hkdf_extract(HashAlgorithm::Sha256, b"", &[b"secret"]);
        assert_eq!(format!("{prk:?}"), "Prk(<redacted>)");
    }
}
