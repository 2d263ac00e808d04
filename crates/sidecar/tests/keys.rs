//! Key files, SPKI interoperability with openssl, ticket issue/read/verify/inspect, and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use clap::Parser;
use onem2m_sa::credential::{NodeId, OriginatorPattern, Ticket, TicketError, TrustAnchors};
use onem2m_sa::crypto::{self, SignatureAlgorithm, SigningKey};
use onem2m_sa_sidecar::keys::{self, IssueRequest, KeyError, KeygenArgs, TicketCommand};

const BOTH: [SignatureAlgorithm; 2] = [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256];
const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn spki_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn openssl() -> Option<&'static str> {
    let ok = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("openssl not installed: skipping the openssl cross-check");
    }
    ok.then_some("openssl")
}

#[test]
fn keygen_round_trips_both_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    for alg in BOTH {
        let prefix = dir.path().join(alg.name());
        let files = keys::keygen(alg, &prefix, false).unwrap();
        assert_eq!(files.private_key, dir.path().join(format!("{}.key.pem", alg.name())));
        assert_eq!(files.public_key, dir.path().join(format!("{}.pub.pem", alg.name())));
        assert_eq!(files.algorithm, alg);

        let key = keys::read_private_key(&files.private_key).unwrap();
        assert_eq!(key.algorithm(), alg, "algorithm detected from the file");
        let (pub_alg, public) = keys::read_public_key(&files.public_key).unwrap();
        assert_eq!((pub_alg, public.as_slice()), (alg, key.public_key()));
        assert_eq!(files.public_key_hex, hex::encode(&public));

        let sig = key.sign(b"round trip").unwrap();
        crypto::verify(alg, &public, b"round trip", &sig).unwrap();
        assert!(crypto::verify(alg, &public, b"round trap", &sig).is_err());
    }
}

#[test]
fn keygen_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("node");
    let first = keys::keygen(SignatureAlgorithm::Ed25519, &prefix, false).unwrap();
    let err = keys::keygen(SignatureAlgorithm::Ed25519, &prefix, false).unwrap_err();
    assert!(matches!(&err, KeyError::Exists { path } if *path == first.private_key), "{err:?}");
    assert!(err.to_string().contains("node.key.pem") && err.to_string().contains("--force"), "{err}");
    assert_eq!(
        keys::read_private_key(&first.private_key).unwrap().public_key(),
        hex::decode(&first.public_key_hex).unwrap()
    );

    // Only the public half present still refuses: a pair is written as a pair.
    std::fs::remove_file(&first.private_key).unwrap();
    let err = keys::keygen(SignatureAlgorithm::Ed25519, &prefix, false).unwrap_err();
    assert!(matches!(&err, KeyError::Exists { path } if *path == first.public_key), "{err:?}");

    let second = keys::keygen(SignatureAlgorithm::EcdsaP256Sha256, &prefix, true).unwrap();
    assert_ne!(second.public_key_hex, first.public_key_hex);
    assert_eq!(keys::read_private_key(&second.private_key).unwrap().algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
}

#[cfg(unix)]
#[test]
fn private_key_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("node");
    let files = keys::keygen(SignatureAlgorithm::Ed25519, &prefix, false).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.private_key), 0o600);

    // Overwriting a world-readable file leaves it owner-only too.
    std::fs::set_permissions(&files.private_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let files = keys::keygen(SignatureAlgorithm::Ed25519, &prefix, true).unwrap();
    assert_eq!(mode(&files.private_key), 0o600);
}

