//! Key and ticket tools: `onem2m-sa keygen` and `onem2m-sa ticket issue|inspect`.
//!
//! A node's long-term signing key lives in a PKCS#8 PEM file (mode 0600), its public half in a
//! SubjectPublicKeyInfo PEM file that openssl reads too; a trust anchor binds the public key to a
//! node ID in a ticket (TS-0003 §7.3 authorization context). The library functions take no clock;
//! only the `run_*` entry points read the wall clock.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use onem2m_sa::credential::{
    AuthorizationContext, CredentialError, NodeId, OriginatorPattern, Ticket, TicketError, TrustAnchors,
};
use onem2m_sa::crypto::{self, CryptoError, HashAlgorithm, SignatureAlgorithm, SigningKey};
use onem2m_sa::rng::SystemRng;
use zeroize::Zeroizing;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480, id-ecPublicKey + prime256v1); the
/// 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Ed25519 PKCS#8 as aws-lc writes it (v2, RFC 8410 OneAsymmetricKey with the public key), up to
/// the 32-byte seed; and the v1 (RFC 5208) form of the same key, which OpenSSL 3.0 also reads.
const ED25519_PKCS8_V2_PREFIX: [u8; 16] =
    [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const PUBLIC_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PUBLIC_END: &str = "-----END PUBLIC KEY-----";
const PRIVATE_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
/// Largest key or ticket file read (a key file is well under 1 KiB, a ticket under 16 KiB).
const MAX_FILE: u64 = 64 * 1024;
/// Clock skew tolerated by freshly issued tickets: they are valid from this long before issue.
const ISSUE_BACKDATE_SECS: u64 = 300;

/// Why a key or ticket file could not be read, written or made. Every file error names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists and overwriting it was not asked for.
    #[error("{}: already exists (pass --force to overwrite it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file does not hold what was expected.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key could not be generated.
    #[error("key generation failed: {0}")]
    Crypto(#[from] CryptoError),
    /// The ticket could not be issued.
    #[error("cannot issue the ticket: {0}")]
    Issue(#[from] CredentialError),
}

fn invalid(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::Invalid { path: path.to_owned(), reason: reason.into() }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_owned(), source }
}

/// Reads a small text file, refusing anything over [`MAX_FILE`]. The text is zeroized on drop.
fn read_small(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(io_error(path))?;
    if text.len() as u64 > MAX_FILE {
        return Err(invalid(path, "file too large (over 64 KiB)"));
    }
    Ok(text)
}

/// The files [`keygen`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `PREFIX.key.pem`: the private key, PKCS#8 PEM.
    pub private_key: PathBuf,
    /// `PREFIX.pub.pem`: the public key, SubjectPublicKeyInfo PEM.
    pub public_key: PathBuf,
    /// The key's algorithm.
    pub algorithm: SignatureAlgorithm,
    /// The public key in hex (Ed25519 raw 32 bytes, P-256 uncompressed point).
    pub public_key_hex: String,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Generates a key pair of `alg` and writes `PREFIX.key.pem` (PKCS#8, mode 0600 on unix) and
/// `PREFIX.pub.pem` (SubjectPublicKeyInfo). Refuses to overwrite either file unless `force`.
pub fn keygen(alg: SignatureAlgorithm, prefix: &Path, force: bool) -> Result<KeyFiles, KeyError> {
    let private_key = with_suffix(prefix, ".key.pem");
    let public_key = with_suffix(prefix, ".pub.pem");
    if !force {
        for path in [&private_key, &public_key] {
            if path.symlink_metadata().is_ok() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
    }
    let key = SigningKey::generate(alg, &mut SystemRng)?;
    write_private(&private_key, &private_key_pem(&key), force)?;
    std::fs::write(&public_key, public_key_pem(alg, key.public_key())).map_err(io_error(&public_key))?;
    Ok(KeyFiles { private_key, public_key, algorithm: alg, public_key_hex: hex::encode(key.public_key()) })
}

/// A PEM block of `label` around `der`.
fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut pem = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 32));
    pem.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The key as a PKCS#8 PEM file. Ed25519 keys are written as PKCS#8 v1 (seed only), which every
/// tool reads (OpenSSL 3.0 refuses aws-lc's v2 encoding); the public key is derived again on load.
fn private_key_pem(key: &SigningKey) -> Zeroizing<String> {
    let der = key.to_pkcs8_der();
    if key.algorithm() == SignatureAlgorithm::Ed25519 && der.len() >= 48 && der.starts_with(&ED25519_PKCS8_V2_PREFIX) {
        let mut v1 = Zeroizing::new(Vec::with_capacity(48));
        v1.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        v1.extend_from_slice(&der[16..48]);
        // Only if it reads back as the same key; otherwise keep aws-lc's own encoding.
        if SigningKey::from_pkcs8_der(key.algorithm(), &v1).is_ok_and(|k| k.public_key() == key.public_key()) {
            return pem("PRIVATE KEY", &v1);
        }
    }
    pem("PRIVATE KEY", &der)
}

/// Writes a private key file readable by its owner only (the mode is set before any key byte is
/// written, also when an existing file is overwritten).
fn write_private(path: &Path, pem: &str, force: bool) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: path.to_owned() },
        _ => KeyError::Io { path: path.to_owned(), source },
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
    }
    file.write_all(pem.as_bytes()).and_then(|()| file.sync_all()).map_err(io_error(path))
}

/// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), Ed25519 or ECDSA P-256,
/// detecting which.
pub fn read_private_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = read_small(path)?;
    if !pem.contains(PRIVATE_BEGIN) {
        let hint = if pem.contains(PUBLIC_BEGIN) { " (this is a public key)" } else { "" };
        return Err(invalid(path, format!("no PKCS#8 \"PRIVATE KEY\" PEM block{hint}")));
    }
    [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256]
        .into_iter()
        .find_map(|alg| SigningKey::from_pem(alg, &pem).ok())
        .ok_or_else(|| invalid(path, "not a PKCS#8 Ed25519 or ECDSA P-256 private key"))
}

/// Reads a SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`), Ed25519 or
/// ECDSA P-256: the algorithm and the key as tickets carry it.
pub fn read_public_key(path: &Path) -> Result<(SignatureAlgorithm, Vec<u8>), KeyError> {
    let pem = read_small(path)?;
    let Some(start) = pem.find(PUBLIC_BEGIN).map(|i| i + PUBLIC_BEGIN.len()) else {
        let hint = if pem.contains(PRIVATE_BEGIN) { " (this is a private key: give the .pub.pem file)" } else { "" };
        return Err(invalid(path, format!("no \"PUBLIC KEY\" PEM block{hint}")));
    };
    let len = pem[start..].find(PUBLIC_END).ok_or_else(|| invalid(path, "unterminated PUBLIC KEY block"))?;
    let body: String = pem[start..start + len].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(body).map_err(|_| invalid(path, "PUBLIC KEY block is not valid base64"))?;
    let alg = if der.starts_with(&ED25519_SPKI_PREFIX) {
        SignatureAlgorithm::Ed25519
    } else if der.starts_with(&P256_SPKI_PREFIX) {
        SignatureAlgorithm::EcdsaP256Sha256
    } else {
        return Err(invalid(path, "not an Ed25519 or ECDSA P-256 public key"));
    };
    let prefix = match alg {
        SignatureAlgorithm::Ed25519 => ED25519_SPKI_PREFIX.len(),
        SignatureAlgorithm::EcdsaP256Sha256 => P256_SPKI_PREFIX.len(),
    };
    let key = der[prefix..].to_vec();
    if key.len() != alg.public_key_len() || (alg == SignatureAlgorithm::EcdsaP256Sha256 && key[0] != 4) {
        return Err(invalid(path, format!("malformed {alg} public key")));
    }
    Ok((alg, key))
}

