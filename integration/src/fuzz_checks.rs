//! The checks behind the fuzz targets of `fuzz/`, shared with the corpus replay test
//! (`tests/fuzz_corpus.rs`) so that `cargo test` runs every seed and every saved regression
//! through exactly the code the fuzzer runs.
//!
//! Each check takes the raw bytes a peer could send, feeds them to one decoder and asserts the
//! invariants that are cheap to state: decoding never panics, and whatever decodes re-encodes
//! to something that decodes to the same value. A failed assertion is a finding.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use onem2m_primitive::{RequestPrimitive, ResponsePrimitive};
use onem2m_sa::credential::{NodeId, Ticket, TrustAnchors};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::flows::{self, Flow};
use onem2m_sa::message::{ControlFlow, Message};
use onem2m_sa::replay::{ReplayError, ReplayWindow};
use onem2m_sa::rng::SeededRng;
use onem2m_sa::secure::{Encoding, SecureError, decode_compact, decode_jwe};
use onem2m_sa::table::{SaEntry, TableConfig};
use onem2m_sa::testkit::{TestPki, linked};
use onem2m_sa::{Now, SaId};
use onem2m_sa_http::{Limits, MediaType, http_to_response, primitive_to_request, request_to_primitive_with_limits};

/// The fixed time every check runs at (tickets and SAs are made around it).
pub const FUZZ_NOW: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };
/// Seed of the fixed trust anchor of [`ticket`].
pub const PKI_SEED: u8 = 7;
/// Seed of the fixed linked SAs of [`secured_jwe`] and [`secured_compact`].
pub const LINK_SEED: u8 = 21;
/// The suites of the fixed linked SAs: one per AEAD.
pub const LINK_SUITES: [Suite; 2] = [Suite::X25519_AES128GCM_SHA256, Suite::X25519_AES256GCM_SHA384];
/// The plaintext the tamper mode of the secured checks seals.
pub const TAMPER_PLAINTEXT: &[u8] = br#"{"op":2,"to":"/id-in/cse-base","fr":"CAE01","rqi":"r-1","rvi":"3"}"#;

// ---------------------------------------------------------------------------------------------
// primitive_json

/// `RequestPrimitive::from_json_slice` and `ResponsePrimitive::from_json_slice`; what decodes
/// re-encodes, and the re-encoding decodes to the same primitive.
pub fn primitive_json(data: &[u8]) {
    if let Ok(req) = RequestPrimitive::from_json_slice(data) {
        let _ = req.validate();
        let json = req.to_json_vec().expect("a decoded request re-encodes");
        let again = RequestPrimitive::from_json_slice(&json).expect("a re-encoded request decodes");
        assert_eq!(again, req, "request changed in a decode/encode round trip");
    }
    if let Ok(rsp) = ResponsePrimitive::from_json_slice(data) {
        let _ = rsp.validate();
        let json = rsp.to_json_vec().expect("a decoded response re-encodes");
        let again = ResponsePrimitive::from_json_slice(&json).expect("a re-encoded response decodes");
        assert_eq!(again, rsp, "response changed in a decode/encode round trip");
    }
}

// ---------------------------------------------------------------------------------------------
// sa_message

/// A flow decoded by `flows::decode` re-encodes with `flows::encode` and decodes to itself.
fn flow_round_trip<F>(data: &[u8])
where
    F: Flow + serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(flow) = flows::decode::<F>(data) {
        let json = flows::encode(&flow).expect("a decoded flow passed its NOTEs, so it encodes");
        let again = flows::decode::<F>(&json).expect("a re-encoded flow decodes");
        assert_eq!(again, flow, "{} changed in a round trip", F::NAME);
    }
}

