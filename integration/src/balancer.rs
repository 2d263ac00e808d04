//! A round-robin HTTP/1.1 load balancer in front of replicas of a CSE-side sidecar, as a test
//! drives it.
//!
//! Every connection accepted is served request by request (read with [`read_message`]); each
//! request goes to one replica on a fresh connection, and exactly one answer comes back. SA
//! messages (`sa:msg`) go to the first replica in service (the source affinity the Responder's
//! half-open state needs, docs/deploy.md §12); every other request goes to the next replica in
//! service, round robin. A replica taken out of service ([`Balancer::take_out`], what a health
//! check does after a crash) gets no more requests. When the exchange with a replica fails (it
//! died with the request in flight), the client's connection is closed without an answer, as
//! a proxy that lost its upstream does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::relay::{Kind, Message, read_message};

/// One request the balancer handled.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The replica it went to.
    pub replica: usize,
    /// What it carried.
    pub kind: Kind,
    /// The request as sent.
    pub request: Message,
    /// The replica's answer, `None` if the exchange failed.
    pub answer: Option<Message>,
}

struct Shared {
    targets: Vec<SocketAddr>,
    in_service: Vec<AtomicBool>,
    next: AtomicUsize,
    log: Mutex<Vec<Sent>>,
}

impl Shared {
    /// The replica for a request of `kind`: the first in service for SA messages, the next in
    /// service otherwise.
    fn pick(&self, kind: Kind) -> Option<usize> {
        let n = self.targets.len();
        let start = if kind == Kind::SaMessage { 0 } else { self.next.fetch_add(1, Ordering::Relaxed) };
        (0..n).map(|k| (start + k) % n).find(|&i| self.in_service[i].load(Ordering::SeqCst))
    }
}

/// A running balancer; dropping it stops it and every connection it serves.
pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Balancer {
    /// A balancer on a free loopback port over `targets`, every one in service.
    pub async fn start(targets: Vec<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            in_service: targets.iter().map(|_| AtomicBool::new(true)).collect(),
            targets,
            next: AtomicUsize::new(0),
            log: Mutex::default(),
        });
        let accept = crate::relay::spawn_accept(listener, shared.clone(), serve);
        Ok(Self { addr, shared, accept })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes replica `i` out of service: no request goes to it from now on.
    pub fn take_out(&self, i: usize) {
        self.shared.in_service[i].store(false, Ordering::SeqCst);
    }

    /// Every request handled so far, in the order their exchanges ended.
    pub fn log(&self) -> Vec<Sent> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    while let Ok(Some(request)) = read_message(&mut client, &mut buf).await {
        let kind = Kind::of(request.header("content-type").as_deref(), &request.body);
        let Some(replica) = shared.pick(kind) else { return };
        let answer = forward(shared.targets[replica], &request.bytes()).await.ok();
        let closes = request.closes() || answer.as_ref().is_none_or(Message::closes);
        let reply = answer.as_ref().map(Message::bytes);
        shared.log.lock().unwrap_or_else(|e| e.into_inner()).push(Sent { replica, kind, request, answer });
        let Some(reply) = reply else { return };
        if client.write_all(&reply).await.is_err() || closes {
            return;
        }
    }
}

/// One exchange with a replica on a connection of its own.
pub async fn forward(target: SocketAddr, bytes: &[u8]) -> std::io::Result<Message> {
    let mut upstream = TcpStream::connect(target).await?;
    upstream.set_nodelay(true)?;
    upstream.write_all(bytes).await?;
    let mut buf = Vec::new();
    read_message(&mut upstream, &mut buf)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no answer"))
}
