//! A CoAP server on 127.0.0.1 with a counting service, shared by the UDP tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};
use onem2m_sa_coap::{BoxError, ServerConfig, serve};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How many times the service executed each `rqi`.
pub type Calls = Arc<Mutex<HashMap<String, usize>>>;

pub struct Server {
    pub addr: SocketAddr,
    pub calls: Calls,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn calls(&self, rqi: &str) -> usize {
        self.calls.lock().unwrap().get(rqi).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap().unwrap();
    }

    pub fn stop_signal(&mut self) -> oneshot::Sender<()> {
        self.stop.take().unwrap()
    }

    pub async fn join(self) -> std::io::Result<()> {
        self.task.await.unwrap()
    }
}

/// The test CSE: CREATE → 2001 with `m2m:uri`; RETRIEVE → 2000, `to` ending in `big` gives a
/// 5000-byte content; UPDATE → 2004 echoing `pc`; DELETE → 2002; NOTIFY → 2000. A `to` ending
/// in `slow` waits `slow` first; `never` never answers.
pub async fn start(config: ServerConfig, slow: Duration) -> Server {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let calls: Calls = Arc::default();
    let counted = calls.clone();
    let service = tower::service_fn(move |req: RequestPrimitive| {
        *counted.lock().unwrap().entry(req.rqi.clone()).or_default() += 1;
        async move {
            if req.to.ends_with("never") {
                std::future::pending::<()>().await;
            }
            if req.to.ends_with("slow") {
                tokio::time::sleep(slow).await;
            }
            let (rsc, pc) = match req.op {
                Operation::Create => (ResponseStatusCode::CREATED, Some(json!({"m2m:uri": format!("{}/new", req.to)}))),
                Operation::Retrieve if req.to.ends_with("big") => {
                    (ResponseStatusCode::OK, Some(json!({"m2m:cin": {"con": "x".repeat(5000)}})))
                }
                Operation::Retrieve => (ResponseStatusCode::OK, Some(json!({"m2m:cin": {"con": "21.5"}}))),
                Operation::Update => (ResponseStatusCode::UPDATED, req.pc.clone()),
                Operation::Delete => (ResponseStatusCode::DELETED, None),
                Operation::Notify => {
                    (ResponseStatusCode::OK, onem2m_sa_coap::current_peer().map(|p| json!({"peer": p.to_string()})))
                }
            };
            let mut rsp = ResponsePrimitive::answering(&req, rsc);
            rsp.pc = pc;
            Ok::<_, BoxError>(rsp)
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(socket, service, config, async {
        let _ = stopped.await;
    }));
    Server { addr, calls, stop: Some(stop), task }
}

/// Server settings for tests: short timers, deterministic message IDs.
pub fn server_config() -> ServerConfig {
    ServerConfig {
        piggyback_delay: Duration::from_millis(100),
        transmission: onem2m_sa_coap::Transmission {
            ack_timeout: Duration::from_millis(50),
            ack_random_factor: 1.0,
            max_retransmit: 4,
        },
        drain_timeout: Duration::from_secs(5),
        seed: Some(7),
        ..ServerConfig::default()
    }
}

pub fn request(op: Operation, to: &str, rqi: &str) -> RequestPrimitive {
    let mut req = RequestPrimitive::new(op, to, Some("Cae1".into()), rqi);
    req.rvi = Some("3".into());
    if op == Operation::Create {
        req.ty = Some(3);
        req.pc = Some(json!({"m2m:cnt": {"rn": "cnt1"}}));
    }
    req
}
