//! Corpus replay: every seed in `fuzz/corpus/<target>/` and every saved crash in
//! `fuzz/regressions/<target>/` runs through the same check the fuzz target runs
//! (`onem2m_sa_integration::fuzz_checks`), so a fixed finding stays fixed under plain
//! `cargo test`.
//!
//! `write_seeds` (ignored) regenerates the seeds the code produces itself (tickets, sealed
//! objects, HTTP requests): `cargo test -p onem2m-sa-integration --test fuzz_corpus -- --ignored`.

use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use onem2m_primitive::{Operation, RequestPrimitive};
use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::SignatureAlgorithm;
use onem2m_sa::flows::{self, *};
use onem2m_sa::message::{ControlFlow, Message};
use onem2m_sa::secure::Encoding;
use onem2m_sa_http::{MediaType, primitive_to_request_as};
use onem2m_sa_integration::fuzz_checks::{
    self, InitiatorInput, InitiatorOp, Mutation, ResponderInput, ResponderOp, SeqRef, TableInput, TableOp, WindowInput,
    WindowOp, seed_ops,
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `check` over every file of the target's corpus and regressions; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n == "README.md" || n == ".gitkeep"))
            .collect();
        files.sort();
        for file in files {
            let data = fs::read(&file).expect("readable");
            let result = std::panic::catch_unwind(|| check(&data));
            // `open-*`: a finding reported and not yet fixed. It must still fail, so that the
            // fix shows up here as a reminder to rename the file (and keep it as a regression).
            let open =
                kind == "regressions" && file.file_name().is_some_and(|n| n.to_string_lossy().starts_with("open-"));
            if open {
                assert!(result.is_err(), "{target}: {} passes now: rename it without `open-`", file.display());
            } else {
                assert!(result.is_ok(), "{target}: {} fails its check", file.display());
            }
            count += 1;
        }
    }
    count
}

macro_rules! replay_test {
    ($($name:ident),+ $(,)?) => {$(
        #[test]
        fn $name() {
            let n = replay(stringify!($name), fuzz_checks::$name);
            assert!(n > 0, "no seeds for {}", stringify!($name));
        }
    )+};
}

replay_test!(
    primitive_json,
    primitive_binary,
    sa_message,
    ticket,
    secured_jwe,
    secured_compact,
    http_request,
    http_cbor,
    sidecar_config,
    replay_window,
    responder_sam,
    initiator_sam,
    sa_table
);

/// The seeds decode where they should, so the fuzzer starts from deep inside each decoder.
#[test]
fn seeds_are_valid_inputs() {
    let corpus = fuzz_dir().join("corpus");
    let read = |t: &str, f: &str| fs::read(corpus.join(t).join(f)).unwrap_or_else(|e| panic!("{t}/{f}: {e}"));
    let ticket = read("ticket", "ticket-asn-ed25519.json");
    let ticket = onem2m_sa::credential::Ticket::from_json(std::str::from_utf8(&ticket).unwrap()).unwrap();
    let pki = fuzz_checks::fuzz_pki();
    pki.anchors.verify(&ticket, &ticket.subject, fuzz_checks::FUZZ_NOW.unix_secs).expect("seed ticket verifies");
    let http = fuzz_checks::parse_http_input(&read("http_request", "create-cin.http")).unwrap();
    onem2m_sa_http::request_to_primitive(&http).expect("seed request maps");
    let sas = fuzz_checks::fixed_sas();
    for (target, encoding) in [("secured_jwe", Encoding::Jwe), ("secured_compact", Encoding::Compact)] {
        let wire = read(target, "aes128-seq0.bin");
        let mut copy = wire[1..].to_vec();
        let mut scratch = Vec::new();
        let sealed = match encoding {
            Encoding::Jwe => onem2m_sa::secure::decode_jwe(&copy, &mut scratch),
            Encoding::Compact => onem2m_sa::secure::decode_compact(&mut copy),
        }
        .expect("seed decodes");
        assert_eq!(sealed.header.sa_id, sas[0].sa_id, "the fixed SA is not deterministic");
        // Opened at a fresh copy of the fixed SA (the shared one's window belongs to the replay
        // tests), so the tag check runs and passes on the seed.
        let fresh = onem2m_sa::testkit::linked(
            fuzz_checks::LINK_SUITES[0],
            Default::default(),
            fuzz_checks::LINK_SEED,
            fuzz_checks::FUZZ_NOW,
        );
        let entry = fresh.responder_table.get(fresh.sa_id).expect("installed");
        let (plain, _) = entry.open(sealed).expect("the seed opens");
        let req = match encoding {
            Encoding::Jwe => RequestPrimitive::from_json_slice(plain),
            Encoding::Compact => RequestPrimitive::from_binary_slice(plain),
        };
        assert_eq!(req.expect("the inner primitive decodes").op, Operation::Retrieve, "{target}");
    }
}

