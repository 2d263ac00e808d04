//! Flood resistance: the Responder's stateless cookie check before any public-key work, once it
//! is under load or a source exceeds its rate, and the per-source bound on half-open
//! establishments.

use std::sync::Arc;

use onem2m_sa::credential::Credentials;
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::{MAX_COOKIES, ResponderAgent};
use onem2m_sa::flows::{InitiateSaReceivedConfirm, InitiateSaReceivedRequest, InitiateSaRequest, RejectionCause};
use onem2m_sa::manage::{COOKIE_ROTATION_MS, InitiatorEvent, InitiatorSam, Limits, ResponderSam, Timing};
use onem2m_sa::message::{Message, SaCookie, SaInit};
use onem2m_sa::rng::SeededRng;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa::{EstablishError, Now};

const T0: Now = Now { mono_ms: 1_000, unix_secs: 1_800_000_000 };

/// Counts the SaInits that got past the cookie gate (each one costs the Responder public-key
/// work: key encapsulation, a signature).
#[derive(Default)]
struct Counting(usize);

impl ResponderAgent for Counting {
    fn initiate_sa_received(&mut self, request: &InitiateSaReceivedRequest) -> InitiateSaReceivedConfirm {
        self.0 += 1;
        InitiateSaReceivedConfirm::accept(request.sa_id)
    }
}

struct World {
    pki: TestPki,
    responder: Arc<Credentials>,
    rng: SeededRng,
}

fn world() -> World {
    let mut rng = SeededRng::new([7; 32]);
    let pki = TestPki::new(&mut rng, T0.unix_secs);
    let responder = pki.node("/id-in", SignatureAlgorithm::Ed25519, &["/id-in"], &mut rng);
    World { pki, responder, rng }
}

fn responder(w: &World, limits: Limits) -> ResponderSam {
    ResponderSam::new(
        responder_config(w.responder.clone(), w.pki.anchors.clone(), &Suite::ALL),
        Timing::default(),
        limits,
    )
}

fn initiator(w: &mut World, id: &str) -> InitiatorSam {
    let creds = w.pki.node(id, SignatureAlgorithm::Ed25519, &["C*"], &mut w.rng);
    InitiatorSam::new(initiator_config(creds, w.pki.anchors.clone(), &Suite::ALL), Timing::default())
}

fn request(id: &str) -> InitiateSaRequest {
    InitiateSaRequest { initiator: id.parse().unwrap(), responder: "/id-in".parse().unwrap() }
}

/// One full establishment from `source`, answering cookies; `Ok` with the number of cookie
/// round trips it took.
fn establish(
    w: &mut World,
    sam: &mut ResponderSam,
    agent: &mut Counting,
    id: &str,
    source: &[u8],
    now: Now,
) -> Result<usize, String> {
    let mut ini = initiator(w, id);
    let mut ex = ini.initiate(&request(id), now, &mut w.rng).map_err(|c| format!("{c:?}"))?;
    let mut cookies = 0;
    for _ in 0..6 {
        let reply = sam.handle_from(source, &ex.bytes, now, &mut w.rng, agent).reply.ok_or("no reply")?;
        if matches!(Message::decode(&reply), Ok(Message::Cookie(_))) {
            cookies += 1;
        }
        match ini.handle_response(ex.id, &reply, now, &mut w.rng).into_iter().next() {
            Some(InitiatorEvent::Transmit(next)) => ex = next,
            Some(InitiatorEvent::Established { .. }) => return Ok(cookies),
            other => return Err(format!("{other:?}")),
        }
    }
    Err("no end".into())
}

/// A bogus SaInit: a real message (fresh keys, fresh nonce) whose sender never answers.
fn bogus_init(w: &mut World, id: &str) -> Vec<u8> {
    let mut ini = initiator(w, id);
    ini.initiate(&request(id), T0, &mut w.rng).unwrap().bytes
}

fn is_cookie(reply: &[u8]) -> bool {
    matches!(Message::decode(reply), Ok(Message::Cookie(_)))
}

