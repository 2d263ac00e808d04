//! Regenerates the test vectors of `docs/protocol.md` §6 from fixed seeds and fails on any
//! drift. To accept an intended change of the wire format: `UPDATE_VECTORS=1 cargo test -p
//! onem2m-sa --test vectors`, then review the diff of `docs/protocol.md`.
//!
//! Every value the document states is also *recomputed here from the document's rules*, with
//! aws-lc primitives and `serde_json` only (the way an independent implementation would):
//! the ticket's to-be-signed bytes, the transcript element by element, the KEM secrets from the
//! published ephemeral private keys, the confirmation MACs, the HKDF key schedule of both epochs,
//! the control envelopes (AAD, nonce, plaintext), the JWE and compact data-path objects, and the
//! cookie. A rule of the document that the code does not follow fails the test.

use std::fmt::Write as _;
use std::path::PathBuf;

use aws_lc_rs::{aead, agreement, digest, hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use onem2m_primitive::{ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa::credential::{AuthorizationContext, OriginatorPattern};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::{AcceptAll, EstablishedSa};
use onem2m_sa::flows::*;
use onem2m_sa::manage::{Exchange, InitiatorEvent, InitiatorSam, KemUpdatePolicy, Limits, ResponderSam, Timing};
use onem2m_sa::replay::DEFAULT_WINDOW;
use onem2m_sa::rng::{Rng, SeededRng};
use onem2m_sa::schedule::{DirectionKeys, SessionKeys};
use onem2m_sa::secure::{Encoding, Epoch, UsageLimits, decode_compact, decode_jwe, outer_notify, to_notify_content};
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, Role, SaId};
use serde_json::Value;

const BEGIN: &str = "<!-- vectors:begin -->\n";
const END: &str = "<!-- vectors:end -->";
const ES256_LINE: &str = "ES256 signature (r ‖ s): `";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn b64d(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("a base64url string")).expect("base64url")
}

/// A random source that records every value it hands out, so the vectors can publish the
/// ephemeral private keys an establishment drew.
struct Recording {
    inner: SeededRng,
    draws: Vec<Vec<u8>>,
}

impl Recording {
    fn new(seed: u8) -> Self {
        Self { inner: SeededRng::new([seed; 32]), draws: Vec::new() }
    }
}

impl Rng for Recording {
    fn fill(&mut self, dest: &mut [u8]) {
        self.inner.fill(dest);
        self.draws.push(dest.to_vec());
    }
}

// ---------------------------------------------------------------------------------------------
// The document's rules, implemented from the text.

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    fn of_suite(code: u16) -> Self {
        if code == 1 { Hash::Sha256 } else { Hash::Sha384 }
    }
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut c = digest::Context::new(match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
        });
        for p in parts {
            c.update(p);
        }
        c.finish().as_ref().to_vec()
    }
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(
            match self {
                Hash::Sha256 => hmac::HMAC_SHA256,
                Hash::Sha384 => hmac::HMAC_SHA384,
            },
            key,
        );
        let mut c = hmac::Context::with_key(&key);
        for p in parts {
            c.update(p);
        }
        c.sign().as_ref().to_vec()
    }
    /// RFC 5869 HKDF-Extract; an empty salt is a string of Hlen zeros, which HMAC treats alike.
    fn extract(self, salt: &[u8], ikm: &[u8]) -> Vec<u8> {
        self.hmac(salt, &[ikm])
    }
    /// RFC 5869 HKDF-Expand.
    fn expand(self, prk: &[u8], info: &[u8], len: usize) -> Vec<u8> {
        let (mut out, mut t) = (Vec::new(), Vec::new());
        let mut i = 1u8;
        while out.len() < len {
            t = self.hmac(prk, &[&t, info, &[i]]);
            out.extend_from_slice(&t);
            i += 1;
        }
        out.truncate(len);
        out
    }
}

/// §1: the bytes a ticket signature covers, from the ticket's JSON.
fn ticket_tbs(t: &Value) -> Vec<u8> {
    fn put(o: &mut Vec<u8>, b: &[u8]) {
        o.extend_from_slice(&(b.len() as u32).to_be_bytes());
        o.extend_from_slice(b);
    }
    let s = |k: &str| t[k].as_str().unwrap().as_bytes().to_vec();
    let mut o = Vec::new();
    put(&mut o, b"onem2m-sa ticket v1");
    o.push(t["v"].as_u64().unwrap() as u8);
    put(&mut o, &s("iss"));
    put(&mut o, &s("sub"));
    o.push(match t["alg"].as_str().unwrap() {
        "Ed25519" => 1,
        "ES256" => 2,
        other => panic!("{other}"),
    });
    put(&mut o, &b64d(&t["pk"]));
    let orig = t["ctx"]["orig"].as_array().unwrap();
    o.extend_from_slice(&(orig.len() as u32).to_be_bytes());
    for p in orig {
        put(&mut o, p.as_str().unwrap().as_bytes());
    }
    match t["ctx"].get("lt") {
        Some(lt) => {
            o.push(1);
            o.extend_from_slice(&lt.as_u64().unwrap().to_be_bytes());
        }
        None => o.push(0),
    }
    match t["ctx"].get("dsc") {
        Some(d) => {
            o.push(1);
            put(&mut o, d.as_str().unwrap().as_bytes());
        }
        None => o.push(0),
    }
    o.extend_from_slice(&t["nbf"].as_u64().unwrap().to_be_bytes());
    o.extend_from_slice(&t["exp"].as_u64().unwrap().to_be_bytes());
    // Row 10: the exceptions, only when there are any.
    if let Some(ex) = t["ctx"].get("ex").and_then(Value::as_array).filter(|ex| !ex.is_empty()) {
        o.push(1);
        o.extend_from_slice(&(ex.len() as u32).to_be_bytes());
        for p in ex {
            put(&mut o, p.as_str().unwrap().as_bytes());
        }
    }
    o
}

/// §1: the ticket reference.
fn ticket_ref(t: &Value) -> Vec<u8> {
    Hash::Sha256.digest(&[&ticket_tbs(t), &b64d(&t["sig"])])
}

fn verify_sig(alg: &str, pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let alg: &dyn signature::VerificationAlgorithm = match alg {
        "Ed25519" => &signature::ED25519,
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        other => panic!("{other}"),
    };
    signature::UnparsedPublicKey::new(alg, pk).verify(msg, sig).is_ok()
}

