//! Corpus replay of the CoAP fuzz targets: every seed in `fuzz/corpus/coap_*/` and every saved
//! crash in `fuzz/regressions/coap_*/` runs through the check the target runs
//! (`onem2m_sa_integration::coap_fuzz_checks`).
//!
//! `write_seeds` (ignored) regenerates the seeds:
//! `cargo test -p onem2m-sa-integration --test coap_fuzz_corpus -- --ignored`.

use std::fs;
use std::path::{Path, PathBuf};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_coap::block::BlockValue;
use onem2m_sa_coap::coap_lite::{CoapOption, MessageType, Packet};
use onem2m_sa_coap::options::legacy;
use onem2m_sa_coap::{Encoding, MediaType, primitive_to_packet, response_to_packet};
use onem2m_sa_integration::coap_fuzz_checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `check` over every file of the target's corpus and regressions; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind).join(target)) else { continue };
        let mut files: Vec<PathBuf> =
            entries.map(|e| e.expect("directory entry").path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            let data = fs::read(&file).expect("readable");
            assert!(std::panic::catch_unwind(|| check(&data)).is_ok(), "{target}: {} fails its check", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn coap_decode() {
    assert!(replay("coap_decode", coap_fuzz_checks::coap_decode) > 0, "no seeds");
}

#[test]
fn coap_reassembly() {
    assert!(replay("coap_reassembly", coap_fuzz_checks::coap_reassembly) > 0, "no seeds");
}

fn wire(mut p: Packet, kind: MessageType, mid: u16) -> Vec<u8> {
    p.header.set_type(kind);
    p.header.message_id = mid;
    p.set_token(vec![0xca, 0xfe]);
    p.to_bytes_unlimited().unwrap()
}

fn datagrams() -> Vec<(&'static str, Vec<u8>)> {
    let json = Encoding::default();
    let cbor = Encoding { media: MediaType::Cbor, ..Encoding::default() };
    let mut retrieve =
        RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-in/ae1/cnt1/la", Some("Cae1".into()), "rq-1");
    retrieve.rvi = Some("3".into());
    let mut create = RequestPrimitive::new(Operation::Create, "cse-in", Some("Cae1".into()), "rq-2");
    create.ty = Some(3);
    create.rvi = Some("3".into());
    create.pc = Some(serde_json::json!({"m2m:cnt": {"rn": "c", "lbl": ["a", "b"], "mni": 5}}));
    let mut query = RequestPrimitive::new(Operation::Retrieve, "//sp/cse/x", Some("S".into()), "rq-3");
    query.rcn = Some(4);
    query.fc = Some(serde_json::from_value(serde_json::json!({"ty": [3, 4], "lbl": ["x"], "lim": 2})).unwrap());
    query.rt = Some(onem2m_primitive::ResponseTypeInfo {
        nu: Some(vec!["/id-in/Cae1".into()]),
        ..onem2m_primitive::ResponseTypeInfo::new(2)
    });
    let mut ok = ResponsePrimitive::new(ResponseStatusCode::OK, "rq-1");
    ok.rvi = Some("3".into());
    ok.pc = Some(serde_json::json!({"m2m:cin": {"con": "21.5", "cs": 4}}));
    let mut legacy_request = primitive_to_packet(&retrieve, &json).unwrap();
    legacy_request.clear_option(CoapOption::from(onem2m_sa_coap::options::onem2m::RQI));
    legacy_request.add_option(CoapOption::from(legacy::RQI), b"old".to_vec());
    let mut block1 = primitive_to_packet(&create, &json).unwrap();
    block1.add_option(CoapOption::Block1, BlockValue { num: 0, more: true, szx: 0 }.encode());
    block1.payload.truncate(16);
    let mut unknown = primitive_to_packet(&retrieve, &json).unwrap();
    unknown.add_option(CoapOption::Unknown(343), vec![1]);
    vec![
        ("retrieve-con.bin", wire(primitive_to_packet(&retrieve, &json).unwrap(), MessageType::Confirmable, 1)),
        ("create-json.bin", wire(primitive_to_packet(&create, &json).unwrap(), MessageType::Confirmable, 2)),
        ("create-cbor-non.bin", wire(primitive_to_packet(&create, &cbor).unwrap(), MessageType::NonConfirmable, 3)),
        ("query-nonblocking.bin", wire(primitive_to_packet(&query, &json).unwrap(), MessageType::Confirmable, 4)),
        ("legacy-rqi.bin", wire(legacy_request, MessageType::Confirmable, 5)),
        ("block1.bin", wire(block1, MessageType::Confirmable, 6)),
        ("unknown-critical.bin", wire(unknown, MessageType::Confirmable, 7)),
        (
            "answer-json.bin",
            wire(
                response_to_packet(&ok, Operation::Retrieve, MediaType::Json).unwrap(),
                MessageType::Acknowledgement,
                1,
            ),
        ),
        (
            "answer-cbor.bin",
            wire(response_to_packet(&ok, Operation::Retrieve, MediaType::Cbor).unwrap(), MessageType::Confirmable, 9),
        ),
        ("empty-ack.bin", onem2m_sa_coap::message::empty(MessageType::Acknowledgement, 10)),
        ("extended-option.bin", {
            let mut p = primitive_to_packet(&retrieve, &json).unwrap();
            p.add_option(CoapOption::from(2000), vec![0; 300]);
            wire(p, MessageType::Confirmable, 11)
        }),
    ]
}

#[test]
#[ignore = "writes the seed files"]
fn write_seeds() {
    let dir = fuzz_dir().join("corpus/coap_decode");
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in datagrams() {
        fs::write(dir.join(name), bytes).unwrap();
    }
    // Reassembly: byte strings `arbitrary` reads as operation sequences (every variant, long runs).
    let dir = fuzz_dir().join("corpus/coap_reassembly");
    fs::create_dir_all(&dir).unwrap();
    let seeds: [(&str, Vec<u8>); 4] = [
        ("zeros.bin", vec![0; 256]),
        ("counting.bin", (0..=255).collect()),
        ("ones.bin", vec![0xff; 256]),
        ("mixed.bin", (0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
    ];
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Deterministic mutations of the seeds (bit flips, byte overwrites, truncations, splices and
/// insertions) through both checks: a cheap stand-in for a fuzzing run under `cargo test`.
#[test]
fn seed_mutations() {
    let seeds: Vec<Vec<u8>> = datagrams().into_iter().map(|(_, bytes)| bytes).collect();
    let mut state = 0x243f_6a88_85a3_08d3u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut data = seeds[next() as usize % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = next() as usize % data.len().max(1);
            match next() % 5 {
                0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                1 if !data.is_empty() => data[at] = next() as u8,
                2 => data.truncate(at),
                3 => data.insert(at.min(data.len()), next() as u8),
                _ => {
                    let other = &seeds[next() as usize % seeds.len()];
                    let from = next() as usize % other.len();
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
        coap_fuzz_checks::coap_decode(&data);
        coap_fuzz_checks::coap_reassembly(&data);
    }
}
