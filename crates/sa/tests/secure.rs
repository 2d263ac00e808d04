//! Send / Receive Secure Message: seal and open with every suite in both encodings, tampering,
//! reflection, concurrent senders and receivers, usage limits, key epochs and removal.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use onem2m_primitive::ResponseStatusCode as Rsc;
use onem2m_sa::crypto::Suite;
use onem2m_sa::flows::*;
use onem2m_sa::manage::InitiatorEvent;
use onem2m_sa::secure::*;
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::testkit::{Pair, linked};
use onem2m_sa::{Now, SaId};

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };
const REQUEST: &[u8] = br#"{"op":2,"to":"/id-in/cse-base","fr":"CAE01","rqi":"r-1","rvi":"3"}"#;

struct Link {
    pair: Pair,
    ti: Arc<SaTable>,
    tr: Arc<SaTable>,
    sa_id: SaId,
}

fn link_with(suite: Suite, config: TableConfig) -> Link {
    let l = linked(suite, config, 21, T0);
    Link { pair: l.pair, ti: l.initiator_table, tr: l.responder_table, sa_id: l.sa_id }
}

fn link(suite: Suite) -> Link {
    link_with(suite, TableConfig::default())
}

fn decode<'a>(encoding: Encoding, wire: &'a mut [u8], scratch: &'a mut Vec<u8>) -> Result<Sealed<'a>, SecureError> {
    match encoding {
        Encoding::Compact => decode_compact(wire),
        Encoding::Jwe => decode_jwe(wire, scratch),
    }
}

/// Opens `wire` at `entry` (a copy, so the caller's bytes stay intact).
fn open_at(entry: &SaEntry, encoding: Encoding, wire: &[u8]) -> Result<Vec<u8>, SecureError> {
    let mut copy = wire.to_vec();
    let mut scratch = Vec::new();
    let sealed = decode(encoding, &mut copy, &mut scratch)?;
    entry.open(sealed).map(|(p, _)| p.to_vec())
}

#[test]
fn round_trip_every_suite_both_encodings_both_directions() {
    for suite in Suite::ALL {
        let l = link(suite);
        let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
        for encoding in [Encoding::Jwe, Encoding::Compact] {
            let mut wire = Vec::new();
            let info = ei.seal(encoding, REQUEST, &mut wire).unwrap();
            assert!(!wire.windows(REQUEST.len()).any(|w| w == REQUEST), "plaintext visible on the wire");
            let mut scratch = Vec::new();
            let mut copy = wire.clone();
            let sealed = decode(encoding, &mut copy, &mut scratch).unwrap();
            assert_eq!((sealed.header.sa_id, sealed.header.seq, sealed.encoding), (l.sa_id, info.seq, encoding));
            let (plain, epoch) = er.open(sealed).unwrap();
            assert_eq!(plain, REQUEST, "{suite} {encoding:?}");
            // The answer goes back under the same SA and epoch, with the other direction's key.
            let mut reply = Vec::new();
            er.seal_with(&epoch, encoding, b"{\"rsc\":2000}", &mut reply).unwrap();
            assert_eq!(open_at(&ei, encoding, &reply).unwrap(), b"{\"rsc\":2000}");
        }
    }
}

#[test]
fn tampering_with_any_byte_is_rejected() {
    for suite in [Suite::X25519_AES128GCM_SHA256, Suite::X25519_AES256GCM_SHA384] {
        let l = link(suite);
        let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
        for encoding in [Encoding::Compact, Encoding::Jwe] {
            let mut wire = Vec::new();
            ei.seal(encoding, REQUEST, &mut wire).unwrap();
            for i in 0..wire.len() {
                for flip in [0x01u8, 0x80] {
                    let mut bad = wire.clone();
                    bad[i] ^= flip;
                    assert!(open_at(&er, encoding, &bad).is_err(), "{encoding:?}: byte {i} ^ {flip:#x} accepted");
                }
            }
            // Truncation anywhere.
            for len in 0..wire.len() {
                assert!(open_at(&er, encoding, &wire[..len]).is_err(), "{encoding:?}: truncated to {len} accepted");
            }
            // The untouched message still opens: no forgery moved the window.
            assert_eq!(open_at(&er, encoding, &wire).unwrap(), REQUEST);
        }
    }
}