#[test]
fn under_a_flood_from_many_sources_legitimate_establishments_succeed_and_state_stays_bounded() {
    let mut w = world();
    let limits = Limits { max_half_open: 64, max_half_open_per_peer: 4, cookie_threshold: 16, ..Limits::default() };
    let mut sam = responder(&w, limits);
    let mut agent = Counting::default();
    // Bogus SaInits are expensive to make; a few real ones, sent again and again under
    // different nonces would be refused as replays, so vary them by re-encoding with new nonces.
    let templates: Vec<SaInit> = (0..8)
        .map(|i| match Message::decode(&bogus_init(&mut w, &format!("/id-bot{i}"))).unwrap() {
            Message::Init(m) => m,
            _ => unreachable!(),
        })
        .collect();
    let (mut ok, mut bogus_sent, mut with_cookie) = (0, 0, 0);
    for round in 0..100u32 {
        // 100 bogus SaInits from 100 spoofed sources between two legitimate establishments.
        for k in 0..100u32 {
            let mut m = templates[(k % 8) as usize].clone();
            m.nonce = [round.to_be_bytes(), k.to_be_bytes()].concat().repeat(4);
            let source = [10, (k % 250) as u8, (round % 250) as u8, 1];
            let out = sam.handle_from(&source, &Message::Init(m).encode(), T0, &mut w.rng, &mut agent);
            assert!(out.reply.is_some());
            bogus_sent += 1;
        }
        assert!(sam.half_open() <= limits.max_half_open, "state bounded");
        let source = [192, 0, 2, round as u8];
        if let Ok(cookies) = establish(&mut w, &mut sam, &mut agent, &format!("/id-mn{round}"), &source, T0) {
            ok += 1;
            with_cookie += usize::from(cookies > 0);
        }
    }
    assert_eq!(bogus_sent, 10_000);
    assert!(ok >= 99, "legitimate establishments: {ok}/100");
    assert_eq!(with_cookie, ok, "under load every legitimate establishment went through a cookie");
    // Public-key work: the bogus SaInits that came before the threshold, and the legitimate ones.
    let bogus_processed = agent.0 - ok;
    assert!(bogus_processed <= limits.cookie_threshold, "public-key work for {bogus_processed} bogus SaInits");
    assert!(sam.half_open() <= limits.cookie_threshold, "only the early bogus ones are half-open");
}

#[test]
fn a_flood_claiming_a_peers_id_from_another_source_does_not_lock_the_peer_out() {
    let mut w = world();
    let limits = Limits { max_half_open_per_peer: 3, init_rate_per_source: u32::MAX, ..Limits::default() };
    let mut sam = responder(&w, limits);
    let mut agent = Counting::default();
    let attacker = [203, 0, 113, 9];
    let mut busy = 0;
    for _ in 0..20 {
        let m1 = bogus_init(&mut w, "/id-victim");
        let reply = sam.handle_from(&attacker, &m1, T0, &mut w.rng, &mut agent).reply.unwrap();
        if matches!(Message::decode(&reply), Ok(Message::InitReply(r)) if r.parameters.cause == Some(RejectionCause::Busy))
        {
            busy += 1;
        }
    }
    assert_eq!((sam.half_open(), busy), (3, 17), "the attacker's source holds its quota, no more");
    // The real /id-victim, from its own address, establishes.
    establish(&mut w, &mut sam, &mut agent, "/id-victim", &[198, 51, 100, 7], T0).unwrap();
}

#[test]
fn a_source_over_its_rate_must_return_a_cookie_and_the_initiator_does() {
    let mut w = world();
    let limits = Limits { init_rate_per_source: 2, ..Limits::default() };
    let mut sam = responder(&w, limits);
    let mut agent = Counting::default();
    let source = [198, 51, 100, 1];
    let rounds: Vec<usize> =
        (0..4).map(|i| establish(&mut w, &mut sam, &mut agent, &format!("/id-mn{i}"), &source, T0).unwrap()).collect();
    assert_eq!(rounds, [0, 0, 1, 1], "the third SaInit in a second needs a cookie");
    // A new second, a new budget.
    let later = Now { mono_ms: T0.mono_ms + 1_000, ..T0 };
    assert_eq!(establish(&mut w, &mut sam, &mut agent, "/id-mn9", &source, later).unwrap(), 0);
    assert_eq!(agent.0, 5, "public-key work only for SaInits that passed");
}

