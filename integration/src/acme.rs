//! The ACME oneM2M CSE (<https://github.com/ankraft/ACME-oneM2M-CSE>, PyPI `acmecse`) as a
//! child process: a real, independent CSE for the differential suite.
//!
//! [`Acme::start`] runs `acmecse` from a virtualenv: `$ACME_VENV` when set, else
//! `target/acme-venv` under the workspace root. When that default virtualenv is missing it is
//! made on first use (so `cargo test --workspace` works on a fresh machine with Python >= 3.11
//! and PyPI in reach), the same way `.ci/run` makes it:
//!
//! ```text
//! python3 -m venv target/acme-venv && target/acme-venv/bin/pip install acmecse==2026.5.3
//! ```
//!
//! If that fails, or `$ACME_VENV` names a virtualenv without ACME, [`Acme::start`] panics with
//! that command: a test that needs ACME fails, it is never skipped.
//!
//! Each instance gets a scratch directory with a generated `acme.ini` (see [`ACME_INI`]): CSE-ID
//! `/id-in`, CSE name `cse-in`, admin originator `CAdmin`, an in-memory database, HTTP only on
//! a free loopback port, no TLS, no MQTT/CoAP/WebSocket, no console UI, no web UI, the log in
//! the scratch directory. It is ready once it answers a RETRIEVE of its CSEBase, polled with a
//! deadline.
//!
//! [`Acme::start_with_ini`] runs another configuration: the transit setup of
//! `integration/tests/acme_transit.rs` runs an IN-CSE ([`TRANSIT_IN_INI`]) and an MN-CSE registered
//! to it ([`TRANSIT_MN_INI`]), with the sidecar configs [`transit_configs`] makes.
//!
//! [`Acme::builder`] starts it with options: [`AcmeBuilder::coap`] enables ACME's CoAP binding
//! as well (`[coap] enable=true` and a free loopback UDP port in its `acme.ini`); it is then
//! ready once it also answers that RETRIEVE over CoAP, and [`Acme::coap_addr`] is its address.
//! [`AcmeBuilder::mqtt`] enables its MQTT binding (`[mqtt] enable=true`, `address` and `port` of
//! the given broker in its `acme.ini`): ACME connects to that broker as the client `C::id-in` and
//! subscribes to `/oneM2M/req/+/id-in/#` (TS-0010); it is then ready once it also answers that
//! RETRIEVE published on `/oneM2M/req/<probe>/id-in/json`; [`Acme::mqtt_broker`] is that broker.
//!
//! The process is killed on drop. So that none survives a test process that ends without
//! dropping it (a shared instance in a `static`, an abort), `acmecse` runs under a small
//! Python wrapper that exits as soon as its stdin, a pipe held by this process, reaches end of
//! file: when the test process is gone, so is ACME.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use onem2m_sa_sidecar::config::Config;

/// The `acmecse` version `.ci/run` installs and this harness was written against.
pub const ACME_VERSION: &str = "2026.5.3";

/// The CSE-ID of every instance.
pub const ACME_CSE_ID: &str = "/id-in";
/// The CSE name (CSEBase resource name) of every instance.
pub const ACME_CSE_NAME: &str = "cse-in";
/// The admin originator of every instance.
pub const ACME_ADMIN: &str = "CAdmin";

/// How long ACME may take to answer its first RETRIEVE.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// The `acme.ini` written for each instance; `{port}` is replaced by its HTTP port. The keys
/// are those of `acmecse/init/acme.ini.default` in the installed package: `[basic.config]`
/// supplies the values the default file interpolates, the other sections override defaults.
pub const ACME_INI: &str = include_str!("../acme/acme.ini");

