//! The CoAP sidecar pair under faults: a lossy UDP relay between the sidecars, and hostile
//! datagrams at both CoAP listeners (the plaintext egress and the secured ingress).
//!
//! Topology: `onem2m_sa_integration::coap_pair` — CoAP AE → AE-side sidecar (CoAP egress) →
//! secured over CoAP, through a lossy relay or straight → CSE-side sidecar (CoAP ingress) → demo
//! CSE (HTTP), whose record of executed requests is what "exactly once" is checked on.
//!
//! The adapter's own tests (`adapters/coap/tests`) cover the same faults against a bare
//! server; here they hit the sidecar, whose services sit behind the server: a hostile datagram
//! must not reach the CSE, block a later request, or take the sidecar down.

use std::net::SocketAddr;
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_coap::block::BlockValue;
use onem2m_sa_coap::coap_lite::{CoapOption, MessageType, Packet};
use onem2m_sa_coap::message::parse;
use onem2m_sa_coap::{ClientConfig, CoapClient, Encoding, Limits, packet_to_response, primitive_to_packet};
use onem2m_sa_integration::coap_pair::{CoapPair as Pair, SIDECAR_EXCHANGE};
use onem2m_sa_integration::lossy_udp::Rates;
use onem2m_sa_integration::request;
use onem2m_sa_sidecar::demo::{CSE_BASE, CSE_ID};
use serde_json::json;
use tokio::net::UdpSocket;

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The AE's client: patient enough to hear the sidecar's own verdict on a lost exchange.
async fn ae_client(to: SocketAddr) -> CoapClient {
    let config = ClientConfig { request_timeout: 3 * SIDECAR_EXCHANGE, seed: Some(5), ..ClientConfig::default() };
    CoapClient::connect(to, config).await.unwrap()
}

fn create(to: &str, fr: &str, rqi: &str, ty: u32, pc: serde_json::Value) -> RequestPrimitive {
    let mut req = request(Operation::Create, to, fr, rqi);
    req.ty = Some(ty);
    req.pc = Some(pc);
    req
}

/// Through a relay that drops 10%, duplicates 10% and reorders 10% of the datagrams each way
/// (seeded), every request — SA establishment first, small ones, and big ones going block-wise
/// on both hops — executes at the CSE exactly once and is answered, or fails with 4008 / 5103
/// from the AE-side sidecar having executed at most once. None executes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_between_the_sidecars_every_request_once_or_a_clear_rsc() {
    let rates = Rates { drop: 10, duplicate: 10, reorder: 10 };
    let pair = Pair::start(Some((0x10_55e5, rates))).await;
    let ae = ae_client(pair.egress()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let path = format!("{base}/lossy");
    let big = "b".repeat(3000);

    let mut outcomes = Vec::new();
    let setup = [
        create(
            &base,
            "Clossy",
            "setup-ae",
            2,
            json!({"m2m:ae": {"rn": "lossy", "api": "N", "rr": false, "srv": ["3"]}}),
        ),
        create(&path, "Clossy", "setup-cnt", 3, json!({"m2m:cnt": {"rn": "c"}})),
    ];
    for req in setup {
        let result = ae.send(&req).await;
        outcomes.push((req, result));
    }
    for i in 0..16 {
        let rqi = format!("lossy-{i}");
        let req = match i % 4 {
            0 => create(
                &format!("{path}/c"),
                "Clossy",
                &rqi,
                4,
                json!({"m2m:cin": {"rn": format!("i{i}"), "con": "21.5"}}),
            ),
            1 => request(Operation::Retrieve, &format!("{path}/c"), "Clossy", &rqi),
            // Block-wise both ways: 3 kB up (Block1 on both hops), and the same back (Block2).
            2 => create(
                &format!("{path}/c"),
                "Clossy",
                &rqi,
                4,
                json!({"m2m:cin": {"rn": format!("big{i}"), "con": big}}),
            ),
            _ => request(Operation::Retrieve, &format!("{path}/c/big{}", i - 1), "Clossy", &rqi),
        };
        let result = ae.send(&req).await;
        outcomes.push((req, result));
    }

    let mut answered = 0;
    for (req, result) in &outcomes {
        let runs = pair.executions(&req.rqi);
        assert!(runs <= 1, "{} executed {runs} times", req.rqi);
        match result {
            Ok(rsp) if rsp.rsc == Rsc::REQUEST_TIMEOUT || rsp.rsc == Rsc::TARGET_NOT_REACHABLE => {
                eprintln!("{} failed with {} after {runs} executions", req.rqi, rsp.rsc);
                assert_eq!(rsp.rqi, req.rqi);
            }
            Ok(rsp) => {
                answered += 1;
                assert_eq!(rsp.rqi, req.rqi);
                // A retrieve of a big instance whose create failed is a clear 4004.
                let missing = rsp.rsc == Rsc::NOT_FOUND && req.op == Operation::Retrieve;
                assert!(rsp.rsc.is_success() || missing, "{}: {} {:?}", req.rqi, rsp.rsc, rsp.pc);
                assert_eq!(runs, 1, "{} answered {} without executing", req.rqi, rsp.rsc);
                if rsp.rsc == Rsc::OK && req.to.contains("/big") {
                    assert_eq!(rsp.pc.as_ref().unwrap()["m2m:cin"]["con"].as_str(), Some(big.as_str()));
                }
            }
            Err(e) => panic!("{}: the AE-side sidecar gave no answer ({e})", req.rqi),
        }
    }
    let tally = pair.lossy.as_ref().unwrap().tally();
    eprintln!("lossy CoAP hop: {answered}/{} answered; {tally:?}", outcomes.len());
    assert!(tally.dropped >= 3 && tally.duplicated >= 3 && tally.reordered >= 3, "the relay did little: {tally:?}");
    // A sanity bound (the link is not dead), not a promise: what is promised is above.
    assert!(answered * 2 >= outcomes.len(), "only {answered}/{} answered", outcomes.len());
    pair.shutdown().await;
}