/// `Message::decode` (the four establishment messages, control envelopes and control errors),
/// the control-flow plaintext decoder (`serde_json` + `ControlFlow::validate`, as the control
/// channel opens it), and `flows::decode` for every flow type.
pub fn sa_message(data: &[u8]) {
    if let Ok(msg) = Message::decode(data) {
        let bytes = msg.encode();
        let again = Message::decode(&bytes).expect("a re-encoded message decodes");
        assert_eq!(again, msg, "message changed in a round trip");
        assert_eq!(again.encode(), bytes, "encoding is not stable");
    }
    if let Ok(flow) = serde_json::from_slice::<ControlFlow>(data)
        && flow.validate().is_ok()
    {
        let bytes = serde_json::to_vec(&flow).expect("control flows serialize");
        let again: ControlFlow = serde_json::from_slice(&bytes).expect("a re-encoded control flow decodes");
        assert!(again.validate().is_ok(), "a re-encoded control flow breaks a NOTE");
        assert_eq!(again, flow, "control flow changed in a round trip");
    }
    use flows::*;
    flow_round_trip::<InitiateSaRequest>(data);
    flow_round_trip::<InitiateSaConfirm>(data);
    flow_round_trip::<InitiateSaReceivedRequest>(data);
    flow_round_trip::<InitiateSaReceivedConfirm>(data);
    flow_round_trip::<SaParameterEstablishmentRequest>(data);
    flow_round_trip::<SaParameterEstablishmentConfirm>(data);
    flow_round_trip::<SendResponderKey>(data);
    flow_round_trip::<SendInitiatorKey>(data);
    flow_round_trip::<InitiatorKeyingMaterialRequest>(data);
    flow_round_trip::<InitiatorKeyingMaterialConfirm>(data);
    flow_round_trip::<ResponderKeyingMaterialRequest>(data);
    flow_round_trip::<ResponderKeyingMaterialConfirm>(data);
    flow_round_trip::<SendResponderAuthorizationContext>(data);
    flow_round_trip::<SendResponderAuthorizationKey>(data);
    flow_round_trip::<SendInitiatorAuthorizationKey>(data);
    flow_round_trip::<ResponderAuthorizationChallengeRequest>(data);
    flow_round_trip::<ResponderAuthorizationChallengeConfirm>(data);
    flow_round_trip::<InitiatorAuthorizationChallengeRequest>(data);
    flow_round_trip::<InitiatorAuthorizationChallengeConfirm>(data);
    flow_round_trip::<SaEstablishmentComplete>(data);
    flow_round_trip::<UpdateSaRequest>(data);
    flow_round_trip::<UpdateSaConfirm>(data);
    flow_round_trip::<SaIdentifierUpdateRequest>(data);
    flow_round_trip::<SaIdentifierUpdateConfirm>(data);
    flow_round_trip::<SaIdentifierUpdateResponse>(data);
    flow_round_trip::<SaKeyUpdateRequest>(data);
    flow_round_trip::<SaKeyUpdateConfirm>(data);
    flow_round_trip::<SaKeyUpdateResponse>(data);
    flow_round_trip::<SaUpdated>(data);
    flow_round_trip::<RemoveSaRequest>(data);
    flow_round_trip::<RemoveSaConfirm>(data);
    flow_round_trip::<SaRemovalRequest>(data);
    flow_round_trip::<SaRemovalConfirm>(data);
    flow_round_trip::<SaRemoved>(data);
}

// ---------------------------------------------------------------------------------------------
// ticket

/// The fixed test PKI (anchor `/trust-anchor`, Ed25519, from [`PKI_SEED`]).
pub fn fuzz_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::new(&mut SeededRng::new([PKI_SEED; 32]), FUZZ_NOW.unix_secs))
}

/// A real ticket of the fixed PKI for `subject`, as JSON (for seeds and tests).
pub fn sample_ticket_json(subject: &str, alg: SignatureAlgorithm) -> String {
    let mut rng = SeededRng::new([PKI_SEED.wrapping_add(1); 32]);
    fuzz_pki().node(subject, alg, &["C*", subject], &mut rng).ticket.to_json()
}

fn fuzz_anchors() -> &'static TrustAnchors {
    &fuzz_pki().anchors
}

