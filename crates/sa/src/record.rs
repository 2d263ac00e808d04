//! An established SA as bytes, for a store shared by replicas.
//!
//! [`to_record`] writes every field of an [`EstablishedSa`] (its keys included) in a fixed binary
//! form; [`from_record`] reads it back and refuses anything malformed. The bytes hold keys in
//! the clear: a store must seal them (the Redis store encrypts them under a key-encryption key
//! with AES-256-GCM) before they leave the process; the buffer is zeroized on drop.
//!
//! Layout (version 1), all integers big-endian: `1` · SA identifier (8) · role (1: 0 Initiator,
//! 1 Responder) · suite code (2) · local ID (2-byte length + bytes) · peer ID (same) · peer
//! authorization context as JSON (4-byte length + bytes) · ticket not-after (8) · established
//! (8) · transcript hash (1-byte length + bytes) · epoch (4) · four direction keys i2r, r2i,
//! ctl i2r, ctl r2i (1-byte key length + key, 12-byte IV each) · update secret (1-byte length +
//! bytes) · negotiated capabilities (1-byte count + 2-byte codes, docs/protocol.md §3.2).

use zeroize::Zeroizing;

use crate::credential::{AuthorizationContext, NodeId};
use crate::crypto::{Digest, Suite};
use crate::establish::{EstablishedSa, Role};
use crate::schedule::{DirectionKeys, SessionKeys};
use crate::{Capabilities, SaId};

/// Record format version.
pub const RECORD_VERSION: u8 = 2;

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed SA record: {0}")]
pub struct RecordError(pub &'static str);

/// Writes `sa` as a record (keys in the clear: seal it before it leaves the process).
pub fn to_record(sa: &EstablishedSa) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(512));
    out.push(RECORD_VERSION);
    out.extend_from_slice(sa.sa_id.as_bytes());
    out.push(match sa.role {
        Role::Initiator => 0,
        Role::Responder => 1,
    });
    out.extend_from_slice(&sa.suite.code().to_be_bytes());
    for id in [&sa.local, &sa.peer] {
        out.extend_from_slice(&(id.as_str().len() as u16).to_be_bytes());
        out.extend_from_slice(id.as_str().as_bytes());
    }
    let ctx = serde_json::to_vec(&*sa.peer_context).expect("a context serializes");
    out.extend_from_slice(&(ctx.len() as u32).to_be_bytes());
    out.extend_from_slice(&ctx);
    out.extend_from_slice(&sa.peer_ticket_not_after.to_be_bytes());
    out.extend_from_slice(&sa.established_unix.to_be_bytes());
    let th = sa.transcript_hash.as_ref();
    out.push(th.len() as u8);
    out.extend_from_slice(th);
    let k = &sa.keys;
    out.extend_from_slice(&k.epoch.to_be_bytes());
    for d in [&k.i2r, &k.r2i, &k.ctl_i2r, &k.ctl_r2i] {
        out.push(d.key().len() as u8);
        out.extend_from_slice(d.key());
        out.extend_from_slice(d.iv());
    }
    out.push(k.update_secret().len() as u8);
    out.extend_from_slice(k.update_secret());
    let caps = sa.capabilities.to_codes();
    out.push(caps.len() as u8);
    for code in caps {
        out.extend_from_slice(&code.to_be_bytes());
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn node(&mut self) -> Result<NodeId, RecordError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| RecordError("node ID not UTF-8"))?;
        NodeId::new(s).map_err(|_| RecordError("invalid node ID"))
    }
}

