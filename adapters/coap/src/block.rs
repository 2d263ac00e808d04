//! Block-wise transfer (RFC 7959), sans I/O: the Block1/Block2 option value, the reassembly of
//! Block1 request payloads under memory caps per peer and in total, and the store of large
//! response payloads served block by block. Time is passed in, so that all of it is
//! deterministic under test and fuzzing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockValue {
    /// Block number (at most 2^20 - 1).
    pub num: u32,
    /// Whether more blocks follow.
    pub more: bool,
    /// Size exponent: the block size is `2^(szx + 4)` bytes, 16..=1024.
    pub szx: u8,
}

/// Largest block number a 3-byte option value can carry.
pub const MAX_BLOCK_NUM: u32 = (1 << 20) - 1;

impl BlockValue {
    /// Decodes an option value of 0..=3 bytes; SZX 7 (reserved) and longer values are `None`.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let raw = crate::options::decode_uint(bytes);
        let szx = (raw & 0x7) as u8;
        (szx < 7).then_some(Self { num: raw >> 4, more: raw & 0x8 != 0, szx })
    }

    /// The option value in the fewest bytes.
    pub fn encode(self) -> Vec<u8> {
        crate::options::encode_uint(
            (self.num.min(MAX_BLOCK_NUM) << 4) | (u32::from(self.more) << 3) | u32::from(self.szx),
        )
    }

    /// The block size in bytes.
    pub fn size(self) -> usize {
        16 << self.szx
    }

    /// Offset of this block's first byte.
    pub fn offset(self) -> usize {
        self.num as usize * self.size()
    }
}

/// Why a block was refused. Each refusal discards the transfer it belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A block that does not continue a transfer in progress (RFC 7959 §2.9.2: 4.08).
    #[error("block does not continue a transfer in progress")]
    Incomplete,
    /// The reassembled payload would exceed the largest body accepted (4.13).
    #[error("reassembled payload exceeds {0} bytes")]
    TooLarge(usize),
    /// The peer's or the server's reassembly memory is exhausted (5.03).
    #[error("reassembly memory exhausted")]
    Busy,
    /// A block with the more flag set is not exactly one block long (4.00).
    #[error("block has the wrong size")]
    BadSize,
}

/// Caps on block-wise transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    /// Largest reassembled request payload, in bytes.
    pub max_body_bytes: usize,
    /// Most bytes held for one peer's unfinished transfers (requests and responses).
    pub max_peer_bytes: usize,
    /// Most bytes held for all unfinished transfers.
    pub max_total_bytes: usize,
    /// Most unfinished transfers at once.
    pub max_transfers: usize,
    /// Most unfinished transfers of one peer at once (so that one peer opening transfers it
    /// never finishes, a block at a time, cannot take all of [`Self::max_transfers`]).
    pub max_peer_transfers: usize,
    /// Time a transfer may go without its next block before it is discarded.
    pub timeout: Duration,
}

impl Default for BlockLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::MAX_PAYLOAD_BYTES,
            max_peer_bytes: 256 * 1024,
            max_total_bytes: 16 << 20,
            max_transfers: 1024,
            max_peer_transfers: 256,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a block completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Stored; answer 2.31 (Continue) and wait for the next block.
    Continue,
    /// The last block: the whole payload.
    Complete(Vec<u8>),
}

struct Transfer {
    /// Opaque bytes stored with a response payload (the serialized response without payload).
    head: Vec<u8>,
    data: Vec<u8>,
    touched: Instant,
}

impl Transfer {
    fn bytes(&self) -> usize {
        self.head.len() + self.data.len()
    }
}

/// Block1 reassembly and Block2 storage, keyed by peer and a request key (the request's
/// options other than the block options, RFC 7959 §2.5), under [`BlockLimits`].
pub struct Blocks {
    limits: BlockLimits,
    uploads: HashMap<(SocketAddr, Vec<u8>), Transfer>,
    downloads: HashMap<(SocketAddr, Vec<u8>), Transfer>,
    per_peer: HashMap<SocketAddr, usize>,
    total: usize,
}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocks")
            .field("uploads", &self.uploads.len())
            .field("downloads", &self.downloads.len())
            .field("total", &self.total)
            .finish()
    }
}

impl Blocks {
    /// An empty store.
    pub fn new(limits: BlockLimits) -> Self {
        Self { limits, uploads: HashMap::new(), downloads: HashMap::new(), per_peer: HashMap::new(), total: 0 }
    }

