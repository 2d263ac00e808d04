//! The sidecar configuration: a full file loads, the examples parse, and every rule's error names
//! its key and line.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onem2m_sa::credential::NodeId;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::ChallengeKind;
use onem2m_sa_sidecar::config::{Config, ConfigError, LogFormat};
use onem2m_sa_sidecar::keys::{self, IssueRequest};
use onem2m_sa_tower::{Carriage, ExecutedConfig, KemUpdatePolicy, Recovery, SecuredForm};

const DAY: u64 = 86_400;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A directory with a trust anchor, a second key claiming the same anchor ID, and a node `/id-in`
/// with a ticket valid from an hour ago for a year.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let fx = Fixture { dir: tempfile::tempdir().unwrap() };
        keys::keygen(SignatureAlgorithm::Ed25519, &fx.path("anchor"), false).unwrap();
        keys::keygen(SignatureAlgorithm::Ed25519, &fx.path("impostor"), false).unwrap();
        keys::keygen(SignatureAlgorithm::EcdsaP256Sha256, &fx.path("id-in"), false).unwrap();
        fx.ticket("id-in.ticket.json", "/id-in", "id-in", "/trust-anchor", "anchor", now() - 3600, now() + 365 * DAY);
        fx
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `file` for `subject` with the public key `key_prefix.pub.pem`, signed by
    /// `anchor_prefix.key.pem` in the name of `anchor_id`.
    #[allow(clippy::too_many_arguments)]
    fn ticket(
        &self,
        file: &str,
        subject: &str,
        key_prefix: &str,
        anchor_id: &str,
        anchor_prefix: &str,
        not_before: u64,
        not_after: u64,
    ) {
        let ticket = keys::issue_ticket(&IssueRequest {
            anchor_id: NodeId::new(anchor_id).unwrap(),
            anchor_key: keys::read_private_key(&self.path(&format!("{anchor_prefix}.key.pem"))).unwrap(),
            subject: NodeId::new(subject).unwrap(),
            subject_key: keys::read_public_key(&self.path(&format!("{key_prefix}.pub.pem"))).unwrap(),
            allow: vec![subject.parse().unwrap()],
            except: Vec::new(),
            not_before,
            not_after,
            max_sa_lifetime_secs: None,
            description: None,
        })
        .unwrap();
        std::fs::write(self.path(file), ticket.to_json()).unwrap();
    }

    fn load(&self, text: &str) -> Result<Config, ConfigError> {
        let path = self.path("sidecar.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    /// Loads `text`, expecting an error about `key` on the line where `needle` first appears,
    /// whose message contains `says`.
    #[track_caller]
    fn refuses(&self, text: &str, key: &str, needle: &str, says: &str) -> String {
        let err = self.load(text).expect_err("the configuration should be refused");
        let line = line_of(text, needle);
        let msg = err.to_string();
        assert_eq!((err.key(), err.line()), (Some(key), Some(line)), "{msg}");
        let file = self.path("sidecar.toml");
        assert!(msg.starts_with(&format!("{}:{line}: {key}: ", file.display())), "{msg}");
        assert!(msg.contains(says), "{says:?} not in {msg:?}");
        msg
    }
}

#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

/// `text` with `from` (which must be there) replaced by `to`.
#[track_caller]
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the text");
    text.replacen(from, to, 1)
}

const FULL: &str = r#"[node]
id = "/id-in"
key = "id-in.key.pem"
ticket = "id-in.ticket.json"
suites = ["X25519MLKEM768_AES256GCM_SHA384", "x25519_aes128gcm_sha256"]

[[trust_anchor]]
id = "/trust-anchor"
public_key = "anchor.pub.pem"

[ingress]
upstream = "http://127.0.0.1:8080/"
allow_plaintext_from = ["Clegacy*", "/id-old", ""]
# "": requests without an originator
map_poa = true
[ingress.http]
listen = "0.0.0.0:8443"

[egress]
default_peer = "/id-mn"
[egress.http]
listen = "127.0.0.1:8081"

[[peer]]
id = "/id-mn"
address = "http://10.0.0.6:8443"

[[peer]]
id = "CAE01"
address = "http://10.0.0.7:8443"

[admin]
listen = "127.0.0.1:9464"

[log]
format = "json"
level = "onem2m_sa_sidecar=debug,info"

[http]
max_body_bytes = 2097152
max_header_value_bytes = 4096
max_headers = 50
header_read_timeout_ms = 1000
request_timeout_ms = 2000
idle_timeout_ms = 3000
connect_timeout_ms = 4000
drain_timeout_ms = 0
max_connections = 10

[sa]
rb_timeout_ms = 700
rotate_keys_after_secs = 3600
rotate_identifier_after_secs = 0
replay_window = 2048
max_half_open = 100
max_half_open_per_peer = 4
max_sas = 1000
cookie_threshold = 50
init_rate_per_source = 3
max_sas_per_peer = 3
idle_timeout_secs = 600
fresh_kem_key_updates = true
executed_ttl_secs = 120
executed_max_entries = 5000
executed_max_per_peer = 500
executed_max_bytes = 8388608
resend_window_secs = 20
reestablish_min_interval_secs = 2
"#;

/// The smallest useful file: a node with an egress to one peer.
const MINIMAL: &str = r#"[node]
id = "/id-in"
key = "id-in.key.pem"
ticket = "id-in.ticket.json"

[[trust_anchor]]
id = "/trust-anchor"
public_key = "anchor.pub.pem"

[egress.http]
listen = "127.0.0.1:8081"

[[peer]]
id = "/id-mn"
address = "http://10.0.0.6:8443"
"#;

