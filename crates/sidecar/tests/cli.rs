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
