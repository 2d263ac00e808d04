//! Seal + open of one message through the SA data path, against raw aws-lc-rs AES-GCM on the
//! same buffers, at several sizes and in both encodings. Report ratios (ours / raw throughput)
//! from one run: the machines are shared and noisy. Also the cost of building one direction's
//! AEAD context (`key_setup`), which an SA at rest pays on its next message.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use onem2m_sa::Now;
use onem2m_sa::crypto::Suite;
use onem2m_sa::secure::{Encoding, decode_compact, decode_jwe};
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::linked;

const SIZES: [usize; 5] = [64, 256, 1024, 4096, 16384];

fn bench(c: &mut Criterion) {
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 3, Now::new(1_000, 1_800_000_000));
    let (sa_id, tr) = (l.sa_id, l.responder_table);
    let (ei, er) = (l.initiator_table.get(sa_id).unwrap(), tr.get(sa_id).unwrap());
    let raw = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).unwrap());

    let mut group = c.benchmark_group("seal_open");
    for size in SIZES {
        let plaintext = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("raw-aes128gcm", size), &size, |b, _| {
            let mut buf = Vec::with_capacity(size + 16);
            let mut seq = 0u64;
            b.iter(|| {
                seq += 1;
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&seq.to_be_bytes());
                buf.clear();
                buf.extend_from_slice(&plaintext);
                raw.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(&[1u8; 10]), &mut buf).unwrap();
                let p = raw.open_in_place(Nonce::assume_unique_for_key(n), Aad::from(&[1u8; 10]), &mut buf).unwrap();
                std::hint::black_box(p.len());
            })
        });
        for (name, encoding) in [("compact", Encoding::Compact), ("jwe", Encoding::Jwe)] {
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                let mut wire = Vec::with_capacity(size * 2);
                let mut scratch = Vec::with_capacity(size * 2);
                b.iter(|| {
                    ei.seal(encoding, &plaintext, &mut wire).unwrap();
                    let sealed = match encoding {
                        Encoding::Compact => decode_compact(&mut wire).unwrap(),
                        Encoding::Jwe => decode_jwe(&wire, &mut scratch).unwrap(),
                    };
                    let (p, _) = er.open(sealed).unwrap();
                    std::hint::black_box(p.len());
                })
            });
        }
    }
    group.finish();

    // What an SA at rest pays on its next message: its epoch's AEAD contexts were released
    // (`TableConfig::context_idle_ms`) and are built again, one per direction.
    let mut group = c.benchmark_group("key_setup");
    for (name, alg, len) in [("aes128gcm", &AES_128_GCM, 16), ("aes256gcm", &AES_256_GCM, 32)] {
        let key = vec![7u8; len];
        group.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(LessSafeKey::new(UnboundKey::new(alg, &key).unwrap())))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lookup");
    group.bench_function("table-get", |b| b.iter(|| std::hint::black_box(tr.get(sa_id).is_some())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
