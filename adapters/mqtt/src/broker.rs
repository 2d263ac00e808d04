//! A small MQTT 3.1.1 broker in-process, for tests and the demo: CONNECT (with an optional
//! username and password), SUBSCRIBE/UNSUBSCRIBE with `+` and `#` filters, PUBLISH at QoS 0
//! and 1 (acknowledged, forwarded at the lower of the two QoS), PINGREQ, DISCONNECT. No
//! retained messages, no persistent sessions, no redelivery: what a broker restart loses is
//! lost. [`Broker::tap`] shows every PUBLISH it receives (what a broker operator sees);
//! [`Broker::stop`] drops every connection at once, like a crash, and [`Broker::restart`]
//! listens again on the same address.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Largest packet the broker accepts by default (16 MiB).
pub const MAX_PACKET_BYTES: usize = 16 << 20;

/// Settings of a [`Broker`].
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    /// Username and password every client must present; `None` accepts any client.
    pub credentials: Option<(String, String)>,
    /// Largest packet accepted (0: [`MAX_PACKET_BYTES`]); a larger one closes the connection.
    pub max_packet_bytes: usize,
}

struct Client {
    tx: mpsc::UnboundedSender<Packet>,
    filters: Vec<(String, QoS)>,
    next_pkid: u16,
}

struct Shared {
    config: BrokerConfig,
    clients: Mutex<HashMap<u64, Client>>,
    next_id: AtomicU64,
    tap: broadcast::Sender<(String, Bytes)>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The broker. Dropping it stops it.
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("addr", &self.addr).finish()
    }
}

impl Broker {
    /// Listens on `addr` (port 0: a free port, see [`Broker::local_addr`]).
    pub async fn start(addr: SocketAddr, config: BrokerConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            tap: broadcast::channel(4096).0,
            tasks: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        lock(&shared.tasks).push(task);
        Ok(Self { shared, addr })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every PUBLISH received from now on: topic and payload.
    pub fn tap(&self) -> broadcast::Receiver<(String, Bytes)> {
        self.shared.tap.subscribe()
    }

    /// Clients connected now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.clients).len()
    }

    /// Stops listening and drops every connection at once (nothing more is sent: a crash).
    pub fn stop(&self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
        lock(&self.shared.clients).clear();
    }

    /// [`Broker::stop`], then listens again on the same address (no session survives).
    pub async fn restart(&self) -> io::Result<()> {
        let stopped: Vec<JoinHandle<()>> = lock(&self.shared.tasks).drain(..).collect();
        for task in &stopped {
            task.abort();
        }
        lock(&self.shared.clients).clear();
        // The sockets close once the aborted tasks are dropped.
        for task in stopped {
            let _ = task.await;
        }
        let listener = TcpListener::bind(self.addr).await?;
        let task = tokio::spawn(accept(listener, self.shared.clone()));
        lock(&self.shared.tasks).push(task);
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let task = tokio::spawn(connection(stream, shared.clone()));
        let mut tasks = lock(&shared.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

/// Whether the topic filter `filter` matches `topic` (MQTT 3.1.1 §4.7).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return !topic.starts_with('$'),
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Packet>();
    let max = match shared.config.max_packet_bytes {
        0 => MAX_PACKET_BYTES,
        n => n,
    };
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::new();
        while let Some(packet) = rx.recv().await {
            out.clear();
            if packet.write(&mut out, usize::MAX).is_err() || write.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let mut buf = BytesMut::with_capacity(4096);
    let mut connected = false;
    'read: loop {
        let packet = loop {
            match Packet::read(&mut buf, max) {
                Ok(p) => break p,
                Err(mqttbytes::Error::InsufficientBytes(_)) => match read.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break 'read,
                    Ok(_) => {}
                },
                Err(_) => break 'read,
            }
        };
        match packet {
            Packet::Connect(c) if !connected => {
                let ok = match &shared.config.credentials {
                    None => true,
                    Some((user, pass)) => c.login.as_ref().is_some_and(|l| &l.username == user && &l.password == pass),
                };
                let code = if ok { ConnectReturnCode::Success } else { ConnectReturnCode::BadUserNamePassword };
                let _ = tx.send(Packet::ConnAck(ConnAck::new(code, false)));
                if !ok {
                    break;
                }
                connected = true;
                let client = Client { tx: tx.clone(), filters: Vec::new(), next_pkid: 0 };
                lock(&shared.clients).insert(id, client);
            }
            _ if !connected => break,
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    let _ = tx.send(Packet::PubAck(PubAck::new(p.pkid)));
                } else if p.qos == QoS::ExactlyOnce {
                    break; // not supported: TS-0010 says QoS should not be 2.
                }
                let _ = shared.tap.send((p.topic.clone(), p.payload.clone()));
                route(&shared, &p);
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::new();
                if let Some(client) = lock(&shared.clients).get_mut(&id) {
                    for f in s.filters {
                        let qos = if f.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                        client.filters.retain(|(existing, _)| existing != &f.path);
                        client.filters.push((f.path, qos));
                        codes.push(SubscribeReasonCode::Success(qos));
                    }
                }
                let _ = tx.send(Packet::SubAck(SubAck::new(s.pkid, codes)));
            }
            Packet::Unsubscribe(u) => {
                if let Some(client) = lock(&shared.clients).get_mut(&id) {
                    client.filters.retain(|(f, _)| !u.topics.contains(f));
                }
                let _ = tx.send(Packet::UnsubAck(UnsubAck::new(u.pkid)));
            }
            Packet::PingReq => {
                let _ = tx.send(Packet::PingResp);
            }
            Packet::Disconnect => break,
            // Acknowledgements of what the broker forwarded: nothing is redelivered.
            _ => {}
        }
    }
    lock(&shared.clients).remove(&id);
    drop(tx);
    let _ = writer.await;
}

fn route(shared: &Shared, p: &Publish) {
    for client in lock(&shared.clients).values_mut() {
        let Some(qos) =
            client.filters.iter().filter(|(f, _)| matches(f, &p.topic)).map(|(_, q)| *q).max_by_key(|q| *q as u8)
        else {
            continue;
        };
        let mut out = Publish::from_bytes(p.topic.clone(), QoS::AtMostOnce, p.payload.clone());
        if qos == QoS::AtLeastOnce && p.qos == QoS::AtLeastOnce {
            client.next_pkid = client.next_pkid.checked_add(1).unwrap_or(1).max(1);
            out.qos = QoS::AtLeastOnce;
            out.pkid = client.next_pkid;
        }
        let _ = client.tx.send(Packet::Publish(out));
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches("#", "/oneM2M/req/a/b/json"));
        assert!(matches("/oneM2M/req/+/b/+", "/oneM2M/req/a/b/json"));
        assert!(!matches("/oneM2M/req/+/b/+", "/oneM2M/req/a/c/json"));
        assert!(matches("/oneM2M/resp/a/#", "/oneM2M/resp/a/b/json"));
        assert!(!matches("/oneM2M/resp/a/+", "/oneM2M/resp/a/b/json"));
        assert!(!matches("#", "$SYS/x"));
    }
}