fn x25519_public(scalar: &[u8]) -> Vec<u8> {
    let k = agreement::PrivateKey::from_private_key(&agreement::X25519, scalar).unwrap();
    k.compute_public_key().unwrap().as_ref().to_vec()
}

/// §2: the X25519 KEM secret, from the encapsulating side's ephemeral scalar.
fn x25519_secret(eph_scalar: &[u8], recipient_pk: &[u8]) -> Vec<u8> {
    let eph = agreement::PrivateKey::from_private_key(&agreement::X25519, eph_scalar).unwrap();
    let ct = x25519_public(eph_scalar);
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, recipient_pk);
    let dh = agreement::agree(&eph, peer, (), |dh| Ok(dh.to_vec())).unwrap();
    Hash::Sha256.digest(&[b"onem2m-sa/kem/x25519", &dh, &ct, recipient_pk])
}

/// The 32-byte draw whose X25519 public key is `pk`.
fn scalar_for(draws: &[Vec<u8>], pk: &[u8]) -> Vec<u8> {
    draws.iter().filter(|d| d.len() == 32).find(|d| x25519_public(d) == pk).expect("a drawn scalar").clone()
}

/// §3.3: the transcript.
#[derive(Default)]
struct Transcript {
    bytes: Vec<u8>,
    rows: Vec<(String, Vec<u8>)>,
}

impl Transcript {
    fn new() -> Self {
        let mut t = Self::default();
        t.add("proto", b"onem2m-sa v1");
        t
    }
    fn add(&mut self, label: &str, data: &[u8]) {
        self.bytes.push(label.len() as u8);
        self.bytes.extend_from_slice(label.as_bytes());
        self.bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(data);
        self.rows.push((label.to_owned(), data.to_vec()));
    }
    fn marker(&mut self, name: &str, hash: Hash) -> Vec<u8> {
        let h = hash.digest(&[&self.bytes]);
        self.rows.push((format!("**{name}**"), h.clone()));
        h
    }
}

fn challenge(c: &Value) -> Vec<u8> {
    match (c.get("ech"), c.get("ach")) {
        (Some(e), None) => [vec![1], b64d(e)].concat(),
        (None, Some(a)) => [vec![2], b64d(a)].concat(),
        _ => panic!("exactly one challenge"),
    }
}

/// §3.3: confirmation MAC.
fn confirm(hash: Hash, ss: &[u8], label: &str, th: &[u8]) -> Vec<u8> {
    let prk = hash.extract(b"", ss);
    let k = hash.expand(&prk, &[b"onem2m-sa v1 confirm ", label.as_bytes()].concat(), hash.len());
    hash.hmac(&k, &[label.as_bytes(), th])
}

/// §3.4: the HKDF info of a key label.
fn info(label: &str, suite: u16, sid: &[u8], epoch: u32) -> Vec<u8> {
    [b"onem2m-sa v1 ".as_slice(), label.as_bytes(), &suite.to_be_bytes(), sid, &epoch.to_be_bytes()].concat()
}

/// §3.4: every key of an epoch, from its PRK.
struct Keys {
    epoch: u32,
    dirs: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    update: Vec<u8>,
}

impl Keys {
    fn derive(hash: Hash, suite: u16, key_len: usize, prk: &[u8], sid: &[u8], epoch: u32) -> Self {
        let x = |label: &str, len| hash.expand(prk, &info(label, suite, sid, epoch), len);
        let dirs = ["i2r", "r2i", "ctl i2r", "ctl r2i"]
            .into_iter()
            .map(|d| (d, x(&format!("{d} key"), key_len), x(&format!("{d} iv"), 12)))
            .collect();
        Self { epoch, dirs, update: x("update", hash.len()) }
    }
    fn dir(&self, name: &str) -> (&[u8], &[u8]) {
        let d = self.dirs.iter().find(|d| d.0 == name).unwrap();
        (&d.1, &d.2)
    }
    fn assert_eq_code(&self, code: &SessionKeys) {
        assert_eq!(self.epoch, code.epoch);
        for (name, d) in
            [("i2r", &code.i2r), ("r2i", &code.r2i), ("ctl i2r", &code.ctl_i2r), ("ctl r2i", &code.ctl_r2i)]
        {
            assert_eq!(self.dir(name), (d.key(), &d.iv()[..]), "epoch {} {name}: the document's HKDF rule", self.epoch);
        }
    }
}

/// §3.4, §4.1: nonce = iv XOR (0^32 ‖ u64be(seq)).
fn nonce(iv: &[u8], seq: u64) -> [u8; 12] {
    let mut n: [u8; 12] = iv.try_into().unwrap();
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

fn aes_gcm_open(key: &[u8], nonce: [u8; 12], aad: &[u8], ct_and_tag: &[u8]) -> Vec<u8> {
    let alg = if key.len() == 16 { &aead::AES_128_GCM } else { &aead::AES_256_GCM };
    let k = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).unwrap());
    let mut buf = ct_and_tag.to_vec();
    let n = k.open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf).unwrap().len();
    buf.truncate(n);
    buf
}

/// §3.5: the AAD of a control envelope.
fn ctl_aad(sid: &[u8], ep: u32, seq: u64, sender: u8) -> Vec<u8> {
    [b"onem2m-sa v1 ctl".as_slice(), sid, &ep.to_be_bytes(), &seq.to_be_bytes(), &[sender]].concat()
}

// ---------------------------------------------------------------------------------------------
// Output helpers.

fn keys_table(out: &mut String, title: &str, keys: &SessionKeys) {
    let row = |out: &mut String, name: &str, d: &DirectionKeys| {
        writeln!(out, "| {name} | `{}` | `{}` |", hex(d.key()), hex(d.iv())).unwrap();
    };
    writeln!(out, "\n{title} (epoch {}):\n", keys.epoch).unwrap();
    writeln!(out, "| direction | key | iv |\n|---|---|---|").unwrap();
    row(out, "i2r", &keys.i2r);
    row(out, "r2i", &keys.r2i);
    row(out, "ctl i2r", &keys.ctl_i2r);
    row(out, "ctl r2i", &keys.ctl_r2i);
}