/// `Ticket::from_json`, then `TrustAnchors::verify` against the fixed anchor, for the subject
/// the ticket names and for another one.
pub fn ticket(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(ticket) = Ticket::from_json(text) else { return };
    let json = ticket.to_json();
    let again = Ticket::from_json(&json).expect("a re-encoded ticket decodes");
    assert_eq!(again, ticket, "ticket changed in a round trip");
    assert_eq!(again.digest(), ticket.digest());
    let anchors = fuzz_anchors();
    let other = NodeId::new("/someone-else").expect("valid");
    for now in [0, FUZZ_NOW.unix_secs, u64::MAX] {
        if let Ok(verified) = anchors.verify(&ticket, &ticket.subject, now) {
            assert_eq!(verified.digest(), ticket.digest());
            assert!(now >= ticket.not_before && now < ticket.not_after, "accepted outside its validity window");
            assert_eq!(verified.subject(), &ticket.subject);
            // The same ticket verified again from its own JSON gives the same result.
            assert!(anchors.verify(&again, &again.subject, now).is_ok());
        }
        if ticket.subject != other {
            assert!(anchors.verify(&ticket, &other, now).is_err(), "ticket accepted for another subject");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// secured_jwe / secured_compact

/// One fixed established SA: the Initiator's entry seals, the Responder's opens.
pub struct FixedSa {
    /// The SA.
    pub sa_id: SaId,
    /// Its suite.
    pub suite: Suite,
    /// The Initiator's side.
    pub initiator: Arc<SaEntry>,
    /// The Responder's side.
    pub responder: Arc<SaEntry>,
}

/// The fixed SAs (one per [`LINK_SUITES`] entry), established once per process with
/// [`linked`] from seeds [`LINK_SEED`], [`LINK_SEED`] + 1, … at [`FUZZ_NOW`]: deterministic, so objects sealed by one process
/// (the seed generator) open in another (the fuzzer, the replay test).
pub fn fixed_sas() -> &'static [FixedSa] {
    static SAS: OnceLock<Vec<FixedSa>> = OnceLock::new();
    let sas = SAS.get_or_init(|| {
        LINK_SUITES
            .iter()
            .zip(LINK_SEED..)
            .map(|(&suite, seed)| {
                // A seed of its own per SA: the same seed would give both SAs the same ID.
                let l = linked(suite, TableConfig::default(), seed, FUZZ_NOW);
                FixedSa {
                    sa_id: l.sa_id,
                    suite,
                    initiator: l.initiator_table.get(l.sa_id).expect("installed"),
                    responder: l.responder_table.get(l.sa_id).expect("installed"),
                }
            })
            .collect()
    });
    assert_ne!(sas[0].sa_id, sas[1].sa_id, "the fixed SAs need distinct IDs");
    sas
}

fn decode_as(encoding: Encoding, wire: &mut [u8], scratch: &mut Vec<u8>) -> Option<(SaId, u64)> {
    let sealed = match encoding {
        Encoding::Jwe => decode_jwe(wire, scratch),
        Encoding::Compact => decode_compact(wire),
    };
    sealed.ok().map(|s| (s.header.sa_id, s.header.seq))
}

/// Decodes `wire` and opens it at the Responder (`at_responder`) or the Initiator of the SA it
/// names (or of the first SA).
fn open_at(encoding: Encoding, wire: &[u8], at_responder: bool) -> Result<Vec<u8>, SecureError> {
    let mut copy = wire.to_vec();
    let mut scratch = Vec::new();
    let sealed = match encoding {
        Encoding::Jwe => decode_jwe(&copy, &mut scratch)?,
        Encoding::Compact => decode_compact(&mut copy)?,
    };
    assert_eq!(sealed.encoding, encoding);
    assert!(sealed.header.key_phase <= 1, "key phase is one bit");
    let sas = fixed_sas();
    let sa = sas.iter().find(|s| s.sa_id == sealed.header.sa_id).unwrap_or(&sas[0]);
    let entry = if at_responder { &sa.responder } else { &sa.initiator };
    entry.open(sealed).map(|(p, _)| p.to_vec())
}

fn secured(encoding: Encoding, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        // The raw object (seeds are sealed by the Initiator): decode, open at the Responder.
        // Whatever opens must not open a second time.
        let mut copy = rest.to_vec();
        let mut scratch = Vec::new();
        if let Some((sa_id, seq)) = decode_as(encoding, &mut copy, &mut scratch)
            && open_at(encoding, rest, true).is_ok()
        {
            assert!(fixed_sas().iter().any(|s| s.sa_id == sa_id), "opened under an SA it does not name");
            let replay = open_at(encoding, rest, true).expect_err("the same object opened twice");
            assert!(matches!(replay, SecureError::Replayed | SecureError::TooOld), "seq {seq}: {replay:?}");
        }
    } else {
        // Tamper mode: seal a fresh object and XOR the rest of the input over it (the bytes
        // after the object truncate or extend it). Only the untouched object may open. This mode
        // runs Responder → Initiator, so its sequence numbers never collide with the seeds'.
        let sa = &fixed_sas()[usize::from(mode >> 1) % fixed_sas().len()];
        let mut wire = Vec::new();
        sa.responder.seal(encoding, TAMPER_PLAINTEXT, &mut wire).expect("seals");
        let (mask, tail) = rest.split_at(rest.len().min(wire.len()));
        for (w, m) in wire.iter_mut().zip(mask) {
            *w ^= m;
        }
        let truncate = tail.first().copied().unwrap_or(0);
        let extend = tail.get(1..).unwrap_or_default();
        let mut tampered = wire.clone();
        tampered.truncate(wire.len() - usize::from(truncate).min(wire.len()));
        tampered.extend_from_slice(extend);
        let untouched = mask.iter().all(|m| *m == 0) && truncate == 0 && extend.is_empty();
        match open_at(encoding, &tampered, false) {
            Ok(plain) => {
                assert!(untouched, "a tampered {encoding:?} object opened");
                assert_eq!(plain, TAMPER_PLAINTEXT);
            }
            Err(e) => assert!(!untouched, "the untouched {encoding:?} object did not open: {e:?}"),
        }
    }
}

/// `secure::decode_jwe`, then opening at the fixed SA (first byte even), or tampering with a
/// freshly sealed JWE (first byte odd).
pub fn secured_jwe(data: &[u8]) {
    secured(Encoding::Jwe, data);
}

/// `secure::decode_compact`, then opening at the fixed SA (first byte even), or tampering with
/// a freshly sealed compact object (first byte odd).
pub fn secured_compact(data: &[u8]) {
    secured(Encoding::Compact, data);
}

/// A sealed object of the fixed SA `index`, for seeds: `mode` byte 0 followed by the wire.
pub fn sample_sealed(index: usize, encoding: Encoding, plaintext: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    fixed_sas()[index].initiator.seal(encoding, plaintext, &mut wire).expect("seals");
    let mut out = vec![0u8];
    out.extend_from_slice(&wire);
    out
}

// ---------------------------------------------------------------------------------------------
// http_request / http_cbor

/// Parses the input format of [`http_request`]: a request line `METHOD TARGET`, header lines
/// `Name: value`, an empty line, then the body (`\n` or `\r\n` line ends). `None` when the
/// `http` crate refuses a part (not a finding: a real server would refuse it too).
pub fn parse_http_input(data: &[u8]) -> Option<http::Request<Bytes>> {
    let split = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let (head, body) = match (split(data, b"\r\n\r\n"), split(data, b"\n\n")) {
        (Some(a), Some(b)) if b < a => (&data[..b], &data[b + 2..]),
        (Some(a), _) => (&data[..a], &data[a + 4..]),
        (None, Some(b)) => (&data[..b], &data[b + 2..]),
        (None, None) => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next()?;
    let sp = request_line.iter().position(|b| *b == b' ')?;
    let method = http::Method::from_bytes(&request_line[..sp]).ok()?;
    let uri = http::Uri::try_from(&request_line[sp + 1..]).ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let colon = line.iter().position(|b| *b == b':')?;
        let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..].strip_prefix(b" ").unwrap_or(&line[colon + 1..]);
        builder = builder.header(name, http::HeaderValue::from_bytes(value).ok()?);
    }
    builder.body(Bytes::copy_from_slice(body)).ok()
}

