//! 1 → 1,000,000 SAs in one ingress (issue 16): how the data path's lookups and requests per
//! second, and the resident set, change with the number of SAs in the table.
//!
//! For each size N, a fresh child process (the bench runs itself again with `--child N`):
//!
//! * installs N SAs in one `SaTable` (the Responder's data-path entries of an SA established
//!   once, cloned under N distinct random identifiers, each with its own peer node ID as from N
//!   devices; 1024-message window) and measures the resident-set growth (the data-path entries
//!   and both of the table's indexes);
//! * **lookups**: `SaTable::get` of identifiers drawn at random from the N present ones;
//! * **requests**: what an ingress does per secured request on the data path, in the compact
//!   form with a small RETRIEVE and an answer as long: copy the datagram, decode the header,
//!   look up its SA, open it (replay window check and mark), seal the answer under the epoch
//!   the request came in. The requests were sealed in advance by Initiator entries of up to 4,096
//!   SAs drawn at random from the N (every SA of a smaller table), in a random order, so that
//!   consecutive requests land on unrelated entries as they do from many peers;
//! * **ingress requests**: the same requests, each as the outer NOTIFY a binding hands to the
//!   node (the compact bytes as its `sa:cmp` content), through [`ReceiveSecure`] of a node whose
//!   inbound table holds the N SAs, to a protected service that answers at once: the primitive
//!   parsed, its originator checked against the SA, the answer serialized and sealed — the
//!   node's whole per-request work except the binding's I/O, on one thread.
//!
//! Each size runs twice, the sizes interleaved up and then down, and the better run counts (the
//! machines are shared and noisy); the figures are reported as ratios against N = 1 measured in
//! the same run. The per-request cost of establishing the SAs is not part of it (1,000,000 full
//! establishments would take minutes of CPU on both ends): the entries are installed from one
//! established SA, which gives every entry its own key contexts and window as an establishment
//! would. Linux only (reads /proc/self/statm). A benchmark: it prints figures and asserts nothing.
//!
//! Run: `cargo bench -p onem2m-sa-tower --bench scale` (`-- --max N` for a smaller largest size).

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc, compact};
use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::manage::{Limits, Timing};
use onem2m_sa::rng::SeededRng;
use onem2m_sa::secure::{Encoding, decode_compact};
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::testkit::{TestPki, initiator_config, linked, responder_config};
use onem2m_sa::{Now, SaId};
use onem2m_sa_tower::{BoxError, InboundRequest, Node, NodeConfig, PlaintextPolicy, ReceiveSecureLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

const SIZES: [usize; 5] = [1, 1_000, 10_000, 100_000, 1_000_000];
/// Lookups per measurement.
const LOOKUPS: usize = 4_000_000;
/// Secured requests per measurement (each opened once: the replay window refuses a second time).
const REQUESTS: usize = 200_000;
/// Most SAs that send the requests.
const SENDERS: usize = 4_096;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// splitmix64: a fixed-seed PRNG for identifiers and orders.
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

/// What one child measured.
struct Figures {
    n: usize,
    rss_per_sa: usize,
    rss_total: usize,
    install_ns_per_sa: f64,
    lookups_per_sec: f64,
    requests_per_sec: f64,
    ingress_per_sec: f64,
}

fn child(n: usize) {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let now = Now::new(1_000, unix);
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 9, now);
    let initiator = l.pair.initiator.sas().next().expect("established").sa.clone();
    let responder = l.pair.responder.sas().next().expect("established").sa.clone();
    drop(l);

    let mut rng = SplitMix(0x5ca1e ^ n as u64);
    let ids: Vec<SaId> = (0..n).map(|_| SaId(rng.next().to_be_bytes())).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let node = rt.block_on(async { Node::new(node_config(unix)) });
    let table = node.inbound().clone();
    let before = rss_bytes();
    let start = Instant::now();
    for (k, id) in ids.iter().enumerate() {
        let mut sa = responder.clone();
        sa.sa_id = *id;
        sa.peer = NodeId::new(format!("/id-p{k}")).expect("a node ID");
        table.install(&sa);
    }
    let install = start.elapsed();
    let rss_total = rss_bytes().saturating_sub(before);
    assert_eq!(table.len(), n, "identifiers collided");

    // The senders, and the requests they sealed, in a random order over the senders.
    let senders: Vec<Arc<SaEntry>> = {
        let mut picked: Vec<SaId> =
            if n <= SENDERS { ids.clone() } else { (0..SENDERS).map(|_| ids[rng.below(n)]).collect() };
        picked.sort_unstable_by_key(|id| id.0);
        picked.dedup();
        let out = SaTable::new(TableConfig::default());
        picked
            .into_iter()
            .map(|id| {
                let mut sa = initiator.clone();
                sa.sa_id = id;
                out.install(&sa)
            })
            .collect()
    };
    let primitive = retrieve().to_binary_vec().unwrap();
    let answer = vec![0xa5u8; primitive.len()];
    let (mut wires, mut offsets) = (Vec::with_capacity(REQUESTS * 160), Vec::with_capacity(REQUESTS));
    let mut one = Vec::new();
    for _ in 0..REQUESTS {
        let sender = &senders[rng.below(senders.len())];
        sender.seal(Encoding::Compact, &primitive, &mut one).expect("seals");
        offsets.push((wires.len(), one.len()));
        wires.extend_from_slice(&one);
    }

    // Lookups of identifiers present in the table, in a random order.
    let mut lookup_rng = SplitMix(7);
    let start = Instant::now();
    let mut found = 0usize;
    for _ in 0..LOOKUPS {
        let id = ids[lookup_rng.below(n)];
        found += usize::from(table.get(black_box(id)).is_some());
    }
    let lookups = start.elapsed();
    assert_eq!(found, LOOKUPS);

    // Requests through the data path.
    let (mut datagram, mut out) = (Vec::with_capacity(256), Vec::with_capacity(256));
    let start = Instant::now();
    for &(at, len) in &offsets {
        datagram.clear();
        datagram.extend_from_slice(&wires[at..at + len]);
        let sealed = decode_compact(&mut datagram).expect("decodes");
        let entry = table.get(sealed.header.sa_id).expect("present");
        let (plain, epoch) = entry.open(sealed).expect("opens");
        black_box(plain.len());
        entry.seal_with(&epoch, Encoding::Compact, &answer, &mut out).expect("seals the answer");
        black_box(out.len());
    }
    let requests = start.elapsed();

    // The same requests, sealed again (the data path above marked them seen), through the node.
    wires.clear();
    offsets.clear();
    for _ in 0..REQUESTS {
        let sender = &senders[rng.below(senders.len())];
        sender.seal(Encoding::Compact, &primitive, &mut one).expect("seals");
        offsets.push((wires.len(), one.len()));
        wires.extend_from_slice(&one);
    }
    let protected = service_fn(|req: InboundRequest| async move {
        let mut rsp = ResponsePrimitive::new(Rsc::OK, &req.primitive.rqi);
        rsp.rvi = Some("3".to_owned());
        rsp.pc = Some(serde_json::json!({"m2m:cin": {"con": "21.5", "cnf": "text/plain:0", "cs": 4}}));
        Ok::<_, BoxError>(rsp)
    });
    let mut svc = ReceiveSecureLayer::new(node.clone(), PlaintextPolicy::default()).layer(protected);
    let ingress = rt.block_on(async {
        let start = Instant::now();
        for (k, &(at, len)) in offsets.iter().enumerate() {
            // What a binding hands over: the outer NOTIFY, its content the compact bytes.
            let mut outer =
                RequestPrimitive::new(Operation::Notify, "/id-in", Some("/id-asn".to_owned()), format!("sec-{k}"));
            outer.rvi = Some("3".to_owned());
            outer.pc = Some(compact::content(&wires[at..at + len]));
            let rsp = svc.ready().await.unwrap().call(outer).await.unwrap();
            assert_eq!(rsp.rsc, Rsc::OK, "{rsp:?}");
            black_box(rsp);
        }
        start.elapsed()
    });

    let f = Figures {
        n,
        rss_per_sa: rss_total / n,
        rss_total,
        install_ns_per_sa: install.as_nanos() as f64 / n as f64,
        lookups_per_sec: LOOKUPS as f64 / lookups.as_secs_f64(),
        requests_per_sec: REQUESTS as f64 / requests.as_secs_f64(),
        ingress_per_sec: REQUESTS as f64 / ingress.as_secs_f64(),
    };
    println!(
        "{} {} {} {} {} {} {}",
        f.n, f.rss_per_sa, f.rss_total, f.install_ns_per_sa, f.lookups_per_sec, f.requests_per_sec, f.ingress_per_sec
    );
}