fn json_block(out: &mut String, indent: &str, bytes: &[u8]) {
    writeln!(out, "{indent}```json\n{indent}{}\n{indent}```\n", String::from_utf8_lossy(bytes)).unwrap();
}

fn message(out: &mut String, step: usize, from_initiator: bool, bytes: &[u8]) {
    let dir = if from_initiator { "Initiator → Responder" } else { "Responder → Initiator" };
    writeln!(out, "{step}. {dir}\n").unwrap();
    json_block(out, "   ", bytes);
}

/// Runs one exchange to its final event; returns every message (Initiator's first) and the event.
fn run_exchange(
    ini: &mut InitiatorSam,
    rsp: &mut ResponderSam,
    mut ex: Exchange,
    now: Now,
    rng: &mut dyn Rng,
) -> (Vec<Vec<u8>>, InitiatorEvent) {
    let mut log = Vec::new();
    loop {
        log.push(ex.bytes.clone());
        let reply = rsp.handle(&ex.bytes, now, rng, &mut AcceptAll).reply.expect("an answer");
        log.push(reply.clone());
        match ini.handle_response(ex.id, &reply, now, rng).into_iter().next() {
            Some(InitiatorEvent::Transmit(next)) => ex = next,
            Some(other) => return (log, other),
            None => panic!("no event"),
        }
    }
}

