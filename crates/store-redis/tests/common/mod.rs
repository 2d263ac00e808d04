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

    /// Freezes the server (SIGSTOP): it holds its connections but answers nothing.
    pub fn freeze(&self) {
        signal(&self.child, "-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        signal(&self.child, "-CONT");
    }

    /// A connection, unless the server is down.
    pub fn raw_checked(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url()).ok()?.get_connection_with_timeout(Duration::from_secs(1)).ok()
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").arg(sig).arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success(), "kill {sig} failed");
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of `masters` masters (and `replicas_each` replicas of each) on free loopback
/// ports, made with `redis-cli --cluster create`; killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts the cluster, or `None` when there is no redis-server (as [`Redis::start`]).
    pub fn start(masters: usize, replicas_each: usize) -> Option<Self> {
        let n = masters * (1 + replicas_each);
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Redis::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                // A replica takes over however long it was cut off (a test's cluster is young).
                "--cluster-replica-validity-factor",
                "0",
            ])?);
        }
        let addrs: Vec<String> = nodes.iter().map(|r| format!("127.0.0.1:{}", r.port())).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas_each.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Self { nodes };
        // Ready once every node sees every slot served (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(cluster_ok) {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        // And every master's replicas are in sync (a lease waits for one, see `lease_replicas`).
        let synced = |r: &Redis| {
            let Some(mut raw) = r.raw_checked() else { return false };
            let info: String = redis::cmd("INFO").arg("replication").query(&mut raw).unwrap_or_default();
            !info.contains("role:master") || info.matches("state=online").count() == replicas_each
        };
        while !cluster.nodes.iter().all(synced) {
            assert!(Instant::now() < deadline, "the cluster's replicas did not come in sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(cluster)
    }

    /// `redis://` addresses of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// The node that serves `slot` as master now.
    pub fn master_of(&self, slot: u16) -> usize {
        let mut raw = self.nodes.iter().find_map(|r| r.raw_checked()).expect("a live node");
        // Each entry: first slot, last slot, the master [host, port, id, …], its replicas.
        let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut raw).unwrap();
        let entry = slots
            .into_iter()
            .find(|e| {
                let (a, b): (u16, u16) =
                    (redis::from_redis_value(&e[0]).unwrap(), redis::from_redis_value(&e[1]).unwrap());
                a <= slot && slot <= b
            })
            .expect("slot served");
        let master: Vec<redis::Value> = redis::from_redis_value(&entry[2]).unwrap();
        let port: u16 = redis::from_redis_value(&master[1]).unwrap();
        self.nodes.iter().position(|r| r.port() == port).expect("a node of ours")
    }
}

fn cluster_ok(r: &Redis) -> bool {
    let Some(mut raw) = r.raw_checked() else { return false };
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut raw).unwrap_or_default();
    info.contains("cluster_state:ok")
}

/// A CA, Redis's certificate (for 127.0.0.1) and a client certificate, all PEM.
pub struct Pki {
    pub ca: String,
    pub server: (String, String),
    pub client: (String, String),
}

pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    // Names of their own: OpenSSL (Redis) takes a certificate whose subject is its issuer's
    // for self-signed.
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "onem2m-sa test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |eku: rcgen::ExtendedKeyUsagePurpose, name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(rcgen::ExtendedKeyUsagePurpose::ServerAuth, "redis"),
        client: leaf(rcgen::ExtendedKeyUsagePurpose::ClientAuth, "replica"),
    }
}

/// A redis-server with a TLS port besides its plain one, its certificate from [`pki`]'s CA,
/// asking clients for a certificate from that CA (`tls-auth-clients yes`).
pub struct TlsRedis {
    pub redis: Redis,
    pub tls_port: u16,
    pub pki: Pki,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    pub fn start() -> Option<Self> {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p.to_str().unwrap().to_owned()
        };
        let (ca, cert, key) =
            (path("ca.pem", &pki.ca), path("redis.pem", &pki.server.0), path("redis.key", &pki.server.1));
        let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A TLS port beside the harness's plain one (which it uses to see the server is up).
        let redis = Redis::start_with(&[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "yes",
        ])?;
        Some(Self { redis, tls_port, pki, _dir: dir })
    }

    /// Writes the CA, the client certificate and its key to `dir`: (ca, cert, key) paths.
    pub fn client_files(&self, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        (
            write("redis-ca.pem", &self.pki.ca),
            write("replica.pem", &self.pki.client.0),
            write("replica.key", &self.pki.client.1),
        )
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