#[test]
fn public_key_pem_is_standard_spki() {
    let dir = tempfile::tempdir().unwrap();
    let ed = keys::keygen(SignatureAlgorithm::Ed25519, &dir.path().join("ed"), false).unwrap();
    let ec = keys::keygen(SignatureAlgorithm::EcdsaP256Sha256, &dir.path().join("ec"), false).unwrap();

    // RFC 8410 and RFC 5480 encodings, byte for byte.
    let ed_der = spki_der(&ed.public_key);
    assert_eq!(ed_der.len(), 44);
    assert_eq!(hex::encode(&ed_der[..12]), "302a300506032b6570032100");
    assert_eq!(hex::encode(&ed_der[12..]), ed.public_key_hex);
    let ec_der = spki_der(&ec.public_key);
    assert_eq!(ec_der.len(), 91);
    assert_eq!(hex::encode(&ec_der[..26]), "3059301306072a8648ce3d020106082a8648ce3d030107034200");
    assert_eq!(hex::encode(&ec_der[26..]), ec.public_key_hex);
    let pem = std::fs::read_to_string(&ec.public_key).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n") && pem.ends_with("-----END PUBLIC KEY-----\n"));
    assert!(pem.lines().all(|l| l.len() <= 64));
    let (alg, public) = keys::read_public_key(&ec.public_key).unwrap();
    assert_eq!(keys::public_key_pem(alg, &public), pem);

    let Some(openssl) = openssl() else { return };
    for files in [&ed, &ec] {
        // openssl reads our public key and re-encodes it to the same DER.
        let out = Command::new(openssl)
            .args(["pkey", "-pubin", "-in"])
            .arg(&files.public_key)
            .args(["-outform", "DER"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, spki_der(&files.public_key));
        // openssl reads our private key and derives the same public key.
        let out = Command::new(openssl).args(["pkey", "-in"]).arg(&files.private_key).arg("-pubout").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), std::fs::read_to_string(&files.public_key).unwrap());
    }
    // And we read keys openssl made.
    for (name, args) in [
        ("ossl-ed", &["-algorithm", "ed25519"][..]),
        ("ossl-ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..]),
    ] {
        let key = dir.path().join(format!("{name}.key.pem"));
        let public = dir.path().join(format!("{name}.pub.pem"));
        assert!(Command::new(openssl).arg("genpkey").args(args).arg("-out").arg(&key).status().unwrap().success());
        let status =
            Command::new(openssl).args(["pkey", "-in"]).arg(&key).arg("-pubout").arg("-out").arg(&public).status();
        assert!(status.unwrap().success());
        let signing = keys::read_private_key(&key).unwrap();
        let (alg, pk) = keys::read_public_key(&public).unwrap();
        assert_eq!((alg, pk.as_slice()), (signing.algorithm(), signing.public_key()));
    }
}

struct Pki {
    anchor_id: NodeId,
    anchor_key: SigningKey,
    anchors: TrustAnchors,
}

fn pki() -> Pki {
    let anchor_key = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut onem2m_sa::rng::SystemRng).unwrap();
    let anchor_id = id("/trust-anchor");
    let mut anchors = TrustAnchors::new();
    anchors.add(anchor_id.clone(), anchor_key.algorithm(), anchor_key.public_key().to_vec());
    Pki { anchor_id, anchor_key, anchors }
}

fn request(pki: &Pki, subject: &SigningKey) -> IssueRequest {
    IssueRequest {
        anchor_id: pki.anchor_id.clone(),
        anchor_key: pki.anchor_key.clone(),
        subject: id("/id-in"),
        subject_key: (subject.algorithm(), subject.public_key().to_vec()),
        allow: vec!["/id-in".parse().unwrap(), "C*".parse().unwrap()],
        except: Vec::new(),
        not_before: NOW - DAY,
        not_after: NOW + 30 * DAY,
        max_sa_lifetime_secs: Some(3600),
        description: Some("test CSE".into()),
    }
}

#[test]
fn issue_read_verify() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    for alg in BOTH {
        let node = SigningKey::generate(alg, &mut onem2m_sa::rng::SystemRng).unwrap();
        let ticket = keys::issue_ticket(&request(&pki, &node)).unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, ticket.to_json() + "\n").unwrap();
        let read = keys::read_ticket(&path).unwrap();
        assert_eq!(read, ticket);
        let verified = pki.anchors.verify(&read, &id("/id-in"), NOW).unwrap();
        assert_eq!(verified.public_key(), node.public_key());
        assert!(verified.authorize("Csensor").is_ok() && verified.authorize("/id-mn").is_err());
        assert_eq!(read.context.max_sa_lifetime_secs, Some(3600));
        assert_eq!(read.context.description.as_deref(), Some("test CSE"));
    }
}