/// Checks an establishment against §2–§3.4 and prints what an implementer needs to follow it.
fn check_establishment(
    out: &mut String,
    msgs: &[Vec<u8>],
    draws: &[Vec<u8>],
    sa: &EstablishedSa,
) -> (Keys, Vec<u8>, Vec<u8>) {
    let v: Vec<Value> = msgs.iter().map(|m| serde_json::from_slice(m).unwrap()).collect();
    let (init, reply, auth, auth_reply) = (&v[0]["init"], &v[1]["initReply"], &v[2]["auth"], &v[3]["authReply"]);
    let suite = reply["spe"]["sa"].as_u64().unwrap() as u16;
    let hash = Hash::of_suite(suite);
    let key_len = if suite == 1 { 16 } else { 32 };
    let sid = b64d(&reply["spe"]["sid"]);
    assert_eq!(sid.len(), 8, "sid: 8 raw bytes");

    // Ephemeral keys and KEM secrets.
    let share = init["ksh"].as_array().unwrap().iter().find(|k| k["kem"] == 1).unwrap();
    let share_pk = b64d(&share["pk"]);
    let rsp_pk = b64d(&reply["srk"]["ek"]);
    let rkm_ct = b64d(&reply["rkm"]["km"]);
    let ikm_ct = b64d(&auth["ikm"]["km"]);
    let ss_r = x25519_secret(&scalar_for(draws, &rkm_ct), &share_pk);
    let ss_i = x25519_secret(&scalar_for(draws, &ikm_ct), &rsp_pk);
    writeln!(out, "X25519 private keys (as drawn; each public key is X25519(scalar, 9)):\n").unwrap();
    writeln!(out, "| what | private scalar | public key / ciphertext |\n|---|---|---|").unwrap();
    let mut row = |what: &str, public: &[u8]| {
        writeln!(out, "| {what} | `{}` | `{}` |", hex(&scalar_for(draws, public)), hex(public)).unwrap();
    };
    row("Initiator key share (`ksh`)", &share_pk);
    row("Responder ephemeral key (`srk.ek`)", &rsp_pk);
    row("Responder Keying Material (`rkm.km`)", &rkm_ct);
    row("Initiator Keying Material (`ikm.km`)", &ikm_ct);
    let mut secrets = vec![("ss_r", ss_r.clone()), ("ss_i", ss_i.clone())];
    let iac_ss = reply["iac"].get("ech").map(|e| {
        let ct = b64d(e);
        row("Initiator Authorization Challenge (`iac.ech`)", &ct);
        x25519_secret(&scalar_for(draws, &ct), &share_pk)
    });
    let rac_ss = auth["rac"].get("ech").map(|e| {
        let ct = b64d(e);
        row("Responder Authorization Challenge (`rac.ech`)", &ct);
        x25519_secret(&scalar_for(draws, &ct), &rsp_pk)
    });
    secrets.extend(iac_ss.clone().map(|s| ("`iac.ech` secret", s)));
    secrets.extend(rac_ss.clone().map(|s| ("`rac.ech` secret", s)));
    writeln!(out, "\nKEM secrets:\n\n| secret | value |\n|---|---|").unwrap();
    for (name, s) in &secrets {
        writeln!(out, "| {name} | `{}` |", hex(s)).unwrap();
    }

    // Key references (§3.1): SHA-256 of the KEM public key, whatever the suite's hash.
    assert_eq!(b64d(&reply["srak"]["ekr"]), Hash::Sha256.digest(&[&rsp_pk]), "srak.ekr");
    assert_eq!(b64d(&auth["sik"]["ekr"]), Hash::Sha256.digest(&[&share_pk]), "sik.ekr");
    assert_eq!(b64d(&reply["srak"]["atr"]), ticket_ref(&reply["srk"]["kat"]), "srak.atr");
    assert_eq!(b64d(&auth["siak"]["atr"]), ticket_ref(&auth["sik"]["kat"]), "siak.atr");

    // The transcript.
    let mut t = Transcript::new();
    t.add("ver", &[init["v"].as_u64().unwrap() as u8]);
    t.add("ini", init["ini"].as_str().unwrap().as_bytes());
    t.add("rsp", init["rsp"].as_str().unwrap().as_bytes());
    let pss: Vec<u8> = init["spe"]["pss"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| (c.as_u64().unwrap() as u16).to_be_bytes())
        .collect();
    t.add("pss", &pss);
    for k in init["ksh"].as_array().unwrap() {
        t.add("ksh", &[vec![k["kem"].as_u64().unwrap() as u8], b64d(&k["pk"])].concat());
    }
    t.add("nci", &b64d(&init["nci"]));
    // Capabilities (§3.2): u16be per code as listed, only when the member is present.
    let codes = |v: &Value| -> Vec<u8> {
        v.as_array().unwrap().iter().flat_map(|c| (c.as_u64().unwrap() as u16).to_be_bytes()).collect()
    };
    if let Some(cap) = init.get("cap") {
        t.add("cap", &codes(cap));
    }
    t.add("sel", &suite.to_be_bytes());
    t.add("sid", &sid);
    t.add("rpk", &rsp_pk);
    t.add("rtk", &ticket_ref(&reply["srk"]["kat"]));
    t.add("rkm", &rkm_ct);
    if let Some(src) = reply.get("src") {
        let s = |k: &str| src.get(k).map(|x| x.as_str().unwrap().as_bytes().to_vec()).unwrap_or_default();
        t.add("ecd", &s("ecd"));
        t.add("cdr", &s("cdr"));
    }
    t.add("iac", &challenge(&reply["iac"]));
    if let Some(cap) = reply.get("cap") {
        t.add("rcap", &codes(cap));
    }
    assert_eq!(init.get("cap").is_some(), reply.get("cap").is_some(), "cap answered exactly when offered");
    let th2 = t.marker("TH2", hash);
    let rsp_ticket = &reply["srk"]["kat"];
    let rsp_sig_alg = rsp_ticket["alg"].as_str().unwrap();
    let rsg = b64d(&reply["srak"]["acd"]);
    let signed = |role: &str, th: &[u8]| [b"onem2m-sa v1 ".as_slice(), role.as_bytes(), &[0], th].concat();
    assert!(verify_sig(rsp_sig_alg, &b64d(&rsp_ticket["pk"]), &signed("responder authorization", &th2), &rsg));
    t.add("rsg", &rsg);
    let th2s = t.marker("TH2s", hash);
    assert_eq!(b64d(&auth["rkmc"]["rsp"]), confirm(hash, &ss_r, "responder keying material", &th2s));
    t.add("rkr", &b64d(&auth["rkmc"]["rsp"]));
    if let Some(r) = auth["iacc"].get("rsp") {
        assert_eq!(b64d(r), confirm(hash, iac_ss.as_ref().unwrap(), "initiator authorization challenge", &th2s));
        t.add("icr", &b64d(r));
    }
    t.add("itk", &ticket_ref(&auth["sik"]["kat"]));
    t.add("ikm", &ikm_ct);
    t.add("rac", &challenge(&auth["rac"]));
    let th3 = t.marker("TH3", hash);
    let ini_ticket = &auth["sik"]["kat"];
    let isg = b64d(&auth["siak"]["acd"]);
    let ini_alg = ini_ticket["alg"].as_str().unwrap();
    assert!(verify_sig(ini_alg, &b64d(&ini_ticket["pk"]), &signed("initiator authorization", &th3), &isg));
    if reply["iac"].get("ach").is_some() {
        assert_eq!(auth["iacc"]["acd"], auth["siak"]["acd"], "the same signature answers the challenge");
        assert_eq!(b64d(&auth["iacc"]["atk"]["ref"]), ticket_ref(ini_ticket));
    }
    t.add("isg", &isg);
    let th3s = t.marker("TH3s", hash);
    assert_eq!(th3s, sa.transcript_hash.as_ref(), "TH3s: the document's transcript rules");
    assert_eq!(b64d(&auth_reply["ikmc"]["rsp"]), confirm(hash, &ss_i, "initiator keying material", &th3s));
    match (auth_reply["racc"].get("rsp"), auth_reply["racc"].get("acd")) {
        (Some(r), _) => {
            assert_eq!(b64d(r), confirm(hash, rac_ss.as_ref().unwrap(), "responder authorization challenge", &th3s))
        }
        (None, Some(acd)) => {
            assert!(verify_sig(
                rsp_sig_alg,
                &b64d(&rsp_ticket["pk"]),
                &signed("responder challenge", &th3s),
                &b64d(acd)
            ));
            assert_eq!(b64d(&auth_reply["racc"]["atk"]["ref"]), ticket_ref(rsp_ticket));
        }
        _ => panic!("racc"),
    }

    writeln!(out, "\nTranscript (§3.3): each element is `len(label)` (1 byte) ‖ label ‖ `u32be(len(data))` ‖ data; the hashes are taken where shown:\n").unwrap();
    writeln!(out, "| label | data (hex) |\n|---|---|").unwrap();
    for (label, data) in &t.rows {
        let data = if data.is_empty() { "(empty)".to_owned() } else { format!("`{}`", hex(data)) };
        writeln!(out, "| {label} | {data} |").unwrap();
    }
    writeln!(out, "\nSigned by the Responder (`srak.acd`): `{}`", hex(&signed("responder authorization", &th2)))
        .unwrap();
    writeln!(out, "\nSigned by the Initiator (`siak.acd`): `{}`", hex(&signed("initiator authorization", &th3)))
        .unwrap();
    writeln!(out, "\nConfirmation MACs (§3.3):\n\n| label | K | MAC |\n|---|---|---|").unwrap();
    let mut macs = vec![("responder keying material", ss_r.clone(), th2s.clone())];
    if let Some(s) = &iac_ss {
        macs.push(("initiator authorization challenge", s.clone(), th2s.clone()));
    }
    macs.push(("initiator keying material", ss_i.clone(), th3s.clone()));
    if let Some(s) = &rac_ss {
        macs.push(("responder authorization challenge", s.clone(), th3s.clone()));
    }
    for (label, ss, th) in macs {
        let k =
            hash.expand(&hash.extract(b"", &ss), &[b"onem2m-sa v1 confirm ", label.as_bytes()].concat(), hash.len());
        writeln!(out, "| {label} | `{}` | `{}` |", hex(&k), hex(&confirm(hash, &ss, label, &th))).unwrap();
    }

    // The key schedule.
    let prk0 = hash.extract(&th3s, &[ss_r.as_slice(), &ss_i].concat());
    let keys = Keys::derive(hash, suite, key_len, &prk0, &sid, 0);
    keys.assert_eq_code(&sa.keys);
    writeln!(out, "\nPRK_0 = HKDF-Extract(TH3s, ss_r ‖ ss_i): `{}`", hex(&prk0)).unwrap();
    writeln!(out, "\nHKDF info of `i2r key`, epoch 0: `{}`", hex(&info("i2r key", suite, &sid, 0))).unwrap();
    writeln!(out, "\nupdate_0: `{}`", hex(&keys.update)).unwrap();
    (keys, sid, th2)
}

