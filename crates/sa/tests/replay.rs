//! The RFC 6479 replay window (`onem2m_sa::replay`): the window rule against a reference model,
//! the edges of threat-model row 1 (inside the window, left edge, one below it, far ahead, reverse
//! order, duplicates), forged messages that must not move the window, and concurrent receivers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use onem2m_sa::replay::{DEFAULT_WINDOW, ReplayError, ReplayWindow};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

// ---------------------------------------------------------------------------------------------
// Reference model
// ---------------------------------------------------------------------------------------------

/// The rule as stated: accepted iff never accepted before and `s + W > h`.
struct Model {
    w: u64,
    accepted: HashSet<u64>,
    highest: Option<u64>,
}

impl Model {
    fn new(w: usize) -> Self {
        Self { w: w as u64, accepted: HashSet::new(), highest: None }
    }

    fn check(&self, s: u64) -> Result<(), ReplayError> {
        if let Some(h) = self.highest {
            // s + W > h, in u128 so nothing can overflow.
            if u128::from(s) + u128::from(self.w) <= u128::from(h) {
                return Err(ReplayError::TooOld);
            }
        }
        if self.accepted.contains(&s) { Err(ReplayError::Replayed) } else { Ok(()) }
    }

    fn mark(&mut self, s: u64) -> Result<(), ReplayError> {
        self.check(s)?;
        self.accepted.insert(s);
        self.highest = Some(self.highest.map_or(s, |h| h.max(s)));
        Ok(())
    }
}

/// One step of a scenario; numbers are derived from the state when the step runs.
#[derive(Debug, Clone)]
enum Op {
    /// `h + delta`, saturating, with `delta` within a few windows either side.
    Near { delta: i64, mark: bool },
    /// Around the left edge: `h - (W - 1) + off`.
    Edge { off: i8, mark: bool },
    /// Far ahead: `h + W + extra`.
    Jump { extra: u64, mark: bool },
    /// Any number at all.
    Any { s: u64, mark: bool },
    /// `u64::MAX - below`.
    NearMax { below: u16, mark: bool },
    /// A small number.
    Low { s: u16, mark: bool },
    /// A number used before (a duplicate or near-duplicate).
    Repeat { idx: usize, plus: i8, mark: bool },
    /// Marks `h + len`, `h + len - 1`, ..., `h + 1`: a block arriving in reverse order.
    Reverse { len: u16 },
}

fn op(w: u64) -> impl Strategy<Value = Op> {
    let w = w as i64;
    prop_oneof![
        4 => (-3 * w..3 * w, any::<bool>()).prop_map(|(delta, mark)| Op::Near { delta, mark }),
        3 => (-3i8..=3, any::<bool>()).prop_map(|(off, mark)| Op::Edge { off, mark }),
        1 => (0u64..1 << 40, any::<bool>()).prop_map(|(extra, mark)| Op::Jump { extra, mark }),
        1 => (any::<u64>(), any::<bool>()).prop_map(|(s, mark)| Op::Any { s, mark }),
        2 => (0u16..2048, any::<bool>()).prop_map(|(below, mark)| Op::NearMax { below, mark }),
        1 => (0u16..2048, any::<bool>()).prop_map(|(s, mark)| Op::Low { s, mark }),
        4 => (any::<usize>(), -2i8..=2, any::<bool>()).prop_map(|(idx, plus, mark)| Op::Repeat { idx, plus, mark }),
        1 => (1u16..300).prop_map(|len| Op::Reverse { len }),
    ]
}

fn step(
    window: &ReplayWindow,
    model: &mut Model,
    history: &mut Vec<u64>,
    s: u64,
    mark: bool,
) -> Result<(), TestCaseError> {
    history.push(s);
    // `check` must agree with the model before every operation, marked or not.
    prop_assert_eq!(window.check(s), model.check(s), "check({}) with highest {:?}", s, model.highest);
    if mark {
        let expected = model.mark(s);
        prop_assert_eq!(window.mark(s), expected, "mark({}), model highest now {:?}", s, model.highest);
    }
    prop_assert_eq!(window.highest(), model.highest);
    Ok(())
}

