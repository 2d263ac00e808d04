//! Two M2M Nodes in one process run the whole SA lifecycle with every suite: establish (two
//! round trips, mutual authorization), update the keys, update the identifier, remove. The
//! flows go over an in-memory link; the demo prints each message and what it cost.

use std::time::Instant;

use onem2m_sa::Now;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::AcceptAll;
use onem2m_sa::flows::*;
use onem2m_sa::manage::{Exchange, InitiatorEvent, InitiatorSam, Limits, ResponderEvent, ResponderSam, Timing};
use onem2m_sa::message::Message;
use onem2m_sa::rng::SystemRng;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};

fn kind(bytes: &[u8]) -> &'static str {
    match Message::decode(bytes) {
        Ok(Message::Init(_)) => "SaInit",
        Ok(Message::InitReply(_)) => "SaInitReply",
        Ok(Message::Auth(_)) => "SaAuth",
        Ok(Message::AuthReply(_)) => "SaAuthReply",
        Ok(Message::Control(_)) => "ControlEnvelope (sealed)",
        Ok(Message::ControlError(_)) => "ControlError",
        Ok(Message::Cookie(_)) => "SaCookie",
        Err(_) => "?",
    }
}

/// Runs one Initiator exchange to its end; returns the final event and the bytes on the wire.
fn run(ini: &mut InitiatorSam, rsp: &mut ResponderSam, mut ex: Exchange, now: Now) -> (InitiatorEvent, usize) {
    let mut rng = SystemRng;
    let mut bytes = 0;
    loop {
        println!("    I → R  {:>5} B  {}", ex.bytes.len(), kind(&ex.bytes));
        let out = rsp.handle(&ex.bytes, now, &mut rng, &mut AcceptAll);
        for e in &out.events {
            match e {
                ResponderEvent::SaEstablishmentComplete(c) => {
                    println!("           responder agent: SA Establishment Complete {:?}", c.result)
                }
                ResponderEvent::SaUpdated(u) => println!("           responder agent: SA Updated {:?}", u.operation),
                ResponderEvent::SaRemoved(r) => println!("           responder agent: SA Removed {}", r.sa_id),
                ResponderEvent::InitiateSaReceived(req, c) => {
                    println!("           responder agent: Initiate SA Received from {} → {:?}", req.initiator, c.result)
                }
                _ => {}
            }
        }
        let reply = out.reply.expect("the responder answers");
        println!("    R → I  {:>5} B  {}", reply.len(), kind(&reply));
        bytes += ex.bytes.len() + reply.len();
        match ini.handle_response(ex.id, &reply, now, &mut rng).into_iter().next().expect("an event") {
            InitiatorEvent::Transmit(next) => ex = next,
            done => return (done, bytes),
        }
    }
}

fn main() {
    let mut rng = SystemRng;
    let now = Now::new(0, std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let asn = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["/id-asn", "C*"], &mut rng);
    let cse = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    println!("trust anchor {} issued tickets to {} and {}\n", pki.anchor_id, asn.node_id, cse.node_id);

    let mut failures = 0;
    for suite in Suite::ALL {
        println!("== {}", suite.name());
        let mut ini =
            InitiatorSam::new(initiator_config(asn.clone(), pki.anchors.clone(), &[suite]), Timing::default());
        let mut rsp = ResponderSam::new(
            responder_config(cse.clone(), pki.anchors.clone(), &Suite::ALL),
            Timing::default(),
            Limits::default(),
        );
        let req = InitiateSaRequest { initiator: asn.node_id.clone(), responder: cse.node_id.clone() };

        let t = Instant::now();
        let ex = ini.initiate(&req, now, &mut rng).expect("starts");
        let (event, bytes) = run(&mut ini, &mut rsp, ex, now);
        let InitiatorEvent::Established { confirm, .. } = event else {
            println!("  establishment FAILED: {event:?}");
            failures += 1;
            continue;
        };
        let sa_id = confirm.security_association.unwrap().sa_id;
        println!("  established SA {sa_id} in {:?}, {bytes} bytes on the wire\n", t.elapsed());

        let mut later = now;
        for op in [UpdateOperation::Keys, UpdateOperation::IdentifierAndKeys] {
            // The Responder refuses key updates closer than a second apart.
            later = later.after_ms(5_000);
            let id = ini.sas().next().unwrap().sa.sa_id;
            let t = Instant::now();
            let ex =
                ini.update(&UpdateSaRequest { existing_sa_id: id, operation: op }, later, &mut rng).expect("starts");
            let (event, _) = run(&mut ini, &mut rsp, ex, later);
            match event {
                InitiatorEvent::Updated { confirm: c, .. } if c.result == UpdateResult::Accepted => println!(
                    "  Update SA {op:?}: accepted in {:?}, now SA {}, key epoch {}\n",
                    t.elapsed(),
                    c.new_sa_id.unwrap_or(id),
                    ini.sas().next().unwrap().sa.keys.epoch
                ),
                other => {
                    println!("  Update SA {op:?} FAILED: {other:?}");
                    failures += 1;
                }
            }
        }
        let later = later.after_ms(5_000);
        let id = ini.sas().next().unwrap().sa.sa_id;
        let ex = ini.remove(&RemoveSaRequest(RemovalRequest { sa_id: id }), later).expect("starts");
        let (event, _) = run(&mut ini, &mut rsp, ex, later);
        println!("  Remove SA: {event:?}\n");
    }
    if failures > 0 {
        eprintln!("{failures} failure(s)");
        std::process::exit(1);
    }
}