#[test]
fn replay_model_examples() {
    use SeqRef::*;
    let ops = vec![
        WindowOp::Check(Absolute(5)),
        WindowOp::Mark(Absolute(5)),
        WindowOp::Mark(Absolute(5)),
        WindowOp::Mark(AboveHighest(5000)),
        WindowOp::Check(NearEdge(0)),
        WindowOp::Check(NearEdge(1)),
        WindowOp::Mark(NearEdge(1)),
        WindowOp::Mark(BelowHighest(0)),
        WindowOp::Mark(Absolute(u64::MAX)),
        WindowOp::Check(BelowHighest(1)),
    ];
    fuzz_checks::replay_window_ops(&WindowInput { size: 100, ops });
}

/// The seeds of the structured targets, as values: (target, file, operations as bytes).
fn structured_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let rec = fuzz_checks::sam_recording();
    let deliver = |entry| ResponderOp::Deliver { entry, source: 1, mutation: Mutation::None };
    let reply = |exchange, entry| InitiatorOp::Reply { exchange, entry, mutation: Mutation::None };
    use TableOp::*;
    let table = [
        Install(0),
        Install(1),
        Install(2),
        Install(3),
        Rekey { id: 0, keys: 1 },
        Rename { old: 0, new: 4 },
        Advance(1_000),
        Rename { old: 4, new: 5 },
        Get(0),
        ByPeer(0),
        Entries,
        Advance(30_000),
        Sweep,
        Remove(1),
        Unmap(2),
        Install(1),
        Rename { old: 3, new: 6 },
        Seal(0),
        Seal(5),
        Advance(11_000),
        Sweep,
        Advance(11_000),
        Sweep,
        Seal(5),
        AdvanceHours(30),
        Sweep,
        Entries,
    ];
    vec![
        ("responder_sam", "recorded-run.bin", seed_ops(&rec.responder_ops)),
        ("responder_sam", "establish.bin", seed_ops(&rec.responder_ops[..2])),
        ("responder_sam", "half-open-expiry.bin", seed_ops(&[deliver(0), ResponderOp::Advance(20_000), deliver(1)])),
        (
            "responder_sam",
            "mutations.bin",
            seed_ops(&[
                ResponderOp::Deliver { entry: 0, source: 2, mutation: Mutation::FlipBit(100) },
                ResponderOp::Deliver { entry: 0, source: 0, mutation: Mutation::Truncate(50) },
                ResponderOp::Deliver { entry: 1, source: 1, mutation: Mutation::Splice { other: 3, at: 20, from: 20 } },
                ResponderOp::Deliver { entry: 2, source: 1, mutation: Mutation::SetByte(30, b'x') },
                ResponderOp::RemoveLocal(0),
                ResponderOp::AdvanceLong(400),
            ]),
        ),
        ("initiator_sam", "recorded-run.bin", seed_ops(&rec.initiator_ops)),
        ("initiator_sam", "establish.bin", seed_ops(&rec.initiator_ops[..2])),
        ("initiator_sam", "timeouts.bin", seed_ops(&[InitiatorOp::Advance(1_000); 6])),
        (
            "initiator_sam",
            "mutations.bin",
            seed_ops(&[
                reply(0, 0),
                reply(0, 1),
                InitiatorOp::Reply { exchange: 0, entry: 1, mutation: Mutation::FlipBit(300) },
                InitiatorOp::Update { sa: 0, operation: 2 },
                InitiatorOp::Abandon(1),
                InitiatorOp::Initiate,
                InitiatorOp::AdvanceLong(100),
            ]),
        ),
        ("sa_table", "lifecycle.bin", seed_ops(&table)),
    ]
}