/// Reads a record written by [`to_record`].
pub fn from_record(bytes: &[u8]) -> Result<EstablishedSa, RecordError> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(RecordError("unknown version"));
    }
    let sa_id = SaId(r.array()?);
    let role = match r.u8()? {
        0 => Role::Initiator,
        1 => Role::Responder,
        _ => return Err(RecordError("unknown role")),
    };
    let suite = Suite::from_code(u16::from_be_bytes(r.array()?)).ok_or(RecordError("unknown suite"))?;
    let local = r.node()?;
    let peer = r.node()?;
    let ctx_len = u32::from_be_bytes(r.array()?) as usize;
    let peer_context: AuthorizationContext =
        serde_json::from_slice(r.take(ctx_len)?).map_err(|_| RecordError("authorization context"))?;
    let peer_ticket_not_after = u64::from_be_bytes(r.array()?);
    let established_unix = u64::from_be_bytes(r.array()?);
    let th_len = r.u8()? as usize;
    let transcript_hash = Digest::from_slice(r.take(th_len)?).ok_or(RecordError("transcript hash too long"))?;
    let epoch = u32::from_be_bytes(r.array()?);
    let key_len = suite.aead().key_len();
    let mut dir = || -> Result<DirectionKeys, RecordError> {
        let len = r.u8()? as usize;
        if len != key_len {
            return Err(RecordError("key length does not match the suite"));
        }
        let key = r.take(len)?;
        DirectionKeys::from_parts(key, r.array()?).ok_or(RecordError("key too long"))
    };
    let dirs = [dir()?, dir()?, dir()?, dir()?];
    let us_len = r.u8()? as usize;
    if us_len != suite.hash().output_len() {
        return Err(RecordError("update secret length does not match the suite"));
    }
    let update_secret = r.take(us_len)?;
    let caps = (0..r.u8()?).map(|_| r.array().map(u16::from_be_bytes)).collect::<Result<Vec<_>, _>>()?;
    let capabilities = Capabilities::from_codes(&caps);
    if !r.0.is_empty() {
        return Err(RecordError("trailing bytes"));
    }
    Ok(EstablishedSa {
        sa_id,
        role,
        suite,
        local,
        peer,
        peer_context: std::sync::Arc::new(peer_context),
        peer_ticket_not_after,
        established_unix,
        keys: SessionKeys::from_parts(epoch, dirs, update_secret).ok_or(RecordError("update secret too long"))?,
        transcript_hash,
        capabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::{Encoding, Epoch};
    use crate::testkit::linked;
    use crate::{Now, table::TableConfig};

    const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

    #[test]
    fn a_record_reads_back_to_the_same_sa() {
        for suite in Suite::ALL {
            let l = linked(suite, TableConfig::default(), 11, T0);
            let sa = l.pair.responder.sa(l.sa_id).unwrap().sa.clone();
            let back = from_record(&to_record(&sa)).unwrap();
            assert_eq!(
                (back.sa_id, back.role, back.suite, &back.local, &back.peer, &back.peer_context),
                (sa.sa_id, sa.role, sa.suite, &sa.local, &sa.peer, &sa.peer_context)
            );
            assert_eq!(back.expires_unix(), sa.expires_unix());
            assert_eq!(back.transcript_hash, sa.transcript_hash);
            assert_eq!(back.capabilities, sa.capabilities);
            assert_eq!(back.keys.update_secret(), sa.keys.update_secret());
            // The keys work: what the original seals, the copy opens, and the next epoch
            // derives alike.
            let a = Epoch::new(suite, &sa.keys, Role::Initiator, 1024);
            let b = Epoch::new(suite, &back.keys, Role::Responder, 1024);
            let mut out = Vec::new();
            a.seal(sa.sa_id, suite, Encoding::Compact, b"{}", &Default::default(), &mut out).unwrap();
            let sealed = crate::secure::decode_compact(&mut out).unwrap();
            assert_eq!(b.open(sealed).unwrap(), b"{}");
            let n1 = sa.keys.next_epoch(suite, sa.sa_id, &[3; 32], None, None);
            let n2 = back.keys.next_epoch(suite, sa.sa_id, &[3; 32], None, None);
            assert_eq!(n1.i2r.key(), n2.i2r.key());
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 12, T0);
        let rec = to_record(&l.pair.responder.sa(l.sa_id).unwrap().sa);
        for cut in 0..rec.len() {
            assert!(from_record(&rec[..cut]).is_err(), "truncated at {cut} accepted");
        }
        let mut long = rec.to_vec();
        long.push(0);
        assert_eq!(from_record(&long).unwrap_err(), RecordError("trailing bytes"));
        let mut v2 = rec.to_vec();
        v2[0] = RECORD_VERSION + 1;
        assert!(from_record(&v2).is_err());
    }
}