#[test]
fn cookies_are_bound_to_source_initiator_nonce_and_key_epoch() {
    let mut w = world();
    let limits = Limits { cookie_threshold: 0, ..Limits::default() };
    let mut sam = responder(&w, limits);
    let mut agent = Counting::default();
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let m1 = bogus_init(&mut w, "/id-mn1");
    let reply = sam.handle_from(&a, &m1, T0, &mut w.rng, &mut agent).reply.unwrap();
    let Ok(Message::Cookie(SaCookie { cookie, .. })) = Message::decode(&reply) else { panic!("cookie expected") };
    let Ok(Message::Init(init)) = Message::decode(&m1) else { unreachable!() };
    let with = |mut m: SaInit, c: &[u8]| {
        m.cookie = Some(c.to_vec());
        Message::Init(m).encode()
    };

    // From another source, with another nonce or another initiator, or forged: a new cookie,
    // no state, no public-key work.
    let mut other_nonce = init.clone();
    other_nonce.nonce[0] ^= 1;
    let mut other_id = init.clone();
    other_id.initiator = "/id-mn2".parse().unwrap();
    let mut forged = cookie.clone();
    forged[10] ^= 1;
    for (source, bytes) in [
        (&b, with(init.clone(), &cookie)),
        (&a, with(other_nonce, &cookie)),
        (&a, with(other_id, &cookie)),
        (&a, with(init.clone(), &forged)),
        (&a, with(init.clone(), &cookie[..8])),
    ] {
        let reply = sam.handle_from(source, &bytes, T0, &mut w.rng, &mut agent).reply.unwrap();
        assert!(is_cookie(&reply));
    }
    assert_eq!((agent.0, sam.half_open()), (0, 0));

    // The cookie stays good across one key rotation, not two.
    let next = Now { mono_ms: T0.mono_ms + COOKIE_ROTATION_MS, ..T0 };
    let fresh = bogus_init(&mut w, "/id-mn3"); // rotates the key
    assert!(is_cookie(&sam.handle_from(&a, &fresh, next, &mut w.rng, &mut agent).reply.unwrap()));
    let reply = sam.handle_from(&a, &with(init.clone(), &cookie), next, &mut w.rng, &mut agent).reply.unwrap();
    assert!(!is_cookie(&reply), "accepted under the previous key");
    assert_eq!(agent.0, 1);
    let after = Now { mono_ms: T0.mono_ms + 2 * COOKIE_ROTATION_MS, ..T0 };
    let fresh = bogus_init(&mut w, "/id-mn4");
    assert!(is_cookie(&sam.handle_from(&a, &fresh, after, &mut w.rng, &mut agent).reply.unwrap()));
    let mut again = init.clone();
    again.nonce[1] ^= 1; // not the replayed nonce: only the old cookie is wrong
    let reply = sam.handle_from(&a, &with(again, &cookie), after, &mut w.rng, &mut agent).reply.unwrap();
    assert!(is_cookie(&reply), "two rotations later the cookie is stale");
}

