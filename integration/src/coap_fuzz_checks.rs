//! The checks behind the CoAP fuzz targets (`fuzz/fuzz_targets/coap_*.rs`), shared with the
//! corpus replay test (`tests/coap_fuzz_corpus.rs`).
//!
//! * [`coap_decode`]: a datagram through the strict parser and the TS-0008 mapping, both ways.
//! * [`coap_reassembly`]: a sequence of block-wise operations against the reassembly store.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use onem2m_primitive::Operation;
use onem2m_sa_coap::block::{BlockLimits, BlockValue, Blocks, Offer};
use onem2m_sa_coap::message::parse;
use onem2m_sa_coap::{
    Encoding, Limits, MediaType, is_bare_compact_request, is_bare_compact_response, packet_to_primitive,
    packet_to_response, primitive_to_packet, response_to_packet,
};

/// A datagram a peer could send: the strict parser never panics and what it accepts re-encodes
/// to the same bytes; a request that maps to a primitive maps back, in JSON and in CBOR, to a
/// message that maps to the same primitive; likewise for a response.
pub fn coap_decode(data: &[u8]) {
    let Ok(packet) = parse(data) else { return };
    assert_eq!(packet.to_bytes_unlimited().expect("a parsed message re-encodes"), data, "not canonical");
    let small = Limits { max_payload_bytes: 64, max_depth: 4 };
    let code = u8::from(packet.header.code);
    if code >> 5 == 0 {
        let _ = packet_to_primitive(&packet, &small);
        let Ok(req) = packet_to_primitive(&packet, &Limits::default()) else { return };
        for media in [MediaType::Json, MediaType::Cbor] {
            let Ok(mut again) = primitive_to_packet(&req, &Encoding { media, ..Encoding::default() }) else {
                continue;
            };
            // The messaging layer gives a message its token (a bare compact request's `rqi`).
            again.set_token(packet.get_token().to_vec());
            let back = packet_to_primitive(&again, &Limits::default()).expect("a built request maps back");
            // A bare compact request does not carry the outer `to`, `fr`, `rqi` and `rvi`: it
            // comes back addressed to nobody, with the token as `rqi`.
            let mut expected = req.clone();
            if expected.pc.as_ref().is_some_and(|pc| is_bare_compact_request(&req, pc)) {
                let token: String = packet.get_token().iter().map(|b| format!("{b:02x}")).collect();
                (expected.to, expected.fr, expected.rqi, expected.rvi) =
                    (String::new(), None, format!("coap-{token}"), None);
            }
            assert_eq!(back, expected, "request changed in a round trip ({media:?})");
        }
    } else if code >> 5 >= 2 {
        let _ = packet_to_response(&packet, &small);
        let Ok(rsp) = packet_to_response(&packet, &Limits::default()) else { return };
        for (op, media) in [(Operation::Retrieve, MediaType::Json), (Operation::Create, MediaType::Cbor)] {
            let Ok(again) = response_to_packet(&rsp, op, media) else { continue };
            let back = packet_to_response(&again, &Limits::default()).expect("a built response maps back");
            // A bare compact answer does not carry `rqi` and `rvi` (the client knows its request).
            let mut expected = rsp.clone();
            if expected.pc.as_ref().is_some_and(|pc| is_bare_compact_response(&rsp, pc)) {
                (expected.rqi, expected.rvi) = (String::new(), None);
            }
            assert_eq!(back, expected, "response changed in a round trip ({media:?})");
        }
    }
}