/// The SubjectPublicKeyInfo PEM (`PUBLIC KEY`) of a public key as tickets carry it (Ed25519 raw
/// 32 bytes, P-256 uncompressed 65-byte point), as `openssl pkey -pubin` reads it.
pub fn public_key_pem(alg: SignatureAlgorithm, public_key: &[u8]) -> String {
    let prefix: &[u8] = match alg {
        SignatureAlgorithm::Ed25519 => &ED25519_SPKI_PREFIX,
        SignatureAlgorithm::EcdsaP256Sha256 => &P256_SPKI_PREFIX,
    };
    let pem = pem("PUBLIC KEY", &[prefix, public_key].concat());
    pem.as_str().to_owned()
}

/// Reads a ticket file (the JSON of `onem2m-sa ticket issue`).
pub fn read_ticket(path: &Path) -> Result<Ticket, KeyError> {
    let json = read_small(path)?;
    Ticket::from_json(json.trim()).map_err(|e| invalid(path, e.to_string()))
}

/// What a trust anchor signs into a ticket.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The trust anchor's node ID (the ticket's issuer).
    pub anchor_id: NodeId,
    /// The trust anchor's signing key.
    pub anchor_key: SigningKey,
    /// The node the ticket is about.
    pub subject: NodeId,
    /// The subject's public key.
    pub subject_key: (SignatureAlgorithm, Vec<u8>),
    /// Originators that may speak through the subject's SAs (at least one; `""` for requests
    /// without an originator).
    pub allow: Vec<OriginatorPattern>,
    /// Originators refused even when `allow` covers them. [`issue_ticket`] adds
    /// [`ADMIN_ORIGINATOR`] when a wildcard of `allow` covers it and `allow` does not name it.
    pub except: Vec<OriginatorPattern>,
    /// Valid from (UNIX seconds).
    pub not_before: u64,
    /// Valid until, exclusive (UNIX seconds).
    pub not_after: u64,
    /// Longest SA lifetime, in seconds.
    pub max_sa_lifetime_secs: Option<u64>,
    /// A human-readable description.
    pub description: Option<String>,
}

/// The administrator originator of the ACME CSE (and the oneM2M test suites): a wildcard such as
/// `C*` must not make an AE host the CSE's administrator, so [`issue_ticket`] excepts it unless
/// it is allowed by name.
pub const ADMIN_ORIGINATOR: &str = "CAdmin";

/// The authorization context of `allow` and `except`, with [`ADMIN_ORIGINATOR`] added to the
/// exceptions when a wildcard of `allow` covers it and no pattern names it exactly.
pub fn authorization_context(allow: &[OriginatorPattern], except: &[OriginatorPattern]) -> AuthorizationContext {
    let mut except = except.to_vec();
    let by_wildcard = allow.iter().any(|p| p.is_wildcard() && p.covers(ADMIN_ORIGINATOR));
    let by_name = allow.iter().any(|p| !p.is_wildcard() && p.covers(ADMIN_ORIGINATOR));
    if by_wildcard && !by_name && !except.iter().any(|p| p.covers(ADMIN_ORIGINATOR)) {
        except.push(ADMIN_ORIGINATOR.parse().expect("a valid pattern"));
    }
    AuthorizationContext { originators: allow.to_vec(), except, ..AuthorizationContext::default() }
}

/// Issues and signs a ticket, its context from [`authorization_context`]. Refuses an empty
/// originator list, an empty validity window and a key of the wrong length for its algorithm.
pub fn issue_ticket(req: &IssueRequest) -> Result<Ticket, KeyError> {
    if req.allow.is_empty() {
        return Err(CredentialError::Malformed("no allowed originator".into()).into());
    }
    let context = AuthorizationContext {
        max_sa_lifetime_secs: req.max_sa_lifetime_secs,
        description: req.description.clone(),
        ..authorization_context(&req.allow, &req.except)
    };
    Ok(Ticket::issue(
        &req.anchor_id,
        &req.anchor_key,
        req.subject.clone(),
        req.subject_key.clone(),
        context,
        req.not_before,
        req.not_after,
    )?)
}