#[test]
fn an_initiator_gives_up_on_a_responder_that_keeps_asking_for_cookies() {
    let mut w = world();
    let mut ini = initiator(&mut w, "/id-mn1");
    let ex = ini.initiate(&request("/id-mn1"), T0, &mut w.rng).unwrap();
    let ask = Message::Cookie(SaCookie { version: 1, cookie: vec![9; 20] }).encode();
    let mut id = ex.id;
    for _ in 0..MAX_COOKIES {
        match ini.handle_response(id, &ask, T0, &mut w.rng).into_iter().next() {
            Some(InitiatorEvent::Transmit(next)) => {
                let Ok(Message::Init(m)) = Message::decode(&next.bytes) else { panic!("SaInit again") };
                assert_eq!(m.cookie.as_deref(), Some(&[9u8; 20][..]));
                id = next.id;
            }
            other => panic!("{other:?}"),
        }
    }
    match ini.handle_response(id, &ask, T0, &mut w.rng).into_iter().next() {
        Some(InitiatorEvent::EstablishFailed { error, .. }) => {
            assert_eq!(error, EstablishError::Rejected(RejectionCause::Busy))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cookies_do_not_enter_the_transcript_and_establishment_completes_with_one() {
    let mut w = world();
    let mut sam = responder(&w, Limits { cookie_threshold: 0, ..Limits::default() });
    let mut agent = Counting::default();
    assert_eq!(establish(&mut w, &mut sam, &mut agent, "/id-mn1", &[10, 1, 1, 1], T0).unwrap(), 1);
    assert_eq!(establish(&mut w, &mut sam, &mut agent, "/id-mn2", &[], T0).unwrap(), 1, "no source: still works");
    assert_eq!(sam.sas().count(), 2);
}

#[test]
fn concurrent_establishments_never_take_the_responder_past_max_sas() {
    let mut w = world();
    let mut sam = responder(&w, Limits { max_sas: 2, ..Limits::default() });
    let mut agent = Counting::default();
    establish(&mut w, &mut sam, &mut agent, "/id-mn0", &[], T0).unwrap();
    // Two establishments at once with one SA left: the second SaInit is refused at once.
    let mut a = initiator(&mut w, "/id-mn1");
    let mut b = initiator(&mut w, "/id-mn2");
    let ea = a.initiate(&request("/id-mn1"), T0, &mut w.rng).unwrap();
    let eb = b.initiate(&request("/id-mn2"), T0, &mut w.rng).unwrap();
    let ra = sam.handle(&ea.bytes, T0, &mut w.rng, &mut agent).reply.unwrap();
    let rb = sam.handle(&eb.bytes, T0, &mut w.rng, &mut agent).reply.unwrap();
    let busy = |r: &[u8]| matches!(Message::decode(r), Ok(Message::InitReply(m)) if m.parameters.cause == Some(RejectionCause::Busy));
    assert!(!busy(&ra) && busy(&rb), "the half-open establishment holds the last SA");
    let Some(InitiatorEvent::Transmit(auth)) = a.handle_response(ea.id, &ra, T0, &mut w.rng).into_iter().next() else {
        panic!("SaAuth expected")
    };
    let done = sam.handle(&auth.bytes, T0, &mut w.rng, &mut agent).reply.unwrap();
    assert!(matches!(
        a.handle_response(auth.id, &done, T0, &mut w.rng).into_iter().next(),
        Some(InitiatorEvent::Established { .. })
    ));
    assert_eq!(sam.sas().count(), 2);
}

#[test]
fn an_initiator_refuses_an_sa_identifier_it_already_uses_with_another_peer() {
    use onem2m_sa::testkit::ScriptedRng;
    let mut w = world();
    let other = w.pki.node("/id-mn9", SignatureAlgorithm::Ed25519, &["/id-mn9"], &mut w.rng);
    let mut first = responder(&w, Limits::default());
    let mut second = ResponderSam::new(
        responder_config(other, w.pki.anchors.clone(), &Suite::ALL),
        Timing::default(),
        Limits::default(),
    );
    let mut ini = initiator(&mut w, "/id-asn");
    let table = std::sync::Arc::new(onem2m_sa::table::SaTable::new(Default::default()));
    ini.attach_table(table.clone());

    // An SA with /id-in.
    let run = |ini: &mut InitiatorSam, sam: &mut ResponderSam, to: &str, rng: &mut dyn onem2m_sa::rng::Rng| {
        let req = InitiateSaRequest { initiator: "/id-asn".parse().unwrap(), responder: to.parse().unwrap() };
        let mut ex = ini.initiate(&req, T0, rng).unwrap();
        loop {
            let reply = sam.handle(&ex.bytes, T0, rng, &mut Counting::default()).reply.unwrap();
            match ini.handle_response(ex.id, &reply, T0, rng).into_iter().next() {
                Some(InitiatorEvent::Transmit(next)) => ex = next,
                other => return other,
            }
        }
    };
    assert!(matches!(run(&mut ini, &mut first, "/id-in", &mut w.rng), Some(InitiatorEvent::Established { .. })));
    let taken = table.entries()[0].sa_id();
    // /id-mn9 picks the same identifier (it saw it on the wire): refused, the first SA untouched.
    let mut forced = ScriptedRng::new(vec![taken.0.to_vec()], 3);
    match run(&mut ini, &mut second, "/id-mn9", &mut forced) {
        Some(InitiatorEvent::EstablishFailed { error, .. }) => {
            assert!(matches!(error, EstablishError::Protocol(_)), "{error:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(table.get(taken).unwrap().peer().as_str(), "/id-in");
    assert_eq!(table.by_peer(&"/id-in".parse().unwrap()).len(), 1);
    assert_eq!(ini.sas().count(), 1);
}
