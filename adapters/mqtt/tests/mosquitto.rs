//! The MQTT suite against mosquitto (Debian `mosquitto`), started by the test on a free loopback
//! port with a configuration file in a temporary directory. Skipped with a note when mosquitto
//! is not installed, unless `ONEM2M_REQUIRE_MOSQUITTO` is set (CI installs it and sets it).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")]);
    let found = candidates.map(|d| d.join("mosquitto")).find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("ONEM2M_REQUIRE_MOSQUITTO").is_none(), "mosquitto is required but not installed");
        eprintln!("skipped: mosquitto not installed (apt-get install -y mosquitto)");
    }
    found
}

/// A mosquitto process of this test, killed on drop.
struct Mosquitto {
    binary: PathBuf,
    dir: PathBuf,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
}

impl Mosquitto {
    fn start(binary: PathBuf, tag: &str) -> Self {
        Self::start_with(binary, tag, "")
    }

    /// Starts it with `extra` appended to the listener's settings (files named relative to its
    /// directory are written there first by the caller: see [`Mosquitto::dir_for`]).
    fn start_with(binary: PathBuf, tag: &str, extra: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = Self::dir_for(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "listener {port} 127.0.0.1\n{extra}allow_anonymous true\npersistence false\nmax_queued_messages 10000\n\
             log_dest stderr\nlog_type error\n"
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let m = Self { binary, dir, addr: ([127, 0, 0, 1], port).into(), child: Mutex::new(None) };
        m.spawn();
        m
    }

    fn dir_for(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("onem2m-mosquitto-{}-{tag}", std::process::id()))
    }

    fn spawn(&self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        *self.child.lock().unwrap() = Some(child);
        // Wait (bounded) until it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "mosquitto does not listen on {}", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl common::TestBroker for Mosquitto {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn restart(&self) {
        self.kill();
        self.spawn();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_through_mosquitto() {
    let Some(bin) = binary() else { return };
    let m = Mosquitto::start(bin, "rt");
    common::round_trips(m.addr, "mos").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_through_mosquitto() {
    let Some(bin) = binary() else { return };
    let m = Mosquitto::start(bin, "hostile");
    common::hostile_input(m.addr, "mos").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_limits_through_mosquitto() {
    let Some(bin) = binary() else { return };
    let m = Mosquitto::start(bin, "limits");
    common::timeouts_and_limits(m.addr, "mos").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_restart_mid_workload() {
    let Some(bin) = binary() else { return };
    let m = Mosquitto::start(bin, "restart");
    common::broker_restart(&m, "mos").await;
}

/// TLS to the broker (`mqtts://`): mosquitto with a certificate for 127.0.0.1 from a test CA; the
/// endpoint verifies it with that CA and the round trips work; without the CA it never connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_mosquitto() {
    use onem2m_sa_mqtt::rumqttc::{TlsConfiguration, Transport};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

    let Some(bin) = binary() else { return };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let cert = params.signed_by(&key, &ca).unwrap();
    let dir = Mosquitto::dir_for("tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let extra =
        format!("certfile {}\nkeyfile {}\n", dir.join("server.pem").display(), dir.join("server.key").display());
    let m = Mosquitto::start_with(bin, "tls", &extra);
    let cse = common::Cse::default();
    let tls = |me: &str, ca: Option<Vec<u8>>| {
        let config = common::config(me);
        let mut options = config.options(&format!("C::{me}"), "127.0.0.1", m.addr.port());
        let transport = match ca {
            Some(ca) => Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth: None }),
            None => Transport::tls_with_default_config(),
        };
        options.set_transport(transport);
        onem2m_sa_mqtt::Endpoint::start(options, config)
    };
    let server = tls("id-tls", Some(ca_cert.pem().into_bytes()));
    let client = tls("CAE-tls", Some(ca_cert.pem().into_bytes()));
    tokio::time::timeout(Duration::from_secs(20), async {
        server.ready().await;
        client.ready().await;
    })
    .await
    .expect("both connect over TLS");
    server.serve(cse.service());
    let rsp = tower::ServiceExt::oneshot(client.client("id-tls"), common::request("/id-in", "tls-1")).await.unwrap();
    assert_eq!((rsp.rqi.as_str(), rsp.rsc), ("tls-1", onem2m_primitive::ResponseStatusCode::OK));
    // The system's roots do not know the test CA: no connection.
    let untrusting = tls("CAE-untrusting", None);
    while untrusting.stats().connection_errors == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!untrusting.is_ready() && untrusting.stats().connects == 0);
    server.shutdown().await;
}
