//! The server and the client on real UDP sockets on 127.0.0.1: CRUD, NON, block-wise both
//! ways, separate answers, deduplication, refusals, retransmission, timeouts, graceful stop.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageType, Packet};
use common::{request, server_config, start};
use onem2m_primitive::{Operation, ResponseStatusCode};
use onem2m_sa_coap::block::{BlockLimits, BlockValue};
use onem2m_sa_coap::message::parse;
use onem2m_sa_coap::options::{encode_uint, onem2m};
use onem2m_sa_coap::{
    ClientConfig, ClientError, CoapClient, Encoding, Limits, MediaType, Transmission, packet_to_response,
    primitive_to_packet,
};
use serde_json::json;
use tokio::net::UdpSocket;

fn fast() -> Transmission {
    Transmission { ack_timeout: Duration::from_millis(30), ack_random_factor: 1.0, max_retransmit: 4 }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        transmission: fast(),
        request_timeout: Duration::from_secs(10),
        seed: Some(1),
        ..ClientConfig::default()
    }
}

/// A bare UDP endpoint speaking raw CoAP to the server.
struct Raw(UdpSocket);

impl Raw {
    async fn new() -> Self {
        Self(UdpSocket::bind("127.0.0.1:0").await.unwrap())
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.0.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram (a guard of 5 s against a hang, not a timer the test waits for).
    async fn recv(&self) -> Vec<u8> {
        let mut buf = vec![0; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), self.0.recv_from(&mut buf)).await.unwrap().unwrap();
        buf.truncate(n);
        buf
    }

    async fn recv_packet(&self) -> Packet {
        parse(&self.recv().await).unwrap()
    }
}