#[test]
fn issue_refuses_nonsense() {
    let pki = pki();
    let node = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut onem2m_sa::rng::SystemRng).unwrap();
    let mut req = request(&pki, &node);
    req.allow.clear();
    assert!(keys::issue_ticket(&req).unwrap_err().to_string().contains("no allowed originator"));
    let mut req = request(&pki, &node);
    req.not_after = req.not_before;
    assert!(keys::issue_ticket(&req).unwrap_err().to_string().contains("empty validity window"));
    let mut req = request(&pki, &node);
    req.subject_key.1.pop();
    assert!(matches!(keys::issue_ticket(&req), Err(KeyError::Issue(_))));
}

#[test]
fn inspect_reports_validity_and_signature() {
    let pki = pki();
    let node = SigningKey::generate(SignatureAlgorithm::EcdsaP256Sha256, &mut onem2m_sa::rng::SystemRng).unwrap();
    let ticket = keys::issue_ticket(&request(&pki, &node)).unwrap();

    let text = keys::inspect_ticket(&ticket, Some(&pki.anchors), NOW);
    for expected in [
        "/id-in",
        "/trust-anchor",
        "ES256",
        &hex::encode(node.public_key()),
        &keys::key_fingerprint(node.public_key()),
        "/id-in, C*",
        "3600 s",
        "test CSE",
        "valid for 30 days",
        "verified",
        &hex::encode(ticket.digest()),
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(keys::key_fingerprint(node.public_key()).starts_with("sha256:"));

    let expired = keys::inspect_ticket(&ticket, Some(&pki.anchors), NOW + 33 * DAY);
    assert!(expired.contains("expired (3 days ago)"), "{expired}");
    assert!(expired.contains("verified"), "an expired ticket can still carry a good signature:\n{expired}");
    assert!(!text.contains("warning:"), "issued with CAdmin excepted:\n{text}");
    assert!(text.contains(&format!("{:<16}CAdmin", "except:")), "{text}");
    // A ticket from before exceptions: C* covers the CSE administrator, and inspect says so.
    let mut old = ticket.clone();
    old.context.except.clear();
    let warned = keys::inspect_ticket(&old, None, NOW);
    assert!(warned.contains(&format!("{:<16}a wildcard covers CAdmin", "warning:")), "{warned}");
    let early = keys::inspect_ticket(&ticket, None, NOW - 5 * DAY);
    assert!(early.contains("not yet valid (starts in 4 days)"), "{early}");
    assert!(early.contains("not checked"), "{early}");

    // The same anchor ID with another key: the signature does not verify.
    let mut impostor = TrustAnchors::new();
    let other = SigningKey::generate(SignatureAlgorithm::Ed25519, &mut onem2m_sa::rng::SystemRng).unwrap();
    impostor.add(pki.anchor_id.clone(), other.algorithm(), other.public_key().to_vec());
    let bad = keys::inspect_ticket(&ticket, Some(&impostor), NOW);
    assert!(bad.contains("FAILED") && bad.contains("signature does not verify"), "{bad}");

    // A tampered ticket, against the right anchor.
    let mut tampered: Ticket = ticket.clone();
    tampered.context.originators.push(OriginatorPattern::try_from("*".to_owned()).unwrap());
    let bad = keys::inspect_ticket(&tampered, Some(&pki.anchors), NOW);
    assert!(bad.contains("signature does not verify"), "{bad}");

    let mut strangers = TrustAnchors::new();
    strangers.add(id("/other-anchor"), other.algorithm(), other.public_key().to_vec());
    let unknown = keys::inspect_ticket(&ticket, Some(&strangers), NOW);
    assert!(unknown.contains("not a trust anchor"), "{unknown}");
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.key.pem");
    let err = keys::read_private_key(&missing).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }) && err.to_string().contains(&*missing.to_string_lossy()), "{err}");

    let files = keys::keygen(SignatureAlgorithm::Ed25519, &dir.path().join("n"), false).unwrap();
    let err = keys::read_private_key(&files.public_key).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("n.pub.pem") && msg.contains("this is a public key"), "{msg}");
    let err = keys::read_public_key(&files.private_key).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("n.key.pem") && msg.contains("this is a private key"), "{msg}");

    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"v\":1}").unwrap();
    let msg = keys::read_ticket(&junk).unwrap_err().to_string();
    assert!(msg.contains("junk.json") && msg.contains("malformed ticket"), "{msg}");

    let garbled = dir.path().join("garbled.pem");
    std::fs::write(&garbled, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let msg = keys::read_private_key(&garbled).unwrap_err().to_string();
    assert!(msg.contains("garbled.pem") && msg.contains("not a PKCS#8"), "{msg}");
    std::fs::write(&garbled, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n").unwrap();
    let msg = keys::read_public_key(&garbled).unwrap_err().to_string();
    assert!(msg.contains("garbled.pem") && msg.contains("malformed Ed25519"), "{msg}");

    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 70 * 1024]).unwrap();
    assert!(keys::read_ticket(&big).unwrap_err().to_string().contains("big.json"));
}