/// Small limits, so that the fuzzer reaches every size check.
fn small_limits() -> Limits {
    Limits { max_header_value_bytes: 256, max_body_bytes: 4096, max_target_bytes: 512, max_json_depth: 8 }
}

fn request_checks(request: &http::Request<Bytes>) {
    for limits in [Limits::default(), small_limits()] {
        if let Ok(primitive) = request_to_primitive_with_limits(request, &limits) {
            let _ = primitive.validate();
            for media in [MediaType::Json, MediaType::Cbor] {
                if let Ok(back) = onem2m_sa_http::primitive_to_request_as(&primitive, "", media) {
                    // What the binding builds, it reads back to a request of the same kind.
                    if let Ok(again) = request_to_primitive_with_limits(&back, &Limits::default()) {
                        assert_eq!(again.op, primitive.op, "operation changed through HTTP");
                        assert_eq!(again.pc, primitive.pc, "content changed through HTTP ({media:?})");
                    }
                }
            }
            let _ = primitive_to_request(&primitive, "http://peer.example:8080");
        }
    }
}

/// `request_to_primitive_with_limits` over an HTTP request built from the bytes (see
/// [`parse_http_input`]); on success, `primitive_to_request` must not panic, and what it builds
/// must map back to the same operation and content.
pub fn http_request(data: &[u8]) {
    if let Some(request) = parse_http_input(data) {
        request_checks(&request);
    }
}

