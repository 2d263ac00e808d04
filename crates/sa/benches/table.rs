//! SA table lookup under contention: `papaya::HashMap`, `dashmap::DashMap` and
//! `RwLock<std::collections::HashMap>`, each mapping a random `u64` SA identifier to
//! `Arc<Entry>` (a 256-byte entry of atomics).
//!
//! Hot path, per lookup: look up the key, clone the `Arc`, drop the map guard at once, then
//! `fetch_add` the entry's send counter. T reader threads (T = 1, 2, 4) each do a fixed number of
//! lookups of keys that are present, in a per-thread random order. In the churn variant ONE writer
//! thread meanwhile inserts a fresh key and removes the oldest churn key, in a loop, until the
//! readers finish; the read-only variant has no writer. The table holds 10,000 entries throughout
//! (9,000 stable keys that the readers look up, 1,000 keys that the writer churns).
//!
//! Wall time of the readers (`Instant`), median of 5 runs after one warm-up run, maps interleaved
//! run by run so that machine noise falls on all three alike. Prints markdown tables; asserts
//! nothing about timing (a benchmark, not a test).
//!
//! Memory: the workspace forbids `unsafe_code`, which a counting `#[global_allocator]` would need,
//! so the bench re-runs itself once per map in a child process and reports the resident-set growth
//! while 10,000 keys are inserted (entries allocated beforehand), next to a model estimate from
//! the maps' capacities.
//!
//! Per-peer lookup (the send path's `live_outbound`): the former `SaTable::by_peer` (a Mutex
//! over peer → identifiers, the list cloned, each identifier looked up, the first active entry
//! taken) against `SaTable::live_by_peer` (a lock-free `papaya` map of peer → entry list), on a
//! real `SaTable` of 1,000 peers, T = 1, 2, 4 reader threads.
//!
//! Run: `cargo bench -p onem2m-sa --bench table` (`-- --by-peer` for the per-peer part only).

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::mem::size_of;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::Instant;

use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::Suite;
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::{Now, SaId};

/// Entries in the table at all times.
const ENTRIES: usize = 10_000;
/// Keys the writer churns (inserted fresh, removed oldest first); the rest are stable.
const CHURN: usize = 1_000;
const STABLE: usize = ENTRIES - CHURN;
/// Lookups per reader thread per run.
const LOOKUPS: usize = 3_000_000;
const RUNS: usize = 5;
const THREADS: [usize; 3] = [1, 2, 4];

/// Stand-in for the SA entry: atomics only, 256 bytes.
struct Entry {
    send_counter: AtomicU64,
    state: AtomicU8,
    key_epoch: AtomicU32,
    _rest: [AtomicU64; 30],
}

const _: () = assert!(size_of::<Entry>() == 256);

impl Entry {
    fn new(seed: u64) -> Self {
        Self {
            send_counter: AtomicU64::new(0),
            state: AtomicU8::new(1),
            key_epoch: AtomicU32::new(0),
            _rest: std::array::from_fn(|i| AtomicU64::new(seed ^ i as u64)),
        }
    }
}

/// splitmix64: a fixed-seed PRNG, good enough for keys and shuffles.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The three tables behind one interface; each `get` takes and drops its guard internally.
trait Table: Sync {
    const NAME: &'static str;
    fn new() -> Self;
    fn get(&self, key: u64) -> Option<Arc<Entry>>;
    fn insert(&self, key: u64, value: Arc<Entry>);
    fn remove(&self, key: u64);
    /// Bytes of the map's own structures per entry, from its capacity (a model, not a measure).
    fn model_bytes(&self) -> usize;
}

type Papaya = papaya::HashMap<u64, Arc<Entry>>;
type Dash = dashmap::DashMap<u64, Arc<Entry>>;
type Locked = RwLock<HashMap<u64, Arc<Entry>>>;

/// Heap chunk glibc malloc hands out for a request of `n` bytes (16-byte steps, 8-byte header).
fn malloc_chunk(n: usize) -> usize {
    (n + 8).max(32).next_multiple_of(16)
}

/// hashbrown's table bytes for a given usable capacity (7/8 load, one control byte per bucket).
fn hashbrown_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8).div_ceil(7).next_power_of_two();
    buckets * slot + buckets + 16
}

impl Table for Papaya {
    const NAME: &'static str = "papaya::HashMap";
    fn new() -> Self {
        papaya::HashMap::new()
    }
    fn get(&self, key: u64) -> Option<Arc<Entry>> {
        self.pin().get(&key).cloned()
    }
    fn insert(&self, key: u64, value: Arc<Entry>) {
        self.pin().insert(key, value);
    }
    fn remove(&self, key: u64) {
        self.pin().remove(&key);
    }
    fn model_bytes(&self) -> usize {
        // papaya exposes no capacity: model its sizing rule (8/6 headroom, power of two) with a
        // pointer + one metadata byte per slot, plus one boxed (key, value) per entry.
        let slots = (self.len() * 8 / 6).next_power_of_two();
        slots * (size_of::<usize>() + 1) + self.len() * malloc_chunk(size_of::<(u64, Arc<Entry>)>())
    }
}