#[test]
fn full_configuration_loads() {
    let fx = Fixture::new();
    let c = fx.load(FULL).unwrap();
    assert_eq!(c.path, fx.path("sidecar.toml"));
    assert_eq!(c.node.id.as_str(), "/id-in");
    assert_eq!(c.node.credentials.node_id.as_str(), "/id-in");
    assert_eq!(c.node.credentials.signing_key.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(c.node.trust_anchors.len(), 1);
    assert_eq!(c.node.suites, [Suite::X25519MLKEM768_AES256GCM_SHA384, Suite::X25519_AES128GCM_SHA256]);

    let ingress = c.ingress.as_ref().unwrap();
    assert_eq!(ingress.upstream, "http://127.0.0.1:8080", "trailing slash dropped");
    let allowed: Vec<&str> = ingress.plaintext.allow.iter().map(|p| p.as_str()).collect();
    assert_eq!(allowed, ["Clegacy*", "/id-old"]);
    assert!(ingress.plaintext.allow_anonymous && ingress.map_poa);
    assert_eq!(ingress.http.unwrap().listen, "0.0.0.0:8443".parse().unwrap());

    let egress = c.egress.as_ref().unwrap();
    assert_eq!(egress.default_peer.as_ref().unwrap().as_str(), "/id-mn");
    assert_eq!(egress.http.unwrap().listen, "127.0.0.1:8081".parse().unwrap());
    let peers: Vec<(&str, &str)> = c.peers.iter().map(|p| (p.id.as_str(), p.address.as_str())).collect();
    assert_eq!(peers, [("/id-mn", "http://10.0.0.6:8443"), ("CAE01", "http://10.0.0.7:8443")]);
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9464".parse().unwrap());
    assert_eq!(c.warnings, [], "nothing to warn about");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "onem2m_sa_sidecar=debug,info");

    let h = c.http;
    assert_eq!((h.max_body_bytes, h.max_header_value_bytes, h.max_headers, h.max_connections), (2 << 20, 4096, 50, 10));
    let ms = Duration::from_millis;
    assert_eq!(
        (h.header_read_timeout, h.request_timeout, h.idle_timeout, h.connect_timeout, h.drain_timeout),
        (ms(1000), ms(2000), ms(3000), ms(4000), ms(0))
    );
    assert_eq!(c.sa.rb_timeout, ms(700));
    assert_eq!(c.sa.rotation.keys_after, Some(Duration::from_secs(3600)));
    assert_eq!(c.sa.rotation.identifier_after, None);
    assert_eq!(c.sa.replay_window, 2048);
    assert_eq!((c.sa.limits.max_half_open, c.sa.limits.max_half_open_per_peer, c.sa.limits.max_sas), (100, 4, 1000));
    assert_eq!((c.sa.limits.cookie_threshold, c.sa.limits.init_rate_per_source), (50, 3));
    assert_eq!(c.sa.max_sas_per_peer, 3);
    assert_eq!(c.sa.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(c.sa.fresh_kem_key_updates, KemUpdatePolicy::Always, "`true`, as written before it was a policy");
    let executed = ExecutedConfig {
        ttl: Duration::from_secs(120),
        max_entries: 5000,
        max_per_peer: 500,
        max_answer_bytes: 8 << 20,
    };
    assert_eq!(c.sa.executed, executed);
    let recovery = Recovery { min_interval: Duration::from_secs(2), resend_window: Duration::from_secs(20) };
    assert_eq!(c.sa.recovery, recovery);

    let n = c.node_config();
    assert_eq!(n.initiator.offer, c.node.suites);
    assert_eq!(n.responder.supported, c.node.suites);
    assert_eq!(n.initiator.responder_challenge, ChallengeKind::Encryption);
    assert_eq!(n.responder.initiator_challenge, ChallengeKind::Authentication);
    assert_eq!(n.table.window, 2048);
    assert_eq!(n.limits, c.sa.limits);
    assert_eq!(n.rb_timeout, ms(700));
    assert_eq!(n.timing.idle_timeout_ms, Some(600_000));
    let node = c.build_node();
    assert_eq!((node.executed_config(), node.recovery()), (executed, recovery));

    // Nothing secret in Debug.
    let debug = format!("{c:?}");
    let pem = std::fs::read_to_string(fx.path("id-in.key.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body), "{debug}");
}

#[test]
fn minimal_configuration_takes_the_defaults() {
    let fx = Fixture::new();
    let c = fx.load(MINIMAL).unwrap();
    assert!(c.ingress.is_none() && c.admin.is_none());
    assert_eq!(c.egress.as_ref().unwrap().default_peer, None);
    assert_eq!(c.node.suites, Suite::ALL);
    assert_eq!((c.log.format, c.log.level.as_str()), (LogFormat::Human, "info"));
    let h = c.http;
    assert_eq!(
        (h.max_body_bytes, h.max_header_value_bytes, h.max_headers, h.max_connections),
        (1 << 20, 8192, 100, 1024)
    );
    let ms = Duration::from_millis;
    assert_eq!(
        (h.header_read_timeout, h.request_timeout, h.idle_timeout, h.connect_timeout, h.drain_timeout),
        (ms(10_000), ms(30_000), ms(60_000), ms(5_000), ms(30_000))
    );
    assert_eq!(c.sa.rb_timeout, ms(5000));
    assert_eq!(c.sa.rotation, Default::default());
    assert_eq!(c.sa.replay_window, 1024);
    assert_eq!(c.sa.limits, onem2m_sa::manage::Limits::default());
    assert_eq!(c.sa.max_sas_per_peer, 8);
    assert_eq!((c.sa.idle_timeout, c.sa.fresh_kem_key_updates), (None, KemUpdatePolicy::Auto));
    assert_eq!(c.sa.executed, ExecutedConfig::default());
    assert_eq!(c.sa.recovery, Recovery::default());
    let executed = ExecutedConfig::default();
    assert_eq!(
        (executed.ttl, executed.max_entries, executed.max_answer_bytes),
        (Duration::from_secs(60), 262_144, 64 << 20)
    );
    assert_eq!(
        (c.sa.recovery.resend_window, c.sa.recovery.min_interval),
        (Duration::from_secs(10), Duration::from_secs(5))
    );
    assert_eq!(c.node_config().timing.idle_timeout_ms, None);
    let node = c.build_node();
    assert_eq!((node.executed_config(), node.recovery()), (ExecutedConfig::default(), Recovery::default()));
}

/// Copies an example next to freshly made key, public key and ticket files with the names it uses.
fn check_example(name: &str) -> Config {
    check_edited_example(name, str::to_owned)
}

/// [`check_example`] with the example's text edited first.
fn check_edited_example(name: &str, edit: impl Fn(&str) -> String) -> Config {
    let fx = Fixture::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let text = edit(&std::fs::read_to_string(&source).unwrap());
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let node = doc["node"].as_table().unwrap();
    let (id, key, ticket) =
        (node["id"].as_str().unwrap(), node["key"].as_str().unwrap(), node["ticket"].as_str().unwrap());
    let prefix = key.strip_suffix(".key.pem").unwrap();
    if !fx.path(key).exists() {
        keys::keygen(SignatureAlgorithm::Ed25519, &fx.path(prefix), false).unwrap();
    }
    for anchor in doc["trust_anchor"].as_array().unwrap() {
        let public = anchor["public_key"].as_str().unwrap();
        if public != "anchor.pub.pem" {
            std::fs::copy(fx.path("anchor.pub.pem"), fx.path(public)).unwrap();
        }
        assert_eq!(anchor["id"].as_str(), Some("/trust-anchor"));
    }
    fx.ticket(ticket, id, prefix, "/trust-anchor", "anchor", now() - 60, now() + DAY);
    let path = fx.path(name);
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // Copied unedited, an example warns about each peer that still names an example host, on
    // that peer's line, and about nothing else.
    assert_eq!(config.warnings.len(), config.peers.len(), "{name}: {:?}", config.warnings);
    for (i, w) in config.warnings.iter().enumerate() {
        assert_eq!(w.key, format!("peer[{i}].address"), "{name}");
        assert_eq!(w.line, line_of(&text, &config.peers[i].address), "{name}");
        assert!(w.message.contains("is an example host"), "{w}");
    }
    config
}

#[test]
fn plaintext_is_refused_unless_allow_listed() {
    let fx = Fixture::new();
    // No allow-list: nothing in plaintext, whatever the originator (the old default admitted
    // every originator not starting with `/`, so `fr: "C…"` bypassed identity binding).
    let text = edit(FULL, "allow_plaintext_from = [\"Clegacy*\", \"/id-old\", \"\"]\n", "");
    let policy = fx.load(&text).unwrap().ingress.unwrap().plaintext;
    for fr in [Some("Cattacker"), Some("Sattacker"), Some("attacker"), Some("/id-old"), Some(""), None] {
        assert!(!policy.admits(fr), "{fr:?}");
    }
    // The patterns, and "" for requests that name no originator.
    let policy = fx.load(FULL).unwrap().ingress.unwrap().plaintext;
    for (fr, admitted) in [
        (Some("Clegacy-meter"), true),
        (Some("/id-old"), true),
        (Some(""), true),
        (None, true),
        (Some("Cattacker"), false),
        (Some("/id-in"), false),
    ] {
        assert_eq!(policy.admits(fr), admitted, "{fr:?}");
    }
    let text = edit(FULL, "\"/id-old\", \"\"]", "\"/id-old\"]");
    let policy = fx.load(&text).unwrap().ingress.unwrap().plaintext;
    assert!(!policy.admits(None) && !policy.admits(Some("")), "no originator only with \"\"");
}

#[test]
fn require_sa_false_is_refused_with_the_migration_and_true_is_a_warning() {
    let fx = Fixture::new();
    let text = edit(FULL, "map_poa = true", "require_sa = false\nmap_poa = true");
    fx.refuses(
        &text,
        "ingress.require_sa",
        "require_sa",
        "list who may talk in plaintext in ingress.allow_plaintext_from",
    );
    let text = edit(FULL, "map_poa = true", "require_sa = true\nmap_poa = true");
    let c = fx.load(&text).unwrap();
    let line = line_of(&text, "require_sa");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = c.warnings[0].to_string();
    assert!(
        w.starts_with(&format!("{}:{line}: ingress.require_sa: deprecated", fx.path("sidecar.toml").display())),
        "{w}"
    );
}

#[test]
fn a_plaintext_hop_off_the_host_and_a_key_others_can_read_are_warned_about() {
    let fx = Fixture::new();
    for local in ["http://localhost:8080", "http://[::1]:8080", "http://127.0.0.2:8080"] {
        let text = edit(FULL, "http://127.0.0.1:8080/", local);
        assert_eq!(fx.load(&text).unwrap().warnings, [], "{local}");
    }
    let text = edit(FULL, "http://127.0.0.1:8080/", "http://cse.internal:8080");
    let c = fx.load(&text).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!((c.warnings[0].key.as_str(), c.warnings[0].line), ("ingress.upstream", line_of(&text, "upstream")));
    assert!(c.warnings[0].message.contains("not on loopback"), "{}", c.warnings[0]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(fx.path("id-in.key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = fx.load(FULL).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!((c.warnings[0].key.as_str(), c.warnings[0].line), ("node.key", line_of(FULL, "key = ")));
        assert!(c.warnings[0].message.contains("mode 644): chmod 600"), "{}", c.warnings[0]);
    }
}

#[test]
fn cse_example_parses() {
    let c = check_example("sidecar-cse.toml");
    assert_eq!(c.node.id.as_str(), "/id-in");
    assert_eq!(c.ingress.unwrap().upstream, "http://127.0.0.1:8080");
    assert!(c.egress.is_some() && c.admin.is_some());
}

#[test]
fn ae_example_parses() {
    let c = check_example("sidecar-ae.toml");
    let ingress = c.ingress.unwrap();
    assert!(ingress.plaintext.allow.is_empty() && !ingress.plaintext.allow_anonymous && !ingress.map_poa);
    assert_eq!(c.egress.unwrap().default_peer.unwrap().as_str(), "/id-in");
}

/// Both examples start on one host without renumbering a port, and each names the other as
/// docs/deploy.md does: the CSE's peer /id-ae-host at the AE host's ingress port, the AE host's
/// peer /id-in at the CSE host's.
#[test]
fn the_example_configs_run_side_by_side_and_point_at_each_other() {
    let (cse, ae) = (check_example("sidecar-cse.toml"), check_example("sidecar-ae.toml"));
    let listens = |c: &Config| {
        [
            c.ingress.as_ref().and_then(|i| i.http.as_ref()).map(|l| l.listen),
            c.egress.as_ref().and_then(|e| e.http.as_ref()).map(|l| l.listen),
            c.admin.as_ref().map(|a| a.listen),
        ]
        .into_iter()
        .flatten()
        .map(|a| a.port())
        .collect::<Vec<_>>()
    };
    let (a, b) = (listens(&cse), listens(&ae));
    assert_eq!((a.len(), b.len()), (3, 3));
    for port in &a {
        assert!(!b.contains(port), "port {port} in both examples");
    }
    let upstreams = [&cse.ingress.as_ref().unwrap().upstream, &ae.ingress.as_ref().unwrap().upstream];
    for u in upstreams {
        let port: u16 = u.rsplit(':').next().unwrap().parse().unwrap();
        assert!(!a.contains(&port) && !b.contains(&port), "{u} collides with a listener");
    }
    assert_ne!(upstreams[0], upstreams[1]);
    let peer = |c: &Config, id: &str| c.peers.iter().find(|p| p.id.as_str() == id).unwrap().address.clone();
    assert_eq!(ae.node.id.as_str(), "/id-ae-host");
    assert!(peer(&cse, "/id-ae-host").ends_with(&format!(":{}", b[0])), "the CSE reaches the AE host's ingress");
    assert!(peer(&ae, "/id-in").ends_with(&format!(":{}", a[0])), "the AE host reaches the CSE's ingress");
    // deploy.md shows the same node IDs and ports.
    let deploy = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md")).unwrap();
    for text in [
        format!("listen = \"0.0.0.0:{}\"", b[0]),
        format!("listen = \"127.0.0.1:{}\"", b[1]),
        format!("address = \"{}\"", peer(&cse, "/id-ae-host")),
        format!("address = \"{}\"", peer(&ae, "/id-in")),
    ] {
        assert!(deploy.contains(&text), "docs/deploy.md lacks {text}");
    }
}

/// `--check` looks each peer's host up; one that does not resolve is reported with its key.
#[test]
fn peers_that_do_not_resolve_are_reported() {
    let fx = Fixture::new();
    let text = edit(FULL, "address = \"http://10.0.0.7:8443\"", "address = \"http://no-such-host.invalid:8443\"");
    let c = fx.load(&text).unwrap();
    let found = onem2m_sa_sidecar::config::unresolved_peers(&c);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("peer[1].address: no-such-host.invalid does not resolve"), "{}", found[0]);
    assert_eq!(onem2m_sa_sidecar::config::unresolved_peers(&fx.load(FULL).unwrap()), Vec::<String>::new());
}

#[test]
fn syntax_error_names_key_and_line() {
    let fx = Fixture::new();
    let text = edit(FULL, "listen = \"0.0.0.0:8443\"", "listen = \"0.0.0.0:8443");
    fx.refuses(&text, "ingress.http.listen", "listen = \"0.0.0.0:8443", "invalid basic string");
    let text = edit(FULL, "map_poa = true", "map_poa true");
    fx.refuses(&text, "ingress.map_poa", "map_poa true", "expected `=`");
    let text = edit(FULL, "[egress]", "[egress");
    fx.refuses(&text, "egress", "[egress", "unclosed table");
    let text = edit(FULL, "address = \"http://10.0.0.7:8443\"", "address = http://10.0.0.7:8443");
    fx.refuses(&text, "peer[1].address", "address = http:", "");
    let text = edit(FULL, "[admin]", "[ingress]");
    fx.refuses(&text, "ingress", "[ingress]\nlisten", "duplicate key");
}

#[test]
fn unknown_key_names_key_and_line() {
    let fx = Fixture::new();
    let text = edit(FULL, "listen = \"0.0.0.0:8443\"", "listn = \"0.0.0.0:8443\"");
    fx.refuses(&text, "ingress.http.listn", "listn", "unknown key `listn`, expected `listen`");
    let text = edit(FULL, "[[peer]]\nid = \"CAE01\"", "[[peer]]\nid = \"CAE01\"\nport = 1");
    fx.refuses(&text, "peer[1].port", "port = 1", "unknown key `port`");
    let text = edit(FULL, "[log]", "[logging]");
    fx.refuses(&text, "logging", "[logging]", "unknown key `logging`");
}

#[test]
fn missing_key_names_key_and_table_line() {
    let fx = Fixture::new();
    let text = edit(FULL, "upstream = \"http://127.0.0.1:8080/\"\n", "");
    fx.refuses(&text, "ingress.upstream", "[ingress]", "missing key");
    let text = edit(FULL, "address = \"http://10.0.0.7:8443\"\n", "");
    fx.refuses(&text, "peer[1].address", "[[peer]]\nid = \"CAE01\"", "missing key");
    let text = edit(FULL, "ticket = \"id-in.ticket.json\"\n", "");
    fx.refuses(&text, "node.ticket", "[node]", "missing key");
}

#[test]
fn wrong_type_names_key_and_line() {
    let fx = Fixture::new();
    let text = edit(FULL, "max_body_bytes = 2097152", "max_body_bytes = \"2M\"");
    fx.refuses(&text, "http.max_body_bytes", "\"2M\"", "invalid type: string \"2M\", expected u64");
    let text = edit(FULL, "max_sas = 1000", "max_sas = -1");
    fx.refuses(&text, "sa.max_sas", "max_sas", "invalid value: integer `-1`");
    let text = edit(FULL, "map_poa = true", "map_poa = \"no\"");
    fx.refuses(&text, "ingress.map_poa", "map_poa", "expected a boolean");
    let text = edit(FULL, "\"/id-old\", ", "7, ");
    fx.refuses(&text, "ingress.allow_plaintext_from[1]", "allow_plaintext_from", "expected a string");
    let text = edit(FULL, "format = \"json\"", "format = \"xml\"");
    fx.refuses(&text, "log.format", "\"xml\"", "unknown variant `xml`, expected `human` or `json`");
}

#[test]
fn ingress_or_egress_is_required() {
    let fx = Fixture::new();
    let text = MINIMAL.split("[egress.http]").next().unwrap();
    let err = fx.load(text).unwrap_err();
    assert_eq!((err.key(), err.line()), (Some("ingress"), Some(1)), "{err}");
    assert!(err.to_string().contains("neither [ingress] nor [egress]"), "{err}");
}

#[test]
fn ingress_needs_a_listener_and_an_http_upstream() {
    let fx = Fixture::new();
    let text = edit(FULL, "[ingress.http]\nlisten = \"0.0.0.0:8443\"\n", "");
    fx.refuses(&text, "ingress", "[ingress]", "no listener");
    let text = edit(FULL, "http://127.0.0.1:8080/", "https://127.0.0.1:8080");
    fx.refuses(&text, "ingress.upstream", "upstream", "https:// is not supported in this build");
    let text = edit(FULL, "http://127.0.0.1:8080/", "127.0.0.1:8080");
    fx.refuses(&text, "ingress.upstream", "upstream", "not an absolute http:// URL");
    let text = edit(FULL, "http://127.0.0.1:8080/", "http://127.0.0.1:8080/?x=1");
    fx.refuses(&text, "ingress.upstream", "upstream", "has a query");
    let text = edit(FULL, "http://127.0.0.1:8080/", "http://exa mple");
    fx.refuses(&text, "ingress.upstream", "upstream", "invalid URL");
}

#[test]
fn mqtt_brokers_and_peers_load() {
    let fx = Fixture::new();
    std::fs::write(fx.path("broker.pass"), "s3cret\n").unwrap();
    let text = edit(
        FULL,
        "[egress]",
        "[ingress.mqtt]\nbroker = \"mqtt://10.0.0.9/site\"\nusername = \"cse\"\npassword_file = \"broker.pass\"\n\n[egress]",
    );
    let text = edit(&text, "[[peer]]", "[egress.mqtt]\nclient_id = \"C::in-egress\"\n\n[[peer]]");
    let text = edit(&text, "http://10.0.0.6:8443", "mqtts://broker.example.net");
    let c = fx.load(&text).unwrap();
    let m = c.ingress.as_ref().unwrap().mqtt.clone().unwrap();
    assert_eq!(m.broker.as_deref(), Some("mqtt://10.0.0.9:1883/site"), "the default port is written out");
    assert_eq!((m.username.as_deref(), m.password.as_deref()), (Some("cse"), Some("s3cret")));
    assert!(!format!("{m:?}").contains("s3cret"), "Debug never prints the password");
    assert_eq!(c.egress.as_ref().unwrap().mqtt.as_ref().unwrap().client_id.as_deref(), Some("C::in-egress"));
    assert_eq!(c.peers[0].address, "mqtts://broker.example.net:8883");
    assert!(c.peers[0].is_mqtt() && !c.peers[1].is_mqtt());
    // An MQTT ingress alone is enough.
    let alone = edit(&text, "[ingress.http]\nlisten = \"0.0.0.0:8443\"\n", "");
    assert!(fx.load(&alone).unwrap().ingress.unwrap().http.is_none());
}

#[test]
fn mqtt_settings_are_checked() {
    let fx = Fixture::new();
    let text = edit(FULL, "[[peer]]", "[egress.mqtt]\nbroker = \"mqtt://b\"\n\n[[peer]]");
    fx.refuses(&text, "egress.mqtt.broker", "mqtt://b", "peers name their broker");
    let text = edit(FULL, "[egress]", "[ingress.mqtt]\nusername = \"x\"\n\n[egress]");
    fx.refuses(&text, "ingress.mqtt", "[ingress.mqtt]", "no broker");
    let text = edit(FULL, "[egress]", "[ingress.mqtt]\nbroker = \"mqtt://b/a/+\"\n\n[egress]");
    fx.refuses(&text, "ingress.mqtt.broker", "mqtt://b", "wildcard");
    let text = edit(FULL, "[egress]", "[ingress.mqtt]\nbroker = \"mqtt://b\"\npassword_file = \"p\"\n\n[egress]");
    fx.refuses(&text, "ingress.mqtt.password_file", "password_file", "No such file");
    let text = edit(FULL, "http://10.0.0.6:8443", "mqtt://u@broker.example.net");
    fx.refuses(&text, "peer[0].address", "mqtt://u@", "user information");
}

#[test]
fn an_mqtt_egress_listener_loads_alone_and_is_checked() {
    let fx = Fixture::new();
    // The local broker of MQTT-only AEs is a listener of its own: no HTTP or CoAP one needed.
    let text = edit(
        MINIMAL,
        "[egress.http]\nlisten = \"127.0.0.1:8081\"",
        "[egress.mqtt]\nlisten_broker = \"mqtt://127.0.0.1\"",
    );
    let c = fx.load(&text).unwrap();
    let egress = c.egress.unwrap();
    assert!(egress.http.is_none());
    let m = egress.mqtt.unwrap();
    assert_eq!(m.listen_broker.as_deref(), Some("mqtt://127.0.0.1:1883"), "the default port is written out");
    assert_eq!(m.broker, None);
    // Checked as a broker address.
    let bad = edit(&text, "mqtt://127.0.0.1", "mqtt://127.0.0.1/a/+");
    fx.refuses(&bad, "egress.mqtt.listen_broker", "mqtt://127.0.0.1/a/+", "wildcard");
    // Not a peer's broker (that peer's sidecar would take the AEs' plaintext requests too).
    let shared = edit(&text, "http://10.0.0.6:8443", "mqtt://127.0.0.1:1883");
    fx.refuses(&shared, "egress.mqtt.listen_broker", "mqtt://127.0.0.1", "where peer /id-mn is reached");
    // Not the ingress's broker, and not in [ingress.mqtt].
    let ingress = edit(FULL, "[egress]", "[ingress.mqtt]\nbroker = \"mqtt://127.0.0.1\"\n\n[egress]");
    let ingress = edit(&ingress, "[[peer]]", "[egress.mqtt]\nlisten_broker = \"mqtt://127.0.0.1:1883\"\n\n[[peer]]");
    fx.refuses(&ingress, "egress.mqtt.listen_broker", "mqtt://127.0.0.1:1883", "also [ingress.mqtt]'s broker");
    let misplaced =
        edit(FULL, "[egress]", "[ingress.mqtt]\nbroker = \"mqtt://b\"\nlisten_broker = \"mqtt://l\"\n\n[egress]");
    fx.refuses(&misplaced, "ingress.mqtt.listen_broker", "mqtt://l", "belongs in [egress.mqtt]");
}

#[test]
fn an_mqtt_upstream_is_the_aes_local_broker() {
    let fx = Fixture::new();
    let text = edit(FULL, "http://127.0.0.1:8080/", "mqtt://127.0.0.1");
    assert_eq!(fx.load(&text).unwrap().ingress.unwrap().upstream, "mqtt://127.0.0.1:1883");
    let shared = edit(&text, "http://10.0.0.6:8443", "mqtt://127.0.0.1:1883");
    fx.refuses(&shared, "ingress.upstream", "mqtt://127.0.0.1\"", "the AEs' local broker must be another one");
}

#[test]
fn coap_listeners_peers_and_limits_load() {
    let fx = Fixture::new();
    let text = edit(FULL, "[egress]", "[ingress.coap]\nlisten = \"0.0.0.0:5683\"\n\n[egress]");
    let text = edit(&text, "[[peer]]", "[egress.coap]\nlisten = \"127.0.0.1:8081\"\n\n[[peer]]");
    let text = edit(&text, "http://10.0.0.7:8443", "coap://10.0.0.7");
    let text = edit(
        &text,
        "[sa]",
        "[coap]\nmax_payload_bytes = 4096\nrequest_timeout_ms = 1500\ndrain_timeout_ms = 0\nmax_in_flight = 8\n\
         max_exchanges_per_peer = 16\n\n[sa]",
    );
    let c = fx.load(&text).unwrap();
    assert_eq!(c.ingress.as_ref().unwrap().coap.unwrap().listen, "0.0.0.0:5683".parse().unwrap());
    // UDP and TCP listeners may share a port number (8081 is also egress.http's).
    assert_eq!(c.egress.as_ref().unwrap().coap.unwrap().listen, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(c.peers[1].address, "coap://10.0.0.7:5683", "the default port is written out");
    assert!(c.peers[1].is_coap() && !c.peers[0].is_coap());
    assert_eq!(c.coap.max_payload_bytes, 4096);
    assert_eq!(c.coap.request_timeout, Duration::from_millis(1500));
    assert_eq!(c.coap.drain_timeout, Duration::ZERO);
    assert_eq!((c.coap.max_in_flight, c.coap.max_exchanges_per_peer), (8, 16));
    // Defaults.
    let c = fx.load(FULL).unwrap();
    assert_eq!(c.coap, onem2m_sa_sidecar::config::CoapSettings::default());
    assert!(c.ingress.unwrap().coap.is_none() && c.egress.unwrap().coap.is_none());
    // A CoAP listener alone is enough.
    let text = edit(MINIMAL, "[egress.http]", "[egress.coap]");
    assert!(fx.load(&text).unwrap().egress.unwrap().http.is_none());
    let text = edit(FULL, "[ingress.http]", "[ingress.coap]");
    assert!(fx.load(&text).unwrap().ingress.unwrap().http.is_none());
}

#[test]
fn coap_settings_are_checked() {
    let fx = Fixture::new();
    let text = edit(MINIMAL, "[egress.http]", "[egress.coap]");
    let egress = edit(&text, "127.0.0.1:8081", "0.0.0.0:5683");
    fx.refuses(&egress, "egress.coap.listen", "0.0.0.0:5683", "not a loopback address");
    let allowed = edit(&egress, "[egress.coap]", "[egress]\nallow_non_loopback = true\n[egress.coap]");
    let c = fx.load(&allowed).unwrap();
    assert!(c.warnings.iter().any(|w| w.key == "egress.coap.listen" && w.message.contains("CoAP egress")));
    let bad = edit(&text, "127.0.0.1:8081", "localhost:5683");
    fx.refuses(&bad, "egress.coap.listen", "localhost:5683", "invalid socket address");
    let both = edit(FULL, "[egress]", "[ingress.coap]\nlisten = \"0.0.0.0:5683\"\n\n[egress]");
    let both = edit(&both, "[[peer]]", "[egress.coap]\nlisten = \"127.0.0.1:5683\"\n\n[[peer]]");
    fx.refuses(&both, "egress.coap.listen", "127.0.0.1:5683", "overlaps ingress.coap.listen");
    fx.refuses(&edit(&text, "[egress.coap]", "[egress.coap]\nport = 1\n"), "egress.coap.port", "port", "unknown key");

    for (addr, says) in [
        ("coaps://10.0.0.7", "coaps:// (DTLS) is not supported"),
        ("coap://10.0.0.7:5683/base", "has a path or query"),
        ("coap://10.0.0.7:5683?x=1", "has a path or query"),
        ("coap://u@10.0.0.7:5683", "user information"),
        ("coap://10.0.0.7:0", "port 0"),
        ("coap://:5683", "names no host"),
    ] {
        let text = edit(MINIMAL, "http://10.0.0.6:8443", addr);
        fx.refuses(&text, "peer[0].address", addr, says);
    }
    let text = edit(FULL, "http://127.0.0.1:8080/", "coap://127.0.0.1:5683");
    fx.refuses(&text, "ingress.upstream", "upstream", "coap:// is not supported in this build (use http://)");

    for (key, value, says) in [
        ("max_payload_bytes", "0", "out of range"),
        ("request_timeout_ms", "0", "out of range"),
        ("max_in_flight", "0", "out of range"),
        ("max_exchanges_per_peer", "0", "out of range"),
        ("block_size", "64", "unknown key"),
    ] {
        let text = format!("{MINIMAL}\n[coap]\n{key} = {value}\n");
        fx.refuses(&text, &format!("coap.{key}"), &format!("{key} ="), says);
    }
}

#[test]
fn egress_needs_a_listener_and_a_peer() {
    let fx = Fixture::new();
    let text = edit(FULL, "[egress.http]\nlisten = \"127.0.0.1:8081\"\n", "");
    fx.refuses(&text, "egress", "[egress]", "no listener");
    let text = MINIMAL.split("[[peer]]").next().unwrap();
    fx.refuses(text, "egress", "[egress.http]", "no [[peer]]");
}

#[test]
fn default_peer_must_be_a_peer() {
    let fx = Fixture::new();
    let text = edit(FULL, "default_peer = \"/id-mn\"", "default_peer = \"/id-asn\"");
    fx.refuses(&text, "egress.default_peer", "default_peer", "/id-asn is not a [[peer]] (peers: /id-mn, CAE01)");
}

#[test]
fn egress_listens_on_loopback_unless_allowed() {
    let fx = Fixture::new();
    let text = edit(FULL, "listen = \"127.0.0.1:8081\"", "listen = \"0.0.0.0:8081\"");
    fx.refuses(&text, "egress.http.listen", "0.0.0.0:8081", "not a loopback address");
    let allowed = edit(&text, "[egress.http]", "allow_non_loopback = true\n[egress.http]");
    let c = fx.load(&allowed).unwrap();
    assert_eq!(c.egress.unwrap().http.unwrap().listen, "0.0.0.0:8081".parse().unwrap());
    // Allowed, and said out loud: whoever reaches it speaks as this node.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(
        (c.warnings[0].key.as_str(), c.warnings[0].line),
        ("egress.http.listen", line_of(&allowed, "0.0.0.0:8081"))
    );
    assert!(c.warnings[0].message.contains("speaks as this node"), "{}", c.warnings[0]);
    let v6 = edit(FULL, "listen = \"127.0.0.1:8081\"", "listen = \"[::1]:8081\"");
    fx.load(&v6).unwrap();
}

#[test]
fn admin_listens_on_loopback() {
    let fx = Fixture::new();
    let text = edit(FULL, "listen = \"127.0.0.1:9464\"", "listen = \"192.0.2.1:9464\"");
    fx.refuses(&text, "admin.listen", "192.0.2.1", "not a loopback address");
}

#[test]
fn socket_addresses_are_checked() {
    let fx = Fixture::new();
    let text = edit(FULL, "listen = \"0.0.0.0:8443\"", "listen = \"0.0.0.0:x\"");
    let msg = fx.refuses(&text, "ingress.http.listen", "0.0.0.0:x", "invalid socket address \"0.0.0.0:x\"");
    assert!(msg.ends_with("sidecar.toml:17: ingress.http.listen: invalid socket address \"0.0.0.0:x\""), "{msg}");
    let text = edit(FULL, "listen = \"127.0.0.1:9464\"", "listen = \"localhost:9464\"");
    fx.refuses(&text, "admin.listen", "localhost", "invalid socket address");
    let text = edit(FULL, "listen = \"127.0.0.1:9464\"", "listen = \"127.0.0.1:8081\"");
    fx.refuses(&text, "admin.listen", "listen = \"127.0.0.1:8081\"\n\n[log]", "overlaps egress.http.listen");
    let text = edit(FULL, "listen = \"127.0.0.1:8081\"", "listen = \"127.0.0.1:8443\"");
    fx.refuses(&text, "egress.http.listen", "127.0.0.1:8443", "overlaps ingress.http.listen 0.0.0.0:8443 (line 17)");
}

#[test]
fn peers_are_unique_and_not_this_node() {
    let fx = Fixture::new();
    let text = edit(FULL, "id = \"CAE01\"", "id = \"/id-mn\"");
    fx.refuses(&text, "peer[1].id", "id = \"/id-mn\"\naddress = \"http://10.0.0.7", "listed twice (first on line 25)");
    let text = edit(FULL, "id = \"CAE01\"", "id = \"/id-in\"");
    fx.refuses(&text, "peer[1].id", "id = \"/id-in\"\naddress", "is this node");
    let text = edit(FULL, "id = \"CAE01\"", "id = \"C AE\"");
    fx.refuses(&text, "peer[1].id", "C AE", "invalid node ID");
}

#[test]
fn numbers_have_bounds() {
    let fx = Fixture::new();
    for (from, to, key) in [
        ("max_body_bytes = 2097152", "max_body_bytes = 67108865", "http.max_body_bytes"),
        ("max_body_bytes = 2097152", "max_body_bytes = 0", "http.max_body_bytes"),
        ("max_headers = 50", "max_headers = 0", "http.max_headers"),
        ("request_timeout_ms = 2000", "request_timeout_ms = 0", "http.request_timeout_ms"),
        ("idle_timeout_ms = 3000", "idle_timeout_ms = 0", "http.idle_timeout_ms"),
        ("connect_timeout_ms = 4000", "connect_timeout_ms = 0", "http.connect_timeout_ms"),
        ("header_read_timeout_ms = 1000", "header_read_timeout_ms = 0", "http.header_read_timeout_ms"),
        ("max_connections = 10", "max_connections = 0", "http.max_connections"),
        ("rb_timeout_ms = 700", "rb_timeout_ms = 0", "sa.rb_timeout_ms"),
        ("replay_window = 2048", "replay_window = 32", "sa.replay_window"),
        ("replay_window = 2048", "replay_window = 65537", "sa.replay_window"),
        ("max_half_open = 100", "max_half_open = 0", "sa.max_half_open"),
        ("max_half_open_per_peer = 4", "max_half_open_per_peer = 101", "sa.max_half_open_per_peer"),
        ("max_sas = 1000", "max_sas = 0", "sa.max_sas"),
        ("cookie_threshold = 50", "cookie_threshold = 101", "sa.cookie_threshold"),
        ("init_rate_per_source = 3", "init_rate_per_source = 1000001", "sa.init_rate_per_source"),
        ("rotate_keys_after_secs = 3600", "rotate_keys_after_secs = 5", "sa.rotate_keys_after_secs"),
        ("max_sas_per_peer = 3", "max_sas_per_peer = 0", "sa.max_sas_per_peer"),
        ("max_sas_per_peer = 3", "max_sas_per_peer = 1001", "sa.max_sas_per_peer"),
        ("idle_timeout_secs = 600", "idle_timeout_secs = 59", "sa.idle_timeout_secs"),
        ("idle_timeout_secs = 600", "idle_timeout_secs = 315360001", "sa.idle_timeout_secs"),
        ("executed_ttl_secs = 120", "executed_ttl_secs = 0", "sa.executed_ttl_secs"),
        ("executed_ttl_secs = 120", "executed_ttl_secs = 86401", "sa.executed_ttl_secs"),
        ("executed_max_entries = 5000", "executed_max_entries = 0", "sa.executed_max_entries"),
        ("executed_max_entries = 5000", "executed_max_entries = 10000001", "sa.executed_max_entries"),
        ("executed_max_per_peer = 500", "executed_max_per_peer = 0", "sa.executed_max_per_peer"),
        ("executed_max_per_peer = 500", "executed_max_per_peer = 5001", "sa.executed_max_per_peer"),
        ("executed_max_bytes = 8388608", "executed_max_bytes = 1048575", "sa.executed_max_bytes"),
        ("executed_max_bytes = 8388608", "executed_max_bytes = 17179869185", "sa.executed_max_bytes"),
        ("resend_window_secs = 20", "resend_window_secs = 3601", "sa.resend_window_secs"),
        ("reestablish_min_interval_secs = 2", "reestablish_min_interval_secs = 0", "sa.reestablish_min_interval_secs"),
        (
            "reestablish_min_interval_secs = 2",
            "reestablish_min_interval_secs = 3601",
            "sa.reestablish_min_interval_secs",
        ),
    ] {
        let text = edit(FULL, from, to);
        let too_short = to.contains("rotate") || to == "idle_timeout_secs = 59";
        let says = if too_short { "too short" } else { "out of range" };
        fx.refuses(&text, key, to, says);
    }
    let text = edit(FULL, "replay_window = 2048", "replay_window = 65536");
    assert_eq!(fx.load(&text).unwrap().sa.replay_window, 65536);
}

#[test]
fn the_resend_window_is_shorter_than_the_record_of_executed_requests() {
    let fx = Fixture::new();
    // Both set: the error is at the resend window.
    for to in ["resend_window_secs = 120", "resend_window_secs = 121"] {
        let text = edit(FULL, "resend_window_secs = 20", to);
        fx.refuses(&text, "sa.resend_window_secs", to, "must be shorter than sa.executed_ttl_secs (120 s)");
    }
    // Only the TTL set, at or below the default window (10 s): the error is at the TTL.
    let text = format!("{MINIMAL}\n[sa]\nexecuted_ttl_secs = 10\n");
    fx.refuses(&text, "sa.executed_ttl_secs", "executed_ttl_secs = 10", "the resend window (10 s) must be shorter");
    let sa = fx.load(&format!("{MINIMAL}\n[sa]\nexecuted_ttl_secs = 11\n")).unwrap().sa;
    assert_eq!((sa.executed.ttl, sa.recovery.resend_window), (Duration::from_secs(11), Duration::from_secs(10)));
    // 0: no resend at all.
    let sa = fx.load(&format!("{MINIMAL}\n[sa]\nexecuted_ttl_secs = 1\nresend_window_secs = 0\n")).unwrap().sa;
    assert_eq!(sa.recovery.resend_window, Duration::ZERO);
}

/// The `[sa]` keys the CSE example shows commented out (`# key = value`) are the defaults: once
/// uncommented they load to exactly what a file without them gets.
#[test]
fn the_commented_sa_keys_of_the_cse_example_are_the_defaults() {
    let fx = Fixture::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sidecar-cse.toml");
    let text = std::fs::read_to_string(source).unwrap();
    let sa = &text[text.find("\n[sa]\n").expect("an [sa] section")..];
    let keys: Vec<&str> = sa
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')))
        .collect();
    assert_eq!(keys.len(), 9, "{keys:?}");
    let uncommented = fx.load(&format!("{MINIMAL}\n[sa]\n{}\n", keys.join("\n"))).unwrap();
    assert_eq!(uncommented.sa, fx.load(MINIMAL).unwrap().sa);
    assert_eq!(uncommented.sa, onem2m_sa_sidecar::config::SaSettings::default());
}

#[test]
fn per_peer_bounds_default_to_at_most_the_total() {
    let fx = Fixture::new();
    let sa = fx.load(&format!("{MINIMAL}\n[sa]\nmax_sas = 3\nexecuted_max_entries = 100\n")).unwrap().sa;
    assert_eq!((sa.max_sas_per_peer, sa.executed.max_per_peer), (3, 100));
}

#[test]
fn fresh_kem_key_updates_is_a_policy() {
    // Was a boolean (default false); now a policy whose default, auto, runs a fresh KEM exchange
    // with the peers that negotiated `kem-update`. Booleans still load.
    let fx = Fixture::new();
    let text = edit(FULL, "fresh_kem_key_updates = true", "fresh_kem_key_updates = \"yes\"");
    fx.refuses(&text, "sa.fresh_kem_key_updates", "fresh_kem_key_updates", "`yes` is not a policy");
    let text = edit(FULL, "fresh_kem_key_updates = true", "fresh_kem_key_updates = 3");
    fx.refuses(&text, "sa.fresh_kem_key_updates", "fresh_kem_key_updates", "");
    for (written, policy) in [
        ("false", KemUpdatePolicy::Off),
        ("\"off\"", KemUpdatePolicy::Off),
        ("\"auto\"", KemUpdatePolicy::Auto),
        ("\"always\"", KemUpdatePolicy::Always),
    ] {
        let text = edit(FULL, "fresh_kem_key_updates = true", &format!("fresh_kem_key_updates = {written}"));
        assert_eq!(fx.load(&text).unwrap().sa.fresh_kem_key_updates, policy, "{written}");
    }
}

#[test]
fn secured_form_is_per_peer_and_checked() {
    let fx = Fixture::new();
    let c = fx.load(FULL).unwrap();
    assert!(c.peers.iter().all(|p| p.secured_form == SecuredForm::Auto), "default auto");
    let text = edit(
        FULL,
        "id = \"/id-mn\"\naddress = \"http://10.0.0.6:8443\"",
        "id = \"/id-mn\"\naddress = \"http://10.0.0.6:8443\"\nsecured_form = \"jwe\"",
    );
    let c = fx.load(&text).unwrap();
    let mn = c.peers.iter().find(|p| p.id.as_str() == "/id-mn").unwrap();
    assert_eq!(mn.secured_form, SecuredForm::Jwe);
    assert!(c.peers.iter().filter(|p| p.id.as_str() != "/id-mn").all(|p| p.secured_form == SecuredForm::Auto));
    let node = c.build_node();
    assert_eq!(node.secured_form(&mn.id), SecuredForm::Jwe, "applied to the node");
    let text = edit(
        FULL,
        "id = \"/id-mn\"\naddress = \"http://10.0.0.6:8443\"",
        "id = \"/id-mn\"\naddress = \"http://10.0.0.6:8443\"\nsecured_form = \"cbor\"",
    );
    fx.refuses(&text, "peer[0].secured_form", "secured_form", "`cbor` is not a secured form (auto, jwe or compact)");
}

#[test]
fn node_id_suites_and_log_level_are_checked() {
    let fx = Fixture::new();
    let text = edit(FULL, "id = \"/id-in\"", "id = \"\"");
    fx.refuses(&text, "node.id", "id = \"\"", "invalid node ID");
    let text = edit(FULL, "\"x25519_aes128gcm_sha256\"", "\"ROT13\"");
    fx.refuses(&text, "node.suites[1]", "ROT13", "unknown suite \"ROT13\" (known: X25519_AES128GCM_SHA256");
    let text = edit(FULL, "\"x25519_aes128gcm_sha256\"", "\"X25519MLKEM768_AES256GCM_SHA384\"");
    fx.refuses(&text, "node.suites[1]", "suites", "listed twice");
    let text = edit(FULL, "suites = [\"X25519MLKEM768_AES256GCM_SHA384\", \"x25519_aes128gcm_sha256\"]", "suites = []");
    fx.refuses(&text, "node.suites", "suites = []", "empty");
    let text = edit(FULL, "level = \"onem2m_sa_sidecar=debug,info\"", "level = \"foo=loud\"");
    fx.refuses(&text, "log.level", "foo=loud", "invalid filter directive");
    let text = edit(FULL, "\"Clegacy*\"", "\"C*x\"");
    fx.refuses(&text, "ingress.allow_plaintext_from[0]", "C*x", "invalid originator pattern");
}

#[test]
fn trust_anchors_are_required_and_unique() {
    let fx = Fixture::new();
    let text = edit(FULL, "[[trust_anchor]]\nid = \"/trust-anchor\"\npublic_key = \"anchor.pub.pem\"\n", "");
    let err = fx.load(&text).unwrap_err();
    assert_eq!((err.key(), err.line()), (Some("trust_anchor"), Some(1)), "{err}");
    assert!(err.to_string().contains("at least one [[trust_anchor]]"), "{err}");
    let twice = "[[trust_anchor]]\nid = \"/trust-anchor\"\npublic_key = \"impostor.pub.pem\"\n\n[ingress]";
    let text = edit(FULL, "[ingress]", twice);
    fx.refuses(&text, "trust_anchor[1].id", "id = \"/trust-anchor\"\npublic_key = \"impostor", "listed twice");
}

#[test]
fn missing_files_are_named_with_their_resolved_path() {
    let fx = Fixture::new();
    let text = edit(FULL, "key = \"id-in.key.pem\"", "key = \"keys/nope.key.pem\"");
    let msg = fx.refuses(&text, "node.key", "keys/nope", "No such file");
    assert!(msg.contains(&*fx.path("keys").join("nope.key.pem").to_string_lossy()), "{msg}");
    let text = edit(FULL, "ticket = \"id-in.ticket.json\"", "ticket = \"gone.json\"");
    let msg = fx.refuses(&text, "node.ticket", "gone.json", "No such file");
    assert!(msg.contains(&*fx.path("gone.json").to_string_lossy()), "{msg}");
    let text = edit(FULL, "public_key = \"anchor.pub.pem\"", "public_key = \"anchor.key.pem\"");
    fx.refuses(&text, "trust_anchor[0].public_key", "anchor.key.pem", "this is a private key");
    let text = edit(FULL, "key = \"id-in.key.pem\"", "key = \"id-in.pub.pem\"");
    fx.refuses(&text, "node.key", "id-in.pub.pem", "this is a public key");
    std::fs::write(fx.path("bad.json"), "not json").unwrap();
    let text = edit(FULL, "ticket = \"id-in.ticket.json\"", "ticket = \"bad.json\"");
    fx.refuses(&text, "node.ticket", "bad.json", "malformed ticket");
    // The configuration file itself.
    let err = Config::load(&fx.path("absent.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }) && err.to_string().contains("absent.toml"), "{err}");
    assert_eq!(err.key(), None);
}

#[test]
fn ticket_must_match_the_node() {
    let fx = Fixture::new();
    let n = now();
    // Another subject.
    fx.ticket("mn.json", "/id-mn", "id-in", "/trust-anchor", "anchor", n - 60, n + DAY);
    let text = edit(FULL, "ticket = \"id-in.ticket.json\"", "ticket = \"mn.json\"");
    fx.refuses(&text, "node.ticket", "mn.json", "the ticket is for /id-mn, not for node.id /id-in");
    // Another key.
    fx.ticket("other-key.json", "/id-in", "impostor", "/trust-anchor", "anchor", n - 60, n + DAY);
    let text = edit(FULL, "ticket = \"id-in.ticket.json\"", "ticket = \"other-key.json\"");
    fx.refuses(&text, "node.ticket", "other-key.json", "the ticket carries another key");
}

#[test]
fn ticket_must_verify_now() {
    let fx = Fixture::new();
    let n = now();
    let cases = [
        ("expired.json", "/trust-anchor", "anchor", n - 10 * DAY, n - DAY, "the ticket expired at "),
        ("early.json", "/trust-anchor", "anchor", n + DAY, n + 10 * DAY, "the ticket is not valid before "),
        ("stranger.json", "/other-anchor", "anchor", n - 60, n + DAY, "issuer /other-anchor is not a configured"),
        ("forged.json", "/trust-anchor", "impostor", n - 60, n + DAY, "signature does not verify"),
    ];
    for (file, anchor_id, anchor_key, nbf, naf, says) in cases {
        fx.ticket(file, "/id-in", "id-in", anchor_id, anchor_key, nbf, naf);
        let text = edit(FULL, "ticket = \"id-in.ticket.json\"", &format!("ticket = \"{file}\""));
        fx.refuses(&text, "node.ticket", file, says);
    }
    // The clock is injectable: the fixture's ticket is expired in two years, early two days ago.
    let path = fx.path("sidecar.toml");
    let err = Config::parse_at(FULL, &path, n + 2 * 365 * DAY).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = Config::parse_at(FULL, &path, n - 2 * DAY).unwrap_err();
    assert!(err.to_string().contains("not valid before"), "{err}");
    assert_eq!(Config::parse_at(FULL, &path, n).unwrap().node.id.as_str(), "/id-in");
}

/// The example's commented CoAP blocks (`# [ingress.coap]`, `# [egress.coap]`, `# [coap]` and
/// the `# key = value` lines under them) uncommented.
fn uncomment_coap(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let header = matches!(line, "# [ingress.coap]" | "# [egress.coap]" | "# [coap]");
        in_block = header || (in_block && line.starts_with('#'));
        let setting = line.strip_prefix("# ").filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        });
        match (in_block, header, setting) {
            (true, true, _) => out.push_str(&line[2..]),
            (true, false, Some(kv)) => out.push_str(kv),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_examples_commented_coap_blocks_load() {
    let cse = check_edited_example("sidecar-cse.toml", uncomment_coap);
    assert_eq!(cse.ingress.unwrap().coap.unwrap().listen, "0.0.0.0:5683".parse().unwrap());
    assert_eq!(cse.egress.unwrap().coap.unwrap().listen, "127.0.0.1:5685".parse().unwrap());
    assert_eq!(cse.coap, onem2m_sa_sidecar::config::CoapSettings::default(), "the documented defaults");
    let ae = check_edited_example("sidecar-ae.toml", uncomment_coap);
    assert_eq!(ae.egress.unwrap().coap.unwrap().listen, "127.0.0.1:5686".parse().unwrap());
}

/// A peer behind a transit CSE (docs/deploy.md "Through a registrar MN-CSE"): its outer `to`,
/// the `fr` this node has on the way and the carriage; defaults when absent; bad values named.
#[test]
fn peer_outer_addressing_and_carriage() {
    let fx = Fixture::new();
    let text = edit(
        FULL,
        "id = \"/id-mn\"\naddress = \"http://10.0.0.6:8443\"\n",
        "id = \"/id-mn\"\naddress = \"http://10.0.0.6:8443\"\nto = \"/id-mn/cse-mn\"\nfrom = \"Cin-host\"\n\
         carriage = \"notification\"\n",
    );
    let config = fx.load(&text).unwrap();
    let me = &config.node.id;
    let outer = config.peers[0].outer_from(me);
    assert_eq!(
        (outer.to.as_str(), outer.from.as_str(), outer.carriage),
        ("/id-mn/cse-mn", "Cin-host", Carriage::Notification)
    );
    let plain = config.peers[1].outer_from(me);
    assert_eq!((plain.to.as_str(), plain.from.as_str(), plain.carriage), ("CAE01", "/id-in", Carriage::Standard));
    // The node carries them.
    let node = config.build_node();
    assert_eq!(node.outer(&"/id-mn".parse().unwrap()), outer);
    assert_eq!(node.outer(&"/id-other".parse().unwrap()).to, "/id-other");

    let bad = edit(&text, "carriage = \"notification\"", "carriage = \"sgn\"");
    fx.refuses(&bad, "peer[0].carriage", "carriage = \"sgn\"", "`standard` or `notification`");
    let bad = edit(&text, "to = \"/id-mn/cse-mn\"", "to = \"CAE01\"");
    fx.refuses(&bad, "peer[0].to", "to = \"CAE01\"", "is also how peer[1] is addressed");
    let bad = edit(&text, "to = \"/id-mn/cse-mn\"", "to = \"/id-mn cse-mn\"");
    fx.refuses(&bad, "peer[0].to", "to = \"/id-mn cse-mn\"", "invalid node ID");
}

const KEK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// `FULL` with `[store]` set to `body` (and the KEK file written, mode 600).
fn with_store(fx: &Fixture, body: &str) -> String {
    let kek = fx.path("store.kek");
    std::fs::write(&kek, format!("{KEK_HEX}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    format!("{FULL}\n[store]\n{body}")
}

#[test]
fn the_redis_store_loads() {
    use onem2m_sa_sidecar::config::StoreSettings;
    let fx = Fixture::new();
    assert_eq!(fx.load(FULL).unwrap().store, StoreSettings::Memory, "in memory by default");
    assert_eq!(fx.load(&with_store(&fx, "kind = \"memory\"\n")).unwrap().store, StoreSettings::Memory);
    let text = with_store(
        &fx,
        "kind = \"redis\"\nurl = \"redis://:s3cret@10.0.0.5:6379/2\"\nkek_file = \"store.kek\"\nprefix = \"city:\"\n\
         timeout_ms = 500\nlease_block = 64\nlease_refresh_ms = 1000\n",
    );
    let c = fx.load(&text).unwrap();
    let StoreSettings::Redis(r) = &c.store else { panic!("{:?}", c.store) };
    assert_eq!(r.url, "redis://:s3cret@10.0.0.5:6379/2");
    assert_eq!(hex::encode(&r.kek[..]), KEK_HEX);
    assert_eq!((r.prefix.as_str(), r.lease_block), ("city:", 64));
    assert_eq!((r.timeout, r.lease_refresh), (Duration::from_millis(500), Duration::from_secs(1)));
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret") && !shown.contains(KEK_HEX) && !shown.contains("0x1f"), "{shown}");
    assert_eq!(c.warnings, []);
    // Defaults; a unix socket.
    let text = with_store(&fx, "kind = \"redis\"\nurl = \"redis+unix:///run/redis.sock\"\nkek_file = \"store.kek\"\n");
    let StoreSettings::Redis(r) = fx.load(&text).unwrap().store else { panic!() };
    assert_eq!((r.prefix.as_str(), r.lease_block, r.timeout), ("onem2m-sa:", 32, Duration::from_secs(2)));
    assert_eq!(r.lease_refresh, Duration::from_millis(250));
    assert!(r.sentinels.is_empty() && r.master.is_none());
    assert_eq!(r.lease_replicas, 0, "one server: leases do not wait for a replica");
    // Redis Sentinel: the master they name, with the url's credentials and database.
    let sentinel = with_store(
        &fx,
        "kind = \"redis\"\nsentinels = [\"redis://10.0.0.1:26379\", \"redis://10.0.0.2:26379\"]\n\
         master = \"onem2m\"\nurl = \"redis://:pw@master/1\"\nkek_file = \"store.kek\"\n",
    );
    let StoreSettings::Redis(r) = fx.load(&sentinel).unwrap().store else { panic!() };
    assert_eq!(r.sentinels, ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]);
    assert_eq!((r.master.as_deref(), r.url.as_str()), (Some("onem2m"), "redis://:pw@master/1"));
    assert_eq!(r.lease_replicas, 1, "a failover to a replica must not lose a lease");
    let StoreSettings::Redis(r) = fx.load(&format!("{sentinel}lease_replicas = 0\n")).unwrap().store else { panic!() };
    assert_eq!(r.lease_replicas, 0);
    let no_url = sentinel.replace("url = \"redis://:pw@master/1\"\n", "");
    let StoreSettings::Redis(r) = fx.load(&no_url).unwrap().store else { panic!() };
    assert_eq!(r.url, "", "no credentials, database 0");
    assert!(r.cluster.is_empty());
    // Redis Cluster: some of its nodes, credentials in each address (never shown).
    let cluster = with_store(
        &fx,
        "kind = \"redis\"\ncluster = [\"redis://:pw7@10.0.0.1:7000\", \"redis://:pw7@10.0.0.2:7000\"]\n\
         kek_file = \"store.kek\"\n",
    );
    let c = fx.load(&cluster).unwrap();
    let StoreSettings::Redis(r) = &c.store else { panic!() };
    assert_eq!(r.cluster, ["redis://:pw7@10.0.0.1:7000", "redis://:pw7@10.0.0.2:7000"]);
    assert!(r.url.is_empty() && r.sentinels.is_empty() && r.master.is_none());
    assert_eq!(r.lease_replicas, 1);
    assert!(!format!("{c:?}").contains("pw7"), "the password is not shown");
    // TLS to Redis: rediss://, a CA to verify it with, a client certificate and key.
    std::fs::write(fx.path("redis-ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(fx.path("replica.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(fx.path("replica.key"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let tls = with_store(
        &fx,
        "kind = \"redis\"\nurl = \"rediss://:pw@redis.example:6380/0\"\nca_file = \"redis-ca.pem\"\n\
         cert_file = \"replica.pem\"\nkey_file = \"replica.key\"\nkek_file = \"store.kek\"\n",
    );
    let StoreSettings::Redis(r) = fx.load(&tls).unwrap().store else { panic!() };
    assert_eq!(r.url, "rediss://:pw@redis.example:6380/0");
    assert_eq!(r.ca_file, Some(fx.path("redis-ca.pem")));
    assert_eq!(r.client_cert, Some((fx.path("replica.pem"), fx.path("replica.key"))));
    // Pointless without an ingress (it keeps inbound SAs): a warning.
    let egress_only = format!("{MINIMAL}\n[store]\nkind = \"redis\"\nurl = \"redis://h\"\nkek_file = \"store.kek\"\n");
    let warnings = fx.load(&egress_only).unwrap().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].key == "store" && warnings[0].message.contains("without [ingress]"), "{}", warnings[0]);
    // A KEK others can read is accepted with a warning.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(fx.path("store.kek"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let warnings = fx.load(&text).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "store.kek_file");
        assert!(warnings[0].message.contains("chmod 600"), "{}", warnings[0]);
    }
}

#[test]
fn store_settings_are_checked() {
    let fx = Fixture::new();
    let redis = "kind = \"redis\"\nurl = \"redis://10.0.0.5\"\nkek_file = \"store.kek\"\n";
    fx.refuses(&with_store(&fx, "kind = \"etcd\"\n"), "store.kind", "etcd", "\"memory\" or \"redis\"");
    fx.refuses(&with_store(&fx, "url = \"redis://h\"\n"), "store.url", "redis://h", "only with kind = \"redis\"");
    fx.refuses(&with_store(&fx, "kind = \"redis\"\nkek_file = \"store.kek\"\n"), "store", "[store]", "no url");
    fx.refuses(&with_store(&fx, "kind = \"redis\"\nurl = \"redis://h\"\n"), "store", "[store]", "no kek_file");
    // TLS files only with rediss:// addresses, the certificate with its key, readable files.
    let text = with_store(&fx, &format!("{redis}ca_file = \"ca.pem\"\n"));
    fx.refuses(&text, "store.ca_file", "ca.pem", "only with rediss://");
    let tls = redis.replace("redis://10.0.0.5", "rediss://10.0.0.5");
    fx.refuses(
        &with_store(&fx, &format!("{tls}ca_file = \"missing.pem\"\n")),
        "store.ca_file",
        "missing.pem",
        "No such file",
    );
    std::fs::write(fx.path("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(fx.path("replica.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    fx.refuses(
        &with_store(&fx, &format!("{tls}cert_file = \"replica.pem\"\n")),
        "store.cert_file",
        "replica.pem",
        "without key_file",
    );
    fx.refuses(
        &with_store(&fx, &format!("{tls}key_file = \"replica.pem\"\n")),
        "store.key_file",
        "replica.pem",
        "without cert_file",
    );
    let text = with_store(
        &fx,
        "kind = \"redis\"\nsentinels = [\"redis://s:26379\"]\nmaster = \"m\"\nurl = \"rediss://:pw@m/0\"\nkek_file = \"store.kek\"\n",
    );
    fx.refuses(&text, "store.url", "rediss://", "Sentinel is not supported");
    let text = with_store(&fx, &redis.replace("redis://10.0.0.5", "http://10.0.0.5"));
    fx.refuses(&text, "store.url", "http://10.0.0.5", "not a redis://");
    let text = with_store(&fx, &redis.replace("redis://10.0.0.5", "redis://:pw@:6379"));
    let msg = fx.refuses(&text, "store.url", "redis://:pw", "names no host");
    assert!(!msg.contains(":pw@"), "the password is not shown: {msg}");
    let text = with_store(&fx, &redis.replace("redis://10.0.0.5", "redis://h/x"));
    fx.refuses(&text, "store.url", "redis://h/x", "database number");
    let text = with_store(&fx, &redis.replace("store.kek", "missing.kek"));
    fx.refuses(&text, "store.kek_file", "missing.kek", "No such file");
    std::fs::write(fx.path("short.kek"), "00112233").unwrap();
    let text = with_store(&fx, &redis.replace("store.kek", "short.kek"));
    let msg = fx.refuses(&text, "store.kek_file", "short.kek", "64 hex digits");
    assert!(!msg.contains("00112233"), "the key file's content is not shown: {msg}");
    fx.refuses(&with_store(&fx, &format!("{redis}prefix = \"a b\"\n")), "store.prefix", "a b", "no spaces");
    fx.refuses(
        &with_store(&fx, &format!("{redis}timeout_ms = 9\n")),
        "store.timeout_ms",
        "timeout_ms = 9",
        "out of range",
    );
    // FULL's replay window is 2048: blocks of at most a quarter of it.
    fx.refuses(
        &with_store(&fx, &format!("{redis}lease_block = 513\n")),
        "store.lease_block",
        "lease_block = 513",
        "512",
    );
    fx.refuses(&with_store(&fx, &format!("{redis}window = 5\n")), "store.window", "window = 5", "unknown key");
    fx.refuses(
        &with_store(&fx, &format!("{redis}lease_replicas = 17\n")),
        "store.lease_replicas",
        "lease_replicas = 17",
        "out of range",
    );
    let sentinel = "kind = \"redis\"\nkek_file = \"store.kek\"\n";
    let text = with_store(&fx, &format!("{sentinel}sentinels = [\"redis://s:26379\"]\n"));
    fx.refuses(&text, "store.sentinels", "sentinels", "add master");
    let text = with_store(&fx, &format!("{sentinel}master = \"m\"\n"));
    fx.refuses(&text, "store.master", "master", "master without sentinels");
    let text = with_store(&fx, &format!("{sentinel}sentinels = []\nmaster = \"m\"\n"));
    fx.refuses(&text, "store.sentinels", "sentinels", "at least one");
    let text =
        with_store(&fx, &format!("{sentinel}sentinels = [\"redis://s:1\", \"redis+unix:///s\"]\nmaster = \"m\"\n"));
    fx.refuses(&text, "store.sentinels[1]", "redis+unix", "redis://host:port");
    let text = with_store(&fx, &format!("{sentinel}sentinels = [\"redis://s:1\"]\nmaster = \"a b\"\n"));
    fx.refuses(&text, "store.master", "a b", "no spaces");
    let text = with_store(&fx, "kind = \"memory\"\nmaster = \"m\"\n");
    fx.refuses(&text, "store.master", "master", "only with kind");
    let text = with_store(&fx, "kind = \"memory\"\ncluster = [\"redis://c:7000\"]\n");
    fx.refuses(&text, "store.cluster", "cluster", "only with kind");
    let text = with_store(&fx, &format!("{sentinel}cluster = []\n"));
    fx.refuses(&text, "store.cluster", "cluster", "at least one node");
    let text = with_store(&fx, &format!("{sentinel}cluster = [\"redis://c:1\", \"redis+unix:///c\"]\n"));
    fx.refuses(&text, "store.cluster[1]", "redis+unix", "redis://host:port");
    let text = with_store(&fx, &format!("{sentinel}cluster = [\"redis://c:1\"]\nurl = \"redis://h\"\n"));
    fx.refuses(&text, "store.url", "redis://h", "not with cluster");
    let text = with_store(&fx, &format!("{sentinel}cluster = [\"redis://c:1\"]\nmaster = \"m\"\n"));
    fx.refuses(&text, "store.master", "master", "not with cluster");
}