fn run_against_model(size: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let window = ReplayWindow::new(size);
    let w = window.size() as u64;
    let mut model = Model::new(window.size());
    let mut history: Vec<u64> = Vec::new();

    for op in ops {
        let h = model.highest.unwrap_or(0);
        let (m, hist) = (&mut model, &mut history);
        match *op {
            Op::Near { delta, mark } => step(&window, m, hist, h.saturating_add_signed(delta), mark)?,
            Op::Edge { off, mark } => {
                step(&window, m, hist, h.saturating_sub(w - 1).saturating_add_signed(i64::from(off)), mark)?
            }
            Op::Jump { extra, mark } => step(&window, m, hist, h.saturating_add(w).saturating_add(extra), mark)?,
            Op::Any { s, mark } => step(&window, m, hist, s, mark)?,
            Op::NearMax { below, mark } => step(&window, m, hist, u64::MAX - u64::from(below), mark)?,
            Op::Low { s, mark } => step(&window, m, hist, u64::from(s), mark)?,
            Op::Repeat { idx, plus, mark } => {
                let base = if hist.is_empty() { h } else { hist[idx % hist.len()] };
                step(&window, m, hist, base.saturating_add_signed(i64::from(plus)), mark)?
            }
            Op::Reverse { len } => {
                for i in (1..=u64::from(len)).rev() {
                    step(&window, m, hist, h.saturating_add(i), true)?;
                }
            }
        }
    }
    // Finally every number ever seen, and its neighbours, still agrees with the model.
    for &s in &history {
        for t in [s.saturating_sub(1), s, s.saturating_add(1)] {
            prop_assert_eq!(window.check(t), model.check(t), "final check({})", t);
        }
    }
    Ok(())
}

