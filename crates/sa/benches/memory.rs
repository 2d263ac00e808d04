//! Memory of one SA: resident set growth while 20,000 SAs are installed in an `SaTable` (the
//! data path's entry at rest: raw keys, the replay window, counters), then while a message is
//! sealed under each (in use: the epoch's two aws-lc AEAD contexts are built; the table's sweep
//! releases them once the SA is idle), and while the SA Management's record of each
//! (`EstablishedSa` with its session keys) is kept.
//!
//! Then **per end, as established**: 2,000 SAs established one after the other through both SA
//! Managements (each with its table attached), each end measured in a fresh child process (the
//! bench runs itself again with `--per-end MODE`): both ends kept; only the Responder's end
//! kept (the Initiator forgets each SA once established); only the Initiator's end kept; the
//! Responder's end with each SA carrying a request and its answer (contexts built). This
//! counts everything an established SA holds at each end: the data-path entry, the SA
//! Management record, what the Responder keeps for retransmissions and replayed SaInits. The
//! virtual clock advances 130 ms per establishment (under the per-source SaInit rate, so no
//! cookie round trips), so all 2,000 fall within the 5-minute nonce memory. Linux only (reads
//! /proc/self/statm). A benchmark: it prints figures and asserts nothing.

use std::process::Command;
use std::sync::Arc;

use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::InitiateSaRequest;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::secure::{Encoding, decode_compact};
use onem2m_sa::table::{SaTable, TableConfig};
use onem2m_sa::testkit::{Pair, TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};

const N: usize = 20_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// SAs established per child of the per-end measurement.
/// (`MEMORY_ESTABLISHED` overrides it: past ≈ 2,300 the first SAs' SaInit nonces are forgotten
/// before the last is established, so the Responder's figure no longer includes them.)
const ESTABLISHED_DEFAULT: usize = 2_000;

fn established() -> usize {
    std::env::var("MEMORY_ESTABLISHED").ok().and_then(|v| v.parse().ok()).unwrap_or(ESTABLISHED_DEFAULT)
}

/// Which ends of each established SA the per-end child keeps.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    Both,
    Responder,
    Initiator,
}