/// The CLI as the binary embeds it.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    Keygen(KeygenArgs),
    #[command(subcommand)]
    Ticket(TicketCommand),
}

fn cli(args: &[&str]) -> Top {
    Cli::try_parse_from(std::iter::once("onem2m-sa").chain(args.iter().copied())).unwrap().command
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cli_keygen_issue_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| -> PathBuf { dir.path().join(name) };
    let Top::Keygen(k) = cli(&["keygen", "--out", s(&at("anchor"))]) else { panic!() };
    assert_eq!(SignatureAlgorithm::from(k.algorithm), SignatureAlgorithm::Ed25519);
    keys::run_keygen(&k).unwrap();
    let Top::Keygen(k) = cli(&["keygen", "--algorithm", "es256", "--out", s(&at("node"))]) else { panic!() };
    keys::run_keygen(&k).unwrap();
    assert!(keys::run_keygen(&k).is_err(), "no overwrite without --force");

    let Top::Ticket(issue) = cli(&[
        "ticket",
        "issue",
        "--anchor-key",
        s(&at("anchor.key.pem")),
        "--anchor-id",
        "/trust-anchor",
        "--subject",
        "/id-in",
        "--subject-key",
        s(&at("node.pub.pem")),
        "--days",
        "10",
        "--out",
        s(&at("node.ticket.json")),
    ]) else {
        panic!()
    };
    keys::run_ticket(&issue).unwrap();
    let ticket = keys::read_ticket(&at("node.ticket.json")).unwrap();
    assert_eq!(ticket.subject, id("/id-in"));
    assert_eq!(ticket.algorithm, SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(ticket.context.originators, vec!["/id-in".parse::<OriginatorPattern>().unwrap()], "default --allow");
    assert!((10 * DAY..=10 * DAY + 600).contains(&(ticket.not_after - ticket.not_before)));

    let inspect = |anchor_pub: &Path| {
        let Top::Ticket(cmd) = cli(&[
            "ticket",
            "inspect",
            s(&at("node.ticket.json")),
            "--anchor-key-pub",
            s(anchor_pub),
            "--anchor-id",
            "/trust-anchor",
        ]) else {
            panic!()
        };
        keys::run_ticket(&cmd)
    };
    inspect(&at("anchor.pub.pem")).unwrap();
    let err = inspect(&at("node.pub.pem")).unwrap_err().to_string();
    assert!(err.contains("node.ticket.json") && err.contains("signature does not verify"), "{err}");
    let Top::Ticket(plain) = cli(&["ticket", "inspect", s(&at("node.ticket.json"))]) else { panic!() };
    keys::run_ticket(&plain).unwrap();

    // --anchor-key-pub and --anchor-id go together; --allow is repeatable and checked.
    let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("onem2m-sa").chain(args.iter().copied()));
    assert!(parse(&["ticket", "inspect", "t.json", "--anchor-id", "/a"]).is_err());
    let base = ["ticket", "issue", "--anchor-key", "a", "--anchor-id", "/a", "--subject", "/s", "--subject-key", "k"];
    let Ok(Cli { command: Top::Ticket(TicketCommand::Issue(a)) }) =
        parse(&[&base[..], &["--allow", "C*", "--allow", "/s"][..]].concat())
    else {
        panic!()
    };
    assert_eq!(a.allow.len(), 2);
    assert_eq!(a.days, 365);
    assert!(parse(&[&base[..], &["--allow", "a*b"][..]].concat()).is_err());
    assert!(parse(&[&base[..], &["--days", "0"][..]].concat()).is_err());
    assert!(matches!(TrustAnchors::new().verify(&ticket, &id("/id-in"), NOW), Err(TicketError::UnknownIssuer)));
}
