//! RFC 7252 messaging shared by the server and the client: strict datagram parsing,
//! transmission parameters, message IDs, tokens, and the request key used to match blocks.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use coap_lite::{MessageType, Packet};

use crate::options::rfc;

/// CoAP transmission parameters (RFC 7252 §4.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transmission {
    /// ACK_TIMEOUT: the first retransmission timeout is drawn from
    /// `[ack_timeout, ack_timeout * ack_random_factor]`, then doubles (exponential back-off).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR (at least 1.0).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT.
    pub max_retransmit: u32,
}

impl Default for Transmission {
    fn default() -> Self {
        Self { ack_timeout: Duration::from_secs(2), ack_random_factor: 1.5, max_retransmit: 4 }
    }
}

impl Transmission {
    /// The initial retransmission timeout for a uniform draw `unit` in `[0, 1)`.
    pub fn initial_timeout(&self, unit: f64) -> Duration {
        let factor = 1.0 + (self.ack_random_factor.max(1.0) - 1.0) * unit.clamp(0.0, 1.0);
        self.ack_timeout.mul_f64(factor)
    }

    /// EXCHANGE_LIFETIME (RFC 7252 §4.8.2) for these parameters, with MAX_LATENCY 100 s and
    /// PROCESSING_DELAY = ACK_TIMEOUT.
    pub fn exchange_lifetime(&self) -> Duration {
        let span =
            self.ack_timeout.mul_f64(((1u64 << self.max_retransmit) - 1) as f64 * self.ack_random_factor.max(1.0));
        span + Duration::from_secs(200) + self.ack_timeout
    }
}

/// A small PRNG (xorshift64*) for message IDs, tokens and retransmission jitter; seeded from the
/// OS's hash keys unless a seed is given (tests).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish()
        });
        Self(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Why a datagram is not a CoAP message: what a RST can be built from, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// The message ID, when the 4-byte header is there and says version 1.
    pub message_id: Option<u16>,
    /// Whether the header says Confirmable (a RST is due, RFC 7252 §4.2).
    pub confirmable: bool,
}

/// Parses a datagram strictly (RFC 7252 §3): version 1, token length ≤ 8, options well-formed,
/// no payload marker without payload, an Empty message (code 0.00) of exactly 4 bytes.
pub fn parse(datagram: &[u8]) -> Result<Packet, Malformed> {
    let header_ok = datagram.len() >= 4 && datagram[0] >> 6 == 1;
    let malformed = Malformed {
        message_id: header_ok.then(|| u16::from_be_bytes([datagram[2], datagram[3]])),
        confirmable: header_ok && (datagram[0] >> 4) & 0x3 == 0,
    };
    let packet = Packet::from_bytes(datagram).map_err(|_| malformed)?;
    if !header_ok {
        return Err(malformed);
    }
    if datagram[1] == 0 && datagram.len() != 4 {
        return Err(malformed);
    }
    // coap-lite accepts a payload marker followed by nothing; re-encoding gives the canonical
    // length, which differs exactly then.
    match packet.to_bytes_unlimited() {
        Ok(bytes) if bytes.len() == datagram.len() => Ok(packet),
        _ => Err(malformed),
    }
}

/// An Empty message of `kind` (ACK or RST) for `message_id`.
pub fn empty(kind: MessageType, message_id: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(kind);
    // `Packet::new()` says 0.01 (GET); an Empty message is 0.00.
    p.header.code = coap_lite::MessageClass::Empty;
    p.header.message_id = message_id;
    p.to_bytes_unlimited().unwrap_or_default()
}

/// The key that matches the blocks of one request (RFC 7959 §2.5): the code and every option
/// but Block1, Block2, Size1, Size2, Observe and No-Response.
pub fn request_key(packet: &Packet) -> Vec<u8> {
    let mut key = vec![u8::from(packet.header.code)];
    for (&number, values) in packet.options() {
        if matches!(number, rfc::BLOCK1 | rfc::BLOCK2 | rfc::SIZE1 | rfc::SIZE2 | rfc::OBSERVE | rfc::NO_RESPONSE) {
            continue;
        }
        for value in values {
            key.extend_from_slice(&number.to_be_bytes());
            key.extend_from_slice(&(value.len() as u16).to_be_bytes());
            key.extend_from_slice(value);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7252_defaults() {
        let t = Transmission::default();
        assert_eq!(t.exchange_lifetime(), Duration::from_secs(247));
        assert_eq!(t.initial_timeout(0.0), Duration::from_secs(2));
        assert_eq!(t.initial_timeout(0.5), Duration::from_millis(2500));
        assert!(t.initial_timeout(0.999_999) < Duration::from_secs(3));
        let mut rng = Rng::new(Some(5));
        let draws: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|&u| u < 0.1) && draws.iter().any(|&u| u > 0.9));
        let mut again = Rng::new(Some(5));
        assert_eq!(again.unit(), draws[0], "a seed makes the draws reproducible");
    }
}
