//! Interoperability of the ESPrim JWE (`secure`, TS-0003 §8.4) with an independent JOSE
//! implementation: josekit 0.10, whose AES-GCM is OpenSSL's (ours is aws-lc).
//!
//! For AES-128-GCM and AES-256-GCM:
//! 1. what we seal, josekit opens with `alg` "dir" and the direction key, and reports our `kid`,
//!    `seq` and `kp`; the IV it used is the direction IV XOR the sequence number;
//! 2. what josekit seals with "dir" and the direction key, we open — provided the IV is the
//!    nonce our scheme expects (see [`josekit_sealed_with_iv`] for why that part is built by hand);
//! 3. a josekit object under another key, or with a tampered ciphertext, tag or header, is
//!    refused, and the refusal does not burn its sequence number.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::JoseHeader as _;
use josekit::Value;
use josekit::jwe::enc::aesgcm::AesgcmJweEncryption;
use josekit::jwe::{self, Dir, JweContentEncryption as _, JweHeader};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::InitiateSaRequest;
use onem2m_sa::rng::SeededRng;
use onem2m_sa::secure::{Encoding, SecureError, decode_jwe};
use onem2m_sa::table::{SaEntry, SaTable, TableConfig};
use onem2m_sa::testkit::{Pair, TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};

const SUITES: [Suite; 2] = [Suite::X25519_AES128GCM_SHA256, Suite::X25519_AES256GCM_SHA384];
const REQUEST: &[u8] = br#"{"op":2,"to":"/id-in","fr":"CAE1","rqi":"1","rvi":"3"}"#;
const RESPONSE: &[u8] = br#"{"rsc":2000,"rqi":"1","rvi":"3"}"#;
/// A sequence number the Initiator has not used: its counter starts at 0.
const FRESH_SEQ: u64 = 1000;

/// Both ends of one established SA, with the raw keys an outside JOSE library gets.
struct Link {
    sa_id: SaId,
    /// Initiator side: seals with i2r, opens r2i.
    ei: Arc<SaEntry>,
    /// Responder side: opens i2r, seals r2i.
    er: Arc<SaEntry>,
    i2r_key: Vec<u8>,
    i2r_iv: [u8; 12],
    r2i_key: Vec<u8>,
    r2i_iv: [u8; 12],
}

fn link(suite: Suite) -> Link {
    let mut rng = SeededRng::new([1; 32]);
    let now = Now::new(1_000, 1_800_000_000);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["C*", "/id-asn"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let mut p = Pair::new(
        initiator_config(i, pki.anchors.clone(), &[suite]),
        responder_config(r, pki.anchors.clone(), &Suite::ALL),
        7,
        now,
    );
    let ti = Arc::new(SaTable::new(TableConfig::default()));
    let tr = Arc::new(SaTable::new(TableConfig::default()));
    p.initiator.attach_table(ti.clone());
    p.responder.attach_table(tr.clone());
    let req = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: "/id-in".parse().unwrap() };
    let ex = p.initiator.initiate(&req, p.now, &mut p.rng).unwrap();
    p.send(ex);
    p.run(100);
    let sa_id = p.initiator.sas().next().expect("SA established").sa.sa_id;
    let sa = &p.initiator.sa(sa_id).unwrap().sa;
    assert_eq!(sa.suite, suite, "the offered suite was chosen");
    let keys = &sa.keys;
    assert_eq!(keys.i2r.key().len(), jose_enc(suite).1.key_len());
    Link {
        sa_id,
        ei: ti.get(sa_id).expect("initiator table holds the SA"),
        er: tr.get(sa_id).expect("responder table holds the SA"),
        i2r_key: keys.i2r.key().to_vec(),
        i2r_iv: *keys.i2r.iv(),
        r2i_key: keys.r2i.key().to_vec(),
        r2i_iv: *keys.r2i.iv(),
    }
}

/// The JWE `enc` name and josekit's content encryption for a suite.
fn jose_enc(suite: Suite) -> (&'static str, AesgcmJweEncryption) {
    if suite == Suite::X25519_AES128GCM_SHA256 {
        ("A128GCM", AesgcmJweEncryption::A128gcm)
    } else if suite == Suite::X25519_AES256GCM_SHA384 {
        ("A256GCM", AesgcmJweEncryption::A256gcm)
    } else {
        panic!("not an AES-GCM suite under test: {}", suite.name())
    }
}

