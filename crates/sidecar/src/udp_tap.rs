//! A UDP relay that counts the datagrams and bytes crossing it: the demo's (and the tests')
//! view of a CoAP hop, as [`crate::tap`] is for HTTP.
//!
//! It receives datagrams on its own address and forwards each to its target unchanged, from a
//! socket of its own per client address, so that the target's answers find their way back to
//! that client. It counts what goes each way — the bytes on the air, CoAP headers, options and
//! payloads, without the UDP/IP headers — and keeps a copy of the first datagram a client sends
//! after [`UdpTap::arm`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::{JoinHandle, JoinSet};

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Shared {
    up_bytes: AtomicU64,
    up_datagrams: AtomicU64,
    down_bytes: AtomicU64,
    down_datagrams: AtomicU64,
    armed: AtomicBool,
    sample: Mutex<Option<Vec<u8>>>,
}

/// What crossed a [`UdpTap`] so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Bytes from the clients to the target.
    pub up_bytes: u64,
    /// Datagrams from the clients to the target.
    pub up_datagrams: u64,
    /// Bytes from the target back to the clients.
    pub down_bytes: u64,
    /// Datagrams from the target back to the clients.
    pub down_datagrams: u64,
}

impl std::ops::Sub for UdpCounts {
    type Output = UdpCounts;
    fn sub(self, before: UdpCounts) -> UdpCounts {
        UdpCounts {
            up_bytes: self.up_bytes - before.up_bytes,
            up_datagrams: self.up_datagrams - before.up_datagrams,
            down_bytes: self.down_bytes - before.down_bytes,
            down_datagrams: self.down_datagrams - before.down_datagrams,
        }
    }
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct UdpTap {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for UdpTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpTap {
    /// Relays every datagram received on `socket` to `target`.
    pub fn start(socket: UdpSocket, target: SocketAddr) -> std::io::Result<Self> {
        let addr = socket.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(relay(Arc::new(socket), target, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Binds a loopback socket on a free port and relays it to `target`.
    pub async fn loopback(target: SocketAddr) -> std::io::Result<Self> {
        Self::start(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?, target)
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What crossed so far.
    pub fn counts(&self) -> UdpCounts {
        let s = &self.shared;
        UdpCounts {
            up_bytes: s.up_bytes.load(Ordering::Relaxed),
            up_datagrams: s.up_datagrams.load(Ordering::Relaxed),
            down_bytes: s.down_bytes.load(Ordering::Relaxed),
            down_datagrams: s.down_datagrams.load(Ordering::Relaxed),
        }
    }

    /// Keeps a copy of the next datagram a client sends.
    pub fn arm(&self) {
        self.shared.armed.store(true, Ordering::Release);
    }

    /// The datagram kept after [`UdpTap::arm`], if one came.
    pub fn sample(&self) -> Option<Vec<u8>> {
        self.shared.sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

async fn relay(front: Arc<UdpSocket>, target: SocketAddr, shared: Arc<Shared>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    // The tasks carrying answers back; aborted with the relay.
    let mut back = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else { continue };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let local = if target.is_ipv4() {
                    SocketAddr::from(([127, 0, 0, 1], 0))
                } else {
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
                };
                let Ok(u) = UdpSocket::bind(local).await else { continue };
                let u = Arc::new(u);
                upstreams.insert(client, u.clone());
                let (front, from_target, shared) = (front.clone(), u.clone(), shared.clone());
                back.spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    loop {
                        let Ok((n, from)) = from_target.recv_from(&mut buf).await else { continue };
                        if from != target {
                            continue;
                        }
                        shared.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        shared.down_datagrams.fetch_add(1, Ordering::Relaxed);
                        let _ = front.send_to(&buf[..n], client).await;
                    }
                });
                u
            }
        };
        shared.up_bytes.fetch_add(n as u64, Ordering::Relaxed);
        shared.up_datagrams.fetch_add(1, Ordering::Relaxed);
        if shared.armed.swap(false, Ordering::AcqRel) {
            *shared.sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(buf[..n].to_vec());
        }
        let _ = upstream.send_to(&buf[..n], target).await;
    }
}