/// A short fingerprint of a public key: `sha256:` and the first 8 bytes of its SHA-256, in hex.
pub fn key_fingerprint(public_key: &[u8]) -> String {
    let d = crypto::digest(HashAlgorithm::Sha256, &[public_key]);
    format!("sha256:{}", hex::encode(&d.as_ref()[..8]))
}

/// A UNIX time as an RFC 3339 UTC timestamp (`2026-01-31T12:00:00Z`).
pub fn format_unix(secs: u64) -> String {
    // Days to civil date: Howard Hinnant's `civil_from_days`, for days ≥ 0.
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A span of seconds in the largest unit that keeps it readable (`3 days`, `5 hours`).
fn span(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3600 => (s / 3600, "hours"),
        s if s >= 120 => (s / 60, "minutes"),
        s => (s, "seconds"),
    };
    format!("{n} {unit}")
}

/// Whether the ticket's signature verifies against `anchors`, independently of its validity
/// window and of whom it names.
fn signature_status(ticket: &Ticket, anchors: &TrustAnchors) -> Result<(), TicketError> {
    // At `not_before` the window check passes, so only the issuer and signature are judged.
    anchors.verify(ticket, &ticket.subject, ticket.not_before).map(drop)
}

/// A human-readable account of a ticket: subject, issuer, key algorithm and fingerprint,
/// allowed originators, validity at `now_unix`, and, when `anchors` are given, whether the
/// signature verifies.
pub fn inspect_ticket(ticket: &Ticket, anchors: Option<&TrustAnchors>, now_unix: u64) -> String {
    let ctx = &ticket.context;
    let mut out = String::new();
    let mut line = |label: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{label:<16}{value}");
    };
    line("subject:", &ticket.subject);
    line("issuer:", &ticket.issuer);
    line("algorithm:", &ticket.algorithm);
    line("public key:", &hex::encode(&ticket.public_key));
    line("fingerprint:", &key_fingerprint(&ticket.public_key));
    let quoted = |p: &OriginatorPattern| match p.as_str() {
        "" => "\"\" (no originator)".to_owned(),
        s => s.to_owned(),
    };
    let allowed: Vec<String> = ctx.originators.iter().map(quoted).collect();
    line("allowed:", &allowed.join(", "));
    if !ctx.except.is_empty() {
        let except: Vec<String> = ctx.except.iter().map(quoted).collect();
        line("except:", &except.join(", "));
    }
    let named = ctx.originators.iter().any(|p| !p.is_wildcard() && p.covers(ADMIN_ORIGINATOR));
    if ctx.covers(ADMIN_ORIGINATOR) && !named {
        line(
            "warning:",
            &format!(
                "a wildcard covers {ADMIN_ORIGINATOR}, the CSE administrator: issue the ticket again (ticket issue \
                 excepts it) unless this node may act as administrator"
            ),
        );
    }
    if let Some(lt) = ctx.max_sa_lifetime_secs {
        line("max SA life:", &format!("{lt} s"));
    }
    if let Some(d) = &ctx.description {
        line("description:", d);
    }
    line("not before:", &format_unix(ticket.not_before));
    line("not after:", &format_unix(ticket.not_after));
    let validity = if now_unix < ticket.not_before {
        format!("not yet valid (starts in {})", span(ticket.not_before - now_unix))
    } else if now_unix >= ticket.not_after {
        format!("expired ({} ago)", span(now_unix - ticket.not_after))
    } else {
        format!("valid for {}", span(ticket.not_after - now_unix))
    };
    line("validity:", &validity);
    let signature = match anchors.map(|a| signature_status(ticket, a)) {
        None => "not checked (no trust anchor given)".to_owned(),
        Some(Ok(())) => format!("verified (issuer {})", ticket.issuer),
        Some(Err(e)) => format!("FAILED: {e}"),
    };
    line("signature:", &signature);
    line("reference:", &hex::encode(ticket.digest()));
    out
}

/// Signature algorithms on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519 (the default).
    Ed25519,
    /// ECDSA over P-256 with SHA-256.
    Es256,
}

