//! Full mutual-authentication establishments per second, per suite, on one core.
//!
//! One iteration runs both sides of a complete establishment in-process: SaInit, SaInitReply,
//! SaAuth, SaAuthReply, with ticket verification, two signatures (three with an authentication
//! challenge to the Responder), the KEM operations and the key schedule. No I/O.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::{AcceptAll, Initiator, Responder};
use onem2m_sa::flows::{ChallengeKind, InitiateSaRequest};
use onem2m_sa::message::Message;
use onem2m_sa::rng::SystemRng;
use onem2m_sa::testkit::{TestPki, initiator_config, responder_config};
use onem2m_sa::{Now, SaId};

fn establish(c: &mut Criterion) {
    let mut rng = SystemRng;
    let now = Now::new(0, 1_800_000_000);
    let pki = TestPki::new(&mut rng, now.unix_secs);
    let mut group = c.benchmark_group("establish");
    group.throughput(Throughput::Elements(1));
    for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::EcdsaP256Sha256] {
        let i_creds = pki.node("/id-asn", alg, &["C*"], &mut rng);
        let r_creds = pki.node("/id-in", alg, &["/id-in"], &mut rng);
        for suite in Suite::ALL {
            let icfg = initiator_config(i_creds.clone(), pki.anchors.clone(), &[suite]);
            let mut rcfg = responder_config(r_creds.clone(), pki.anchors.clone(), &[suite]);
            rcfg.initiator_challenge = ChallengeKind::Authentication;
            let request = InitiateSaRequest { initiator: i_creds.node_id.clone(), responder: r_creds.node_id.clone() };
            group.bench_function(BenchmarkId::new(format!("{alg:?}"), suite.name()), |b| {
                b.iter(|| {
                    let (i, m1) = Initiator::start(icfg.clone(), &request, &mut rng).unwrap();
                    let Message::Init(init) = Message::decode(&m1).unwrap() else { unreachable!() };
                    let sa_id = SaId::random(&mut rng);
                    let accepted =
                        Responder::accept(rcfg.clone(), &mut AcceptAll, &init, sa_id, &mut rng).ok().unwrap();
                    let (i, m3) = i.handle(&accepted.reply, now, &mut rng).unwrap();
                    let Message::Auth(auth) = Message::decode(&m3).unwrap() else { unreachable!() };
                    let (r_sa, m4, _) = accepted.state.handle(&auth, now).ok().unwrap();
                    let i_sa = i.handle(&m4).unwrap();
                    assert_eq!(i_sa.transcript_hash, r_sa.transcript_hash);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, establish);
criterion_main!(benches);