/// The structured seeds read back as the operations they were written from, are up to date on
/// disk, and the recorded runs reach deep states (establishment, three updates, removal, two
/// concurrent establishments) in the fuzzed SAMs.
#[test]
fn structured_seeds_replay_the_recorded_run() {
    for (target, name, bytes) in structured_seeds() {
        let on_disk = fs::read(fuzz_dir().join("corpus").join(target).join(name)).unwrap();
        assert!(on_disk == bytes, "{target}/{name} is stale: run write_seeds");
        let u = || Unstructured::new(&bytes);
        match target {
            "responder_sam" => {
                let ops = ResponderInput::arbitrary_take_rest(u()).unwrap().ops;
                assert_eq!(seed_ops(&ops), bytes, "{name} does not read back");
            }
            "initiator_sam" => {
                let ops = InitiatorInput::arbitrary_take_rest(u()).unwrap().ops;
                assert_eq!(seed_ops(&ops), bytes, "{name} does not read back");
            }
            _ => {
                let ops = TableInput::arbitrary_take_rest(u()).unwrap().ops;
                assert_eq!(seed_ops(&ops), bytes, "{name} does not read back");
            }
        }
    }
    let rec = fuzz_checks::sam_recording();
    let r = fuzz_checks::responder_sam_ops(&rec.responder_ops);
    // SA Updated: keys, identifier, then identifier and keys as two events.
    assert_eq!((r.established, r.updated, r.removed, r.dropped), (3, 4, 1, 0), "{r:?}");
    let i = fuzz_checks::initiator_sam_ops(&rec.initiator_ops);
    assert_eq!((i.established, i.updated, i.removed, i.establish_failed), (3, 3, 1, 0), "{i:?}");
    assert!(rec.responder_ops.len() <= fuzz_checks::SAM_MAX_OPS && rec.initiator_ops.len() <= fuzz_checks::SAM_MAX_OPS);
}

