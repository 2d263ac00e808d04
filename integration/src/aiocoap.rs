//! aiocoap (PyPI `aiocoap`), a second independent CoAP client beside libcoap's `coap-client`,
//! driven through `integration/aiocoap/client.py`: the test gives requests (method, URI,
//! options by number, payload, CON or NON), aiocoap sends them — its own messaging,
//! retransmission and block-wise transfer — and the answers come back as received.
//!
//! It runs from a virtualenv: `$AIOCOAP_VENV` when set, else `target/aiocoap-venv` under the
//! workspace root, made on first use when missing (as `.ci/run` makes it):
//!
//! ```text
//! python3 -m venv target/aiocoap-venv && target/aiocoap-venv/bin/pip install aiocoap==0.4.17
//! ```
//!
//! If aiocoap still cannot be found, [`python`] returns `None` and the test is skipped with
//! that command — unless `ONEM2M_REQUIRE_AIOCOAP` is set (CI sets it), when it panics with it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use onem2m_primitive::ResponsePrimitive;
use onem2m_sa_coap::coap_lite::{CoapOption, MessageClass, Packet};
use onem2m_sa_coap::{BindingError, Limits, packet_to_response};
use serde_json::{Value, json};

/// The aiocoap version `.ci/run` installs and the tests were written against.
pub const AIOCOAP_VERSION: &str = "0.4.17";

/// The driver script.
const CLIENT: &str = include_str!("../aiocoap/client.py");

/// The virtualenv holding aiocoap: `$AIOCOAP_VENV`, else `target/aiocoap-venv`.
pub fn venv() -> PathBuf {
    match std::env::var_os("AIOCOAP_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/aiocoap-venv"),
    }
}

fn has_aiocoap(python: &Path) -> bool {
    let probe = Command::new(python)
        .args([
            "-c",
            &format!("import importlib.metadata as m, sys; sys.exit(m.version('aiocoap') != '{AIOCOAP_VERSION}')"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    probe.is_ok_and(|s| s.success())
}

/// Makes the default virtualenv beside its final place, then renames it there (racing test
/// processes never see half an install).
fn install(venv: &Path) {
    let staging = venv.with_file_name(format!("aiocoap-venv.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("installing aiocoap {AIOCOAP_VERSION} into {} (once)", venv.display());
    let made = Command::new("python3").arg("-m").arg("venv").arg(&staging).status().is_ok_and(|s| s.success())
        && Command::new(staging.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", &format!("aiocoap=={AIOCOAP_VERSION}")])
            .status()
            .is_ok_and(|s| s.success());
    let _ = std::fs::remove_dir_all(venv);
    if !made || std::fs::rename(&staging, venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
}

/// The virtualenv's Python with aiocoap, installing it when the default virtualenv lacks it;
/// `None` (the test skips) when it cannot be had and `ONEM2M_REQUIRE_AIOCOAP` is not set.
pub fn python() -> Option<PathBuf> {
    let venv = venv();
    let python = venv.join("bin/python");
    if !has_aiocoap(&python) && std::env::var_os("AIOCOAP_VENV").is_none() {
        install(&venv);
    }
    if has_aiocoap(&python) {
        return Some(python);
    }
    let how = format!(
        "aiocoap {AIOCOAP_VERSION} is not installed at {}: install it with `python3 -m venv target/aiocoap-venv && \
         target/aiocoap-venv/bin/pip install aiocoap=={AIOCOAP_VERSION}` in the workspace root, or set AIOCOAP_VENV",
        venv.display()
    );
    assert!(std::env::var_os("ONEM2M_REQUIRE_AIOCOAP").is_none(), "{how} (ONEM2M_REQUIRE_AIOCOAP is set)");
    eprintln!("skipped: {how}");
    None
}

/// A request for aiocoap to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Path and query, `/~/id-in/cse-base?rcn=1` (aiocoap makes Uri-Path and Uri-Query of it).
    pub path: String,
    /// Other options, by number, in order.
    pub options: Vec<(u16, Vec<u8>)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Non-confirmable.
    pub non: bool,
}

/// An answer as aiocoap received it (block-wise answers reassembled, block options left out).
#[derive(Debug, Clone)]
pub struct Answer {
    /// Class and detail (`(2, 5)` for 2.05).
    pub code: (u8, u8),
    /// The message type, as aiocoap names it (`ACK`, `NON`, `CON`).
    pub mtype: String,
    /// The options, by number, in order.
    pub options: Vec<(u16, Vec<u8>)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Answer {
    /// The answer mapped by this binding's own [`packet_to_response`].
    pub fn response(&self) -> Result<ResponsePrimitive, BindingError> {
        let mut p = Packet::new();
        p.header.code = MessageClass::from((self.code.0 << 5) | self.code.1);
        for (number, value) in &self.options {
            p.add_option(CoapOption::from(*number), value.clone());
        }
        p.payload = self.payload.clone();
        packet_to_response(&p, &Limits::default())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// Sends `requests` one after the other from one aiocoap client to `to` (blocking; run it on
/// a blocking thread from async code); each answer, or aiocoap's error text.
pub fn exchange(python: &Path, to: SocketAddr, requests: &[Request]) -> Vec<Result<Answer, String>> {
    let input: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({
                "method": r.method,
                "uri": format!("coap://{to}{}", r.path),
                "options": r.options.iter().map(|(n, v)| json!([n, hex(v)])).collect::<Vec<_>>(),
                "payload": hex(&r.payload),
                "non": r.non,
            })
        })
        .collect();
    let mut child = Command::new(python)
        .arg("-c")
        .arg(CLIENT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child.stdin.take().expect("stdin").write_all(&serde_json::to_vec(&input).expect("json")).expect("write");
    let output = child.wait_with_output().expect("aiocoap client");
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "aiocoap client: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    answers
        .iter()
        .map(|a| {
            if let Some(e) = a["error"].as_str() {
                return Err(e.to_owned());
            }
            let options = a["options"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| (o[0].as_u64().unwrap_or_default() as u16, unhex(o[1].as_str().unwrap_or_default())))
                .collect();
            Ok(Answer {
                code: (
                    a["code"][0].as_u64().unwrap_or_default() as u8,
                    a["code"][1].as_u64().unwrap_or_default() as u8,
                ),
                mtype: a["mtype"].as_str().unwrap_or_default().to_owned(),
                options,
                payload: unhex(a["payload"].as_str().unwrap_or_default()),
            })
        })
        .collect()
}
