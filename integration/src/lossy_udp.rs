//! A lossy UDP relay for a CoAP hop (AE-side sidecar → CSE-side CoAP ingress): it drops,
//! duplicates and reorders datagrams both ways, each decision drawn from a seeded generator per
//! direction, so the sequence of fates is the same on every run (which datagram meets which fate
//! still depends on retransmission timing).
//!
//! Like [`onem2m_sa_sidecar::udp_tap::UdpTap`] it relays from a socket of its own per client
//! address, so the target's answers find their way back. A reordered datagram is held back and
//! sent after the next datagram in the same direction (the one after it overtakes it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::UdpSocket;
use tokio::task::{JoinHandle, JoinSet};

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 64 * 1024;

/// How often each fate is drawn, in percent of the datagrams of each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Dropped.
    pub drop: u64,
    /// Sent twice.
    pub duplicate: u64,
    /// Held back until the next datagram in the same direction has been sent.
    pub reorder: u64,
}

/// What the relay did so far, each way together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Datagrams received.
    pub datagrams: usize,
    /// Datagrams dropped.
    pub dropped: usize,
    /// Datagrams sent twice.
    pub duplicated: usize,
    /// Datagrams overtaken by the next one.
    pub reordered: usize,
}

/// A deterministic generator (a 64-bit LCG, its high bits) for the fates.
#[derive(Debug)]
struct Fates {
    state: u64,
    rates: Rates,
    held: Option<Vec<u8>>,
}

impl Fates {
    fn roll(&mut self) -> u64 {
        self.state = self.state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.state >> 33) % 100
    }

    /// The datagrams to send for `datagram`, in order, and the tally updated.
    fn decide(&mut self, datagram: Vec<u8>, tally: &mut Tally) -> Vec<Vec<u8>> {
        let Rates { drop, duplicate, reorder } = self.rates;
        let roll = self.roll();
        tally.datagrams += 1;
        let mut out = Vec::new();
        if roll < drop {
            tally.dropped += 1;
            return out;
        }
        if roll < drop + duplicate {
            tally.duplicated += 1;
            out.push(datagram.clone());
            out.push(datagram);
        } else if roll < drop + duplicate + reorder && self.held.is_none() {
            tally.reordered += 1;
            self.held = Some(datagram);
            return out;
        } else {
            out.push(datagram);
        }
        out.extend(self.held.take());
        out
    }
}

/// A running lossy relay; dropping it stops it.
#[derive(Debug)]
pub struct LossyUdp {
    addr: SocketAddr,
    tally: Arc<Mutex<Tally>>,
    task: JoinHandle<()>,
}

impl Drop for LossyUdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LossyUdp {
    /// Binds a loopback socket on a free port and relays it to `target` under `rates`, the
    /// fates drawn from `seed` (each direction its own generator).
    pub async fn start(target: SocketAddr, seed: u64, rates: Rates) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
        let addr = front.local_addr()?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let task = tokio::spawn(relay(front, target, seed, rates, tally.clone()));
        Ok(Self { addr, tally, task })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the relay did so far.
    pub fn tally(&self) -> Tally {
        *lock(&self.tally)
    }
}

async fn relay(front: Arc<UdpSocket>, target: SocketAddr, seed: u64, rates: Rates, tally: Arc<Mutex<Tally>>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut back = JoinSet::new();
    let mut up = Fates { state: seed, rates, held: None };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else { continue };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await else { continue };
                let u = Arc::new(u);
                upstreams.insert(client, u.clone());
                let (front, from_target, tally) = (front.clone(), u.clone(), tally.clone());
                let mut down = Fates { state: seed ^ 0x9e37_79b9_7f4a_7c15, rates, held: None };
                back.spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    loop {
                        let Ok((n, from)) = from_target.recv_from(&mut buf).await else { continue };
                        if from != target {
                            continue;
                        }
                        let out = down.decide(buf[..n].to_vec(), &mut lock(&tally));
                        for d in out {
                            let _ = front.send_to(&d, client).await;
                        }
                    }
                });
                u
            }
        };
        let out = up.decide(buf[..n].to_vec(), &mut lock(&tally));
        for d in out {
            let _ = upstream.send_to(&d, target).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_are_seeded_and_follow_the_rates() {
        let rates = Rates { drop: 20, duplicate: 15, reorder: 15 };
        let run = |seed| {
            let mut fates = Fates { state: seed, rates, held: None };
            let mut tally = Tally::default();
            let sent: Vec<Vec<Vec<u8>>> =
                (0..1000u32).map(|i| fates.decide(i.to_be_bytes().to_vec(), &mut tally)).collect();
            (sent, tally)
        };
        let (a, tally) = run(7);
        assert_eq!(a, run(7).0, "the same seed, the same fates");
        assert_ne!(a, run(8).0);
        assert!((150..250).contains(&tally.dropped), "{tally:?}");
        assert!((100..200).contains(&tally.duplicated), "{tally:?}");
        assert!((50..200).contains(&tally.reordered), "{tally:?}");
        // A held datagram goes out right after the one that overtook it.
        let overtaken = a.iter().flatten().zip(a.iter().flatten().skip(1)).filter(|(x, y)| x > y).count();
        assert!(overtaken >= tally.reordered / 2, "{overtaken} vs {tally:?}");
    }
}
