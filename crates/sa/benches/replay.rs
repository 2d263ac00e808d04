//! Replay window cost per received message: `check` (before the AEAD open) plus `mark` (after),
//! in nanoseconds per message, for in-order traffic and for traffic where one message in eight
//! arrives late (swapped with its successor a few places on), with the default window.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use onem2m_sa::replay::{DEFAULT_WINDOW, ReplayWindow};

/// Message numbers `0..n`; with `disorder`, every eighth one is delivered 5 places later.
fn arrivals(n: u64, disorder: bool) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    if disorder {
        for i in (0..v.len().saturating_sub(5)).step_by(8) {
            v[i..=i + 5].rotate_left(1);
        }
    }
    v
}

fn replay(c: &mut Criterion) {
    const N: u64 = 1 << 16;
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(N));
    for (name, disorder) in [("in_order", false), ("one_in_8_late", true)] {
        let seqs = arrivals(N, disorder);
        group.bench_function(BenchmarkId::new("check_mark", name), |b| {
            b.iter_batched_ref(
                || ReplayWindow::new(DEFAULT_WINDOW),
                |w| {
                    for &s in &seqs {
                        black_box(w.check(s)).unwrap();
                        black_box(w.mark(s)).unwrap();
                    }
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    // A replayed or stale message costs one `check`.
    let w = ReplayWindow::new(DEFAULT_WINDOW);
    for s in 0..N {
        w.mark(s).unwrap();
    }
    let seqs = arrivals(N, true);
    group.bench_function("check_refused", |b| {
        b.iter(|| {
            for &s in &seqs {
                black_box(w.check(s)).unwrap_err();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
