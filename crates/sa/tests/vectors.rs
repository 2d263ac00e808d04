//! Regenerates the test vectors of `docs/protocol.md` §6 from a fixed seed and fails on any
//! drift. To accept an intended change of the wire format: `UPDATE_VECTORS=1 cargo test -p
//! onem2m-sa --test vectors`, then review the diff of `docs/protocol.md`.

use std::fmt::Write as _;
use std::path::PathBuf;

use onem2m_sa::Now;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::AcceptAll;
use onem2m_sa::flows::*;
use onem2m_sa::manage::{InitiatorEvent, InitiatorSam, Limits, ResponderSam, Timing};
use onem2m_sa::rng::SeededRng;
use onem2m_sa::schedule::DirectionKeys;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};

const BEGIN: &str = "<!-- vectors:begin -->\n";
const END: &str = "<!-- vectors:end -->";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keys_table(out: &mut String, title: &str, keys: &onem2m_sa::schedule::SessionKeys) {
    let row = |out: &mut String, name: &str, d: &DirectionKeys| {
        writeln!(out, "| {name} | `{}` | `{}` |", hex(d.key()), hex(d.iv())).unwrap();
    };
    writeln!(out, "\n{title} (epoch {}):\n", keys.epoch).unwrap();
    writeln!(out, "| direction | key | iv |\n|---|---|---|").unwrap();
    row(out, "i2r", &keys.i2r);
    row(out, "r2i", &keys.r2i);
    row(out, "ctl i2r", &keys.ctl_i2r);
    row(out, "ctl r2i", &keys.ctl_r2i);
}

fn generate() -> String {
    let mut rng = SeededRng::new([0x5a; 32]);
    let now = Now::new(0, 1_800_000_000);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["/id-asn", "C*"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let suite = [Suite::X25519_AES128GCM_SHA256];
    let mut ini = InitiatorSam::new(initiator_config(i.clone(), pki.anchors.clone(), &suite), Timing::default());
    let mut rsp = ResponderSam::new(
        responder_config(r.clone(), pki.anchors.clone(), &suite),
        Timing::default(),
        Limits::default(),
    );

    let mut out = String::new();
    writeln!(out, "Trust anchor public key (Ed25519): `{}`\n", hex(pki.anchor_public_key())).unwrap();
    writeln!(out, "Initiator ticket:\n\n```json\n{}\n```\n", i.ticket.to_json()).unwrap();
    writeln!(out, "Responder ticket:\n\n```json\n{}\n```\n", r.ticket.to_json()).unwrap();

    let mut step = 0;
    let mut exchange = |out: &mut String,
                        ini: &mut InitiatorSam,
                        rsp: &mut ResponderSam,
                        mut ex: onem2m_sa::manage::Exchange,
                        now: Now,
                        rng: &mut SeededRng| {
        loop {
            step += 1;
            writeln!(
                out,
                "{step}. Initiator → Responder\n\n   ```json\n   {}\n   ```\n",
                String::from_utf8_lossy(&ex.bytes)
            )
            .unwrap();
            let reply = rsp.handle(&ex.bytes, now, rng, &mut AcceptAll).reply.expect("an answer");
            step += 1;
            writeln!(
                out,
                "{step}. Responder → Initiator\n\n   ```json\n   {}\n   ```\n",
                String::from_utf8_lossy(&reply)
            )
            .unwrap();
            let events = ini.handle_response(ex.id, &reply, now, rng);
            match events.into_iter().next() {
                Some(InitiatorEvent::Transmit(next)) => ex = next,
                Some(other) => return other,
                None => panic!("no event"),
            }
        }
    };

    writeln!(out, "### Establishment\n").unwrap();
    let req = InitiateSaRequest { initiator: i.node_id.clone(), responder: r.node_id.clone() };
    let ex = ini.initiate(&req, now, &mut rng).unwrap();
    let InitiatorEvent::Established { confirm, .. } = exchange(&mut out, &mut ini, &mut rsp, ex, now, &mut rng) else {
        panic!()
    };
    let sa_id = confirm.security_association.unwrap().sa_id;
    let sa = &ini.sa(sa_id).unwrap().sa;
    writeln!(out, "TH3s: `{}`", hex(sa.transcript_hash.as_ref())).unwrap();
    keys_table(&mut out, "Session keys", &sa.keys);

    writeln!(out, "\n### Key update (with Responder keying material)\n").unwrap();
    let later = now.after_ms(10_000);
    let ex = ini
        .update(&UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::Keys }, later, &mut rng)
        .unwrap();
    let InitiatorEvent::Updated { confirm: c, .. } = exchange(&mut out, &mut ini, &mut rsp, ex, later, &mut rng) else {
        panic!()
    };
    assert_eq!(c.result, UpdateResult::Accepted);
    keys_table(&mut out, "Session keys", &ini.sa(sa_id).unwrap().sa.keys);

    writeln!(out, "\n### Identifier update\n").unwrap();
    let ex = ini
        .update(&UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::Identifier }, later, &mut rng)
        .unwrap();
    let InitiatorEvent::Updated { confirm: c, .. } = exchange(&mut out, &mut ini, &mut rsp, ex, later, &mut rng) else {
        panic!()
    };
    let new_id = c.new_sa_id.unwrap();

    writeln!(out, "\n### Removal\n").unwrap();
    let ex = ini.remove(&RemoveSaRequest(RemovalRequest { sa_id: new_id }), later).unwrap();
    let InitiatorEvent::Removed(c) = exchange(&mut out, &mut ini, &mut rsp, ex, later, &mut rng) else { panic!() };
    assert_eq!(c.0.result, UpdateResult::Accepted);
    out
}

#[test]
fn vectors_in_protocol_md_match() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let doc = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let fresh = generate();
    assert_eq!(fresh, generate(), "generation is deterministic");
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], fresh, &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        doc[start..end] == fresh,
        "docs/protocol.md vectors drifted; rerun with UPDATE_VECTORS=1 and review the diff"
    );
}