/// The nonce the scheme prescribes, computed here rather than by the crate: IV XOR
/// (0u32 ‖ seq as u64 big-endian).
fn expected_nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut pad = [0u8; 12];
    pad[4..].copy_from_slice(&seq.to_be_bytes());
    std::array::from_fn(|i| iv[i] ^ pad[i])
}

fn parts(jwe: &str) -> Vec<&str> {
    let p: Vec<&str> = jwe.split('.').collect();
    assert_eq!(p.len(), 5, "JWE compact has five parts: {jwe}");
    p
}

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

fn b64e(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes and opens `jwe` at `entry`, as a receiver would.
fn open_ours(entry: &SaEntry, jwe: &str) -> Result<Vec<u8>, SecureError> {
    let mut scratch = Vec::new();
    let sealed = decode_jwe(jwe.as_bytes(), &mut scratch)?;
    let (plaintext, _epoch) = entry.open(sealed)?;
    Ok(plaintext.to_vec())
}

/// josekit's decryption of `jwe` with "dir" and `key`, requiring `kid`.
fn josekit_open(jwe: &str, key: &[u8], kid: &str) -> Result<(Vec<u8>, JweHeader), josekit::JoseError> {
    let mut decrypter = Dir.decrypter_from_bytes(key)?;
    decrypter.set_key_id(kid);
    jwe::deserialize_compact(jwe, &decrypter)
}

/// The protected header an outside sender writes: our members, in josekit's order and format.
fn josekit_header(enc: &str, sa_id: SaId, seq: u64) -> JweHeader {
    let mut header = JweHeader::new();
    header.set_content_encryption(enc);
    header.set_key_id(sa_id.to_b64());
    header.set_claim("seq", Some(Value::from(seq))).unwrap();
    header.set_claim("kp", Some(Value::from(0u8))).unwrap();
    header
}

/// josekit's own JWE serialization: "dir" with `key`, and an IV of its choosing.
///
/// josekit 0.10 does not let the caller set the IV of a JWE: `JweContext::serialize_compact`
/// (src/jwe/jwe_context.rs) always draws it with `util::random_bytes(iv_len)`, and the
/// registered `JweContentEncryption` only receives it. So an object from this path carries a
/// random IV, which our receiver must refuse (the IV is not free in our scheme: it is the
/// direction IV XOR `seq`).
fn josekit_sealed(suite: Suite, key: &[u8], sa_id: SaId, seq: u64, payload: &[u8]) -> String {
    let header = josekit_header(jose_enc(suite).0, sa_id, seq);
    jwe::serialize_compact(payload, &header, &Dir.encrypter_from_bytes(key).unwrap()).unwrap()
}

/// The same object as [`josekit_sealed`] would be with the IV our scheme expects: josekit's
/// protected header bytes, josekit's AES-GCM (`AesgcmJweEncryption::encrypt`, i.e.
/// `openssl::symm::encrypt_aead`) with AAD = the ASCII of the base64url header (RFC 7516 §5.1
/// step 14), assembled into the compact form by hand.
/// `direction_iv` is the direction's IV; the JWE IV is the nonce for `seq`.
fn josekit_sealed_with_iv(
    suite: Suite,
    key: &[u8],
    direction_iv: &[u8; 12],
    sa_id: SaId,
    seq: u64,
    payload: &[u8],
) -> String {
    let (enc_name, enc) = jose_enc(suite);
    let iv = expected_nonce(direction_iv, seq);
    // Take the protected header exactly as josekit serializes it (its member order, "alg" last).
    let reference = josekit_sealed(suite, key, sa_id, seq, payload);
    let header_b64 = parts(&reference)[0].to_owned();
    let header: Value = serde_json::from_slice(&b64d(&header_b64)).unwrap();
    assert_eq!(header["alg"], "dir");
    assert_eq!(header["enc"], enc_name);
    let (ciphertext, tag) = enc.encrypt(key, Some(&iv), payload, header_b64.as_bytes()).unwrap();
    let tag = tag.expect("GCM has a tag");
    assert_eq!(tag.len(), 16);
    format!("{header_b64}..{}.{}.{}", b64e(&iv), b64e(&ciphertext), b64e(&tag))
}

/// Replaces part `index` of a compact JWE with the base64url of `f(its bytes)`.
fn tamper(jwe: &str, index: usize, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut p: Vec<String> = parts(jwe).into_iter().map(str::to_owned).collect();
    let mut bytes = b64d(&p[index]);
    f(&mut bytes);
    p[index] = b64e(&bytes);
    p.join(".")
}

#[test]
fn our_jwe_opens_in_josekit() {
    for suite in SUITES {
        let l = link(suite);
        let (enc_name, _) = jose_enc(suite);
        let kid = l.sa_id.to_b64();
        let mut out = Vec::new();
        // Several messages, so a non-zero sequence number is in the nonce.
        for n in 0..3u8 {
            let mut payload = REQUEST.to_vec();
            payload.push(b'0' + n);
            let info = l.ei.seal(Encoding::Jwe, &payload, &mut out).unwrap();
            let jwe = std::str::from_utf8(&out).expect("JWE compact is ASCII").to_owned();

            let (plaintext, header) = josekit_open(&jwe, &l.i2r_key, &kid)
                .unwrap_or_else(|e| panic!("{}: josekit refused our JWE seq {}: {e}", suite.name(), info.seq));
            assert_eq!(plaintext, payload, "{}: plaintext", suite.name());
            assert_eq!(header.algorithm(), Some("dir"));
            assert_eq!(header.content_encryption(), Some(enc_name));
            assert_eq!(header.key_id(), Some(kid.as_str()));
            assert_eq!(header.claim("seq"), Some(&Value::from(info.seq)));
            assert_eq!(header.claim("kp"), Some(&Value::from(0u8)));
            assert_eq!(info.seq, u64::from(n));

            let p = parts(&jwe);
            assert!(p[1].is_empty(), "dir: empty encrypted key");
            assert_eq!(b64d(p[2]), expected_nonce(&l.i2r_iv, info.seq), "IV = i2r IV XOR seq");

            // Negative controls: josekit must not open it under the other direction's key, nor tampered.
            assert!(josekit_open(&jwe, &l.r2i_key, &kid).is_err(), "opened under the r2i key");
            assert!(josekit_open(&tamper(&jwe, 3, |c| c[0] ^= 1), &l.i2r_key, &kid).is_err(), "tampered");
            // And our receiver still opens the genuine object.
            assert_eq!(open_ours(&l.er, &jwe).unwrap(), payload);
        }

        // The other direction: the Responder seals under r2i.
        let info = l.er.seal(Encoding::Jwe, RESPONSE, &mut out).unwrap();
        let jwe = std::str::from_utf8(&out).unwrap().to_owned();
        let (plaintext, header) = josekit_open(&jwe, &l.r2i_key, &kid).expect("josekit opens r2i");
        assert_eq!(plaintext, RESPONSE);
        assert_eq!(header.claim("seq"), Some(&Value::from(info.seq)));
        assert_eq!(b64d(parts(&jwe)[2]), expected_nonce(&l.r2i_iv, info.seq));
        assert!(josekit_open(&jwe, &l.i2r_key, &kid).is_err(), "opened under the i2r key");
    }
}

#[test]
fn josekit_jwe_opens_here() {
    for suite in SUITES {
        let l = link(suite);
        let name = suite.name();
        let kid = l.sa_id.to_b64();
        let nonce = expected_nonce(&l.i2r_iv, FRESH_SEQ);

        // (a) josekit's own serialization: everything is ours except the random IV.
        let jwe = josekit_sealed(suite, &l.i2r_key, l.sa_id, FRESH_SEQ, REQUEST);
        let (plaintext, _) = josekit_open(&jwe, &l.i2r_key, &kid).expect("josekit round trip");
        assert_eq!(plaintext, REQUEST);
        {
            // Its header decodes to our SA, sequence number, key phase and AEAD...
            let mut scratch = Vec::new();
            let sealed = decode_jwe(jwe.as_bytes(), &mut scratch).expect("josekit's header decodes");
            assert_eq!(sealed.header.sa_id, l.sa_id);
            assert_eq!(sealed.header.seq, FRESH_SEQ);
            assert_eq!(sealed.header.key_phase, 0);
            assert_eq!(sealed.header.aead, suite.aead());
        }
        // ...its IV is not the one our scheme fixes for that sequence number (chance 2^-96)...
        assert_ne!(b64d(parts(&jwe)[2]), nonce);
        // ...so it is refused, by the IV rule (a failed open does not mark the window).
        assert_eq!(open_ours(&l.er, &jwe), Err(SecureError::BadTag), "{name}: random IV accepted");

        // (b) The same object with the expected IV, sealed by josekit's (OpenSSL's) AES-GCM.
        let jwe = josekit_sealed_with_iv(suite, &l.i2r_key, &l.i2r_iv, l.sa_id, FRESH_SEQ, REQUEST);
        let (plaintext, header) = josekit_open(&jwe, &l.i2r_key, &kid).expect("a valid JWE to josekit");
        assert_eq!(plaintext, REQUEST);
        assert_eq!(header.claim("seq"), Some(&Value::from(FRESH_SEQ)));
        assert_eq!(
            open_ours(&l.er, &jwe).unwrap_or_else(|e| panic!("{name}: refused josekit's JWE: {e}")),
            REQUEST,
            "{name}: plaintext"
        );

        // The other direction: a josekit-sealed response opens at our Initiator.
        let jwe = josekit_sealed_with_iv(suite, &l.r2i_key, &l.r2i_iv, l.sa_id, 5, RESPONSE);
        assert_eq!(open_ours(&l.ei, &jwe).expect("r2i opens"), RESPONSE);
    }
}

#[test]
fn josekit_jwe_with_wrong_key_or_tampered_is_refused() {
    for suite in SUITES {
        let l = link(suite);
        let name = suite.name();
        let (_, enc) = jose_enc(suite);
        let genuine = josekit_sealed_with_iv(suite, &l.i2r_key, &l.i2r_iv, l.sa_id, FRESH_SEQ, REQUEST);

        // Another key of the right length, with the right IV: only the AEAD can tell.
        let wrong_key: Vec<u8> = l.i2r_key.iter().map(|b| b ^ 0x5a).collect();
        assert_eq!(wrong_key.len(), enc.key_len());
        let bad = josekit_sealed_with_iv(suite, &wrong_key, &l.i2r_iv, l.sa_id, FRESH_SEQ, REQUEST);
        assert_eq!(open_ours(&l.er, &bad), Err(SecureError::BadTag), "{name}: wrong key");
        // The other direction's key and IV (a reflected object).
        let bad = josekit_sealed_with_iv(suite, &l.r2i_key, &l.r2i_iv, l.sa_id, FRESH_SEQ, REQUEST);
        assert_eq!(open_ours(&l.er, &bad), Err(SecureError::BadTag), "{name}: r2i key");
        // josekit's own serialization under the wrong key.
        let bad = josekit_sealed(suite, &wrong_key, l.sa_id, FRESH_SEQ, REQUEST);
        assert_eq!(open_ours(&l.er, &bad), Err(SecureError::BadTag), "{name}: josekit, wrong key");

        // Tampering with the ciphertext (first and last byte), the tag, or the protected header.
        let last = REQUEST.len() - 1;
        for (what, bad) in [
            ("ciphertext[0]", tamper(&genuine, 3, |c| c[0] ^= 0x01)),
            ("ciphertext[last]", tamper(&genuine, 3, |c| c[last] ^= 0x80)),
            ("ciphertext truncated", tamper(&genuine, 3, |c| c.truncate(last))),
            ("tag", tamper(&genuine, 4, |t| t[15] ^= 0x01)),
            (
                "header kp",
                tamper(&genuine, 0, |h| {
                    *h = String::from_utf8(h.clone()).unwrap().replace(r#""kp":0"#, r#""kp":1"#).into_bytes()
                }),
            ),
            ("header trailing space", tamper(&genuine, 0, |h| h.push(b' '))),
        ] {
            let r = open_ours(&l.er, &bad);
            assert!(
                matches!(r, Err(SecureError::BadTag) | Err(SecureError::UnknownSa)),
                "{name}: {what} not refused as it should be: {r:?}"
            );
            // josekit agrees the object is not authentic.
            assert!(josekit_open(&bad, &l.i2r_key, &l.sa_id.to_b64()).is_err(), "{name}: josekit accepted {what}");
        }

        // None of that burnt the sequence number: the genuine object still opens, once.
        assert_eq!(open_ours(&l.er, &genuine).expect("genuine opens after the refusals"), REQUEST);
    }
}
