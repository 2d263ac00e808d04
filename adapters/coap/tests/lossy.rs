//! A lossy UDP relay between the client and the server that drops, duplicates and reorders
//! datagrams both ways: every request executes exactly once, or fails with a clear RSC — and
//! never executes twice.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{request, server_config, start};
use onem2m_primitive::{Operation, ResponseStatusCode};
use onem2m_sa_coap::{ClientConfig, CoapClient, Transmission};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

/// Deterministic fate of each datagram.
struct Chaos(u64);

impl Chaos {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// What the relay did, for the test's own sanity check.
#[derive(Default, Debug)]
struct Tally {
    dropped: usize,
    duplicated: usize,
    reordered: usize,
}

/// Relays between whoever talks to `front` and `server`: 20% dropped, 15% duplicated, 15%
/// held back and sent after the next datagram in the same direction.
async fn relay(server: SocketAddr, seed: u64) -> (SocketAddr, Arc<std::sync::Mutex<Tally>>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    for upstream in [true, false] {
        let (from, to) = if upstream { (front.clone(), back.clone()) } else { (back.clone(), front.clone()) };
        let (client, tally) = (client.clone(), tally.clone());
        tokio::spawn(async move {
            let mut chaos = Chaos(seed ^ u64::from(upstream));
            let mut held: Option<Vec<u8>> = None;
            let mut buf = vec![0; 65536];
            loop {
                let Ok((n, sender)) = from.recv_from(&mut buf).await else { return };
                let dest = if upstream {
                    *client.lock().await = Some(sender);
                    server
                } else {
                    match *client.lock().await {
                        Some(c) => c,
                        None => continue,
                    }
                };
                let datagram = buf[..n].to_vec();
                let roll = chaos.next() % 100;
                let mut out = Vec::new();
                match roll {
                    0..20 => tally.lock().unwrap().dropped += 1,
                    20..35 => {
                        tally.lock().unwrap().duplicated += 1;
                        out.push(datagram.clone());
                        out.push(datagram);
                    }
                    35..50 if held.is_none() => {
                        tally.lock().unwrap().reordered += 1;
                        held = Some(datagram);
                    }
                    _ => out.push(datagram),
                }
                if roll >= 50 || (20..35).contains(&roll) {
                    out.extend(held.take());
                }
                for d in out {
                    let _ = to.send_to(&d, dest).await;
                }
            }
        });
    }
    (addr, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_executes_once_or_fails_with_a_clear_rsc() {
    let server = start(server_config(), Duration::from_millis(150)).await;
    let (front, tally) = relay(server.addr, 0x5eed).await;
    let config = ClientConfig {
        transmission: Transmission {
            ack_timeout: Duration::from_millis(40),
            ack_random_factor: 1.5,
            max_retransmit: 5,
        },
        request_timeout: Duration::from_secs(8),
        block_szx: 4,
        seed: Some(11),
        ..ClientConfig::default()
    };
    let client = CoapClient::connect(front, config).await.unwrap();
    let mut outcomes = Vec::new();
    for i in 0..40 {
        let rqi = format!("lossy-{i}");
        let req = match i % 5 {
            0 => request(Operation::Create, "cse-in/ae1", &rqi),
            1 => request(Operation::Retrieve, "cse-in/ae1/slow", &rqi),
            2 => request(Operation::Retrieve, "cse-in/big", &rqi),
            3 => {
                let mut req = request(Operation::Update, "cse-in/ae1/cnt1", &rqi);
                req.pc = Some(json!({"m2m:cnt": {"lbl": ["z".repeat(900)]}}));
                req
            }
            _ => request(Operation::Delete, "cse-in/ae1/cnt1", &rqi),
        };
        let result = client.send(&req).await;
        outcomes.push((rqi, req, result));
    }
    let mut succeeded = 0;
    for (rqi, req, result) in &outcomes {
        let calls = server.calls(rqi);
        assert!(calls <= 1, "{rqi} executed {calls} times");
        match result {
            Ok(rsp) => {
                succeeded += 1;
                assert_eq!(calls, 1, "{rqi} answered without executing");
                assert_eq!(&rsp.rqi, rqi);
                assert!(rsp.rsc.is_success(), "{rqi}: {}", rsp.rsc);
                if req.op == Operation::Update {
                    assert_eq!(rsp.pc, req.pc, "{rqi}: the reassembled payload differs");
                }
                if req.to.ends_with("big") {
                    assert_eq!(rsp.pc.as_ref().unwrap()["m2m:cin"]["con"].as_str().unwrap().len(), 5000);
                }
            }
            Err(e) => {
                eprintln!("{rqi} ({} {}) failed after {calls} executions: {e:?}", req.op, req.to);
                let rsc = e.rsc();
                assert!(
                    rsc == ResponseStatusCode::TARGET_NOT_REACHABLE || rsc == ResponseStatusCode::REQUEST_TIMEOUT,
                    "{rqi}: {e} ({rsc})"
                );
            }
        }
    }
    let tally = tally.lock().unwrap();
    eprintln!("lossy relay: {succeeded}/40 succeeded; {tally:?}");
    assert!(tally.dropped > 10 && tally.duplicated > 10 && tally.reordered > 10, "{tally:?}");
    assert!(succeeded >= 30, "only {succeeded}/40 succeeded");
}
