//! Memory of one SA: resident set growth while 20,000 SAs are installed in an `SaTable` (the
//! data path's entry: two AEAD key contexts per epoch, the replay window, counters), and while
//! the SA Management's record of each (`EstablishedSa` with its session keys) is kept. Linux only
//! (reads /proc/self/statm). A benchmark: it prints figures and asserts nothing.

use std::sync::Arc;

use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::InitiateSaRequest;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::table::{SaTable, TableConfig};
use onem2m_sa::testkit::{Pair, TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};

const N: usize = 20_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let now = Now::new(1_000, 1_800_000_000);
    let mut rng = SeededRng::new([4; 32]);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let mut keep = Vec::new();
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
            "{:<28} window {:>5}: data-path entry {:>5} B/SA (replay window {} B), SA Management record {:>5} B/SA",
            suite.name(),
            window,
            entry_bytes,
            window_bytes,
            record_bytes
        );
        keep.push((table, records));
    }
}
