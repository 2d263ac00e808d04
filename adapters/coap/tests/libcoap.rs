//! Interop: libcoap's `coap-client` (Debian `libcoap3-bin`) against this server: CRUD,
//! block-wise both ways, NON. Skipped with a note when `coap-client-notls` is not installed,
//! unless `ONEM2M_REQUIRE_LIBCOAP` is set (CI installs it and sets it).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{server_config, start};

const CLIENT: &str = "coap-client-notls";

fn available() -> bool {
    let found = Command::new(CLIENT).arg("-h").output().is_ok();
    if !found {
        assert!(std::env::var_os("ONEM2M_REQUIRE_LIBCOAP").is_none(), "{CLIENT} is required but not installed");
        eprintln!("skipped: {CLIENT} not installed (apt-get install -y libcoap3-bin)");
    }
    found
}

/// Runs coap-client with `args` and the oneM2M options of a request from `Cae1` with `rqi`;
/// returns its PDU log (verbosity 7).
///
/// coap-client logs every answer, then rejects it: the oneM2M options are critical (odd numbers,
/// TS-0008 Table 6.2.2.4.0-1) and RFC 7252 §5.4.1 makes a client reject a response with a
/// critical option it does not know. So the checks read the log, and a Block2 answer stops at
/// its first block (`-B 1`: give up one second after that).
async fn coap_client(rqi: &str, args: &[&str]) -> String {
    let mut all: Vec<String> =
        ["-v", "7", "-B", "1", "-O", "279,Cae1", "-O", "271,3"].iter().map(|s| s.to_string()).collect();
    all.push("-O".into());
    all.push(format!("283,{rqi}"));
    all.extend(args.iter().map(|s| s.to_string()));
    let output = tokio::task::spawn_blocking(move || Command::new(CLIENT).args(&all).output().unwrap()).await.unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_client_crud_block_wise_and_non() {
    if !available() {
        return;
    }
    let server = start(server_config(), Duration::ZERO).await;
    let base = format!("coap://127.0.0.1:{}", server.addr.port());

    let log = coap_client("lc-get", &[&format!("{base}/~/id-in/cse-in/ae1/cnt1/la")]).await;
    assert!(log.contains(r#"t:ACK c:2.05"#) && log.contains(r#"'{"m2m:cin":{"con":"21.5"}}'"#), "{log}");
    assert!(log.contains(r"307:\x07\xD0"), "oneM2M-RSC 2000: {log}");
    assert_eq!(server.calls("lc-get"), 1);

    let post = ["-m", "post", "-t", "50", "-O", "267,0x03", "-e", r#"{"m2m:cnt":{"rn":"c"}}"#];
    let log = coap_client("lc-post", &[&post[..], &[&format!("{base}/cse-in/ae1")]].concat()).await;
    assert!(log.contains("t:ACK c:2.01"), "{log}");
    assert!(log.contains("Location-Path:cse-in, Location-Path:ae1, Location-Path:new"), "{log}");
    assert_eq!(server.calls("lc-post"), 1);

    let log = coap_client("lc-non", &["-N", &format!("{base}/cse-in/ae1")]).await;
    assert!(log.contains("t:NON c:GET") && log.contains("t:NON c:2.05"), "{log}");
    assert_eq!(server.calls("lc-non"), 1);

    let log = coap_client("lc-big", &[&format!("{base}/cse-in/big")]).await;
    assert!(log.contains("c:2.05") && log.contains("Block2:0/M/1024") && log.contains("Size2:5022"), "{log}");
    assert_eq!(server.calls("lc-big"), 1);

    let big = format!(r#"{{"m2m:cnt":{{"lbl":["{}"]}}}}"#, "q".repeat(3000));
    let file = std::env::temp_dir().join(format!("coap-block1-{}.json", std::process::id()));
    std::fs::write(&file, &big).unwrap();
    let put = ["-m", "put", "-t", "50", "-b", "64", "-f", file.to_str().unwrap()];
    let log = coap_client("lc-put", &[&put[..], &[&format!("{base}/cse-in/cnt")]].concat()).await;
    let _ = std::fs::remove_file(&file);
    let continues = log.matches("c:2.31").count();
    assert!(continues >= big.len() / 64, "{continues} × 2.31: {log}");
    assert!(log.contains("t:ACK c:2.04"), "{log}");
    assert_eq!(server.calls("lc-put"), 1);

    let log = coap_client("lc-del", &["-m", "delete", &format!("{base}/cse-in/cnt")]).await;
    assert!(log.contains("t:ACK c:2.02"), "{log}");
    assert_eq!(server.calls("lc-del"), 1);
    server.stop().await;
}