/// A bare UDP endpoint speaking raw CoAP.
struct Raw(UdpSocket);

impl Raw {
    async fn new() -> Self {
        Self(UdpSocket::bind(any()).await.unwrap())
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.0.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram (a guard of 10 s against a hang, not a timer the test waits for).
    async fn recv(&self) -> Packet {
        let mut buf = vec![0; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), self.0.recv_from(&mut buf)).await.unwrap().unwrap();
        parse(&buf[..n]).unwrap()
    }
}

fn con(req: &RequestPrimitive, mid: u16, token: &[u8]) -> Packet {
    let mut p = primitive_to_packet(req, &Encoding::default()).unwrap();
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p
}

fn code(p: &Packet) -> (u8, u8) {
    let c = u8::from(p.header.code);
    (c >> 5, c & 0x1f)
}

/// Malformed, truncated, oversize and garbage datagrams, and an unknown critical option, at
/// each CoAP listener of the pair: each gets the RFC 7252 answer (RST, 4.13 with Size1, 4.02)
/// or is dropped; none reaches the CSE; the next good request from the same socket is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_at_both_coap_listeners() {
    let pair = Pair::start(None).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    for (side, at) in [("egress", pair.egress()), ("ingress", pair.ingress())] {
        let raw = Raw::new().await;
        let mut crit = con(&request(Operation::Retrieve, &base, "Chostile", &format!("{side}-crit")), 1, b"a");
        crit.add_option(CoapOption::Unknown(343), b"x".to_vec());
        raw.send(&crit.to_bytes().unwrap(), at).await;
        let answer = raw.recv().await;
        assert_eq!((answer.header.message_id, code(&answer)), (1, (4, 2)), "{side}: unknown critical option");
        let rsp = packet_to_response(&answer, &Limits::default()).unwrap();
        assert_eq!(rsp.rsc, Rsc::BAD_REQUEST, "{side}");

        // Payload marker without a payload: RST with the message ID.
        raw.send(&[0x40, 0x01, 0x00, 0x02, 0xff], at).await;
        let rst = raw.recv().await;
        assert_eq!((rst.header.get_type(), rst.header.message_id), (MessageType::Reset, 2), "{side}: malformed");

        // A good request cut inside its options: RST with the message ID.
        let whole = con(&request(Operation::Retrieve, &base, "Chostile", &format!("{side}-cut")), 3, b"tok")
            .to_bytes()
            .unwrap();
        raw.send(&whole[..whole.len() - 4], at).await;
        let rst = raw.recv().await;
        assert_eq!((rst.header.get_type(), rst.header.message_id), (MessageType::Reset, 3), "{side}: truncated");

        // Garbage, a header shorter than four bytes and a malformed NON: dropped.
        raw.send(&[0xff; 3], at).await;
        raw.send(&[0x40, 0x01], at).await;
        raw.send(&[0x50, 0x01, 0x00, 0x04, 0xff], at).await;

        // Over the largest datagram: 4.13 with Size1.
        let mut big = con(&request(Operation::Update, &base, "Chostile", &format!("{side}-big")), 5, b"b");
        big.payload = vec![b' '; 4000];
        raw.send(&big.to_bytes_unlimited().unwrap(), at).await;
        let answer = raw.recv().await;
        assert_eq!((answer.header.message_id, code(&answer)), (5, (4, 13)), "{side}: oversize");
        assert!(answer.get_first_option(CoapOption::Size1).is_some(), "{side}: Size1");

        // The next good request is answered (the egress serves it; the ingress refuses
        // plaintext, 4.03 / 4110-style, without the CSE seeing it).
        let good = con(&request(Operation::Retrieve, &base, "Chostile", &format!("{side}-good")), 6, b"g");
        raw.send(&good.to_bytes().unwrap(), at).await;
        let answer = raw.recv().await;
        assert_eq!(answer.header.message_id, 6, "{side}");
        let rsp = packet_to_response(&answer, &Limits::default()).unwrap();
        let expected = if side == "egress" { Rsc::OK } else { Rsc::SECURITY_ASSOCIATION_REQUIRED };
        assert_eq!(rsp.rsc, expected, "{side}: {:?}", rsp.pc);
    }
    let executed = pair.executed();
    assert_eq!(executed, ["egress-good"], "only the good request through the egress reached the CSE");
    pair.shutdown().await;
}