    /// Bytes held in total.
    pub fn total_bytes(&self) -> usize {
        self.total
    }

    /// Bytes held for `peer`.
    pub fn peer_bytes(&self, peer: SocketAddr) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    /// Unfinished transfers held.
    pub fn transfers(&self) -> usize {
        self.uploads.len() + self.downloads.len()
    }

    /// Unfinished transfers held for `peer`.
    pub fn peer_transfers(&self, peer: SocketAddr) -> usize {
        self.uploads.keys().chain(self.downloads.keys()).filter(|(p, _)| *p == peer).count()
    }

    /// Whether one more transfer of `peer` would exceed a transfer cap.
    fn transfers_full(&self, peer: SocketAddr) -> bool {
        self.transfers() >= self.limits.max_transfers || self.peer_transfers(peer) >= self.limits.max_peer_transfers
    }

    fn release(&mut self, peer: SocketAddr, bytes: usize) {
        self.total -= bytes;
        if let Some(held) = self.per_peer.get_mut(&peer) {
            *held -= bytes;
            if *held == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    fn reserve(&mut self, peer: SocketAddr, bytes: usize) -> Result<(), BlockError> {
        let held = self.peer_bytes(peer);
        if held + bytes > self.limits.max_peer_bytes || self.total + bytes > self.limits.max_total_bytes {
            return Err(BlockError::Busy);
        }
        self.total += bytes;
        *self.per_peer.entry(peer).or_default() += bytes;
        Ok(())
    }

    fn drop_upload(&mut self, key: &(SocketAddr, Vec<u8>)) {
        if let Some(t) = self.uploads.remove(key) {
            self.release(key.0, t.bytes());
        }
    }

    /// Discards transfers idle for longer than the timeout.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        for uploads in [true, false] {
            let map = if uploads { &mut self.uploads } else { &mut self.downloads };
            let stale: Vec<_> = map
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(t.touched) > timeout)
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                let map = if uploads { &mut self.uploads } else { &mut self.downloads };
                if let Some(t) = map.remove(&key) {
                    self.release(key.0, t.bytes());
                }
            }
        }
    }

    /// Takes one Block1 block of a request from `peer`.
    ///
    /// Block 0 starts (or restarts) a transfer; later blocks must continue it at its current
    /// length (a repeat of the block just stored is accepted again, for a client whose
    /// 2.31 was lost). The block size may shrink between blocks. Any refusal discards the
    /// transfer.
    pub fn offer(
        &mut self,
        peer: SocketAddr,
        key: Vec<u8>,
        block: BlockValue,
        payload: &[u8],
        now: Instant,
    ) -> Result<Offer, BlockError> {
        self.expire(now);
        let key = (peer, key);
        if block.more && payload.len() != block.size() || payload.len() > block.size() {
            self.drop_upload(&key);
            return Err(BlockError::BadSize);
        }
        let offset = block.offset();
        if block.num == 0 {
            self.drop_upload(&key);
            if block.more && self.transfers_full(peer) {
                return Err(BlockError::Busy);
            }
            if !block.more {
                return Ok(Offer::Complete(payload.to_vec()));
            }
            self.uploads.insert(key.clone(), Transfer { head: Vec::new(), data: Vec::new(), touched: now });
        }
        let Some(held) = self.uploads.get(&key).map(|t| t.data.len()) else {
            return Err(BlockError::Incomplete);
        };
        if offset < held && offset + payload.len() == held && block.more {
            if let Some(t) = self.uploads.get_mut(&key) {
                t.touched = now;
            }
            return Ok(Offer::Continue);
        }
        if offset != held {
            self.drop_upload(&key);
            return Err(BlockError::Incomplete);
        }
        if held + payload.len() > self.limits.max_body_bytes {
            self.drop_upload(&key);
            return Err(BlockError::TooLarge(self.limits.max_body_bytes));
        }
        if let Err(e) = self.reserve(peer, payload.len()) {
            self.drop_upload(&key);
            return Err(e);
        }
        let transfer = self.uploads.get_mut(&key).ok_or(BlockError::Incomplete)?;
        transfer.data.extend_from_slice(payload);
        transfer.touched = now;
        if block.more {
            return Ok(Offer::Continue);
        }
        let transfer = self.uploads.remove(&key).ok_or(BlockError::Incomplete)?;
        self.release(peer, transfer.bytes());
        Ok(Offer::Complete(transfer.data))
    }

    /// Stores a response payload to be served block by block ([`Self::block`]), with opaque
    /// `head` bytes returned with each block; `false` (not stored) when the caps do not allow it.
    pub fn store(&mut self, peer: SocketAddr, key: Vec<u8>, head: Vec<u8>, payload: Vec<u8>, now: Instant) -> bool {
        self.expire(now);
        let key = (peer, key);
        if let Some(old) = self.downloads.remove(&key) {
            self.release(peer, old.bytes());
        }
        if self.transfers_full(peer) || self.reserve(peer, head.len() + payload.len()).is_err() {
            return false;
        }
        self.downloads.insert(key, Transfer { head, data: payload, touched: now });
        true
    }

    /// Block `block.num` of a stored response payload: the head stored with it, the block,
    /// whether more follow and the whole size.
    pub fn block(
        &mut self,
        peer: SocketAddr,
        key: Vec<u8>,
        block: BlockValue,
        now: Instant,
    ) -> Option<(Vec<u8>, Vec<u8>, bool, usize)> {
        self.expire(now);
        let key = (peer, key);
        let transfer = self.downloads.get_mut(&key)?;
        let total = transfer.data.len();
        let start = block.offset();
        if start >= total && !(start == 0 && total == 0) {
            return None;
        }
        let end = (start + block.size()).min(total);
        let chunk = transfer.data[start..end].to_vec();
        transfer.touched = now;
        // Kept after its last block until it expires: that block may be asked for again.
        Some((transfer.head.clone(), chunk, end < total, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn b(num: u32, more: bool) -> BlockValue {
        BlockValue { num, more, szx: 0 }
    }

    #[test]
    fn option_values() {
        for (bytes, value) in [
            (&[][..], Some(b(0, false))),
            (&[0x08], Some(b(0, true))),
            (&[0x1e], Some(BlockValue { num: 1, more: true, szx: 6 })),
            (&[0xff, 0xff, 0xf6], Some(BlockValue { num: MAX_BLOCK_NUM, more: false, szx: 6 })),
            (&[0x07], None),
            (&[0, 0, 0, 0], None),
        ] {
            assert_eq!(BlockValue::decode(bytes), value, "{bytes:02x?}");
            if let Some(v) = value {
                assert_eq!(v.encode(), bytes);
            }
        }
    }

    #[test]
    fn reassembly_in_order_with_a_repeated_block() {
        let t = Instant::now();
        let mut blocks = Blocks::new(BlockLimits::default());
        let key = || b"k".to_vec();
        assert_eq!(blocks.offer(peer(1), key(), b(0, true), &[1; 16], t), Ok(Offer::Continue));
        // Block 1 again (its 2.31 lost, resent under a new message ID) is stored once.
        assert_eq!(blocks.offer(peer(1), key(), b(1, true), &[2; 16], t), Ok(Offer::Continue));
        assert_eq!(blocks.offer(peer(1), key(), b(1, true), &[2; 16], t), Ok(Offer::Continue));
        assert_eq!(blocks.peer_bytes(peer(1)), 32);
        let Ok(Offer::Complete(all)) = blocks.offer(peer(1), key(), b(2, false), &[3; 5], t) else { panic!() };
        assert_eq!(all, [[1; 16].as_slice(), &[2; 16], &[3; 5]].concat());
        assert_eq!((blocks.total_bytes(), blocks.transfers()), (0, 0));
    }

    #[test]
    fn refusals_discard_the_transfer() {
        let t = Instant::now();
        let limits =
            BlockLimits { max_body_bytes: 40, max_peer_bytes: 48, max_total_bytes: 64, ..BlockLimits::default() };
        let mut blocks = Blocks::new(limits);
        assert_eq!(blocks.offer(peer(1), b"a".to_vec(), b(2, true), &[0; 16], t), Err(BlockError::Incomplete));
        assert_eq!(blocks.offer(peer(1), b"a".to_vec(), b(0, true), &[0; 15], t), Err(BlockError::BadSize));
        blocks.offer(peer(1), b"a".to_vec(), b(0, true), &[0; 16], t).unwrap();
        assert_eq!(blocks.offer(peer(1), b"a".to_vec(), b(2, true), &[0; 16], t), Err(BlockError::Incomplete));
        assert_eq!(blocks.total_bytes(), 0);
        // Body cap.
        blocks.offer(peer(1), b"a".to_vec(), b(0, true), &[0; 16], t).unwrap();
        blocks.offer(peer(1), b"a".to_vec(), b(1, true), &[0; 16], t).unwrap();
        assert_eq!(blocks.offer(peer(1), b"a".to_vec(), b(2, true), &[0; 16], t), Err(BlockError::TooLarge(40)));
        assert_eq!(blocks.total_bytes(), 0);
        // Per-peer cap (48), then the total cap (64) across peers.
        for k in [b"x", b"y", b"z"] {
            blocks.offer(peer(1), k.to_vec(), b(0, true), &[0; 16], t).unwrap();
        }
        assert_eq!(blocks.offer(peer(1), b"w".to_vec(), b(0, true), &[0; 16], t), Err(BlockError::Busy));
        blocks.offer(peer(2), b"x".to_vec(), b(0, true), &[0; 16], t).unwrap();
        assert_eq!(blocks.offer(peer(3), b"x".to_vec(), b(0, true), &[0; 16], t), Err(BlockError::Busy));
        assert_eq!((blocks.peer_bytes(peer(1)), blocks.total_bytes()), (48, 64));
    }

    #[test]
    fn one_peer_holds_at_most_its_share_of_the_transfers() {
        let t = Instant::now();
        let limits = BlockLimits { max_transfers: 6, max_peer_transfers: 4, ..BlockLimits::default() };
        let mut blocks = Blocks::new(limits);
        for k in 0..4u8 {
            blocks.offer(peer(1), vec![k], b(0, true), &[0; 16], t).unwrap();
        }
        assert_eq!(blocks.offer(peer(1), vec![9], b(0, true), &[0; 16], t), Err(BlockError::Busy));
        assert!(!blocks.store(peer(1), b"r".to_vec(), vec![], vec![0; 100], t), "an answer counts as a transfer");
        // A single-block request needs no transfer: still served.
        assert_eq!(blocks.offer(peer(1), vec![9], b(0, false), &[1; 3], t), Ok(Offer::Complete(vec![1; 3])));
        // Another peer is served up to the total cap.
        blocks.offer(peer(2), vec![0], b(0, true), &[0; 16], t).unwrap();
        assert!(blocks.store(peer(2), b"r".to_vec(), vec![], vec![0; 100], t));
        assert_eq!(blocks.offer(peer(3), vec![0], b(0, true), &[0; 16], t), Err(BlockError::Busy));
        assert_eq!((blocks.peer_transfers(peer(1)), blocks.transfers()), (4, 6));
    }

    #[test]
    fn unfinished_transfers_expire() {
        let t = Instant::now();
        let limits = BlockLimits { timeout: Duration::from_secs(5), ..BlockLimits::default() };
        let mut blocks = Blocks::new(limits);
        blocks.offer(peer(1), b"a".to_vec(), b(0, true), &[0; 16], t).unwrap();
        assert!(blocks.store(peer(1), b"r".to_vec(), vec![9], vec![0; 100], t));
        assert_eq!(blocks.total_bytes(), 117);
        blocks.expire(t + Duration::from_secs(5));
        assert_eq!(blocks.transfers(), 2);
        blocks.expire(t + Duration::from_secs(6));
        assert_eq!((blocks.transfers(), blocks.total_bytes(), blocks.peer_bytes(peer(1))), (0, 0, 0));
        assert_eq!(blocks.offer(peer(1), b"a".to_vec(), b(1, false), &[0; 3], t), Err(BlockError::Incomplete));
    }

    #[test]
    fn stored_answers_are_served_by_block() {
        let t = Instant::now();
        let mut blocks = Blocks::new(BlockLimits::default());
        assert!(blocks.store(peer(1), b"r".to_vec(), vec![7], (0..40).collect(), t));
        assert_eq!(blocks.block(peer(1), b"r".to_vec(), b(1, false), t), Some((vec![7], (16..32).collect(), true, 40)));
        assert_eq!(
            blocks.block(peer(1), b"r".to_vec(), b(2, false), t),
            Some((vec![7], (32..40).collect(), false, 40))
        );
        assert_eq!(blocks.block(peer(1), b"r".to_vec(), b(3, false), t), None);
        assert_eq!(blocks.block(peer(2), b"r".to_vec(), b(1, false), t), None);
    }
}
