//! Instruction counts (callgrind, via gungraun) of the SA data path: seal and open in both
//! encodings, a table lookup among 10,000 SAs, and raw aws-lc-rs AES-128-GCM on the same sizes
//! as the reference. For a given binary the seal, open and raw counts repeat exactly, so unlike
//! `seal.rs` they compare across runs; the lookups vary a little (the table's hasher is seeded
//! at random per process).
//!
//! Running needs valgrind and a `gungraun-runner` of the same version as the `gungraun` library:
//!
//! ```text
//! cargo install gungraun-runner --version 0.18.2
//! cargo bench -p onem2m-sa --bench icount
//! ```
//!
//! `cargo test --benches` (or `--all-targets`) runs it too, in the test profile, and so also
//! needs them.
//!
//! Every benchmark builds its state (establishment included) in a setup function, which
//! callgrind does not count; the setup also runs the operation once so that buffers, replay
//! windows and thread-local state are warm. Each benchmark function returns its state, so the
//! drops are not counted either.

// gungraun's macros generate public modules, constants and functions without docs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use gungraun::{library_benchmark, library_benchmark_group, main};
use onem2m_sa::crypto::Suite;
use onem2m_sa::secure::{Encoding, SealInfo, decode_compact, decode_jwe};
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::testkit::linked;
use onem2m_sa::{EstablishedSa, Now, SaId};

/// SAs in the table of the lookup benchmark.
const TABLE_SAS: u64 = 10_000;

/// AAD of the raw AES-GCM reference (as in `seal.rs`).
const RAW_AAD: [u8; 10] = [1; 10];

/// One SA established between two nodes, installed in a table on each side.
struct Established {
    initiator: Arc<SaEntry>,
    responder: Arc<SaEntry>,
    sa: EstablishedSa,
}

/// Establishes one SA as `seal.rs` does.
fn establish() -> Established {
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 3, Now::new(1_000, 1_800_000_000));
    let sa = l.pair.initiator.sa(l.sa_id).unwrap().sa.clone();
    Established {
        initiator: l.initiator_table.get(l.sa_id).unwrap(),
        responder: l.responder_table.get(l.sa_id).unwrap(),
        sa,
    }
}

/// Decodes `wire` in `encoding` and opens it; returns the plaintext's length.
fn open_wire(entry: &SaEntry, encoding: Encoding, wire: &mut [u8], scratch: &mut Vec<u8>) -> usize {
    let sealed = match encoding {
        Encoding::Compact => decode_compact(wire).unwrap(),
        Encoding::Jwe => decode_jwe(wire, scratch).unwrap(),
    };
    let (plaintext, _epoch) = entry.open(sealed).unwrap();
    plaintext.len()
}

/// State of a seal benchmark.
struct SealState {
    entry: Arc<SaEntry>,
    encoding: Encoding,
    plaintext: Vec<u8>,
    out: Vec<u8>,
}

fn setup_seal(encoding: Encoding, size: usize) -> SealState {
    let Established { initiator, .. } = establish();
    let plaintext = vec![0x5a; size];
    let mut out = Vec::with_capacity(size * 2);
    initiator.seal(encoding, &plaintext, &mut out).unwrap();
    SealState { entry: initiator, encoding, plaintext, out }
}

/// State of an open benchmark: a message sealed by the peer, not yet opened.
struct OpenState {
    entry: Arc<SaEntry>,
    encoding: Encoding,
    wire: Vec<u8>,
    scratch: Vec<u8>,
}

fn setup_open(encoding: Encoding, size: usize) -> OpenState {
    let Established { initiator, responder, .. } = establish();
    let plaintext = vec![0x5a; size];
    let (mut wire, mut scratch) = (Vec::with_capacity(size * 2), Vec::with_capacity(size * 2));
    // A first message opened here warms the buffers and the replay window.
    initiator.seal(encoding, &plaintext, &mut wire).unwrap();
    assert_eq!(open_wire(&responder, encoding, &mut wire, &mut scratch), size);
    initiator.seal(encoding, &plaintext, &mut wire).unwrap();
    OpenState { entry: responder, encoding, wire, scratch }
}

/// State of the lookup benchmarks: a table of `TABLE_SAS` SAs and their identifiers.
struct LookupState {
    table: Arc<SaTable>,
    ids: Vec<SaId>,
}

fn setup_lookup() -> LookupState {
    let Established { mut sa, .. } = establish();
    let table = Arc::new(SaTable::new(TableConfig::default()));
    let ids: Vec<SaId> =
        (0..TABLE_SAS).map(|n| SaId((0x5a00_0000_0000_0000 | n.wrapping_mul(0x9e37_79b9)).to_be_bytes())).collect();
    for &id in &ids {
        sa.sa_id = id;
        table.install(&sa);
    }
    assert_eq!(table.len(), ids.len());
    assert!(ids.iter().all(|&id| table.get(id).is_some()));
    LookupState { table, ids }
}