/// The wrapper `acmecse` runs under: a thread waits for end of file on stdin (the test
/// process holds the other end of the pipe), removes the scratch directory and ends the
/// process; then ACME's own `main`.
const WRAPPER: &str = r#"
import os, shutil, sys, threading
def _watch():
    try:
        sys.stdin.buffer.read()
    finally:
        shutil.rmtree(os.environ.get("ONEM2M_SA_ACME_SCRATCH", "/nonexistent"), ignore_errors=True)
        os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
sys.argv = ["acmecse"] + sys.argv[1:]
from acmecse.__main__ import main
sys.exit(main())
"#;

/// The virtualenv holding `acmecse`: `$ACME_VENV`, else `target/acme-venv` in the workspace.
pub fn venv() -> PathBuf {
    match std::env::var_os("ACME_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/acme-venv"),
    }
}

fn has_acme(python: &Path) -> bool {
    let probe =
        Command::new(python).args(["-c", "import acmecse"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    probe.is_ok_and(|s| s.success())
}

/// Makes the default virtualenv: built beside it under a name of this process's own, then
/// renamed into place, so test processes that race here never see half an install (the loser
/// of the rename drops its copy and uses the winner's). Failures are left to the caller's check.
fn install(venv: &Path) {
    let staging = venv.with_file_name(format!("acme-venv.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("installing the ACME CSE {ACME_VERSION} into {} (once)", venv.display());
    let made = Command::new("python3").arg("-m").arg("venv").arg(&staging).status().is_ok_and(|s| s.success())
        && Command::new(staging.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", &format!("acmecse=={ACME_VERSION}")])
            .status()
            .is_ok_and(|s| s.success());
    if !made || std::fs::rename(&staging, venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
}

/// How to get ACME, for the failure message.
fn how_to_install(venv: &Path) -> String {
    format!(
        "the ACME CSE is not installed at {venv}: this test runs against the real ACME oneM2M CSE. \
         Install it with `python3 -m venv target/acme-venv && target/acme-venv/bin/pip install \
         acmecse=={ACME_VERSION}` in the workspace root (Python >= 3.11), or set ACME_VENV to a \
         virtualenv that has it (.ci/run does this)",
        venv = venv.display()
    )
}

/// A running ACME CSE on loopback, killed on drop.
#[derive(Debug)]
pub struct Acme {
    child: Child,
    /// Held open: ACME's wrapper exits when it closes.
    _lifeline: Option<ChildStdin>,
    dir: PathBuf,
    addr: SocketAddr,
    coap: Option<SocketAddr>,
    /// The broker of its MQTT binding.
    mqtt: Option<SocketAddr>,
    started_in: Duration,
    /// Its CSE name (CSEBase resource name).
    name: String,
}

/// How to start an [`Acme`] ([`Acme::builder`]); [`AcmeBuilder::start`] as [`Acme::start`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AcmeBuilder {
    coap: bool,
    mqtt: Option<SocketAddr>,
    ini: Option<String>,
}

impl AcmeBuilder {
    /// Enables ACME's CoAP binding too, on a free loopback UDP port ([`Acme::coap_addr`]).
    pub fn coap(mut self, enable: bool) -> Self {
        self.coap = enable;
        self
    }

    /// Enables ACME's MQTT binding too, connected to the broker at `broker` (no TLS, no
    /// credentials, no topic prefix). The broker must be running.
    pub fn mqtt(mut self, broker: SocketAddr) -> Self {
        self.mqtt = Some(broker);
        self
    }

    /// Another `acme.ini` template than [`ACME_INI`] (`{port}` is replaced by the instance's HTTP
    /// port; any other placeholder must be filled in already), e.g. [`TRANSIT_IN_INI`] and
    /// [`TRANSIT_MN_INI`]. It is ready once it answers a RETRIEVE of the CSEBase the template
    /// names (`cseName`).
    pub fn ini(mut self, template: impl Into<String>) -> Self {
        self.ini = Some(template.into());
        self
    }

    /// Starts the instance; panics as [`Acme::start`] does.
    pub fn start(self) -> Acme {
        let venv = venv();
        let python = venv.join("bin/python");
        if !has_acme(&python) && std::env::var_os("ACME_VENV").is_none() {
            install(&venv);
        }
        assert!(has_acme(&python), "{}", how_to_install(&venv));
        // A port taken by someone else between the probe and ACME's bind: try another one.
        let mut last = String::new();
        for _ in 0..3 {
            match Acme::try_start(&python, &self) {
                Ok(acme) => return acme,
                Err(e) => last = e,
            }
        }
        panic!("ACME did not start: {last}");
    }
}

/// The `[coap]` section of [`ACME_INI`] (the binding off), and what CoAP mode puts there.
const COAP_OFF: &str = "[coap]\nenable=false\n";
fn coap_on(port: u16) -> String {
    format!("[coap]\nenable=true\nport={port}\n")
}

/// The `[mqtt]` section of [`ACME_INI`] (the binding off), and what MQTT mode puts there: the
/// keys `enable`, `address` and `port` of `[mqtt]` in `acme.ini.default`.
const MQTT_OFF: &str = "[mqtt]\nenable=false\n";
fn mqtt_on(broker: SocketAddr) -> String {
    format!("[mqtt]\nenable=true\naddress={}\nport={}\n", broker.ip(), broker.port())
}

impl Acme {
    /// Starts an instance and waits until it answers; panics (with how to install ACME) if it
    /// is not installed, or with its log if it does not come up.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// An instance with options ([`AcmeBuilder`]).
    pub fn builder() -> AcmeBuilder {
        AcmeBuilder::default()
    }

    /// [`Acme::start`] with another `acme.ini` template ([`AcmeBuilder::ini`]).
    pub fn start_with_ini(template: &str) -> Self {
        Self::builder().ini(template).start()
    }

    fn try_start(python: &Path, options: &AcmeBuilder) -> Result<Self, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let began = Instant::now();
        let dir = std::env::temp_dir().join(format!(
            "onem2m-sa-acme-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("scratch dir {}: {e}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut ini = options.ini.as_deref().unwrap_or(ACME_INI).replace("{port}", &port.to_string());
        let name = ini_value(&ini, "cseName").unwrap_or(ACME_CSE_NAME).to_owned();
        let coap = if options.coap {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map_err(|e| format!("no free UDP port: {e}"))?;
            assert!(ini.contains(COAP_OFF), "acme.ini has no {COAP_OFF:?} section to enable");
            ini = ini.replace(COAP_OFF, &coap_on(udp.port()));
            Some(udp)
        } else {
            None
        };
        if let Some(broker) = options.mqtt {
            assert!(ini.contains(MQTT_OFF), "acme.ini has no {MQTT_OFF:?} section to enable");
            ini = ini.replace(MQTT_OFF, &mqtt_on(broker));
        }
        std::fs::write(dir.join("acme.ini"), ini).map_err(|e| format!("acme.ini: {e}"))?;
        let mut child = Command::new(python)
            .arg("-c")
            .arg(WRAPPER)
            .arg("-dir")
            .arg(&dir)
            .arg("--headless")
            .current_dir(&dir)
            .env("ONEM2M_SA_ACME_SCRATCH", &dir)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(dir.join("stdout.log")).map_err(|e| e.to_string())?)
            .stderr(std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let lifeline = child.stdin.take();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut acme =
            Self { child, _lifeline: lifeline, dir, addr, coap, mqtt: options.mqtt, started_in: Duration::ZERO, name };
        let deadline = began + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = acme.child.try_wait() {
                return Err(format!("ACME exited with {status} while starting:\n{}", acme.log_tail()));
            }
            if acme.answers() && acme.answers_coap() && acme.answers_mqtt() {
                acme.started_in = began.elapsed();
                return Ok(acme);
            }
            if Instant::now() > deadline {
                return Err(format!("ACME did not answer within {STARTUP_DEADLINE:?}:\n{}", acme.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it answers a RETRIEVE of its CSEBase with 2000.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let head = format!(
            "GET /{} HTTP/1.1\r\nHost: {}\r\nX-M2M-Origin: {ACME_ADMIN}\r\nX-M2M-RI: ready\r\n\
             X-M2M-RVI: 3\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            self.name, self.addr
        );
        let mut answer = Vec::new();
        s.write_all(head.as_bytes()).is_ok()
            && s.read_to_end(&mut answer).is_ok()
            && String::from_utf8_lossy(&answer).to_ascii_lowercase().contains("x-m2m-rsc: 2000")
    }

    /// Whether it answers a RETRIEVE of its CSEBase over CoAP with 2000 (true without CoAP).
    fn answers_coap(&self) -> bool {
        use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode};
        let Some(at) = self.coap else { return true };
        let mut req = RequestPrimitive::new(Operation::Retrieve, &self.name, Some(ACME_ADMIN.into()), "ready");
        req.rvi = Some("3".into());
        let Ok(mut packet) = onem2m_sa_coap::primitive_to_packet(&req, &onem2m_sa_coap::Encoding::default()) else {
            return false;
        };
        packet.header.message_id = 1;
        packet.set_token(b"ready".to_vec());
        let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else { return false };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = vec![0; 65536];
        if socket.send_to(&packet.to_bytes().unwrap_or_default(), at).is_err() {
            return false;
        }
        let Ok(n) = socket.recv(&mut buf) else { return false };
        onem2m_sa_coap::message::parse(&buf[..n]).is_ok_and(|p| {
            onem2m_sa_coap::packet_to_response(&p, &onem2m_sa_coap::Limits::default())
                .is_ok_and(|r| r.rsc == ResponseStatusCode::OK)
        })
    }

    /// Whether it answers a RETRIEVE of its CSEBase over MQTT with 2000 (true without MQTT): a
    /// probe client publishes it on `/oneM2M/req/acme-probe-<pid>-<port>/id-in/json`, waits (1 s) on
    /// the `resp` topic. On a thread of its own (this may be called from async code).
    fn answers_mqtt(&self) -> bool {
        use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode};
        use onem2m_sa_mqtt::{Endpoint, EndpointConfig, encode_id};
        use tower::ServiceExt;
        let Some(broker) = self.mqtt else { return true };
        let Ok(receiver) = encode_id(ACME_CSE_ID) else { return false };
        let me = format!("acme-probe-{}-{}", std::process::id(), self.addr.port());
        let mut req = RequestPrimitive::new(Operation::Retrieve, &self.name, Some(ACME_ADMIN.into()), "ready");
        req.rvi = Some("3".into());
        let probe = || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut config = EndpointConfig::new(me.clone());
                config.serve_requests = false;
                config.request_timeout = Duration::from_secs(1);
                let options = config.options(&me, &broker.ip().to_string(), broker.port());
                let endpoint = Endpoint::start(options, config);
                tokio::time::timeout(Duration::from_secs(1), endpoint.ready()).await.ok()?;
                let rsp = endpoint.client(receiver).oneshot(req).await.ok();
                endpoint.shutdown().await;
                rsp
            })
        };
        std::thread::scope(|s| s.spawn(probe).join().ok().flatten())
            .is_some_and(|rsp| rsp.rsc == ResponseStatusCode::OK)
    }

    /// The broker of its MQTT binding, when started with [`AcmeBuilder::mqtt`].
    pub fn mqtt_broker(&self) -> Option<SocketAddr> {
        self.mqtt
    }

    /// Its CoAP address, when started with [`AcmeBuilder::coap`].
    pub fn coap_addr(&self) -> Option<SocketAddr> {
        self.coap
    }

    /// Its HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its HTTP base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How long it took from spawning to the first answer.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Its scratch directory (`acme.ini`, `logs/`, `stdout.log`, `stderr.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of its logs, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        let logs = std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten().map(|e| e.path());
        for path in [self.dir.join("stderr.log"), self.dir.join("stdout.log")].into_iter().chain(logs) {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {} (last 40 lines)\n", path.display()));
                for line in &lines[lines.len().saturating_sub(40)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Acme {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The CSE host's sidecar config the suite runs in front of ACME (`{…_port}` placeholders).
pub const SIDECAR_CSE_TOML: &str = include_str!("../acme/sidecar-cse.toml");
/// The AE host's sidecar config the suite runs (`{…_port}` placeholders).
pub const SIDECAR_AE_TOML: &str = include_str!("../acme/sidecar-ae.toml");

/// The loopback ports of a sidecar pair in front of ACME.
#[derive(Debug, Clone, Copy)]
pub struct PairPorts {
    /// ACME's HTTP port.
    pub acme: u16,
    /// The CSE host's ingress.
    pub cse_ingress: u16,
    /// The CSE host's egress (ACME's notifications).
    pub cse_egress: u16,
    /// The AE host's ingress.
    pub ae_ingress: u16,
    /// The AE host's egress (the AEs' "CSE address").
    pub ae_egress: u16,
    /// The AEs' notification listener.
    pub listener: u16,
}

/// Sets up the sidecar pair in front of ACME in `dir` the way README.md and docs/deploy.md
/// ("In front of ACME") do: an anchor and a key per node (`onem2m-sa keygen`), the two tickets
/// with the documented `--allow` recipe (`ticket issue`: [`demo::CSE_ALLOW`],
/// [`demo::AE_HOST_ALLOW`]), and [`SIDECAR_CSE_TOML`] / [`SIDECAR_AE_TOML`] with `ports`;
/// returns the two configs as `onem2m-sa sidecar --config` loads them (CSE host, AE host).
///
/// [`demo::CSE_ALLOW`]: onem2m_sa_sidecar::demo::CSE_ALLOW
/// [`demo::AE_HOST_ALLOW`]: onem2m_sa_sidecar::demo::AE_HOST_ALLOW
pub fn pair_configs(dir: &Path, ports: PairPorts) -> (Config, Config) {
    use onem2m_sa_sidecar::demo::{AE_HOST_ALLOW, AE_NODE, CSE_ALLOW, CSE_ID};
    keys_and_tickets(dir, &[(CSE_ID, "id-in", CSE_ALLOW), (AE_NODE, "ae-host", AE_HOST_ALLOW)]);
    let fill = |template: &str| {
        template
            .replace("{acme_port}", &ports.acme.to_string())
            .replace("{cse_ingress_port}", &ports.cse_ingress.to_string())
            .replace("{cse_egress_port}", &ports.cse_egress.to_string())
            .replace("{ae_ingress_port}", &ports.ae_ingress.to_string())
            .replace("{ae_egress_port}", &ports.ae_egress.to_string())
            .replace("{listener_port}", &ports.listener.to_string())
    };
    (
        load_config(dir, "sidecar-cse.toml", &fill(SIDECAR_CSE_TOML)),
        load_config(dir, "sidecar-ae.toml", &fill(SIDECAR_AE_TOML)),
    )
}

/// Makes `anchor.key.pem` and, per `(subject, prefix, allow)`, `{prefix}.key.pem` and
/// `{prefix}.ticket.json` (signed by the anchor, `--allow` each of `allow`) in `dir`, with
/// `onem2m-sa keygen` and `ticket issue` as the README does.
fn keys_and_tickets(dir: &Path, nodes: &[(&str, &str, &[&str])]) {
    std::fs::create_dir_all(dir).expect("config dir");
    keygen(dir, "anchor");
    for &(subject, prefix, allow) in nodes {
        node_credentials(dir, subject, prefix, allow);
    }
}

/// Writes `text` to `dir/name` and loads it as the sidecar does; panics on an error or a warning.
fn load_config(dir: &Path, name: &str, text: &str) -> Config {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(config.warnings.is_empty(), "{}: {:?}", path.display(), config.warnings);
    config
}

/// The value of `key=` in an ini text (the first).
fn ini_value<'a>(ini: &'a str, key: &str) -> Option<&'a str> {
    ini.lines().find_map(|l| l.trim().strip_prefix(key)?.trim_start().strip_prefix('=').map(str::trim))
}

/// The IN-CSE of the transit setup ("Through a registrar MN-CSE" in docs/deploy.md): as
/// [`ACME_INI`], and it accepts the registration of the MN-CSE `/id-mn` and announces `{poa}`
/// (to be replaced by its sidecar's ingress URL) as its point of access.
pub const TRANSIT_IN_INI: &str = include_str!("../acme/transit-in.ini");
/// The MN-CSE of the transit setup, `/id-mn` (`cse-mn`), registered to the IN-CSE at
/// `{registrar_port}` (the IN-CSE's sidecar ingress).
pub const TRANSIT_MN_INI: &str = include_str!("../acme/transit-mn.ini");
/// The IN-CSE host's sidecar config of the transit setup (`{…_port}` placeholders).
pub const TRANSIT_SIDECAR_IN_TOML: &str = include_str!("../acme/transit-sidecar-in.toml");
/// The AE host's sidecar config of the transit setup (`{…_port}` placeholders).
pub const TRANSIT_SIDECAR_AE_TOML: &str = include_str!("../acme/transit-sidecar-ae.toml");

/// The MN-CSE's CSE-ID in the transit setup.
pub const TRANSIT_MN_ID: &str = "/id-mn";
/// The MN-CSE's CSE name in the transit setup.
pub const TRANSIT_MN_NAME: &str = "cse-mn";
/// The AE-ID the AE host's sidecar is registered with at the MN-CSE.
pub const TRANSIT_AE_HOST_AEI: &str = "Cae-host";
/// The AE host's node ID in the transit setup: its AE at the MN, SP-relative, which oneM2M
/// routing delivers to.
pub const TRANSIT_AE_HOST_NODE: &str = "/id-mn/Cae-host";

/// The loopback ports of the transit setup.
#[derive(Debug, Clone, Copy)]
pub struct TransitPorts {
    /// The IN-CSE's HTTP port.
    pub acme_in: u16,
    /// The IN-CSE host's sidecar ingress (the MN-CSE's registrar address).
    pub in_ingress: u16,
    /// The IN-CSE host's sidecar egress (the IN-CSE's notifications).
    pub in_egress: u16,
    /// Where the sidecars reach the MN-CSE (its HTTP port, or a tap in front of it).
    pub mn: u16,
    /// The AE host's sidecar ingress (its point of access at the MN-CSE).
    pub ae_ingress: u16,
    /// The AE host's sidecar egress (the AEs' "CSE address").
    pub ae_egress: u16,
    /// The AEs' notification listener.
    pub listener: u16,
}

/// Writes `{name}.key.pem`/`.pub.pem` (and the anchor's) and the tickets of the transit setup
/// into `dir` with `onem2m-sa keygen` / `ticket issue`: the IN-CSE host `/id-in` with
/// [`demo::CSE_ALLOW`], the AE host [`TRANSIT_AE_HOST_NODE`] allowed its own ID and the AE
/// originators of [`demo::AE_HOST_ALLOW`]; then [`TRANSIT_SIDECAR_IN_TOML`] and
/// [`TRANSIT_SIDECAR_AE_TOML`] filled with `ports`, loaded (IN-CSE host, AE host).
///
/// [`demo::CSE_ALLOW`]: onem2m_sa_sidecar::demo::CSE_ALLOW
/// [`demo::AE_HOST_ALLOW`]: onem2m_sa_sidecar::demo::AE_HOST_ALLOW
pub fn transit_configs(dir: &Path, ports: TransitPorts) -> (Config, Config) {
    use onem2m_sa_sidecar::demo::{AE_HOST_ALLOW, AE_NODE, CSE_ALLOW, CSE_ID};
    // The AE host's own ID instead of the direct setup's `/id-ae-host`.
    let ae_allow: Vec<&str> =
        std::iter::once(TRANSIT_AE_HOST_NODE).chain(AE_HOST_ALLOW.iter().copied().filter(|p| *p != AE_NODE)).collect();
    keys_and_tickets(dir, &[(CSE_ID, "id-in", CSE_ALLOW), (TRANSIT_AE_HOST_NODE, "ae-host", &ae_allow)]);
    let fill = |template: &str| {
        template
            .replace("{acme_in_port}", &ports.acme_in.to_string())
            .replace("{in_ingress_port}", &ports.in_ingress.to_string())
            .replace("{in_egress_port}", &ports.in_egress.to_string())
            .replace("{mn_port}", &ports.mn.to_string())
            .replace("{ae_ingress_port}", &ports.ae_ingress.to_string())
            .replace("{ae_egress_port}", &ports.ae_egress.to_string())
            .replace("{listener_port}", &ports.listener.to_string())
    };
    (
        load_config(dir, "transit-sidecar-in.toml", &fill(TRANSIT_SIDECAR_IN_TOML)),
        load_config(dir, "transit-sidecar-ae.toml", &fill(TRANSIT_SIDECAR_AE_TOML)),
    )
}

/// `onem2m-sa keygen --out dir/prefix`.
fn keygen(dir: &Path, prefix: &str) {
    use onem2m_sa_sidecar::keys::{KeyAlgorithm, KeygenArgs, run_keygen};
    let args = KeygenArgs { algorithm: KeyAlgorithm::Ed25519, out: dir.join(prefix), force: true };
    run_keygen(&args).expect("keygen");
}

/// A node's key (`dir/prefix.key.pem`) and its ticket from the anchor in `dir`
/// (`dir/prefix.ticket.json`, `ticket issue --allow …` with `allow`).
fn node_credentials(dir: &Path, subject: &str, prefix: &str, allow: &[&str]) {
    use onem2m_sa_sidecar::keys::{IssueArgs, TicketCommand, run_ticket};
    keygen(dir, prefix);
    let issue = IssueArgs {
        anchor_key: dir.join("anchor.key.pem"),
        anchor_id: "/trust-anchor".parse().expect("anchor ID"),
        subject: subject.parse().expect("node ID"),
        subject_key: dir.join(format!("{prefix}.pub.pem")),
        allow: allow.iter().map(|p| p.parse().expect("pattern")).collect(),
        except: Vec::new(),
        days: 1,
        max_sa_lifetime: None,
        description: None,
        out: Some(dir.join(format!("{prefix}.ticket.json"))),
    };
    run_ticket(&TicketCommand::Issue(issue)).expect("ticket issue");
}

/// The constrained AE host's sidecar config over CoAP (`integration/acme/sidecar-ae-coap.toml`).
pub const SIDECAR_AE_COAP_TOML: &str = include_str!("../acme/sidecar-ae-coap.toml");
/// The constrained AE host's node ID.
pub const AE_COAP_NODE: &str = "/id-ae-coap";

/// The pair over CoAP, beside the HTTP one of [`pair_configs`] (called after it, on the same
/// `dir`): the CSE host's config `cse` gets a CoAP ingress on a free port and the constrained AE
/// host as a peer at its HTTP ingress, `ae_ingress_port`; that host gets a key and a ticket from
/// the same anchor (`--allow /id-ae-coap --allow 'C*' --allow 'S*' --allow ''`). Then
/// [`coap_host_config`] gives its config.
pub fn add_coap_host(dir: &Path, cse: &mut Config, ae_ingress_port: u16) {
    use onem2m_sa_sidecar::config::{Listener, Peer};
    node_credentials(dir, AE_COAP_NODE, "ae-coap", &[AE_COAP_NODE, "C*", "S*", ""]);
    let ingress = cse.ingress.as_mut().expect("the CSE host's ingress");
    ingress.coap = Some(Listener { listen: SocketAddr::from(([127, 0, 0, 1], 0)) });
    let id = AE_COAP_NODE.parse().expect("node ID");
    cse.peers.push(Peer {
        id,
        address: format!("http://127.0.0.1:{ae_ingress_port}"),
        outer: Default::default(),
        secured_form: Default::default(),
    });
}

/// The constrained AE host's config ([`SIDECAR_AE_COAP_TOML`], after [`add_coap_host`]): its
/// CoAP egress (a free port) reaches the CSE host's CoAP ingress `cse_coap_ingress` as a
/// `coap://` peer; its HTTP ingress on `ae_ingress_port` fronts the AEs' listener.
pub fn coap_host_config(dir: &Path, cse_coap_ingress: SocketAddr, ae_ingress_port: u16, listener_port: u16) -> Config {
    let text = SIDECAR_AE_COAP_TOML
        .replace("{listener_port}", &listener_port.to_string())
        .replace("{ae_ingress_port}", &ae_ingress_port.to_string())
        .replace("{cse_coap_ingress_port}", &cse_coap_ingress.port().to_string());
    load_config(dir, "sidecar-ae-coap.toml", &text)
}

/// The MQTT AE host's sidecar config (`integration/acme/sidecar-ae-mqtt.toml`).
pub const SIDECAR_AE_MQTT_TOML: &str = include_str!("../acme/sidecar-ae-mqtt.toml");
/// The MQTT AE host's node ID.
pub const AE_MQTT_NODE: &str = "/id-ae-mqtt";

/// The pair over MQTT, beside the HTTP one of [`pair_configs`] (called after it, on the same
/// `dir`): the CSE host's config `cse` gets `[ingress.mqtt]` at the broker `broker` and the MQTT
/// AE host as a peer at the same broker (`mqtt://`: ACME's notifications to it travel through
/// the broker too); that host gets a key and a ticket from the same anchor (`--allow /id-ae-mqtt
/// --allow 'C*' --allow 'S*' --allow ''`). Then [`mqtt_host_config`] gives its config.
pub fn add_mqtt_host(dir: &Path, cse: &mut Config, broker: SocketAddr) {
    use onem2m_sa_sidecar::config::{MqttSettings, Peer};
    node_credentials(dir, AE_MQTT_NODE, "ae-mqtt", &[AE_MQTT_NODE, "C*", "S*", ""]);
    let address = format!("mqtt://{broker}");
    let ingress = cse.ingress.as_mut().expect("the CSE host's ingress");
    ingress.mqtt = Some(MqttSettings {
        broker: Some(address.clone()),
        client_id: None,
        username: None,
        password: None,
        ca_file: None,
        listen_broker: None,
    });
    let id = AE_MQTT_NODE.parse().expect("node ID");
    cse.peers.push(Peer { id, address, outer: Default::default(), secured_form: Default::default() });
}

/// The MQTT AE host's config ([`SIDECAR_AE_MQTT_TOML`], after [`add_mqtt_host`]): its HTTP
/// egress on `ae_egress_port` reaches the CSE host through `broker` (an `mqtt://` peer); its
/// `[ingress.mqtt]` at the same broker fronts the AEs' listener on `listener_port`.
pub fn mqtt_host_config(dir: &Path, broker: SocketAddr, ae_egress_port: u16, listener_port: u16) -> Config {
    let text = SIDECAR_AE_MQTT_TOML
        .replace("{listener_port}", &listener_port.to_string())
        .replace("{ae_egress_port}", &ae_egress_port.to_string())
        .replace("{broker_port}", &broker.port().to_string());
    load_config(dir, "sidecar-ae-mqtt.toml", &text)
}