/// A small RETRIEVE, as a device polls a reading.
fn retrieve() -> RequestPrimitive {
    let mut req = RequestPrimitive::new(
        Operation::Retrieve,
        "/id-in/cse-in/meter/t/la",
        Some("Cmeter".to_owned()),
        "r-1".to_owned(),
    );
    req.rvi = Some("3".to_owned());
    req
}

/// The ingress node (its own credentials; the installed SAs were established elsewhere).
fn node_config(unix: u64) -> NodeConfig {
    let mut rng = SeededRng::new([11; 32]);
    let pki = TestPki::new(&mut rng, unix);
    let creds = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    NodeConfig {
        initiator: initiator_config(creds.clone(), pki.anchors.clone(), &[Suite::ALL[0]]),
        responder: responder_config(creds, pki.anchors.clone(), &[Suite::ALL[0]]),
        timing: Timing::default(),
        limits: Limits::default(),
        table: TableConfig::default(),
        rb_timeout: Duration::from_secs(10),
    }
}

fn run_child(n: usize) -> Figures {
    let out = Command::new(std::env::current_exe().unwrap()).args(["--child", &n.to_string()]).output().unwrap();
    assert!(out.status.success(), "child {n} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<&str> = text.split_whitespace().collect();
    Figures {
        n: v[0].parse().unwrap(),
        rss_per_sa: v[1].parse().unwrap(),
        rss_total: v[2].parse().unwrap(),
        install_ns_per_sa: v[3].parse().unwrap(),
        lookups_per_sec: v[4].parse().unwrap(),
        requests_per_sec: v[5].parse().unwrap(),
        ingress_per_sec: v[6].parse().unwrap(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(args[i + 1].parse().expect("a size"));
    }
    // `cargo test --benches` runs bench targets without `--bench`: only measure when benched.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let max = args.iter().position(|a| a == "--max").map_or(usize::MAX, |i| args[i + 1].parse().expect("a size"));
    let sizes: Vec<usize> = SIZES.into_iter().filter(|&n| n <= max).collect();
    // Up, then down: a drift of the machine's speed falls on both ends of the curve alike.
    let order: Vec<usize> = sizes.iter().copied().chain(sizes.iter().rev().copied()).collect();
    let mut best: Vec<Option<Figures>> = sizes.iter().map(|_| None).collect();
    for n in order {
        let f = run_child(n);
        let slot = &mut best[sizes.iter().position(|&s| s == n).unwrap()];
        *slot = Some(match slot.take() {
            None => f,
            Some(b) => Figures {
                n,
                rss_per_sa: b.rss_per_sa.min(f.rss_per_sa),
                rss_total: b.rss_total.min(f.rss_total),
                install_ns_per_sa: b.install_ns_per_sa.min(f.install_ns_per_sa),
                lookups_per_sec: b.lookups_per_sec.max(f.lookups_per_sec),
                requests_per_sec: b.requests_per_sec.max(f.requests_per_sec),
                ingress_per_sec: b.ingress_per_sec.max(f.ingress_per_sec),
            },
        });
    }
    let best: Vec<Figures> = best.into_iter().map(Option::unwrap).collect();
    let (l1, r1, i1) = (best[0].lookups_per_sec, best[0].requests_per_sec, best[0].ingress_per_sec);
    println!("SAs in one ingress (X25519_AES128GCM_SHA256, window 1024; compact form, a small RETRIEVE):");
    println!();
    println!(
        "| SAs | lookups/s | vs 1 SA | data path req/s | vs 1 SA | ingress req/s | vs 1 SA | RSS growth | per SA | install |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &best {
        println!(
            "| {} | {:.2} M | {:.2}× | {:.0} k | {:.2}× | {:.0} k | {:.2}× | {:.1} MiB | {} B | {:.0} ns/SA |",
            f.n,
            f.lookups_per_sec / 1e6,
            f.lookups_per_sec / l1,
            f.requests_per_sec / 1e3,
            f.requests_per_sec / r1,
            f.ingress_per_sec / 1e3,
            f.ingress_per_sec / i1,
            f.rss_total as f64 / (1024.0 * 1024.0),
            f.rss_per_sa,
            f.install_ns_per_sa
        );
    }
}
