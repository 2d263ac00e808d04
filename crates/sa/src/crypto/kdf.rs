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

impl Digest {
    /// A digest from its bytes (at most 48), e.g. read back from a store.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut d = [0u8; 48];
        d.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self { bytes: d, len: bytes.len() as u8 })
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
    let mut h = Hasher::new(alg);
    for d in data {
        h.update(d);
    }
    h.current()
}

/// A running hash: bytes go in as they come, and [`Hasher::current`] gives the hash of all of
/// them so far without ending it.
#[derive(Clone)]
pub struct Hasher {
    alg: HashAlgorithm,
    ctx: digest::Context,
}

impl Hasher {
    /// An empty hash of `alg`.
    pub fn new(alg: HashAlgorithm) -> Self {
        Self { alg, ctx: digest::Context::new(alg.digest_alg()) }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.alg
    }

    /// Appends `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// The hash of everything appended so far; more may be appended after.
    pub fn current(&self) -> Digest {
        let out = self.ctx.clone().finish();
        let mut bytes = [0u8; 48];
        bytes[..out.as_ref().len()].copy_from_slice(out.as_ref());
        Digest { bytes, len: out.as_ref().len() as u8 }
    }
}

/// An HKDF pseudorandom key. aws-lc-rs's `hkdf::Prk` zeroizes its key bytes on drop; `Debug` is
/// redacted.
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
    /// HKDF-Expand with the concatenation of `info`, filling `out`. More than 255 hash lengths of
    /// output is an error ([`CryptoError::Internal`]).
    pub fn expand(&self, info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        self.prk.expand(info, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| CryptoError::Internal)
    }
}

/// HMAC over the concatenation of `data`. The tag is returned as plain bytes: do not use it as a
/// key (derive keys with HKDF instead).
pub fn hmac(alg: HashAlgorithm, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(alg.hmac_alg(), key);
    let mut ctx = hmac::Context::with_key(&key);
    for d in data {
        ctx.update(d);
    }
    ctx.sign().as_ref().to_vec()
}

/// Checks an HMAC tag in constant time. A tag of the wrong length, or a wrong tag, is
/// [`CryptoError::InvalidSignature`].
pub fn hmac_verify(alg: HashAlgorithm, key: &[u8], data: &[&[u8]], tag: &[u8]) -> Result<(), CryptoError> {
    #[cfg(fuzzing)]
    if super::fuzzing::active() {
        return Ok(());
    }
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
    fn digest_of_the_concatenation() {
        let d = digest(HashAlgorithm::Sha256, &[b"a", b"", b"bc"]);
        assert_eq!(d.as_ref(), &unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")[..]);
        assert_eq!(d, digest(HashAlgorithm::Sha256, &[b"abc"]));
        let d = digest(HashAlgorithm::Sha384, &[b"ab", b"c"]);
        assert_eq!(
            d.as_ref(),
            &unhex(concat!(
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163",
                "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
            ))[..]
        );
        assert_ne!(d, digest(HashAlgorithm::Sha384, &[b"abd"]));
    }

    #[test]
    fn rfc5869_case_1() {
        let ikm = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        // Split inputs: extract and expand work on the concatenation.
        hkdf_extract(HashAlgorithm::Sha256, &salt, &[&ikm[..5], &ikm[5..]])
            .expand(&[&info[..3], &info[3..]], &mut okm)
            .unwrap();
        assert_eq!(
            okm.to_vec(),
            unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    #[test]
    fn expand_refuses_too_much_output() {
        let prk = hkdf_extract(HashAlgorithm::Sha256, b"salt", &[b"ikm"]);
        let mut ok = vec![0u8; 255 * 32];
        prk.expand(&[b"info"], &mut ok).unwrap();
        let mut too_long = vec![0u8; 255 * 32 + 1];
        assert_eq!(prk.expand(&[b"info"], &mut too_long), Err(CryptoError::Internal));
    }

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_known_answers() {
        let data: [&[u8]; 2] = [b"what do ya want ", b"for nothing?"];
        assert_eq!(
            hmac(HashAlgorithm::Sha256, b"Jefe", &data),
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            hmac(HashAlgorithm::Sha384, b"Jefe", &data),
            unhex(concat!(
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47",
                "e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"
            ))
        );
    }

    #[test]
    fn hmac_verify_rejects_a_flipped_bit() {
        let tag = hmac(HashAlgorithm::Sha384, b"key", &[b"a", b"b"]);
        assert!(hmac_verify(HashAlgorithm::Sha384, b"key", &[b"ab"], &tag).is_ok());
        let mut bad = tag.clone();
        bad[5] ^= 1;
        assert_eq!(hmac_verify(HashAlgorithm::Sha384, b"key", &[b"ab"], &bad), Err(CryptoError::InvalidSignature));
        assert!(hmac_verify(HashAlgorithm::Sha384, b"key", &[b"ab"], &tag[..47]).is_err());
        assert!(hmac_verify(HashAlgorithm::Sha384, b"kez", &[b"ab"], &tag).is_err());
        assert!(hmac_verify(HashAlgorithm::Sha256, b"key", &[b"ab"], &tag[..32]).is_err());
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn prk_debug_is_redacted() {
        use base64::Engine as _;
        let prk = hkdf_extract(HashAlgorithm::Sha256, b"salt", &[b"secret"]);
        // HKDF-Extract(salt, ikm) = HMAC(salt, ikm): the PRK bytes the Debug output must not show.
        let bytes = hmac(HashAlgorithm::Sha256, b"salt", &[b"secret"]);
        let debug = format!("{prk:?} {prk:#?}");
        assert!(debug.contains("<redacted>"));
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for leak in [hex.clone(), hex.to_uppercase(), base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)] {
            assert!(!debug.contains(&leak));
        }
    }
}