impl Table for Dash {
    const NAME: &'static str = "dashmap::DashMap";
    fn new() -> Self {
        dashmap::DashMap::new()
    }
    fn get(&self, key: u64) -> Option<Arc<Entry>> {
        // The rule from reference/rust.md §4: clone the Arc, drop the Ref at once.
        self.get(&key).map(|r| r.value().clone())
    }
    fn insert(&self, key: u64, value: Arc<Entry>) {
        self.insert(key, value);
    }
    fn remove(&self, key: u64) {
        self.remove(&key);
    }
    fn model_bytes(&self) -> usize {
        // Shards differ in size; modelling the total capacity as one table is close enough.
        hashbrown_bytes(self.capacity(), size_of::<(u64, Arc<Entry>)>())
    }
}

impl Table for Locked {
    const NAME: &'static str = "RwLock<HashMap>";
    fn new() -> Self {
        RwLock::new(HashMap::new())
    }
    fn get(&self, key: u64) -> Option<Arc<Entry>> {
        self.read().unwrap().get(&key).cloned()
    }
    fn insert(&self, key: u64, value: Arc<Entry>) {
        self.write().unwrap().insert(key, value);
    }
    fn remove(&self, key: u64) {
        self.write().unwrap().remove(&key);
    }
    fn model_bytes(&self) -> usize {
        hashbrown_bytes(self.read().unwrap().capacity(), size_of::<(u64, Arc<Entry>)>())
    }
}

/// Keys shared by every map: the stable set and, per reader thread, its own lookup order.
struct Keys {
    stable: Vec<u64>,
    orders: Vec<Vec<u64>>,
}

impl Keys {
    fn new() -> Self {
        let mut rng = SplitMix(0x5A_7AB1E);
        let stable: Vec<u64> = (0..STABLE).map(|_| rng.next()).collect();
        let orders = (0..*THREADS.iter().max().unwrap())
            .map(|t| {
                let mut order = stable.clone();
                let mut rng = SplitMix(0x0DE5 + t as u64);
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                order
            })
            .collect();
        Self { stable, orders }
    }
}

/// One map under test, with the writer's state (its churn keys, oldest first, and its PRNG).
struct Fixture<M> {
    map: M,
    churn: VecDeque<u64>,
    rng: SplitMix,
}

impl<M: Table> Fixture<M> {
    fn new(keys: &Keys) -> Self {
        let map = M::new();
        for &k in &keys.stable {
            map.insert(k, Arc::new(Entry::new(k)));
        }
        // Same writer seed for every map: all three see the same key sequence.
        let mut rng = SplitMix(0xC4_0125);
        let churn: VecDeque<u64> = (0..CHURN).map(|_| rng.next()).collect();
        for &k in &churn {
            map.insert(k, Arc::new(Entry::new(k)));
        }
        Self { map, churn, rng }
    }

    /// One run: `threads` readers of `lookups` each, with or without the churning writer.
    fn run(&mut self, keys: &Keys, threads: usize, lookups: usize, writer: bool) -> Sample {
        let Self { map, churn, rng } = self;
        let map = &*map;
        let stop = AtomicBool::new(false);
        let barrier = Barrier::new(threads + 1 + usize::from(writer));
        std::thread::scope(|s| {
            let writer = writer.then(|| {
                s.spawn(|| {
                    barrier.wait();
                    let mut pairs = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let fresh = rng.next();
                        map.insert(fresh, Arc::new(Entry::new(fresh)));
                        let old = churn.pop_front().unwrap();
                        map.remove(old);
                        churn.push_back(fresh);
                        pairs += 1;
                    }
                    pairs
                })
            });
            let readers: Vec<_> = keys.orders[..threads]
                .iter()
                .map(|order| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let cpu0 = on_cpu_ns();
                        let mut hits = 0usize;
                        for &k in order.iter().cycle().take(lookups) {
                            let Some(entry) = map.get(black_box(k)) else { continue };
                            if entry.state.load(Ordering::Relaxed) == 1 {
                                let seq = entry.send_counter.fetch_add(1, Ordering::Relaxed);
                                black_box((seq, entry.key_epoch.load(Ordering::Relaxed)));
                                hits += 1;
                            }
                        }
                        (black_box(hits), on_cpu_ns() - cpu0)
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let done: Vec<(usize, u64)> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            let elapsed = start.elapsed();
            let hits: usize = done.iter().map(|d| d.0).sum();
            let cpu_ns: u64 = done.iter().map(|d| d.1).sum();
            stop.store(true, Ordering::Relaxed);
            let pairs = writer.map_or(0, |w| w.join().unwrap());
            // Readers only ask for stable keys, which the writer never removes.
            assert_eq!(hits, threads * lookups, "{}: a stable key went missing", M::NAME);
            let secs = elapsed.as_secs_f64();
            Sample { per_thread: lookups as f64 / secs, churn: pairs as f64 / secs, cores: cpu_ns as f64 / 1e9 / secs }
        })
    }
}

