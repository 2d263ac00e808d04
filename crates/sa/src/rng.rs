//! Injected randomness: the core never reads an OS random source by itself.
//!
//! Production passes [`SystemRng`]; tests and test vectors pass [`SeededRng`], an HMAC-DRBG
//! (NIST SP 800-90A, SHA-256) so every run draws the same values.
//!
//! There is no adapter to `aws_lc_rs::rand::SecureRandom`: that trait is sealed (only the
//! `dev-tests-only` feature unseals it), and every aws-lc-rs 1.19 function that takes one ignores
//! it anyway (`EphemeralPrivateKey::generate`, `Ed25519KeyPair::generate_pkcs8`,
//! `EcdsaKeyPair::generate_pkcs8` and `EcdsaKeyPair::sign` all bind it as `_rng`). Where a key must
//! follow our [`Rng`], its private bytes are drawn from it and handed to a `from_private_key` /
//! `from_seed` style constructor instead.

use aws_lc_rs::hmac;
use zeroize::Zeroize;

/// A source of random bytes.
pub trait Rng {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn fill(&mut self, dest: &mut [u8]) {
        (**self).fill(dest);
    }
}

/// The operating system's random source, through aws-lc.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRng;

impl Rng for SystemRng {
    fn fill(&mut self, dest: &mut [u8]) {
        aws_lc_rs::rand::fill(dest).expect("the system random source failed");
    }
}

/// A deterministic HMAC-DRBG (SHA-256), for tests and test vectors only.
#[derive(Clone)]
pub struct SeededRng {
    k: [u8; 32],
    v: [u8; 32],
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededRng(<redacted>)")
    }
}

impl Drop for SeededRng {
    fn drop(&mut self) {
        self.k.zeroize();
        self.v.zeroize();
    }
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().try_into().expect("32-byte tag")
}

impl SeededRng {
    /// A generator instantiated with `seed` as its entropy input (no nonce, no personalization).
    pub fn new(seed: [u8; 32]) -> Self {
        Self::instantiate(&seed)
    }

    /// SP 800-90A §10.1.2.3: `seed_material` = entropy input ‖ nonce ‖ personalization string.
    fn instantiate(seed_material: &[u8]) -> Self {
        let mut rng = Self { k: [0; 32], v: [1; 32] };
        rng.update(seed_material);
        rng
    }

    fn update(&mut self, data: &[u8]) {
        self.k = mac(&self.k, &[&self.v, &[0], data]);
        self.v = mac(&self.k, &[&self.v]);
        if !data.is_empty() {
            self.k = mac(&self.k, &[&self.v, &[1], data]);
            self.v = mac(&self.k, &[&self.v]);
        }
    }
}

impl Rng for SeededRng {
    /// SP 800-90A §10.1.2.5 Generate without additional input. No reseed counter: this generator
    /// only serves tests, which draw far fewer than 2^48 requests.
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            self.v = mac(&self.k, &[&self.v]);
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
    }
}

/// Draws an array of `N` random bytes.
pub fn random_array<const N: usize>(rng: &mut dyn Rng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_seed_sensitive() {
        let a: [u8; 48] = random_array(&mut SeededRng::new([1; 32]));
        let b: [u8; 48] = random_array(&mut SeededRng::new([1; 32]));
        let c: [u8; 48] = random_array(&mut SeededRng::new([2; 32]));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = SeededRng::new([1; 32]);
        let first: [u8; 16] = random_array(&mut r);
        let second: [u8; 16] = random_array(&mut r);
        assert_ne!(first, second);
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// NIST CAVP HMAC_DRBG.rsp, [SHA-256], no prediction resistance, no reseed, COUNT = 0:
    /// instantiate with entropy ‖ nonce, generate 1024 bits twice, check the second output.
    #[test]
    fn nist_cavp_hmac_drbg_sha256_count_0() {
        let entropy = unhex("ca851911349384bffe89de1cbdc46e6831e44d34a4fb935ee285dd14b71a7488");
        let nonce = unhex("659ba96c601dc69fc902940805ec0ca8");
        let mut rng = SeededRng::instantiate(&[entropy, nonce].concat());
        let mut out = [0u8; 128];
        rng.fill(&mut out);
        rng.fill(&mut out);
        assert_eq!(
            out.to_vec(),
            unhex(concat!(
                "e528e9abf2dece54d47c7e75e5fe302149f817ea9fb4bee6f4199697d04d5b89",
                "d54fbb978a15b5c443c9ec21036d2460b6f73ebad0dc2aba6e624abf07745bc1",
                "07694bb7547bb0995f70de25d6b29e2d3011bb19d27676c07162c8b5ccde0668",
                "961df86803482cb37ed6d5c0bb8d50cf1f50d476aa0458bdaba806f48be9dcb8",
            ))
        );
    }

    #[test]
    fn through_a_mutable_reference_and_debug_redacted() {
        let mut a = SeededRng::new([5; 32]);
        let mut b = SeededRng::new([5; 32]);
        let mut by_ref = &mut b;
        let x: [u8; 40] = random_array(&mut a);
        let y: [u8; 40] = random_array(&mut by_ref);
        assert_eq!(x, y);
        assert_eq!(format!("{a:?}"), "SeededRng(<redacted>)");
    }

    #[test]
    fn system_differs() {
        let a: [u8; 32] = random_array(&mut SystemRng);
        let b: [u8; 32] = random_array(&mut SystemRng);
        assert_ne!(a, b);
    }
}