/// Prints a control envelope with its AAD, nonce and plaintext, opened with the test's own keys.
fn control(out: &mut String, step: usize, from_initiator: bool, bytes: &[u8], keys: &[&Keys]) -> Value {
    message(out, step, from_initiator, bytes);
    let v: Value = serde_json::from_slice(bytes).unwrap();
    let env = &v["ctl"];
    let (sid, ep, seq) = (b64d(&env["sid"]), env["ep"].as_u64().unwrap() as u32, env["seq"].as_u64().unwrap());
    let k = keys.iter().find(|k| k.epoch == ep).expect("keys of the epoch");
    let (key, iv) = k.dir(if from_initiator { "ctl i2r" } else { "ctl r2i" });
    let aad = ctl_aad(&sid, ep, seq, if from_initiator { b'I' } else { b'R' });
    let n = nonce(iv, seq);
    let plaintext = aes_gcm_open(key, n, &aad, &b64d(&env["ct"]));
    writeln!(out, "   AAD `{}`, nonce `{}`, plaintext:\n", hex(&aad), hex(&n)).unwrap();
    json_block(out, "   ", &plaintext);
    serde_json::from_slice(&plaintext).unwrap()
}

/// Opens a data-path object with the test's own code (§4.2, §4.3).
fn open_independently(encoding: Encoding, wire: &[u8], key: &[u8], iv: &[u8]) -> Vec<u8> {
    if encoding == Encoding::Jwe {
        let parts: Vec<&[u8]> = wire.split(|b| *b == b'.').collect();
        assert_eq!(parts.len(), 5);
        assert!(parts[1].is_empty(), "no encrypted key");
        let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        let n = nonce(iv, header["seq"].as_u64().unwrap());
        assert_eq!(B64.decode(parts[2]).unwrap(), n, "the JWE iv is the nonce");
        let body = [B64.decode(parts[3]).unwrap(), B64.decode(parts[4]).unwrap()].concat();
        aes_gcm_open(key, n, parts[0], &body)
    } else {
        let (mut seq, mut i) = (0u64, 9);
        loop {
            seq |= u64::from(wire[i] & 0x7f) << (7 * (i - 9));
            i += 1;
            if wire[i - 1] & 0x80 == 0 {
                break;
            }
        }
        aes_gcm_open(key, nonce(iv, seq), &wire[..i], &wire[i..])
    }
}

fn error_answer(rsc: Rsc, rqi: &str, text: &str) -> Vec<u8> {
    ResponsePrimitive::error(rsc, rqi, text).to_json_vec().unwrap()
}