/// One operation on the block store.
#[derive(Debug, Clone, Arbitrary)]
pub enum BlockOp {
    /// A Block1 block from peer `peer % 3` for request key `key % 3`.
    Offer {
        /// Peer selector.
        peer: u8,
        /// Key selector.
        key: u8,
        /// Block number (small, to hit continuations).
        num: u8,
        /// More flag.
        more: bool,
        /// Size exponent selector (`% 3`: 16, 32 or 64 bytes).
        szx: u8,
        /// Payload length (`% 80`).
        len: u8,
    },
    /// Stores an answer of `len * 4` bytes for Block2.
    Store {
        /// Peer selector.
        peer: u8,
        /// Key selector.
        key: u8,
        /// Length selector.
        len: u8,
    },
    /// Asks for block `num` of a stored answer.
    Block {
        /// Peer selector.
        peer: u8,
        /// Key selector.
        key: u8,
        /// Block number.
        num: u8,
        /// Size exponent selector.
        szx: u8,
    },
    /// Advances the clock by `ms * 16` milliseconds.
    Advance {
        /// Milliseconds / 16.
        ms: u8,
    },
}

/// The byte at `offset` of every payload the check sends: a complete payload that has every
/// byte in place proves the blocks were joined in order, without gaps or repeats.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// A sequence of block operations (from `arbitrary`) against [`Blocks`] with small caps:
/// never a panic; per-peer and total bytes within their caps and consistent; every complete
/// payload is exactly the bytes sent, in order; every served block is the stored bytes at its
/// offset; after the timeout everything is released.
pub fn coap_reassembly(data: &[u8]) {
    let Ok(ops) = Vec::<BlockOp>::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let limits = BlockLimits {
        max_body_bytes: 600,
        max_peer_bytes: 400,
        max_total_bytes: 700,
        max_transfers: 6,
        max_peer_transfers: 4,
        timeout: Duration::from_millis(1000),
    };
    let mut blocks = Blocks::new(limits);
    let start = Instant::now();
    let mut now = start;
    let peer = |p: u8| SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(p % 3)));
    let key = |k: u8| vec![k % 3];
    for op in ops.iter().take(256) {
        match *op {
            BlockOp::Offer { peer: p, key: k, num, more, szx, len } => {
                let block = BlockValue { num: u32::from(num % 16), more, szx: szx % 3 };
                let payload: Vec<u8> = (0..usize::from(len % 80)).map(|j| pattern(block.offset() + j)).collect();
                if let Ok(Offer::Complete(all)) = blocks.offer(peer(p), key(k), block, &payload, now) {
                    assert!(all.len() <= limits.max_body_bytes.max(block.size()), "complete payload over the cap");
                    assert!(all.iter().enumerate().all(|(i, &b)| b == pattern(i)), "blocks joined out of order");
                }
            }
            BlockOp::Store { peer: p, key: k, len } => {
                let payload: Vec<u8> = (0..usize::from(len) * 4).map(pattern).collect();
                blocks.store(peer(p), key(k), vec![0xab], payload, now);
            }
            BlockOp::Block { peer: p, key: k, num, szx } => {
                let block = BlockValue { num: u32::from(num % 64), more: false, szx: szx % 3 };
                if let Some((head, chunk, more, total)) = blocks.block(peer(p), key(k), block, now) {
                    assert_eq!(head, [0xab]);
                    assert!(chunk.len() <= block.size() && block.offset() + chunk.len() <= total);
                    assert_eq!(more, block.offset() + chunk.len() < total);
                    assert!(chunk.iter().enumerate().all(|(j, &b)| b == pattern(block.offset() + j)));
                }
            }
            BlockOp::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms) * 16);
                blocks.expire(now);
            }
        }
        let per_peer: usize = (0..3).map(|p| blocks.peer_bytes(peer(p))).sum();
        assert_eq!(per_peer, blocks.total_bytes(), "per-peer bytes do not add up");
        assert!(blocks.total_bytes() <= limits.max_total_bytes, "total cap exceeded");
        assert!((0..3).all(|p| blocks.peer_bytes(peer(p)) <= limits.max_peer_bytes), "peer cap exceeded");
        assert!(blocks.transfers() <= limits.max_transfers, "too many transfers");
        assert!((0..3).all(|p| blocks.peer_transfers(peer(p)) <= limits.max_peer_transfers), "peer transfers");
    }
    blocks.expire(now + limits.timeout + Duration::from_millis(1));
    assert_eq!((blocks.total_bytes(), blocks.transfers()), (0, 0), "expired transfers still held");
}