/// One request and its answer over the SA (compact form), as the data path carries them: the
/// epochs' AEAD contexts are built at both ends.
fn exchange(ti: &SaTable, tr: &SaTable, sa_id: SaId) {
    let (ei, er) = (ti.get(sa_id).unwrap(), tr.get(sa_id).unwrap());
    let mut wire = Vec::new();
    ei.seal(Encoding::Compact, br#"{"op":2,"to":"/id-in/cse-base","fr":"CAE01","rqi":"r-1","rvi":"3"}"#, &mut wire)
        .unwrap();
    let (_, epoch) = er.open(decode_compact(&mut wire).unwrap()).unwrap();
    er.seal_with(&epoch, Encoding::Compact, br#"{"rsc":2000,"rqi":"r-1"}"#, &mut wire).unwrap();
    ei.open(decode_compact(&mut wire).unwrap()).unwrap();
}

/// A per-end child: establishes [`established`] SAs, keeping the ends `keep` says (with
/// `in_use`, each SA carries a request and its answer once established); prints the
/// resident-set growth per SA.
fn per_end_child(keep: Keep, in_use: bool) {
    let now = Now::new(1_000, 1_800_000_000);
    let mut rng = SeededRng::new([5; 32]);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let suite = Suite::X25519_AES128GCM_SHA256;
    let mut pair = Pair::new(
        initiator_config(i, pki.anchors.clone(), &[suite]),
        responder_config(r, pki.anchors.clone(), &[suite]),
        5,
        now,
    );
    let established = established();
    pair.responder.set_max_sas_per_peer(2 * established);
    let (ti, tr) = (Arc::new(SaTable::new(TableConfig::default())), Arc::new(SaTable::new(TableConfig::default())));
    pair.initiator.attach_table(ti.clone());
    pair.responder.attach_table(tr.clone());
    let req = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
    let establish = |pair: &mut Pair| {
        let ex = pair.initiator.initiate(&req, pair.now, &mut pair.rng).unwrap();
        pair.send(ex);
        pair.run(100);
        pair.wire.clear();
        pair.initiator_events.clear();
        pair.responder_events.clear();
        pair.now = pair.now.after_ms(130);
        // The Responder's timers, as a node's agent runs them (every second): what it keeps only
        // for a while (the establishment reply, for retransmissions) goes when its time is up.
        let _ = pair.responder.handle_timeout(pair.now);
    };
    // Warm up: the first establishments allocate what every later one reuses.
    for _ in 0..20 {
        establish(&mut pair);
    }
    // Only the ends kept from here on count: the warm-up's other ends go now.
    let warm: Vec<_> = match keep {
        Keep::Both => Vec::new(),
        Keep::Responder => pair.initiator.sas().map(|r| r.sa.sa_id).collect(),
        Keep::Initiator => pair.responder.sas().map(|r| r.sa.sa_id).collect(),
    };
    for sa_id in warm {
        if keep == Keep::Responder {
            pair.initiator.forget(sa_id, pair.now);
            ti.unmap(sa_id);
        } else {
            pair.responder.remove_local(sa_id, pair.now);
        }
    }
    let (sas_i, sas_r) = (ti.len(), tr.len());
    let before = rss_bytes();
    for _ in 0..established {
        establish(&mut pair);
        if in_use {
            let newest = pair.initiator.sas().map(|r| r.sa.sa_id).find(|id| {
                ti.get(*id).is_some_and(|e| !e.current_epoch().unwrap().has_contexts()) && tr.get(*id).is_some()
            });
            exchange(&ti, &tr, newest.expect("the SA just established"));
        }
        // The other end holds only the SA just established: every earlier one was dropped.
        match keep {
            Keep::Both => {}
            Keep::Responder => {
                let sa_id = pair.initiator.sas().next().map(|r| r.sa.sa_id).unwrap();
                pair.initiator.forget(sa_id, pair.now);
                ti.unmap(sa_id);
            }
            Keep::Initiator => {
                let sa_id = pair.responder.sas().next().map(|r| r.sa.sa_id).unwrap();
                pair.responder.remove_local(sa_id, pair.now);
            }
        }
    }
    let grown = rss_bytes() - before;
    let (kept_i, kept_r) = (ti.len() - sas_i, tr.len() - sas_r);
    println!("{} {} {}", grown / established, kept_i, kept_r);
}

fn per_end(mode: &str) -> (usize, usize, usize) {
    let out = Command::new(std::env::current_exe().unwrap()).args(["--per-end", mode]).output().unwrap();
    assert!(out.status.success(), "per-end child {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

pub(crate) fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--per-end") {
        let keep = match args[i + 1].as_str() {
            "both" => Keep::Both,
            "responder" | "responder-in-use" => Keep::Responder,
            _ => Keep::Initiator,
        };
        return per_end_child(keep, args[i + 1].ends_with("in-use"));
    }
    // `cargo test --benches` runs bench targets without `--bench`: only measure when benched.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let now = Now::new(1_000, 1_800_000_000);
    let mut rng = SeededRng::new([4; 32]);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let mut keep = Vec::new();
    println!("Installed in an `SaTable` ({N} SAs), resident-set growth per SA:");
    println!();
    println!(
        "| suite | replay window | data-path entry at rest | of which the replay window | + AEAD contexts in use | SA record (`EstablishedSa`) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (suite, window) in [
        (Suite::X25519_AES128GCM_SHA256, 1024),
        (Suite::X25519_AES256GCM_SHA384, 1024),
        (Suite::X25519_AES128GCM_SHA256, 8192),
    ] {
        let mut pair = Pair::new(
            initiator_config(i.clone(), pki.anchors.clone(), &[suite]),
            responder_config(r.clone(), pki.anchors.clone(), &[suite]),
            2,
            now,
        );
        let req = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
        let ex = pair.initiator.initiate(&req, now, &mut pair.rng).unwrap();
        pair.send(ex);
        pair.run(100);
        let template = pair.initiator.sas().next().unwrap().sa.clone();

        let table = Arc::new(SaTable::new(TableConfig { window, ..TableConfig::default() }));
        let before = rss_bytes();
        for n in 0..N {
            // Fresh pages only: the first configuration's allocations are kept alive below.
            let mut sa = template.clone();
            sa.sa_id = SaId((n as u64 + 1).to_be_bytes());
            table.install(&sa);
        }
        let entry_bytes = (rss_bytes() - before) / N;
        // In use: a message sealed under each builds its epoch's AEAD contexts (released again
        // by the table's sweep once the SA is idle).
        let before = rss_bytes();
        let mut wire = Vec::new();
        for n in 0..N {
            let entry = table.get(SaId((n as u64 + 1).to_be_bytes())).unwrap();
            entry.seal(Encoding::Compact, b"{}", &mut wire).unwrap();
        }
        let contexts_bytes = (rss_bytes() - before) / N;

        let before = rss_bytes();
        let records: Vec<_> = (0..N)
            .map(|n| {
                let mut sa = template.clone();
                sa.sa_id = SaId((n as u64 + 1).to_be_bytes());
                sa
            })
            .collect();
        let record_bytes = (rss_bytes() - before) / N;
        let window_bytes = table.get(SaId(1u64.to_be_bytes())).unwrap().current_epoch().unwrap().window_bytes();
        println!(
            "| {} | {window} | {} B | {} B | {} B | {} B |",
            suite.name(),
            thousands(entry_bytes),
            thousands(window_bytes),
            thousands(contexts_bytes),
            thousands(record_bytes)
        );
        keep.push((table, records));
    }
    println!();
    println!(
        "Established ({} SAs one after the other, X25519_AES128GCM_SHA256, window 1024), resident-set \
         growth per SA:",
        established()
    );
    println!();
    println!("| what is kept | bytes per SA |");
    println!("|---|---:|");
    for (mode, what) in [
        ("both", "both ends"),
        ("responder", "the Responder's end at rest (data path + SA Management, SaInit nonce, indexes)"),
        ("initiator", "the Initiator's end at rest (data path + SA Management)"),
        ("responder-in-use", "the Responder's end in use (each SA carried a request and its answer)"),
    ] {
        let (bytes, kept_i, kept_r) = per_end(mode);
        let kept = match mode {
            "both" => kept_i.min(kept_r),
            "initiator" => kept_i,
            _ => kept_r,
        };
        assert_eq!(kept, established(), "{mode}: every SA kept");
        println!("| {what} | {} |", thousands(bytes));
    }
}

/// `12345` → `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
