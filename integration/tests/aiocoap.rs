//! Interop: aiocoap (PyPI), a second independent CoAP client beside libcoap's
//! (`adapters/coap/tests/libcoap.rs`), against the plaintext side of the sidecar — the AE-side
//! CoAP egress of the CoAP pair in front of the demo CSE (`onem2m_sa_integration::coap_pair`):
//! CRUD, block-wise both ways, NON. The oneM2M options are given by number, as a device would;
//! aiocoap does the messaging and the block-wise transfer; the answers it received are mapped
//! by this binding and checked, and the CSE's record shows each request executed once.
//!
//! aiocoap must be installed (see `onem2m_sa_integration::aiocoap`): the test installs it into
//! `target/aiocoap-venv` if it can, else skips with the command — and fails in CI.

use onem2m_primitive::ResponseStatusCode as Rsc;
use onem2m_sa_coap::options::{encode_uint, onem2m};
use onem2m_sa_integration::aiocoap::{self, Answer, Request};
use onem2m_sa_integration::coap_pair::CoapPair;
use onem2m_sa_sidecar::demo::{CSE_BASE, CSE_ID};
use onem2m_sa_sidecar::udp_tap::UdpTap;
use serde_json::json;

const FR: &str = "Caio";

/// A request from [`FR`] with `rqi`, release 3, and `extra` options.
fn req(method: &'static str, path: String, rqi: &str, extra: &[(u16, Vec<u8>)]) -> Request {
    let mut options = vec![
        (onem2m::FR, FR.as_bytes().to_vec()),
        (onem2m::RQI, rqi.as_bytes().to_vec()),
        (onem2m::RVI, b"3".to_vec()),
    ];
    options.extend_from_slice(extra);
    Request { method, path, options, payload: Vec::new(), non: false }
}

/// A CREATE of type `ty` with a JSON payload (Content-Format 50, application/json).
fn create(path: String, rqi: &str, ty: u32, body: serde_json::Value) -> Request {
    let mut r = req("POST", path, rqi, &[(onem2m::TY, encode_uint(ty)), (12, encode_uint(50))]);
    r.payload = serde_json::to_vec(&body).unwrap();
    r
}

fn update(path: String, rqi: &str, body: serde_json::Value) -> Request {
    let mut r = req("PUT", path, rqi, &[(12, encode_uint(50))]);
    r.payload = serde_json::to_vec(&body).unwrap();
    r
}

fn rsc_of(what: &str, a: &Result<Answer, String>) -> (Rsc, Option<serde_json::Value>, Answer) {
    let a = a.as_ref().unwrap_or_else(|e| panic!("{what}: aiocoap failed: {e}"));
    let rsp = a.response().unwrap_or_else(|e| panic!("{what}: not a oneM2M answer ({e}): {a:?}"));
    (rsp.rsc, rsp.pc, a.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_crud_block_wise_and_non_through_the_sidecar() {
    let Some(python) = aiocoap::python() else { return };
    let pair = CoapPair::start(None).await;
    let tap = UdpTap::loopback(pair.egress()).await.unwrap();
    let base = format!("/~{CSE_ID}/{CSE_BASE}");
    let ae = format!("{base}/aio");
    let big = "q".repeat(3000);

    let mut non = req("GET", format!("{ae}/c"), "aio-non", &[]);
    non.non = true;
    let steps: Vec<(&str, Request)> = vec![
        (
            "register",
            create(
                base.clone(),
                "aio-ae",
                2,
                json!({"m2m:ae": {"rn": "aio", "api": "Naio", "rr": false, "srv": ["3"]}}),
            ),
        ),
        ("container", create(ae.clone(), "aio-cnt", 3, json!({"m2m:cnt": {"rn": "c"}}))),
        ("update", update(format!("{ae}/c"), "aio-upd", json!({"m2m:cnt": {"lbl": ["aiocoap"]}}))),
        ("retrieve", req("GET", format!("{ae}/c"), "aio-get", &[])),
        ("big create (Block1)", create(format!("{ae}/c"), "aio-big", 4, json!({"m2m:cin": {"rn": "big", "con": big}}))),
        ("big retrieve (Block2)", req("GET", format!("{ae}/c/big"), "aio-big-get", &[])),
        ("NON retrieve", non),
        ("delete", req("DELETE", ae.clone(), "aio-del", &[])),
        ("gone", req("GET", ae.clone(), "aio-gone", &[])),
    ];
    let requests: Vec<Request> = steps.iter().map(|(_, r)| r.clone()).collect();
    let to = tap.addr();
    let answers = tokio::task::spawn_blocking(move || aiocoap::exchange(&python, to, &requests)).await.unwrap();
    assert_eq!(answers.len(), steps.len());
    let expected = [
        ((2, 1), Rsc::CREATED),
        ((2, 1), Rsc::CREATED),
        ((2, 4), Rsc::UPDATED),
        ((2, 5), Rsc::OK),
        ((2, 1), Rsc::CREATED),
        ((2, 5), Rsc::OK),
        ((2, 5), Rsc::OK),
        ((2, 2), Rsc::DELETED),
        ((4, 4), Rsc::NOT_FOUND),
    ];
    for (((label, r), answer), (code, rsc)) in steps.iter().zip(&answers).zip(expected) {
        let (got, pc, a) = rsc_of(label, answer);
        assert_eq!((a.code, got), (code, rsc), "{label}: {pc:?}");
        let rqi = r.options.iter().find(|(n, _)| *n == onem2m::RQI).map(|(_, v)| String::from_utf8_lossy(v)).unwrap();
        assert_eq!(pair.executions(&rqi), 1, "{label}: executed once at the CSE");
        match *label {
            "update" => assert_eq!(pc.unwrap()["m2m:cnt"]["lbl"], json!(["aiocoap"])),
            "retrieve" => assert_eq!(pc.unwrap()["m2m:cnt"]["rn"], "c"),
            "big retrieve (Block2)" => assert_eq!(pc.unwrap()["m2m:cin"]["con"].as_str(), Some(big.as_str())),
            "NON retrieve" => assert_eq!(a.mtype, "NON", "a NON request is answered NON"),
            _ => {}
        }
    }
    // Block-wise on the wire: the 3 kB upload and download took several datagrams each way
    // (aiocoap's 1024-byte blocks), beside one each way per other request.
    let counts = tap.counts();
    let others = steps.len() as u64 - 2;
    assert!(counts.up_datagrams >= others + 6 && counts.down_datagrams >= others + 6, "{counts:?}");
    pair.shutdown().await;
}