#[test]
fn reflection_and_replay_fail() {
    let l = link(Suite::X25519_AES128GCM_SHA256);
    let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
    for encoding in [Encoding::Compact, Encoding::Jwe] {
        let mut wire = Vec::new();
        ei.seal(encoding, REQUEST, &mut wire).unwrap();
        assert_eq!(open_at(&ei, encoding, &wire), Err(SecureError::BadTag), "a node's own request reflected to it");
        assert!(open_at(&er, encoding, &wire).is_ok());
        let replay = open_at(&er, encoding, &wire).unwrap_err();
        assert_eq!(replay, SecureError::Replayed);
        assert_eq!(replay.rsc(), Rsc::ESPRIM_BAD_MAC);
    }
}

#[test]
fn error_codes_follow_ts_0004() {
    let l = link(Suite::X25519_AES128GCM_SHA256);
    let er = l.tr.get(l.sa_id).unwrap();
    assert_eq!(decode_compact(&mut []).unwrap_err().rsc(), Rsc::BAD_REQUEST);
    let mut unsupported = vec![0xff; 40];
    assert_eq!(decode_compact(&mut unsupported).unwrap_err().rsc(), Rsc::ESPRIM_UNSUPPORTED_OPTION);
    let mut scratch = Vec::new();
    let header = base64_url(br#"{"alg":"RSA-OAEP","enc":"A128GCM","kid":"AAAAAAAAAAA","seq":1}"#);
    let jwe = format!("{header}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(decode_jwe(jwe.as_bytes(), &mut scratch).unwrap_err().rsc(), Rsc::ESPRIM_UNSUPPORTED_OPTION);
    assert_eq!(SecureError::UnknownSa.rsc(), Rsc::ESPRIM_UNKNOWN_KEY_ID);
    assert_eq!(er.authorize("CAE99"), Ok(()));
    assert_eq!(er.authorize("/id-other").unwrap_err().rsc(), Rsc::ESPRIM_IMPERSONATION_ERROR);
    assert_eq!(SecureError::Decryption.rsc(), Rsc::ESPRIM_DECRYPTION_ERROR);
    assert_eq!(SecureError::Encryption.rsc(), Rsc::ESPRIM_ENCRYPTION_ERROR);
    // ESPrim outer content.
    let content = to_notify_content(b"a.b.c.d.e");
    assert_eq!(epo_from_content(&content).unwrap(), "a.b.c.d.e");
    let other_sit = serde_json::json!({"m2m:seci": {"sit": 2, "epo": "x"}});
    assert_eq!(epo_from_content(&other_sit).unwrap_err(), SecureError::UnsupportedAlgorithm);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn concurrent_senders_never_reuse_a_sequence_number() {
    let l = link(Suite::X25519_AES128GCM_SHA256);
    let ei = l.ti.get(l.sa_id).unwrap();
    let seqs = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut out = Vec::new();
                let mut mine = Vec::with_capacity(5_000);
                for _ in 0..5_000 {
                    mine.push(ei.seal(Encoding::Compact, REQUEST, &mut out).unwrap().seq);
                }
                seqs.lock().unwrap().extend(mine);
            });
        }
    });
    let seqs = seqs.into_inner().unwrap();
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 20_000, "a sequence number (so a nonce) was used twice");
    assert_eq!(unique.iter().max(), Some(&19_999));
}

