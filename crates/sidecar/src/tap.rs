//! A TCP relay that counts and samples the bytes crossing it: the demo's view of the wire.
//!
//! It sits between two hops (client → egress, egress → ingress), forwards every connection to
//! its target unchanged, counts bytes in each direction, and keeps a copy of the first bytes
//! the client side sends after [`Tap::arm`], so the demo can show what actually crossed the
//! network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How many bytes of one request a sample keeps.
pub const SAMPLE_BYTES: usize = 4096;

#[derive(Debug, Default)]
struct Shared {
    up: AtomicU64,
    down: AtomicU64,
    armed: AtomicBool,
    sample: Mutex<Option<Vec<u8>>>,
}

/// A running relay.
#[derive(Debug, Clone)]
pub struct Tap {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Tap {
    /// Relays every connection accepted on `listener` to `target`.
    pub fn start(listener: TcpListener, target: SocketAddr) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    // Out of descriptors, say: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let up = pump(ri, wo, state.clone(), true);
                    let down = pump(ro, wi, state, false);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(Self { addr, shared })
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes sent client → target, and target → client, so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.shared.up.load(Ordering::Relaxed), self.shared.down.load(Ordering::Relaxed))
    }

    /// Keeps a copy of the next chunk the client side sends (replacing any earlier sample).
    pub fn arm(&self) {
        self.shared.armed.store(true, Ordering::Release);
    }

    /// The sampled bytes, if a chunk was sent since [`Self::arm`].
    pub fn sample(&self) -> Option<Vec<u8>> {
        self.shared.sample.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<Shared>,
    upstream: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upstream {
            state.up.fetch_add(n as u64, Ordering::Relaxed);
            if state.armed.swap(false, Ordering::AcqRel) {
                *state.sample.lock().unwrap_or_else(|e| e.into_inner()) = Some(buf[..n.min(SAMPLE_BYTES)].to_vec());
            }
        } else {
            state.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A classic hex dump (offset, 16 bytes in hex, printable ASCII) of at most `max` bytes.
pub fn hex_dump(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes[..bytes.len().min(max)].chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        out.push_str(&format!("{:08x}  {:<47}  |{ascii}|\n", i * 16, hex.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_shows_offsets_hex_and_ascii() {
        let dump = hex_dump(b"POST /~/id-in HTTP/1.1\r\n", 64);
        assert!(dump.starts_with("00000000  50 4f 53 54 20 2f 7e 2f"), "{dump}");
        assert!(dump.contains("|POST /~/id-in HT|"));
        assert!(dump.contains("00000010  "));
        assert_eq!(hex_dump(&[0u8; 100], 32).lines().count(), 2);
    }

    #[tokio::test]
    async fn relays_counts_and_samples() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
            s.write_all(b"!").await.unwrap();
        });
        let tap = Tap::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), target).unwrap();
        tap.arm();
        let mut c = TcpStream::connect(tap.addr()).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 6];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello!");
        assert_eq!(tap.sample().unwrap(), b"hello");
        assert_eq!(tap.bytes(), (5, 6));
    }
}