/// The bytes as a CBOR body: first byte picks the method and headers (`application/cbor`, with
/// or without `;ty=`), the rest is the body; also read as a CBOR HTTP response.
pub fn http_cbor(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let body = Bytes::copy_from_slice(body);
    let (method, content_type) = match selector % 4 {
        0 => (http::Method::POST, "application/cbor;ty=4"),
        1 => (http::Method::POST, "application/cbor"),
        2 => (http::Method::PUT, "application/cbor"),
        _ => (http::Method::POST, "application/cbor;ty=2"),
    };
    let request = http::Request::builder()
        .method(method)
        .uri("/~/id-in/cse-base/cnt1")
        .header("X-M2M-Origin", "CAE01")
        .header("X-M2M-RI", "r1")
        .header("X-M2M-RVI", "3")
        .header("Content-Type", content_type)
        .body(body.clone())
        .expect("fixed parts are valid");
    request_checks(&request);
    let response = http::Response::builder()
        .status(201)
        .header("X-M2M-RSC", "2001")
        .header("X-M2M-RI", "r1")
        .header("Content-Type", "application/cbor")
        .body(body)
        .expect("fixed parts are valid");
    if let Ok(rsp) = http_to_response(&response) {
        for media in [MediaType::Cbor, MediaType::Json] {
            if let Ok(back) = onem2m_sa_http::response_to_http_as(&rsp, media) {
                let again = http_to_response(&back).expect("a built response reads back");
                assert_eq!(again.pc, rsp.pc, "content changed through HTTP ({media:?})");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sidecar_config

/// `Config::parse_at` (`Config::parse` at [`FUZZ_NOW`]) over the bytes as TOML, with the file
/// `fuzz.toml`: files it names fail to read (or read what happens to be in the working
/// directory); nothing may panic.
pub fn sidecar_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = onem2m_sa_sidecar::config::Config::parse_at(text, Path::new("fuzz.toml"), FUZZ_NOW.unix_secs);
}

// ---------------------------------------------------------------------------------------------
// replay_window

/// One operation on the window.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum WindowOp {
    /// `check(seq)`.
    Check(SeqRef),
    /// `mark(seq)`.
    Mark(SeqRef),
}

/// A sequence number, mostly near the window's edge so that the interesting cases are hit.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SeqRef {
    /// Any number.
    Absolute(u64),
    /// The highest marked number plus this (saturating; from 0 before the first mark).
    AboveHighest(u16),
    /// The highest marked number minus this (saturating).
    BelowHighest(u16),
    /// The highest marked number minus the window size, plus this (the left edge).
    NearEdge(i8),
}

/// The structured input of [`replay_window`].
#[derive(Debug, Clone, Arbitrary)]
pub struct WindowInput {
    /// Requested window size (clamped and rounded by the window).
    pub size: u16,
    /// The operations, in order.
    pub ops: Vec<WindowOp>,
}

/// The reference model: every accepted number in a set, the highest, the size.
struct Model {
    size: u64,
    highest: Option<u64>,
    accepted: HashSet<u64>,
}

impl Model {
    fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(h) = self.highest else { return Ok(()) };
        if seq > h {
            Ok(())
        } else if h - seq >= self.size {
            Err(ReplayError::TooOld)
        } else if self.accepted.contains(&seq) {
            Err(ReplayError::Replayed)
        } else {
            Ok(())
        }
    }

    fn mark(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        self.accepted.insert(seq);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        Ok(())
    }
}

/// Drives `onem2m_sa::replay::ReplayWindow` with arbitrary check/mark operations and compares
/// every answer with the reference model.
pub fn replay_window(data: &[u8]) {
    let Ok(input) = WindowInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    replay_window_ops(&input);
}

/// [`replay_window`] over an already structured input.
pub fn replay_window_ops(input: &WindowInput) {
    let window = ReplayWindow::new(usize::from(input.size));
    let size = window.size() as u64;
    assert!(size >= 64 && size % 64 == 0, "window size {size}");
    let mut model = Model { size, highest: None, accepted: HashSet::new() };
    for (i, op) in input.ops.iter().enumerate() {
        let seq_of = |r: SeqRef| {
            let h = model.highest.unwrap_or(0);
            match r {
                SeqRef::Absolute(s) => s,
                SeqRef::AboveHighest(d) => h.saturating_add(u64::from(d)),
                SeqRef::BelowHighest(d) => h.saturating_sub(u64::from(d)),
                SeqRef::NearEdge(d) => h.saturating_sub(size).saturating_add_signed(i64::from(d)),
            }
        };
        match *op {
            WindowOp::Check(r) => {
                let seq = seq_of(r);
                assert_eq!(window.check(seq), model.check(seq), "op {i}: check({seq}) after {:?}", model.highest);
            }
            WindowOp::Mark(r) => {
                let seq = seq_of(r);
                let expected = model.mark(seq);
                assert_eq!(window.mark(seq), expected, "op {i}: mark({seq})");
            }
        }
        assert_eq!(window.highest(), model.highest, "op {i}: highest");
    }
}