#[derive(Clone, Copy)]
struct Sample {
    /// Lookups per second per reader thread.
    per_thread: f64,
    /// Writer insert+remove pairs per second.
    churn: f64,
    /// CPU time the readers got, in cores (sum of on-CPU time / wall time): on a shared machine
    /// this shows how much of it the run really had.
    cores: f64,
}

/// This thread's on-CPU time so far, from the scheduler (Linux; 0 elsewhere).
fn on_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct Row {
    map: &'static str,
    threads: usize,
    median: f64,
    min: f64,
    max: f64,
    churn: f64,
    cores: f64,
}

fn summarize(map: &'static str, threads: usize, samples: &[Sample]) -> Row {
    let per: Vec<f64> = samples.iter().map(|s| s.per_thread).collect();
    Row {
        map,
        threads,
        median: median(per.clone()),
        min: per.iter().copied().fold(f64::INFINITY, f64::min),
        max: per.iter().copied().fold(0.0, f64::max),
        churn: median(samples.iter().map(|s| s.churn).collect()),
        cores: median(samples.iter().map(|s| s.cores).collect()),
    }
}

/// All three maps at one thread count: warm up, then `RUNS` rounds, the maps interleaved.
fn measure(keys: &Keys, threads: usize, writer: bool) -> Vec<Row> {
    let mut papaya = Fixture::<Papaya>::new(keys);
    let mut dash = Fixture::<Dash>::new(keys);
    let mut locked = Fixture::<Locked>::new(keys);
    papaya.run(keys, threads, LOOKUPS, writer);
    dash.run(keys, threads, LOOKUPS, writer);
    locked.run(keys, threads, LOOKUPS, writer);
    let (mut p, mut d, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        p.push(papaya.run(keys, threads, LOOKUPS, writer));
        d.push(dash.run(keys, threads, LOOKUPS, writer));
        l.push(locked.run(keys, threads, LOOKUPS, writer));
    }
    vec![summarize(Papaya::NAME, threads, &p), summarize(Dash::NAME, threads, &d), summarize(Locked::NAME, threads, &l)]
}

fn print_table(rows: &[Row], writer: bool) {
    if writer {
        println!(
            "| readers T | map | lookups/s per reader (median) | min – max | ratio to RwLock<HashMap> | reader CPU (cores) | writer churn pairs/s |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|");
    } else {
        println!(
            "| readers T | map | lookups/s per reader (median) | min – max | ratio to RwLock<HashMap> | reader CPU (cores) |"
        );
        println!("|---:|---|---:|---:|---:|---:|");
    }
    for row in rows {
        let base = rows.iter().find(|r| r.threads == row.threads && r.map == Locked::NAME).unwrap().median;
        print!(
            "| {} | `{}` | {} | {} – {} | {:.2}× | {:.2} |",
            row.threads,
            row.map,
            mops(row.median),
            mops(row.min),
            mops(row.max),
            row.median / base,
            row.cores
        );
        if writer {
            print!(" {} |", mops(row.churn));
        }
        println!();
    }
}

fn mops(x: f64) -> String {
    format!("{:.2} M", x / 1e6)
}

// --- memory ---------------------------------------------------------------------------------

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// In a fresh process: allocate the entries, then insert them, and print the RSS growth and the
/// model estimate (bytes per entry, excluding the `Arc<Entry>` allocation itself).
fn memory_child<M: Table>() {
    let keys = Keys::new();
    let mut rng = SplitMix(0xC4_0125);
    let all: Vec<(u64, Arc<Entry>)> = keys
        .stable
        .iter()
        .copied()
        .chain((0..CHURN).map(|_| rng.next()))
        .map(|k| (k, Arc::new(Entry::new(k))))
        .collect();
    let map = M::new();
    let before = rss_bytes();
    for (k, v) in &all {
        map.insert(*k, v.clone());
    }
    let after = rss_bytes();
    println!("{} {}", (after - before) / ENTRIES, map.model_bytes() / ENTRIES);
    black_box(&map);
}

