//! A real `redis-server` per test (a free loopback port, a temporary directory, no
//! persistence), killed when dropped.
#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments besides the port, directory and no persistence.
    extra: Vec<String>,
}

impl Redis {
    /// Starts a redis-server, or `None` (with the reason printed) when there is none and CI
    /// does not require it.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// A redis-server that replicates `master`.
    pub fn replica_of(master: &Redis) -> Self {
        Self::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]).expect("redis-server is there")
    }

    /// [`Self::start`] with `extra` arguments.
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
            assert!(
                std::env::var("ONEM2M_REQUIRE_REDIS").as_deref() != Ok("1"),
                "ONEM2M_REQUIRE_REDIS=1 but redis-server is not on the PATH"
            );
            eprintln!("redis-server not found: skipping (install the redis-server package to run this test)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = Self::spawn(port, dir.path(), &extra);
        Some(Self { child, port, dir, extra })
    }

    fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        Self::ready(child, port)
    }

    fn ready(mut child: Child, port: u16) -> Child {
        // Ready once it answers PING (bounded: a server that never comes up fails the test).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return child;
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not come up on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, self.dir.path(), &self.extra);
    }

    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Sentinel (`redis-server --sentinel`) monitoring `master` as `mymaster` (quorum 1),
/// killed when dropped.
pub struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    pub const MASTER: &'static str = "mymaster";

    pub fn start(master: &Redis) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        // Sentinel rewrites its configuration file: one of its own.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {} 1000\nsentinel failover-timeout {} 10000\n",
                dir.path().display(),
                Self::MASTER,
                master.port,
                Self::MASTER,
                Self::MASTER,
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let child = Redis::ready(child, port);
        Self { child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// The port of the master it names now.
    pub fn master_port(&self) -> Option<u16> {
        let addr: Option<(String, String)> =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(Self::MASTER).query(&mut self.raw()).ok()?;
        addr.and_then(|(_, port)| port.parse().ok())
    }

    /// How many replicas of the master it knows.
    pub fn replicas(&self) -> usize {
        let replicas: Vec<redis::Value> =
            redis::cmd("SENTINEL").arg("replicas").arg(Self::MASTER).query(&mut self.raw()).unwrap_or_default();
        replicas.len()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