/// Writes the generated seeds into `fuzz/corpus/`. Run on demand (see the module docs).
#[test]
#[ignore = "regenerates the seed corpus"]
fn write_seeds() {
    let corpus = fuzz_dir().join("corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), data).unwrap();
    };

    // Tickets of the fixed PKI, both signature algorithms.
    write(
        "ticket",
        "ticket-asn-ed25519.json",
        fuzz_checks::sample_ticket_json("/id-asn", SignatureAlgorithm::Ed25519).as_bytes(),
    );
    write(
        "ticket",
        "ticket-cae-p256.json",
        fuzz_checks::sample_ticket_json("CAE01", SignatureAlgorithm::EcdsaP256Sha256).as_bytes(),
    );

    // The binary form of every JSON primitive seed (and the JSON ones themselves, which the
    // target also takes).
    let mut seeds: Vec<_> = fs::read_dir(fuzz_dir().join("corpus/primitive_json"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    seeds.sort();
    for path in seeds {
        let json = fs::read(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let binary = match onem2m_primitive::Primitive::from_json_slice(&json) {
            Ok(onem2m_primitive::Primitive::Request(r)) => r.to_binary_vec().unwrap(),
            Ok(onem2m_primitive::Primitive::Response(r)) => r.to_binary_vec().unwrap(),
            Err(_) => continue,
        };
        write("primitive_binary", &format!("{name}.bin"), &binary);
        write("primitive_binary", &format!("{name}.json"), &json);
    }

    // Sealed objects of the fixed SAs (mode byte 0: open them), and a tamper-mode input.
    let plain = br#"{"op":2,"to":"/id-in/cse-base","fr":"CAE01","rqi":"r-1","rvi":"3"}"#;
    let big = serde_json::to_vec(&serde_json::json!({"op":1,"to":"/id-in/cse-base","fr":"CAE01","rqi":"r-2",
        "rvi":"3","ty":4,"pc":{"m2m:cin":{"con":"x".repeat(300)}}}))
    .unwrap();
    // The compact form seals the binary form of the primitive (docs/protocol.md §4.5).
    let binary = |json: &[u8]| RequestPrimitive::from_json_slice(json).unwrap().to_binary_vec().unwrap();
    for (target, encoding) in [("secured_jwe", Encoding::Jwe), ("secured_compact", Encoding::Compact)] {
        let (plain, big) = match encoding {
            Encoding::Jwe => (plain.to_vec(), big.clone()),
            Encoding::Compact => (binary(plain), binary(&big)),
        };
        write(target, "aes128-seq0.bin", &fuzz_checks::sample_sealed(0, encoding, &plain));
        write(target, "aes128-seq1-large.bin", &fuzz_checks::sample_sealed(0, encoding, &big));
        write(target, "aes256-seq0.bin", &fuzz_checks::sample_sealed(1, encoding, &plain));
        write(target, "tamper-none.bin", &[1]);
        write(target, "tamper-flip.bin", &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]);
    }

    // The SA protocol's messages from a real establishment, update and removal, plus a control
    // flow plaintext and local flows.
    let mut linked = onem2m_sa::testkit::linked(
        onem2m_sa::crypto::Suite::X25519_AES128GCM_SHA256,
        Default::default(),
        fuzz_checks::LINK_SEED,
        fuzz_checks::FUZZ_NOW,
    );
    let p = &mut linked.pair;
    let sa_id = linked.sa_id;
    for operation in [UpdateOperation::Keys, UpdateOperation::Identifier] {
        p.advance(5_000);
        let ex = p.initiator.update(&UpdateSaRequest { existing_sa_id: sa_id, operation }, p.now, &mut p.rng);
        p.send(ex.expect("update starts"));
        p.run(100);
    }
    let current = p.initiator.sas().next().expect("still established").sa.sa_id;
    let ex = p.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: current }), p.now).expect("removal starts");
    p.send(ex);
    p.run(100);
    let names = ["init", "init-reply", "auth", "auth-reply"];
    for (i, (to_responder, bytes)) in p.wire.iter().enumerate() {
        let name = names.get(i).map_or_else(|| format!("control-{i}"), |n| (*n).to_owned());
        let dir = if *to_responder { "i2r" } else { "r2i" };
        assert!(Message::decode(bytes).is_ok(), "{name} decodes");
        write("sa_message", &format!("{i:02}-{name}-{dir}.json"), bytes);
    }
    let flow = ControlFlow::SaRemovalRequest(SaRemovalRequest(RemovalRequest { sa_id }));
    write("sa_message", "plain-control-removal.json", &serde_json::to_vec(&flow).unwrap());
    let flow = ControlFlow::SaKeyUpdateRequest(SaKeyUpdateRequest {
        sa_id,
        new_keying_material: vec![7; 32].into(),
        responder_keying_material_requested: true,
        fresh_kem_public_key: None,
    });
    write("sa_message", "plain-control-key-update.json", &serde_json::to_vec(&flow).unwrap());
    let initiate =
        InitiateSaRequest { initiator: NodeId::new("/id-asn").unwrap(), responder: NodeId::new("/id-in").unwrap() };
    write("sa_message", "flow-initiate.json", &flows::encode(&initiate).unwrap());
    let update = UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::IdentifierAndKeys };
    write("sa_message", "flow-update.json", &flows::encode(&update).unwrap());
    let confirm = RemoveSaConfirm(RemovalConfirm {
        sa_id,
        result: UpdateResult::Rejected,
        rejection_reason: Some(RemovalRejection::UnknownSaIdentifier),
    });
    write("sa_message", "flow-remove-confirm.json", &flows::encode(&confirm).unwrap());

    // HTTP requests in the input format of `fuzz_checks::parse_http_input`.
    let requests: [(&str, &str); 5] = [
        (
            "create-cin.http",
            "POST /~/id-in/cse-base/cnt1\nX-M2M-Origin: CAE01\nX-M2M-RI: r1\nX-M2M-RVI: 3\n\
             Content-Type: application/json;ty=4\nAccept: application/json\n\n{\"m2m:cin\":{\"con\":\"22.5\",\"cnf\":\"text/plain:0\",\"lbl\":[\"a\"]}}",
        ),
        (
            "retrieve-discovery.http",
            "GET /_/sp.example/id-in/cse-base?fu=1&ty=3&lbl=a+b&rcn=4&drt=2&lim=5&atrl=rn\nX-M2M-Origin: CAE01\n\
             X-M2M-RI: r2\nX-M2M-RVI: 3\nX-M2M-RTU: http://ae.example/n&http://ae2.example/n\n\n",
        ),
        (
            "update-ae.http",
            "PUT /id-in/cse-base/ae1?rt=1&rp=P1Y2M3DT10H1M0S\nX-M2M-Origin: CAE01\nX-M2M-RI: r3\n\
             X-M2M-RVI: 3\nX-M2M-OT: 20260101T000000\nX-M2M-RET: PT10S\nX-M2M-OET: PT5S\nX-M2M-EC: 2\n\
             Authorization: tok1+tok2\nContent-Type: application/json\n\n{\"m2m:ae\":{\"lbl\":[\"x\"]}}",
        ),
        ("delete.http", "DELETE /~/id-in/cse-base/cnt1/%7Ecin\nX-M2M-Origin: /id-asn\nX-M2M-RI: r4\nX-M2M-RVI: 3\n\n"),
        (
            "notify-esprim.http",
            "POST /~/id-in\nX-M2M-Origin: /id-asn\nX-M2M-RI: r5\nX-M2M-RVI: 3\n\
             Content-Type: application/json\n\n{\"m2m:seci\":{\"sit\":5,\"epo\":\"eyJhbGciOiJkaXIifQ..AAAA.AAAA.AAAA\"}}",
        ),
    ];
    for (name, text) in requests {
        assert!(fuzz_checks::parse_http_input(text.as_bytes()).is_some(), "{name} parses");
        write("http_request", name, text.as_bytes());
    }

    // CBOR bodies: what the binding itself writes for JSON content, selector byte first.
    let content = serde_json::json!({"m2m:cin": {"rn": "ci1", "cnf": "text/plain:0", "con": "22.5 °C", "st": 3,
        "lbl": ["a", "b"], "at": [], "mni": 18446744073709551615u64, "off": -42, "ratio": 0.125, "ok": true,
        "none": null}});
    let mut req = RequestPrimitive::new(Operation::Create, "/id-in/cse-base/cnt1", Some("CAE01".into()), "r1");
    req.ty = Some(4);
    req.rvi = Some("3".into());
    req.pc = Some(content);
    let http = primitive_to_request_as(&req, "", MediaType::Cbor).unwrap();
    let mut seed = vec![0u8];
    seed.extend_from_slice(http.body());
    write("http_cbor", "create-cin.cbor", &seed);
    let mut ae = RequestPrimitive::new(Operation::Create, "/id-in/cse-base", Some("CAE01".into()), "r2");
    ae.ty = Some(2);
    ae.pc = Some(serde_json::json!({"m2m:ae": {"rn": "ae1", "api": "Napp", "rr": true, "srv": ["3"],
        "poa": ["http://127.0.0.1:9000"]}}));
    let http = primitive_to_request_as(&ae, "", MediaType::Cbor).unwrap();
    let mut seed = vec![3u8];
    seed.extend_from_slice(http.body());
    write("http_cbor", "create-ae.cbor", &seed);

    // The structured targets: the recorded SAM run and a table lifecycle.
    for (target, name, bytes) in structured_seeds() {
        write(target, name, &bytes);
    }
}
