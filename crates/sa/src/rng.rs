//! Injected randomness: the core never reads an OS random source by itself.
//!
//! Production passes [`SystemRng`]; tests and test vectors pass [`SeededRng`], an HMAC-DRBG
//! (NIST SP 800-90A, SHA-256) so every run draws the same values.

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
    /// A generator instantiated with `seed` as its entropy input.
    pub fn new(seed: [u8; 32]) -> Self {
        let mut rng = Self { k: [0; 32], v: [1; 32] };
        rng.update(&seed);
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

    #[test]
    fn system_differs() {
        let a: [u8; 32] = random_array(&mut SystemRng);
        let b: [u8; 32] = random_array(&mut SystemRng);
        assert_ne!(a, b);
    }
}