fn con(req: &onem2m_primitive::RequestPrimitive, mid: u16, token: &[u8]) -> Packet {
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

#[tokio::test]
async fn crud_over_udp() {
    let server = start(server_config(), Duration::ZERO).await;
    let client = CoapClient::connect(server.addr, client_config()).await.unwrap();
    let cases = [
        (Operation::Create, "cse-in/ae1", ResponseStatusCode::CREATED),
        (Operation::Retrieve, "cse-in/ae1/cnt1", ResponseStatusCode::OK),
        (Operation::Update, "cse-in/ae1/cnt1", ResponseStatusCode::UPDATED),
        (Operation::Delete, "cse-in/ae1/cnt1", ResponseStatusCode::DELETED),
        (Operation::Notify, "/id-in/Cae1", ResponseStatusCode::OK),
    ];
    for (i, (op, to, rsc)) in cases.into_iter().enumerate() {
        let rqi = format!("crud-{i}");
        let rsp = client.send(&request(op, to, &rqi)).await.unwrap();
        assert_eq!((rsp.rsc, rsp.rqi.as_str(), rsp.rvi.as_deref()), (rsc, rqi.as_str(), Some("3")), "{op}");
        assert_eq!(server.calls(&rqi), 1);
    }
    let rsp = client.send(&request(Operation::Create, "cse-in", "c")).await.unwrap();
    assert_eq!(rsp.pc, Some(json!({"m2m:uri": "cse-in/new"})));
    // The service learns the peer's address (the NOTIFY handler answers it).
    let rsp = client.send(&request(Operation::Notify, "/id-in/Cae1", "peer")).await.unwrap();
    let local = client.local_addr().unwrap();
    assert_eq!(rsp.pc, Some(json!({"peer": format!("127.0.0.1:{}", local.port())})));
    assert_eq!(onem2m_sa_coap::current_peer(), None);
    server.stop().await;
}

#[tokio::test]
async fn cbor_and_non_confirmable() {
    let server = start(server_config(), Duration::ZERO).await;
    let config = ClientConfig {
        encoding: Encoding { media: MediaType::Cbor, ..Encoding::default() },
        non_confirmable: true,
        ..client_config()
    };
    let client = CoapClient::connect(server.addr, config).await.unwrap();
    let mut req = request(Operation::Update, "cse-in/cnt", "non-1");
    req.pc = Some(json!({"m2m:cnt": {"lbl": ["a", "b"], "mni": 10}}));
    let rsp = client.send(&req).await.unwrap();
    assert_eq!((rsp.rsc, rsp.pc), (ResponseStatusCode::UPDATED, req.pc.clone()));
    assert_eq!(server.calls("non-1"), 1);
    server.stop().await;
}

#[tokio::test]
async fn block_wise_both_ways_with_negotiated_sizes() {
    // The client offers 256-byte blocks, the server asks for 128: the client follows.
    let config = ServerConfig { block_szx: 3, ..server_config() };
    let server = start(config, Duration::ZERO).await;
    let client = CoapClient::connect(server.addr, ClientConfig { block_szx: 4, ..client_config() }).await.unwrap();
    let mut req = request(Operation::Update, "cse-in/cnt", "big-up");
    req.pc = Some(json!({"m2m:cnt": {"lbl": ["y".repeat(3000)]}}));
    let rsp = client.send(&req).await.unwrap();
    assert_eq!((rsp.rsc, &rsp.pc), (ResponseStatusCode::UPDATED, &req.pc));
    assert_eq!(server.calls("big-up"), 1);
    let rsp = client.send(&request(Operation::Retrieve, "cse-in/big", "big-down")).await.unwrap();
    assert_eq!(rsp.pc.unwrap()["m2m:cin"]["con"].as_str().unwrap().len(), 5000);
    assert_eq!(server.calls("big-down"), 1);
    server.stop().await;
}

use onem2m_sa_coap::ServerConfig;

#[tokio::test]
async fn a_duplicated_con_executes_once_and_gets_the_same_answer() {
    let server = start(server_config(), Duration::ZERO).await;
    let raw = Raw::new().await;
    let bytes = con(&request(Operation::Create, "cse-in", "dup-1"), 0x1234, b"tk").to_bytes().unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        raw.send(&bytes, server.addr).await;
        answers.push(raw.recv().await);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    let answer = parse(&answers[0]).unwrap();
    assert_eq!(
        (answer.header.get_type(), answer.header.message_id, answer.get_token()),
        (MessageType::Acknowledgement, 0x1234, &b"tk"[..])
    );
    assert_eq!(code(&answer), (2, 1));
    assert_eq!(server.calls("dup-1"), 1);
    // The same message ID with another token (the peer's IDs wrapped around) is a new request,
    // never answered with the cached answer of the old one.
    let reused = con(&request(Operation::Retrieve, "cse-in", "dup-2"), 0x1234, b"t2").to_bytes().unwrap();
    raw.send(&reused, server.addr).await;
    let answer = raw.recv_packet().await;
    assert_eq!((code(&answer), answer.get_token()), ((2, 5), &b"t2"[..]));
    assert_eq!(packet_to_response(&answer, &Limits::default()).unwrap().rqi, "dup-2");
    assert_eq!(server.calls("dup-2"), 1);
    // The same message ID from another peer is another exchange.
    let other = Raw::new().await;
    other.send(&bytes, server.addr).await;
    assert_eq!(code(&other.recv_packet().await), (2, 1));
    assert_eq!(server.calls("dup-1"), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_answer_is_separate_and_retransmitted_until_acknowledged() {
    let server = start(server_config(), Duration::from_millis(400)).await;
    let raw = Raw::new().await;
    let bytes = con(&request(Operation::Retrieve, "cse-in/slow", "sep-1"), 77, b"sep").to_bytes().unwrap();
    raw.send(&bytes, server.addr).await;
    let ack = raw.recv_packet().await;
    assert_eq!((ack.header.get_type(), ack.header.message_id, code(&ack)), (MessageType::Acknowledgement, 77, (0, 0)));
    // A duplicate while the request executes gets the Empty ACK again, and is not executed.
    raw.send(&bytes, server.addr).await;
    assert_eq!(raw.recv().await, onem2m_sa_coap::message::empty(MessageType::Acknowledgement, 77));
    let answer = raw.recv_packet().await;
    assert_eq!(
        (answer.header.get_type(), answer.get_token(), code(&answer)),
        (MessageType::Confirmable, &b"sep"[..], (2, 5))
    );
    // Not acknowledged: the same answer comes again, then stops once acknowledged.
    let again = raw.recv_packet().await;
    assert_eq!(again, answer);
    raw.send(&onem2m_sa_coap::message::empty(MessageType::Acknowledgement, answer.header.message_id), server.addr)
        .await;
    assert_eq!(packet_to_response(&answer, &Limits::default()).unwrap().rqi, "sep-1");
    assert_eq!(server.calls("sep-1"), 1);
    // The client follows the same path.
    let client = CoapClient::connect(server.addr, client_config()).await.unwrap();
    let rsp = client.send(&request(Operation::Retrieve, "cse-in/slow", "sep-2")).await.unwrap();
    assert_eq!(rsp.rsc, ResponseStatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn refusals_unknown_critical_option_malformed_ping_oversize() {
    let server = start(server_config(), Duration::ZERO).await;
    let raw = Raw::new().await;
    let mut p = con(&request(Operation::Retrieve, "cse-in", "crit-1"), 1, b"a");
    p.add_option(CoapOption::Unknown(343), b"x".to_vec());
    raw.send(&p.to_bytes().unwrap(), server.addr).await;
    let answer = raw.recv_packet().await;
    assert_eq!((answer.header.message_id, code(&answer)), (1, (4, 2)));
    let rsp = packet_to_response(&answer, &Limits::default()).unwrap();
    assert_eq!((rsp.rsc, rsp.rqi.as_str()), (ResponseStatusCode::BAD_REQUEST, "crit-1"));
    // Malformed CON (payload marker without payload): RST with its message ID.
    raw.send(&[0x40, 0x01, 0x00, 0x02, 0xff], server.addr).await;
    let rst = raw.recv_packet().await;
    assert_eq!((rst.header.get_type(), rst.header.message_id), (MessageType::Reset, 2));
    // A CoAP ping (Empty CON): RST.
    raw.send(&[0x40, 0x00, 0x00, 0x03], server.addr).await;
    assert_eq!(raw.recv_packet().await.header.get_type(), MessageType::Reset);
    // Garbage and a malformed NON are dropped: the next answer is to the next request.
    raw.send(&[0xff; 3], server.addr).await;
    raw.send(&[0x50, 0x01, 0x00, 0x04, 0xff], server.addr).await;
    // A datagram over the limit: 4.13 with Size1.
    let mut big = con(&request(Operation::Update, "cse-in", "big"), 5, b"b");
    big.payload = vec![b' '; 2000];
    raw.send(&big.to_bytes_unlimited().unwrap(), server.addr).await;
    let answer = raw.recv_packet().await;
    assert_eq!((answer.header.message_id, code(&answer)), (5, (4, 13)));
    assert_eq!(answer.get_first_option(CoapOption::Size1).unwrap(), &encode_uint(1280));
    // A request without oneM2M-RQI: 4.00 with RSC 4000.
    let mut no_rqi = con(&request(Operation::Retrieve, "cse-in", "x"), 6, b"c");
    no_rqi.clear_option(CoapOption::from(onem2m::RQI));
    raw.send(&no_rqi.to_bytes().unwrap(), server.addr).await;
    let answer = raw.recv_packet().await;
    assert_eq!((answer.header.message_id, code(&answer)), (6, (4, 0)));
    assert_eq!(server.total_calls(), 0);
    server.stop().await;
}

fn block1(req: &onem2m_primitive::RequestPrimitive, mid: u16, num: u32, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = con(req, mid, b"bl");
    p.clear_option(CoapOption::ContentFormat);
    p.add_option(CoapOption::ContentFormat, encode_uint(50));
    p.add_option(CoapOption::Block1, BlockValue { num, more, szx: 2 }.encode());
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

#[tokio::test]
async fn block1_out_of_order_and_a_flood_within_the_caps() {
    let blocks = BlockLimits { max_peer_bytes: 256, max_total_bytes: 512, ..BlockLimits::default() };
    let server = start(ServerConfig { blocks, ..server_config() }, Duration::ZERO).await;
    let raw = Raw::new().await;
    let req = request(Operation::Update, "cse-in/a", "flood");
    // Block 1 without block 0: 4.08 Request Entity Incomplete.
    raw.send(&block1(&req, 10, 1, true, &[b' '; 64]), server.addr).await;
    assert_eq!(code(&raw.recv_packet().await), (4, 8));
    // A transfer whose Size1 announces more than the largest body: 4.13 with the limit.
    let mut announced = parse(&block1(&req, 11, 0, true, &[b' '; 64])).unwrap();
    announced.add_option(CoapOption::Size1, encode_uint(10 << 20));
    raw.send(&announced.to_bytes().unwrap(), server.addr).await;
    let answer = raw.recv_packet().await;
    assert_eq!(code(&answer), (4, 13));
    assert_eq!(answer.get_first_option(CoapOption::Size1).unwrap(), &encode_uint(1 << 20));
    // Four transfers of 64 bytes fill this peer's 256 bytes; the fifth is refused 5.03.
    for i in 0..5u16 {
        let req = request(Operation::Update, &format!("cse-in/t{i}"), "flood");
        raw.send(&block1(&req, 20 + i, 0, true, &[b' '; 64]), server.addr).await;
        let answer = raw.recv_packet().await;
        let expected = if i < 4 { (2, 31) } else { (5, 3) };
        assert_eq!(code(&answer), expected, "transfer {i}");
    }
    // Another peer still has room: the cap is per peer before it is total.
    let other = Raw::new().await;
    other.send(&block1(&req, 30, 0, true, &[b' '; 64]), server.addr).await;
    assert_eq!(code(&other.recv_packet().await), (2, 31));
    other.send(&block1(&req, 31, 1, false, b"{}"), server.addr).await;
    assert_eq!(code(&other.recv_packet().await), (2, 4));
    assert_eq!(server.calls("flood"), 1);
    server.stop().await;
}

#[tokio::test]
async fn unacknowledged_requests_are_retransmitted_with_back_off_then_fail_5103() {
    let silent = Raw::new().await;
    let addr = silent.0.local_addr().unwrap();
    let transmission =
        Transmission { ack_timeout: Duration::from_millis(20), ack_random_factor: 1.0, max_retransmit: 3 };
    let client = CoapClient::connect(addr, ClientConfig { transmission, ..client_config() }).await.unwrap();
    let started = Instant::now();
    let sending = tokio::spawn(async move { client.send(&request(Operation::Retrieve, "cse-in", "lost")).await });
    let mut copies = Vec::new();
    for _ in 0..4 {
        copies.push(silent.recv().await);
    }
    let err = sending.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Unreachable), "{err}");
    assert_eq!(err.rsc(), ResponseStatusCode::TARGET_NOT_REACHABLE);
    assert!(copies.windows(2).all(|w| w[0] == w[1]), "retransmissions repeat the message and its ID");
    // 20 + 40 + 80 + 160 ms at least: the back-off doubles (timers never fire early).
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn acknowledged_but_unanswered_requests_time_out_4008() {
    let server = start(server_config(), Duration::ZERO).await;
    let config = ClientConfig { request_timeout: Duration::from_millis(400), ..client_config() };
    let client = CoapClient::connect(server.addr, config).await.unwrap();
    let err = client.send(&request(Operation::Retrieve, "cse-in/never", "t")).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err}");
    assert_eq!(err.rsc(), ResponseStatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn graceful_stop_lets_the_exchange_in_flight_finish() {
    let mut server = start(server_config(), Duration::from_millis(300)).await;
    let client = CoapClient::connect(server.addr, client_config()).await.unwrap();
    let calls = server.calls.clone();
    let sending = tokio::spawn(async move { client.send(&request(Operation::Retrieve, "cse-in/slow", "last")).await });
    while calls.lock().unwrap().get("last").is_none() {
        tokio::task::yield_now().await;
    }
    let _ = server.stop_signal().send(());
    let rsp = sending.await.unwrap().unwrap();
    assert_eq!(rsp.rsc, ResponseStatusCode::OK);
    server.join().await.unwrap();
}

/// A peer beyond its share of the duplicate cache forgets its own oldest finished exchanges,
/// not the others', and is not refused (before, it got 5.03 for every new request until its
/// exchanges aged out, about four minutes: a sidecar carrying all of its AEs' traffic as one
/// peer stalled after 1024 requests); only a peer whose remembered exchanges are all still
/// executing is refused 5.03, and that request is not executed.
#[tokio::test]
async fn one_peer_cannot_crowd_the_duplicate_cache() {
    let config = ServerConfig { max_exchanges_per_peer: 3, ..server_config() };
    let server = start(config, Duration::from_millis(400)).await;
    let other = Raw::new().await;
    let theirs = con(&request(Operation::Retrieve, "cse-in", "other-1"), 1, b"o").to_bytes().unwrap();
    other.send(&theirs, server.addr).await;
    assert_eq!(code(&other.recv_packet().await), (2, 5));
    let raw = Raw::new().await;
    let mut last = Vec::new();
    for mid in 0..8u16 {
        last = con(&request(Operation::Retrieve, "cse-in", &format!("crowd-{mid}")), mid, b"c").to_bytes().unwrap();
        raw.send(&last, server.addr).await;
        assert_eq!(code(&raw.recv_packet().await), (2, 5), "message {mid}");
    }
    assert_eq!(server.total_calls(), 9);
    // Its latest exchange and the other peer's are still recognized: answered again, not executed.
    raw.send(&last, server.addr).await;
    assert_eq!(code(&raw.recv_packet().await), (2, 5));
    other.send(&theirs, server.addr).await;
    assert_eq!(code(&other.recv_packet().await), (2, 5));
    assert_eq!((server.calls("crowd-7"), server.calls("other-1")), (1, 1));

    // Three requests still executing fill a peer's share: a fourth is refused, not executed, and
    // not remembered (its duplicate is refused again).
    let busy = Raw::new().await;
    for mid in 10..13u16 {
        let slow = con(&request(Operation::Retrieve, "cse-in/slow", &format!("busy-{mid}")), mid, b"b");
        busy.send(&slow.to_bytes().unwrap(), server.addr).await;
    }
    while server.total_calls() < 12 {
        tokio::task::yield_now().await;
    }
    let fourth = con(&request(Operation::Retrieve, "cse-in", "busy-13"), 13, b"b").to_bytes().unwrap();
    for _ in 0..2 {
        busy.send(&fourth, server.addr).await;
        loop {
            let answer = busy.recv_packet().await;
            if answer.header.message_id == 13 {
                assert_eq!(code(&answer), (5, 3));
                break;
            }
        }
    }
    assert_eq!(server.calls("busy-13"), 0);
    server.stop().await;
}