/// One peer opening Block1 transfers it never finishes, at the egress: the sidecar holds up to
/// 256 unfinished transfers per peer (of 1024 in all; the per-peer byte cap, twice
/// `coap.max_payload_bytes`, is not what stops 1 KiB blocks), then answers 5.03; another peer
/// is still served, end to end to the CSE, and nothing of the flood reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_flood_within_the_caps() {
    let pair = Pair::start(None).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let flood = Raw::new().await;
    let mut refused_from = None;
    for i in 0..300u16 {
        let req = create(&base, "Cflood", &format!("flood-{i}"), 4, json!({}));
        let mut p = con(&req, i, &i.to_be_bytes());
        p.add_option(CoapOption::Block1, BlockValue { num: 0, more: true, szx: 6 }.encode());
        p.payload = vec![b' '; 1024];
        flood.send(&p.to_bytes().unwrap(), pair.egress()).await;
        let answer = flood.recv().await;
        assert_eq!(answer.header.message_id, i);
        match (code(&answer), refused_from) {
            ((2, 31), None) => {}
            ((5, 3), _) => {
                refused_from.get_or_insert(i);
            }
            (other, _) => panic!("transfer {i}: {other:?} (refused from {refused_from:?})"),
        }
    }
    let refused_from = refused_from.expect("the flood was never refused");
    assert!((200..=256).contains(&refused_from), "refused from transfer {refused_from}");

    let ae = ae_client(pair.egress()).await;
    let rsp = ae.send(&request(Operation::Retrieve, &base, "Cother", "after-flood")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    let executed = pair.executed();
    assert_eq!(executed, ["after-flood"]);
    pair.shutdown().await;
}

/// More requests from one peer than its share of the duplicate cache holds
/// (`coap.max_exchanges_per_peer`, here 32 on both sidecars), within one EXCHANGE_LIFETIME
/// (about four minutes): every one is served. The AE is one peer of the egress, and the AE-side
/// sidecar one peer of the ingress for all of its AEs' traffic; a peer at its cap forgets its
/// own oldest finished exchange rather than being refused 5.03 until its exchanges age out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_sends_more_requests_than_its_share_of_the_duplicate_cache() {
    let pair = Pair::start_with(None, |c| c.coap.max_exchanges_per_peer = 32).await;
    let ae = ae_client(pair.egress()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    for i in 0..80 {
        let rqi = format!("many-{i}");
        let rsp = ae.send(&request(Operation::Retrieve, &base, "Cmany", &rqi)).await.unwrap();
        assert_eq!(rsp.rsc, Rsc::OK, "request {i}: {:?}", rsp.pc);
        assert_eq!(pair.executions(&rqi), 1);
    }
    pair.shutdown().await;
}

/// A request body just under `coap.max_payload_bytes` (1 MiB) crosses the CoAP pair: block-wise
/// from the AE, sealed (a third larger, base64url) block-wise between the sidecars, and its
/// answer as big back. Before, the secured hop held sealed messages to the plaintext limit, and
/// reassembly to 256 KiB per peer: such a request failed 5000 at the AE-side sidecar (found by
/// the differential suite over CoAP, `big_content_instance`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_near_the_payload_limit_crosses_the_coap_pair() {
    let pair = Pair::start(None).await;
    let ae = ae_client(pair.egress()).await;
    let base = format!("{CSE_ID}/{CSE_BASE}");
    let big = |rn: &str, size: usize| {
        let empty = serde_json::to_vec(&json!({"m2m:cin": {"rn": rn, "con": ""}})).unwrap().len();
        json!({"m2m:cin": {"rn": rn, "con": "x".repeat(size - empty)}})
    };
    let req =
        create(&base, "Cbig", "near-ae", 2, json!({"m2m:ae": {"rn": "bigae", "api": "N", "rr": false, "srv": ["3"]}}));
    assert_eq!(ae.send(&req).await.unwrap().rsc, Rsc::CREATED);
    let req = create(&format!("{base}/bigae"), "Cbig", "near-cnt", 3, json!({"m2m:cnt": {"rn": "c"}}));
    assert_eq!(ae.send(&req).await.unwrap().rsc, Rsc::CREATED);
    let near = (1 << 20) - 4096;
    let req = create(&format!("{base}/bigae/c"), "Cbig", "near-cin", 4, big("near", near));
    let rsp = ae.send(&req).await.unwrap();
    assert_eq!(
        rsp.rsc,
        Rsc::CREATED,
        "{:?}",
        rsp.pc.as_ref().map(|pc| pc.to_string().chars().take(200).collect::<String>())
    );
    let rsp =
        ae.send(&request(Operation::Retrieve, &format!("{base}/bigae/c/near"), "Cbig", "near-get")).await.unwrap();
    assert_eq!(rsp.rsc, Rsc::OK);
    let sent = big("near", near)["m2m:cin"]["con"].as_str().map(str::len);
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"].as_str().map(str::len), sent);
    assert_eq!((pair.executions("near-cin"), pair.executions("near-get")), (1, 1));
    pair.shutdown().await;
}
