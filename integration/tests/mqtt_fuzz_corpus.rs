//! Corpus replay of the MQTT fuzz target: every seed in `fuzz/corpus/mqtt_decode/` and every
//! saved crash in `fuzz/regressions/mqtt_decode/` runs through the check the target runs
//! (`onem2m_sa_integration::mqtt_fuzz_checks`).
//!
//! `write_seeds` (ignored) regenerates the seeds:
//! `cargo test -p onem2m-sa-integration --test mqtt_fuzz_corpus -- --ignored`.

use std::fs;
use std::path::{Path, PathBuf};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_integration::mqtt_fuzz_checks::mqtt_decode;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

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
fn mqtt_decode_corpus() {
    assert!(replay("mqtt_decode", mqtt_decode) > 0, "no seeds");
}

fn message(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = topic.as_bytes().to_vec();
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut retrieve = RequestPrimitive::new(Operation::Retrieve, "/id-in/cse-in/ae1", Some("CAE1".into()), "rq-1");
    retrieve.rvi = Some("3".into());
    let mut create = RequestPrimitive::new(Operation::Create, "cse-in", Some("CAE1".into()), "rq-2");
    create.ty = Some(3);
    create.rvi = Some("3".into());
    create.pc = Some(serde_json::json!({"m2m:cnt": {"rn": "c", "lbl": ["a", "b"], "mni": 5}}));
    let mut notify = RequestPrimitive::new(Operation::Notify, "/id-peer", Some("/id-node".into()), "rq-3");
    notify.rvi = Some("3".into());
    notify.pc = Some(serde_json::json!({"m2m:seci": {"sit": 2, "dscr": "eyJhbGciOiJkaXIifQ..x.y.z"}}));
    let mut ok = ResponsePrimitive::new(ResponseStatusCode::OK, "rq-1");
    ok.pc = Some(serde_json::json!({"m2m:cin": {"con": "21.5"}}));
    let json = |r: &RequestPrimitive| r.to_json_vec().unwrap();
    vec![
        ("retrieve.bin", message("/oneM2M/req/CAE1/id-in/json", &json(&retrieve))),
        ("create.bin", message("/oneM2M/req/id-in:CAE1/:sp.org:id-in/json", &json(&create))),
        ("notify-seci.bin", message("/oneM2M/req/id-node/id-peer/json", &json(&notify))),
        ("register.bin", message("/oneM2M/reg_req/cred:1/id-in/json", &json(&create))),
        ("answer.bin", message("/oneM2M/resp/CAE1/id-in/json", &ok.to_json_vec().unwrap())),
        ("reg-answer.bin", message("/oneM2M/reg_resp/cred:1/id-in/json", &ok.to_json_vec().unwrap())),
        ("cbor.bin", message("/oneM2M/req/CAE1/id-in/cbor", &[0xa1, 0x62, b'o', b'p', 0x02])),
        ("bad-topic.bin", message("/oneM2M/req/+/id-in/json/x", b"{}")),
        ("bad-payload.bin", message("/oneM2M/req/a/b/json", b"{\"op\":2,\"to\":[")),
    ]
}

#[test]
#[ignore = "writes the seed files"]
fn write_seeds() {
    let dir = fuzz_dir().join("corpus/mqtt_decode");
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Deterministic mutations of the seeds through the check: a cheap stand-in for a fuzzing run.
#[test]
fn seed_mutations() {
    let seeds: Vec<Vec<u8>> = seeds().into_iter().map(|(_, bytes)| bytes).collect();
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
        mqtt_decode(&data);
    }
}