fn config() -> Config {
    Config { cases: 256, rng_seed: RngSeed::Fixed(6479), failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_w64(ops in prop::collection::vec(op(64), 1..200)) {
        run_against_model(64, &ops)?;
    }

    #[test]
    fn model_w128(ops in prop::collection::vec(op(128), 1..200)) {
        run_against_model(128, &ops)?;
    }

    #[test]
    fn model_w1024(ops in prop::collection::vec(op(1024), 1..200)) {
        run_against_model(1024, &ops)?;
    }

    #[test]
    fn model_w1000_rounded(ops in prop::collection::vec(op(1024), 1..200)) {
        prop_assert_eq!(ReplayWindow::new(1000).size(), 1024);
        run_against_model(1000, &ops)?;
    }
}

/// A long deterministic walk that keeps the ring busy lap after lap (random ops mostly stay
/// near one place); compared against the model at every step.
#[test]
fn model_long_walk() {
    for size in [64, 192, 1024] {
        let window = ReplayWindow::new(size);
        let w = window.size() as u64;
        let mut model = Model::new(window.size());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut base: u64 = 0;
        for _ in 0..200_000 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base += x % 5; // the sender moves forward slowly
            let s = match x % 16 {
                0 => base + x % (w / 2),                // ahead, small jump
                1 => base + w + x % 300,                // ahead, past the window
                _ => base.saturating_sub(x % (w + 64)), // behind: in the window or just out
            };
            base = base.max(model.highest.unwrap_or(0));
            assert_eq!(window.check(s), model.check(s), "W={w} check({s}) h={:?}", model.highest);
            assert_eq!(window.mark(s), model.mark(s), "W={w} mark({s}) h={:?}", model.highest);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Edges (threat-model row 1)
// ---------------------------------------------------------------------------------------------

#[test]
fn inside_the_window() {
    let w = ReplayWindow::new(64);
    w.mark(100).unwrap();
    for s in [99, 90, 37, 50] {
        assert_eq!(w.check(s), Ok(()), "{s}");
        assert_eq!(w.mark(s), Ok(()), "{s}");
        assert_eq!(w.mark(s), Err(ReplayError::Replayed), "{s}");
    }
    assert_eq!(w.highest(), Some(100));
}

#[test]
fn left_edge_accepted_one_below_too_old() {
    for size in [64, 128, 1024, 65536] {
        let w = ReplayWindow::new(size);
        let size = size as u64;
        let h = 1_000_000;
        w.mark(h).unwrap();
        // The window is the last W numbers counting h itself: h - W + 1 ..= h.
        let edge = h - size + 1;
        assert_eq!(w.check(edge), Ok(()), "W={size}");
        assert_eq!(w.mark(edge), Ok(()), "W={size}");
        assert_eq!(w.mark(edge), Err(ReplayError::Replayed), "W={size}");
        assert_eq!(w.check(edge - 1), Err(ReplayError::TooOld), "W={size}");
        assert_eq!(w.mark(edge - 1), Err(ReplayError::TooOld), "W={size}");
        assert_eq!(w.mark(0), Err(ReplayError::TooOld), "W={size}");
        // Moving h by one pushes the edge out.
        w.mark(h + 1).unwrap();
        assert_eq!(w.check(edge), Err(ReplayError::TooOld), "W={size}");
        assert_eq!(w.check(edge + 1), Ok(()), "W={size}");
    }
}

#[test]
fn far_ahead_jump_then_an_old_one() {
    let w = ReplayWindow::default();
    let size = DEFAULT_WINDOW as u64;
    for s in 0..100 {
        w.mark(s).unwrap();
    }
    let far = 99 + 10 * size + 17;
    w.mark(far).unwrap();
    assert_eq!(w.highest(), Some(far));
    // Old ones, marked or not, are now out of the window.
    assert_eq!(w.mark(50), Err(ReplayError::TooOld));
    assert_eq!(w.mark(100), Err(ReplayError::TooOld));
    // Everything in the new window except `far` is fresh, even numbers whose ring bits were set
    // by the old marks one or more laps ago.
    for s in far - size + 1..far {
        assert_eq!(w.check(s), Ok(()), "{s}");
    }
    assert_eq!(w.mark(far - size + 1), Ok(()));
    assert_eq!(w.mark(far - 1), Ok(()));
    assert_eq!(w.mark(far), Err(ReplayError::Replayed));
    // A jump of less than a window keeps what is still inside.
    w.mark(far + size / 2).unwrap();
    assert_eq!(w.mark(far - 1), Err(ReplayError::Replayed));
    assert_eq!(w.mark(far), Err(ReplayError::Replayed));
    assert_eq!(w.mark(far - size + 1), Err(ReplayError::TooOld));
}

#[test]
fn reverse_order_block() {
    for size in [64, 1024] {
        let w = ReplayWindow::new(size);
        let size = size as u64;
        // A block of exactly W numbers arriving last-first: all accepted, none lost.
        let start = 5_000;
        for s in (start..start + size).rev() {
            assert_eq!(w.mark(s), Ok(()), "W={size} {s}");
        }
        assert_eq!(w.highest(), Some(start + size - 1));
        for s in start..start + size {
            assert_eq!(w.mark(s), Err(ReplayError::Replayed), "W={size} {s}");
        }
        // One more than the window in reverse: the last (lowest) one falls out.
        let start = 100_000;
        for s in (start + 1..=start + size).rev() {
            assert_eq!(w.mark(s), Ok(()), "W={size} {s}");
        }
        assert_eq!(w.mark(start), Err(ReplayError::TooOld));
    }
}

#[test]
fn duplicate_is_replayed() {
    let w = ReplayWindow::default();
    w.mark(7).unwrap();
    assert_eq!(w.check(7), Err(ReplayError::Replayed));
    assert_eq!(w.mark(7), Err(ReplayError::Replayed));
    // A refused mark changes nothing.
    assert_eq!(w.highest(), Some(7));
    assert_eq!(w.check(8), Ok(()));
    assert_eq!(w.check(6), Ok(()));
}

#[test]
fn zero_is_a_valid_number() {
    let w = ReplayWindow::default();
    assert_eq!(w.highest(), None);
    assert_eq!(w.check(0), Ok(()));
    assert_eq!(w.mark(0), Ok(()));
    assert_eq!(w.highest(), Some(0));
    assert_eq!(w.mark(0), Err(ReplayError::Replayed));
    assert_eq!(w.mark(1), Ok(()));
}

#[test]
fn first_message_with_a_large_number() {
    let w = ReplayWindow::default();
    let size = DEFAULT_WINDOW as u64;
    let first = 1 << 40;
    assert_eq!(w.mark(first), Ok(()));
    assert_eq!(w.highest(), Some(first));
    // Numbers below the first one that are still inside the window were never seen: accepted.
    assert_eq!(w.mark(first - 1), Ok(()));
    assert_eq!(w.mark(first - size + 1), Ok(()));
    assert_eq!(w.mark(first - size), Err(ReplayError::TooOld));
    assert_eq!(w.mark(0), Err(ReplayError::TooOld));
    assert_eq!(w.mark(first), Err(ReplayError::Replayed));

    // The very first message may even be the last possible number.
    let w = ReplayWindow::new(64);
    assert_eq!(w.mark(u64::MAX), Ok(()));
    assert_eq!(w.mark(u64::MAX), Err(ReplayError::Replayed));
    assert_eq!(w.mark(u64::MAX - 63), Ok(()));
    assert_eq!(w.mark(u64::MAX - 64), Err(ReplayError::TooOld));
}

#[test]
fn u64_edges() {
    for size in [64, 1024, 65536] {
        let w = ReplayWindow::new(size);
        let size = size as u64;
        // From 0 straight to the top: no overflow, the whole ring is cleared.
        w.mark(0).unwrap();
        w.mark(u64::MAX - 1).unwrap();
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(w.check(u64::MAX), Ok(()));
        assert_eq!(w.check(u64::MAX - size + 1), Ok(()));
        assert_eq!(w.check(u64::MAX - size), Ok(()), "h = MAX - 1, so MAX - W is the left edge");
        assert_eq!(w.check(u64::MAX - size - 1), Err(ReplayError::TooOld));
        w.mark(u64::MAX).unwrap();
        assert_eq!(w.check(u64::MAX - size), Err(ReplayError::TooOld));
        assert_eq!(w.mark(u64::MAX), Err(ReplayError::Replayed));
        assert_eq!(w.mark(u64::MAX - 1), Err(ReplayError::Replayed));
        assert_eq!(w.mark(u64::MAX - 2), Ok(()));
        assert_eq!(w.highest(), Some(u64::MAX));
    }
}

#[test]
fn sizes_and_memory() {
    assert_eq!(ReplayWindow::new(0).size(), 64);
    assert_eq!(ReplayWindow::new(65).size(), 128);
    assert_eq!(ReplayWindow::new(1000).size(), 1024);
    assert_eq!(ReplayWindow::new(1 << 20).size(), 65536);
    assert_eq!(ReplayWindow::default().size(), DEFAULT_WINDOW);
    let bytes = ReplayWindow::default().memory_bytes();
    assert!(bytes >= size_of::<ReplayWindow>() + DEFAULT_WINDOW / 8, "{bytes}");
    assert!(bytes < 1024, "default window uses {bytes} bytes");
    // Memory grows with the size.
    assert!(ReplayWindow::new(65536).memory_bytes() > 8192);
    assert!(ReplayWindow::new(64).memory_bytes() < bytes);
}

// ---------------------------------------------------------------------------------------------
// Forged messages
// ---------------------------------------------------------------------------------------------

/// A message with a bad tag only ever reaches `check`; whatever number it claims, the window
/// stays as it was.
#[test]
fn forged_messages_never_move_the_window() {
    let w = ReplayWindow::default();
    let size = DEFAULT_WINDOW as u64;
    for s in 1000..1100 {
        w.mark(s).unwrap();
    }
    let before = format!("{w:?}");
    // A flood of forged far-ahead numbers, each of which would be accepted if genuine.
    for k in 1..10_000u64 {
        let forged = 1100u64.saturating_add(k.wrapping_mul(0x0123_4567_89ab_cdef) % (u64::MAX - 1100));
        assert_eq!(w.check(forged), Ok(()));
        assert_eq!(w.check(1099 + k * size), Ok(()));
    }
    assert_eq!(w.check(u64::MAX), Ok(()));
    assert_eq!(w.highest(), Some(1099));
    assert_eq!(format!("{w:?}"), before);
    // Genuine in-window traffic still passes; what was marked is still marked.
    assert_eq!(w.mark(999), Ok(()));
    assert_eq!(w.mark(1099 - size + 1), Ok(()));
    assert_eq!(w.mark(1100), Ok(()));
    for s in 1000..1100 {
        assert_eq!(w.check(s), Err(ReplayError::Replayed), "{s}");
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

const THREADS: usize = 4;

/// `0..n` in the order thread `t` uses: ascending, descending, a fixed permutation, strided.
fn order(t: usize, n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    match t % 4 {
        0 => {}
        1 => v.reverse(),
        2 => {
            // Fisher–Yates with a fixed xorshift seed.
            let mut x: u64 = 0xdead_beef_cafe_f00d;
            for i in (1..v.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        _ => v.sort_by_key(|s| (s % 7, *s)),
    }
    v
}

/// All threads try the same numbers in different orders, in a window that holds them all:
/// each number is accepted exactly once in total.
#[test]
fn concurrent_marks_of_the_same_numbers_succeed_once() {
    const N: u64 = 10_000;
    for round in 0..5 {
        let window = Arc::new(ReplayWindow::new(65536));
        let wins: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (window, wins, barrier) = (window.clone(), wins.clone(), barrier.clone());
                let seqs = order(t + round, N);
                thread::spawn(move || {
                    barrier.wait();
                    for s in seqs {
                        match window.mark(s) {
                            Ok(()) => {
                                wins[s as usize].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(ReplayError::Replayed) => {}
                            Err(e) => panic!("mark({s}) = {e:?} in a window that holds all numbers"),
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut total = 0;
        for (s, c) in wins.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            assert_eq!(c, 1, "round {round}: number {s} accepted {c} times");
            total += c;
        }
        assert_eq!(total as u64, N);
        assert_eq!(window.highest(), Some(N - 1));
    }
}

/// The same race in a small window, where numbers can also fall out: still never accepted twice,
/// and a number nobody accepted must lie below the final window (the window only moves forward,
/// so `TooOld` at any moment implies it).
#[test]
fn concurrent_marks_of_the_same_numbers_in_a_small_window() {
    const N: u64 = 20_000;
    let window = Arc::new(ReplayWindow::new(128));
    let size = window.size() as u64;
    let wins: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (window, wins, barrier) = (window.clone(), wins.clone(), barrier.clone());
            // Ascending with local disorder: each block of 32 in a thread-specific order.
            let mut seqs: Vec<u64> = (0..N).collect();
            for chunk in seqs.chunks_mut(32) {
                chunk.rotate_left(t * 7 % 32);
                if t % 2 == 1 {
                    chunk.reverse();
                }
            }
            thread::spawn(move || {
                barrier.wait();
                for s in seqs {
                    if window.mark(s).is_ok() {
                        wins[s as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let h = window.highest().unwrap();
    assert_eq!(h, N - 1);
    for (s, c) in wins.iter().enumerate() {
        let (s, c) = (s as u64, c.load(Ordering::Relaxed));
        assert!(c <= 1, "number {s} accepted {c} times");
        if c == 0 {
            assert!(s + size <= h, "number {s} lost inside the final window (h = {h})");
        } else if s + size > h {
            assert_eq!(window.check(s), Err(ReplayError::Replayed), "{s}");
        }
    }
}

/// Threads mark disjoint increasing numbers at once. None is ever `Replayed`; a `TooOld` must be
/// legitimate (the final window is past it); every number inside the final window was accepted
/// and is still recorded.
#[test]
fn concurrent_disjoint_increasing_marks_lose_nothing() {
    const N: u64 = 200_000;
    for size in [64, 1024] {
        let window = Arc::new(ReplayWindow::new(size));
        let size = size as u64;
        // 0 = not tried, 1 = accepted, 2 = too old.
        let outcome: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS as u64)
            .map(|t| {
                let (window, outcome, barrier) = (window.clone(), outcome.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for s in (t..N).step_by(THREADS) {
                        let o = match window.mark(s) {
                            Ok(()) => 1,
                            Err(ReplayError::TooOld) => 2,
                            Err(e) => panic!("mark({s}) = {e:?}: nobody else marks {s}"),
                        };
                        outcome[s as usize].store(o, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let h = window.highest().unwrap();
        // The largest number can never be too old, so it is the final highest.
        assert_eq!(h, N - 1);
        let mut accepted = 0;
        for (s, o) in outcome.iter().enumerate() {
            let (s, o) = (s as u64, o.load(Ordering::Relaxed));
            match o {
                1 => accepted += 1,
                2 => assert!(s + size <= h, "W={size}: {s} refused as too old inside the final window"),
                _ => panic!("{s} never tried"),
            }
            if s + size > h {
                assert_eq!(o, 1, "W={size}: {s} lost");
                assert_eq!(window.check(s), Err(ReplayError::Replayed), "W={size}: {s} forgotten");
            }
        }
        assert!(accepted >= size, "W={size}: only {accepted} accepted");
    }
}

/// `check` racing with `mark` never sees a torn state: a number marked before the readers
/// start is reported `Replayed` throughout, while writers keep moving the window within reach.
#[test]
fn concurrent_checks_see_consistent_state() {
    let window = Arc::new(ReplayWindow::new(1024));
    // Marked up front; writers only mark 600..1100 (h <= 1099), so 599 and 600 stay inside the window.
    window.mark(600).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (window, barrier) = (window.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..50_000u64 {
                    if t < 2 {
                        let _ = window.mark(600 + (i * 2 + t) % 500);
                    } else {
                        assert_eq!(window.check(600), Err(ReplayError::Replayed));
                        assert_eq!(window.check(599), Ok(()));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(window.highest().unwrap() <= 1100);
}