impl From<KeyAlgorithm> for SignatureAlgorithm {
    fn from(a: KeyAlgorithm) -> Self {
        match a {
            KeyAlgorithm::Ed25519 => SignatureAlgorithm::Ed25519,
            KeyAlgorithm::Es256 => SignatureAlgorithm::EcdsaP256Sha256,
        }
    }
}

/// `onem2m-sa keygen`: make a node's (or a trust anchor's) long-term signing key.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    onem2m-sa keygen --out id-in                  # writes id-in.key.pem and id-in.pub.pem\n  \
    onem2m-sa keygen --algorithm es256 --out anchor")]
pub struct KeygenArgs {
    /// Signature algorithm of the key.
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ed25519)]
    pub algorithm: KeyAlgorithm,
    /// Write PREFIX.key.pem (private, PKCS#8, mode 0600) and PREFIX.pub.pem (public, SPKI).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `onem2m-sa ticket`: issue and inspect the tickets that bind node IDs to keys.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TicketCommand {
    /// Issue a ticket for a node, signed by a trust anchor's key.
    Issue(IssueArgs),
    /// Show what a ticket says and, given the anchor's public key, verify it.
    Inspect(InspectArgs),
}

/// `onem2m-sa ticket issue`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    onem2m-sa ticket issue --anchor-key anchor.key.pem --anchor-id /trust-anchor \\\n      \
    --subject /id-in --subject-key id-in.pub.pem --out id-in.ticket.json\n  \
    onem2m-sa ticket issue --anchor-key anchor.key.pem --anchor-id /trust-anchor \\\n      \
    --subject /id-asn --subject-key id-asn.pub.pem --allow /id-asn --allow 'C*' --days 30\n  \
    onem2m-sa ticket issue --anchor-key anchor.key.pem --anchor-id /trust-anchor \\\n      \
    --subject /id-ae-host --subject-key ae-host.pub.pem --allow 'C*' --allow 'S*' --allow ''")]