fn memory_of(name: &str) -> (usize, usize) {
    let out = Command::new(std::env::current_exe().unwrap()).args(["--memory-child", name]).output().unwrap();
    assert!(out.status.success(), "memory child for {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        match args[i + 1].as_str() {
            "papaya" => memory_child::<Papaya>(),
            "dashmap" => memory_child::<Dash>(),
            _ => memory_child::<Locked>(),
        }
        return;
    }

    let started = Instant::now();
    by_peer_section();
    if args.iter().any(|a| a == "--by-peer") {
        return;
    }
    let keys = Keys::new();
    println!(
        "SA table lookup under contention: {ENTRIES} entries of {} B, {LOOKUPS} lookups per reader per run, median of {RUNS} runs after 1 warm-up run",
        size_of::<Entry>()
    );
    println!("available parallelism: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));

    for writer in [true, false] {
        println!();
        if writer {
            println!("### Lookups with one concurrent writer (insert fresh key + remove oldest, continuously)");
        } else {
            println!("### Read-only (no writer)");
        }
        println!();
        let rows: Vec<Row> = THREADS.iter().flat_map(|&t| measure(&keys, t, writer)).collect();
        print_table(&rows, writer);
    }

    println!();
    println!(
        "### Map memory per entry at {ENTRIES} entries (excluding the {} B `Arc<Entry>` itself)",
        size_of::<Entry>()
    );
    println!();
    println!("| map | RSS growth per entry | model from capacity per entry |");
    println!("|---|---:|---:|");
    for (name, arg) in [(Papaya::NAME, "papaya"), (Dash::NAME, "dashmap"), (Locked::NAME, "rwlock")] {
        let (rss, model) = memory_of(arg);
        println!("| `{name}` | {rss} B | {model} B |");
    }
    println!();
    println!("total bench time: {:.1} s", started.elapsed().as_secs_f64());
}

/// Peers in the per-peer lookup table, one SA each.
const PEERS: usize = 1_000;
/// Per-peer lookups per reader thread per run.
const PEER_LOOKUPS: usize = 1_000_000;

/// The per-peer index as it was: a Mutex over peer → identifiers, cloned per lookup.
struct LockedPeerIndex(std::sync::Mutex<HashMap<NodeId, Vec<SaId>>>);

impl LockedPeerIndex {
    fn live(&self, table: &SaTable, peer: &NodeId) -> Option<Arc<SaEntry>> {
        let ids = self.0.lock().unwrap().get(peer).cloned().unwrap_or_default();
        ids.into_iter().filter_map(|id| table.get(id)).find(|e| e.is_active())
    }
}

fn by_peer_section() {
    let now = Now::new(1_000, 1_800_000_000);
    let linked = onem2m_sa::testkit::linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 1, now);
    let sa = linked.pair.initiator.sa(linked.sa_id).unwrap().sa.clone();
    let table = SaTable::new(TableConfig::default());
    let index = LockedPeerIndex(std::sync::Mutex::new(HashMap::new()));
    let mut peers = Vec::new();
    for p in 0..PEERS {
        let mut s = sa.clone();
        s.sa_id = SaId((p as u64 + 1).to_be_bytes());
        s.peer = NodeId::new(format!("/peer-{p}")).unwrap();
        table.install(&s);
        index.0.lock().unwrap().entry(s.peer.clone()).or_default().push(s.sa_id);
        peers.push(s.peer);
    }
    let mut rng = SplitMix(0x9EE7);
    let orders: Vec<Vec<usize>> =
        (0..4).map(|_| (0..PEER_LOOKUPS.min(65_536)).map(|_| rng.below(PEERS)).collect()).collect();
    println!("### Per-peer lookup of the live SA ({PEERS} peers), lookups per second per reader thread");
    println!();
    println!("| threads | Mutex + Vec clone (former `by_peer`) | `live_by_peer` | ratio |");
    println!("|---:|---:|---:|---:|");
    for threads in THREADS {
        let run = |lockfree: bool| {
            let barrier = Barrier::new(threads);
            let rates: Vec<f64> = std::thread::scope(|s| {
                let handles: Vec<_> = orders[..threads]
                    .iter()
                    .map(|order| {
                        let (barrier, table, index, peers) = (&barrier, &table, &index, &peers);
                        s.spawn(move || {
                            barrier.wait();
                            let start = Instant::now();
                            let mut hits = 0usize;
                            for &p in order.iter().cycle().take(PEER_LOOKUPS) {
                                let peer = black_box(&peers[p]);
                                let e = if lockfree { table.live_by_peer(peer) } else { index.live(table, peer) };
                                hits += usize::from(e.is_some());
                            }
                            assert_eq!(hits, PEER_LOOKUPS);
                            PEER_LOOKUPS as f64 / start.elapsed().as_secs_f64()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            rates.iter().sum::<f64>() / rates.len() as f64
        };
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for _ in 0..=RUNS {
            old.push(run(false));
            new.push(run(true));
        }
        let (old, new) = (median(old[1..].to_vec()), median(new[1..].to_vec()));
        println!("| {threads} | {} | {} | {:.1}x |", mops(old), mops(new), new / old);
    }
    println!();
}