#[test]
fn concurrent_receivers_never_accept_a_message_twice() {
    let l = link(Suite::X25519_AES128GCM_SHA256);
    let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
    let messages: Vec<Vec<u8>> = (0..800)
        .map(|_| {
            let mut out = Vec::new();
            ei.seal(Encoding::Compact, REQUEST, &mut out).unwrap();
            out
        })
        .collect();
    let accepted: Vec<AtomicUsize> = (0..messages.len()).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (er, messages, accepted) = (&er, &messages, &accepted);
            s.spawn(move || {
                // Each thread delivers every message, in its own order.
                for k in 0..messages.len() {
                    let i = (k * (2 * t + 1) + t * 97) % messages.len();
                    if open_at(er, Encoding::Compact, &messages[i]).is_ok() {
                        accepted[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    for (i, a) in accepted.iter().enumerate() {
        assert_eq!(a.load(Ordering::Relaxed), 1, "message {i} accepted {} times", a.load(Ordering::Relaxed));
    }
}

#[test]
fn hard_limit_refuses_and_soft_limit_asks_for_an_update() {
    let limits = UsageLimits { soft_messages: 3, hard_messages: 5, soft_bytes: u64::MAX, hard_bytes: u64::MAX };
    let l = link_with(Suite::X25519_AES128GCM_SHA256, TableConfig { limits, ..TableConfig::default() });
    let ei = l.ti.get(l.sa_id).unwrap();
    let mut out = Vec::new();
    let due: Vec<bool> = (0..5).map(|_| ei.seal(Encoding::Compact, REQUEST, &mut out).unwrap().update_due).collect();
    assert_eq!(due, [false, false, false, true, true]);
    assert!(ei.update_requested());
    for _ in 0..3 {
        assert_eq!(ei.seal(Encoding::Compact, REQUEST, &mut out).unwrap_err(), SecureError::Encryption);
    }
    assert_eq!(ei.current_epoch().unwrap().sent(), 5, "the counter stays saturated at the limit");
    // Bytes count too.
    let limits = UsageLimits { soft_messages: u64::MAX, hard_messages: u64::MAX, soft_bytes: 100, hard_bytes: 150 };
    let l = link_with(Suite::X25519_AES128GCM_SHA256, TableConfig { limits, ..TableConfig::default() });
    let ei = l.ti.get(l.sa_id).unwrap();
    assert!(!ei.seal(Encoding::Compact, &[0; 60], &mut out).unwrap().update_due);
    assert!(ei.seal(Encoding::Compact, &[0; 60], &mut out).unwrap().update_due);
    assert_eq!(ei.seal(Encoding::Compact, &[0; 60], &mut out).unwrap_err(), SecureError::Encryption);
}

fn update_keys(l: &mut Link) {
    l.pair.advance(5_000);
    let ex = l
        .pair
        .initiator
        .update(
            &UpdateSaRequest { existing_sa_id: l.sa_id, operation: UpdateOperation::Keys },
            l.pair.now,
            &mut l.pair.rng,
        )
        .unwrap();
    l.pair.send(ex);
    l.pair.run(100);
    assert!(matches!(l.pair.initiator_events.last(), Some(InitiatorEvent::Updated { confirm, .. })
        if confirm.result == UpdateResult::Accepted));
}

#[test]
fn messages_sealed_before_an_update_open_during_the_grace_period_only() {
    let mut l = link(Suite::X25519_AES128GCM_SHA256);
    let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
    let mut late = Vec::new();
    for encoding in [Encoding::Compact, Encoding::Jwe] {
        let mut out = Vec::new();
        ei.seal(encoding, REQUEST, &mut out).unwrap();
        late.push((encoding, out));
    }
    let mut late_after_grace = Vec::new();
    ei.seal(Encoding::Compact, REQUEST, &mut late_after_grace).unwrap();
    update_keys(&mut l);
    assert_eq!(ei.current_epoch().unwrap().number, 1);
    assert_eq!(er.current_epoch().unwrap().number, 1);
    // New traffic uses the new epoch.
    let mut fresh = Vec::new();
    ei.seal(Encoding::Compact, REQUEST, &mut fresh).unwrap();
    assert_eq!(decode_compact(&mut fresh.clone()).unwrap().header.key_phase, 1);
    assert_eq!(open_at(&er, Encoding::Compact, &fresh).unwrap(), REQUEST);
    // Late messages of epoch 0 still open inside the grace period.
    for (encoding, wire) in &late {
        assert_eq!(open_at(&er, *encoding, wire).unwrap(), REQUEST, "{encoding:?}");
    }
    // After the grace period they are refused.
    l.pair.advance(31_000);
    l.tr.sweep(l.pair.now);
    assert_eq!(open_at(&er, Encoding::Compact, &late_after_grace), Err(SecureError::UnknownSa));
}

#[test]
fn identifier_update_keeps_the_old_identifier_for_the_grace_period() {
    let mut l = link(Suite::X25519_AES128GCM_SHA256);
    let ei = l.ti.get(l.sa_id).unwrap();
    let mut old = Vec::new();
    ei.seal(Encoding::Compact, REQUEST, &mut old).unwrap();
    l.pair.advance(5_000);
    let ex = l
        .pair
        .initiator
        .update(
            &UpdateSaRequest { existing_sa_id: l.sa_id, operation: UpdateOperation::Identifier },
            l.pair.now,
            &mut l.pair.rng,
        )
        .unwrap();
    l.pair.send(ex);
    l.pair.run(100);
    let new_id = ei.sa_id();
    assert_ne!(new_id, l.sa_id);
    let er = l.tr.get(new_id).unwrap();
    assert!(Arc::ptr_eq(&er, &l.tr.get(l.sa_id).unwrap()), "the old identifier resolves to the same SA");
    let mut fresh = Vec::new();
    ei.seal(Encoding::Compact, REQUEST, &mut fresh).unwrap();
    assert_eq!(decode_compact(&mut fresh.clone()).unwrap().header.sa_id, new_id);
    assert!(open_at(&er, Encoding::Compact, &old).is_ok());
    l.pair.advance(31_000);
    l.tr.sweep(l.pair.now);
    assert!(l.tr.get(l.sa_id).is_none());
    assert!(l.tr.get(new_id).is_some());
}

#[test]
fn after_removal_everything_is_refused_and_the_keys_are_dropped() {
    let mut l = link(Suite::X25519_AES128GCM_SHA256);
    let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
    let mut pending = Vec::new();
    ei.seal(Encoding::Compact, REQUEST, &mut pending).unwrap();
    let weak = Arc::downgrade(&er.current_epoch().unwrap());
    let ex = l.pair.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: l.sa_id }), l.pair.now).unwrap();
    l.pair.send(ex);
    l.pair.run(100);
    assert!(l.ti.get(l.sa_id).is_none() && l.tr.get(l.sa_id).is_none());
    let mut out = Vec::new();
    assert_eq!(ei.seal(Encoding::Compact, REQUEST, &mut out), Err(SecureError::UnknownSa));
    assert_eq!(open_at(&er, Encoding::Compact, &pending), Err(SecureError::UnknownSa));
    assert!(weak.upgrade().is_none(), "the epoch's key contexts were freed");
}

#[test]
fn bytes_added_per_message() {
    let l = link(Suite::X25519_AES128GCM_SHA256);
    let ei = l.ti.get(l.sa_id).unwrap();
    let mut out = Vec::new();
    ei.seal(Encoding::Compact, &[0; 256], &mut out).unwrap();
    // 1 (version/phase/suite) + 8 (SA id) + 1 (varint seq < 128) + 16 (tag).
    assert_eq!(out.len() - 256, 26);
    ei.seal(Encoding::Jwe, &[0; 256], &mut out).unwrap();
    assert!(out.len() > 256 * 4 / 3, "the JWE form is base64");
}

#[test]
fn esprim_outer_notify_carries_the_jwe_through_the_primitive_codec() {
    let l = link(Suite::X25519_AES256GCM_SHA384);
    let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
    let mut jwe = Vec::new();
    ei.seal(Encoding::Jwe, REQUEST, &mut jwe).unwrap();
    let outer = outer_notify("/id-in", "/id-asn", "sec-1", &jwe);
    let bytes = outer.to_json_vec().unwrap();
    let back = onem2m_primitive::RequestPrimitive::from_json_slice(&bytes).unwrap();
    back.validate().unwrap();
    assert_eq!(back.op, onem2m_primitive::Operation::Notify);
    let epo = epo_from_content(back.pc.as_ref().unwrap()).unwrap();
    assert_eq!(open_at(&er, Encoding::Jwe, epo.as_bytes()).unwrap(), REQUEST);
    let inner = onem2m_primitive::RequestPrimitive::from_json_slice(REQUEST).unwrap();
    assert_eq!(er.authorize(inner.fr.as_deref().unwrap()), Ok(()));
}

#[test]
fn sweep_expires_sas_with_their_peer_ticket() {
    let l = link(Suite::X25519_AES128GCM_SHA256);
    let er = l.tr.get(l.sa_id).unwrap();
    assert_eq!(l.tr.by_peer(&"/id-asn".parse().unwrap()).len(), 1);
    // The testkit's tickets are valid for a day.
    assert!(l.tr.sweep(Now::new(T0.mono_ms + 1_000, T0.unix_secs + 3_600)).is_empty());
    let expired = l.tr.sweep(Now::new(T0.mono_ms + 2_000, er.expires_unix()));
    assert_eq!(expired, [l.sa_id]);
    assert!(l.tr.get(l.sa_id).is_none());
    assert!(!er.is_active());
    assert!(l.tr.by_peer(&"/id-asn".parse().unwrap()).is_empty());
    let mut out = Vec::new();
    assert_eq!(er.seal(Encoding::Compact, REQUEST, &mut out), Err(SecureError::UnknownSa));
}

#[test]
fn removal_during_an_identifier_grace_period_drops_every_identifier() {
    let mut l = link(Suite::X25519_AES128GCM_SHA256);
    l.pair.advance(5_000);
    let op = UpdateSaRequest { existing_sa_id: l.sa_id, operation: UpdateOperation::Identifier };
    let ex = l.pair.initiator.update(&op, l.pair.now, &mut l.pair.rng).unwrap();
    l.pair.send(ex);
    l.pair.run(100);
    let new_id = l.ti.get(l.sa_id).unwrap().sa_id();
    assert!(l.tr.get(l.sa_id).is_some() && l.tr.get(new_id).is_some());
    let ex = l.pair.initiator.remove(&RemoveSaRequest(RemovalRequest { sa_id: new_id }), l.pair.now).unwrap();
    l.pair.send(ex);
    l.pair.run(100);
    for table in [&l.ti, &l.tr] {
        assert!(table.get(l.sa_id).is_none() && table.get(new_id).is_none());
        assert!(table.is_empty());
    }
}

/// The prepared AEAD keys of an idle SA are released by the sweep and rebuilt by its next
/// message; an SA that carried a message since the last release keeps them; the replay window
/// and sequence numbers are not touched by a release.
#[test]
fn idle_aead_contexts_are_released_and_rebuilt() {
    let config = TableConfig { context_idle_ms: 5_000, ..TableConfig::default() };
    let l = link_with(Suite::X25519_AES256GCM_SHA384, config);
    let (ei, er) = (l.ti.get(l.sa_id).unwrap(), l.tr.get(l.sa_id).unwrap());
    let has = |e: &SaEntry| e.current_epoch().unwrap().has_contexts();
    let exchange = |n: u8| {
        let mut wire = Vec::new();
        let request = [REQUEST, &[b' '; 1][..]].concat().repeat(usize::from(n));
        ei.seal(Encoding::Compact, &request, &mut wire).unwrap();
        let (plain, epoch) = er.open(decode_compact(&mut wire).unwrap()).unwrap();
        assert_eq!(plain, &request[..]);
        let mut reply = Vec::new();
        er.seal_with(&epoch, Encoding::Compact, b"{\"rsc\":2000}", &mut reply).unwrap();
        assert_eq!(open_at(&ei, Encoding::Compact, &reply).unwrap(), b"{\"rsc\":2000}");
        wire
    };
    // Established, no message yet: nothing built.
    assert!(!has(&ei) && !has(&er));
    let first = exchange(1);
    assert!(has(&ei) && has(&er));
    let sweep = |ms: u64| assert!(l.tr.sweep(Now::new(T0.mono_ms + ms, T0.unix_secs)).is_empty());
    let sweep_i = |ms: u64| assert!(l.ti.sweep(Now::new(T0.mono_ms + ms, T0.unix_secs)).is_empty());
    // Not yet time to release: kept, even though idle.
    sweep(1_000);
    assert!(has(&er));
    // The first release finds them used since the start: kept (and the mark cleared).
    sweep(6_000);
    assert!(has(&er));
    // A sweep within the interval does nothing; the next release finds them idle: released.
    sweep(8_000);
    assert!(has(&er));
    sweep(11_000);
    assert!(!has(&er), "idle contexts released");
    assert!(has(&ei), "the other node's table has its own sweep");
    sweep_i(6_000);
    sweep_i(11_000);
    assert!(!has(&ei));
    // The next message rebuilds them; the replay window survived the release.
    exchange(2);
    assert!(has(&ei) && has(&er));
    let mut replayed = first.clone();
    assert_eq!(er.open(decode_compact(&mut replayed).unwrap()).map(|_| ()), Err(SecureError::Replayed));
    // In use between two releases: kept.
    sweep(16_000);
    exchange(3);
    sweep(21_000);
    assert!(has(&er), "used since the last release");
}
