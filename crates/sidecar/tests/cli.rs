//! The `onem2m-sa` binary as a user meets it.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_onem2m-sa"))
}

#[test]
fn help_lists_every_command() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["sidecar", "keygen", "ticket", "sa", "demo", "onem2m-sa demo"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}

#[test]
fn the_demo_runs_and_reports_json() {
    let out = bin().args(["demo", "--contents", "5", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["sas_established"], 2);
    assert_eq!(report["notifications_received"], 5);
    assert_eq!(report["failures"].as_array().unwrap().len(), 0);
    assert_eq!(report["plaintext_refused_with"], 4107);
}

#[test]
fn a_bad_config_names_the_key_and_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[node]\nid = \"/id-in\"\nkey = \"k.pem\"\nticket = \"t.json\"\n\n[ingress.http]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let out = bin().args(["sidecar", "--config"]).arg(&path).arg("--check").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:"), "{err}");
}

#[test]
fn sa_list_without_a_sidecar_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = bin().args(["sa", "list", "--admin"]).arg(port.to_string()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin endpoint"));
}

#[test]
fn check_prints_the_warnings_and_require_sa_false_fails_with_the_migration() {
    use onem2m_sa::crypto::SignatureAlgorithm;
    use onem2m_sa_sidecar::keys::{self, IssueRequest};
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    keys::keygen(SignatureAlgorithm::Ed25519, &path("anchor"), false).unwrap();
    keys::keygen(SignatureAlgorithm::Ed25519, &path("id-in"), false).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ticket = keys::issue_ticket(&IssueRequest {
        anchor_id: "/trust-anchor".parse().unwrap(),
        anchor_key: keys::read_private_key(&path("anchor.key.pem")).unwrap(),
        subject: "/id-in".parse().unwrap(),
        subject_key: keys::read_public_key(&path("id-in.pub.pem")).unwrap(),
        allow: vec!["/id-in".parse().unwrap()],
        except: Vec::new(),
        not_before: now - 60,
        not_after: now + 3600,
        max_sa_lifetime_secs: None,
        description: None,
    })
    .unwrap();
    std::fs::write(path("id-in.ticket.json"), ticket.to_json()).unwrap();
    let config = |require_sa: &str| {
        format!(
            "[node]\nid = \"/id-in\"\nkey = \"id-in.key.pem\"\nticket = \"id-in.ticket.json\"\n\n\
             [[trust_anchor]]\nid = \"/trust-anchor\"\npublic_key = \"anchor.pub.pem\"\n\n\
             [ingress]\nupstream = \"http://127.0.0.1:8080\"\nrequire_sa = {require_sa}\n\
             [ingress.http]\nlisten = \"127.0.0.1:8443\"\n"
        )
    };
    std::fs::write(path("sidecar.toml"), config("true")).unwrap();
    let out = bin().args(["sidecar", "--config"]).arg(path("sidecar.toml")).arg("--check").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: ") && err.contains("sidecar.toml:12: ingress.require_sa: deprecated"), "{err}");
    std::fs::write(path("sidecar.toml"), config("false")).unwrap();
    let out = bin().args(["sidecar", "--config"]).arg(path("sidecar.toml")).arg("--check").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sidecar.toml:12: ingress.require_sa: ") && err.contains("allow_plaintext_from"), "{err}");
}