fn generate(previous_doc: &str) -> String {
    let mut rng = Recording::new(0x5a);
    let now = Now::new(0, 1_800_000_000);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let i = pki.node("/id-asn", SignatureAlgorithm::Ed25519, &["/id-asn", "C*"], &mut rng);
    let r = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    let suite = [Suite::X25519_AES128GCM_SHA256];
    let mut ini = InitiatorSam::new(initiator_config(i.clone(), pki.anchors.clone(), &suite), Timing::default());
    // Both offer every capability (`cap` [1, 2]); the key update below is the one without a
    // fresh KEM exchange (that one is shown on fixed inputs at the end).
    ini.set_kem_update_policy(KemUpdatePolicy::Off);
    let mut rsp = ResponderSam::new(
        responder_config(r.clone(), pki.anchors.clone(), &suite),
        Timing::default(),
        Limits::default(),
    );

    let mut out = String::new();
    writeln!(out, "### Tickets\n").unwrap();
    writeln!(out, "Trust anchor public key (Ed25519): `{}`\n", hex(pki.anchor_public_key())).unwrap();
    writeln!(out, "Initiator ticket:\n\n```json\n{}\n```\n", i.ticket.to_json()).unwrap();
    writeln!(out, "Responder ticket:\n\n```json\n{}\n```\n", r.ticket.to_json()).unwrap();
    let t: Value = serde_json::from_str(&i.ticket.to_json()).unwrap();
    assert_eq!(ticket_tbs(&t), i.ticket.to_be_signed(), "§1: to-be-signed bytes");
    assert!(verify_sig("Ed25519", pki.anchor_public_key(), &ticket_tbs(&t), &i.ticket.signature));
    writeln!(out, "Initiator ticket, to-be-signed bytes: `{}`\n", hex(&i.ticket.to_be_signed())).unwrap();
    writeln!(out, "Its signature (Ed25519, by the anchor): `{}`\n", hex(&i.ticket.signature)).unwrap();
    writeln!(out, "Its reference, SHA-256(to-be-signed ‖ signature): `{}`\n", hex(&ticket_ref(&t))).unwrap();
    assert_eq!(ticket_ref(&t), i.ticket.digest());

    // ---- Establishment, suite 1.
    writeln!(out, "### Establishment (suite 1)\n").unwrap();
    let req = InitiateSaRequest { initiator: i.node_id.clone(), responder: r.node_id.clone() };
    let ex = ini.initiate(&req, now, &mut rng).unwrap();
    let (log, event) = run_exchange(&mut ini, &mut rsp, ex, now, &mut rng);
    let InitiatorEvent::Established { confirm, .. } = event else { panic!() };
    for (n, m) in log.iter().enumerate() {
        message(&mut out, n + 1, n % 2 == 0, m);
    }
    let sa_id = confirm.security_association.unwrap().sa_id;
    let sa = ini.sa(sa_id).unwrap().sa.clone();
    let (keys0, sid, th2) = check_establishment(&mut out, &log, &rng.draws, &sa);
    writeln!(out, "\nTH3s: `{}`", hex(sa.transcript_hash.as_ref())).unwrap();
    keys_table(&mut out, "Session keys", &sa.keys);
    let init_bytes = log[0].clone();

    // ---- Data path under epoch 0.
    writeln!(out, "\n### Data path (suite 1, epoch 0, keys above)\n").unwrap();
    let ei = Epoch::new(Suite::X25519_AES128GCM_SHA256, &sa.keys, Role::Initiator, DEFAULT_WINDOW);
    let er = Epoch::new(Suite::X25519_AES128GCM_SHA256, &sa.keys, Role::Responder, DEFAULT_WINDOW);
    let limits = UsageLimits::default();
    let request = br#"{"op":2,"to":"/id-in/cb-in","fr":"CAE01","rqi":"req-1","rvi":"3"}"#;
    let answer = br#"{"rsc":2000,"rqi":"req-1","rvi":"3","pc":{"m2m:cb":{"rn":"cb-in","ri":"/id-in/cb-in"}}}"#;
    writeln!(out, "Inner request (plaintext): `{}`\n", String::from_utf8_lossy(request)).unwrap();
    writeln!(out, "Inner answer (plaintext): `{}`\n", String::from_utf8_lossy(answer)).unwrap();
    // The compact form seals the binary form of the same primitives (§4.5).
    let request_bin = onem2m_primitive::RequestPrimitive::from_json_slice(request).unwrap().to_binary_vec().unwrap();
    let answer_bin = ResponsePrimitive::from_json_slice(answer).unwrap().to_binary_vec().unwrap();
    writeln!(out, "Inner request in the binary form (§4.5), sealed by the compact form: `{}`\n", hex(&request_bin))
        .unwrap();
    writeln!(out, "Inner answer in the binary form: `{}`\n", hex(&answer_bin)).unwrap();
    let mut jwe_req = Vec::new();
    let mut sealed = Vec::new();
    for (who, epoch, json, binary) in
        [("Initiator", &ei, &request[..], &request_bin[..]), ("Responder", &er, &answer[..], &answer_bin[..])]
    {
        for encoding in [Encoding::Jwe, Encoding::Compact] {
            let plaintext = if encoding == Encoding::Jwe { json } else { binary };
            let mut wire = Vec::new();
            let info =
                epoch.seal(sa_id, Suite::X25519_AES128GCM_SHA256, encoding, plaintext, &limits, &mut wire).unwrap();
            let (key, iv) = keys0.dir(if who == "Initiator" { "i2r" } else { "r2i" });
            assert_eq!(open_independently(encoding, &wire, key, iv), plaintext, "{who} {encoding:?}: §4.2/§4.3");
            sealed.push((who, encoding, info.seq, wire));
        }
    }
    for (who, encoding, seq, wire) in &sealed {
        let kind = if *who == "Initiator" { "request, i2r" } else { "answer, r2i" };
        match encoding {
            Encoding::Jwe => {
                let header = B64.decode(wire.split(|b| *b == b'.').next().unwrap()).unwrap();
                writeln!(out, "JWE ({kind}, seq {seq}); protected header `{}`:\n", String::from_utf8_lossy(&header))
                    .unwrap();
                writeln!(out, "```\n{}\n```\n", String::from_utf8_lossy(wire)).unwrap();
                if *who == "Initiator" {
                    jwe_req = wire.clone();
                }
            }
            Encoding::Compact => {
                writeln!(out, "Compact ({kind}, seq {seq}), hex:\n\n```\n{}\n```\n", hex(wire)).unwrap();
            }
        }
    }
    // The receiver opens both requests, then refuses the JWE when it comes again.
    let mut scratch = Vec::new();
    for (who, encoding, _, wire) in &sealed {
        let mut wire = wire.clone();
        let opened = match encoding {
            Encoding::Jwe => {
                let s = decode_jwe(&wire, &mut scratch).unwrap();
                if *who == "Initiator" { er.open(s).map(|p| p.to_vec()) } else { ei.open(s).map(|p| p.to_vec()) }
            }
            Encoding::Compact => {
                let s = decode_compact(&mut wire).unwrap();
                if *who == "Initiator" { er.open(s).map(|p| p.to_vec()) } else { ei.open(s).map(|p| p.to_vec()) }
            }
        };
        assert!(opened.is_ok());
    }
    let outer = outer_notify("/id-in", "/id-asn", "n-1", &jwe_req).to_json_vec().unwrap();
    writeln!(out, "The request JWE as it travels (§4.2), an outer NOTIFY:\n").unwrap();
    json_block(&mut out, "", &outer);
    let mut answer_outer = ResponsePrimitive::new(Rsc::OK, "n-1");
    answer_outer.rvi = Some("3".to_owned());
    answer_outer.pc = Some(to_notify_content(&sealed[2].3));
    writeln!(out, "The sealed answer as it travels, the response to that NOTIFY:\n").unwrap();
    json_block(&mut out, "", &answer_outer.to_json_vec().unwrap());
    // The compact form between peers that negotiated `compact` (§4.3, Carriage).
    let compact_req = &sealed[1].3;
    let mut outer = outer_notify("/id-in", "/id-asn", "n-2", b"");
    outer.pc = Some(onem2m_primitive::compact::content(compact_req));
    writeln!(
        out,
        "The compact request as a primitive (§4.3, Carriage): the outer NOTIFY with content `sa:cmp`. On HTTP its body \
         is the {} raw bytes above with `Content-Type: {}`, on CoAP the payload of the POST with Content-Format {}:\n",
        compact_req.len(),
        onem2m_primitive::compact::MEDIA_TYPE,
        onem2m_primitive::compact::CONTENT_FORMAT
    )
    .unwrap();
    json_block(&mut out, "", &outer.to_json_vec().unwrap());
    let replayed = er.open(decode_jwe(&jwe_req, &mut scratch).unwrap()).unwrap_err();
    writeln!(out, "The same NOTIFY again (a replay): the receiver answers, unsealed,\n").unwrap();
    json_block(&mut out, "", &error_answer(replayed.rsc(), "n-1", &replayed.peer_text()));

    // ---- Key update.
    let mut step = log.len();
    writeln!(out, "### Key update (with Responder keying material)\n").unwrap();
    let later = now.after_ms(10_000);
    let ex = ini
        .update(&UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::Keys }, later, &mut rng)
        .unwrap();
    let (log, event) = run_exchange(&mut ini, &mut rsp, ex, later, &mut rng);
    let InitiatorEvent::Updated { confirm: c, .. } = event else { panic!() };
    assert_eq!(c.result, UpdateResult::Accepted);
    step += 1;
    let sku = control(&mut out, step, true, &log[0], &[&keys0]);
    step += 1;
    let skuc = control(&mut out, step, false, &log[1], &[&keys0]);
    let m = [b64d(&sku["sku"]["nkm"]), b64d(&skuc["skuc"]["rkm"])].concat();
    let prk1 = Hash::Sha256.extract(&keys0.update, &m);
    let keys1 = Keys::derive(Hash::Sha256, 1, 16, &prk1, &sid, 1);
    for (n, bytes) in log.iter().enumerate().skip(2) {
        step += 1;
        control(&mut out, step, n % 2 == 0, bytes, &[&keys0, &keys1]);
    }
    writeln!(out, "PRK_1 = HKDF-Extract(update_0, nkm ‖ rkm): `{}`", hex(&prk1)).unwrap();
    let keys_now = ini.sa(sa_id).unwrap().sa.keys.clone();
    keys1.assert_eq_code(&keys_now);
    keys_table(&mut out, "Session keys", &keys_now);

    // ---- Identifier update.
    writeln!(out, "\n### Identifier update\n").unwrap();
    let ex = ini
        .update(&UpdateSaRequest { existing_sa_id: sa_id, operation: UpdateOperation::Identifier }, later, &mut rng)
        .unwrap();
    let (log, event) = run_exchange(&mut ini, &mut rsp, ex, later, &mut rng);
    let InitiatorEvent::Updated { confirm: c, .. } = event else { panic!() };
    let new_id = c.new_sa_id.unwrap();
    for (n, bytes) in log.iter().enumerate() {
        step += 1;
        control(&mut out, step, n % 2 == 0, bytes, &[&keys1]);
    }

    // ---- ControlError.
    writeln!(out, "### ControlError\n").unwrap();
    let tag_only = B64.encode([0u8; 16]);
    let probe = |sid: SaId, ep: u32, seq: u64| {
        format!(r#"{{"ctl":{{"v":1,"sid":"{}","ep":{ep},"seq":{seq},"ct":"{tag_only}"}}}}"#, sid.to_b64())
    };
    let unknown = probe(SaId([0; 8]), 0, 1);
    let forged = probe(new_id, 1, 100);
    for (what, env) in [("an SA it does not hold", &unknown), ("an envelope that does not authenticate", &forged)] {
        let reply = rsp.handle(env.as_bytes(), later, &mut rng, &mut AcceptAll).reply.expect("ctlErr");
        writeln!(out, "For {what}:\n\n```json\n{env}\n```\n\nthe Responder answers\n").unwrap();
        json_block(&mut out, "", &reply);
    }

    // ---- Removal.
    writeln!(out, "### Removal\n").unwrap();
    let ex = ini.remove(&RemoveSaRequest(RemovalRequest { sa_id: new_id }), later).unwrap();
    let (log, event) = run_exchange(&mut ini, &mut rsp, ex, later, &mut rng);
    let InitiatorEvent::Removed(c) = event else { panic!() };
    assert_eq!(c.0.result, UpdateResult::Accepted);
    for (n, bytes) in log.iter().enumerate() {
        step += 1;
        control(&mut out, step, n % 2 == 0, bytes, &[&keys1]);
    }
    let again = rsp.handle(&log[0], later, &mut rng, &mut AcceptAll).reply.unwrap();
    assert_eq!(again, log[1], "a byte-identical resend of `sar` gets the cached `sarc`");
    let after = probe(new_id, 1, 5);
    let reply = rsp.handle(after.as_bytes(), later, &mut rng, &mut AcceptAll).reply.expect("ctlErr");
    writeln!(out, "Any other envelope for the removed SA, e.g.\n\n```json\n{after}\n```\n\nis answered\n").unwrap();
    json_block(&mut out, "", &reply);

    // ---- Cookie.
    writeln!(out, "### Cookie\n").unwrap();
    let mut crng = Recording::new(0x5d);
    let mut busy = ResponderSam::new(
        responder_config(r.clone(), pki.anchors.clone(), &suite),
        Timing::default(),
        Limits { init_rate_per_source: 0, ..Limits::default() },
    );
    let source = [192, 0, 2, 1];
    let reply = busy.handle_from(&source, &init_bytes, now, &mut crng, &mut AcceptAll).reply.unwrap();
    let ck = b64d(&serde_json::from_slice::<Value>(&reply).unwrap()["cookie"]["ck"]);
    let k = crng.draws[0].clone();
    let init_v: Value = serde_json::from_slice(&init_bytes).unwrap();
    let ini_id = init_v["init"]["ini"].as_str().unwrap().as_bytes();
    let mac_input = [
        b"onem2m-sa cookie v1".as_slice(),
        &0u32.to_be_bytes(),
        &(source.len() as u32).to_be_bytes(),
        &source,
        &(ini_id.len() as u32).to_be_bytes(),
        ini_id,
        &b64d(&init_v["init"]["nci"]),
    ]
    .concat();
    assert_eq!(ck, [&0u32.to_be_bytes()[..], &Hash::Sha256.hmac(&k, &[&mac_input])[..16]].concat(), "§3.6 cookie");
    writeln!(out, "The first `SaInit` above, from source 192.0.2.1 (`{}`), to a Responder that asks every source for a cookie; its cookie key of epoch 0 is `{}`. HMAC input: `{}`. The Responder answers\n", hex(&source), hex(&k), hex(&mac_input)).unwrap();
    json_block(&mut out, "", &reply);
    let mut with_cookie = init_v.clone();
    with_cookie["init"]["ck"] = Value::String(B64.encode(&ck));
    let with_cookie = serde_json::to_vec(&with_cookie).unwrap();
    writeln!(out, "and the Initiator sends again\n").unwrap();
    json_block(&mut out, "", &with_cookie);
    let accepted = busy.handle_from(&source, &with_cookie, now, &mut crng, &mut AcceptAll).reply.unwrap();
    assert!(accepted.starts_with(br#"{"initReply":{"v":1,"spe":{"rs":1"#), "the cookie is accepted");

    // ---- Suite 2, with the other challenge kinds and a Responder Authorization Context.
    writeln!(out, "### Establishment (suite 2, challenges swapped, with `src`)\n").unwrap();
    writeln!(out, "Same tickets; the Initiator sends an authentication challenge, the Responder an encryption challenge and an explicit context.\n").unwrap();
    let mut rng2 = Recording::new(0x5b);
    let suite2 = [Suite::X25519_AES256GCM_SHA384];
    let mut ic = initiator_config(i.clone(), pki.anchors.clone(), &suite2);
    ic.responder_challenge = ChallengeKind::Authentication;
    let mut rc = responder_config(r.clone(), pki.anchors.clone(), &suite2);
    rc.initiator_challenge = ChallengeKind::Encryption;
    rc.explicit_context = Some("oneM2M vector context".to_owned());
    let mut ini2 = InitiatorSam::new(ic, Timing::default());
    let mut rsp2 = ResponderSam::new(rc, Timing::default(), Limits::default());
    let ex = ini2.initiate(&req, now, &mut rng2).unwrap();
    let (log, event) = run_exchange(&mut ini2, &mut rsp2, ex, now, &mut rng2);
    let InitiatorEvent::Established { confirm, .. } = event else { panic!() };
    for (n, m) in log.iter().enumerate() {
        message(&mut out, n + 1, n % 2 == 0, m);
    }
    let sa2 = ini2.sa(confirm.security_association.unwrap().sa_id).unwrap().sa.clone();
    check_establishment(&mut out, &log, &rng2.draws, &sa2);
    writeln!(out, "\nTH3s: `{}`", hex(sa2.transcript_hash.as_ref())).unwrap();
    keys_table(&mut out, "Session keys", &sa2.keys);

    // ---- ES256.
    writeln!(out, "\n### ES256\n").unwrap();
    let mut rng3 = SeededRng::new([0x5c; 32]);
    let context = AuthorizationContext {
        originators: vec!["/id-es256".parse::<OriginatorPattern>().unwrap()],
        max_sa_lifetime_secs: Some(3600),
        description: Some("ES256 example".to_owned()),
        ..AuthorizationContext::default()
    };
    let e = pki.node_with(
        "/id-es256",
        SignatureAlgorithm::EcdsaP256Sha256,
        context,
        now.unix_secs - 3600,
        now.unix_secs + 86_400,
        &mut rng3,
    );
    let et: Value = serde_json::from_str(&e.ticket.to_json()).unwrap();
    assert_eq!(ticket_tbs(&et), e.ticket.to_be_signed());
    writeln!(out, "A ticket for an ES256 key, with `lt` and `dsc` (both presence bytes 1):\n").unwrap();
    json_block(&mut out, "", e.ticket.to_json().as_bytes());
    writeln!(out, "To-be-signed bytes: `{}`\n", hex(&e.ticket.to_be_signed())).unwrap();
    let pk = e.signing_key.public_key();
    let msg = [b"onem2m-sa v1 responder authorization".as_slice(), &[0], &th2].concat();
    let previous = previous_doc
        .find(ES256_LINE)
        .map(|s| &previous_doc[s + ES256_LINE.len()..])
        .and_then(|s| s.find('`').map(|e| unhex(&s[..e])))
        .filter(|sig| verify_sig("ES256", pk, &msg, sig));
    let sig = previous.unwrap_or_else(|| e.signing_key.sign(&msg).unwrap());
    assert!(verify_sig("ES256", pk, &msg, &sig));
    writeln!(out, "Public key (uncompressed SEC1): `{}`\n", hex(pk)).unwrap();
    writeln!(out, "Message (its authorization code over TH2 of the suite-1 run): `{}`\n", hex(&msg)).unwrap();
    writeln!(out, "{ES256_LINE}{}`\n", hex(&sig)).unwrap();

    // ---- §1 row 10: a ticket with exceptions and an empty-originator pattern (checked, not shown).
    let mut rng4 = SeededRng::new([0x5e; 32]);
    let context = AuthorizationContext {
        originators: ["/id-ae-host", "C*", "S*", ""].map(|p| p.parse::<OriginatorPattern>().unwrap()).to_vec(),
        except: vec!["CAdmin".parse::<OriginatorPattern>().unwrap()],
        ..AuthorizationContext::default()
    };
    let x = pki.node_with(
        "/id-ae-host",
        SignatureAlgorithm::Ed25519,
        context,
        now.unix_secs - 3600,
        now.unix_secs + 86_400,
        &mut rng4,
    );
    let xt: Value = serde_json::from_str(&x.ticket.to_json()).unwrap();
    assert!(xt["ctx"]["ex"].is_array(), "ex is on the wire");
    assert_eq!(ticket_tbs(&xt), x.ticket.to_be_signed(), "§1 row 10");

    // ---- §3.4: a key update with and without a fresh KEM secret, on fixed inputs. The code's
    // values are checked by `schedule::tests::key_update_vector_with_and_without_a_fresh_kem_secret`.
    writeln!(out, "### Key update with a fresh KEM secret\n").unwrap();
    let (h, sid) = (Hash::Sha256, [0x5a_u8; 8]);
    let epoch0 = Keys::derive(h, 1, 16, &h.extract(&[0x01; 32], &[0x02; 32]), &sid, 0);
    writeln!(
        out,
        "Fixed inputs, not a run: suite 1, SA identifier `{}`, PRK_0 = HKDF-Extract(salt = 0x01×32, IKM = 0x02×32), \
         so update_0 = `{}`; `nkm` = 0x11×32, `rkm` = 0x22×32, and for the fresh KEM exchange ss = 0x33×32 \
         (PRK_1 = HKDF-Extract(update_0, nkm ‖ rkm ‖ ss)). Epoch 1:\n",
        hex(&sid),
        hex(&epoch0.update)
    )
    .unwrap();
    let [plain, kem] = [&[][..], &[0x33; 32][..]].map(|ss| {
        Keys::derive(h, 1, 16, &h.extract(&epoch0.update, &[&[0x11; 32][..], &[0x22; 32], ss].concat()), &sid, 1)
    });
    writeln!(out, "| value | without `kpk` | with `kpk` (ss = 0x33×32) |\n|---|---|---|").unwrap();
    for (name, a, b) in [
        ("i2r key", plain.dir("i2r").0, kem.dir("i2r").0),
        ("i2r iv", plain.dir("i2r").1, kem.dir("i2r").1),
        ("ctl i2r key", plain.dir("ctl i2r").0, kem.dir("ctl i2r").0),
        ("update_1", &plain.update[..], &kem.update[..]),
    ] {
        writeln!(out, "| {name} | `{}` | `{}` |", hex(a), hex(b)).unwrap();
    }
    writeln!(out).unwrap();
    out
}

fn doc_region(doc: &str) -> (usize, usize) {
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    (start, end)
}

#[test]
fn vectors_in_protocol_md_match() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let doc = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let (start, end) = doc_region(&doc);
    let fresh = generate(&doc[start..end]);
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], fresh, &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(fresh, generate(&doc[start..end]), "generation is deterministic");
    assert!(
        doc[start..end] == fresh,
        "docs/protocol.md vectors drifted; rerun with UPDATE_VECTORS=1 and review the diff"
    );
}