/// State of a raw AES-128-GCM benchmark.
struct RawState {
    key: LessSafeKey,
    plaintext: Vec<u8>,
    buf: Vec<u8>,
    nonce: [u8; 12],
}

fn setup_raw_seal(size: usize) -> RawState {
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).unwrap());
    let plaintext = vec![0x5a; size];
    let mut buf = Vec::with_capacity(size + AES_128_GCM.tag_len());
    buf.extend_from_slice(&plaintext);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(&RAW_AAD), &mut buf).unwrap();
    let mut nonce = [0; 12];
    nonce[11] = 1;
    RawState { key, plaintext, buf, nonce }
}

fn setup_raw_open(size: usize) -> RawState {
    let mut state = setup_raw_seal(size);
    state.buf.clear();
    state.buf.extend_from_slice(&state.plaintext);
    let nonce = Nonce::assume_unique_for_key(state.nonce);
    state.key.seal_in_place_append_tag(nonce, Aad::from(&RAW_AAD), &mut state.buf).unwrap();
    state
}

// One `SaEntry::seal` into a warm output buffer.
#[library_benchmark]
#[bench::compact_256(args = (Encoding::Compact, 256), setup = setup_seal)]
#[bench::compact_4096(args = (Encoding::Compact, 4096), setup = setup_seal)]
#[bench::jwe_256(args = (Encoding::Jwe, 256), setup = setup_seal)]
#[bench::jwe_4096(args = (Encoding::Jwe, 4096), setup = setup_seal)]
fn seal(mut s: SealState) -> (SealState, SealInfo) {
    let info = s.entry.seal(s.encoding, black_box(&s.plaintext), &mut s.out).unwrap();
    (s, info)
}

// One decode (`decode_compact` or `decode_jwe`) and `SaEntry::open` of a message sealed in setup.
#[library_benchmark]
#[bench::compact_256(args = (Encoding::Compact, 256), setup = setup_open)]
#[bench::compact_4096(args = (Encoding::Compact, 4096), setup = setup_open)]
#[bench::jwe_256(args = (Encoding::Jwe, 256), setup = setup_open)]
#[bench::jwe_4096(args = (Encoding::Jwe, 4096), setup = setup_open)]
fn open(mut s: OpenState) -> (OpenState, usize) {
    let len = open_wire(&s.entry, s.encoding, black_box(&mut s.wire), &mut s.scratch);
    (s, len)
}

// One `SaTable::get` in a table of 10,000 SAs. The table's hasher is randomly seeded per
// process, so the count of one lookup varies slightly from run to run (probe lengths differ).
#[library_benchmark]
#[bench::sas_10000(setup = setup_lookup)]
fn lookup(s: LookupState) -> (LookupState, Option<Arc<SaEntry>>) {
    let entry = s.table.get(black_box(s.ids[s.ids.len() / 2]));
    (s, entry)
}

// `SaTable::get` of each of the 10,000 SAs in turn: divide by 10,000 for a mean per lookup
// that the random seeding of the hasher barely moves.
#[library_benchmark]
#[bench::sas_10000(setup = setup_lookup)]
fn lookup_each(s: LookupState) -> (LookupState, usize) {
    let mut found = 0;
    for &id in &s.ids {
        found += usize::from(s.table.get(black_box(id)).is_some());
    }
    (s, found)
}

// Raw aws-lc-rs: copy the plaintext into a warm buffer and `seal_in_place_append_tag`.
#[library_benchmark]
#[bench::size_256(args = (256), setup = setup_raw_seal)]
#[bench::size_4096(args = (4096), setup = setup_raw_seal)]
fn raw_aes128gcm_seal(mut s: RawState) -> RawState {
    s.buf.clear();
    s.buf.extend_from_slice(black_box(&s.plaintext));
    let nonce = Nonce::assume_unique_for_key(s.nonce);
    s.key.seal_in_place_append_tag(nonce, Aad::from(&RAW_AAD), &mut s.buf).unwrap();
    s
}

// Raw aws-lc-rs: `open_in_place` of a message sealed in setup.
#[library_benchmark]
#[bench::size_256(args = (256), setup = setup_raw_open)]
#[bench::size_4096(args = (4096), setup = setup_raw_open)]
fn raw_aes128gcm_open(mut s: RawState) -> (RawState, usize) {
    let nonce = Nonce::assume_unique_for_key(s.nonce);
    let len = s.key.open_in_place(nonce, Aad::from(&RAW_AAD), black_box(&mut s.buf)).unwrap().len();
    (s, len)
}

library_benchmark_group!(name = sa_data_path, benchmarks = [seal, open, lookup, lookup_each]);
library_benchmark_group!(name = raw_aes_gcm, benchmarks = [raw_aes128gcm_seal, raw_aes128gcm_open]);

main!(library_benchmark_groups = sa_data_path, raw_aes_gcm);