/// `ticket issue` checks the signature it has just made, as a peer will, and shows what the
/// ticket allows: the AE host's recipe of the README, with `CAdmin` excepted from `C*`.
#[test]
fn ticket_issue_verifies_what_it_signed_and_excepts_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    for prefix in ["anchor", "ae-host"] {
        let out = bin().args(["keygen", "--out"]).arg(path(prefix)).output().unwrap();
        assert!(out.status.success());
    }
    let out = bin()
        .args(["ticket", "issue", "--anchor-key"])
        .arg(path("anchor.key.pem"))
        .args(["--anchor-id", "/trust-anchor", "--subject", "/id-ae-host", "--subject-key"])
        .arg(path("ae-host.pub.pem"))
        .args(["--allow", "C*", "--allow", "S*", "--allow", "", "--out"])
        .arg(path("ae-host.ticket.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("verified (issuer /trust-anchor)"), "{stdout}");
    assert!(!stdout.contains("not checked"), "{stdout}");
    assert!(stdout.contains("C*, S*, \"\" (no originator)"), "{stdout}");
    assert!(stdout.contains("except:") && stdout.contains("CAdmin"), "{stdout}");
    let ticket = onem2m_sa_sidecar::keys::read_ticket(&path("ae-host.ticket.json")).unwrap();
    assert!(ticket.context.covers("") && ticket.context.covers("Cxyz") && !ticket.context.covers("CAdmin"));

    // Named explicitly, the administrator is granted.
    let out = bin()
        .args(["ticket", "issue", "--anchor-key"])
        .arg(path("anchor.key.pem"))
        .args(["--anchor-id", "/trust-anchor", "--subject", "/id-ops", "--subject-key"])
        .arg(path("ae-host.pub.pem"))
        .args(["--allow", "C*", "--allow", "CAdmin"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ticket = onem2m_sa::credential::Ticket::from_json(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(ticket.context.covers("CAdmin") && ticket.context.except.is_empty());
}

/// Logs written to a pipe (a file, a journal) carry no ANSI colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let out = bin().args(["demo", "--contents", "1", "--json"]).env("RUST_LOG", "info").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sidecar started"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

/// SIGHUP reloads the config file; a broken one is refused with its error and the sidecar runs on.
#[cfg(unix)]
#[test]
fn sighup_reloads_and_a_broken_file_is_refused() {
    use std::io::BufRead;
    use std::sync::mpsc;
    use std::time::Duration;

    use onem2m_sa::crypto::SignatureAlgorithm;
    use onem2m_sa_sidecar::keys::{self, IssueRequest};
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    keys::keygen(SignatureAlgorithm::Ed25519, &path("anchor"), false).unwrap();
    keys::keygen(SignatureAlgorithm::Ed25519, &path("id-in"), false).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ticket = keys::issue_ticket(&IssueRequest {
        anchor_id: "/trust-anchor".parse().unwrap(),
        anchor_key: keys::read_private_key(&path("anchor.key.pem")).unwrap(),
        subject: "/id-in".parse().unwrap(),
        subject_key: keys::read_public_key(&path("id-in.pub.pem")).unwrap(),
        allow: vec!["/id-in".parse().unwrap()],
        except: Vec::new(),
        not_before: now - 60,
        not_after: now + 3600,
        max_sa_lifetime_secs: None,
        description: None,
    })
    .unwrap();
    std::fs::write(path("id-in.ticket.json"), ticket.to_json()).unwrap();
    let config = "[node]\nid = \"/id-in\"\nkey = \"id-in.key.pem\"\nticket = \"id-in.ticket.json\"\n\n\
                  [[trust_anchor]]\nid = \"/trust-anchor\"\npublic_key = \"anchor.pub.pem\"\n\n\
                  [ingress]\nupstream = \"http://127.0.0.1:8080\"\n[ingress.http]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(path("sidecar.toml"), config).unwrap();
    let mut child = bin()
        .args(["sidecar", "--config"])
        .arg(path("sidecar.toml"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| -> String {
        loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no {needle:?} logged"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    let hangup = || {
        let status = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
    };
    wait_for("sidecar started");
    hangup();
    wait_for("configuration reloaded");
    std::fs::write(path("sidecar.toml"), config.replace("[ingress.http]", "[ingress.http")).unwrap();
    hangup();
    let refused = wait_for("reload refused");
    assert!(refused.contains("sidecar.toml:"), "{refused}");
    assert_eq!(child.try_wait().unwrap(), None, "still running");
    child.kill().unwrap();
    child.wait().unwrap();
}
