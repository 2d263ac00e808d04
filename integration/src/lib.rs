//! Helpers for the integration suite: sidecars on their own runtimes (so a test can kill one
//! the way a crash would, every connection and task with it, and start it again on the same
//! ports), and small clients.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acme;
pub mod aiocoap;
pub mod balancer;
pub mod coap_fuzz_checks;
pub mod coap_pair;
pub mod fuzz_checks;
pub mod lossy_udp;
pub mod mqtt_fuzz_checks;
pub mod mqtt_watcher;
pub mod relay;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use onem2m_primitive::{Operation, RequestPrimitive};
use onem2m_sa_sidecar::config::Config;
use onem2m_sa_sidecar::proxy::{Addresses, Listeners, Sidecar};
use tokio::net::TcpListener;

/// `[store]` of sidecar replicas sharing their SAs through the Redis at `url` (its key names
/// under `prefix`), with a fixed test key-encryption key and Redis commands bounded by `timeout`.
pub fn redis_store(
    url: String,
    prefix: &str,
    timeout: std::time::Duration,
) -> onem2m_sa_sidecar::config::StoreSettings {
    onem2m_sa_sidecar::config::StoreSettings::Redis(onem2m_sa_sidecar::config::RedisSettings {
        url,
        sentinels: Vec::new(),
        master: None,
        cluster: Vec::new(),
        ca_file: None,
        client_cert: None,
        kek: std::sync::Arc::new(zeroize::Zeroizing::new([0x4b; 32])),
        prefix: prefix.into(),
        timeout,
        lease_block: 32,
        lease_refresh: std::time::Duration::from_millis(250),
        lease_replicas: 0,
    })
}

/// A sidecar running on a runtime of its own.
pub struct Isolated {
    runtime: Option<tokio::runtime::Runtime>,
    sidecar: Option<Sidecar>,
    addresses: Addresses,
}

impl Isolated {
    /// Starts a sidecar for `config`, listening where `addresses` says (ingress/egress; a port
    /// of 0 picks a free one).
    pub fn start(config: &Config, ingress: Option<SocketAddr>, egress: Option<SocketAddr>) -> Self {
        // Built and started on a thread of its own: this may be called from async code, where
        // blocking on another runtime is not allowed.
        let (runtime, sidecar) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let sidecar = runtime.block_on(async {
                        let bind = |a: Option<SocketAddr>| async move {
                            match a {
                                Some(a) => Some(TcpListener::bind(a).await.expect("bind")),
                                None => None,
                            }
                        };
                        let listeners = Listeners {
                            ingress_http: bind(ingress).await,
                            egress_http: bind(egress).await,
                            admin: None,
                        };
                        Sidecar::start(config, listeners, None).await.expect("start")
                    });
                    (runtime, sidecar)
                })
                .join()
                .expect("sidecar thread")
        });
        let addresses = sidecar.addresses();
        Self { runtime: Some(runtime), sidecar: Some(sidecar), addresses }
    }

    /// Where it listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// The running sidecar.
    pub fn sidecar(&self) -> &Sidecar {
        self.sidecar.as_ref().expect("running")
    }

    /// Kills it as a crash would: every task and connection ends at once, all state is lost.
    /// Returns once its sockets are closed, so it can be started again on the same ports.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.sidecar.take());
        if let Some(rt) = self.runtime.take() {
            // Dropped tasks close their sockets; wait for the worker to finish dropping them
            // (from a plain thread: this may run inside async code).
            std::thread::scope(|s| {
                s.spawn(|| rt.shutdown_timeout(std::time::Duration::from_secs(10)));
            });
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port for a sidecar that may be killed and started again where it was.
///
/// Taken below the usual ephemeral range (32768–60999 on Linux): a port-0 port, released and
/// bound again later, can meanwhile become the source port of one of the many connections the
/// relays open, and the bind fails. Ports here are only ever bound explicitly; the counter
/// keeps one process's tests apart, the process ID concurrent test processes.
pub fn free_port() -> SocketAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = 20_000 + (std::process::id() as usize % 100) * 100;
    loop {
        let port = 20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// A request from `fr` with `rvi` 3.
pub fn request(op: Operation, to: &str, fr: &str, rqi: &str) -> RequestPrimitive {
    let mut r = RequestPrimitive::new(op, to, Some(fr.to_owned()), rqi);
    r.rvi = Some("3".into());
    r
}