pub struct IssueArgs {
    /// The trust anchor's private key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    pub anchor_key: PathBuf,
    /// The trust anchor's ID, as the nodes' `[[trust_anchor]] id` names it.
    #[arg(long, value_name = "ID")]
    pub anchor_id: NodeId,
    /// The node the ticket is for (a CSE-ID like /id-in, or an AE node's ID).
    #[arg(long, value_name = "ID")]
    pub subject: NodeId,
    /// The node's public key (PREFIX.pub.pem from keygen).
    #[arg(long, value_name = "PUBFILE")]
    pub subject_key: PathBuf,
    /// An originator allowed to speak through the node's SAs: an exact ID, a prefix ending in
    /// `*`, `*`, or '' (requests without an originator: AEs registering for the CSE to assign
    /// their AE-ID). Repeatable; default: the subject's own ID.
    #[arg(long, value_name = "PATTERN")]
    pub allow: Vec<OriginatorPattern>,
    /// An originator refused even when --allow covers it (exact ID or prefix). Repeatable.
    /// CAdmin (the CSE administrator) is excepted whenever a wildcard covers it, unless
    /// --allow CAdmin names it.
    #[arg(long, value_name = "PATTERN")]
    pub except: Vec<OriginatorPattern>,
    /// Days the ticket is valid (it starts 5 minutes in the past, for clock skew).
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub days: u64,
    /// Longest lifetime of an SA of this node, in seconds.
    #[arg(long, value_name = "SECS")]
    pub max_sa_lifetime: Option<u64>,
    /// A human-readable description, signed into the ticket.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Write the ticket here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `onem2m-sa ticket inspect`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    onem2m-sa ticket inspect id-in.ticket.json\n  \
    onem2m-sa ticket inspect id-in.ticket.json \\\n      \
    --anchor-key-pub anchor.pub.pem --anchor-id /trust-anchor\n\n\
    With the anchor's key, exits non-zero unless the ticket verifies and is valid now.")]
pub struct InspectArgs {
    /// The ticket file (JSON).
    #[arg(value_name = "FILE")]
    pub ticket: PathBuf,
    /// Verify against this trust anchor public key (SPKI PEM).
    #[arg(long, value_name = "FILE", requires = "anchor_id")]
    pub anchor_key_pub: Option<PathBuf>,
    /// The trust anchor's ID (with --anchor-key-pub).
    #[arg(long, value_name = "ID", requires = "anchor_key_pub")]
    pub anchor_id: Option<NodeId>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Runs `onem2m-sa keygen`: writes the key files and prints them and the public key.
pub fn run_keygen(args: &KeygenArgs) -> Result<(), Box<dyn std::error::Error>> {
    let files = keygen(args.algorithm.into(), &args.out, args.force)?;
    println!("wrote {} (private key, {}, keep it secret)", files.private_key.display(), files.algorithm);
    println!("wrote {} (public key)", files.public_key.display());
    println!("public key:  {}", files.public_key_hex);
    let (_, public) = read_public_key(&files.public_key)?;
    println!("fingerprint: {}", key_fingerprint(&public));
    Ok(())
}

/// The error of a ticket that failed verification in `ticket inspect`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
struct VerificationFailed {
    path: PathBuf,
    cause: TicketError,
}

/// Runs `onem2m-sa ticket issue|inspect`. `inspect` fails if verification was asked for and the
/// ticket does not verify or is not valid now.
pub fn run_ticket(cmd: &TicketCommand) -> Result<(), Box<dyn std::error::Error>> {
    let now = unix_now();
    match cmd {
        TicketCommand::Issue(a) => {
            let allow =
                if a.allow.is_empty() {
                    vec![a.subject.as_str().parse().map_err(|_| {
                        format!("the subject ID {} is not an originator pattern; pass --allow", a.subject)
                    })?]
                } else {
                    a.allow.clone()
                };
            let not_before = now.saturating_sub(ISSUE_BACKDATE_SECS);
            let req = IssueRequest {
                anchor_id: a.anchor_id.clone(),
                anchor_key: read_private_key(&a.anchor_key)?,
                subject: a.subject.clone(),
                subject_key: read_public_key(&a.subject_key)?,
                allow,
                except: a.except.clone(),
                not_before,
                not_after: now.saturating_add(a.days.saturating_mul(86_400)),
                max_sa_lifetime_secs: a.max_sa_lifetime,
                description: a.description.clone(),
            };
            let ticket = issue_ticket(&req)?;
            // Check what was just signed, as a peer will: against the anchor's public key.
            let mut anchors = TrustAnchors::new();
            anchors.add(req.anchor_id.clone(), req.anchor_key.algorithm(), req.anchor_key.public_key().to_vec());
            anchors
                .verify(&ticket, &ticket.subject, now)
                .map_err(|e| format!("the ticket just issued does not verify: {e}"))?;
            let json = ticket.to_json() + "\n";
            let summary = inspect_ticket(&ticket, Some(&anchors), now);
            match &a.out {
                Some(path) => {
                    std::fs::write(path, json).map_err(io_error(path))?;
                    println!("wrote {}\n{summary}", path.display());
                }
                None => {
                    print!("{json}");
                    eprint!("{summary}");
                }
            }
            Ok(())
        }
        TicketCommand::Inspect(a) => {
            let ticket = read_ticket(&a.ticket)?;
            let anchors = match (&a.anchor_key_pub, &a.anchor_id) {
                (Some(key), Some(id)) => {
                    let (alg, public) = read_public_key(key)?;
                    let mut anchors = TrustAnchors::new();
                    anchors.add(id.clone(), alg, public);
                    Some(anchors)
                }
                _ => None,
            };
            print!("{}", inspect_ticket(&ticket, anchors.as_ref(), now));
            if let Some(anchors) = anchors {
                anchors
                    .verify(&ticket, &ticket.subject, now)
                    .map_err(|cause| VerificationFailed { path: a.ticket.clone(), cause })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_unix(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn spans() {
        assert_eq!(span(5), "5 seconds");
        assert_eq!(span(3 * 3600), "3 hours");
        assert_eq!(span(400 * 86_400), "400 days");
    }
}
