//! Full mutual-authentication establishments per second, per suite, on one core.
//!
//! One iteration runs both sides of a complete establishment in-process: SaInit, SaInitReply,
//! SaAuth, SaAuthReply, with ticket verification, two signatures (three with an authentication
//! challenge to the Responder), the KEM operations and the key schedule. No I/O. The trust
//! anchors remember verified tickets, so from the second iteration on each side skips the
//! issuer-signature check of the peer's ticket, as between two nodes that establish many SAs;
//! `<alg>-new-peer/*` gives both sides fresh anchors every iteration (a first establishment).
//!
//! Reference, in the same group: rustls (aws-lc-rs provider) TLS 1.3 full handshakes with mutual
//! authentication, both sides in one thread over in-memory buffers (`rustls-tls13-mutual/*`).
//! Certificates come from a CA generated at start; the server verifies the client certificate with
//! `WebPkiClientVerifier` and requires it. Resumption and tickets are off, so every handshake is full.

use std::ops::DerefMut;
use std::sync::Arc;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use onem2m_sa::crypto::{SignatureAlgorithm, Suite};
use onem2m_sa::establish::{AcceptAll, Initiator, InitiatorConfig, Responder, ResponderConfig};
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
                    establish_once(icfg.clone(), rcfg.clone(), &request, now, &mut rng);
                })
            });
            // The Initiator challenging the Responder for a signature (authentication challenge)
            // instead of a KEM decapsulation (encryption challenge, the default).
            if suite == Suite::X25519_AES128GCM_SHA256 || suite == Suite::X25519MLKEM768_AES256GCM_SHA384 {
                let mut icfg = icfg.clone();
                icfg.responder_challenge = ChallengeKind::Authentication;
                group.bench_function(BenchmarkId::new(format!("{alg:?}-auth-challenge"), suite.name()), |b| {
                    b.iter(|| {
                        establish_once(icfg.clone(), rcfg.clone(), &request, now, &mut rng);
                    })
                });
            }
            // The first establishment with a peer (or with its new ticket): both sides verify
            // the ticket's issuer signature, as before the trust anchors remembered tickets.
            if suite == Suite::X25519_AES128GCM_SHA256 || suite == Suite::X25519MLKEM768_AES256GCM_SHA384 {
                group.bench_function(BenchmarkId::new(format!("{alg:?}-new-peer"), suite.name()), |b| {
                    b.iter(|| {
                        let mut icfg = icfg.clone();
                        icfg.trust_anchors = Arc::new((*pki.anchors).clone());
                        let mut rcfg = rcfg.clone();
                        rcfg.trust_anchors = Arc::new((*pki.anchors).clone());
                        establish_once(icfg, rcfg, &request, now, &mut rng);
                    })
                });
            }
        }
    }
    rustls_reference(&mut group);
    group.finish();
}

/// Both sides of one establishment, SaInit to SaAuthReply.
fn establish_once(
    icfg: InitiatorConfig,
    rcfg: ResponderConfig,
    request: &InitiateSaRequest,
    now: Now,
    rng: &mut SystemRng,
) {
    let (i, m1) = Initiator::start(icfg, request, rng).unwrap();
    let Message::Init(init) = Message::decode(&m1).unwrap() else { unreachable!() };
    let sa_id = SaId::random(rng);
    let accepted = Responder::accept(rcfg, &mut AcceptAll, &init, sa_id, rng).ok().unwrap();
    let (i, m3) = i.handle(&accepted.reply, now, rng).unwrap();
    let Message::Auth(auth) = Message::decode(&m3).unwrap() else { unreachable!() };
    let (r_sa, m4, _) = accepted.state.handle(&auth, now).ok().unwrap();
    let i_sa = i.handle(&m4).unwrap();
    assert_eq!(i_sa.transcript_hash, r_sa.transcript_hash);
}

/// rustls TLS 1.3 mutual-auth full handshakes: (certificate algorithm, key exchange group, cipher suite).
fn rustls_reference(group: &mut BenchmarkGroup<'_, WallTime>) {
    use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};
    let variants: [(&str, &'static rcgen::SignatureAlgorithm, _, _); 4] = [
        ("Ed25519", &rcgen::PKCS_ED25519, kx_group::X25519, cipher_suite::TLS13_AES_128_GCM_SHA256),
        ("ES256", &rcgen::PKCS_ECDSA_P256_SHA256, kx_group::X25519, cipher_suite::TLS13_AES_128_GCM_SHA256),
        (
            "Ed25519-X25519MLKEM768",
            &rcgen::PKCS_ED25519,
            kx_group::X25519MLKEM768,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            "ES256-X25519MLKEM768",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            kx_group::X25519MLKEM768,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ),
    ];
    for (name, alg, kx, suite) in variants {
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: vec![suite],
            kx_groups: vec![kx],
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let (client_config, server_config) = tls_configs(alg, provider);
        let mut buf = Vec::with_capacity(16 * 1024);

        // One checked handshake first: full, mutual, on the intended group and suite.
        let (client, server) = tls_handshake(&client_config, &server_config, &mut buf);
        assert_eq!(client.handshake_kind(), Some(rustls::HandshakeKind::Full));
        assert_eq!(server.handshake_kind(), Some(rustls::HandshakeKind::Full));
        assert_eq!(client.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(server.negotiated_key_exchange_group().map(|g| g.name()), Some(kx.name()));
        assert_eq!(server.negotiated_cipher_suite(), Some(suite));
        assert_eq!(server.peer_certificates().map(<[_]>::len), Some(1), "client certificate not received");

        group.bench_function(BenchmarkId::new("rustls-tls13-mutual", name), |b| {
            b.iter(|| tls_handshake(&client_config, &server_config, &mut buf))
        });
    }
}

/// A fresh CA, a server certificate for "id-in.example" and a client certificate, all with `alg`,
/// and the client and server configurations using them (TLS 1.3 only, no resumption, no tickets).
fn tls_configs(
    alg: &'static rcgen::SignatureAlgorithm,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let ca_key = KeyPair::generate_for(alg).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);

    let leaf = |san: &str, eku: ExtendedKeyUsagePurpose| -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &ca).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::from(key))
    };
    let (server_chain, server_key) = leaf("id-in.example", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_chain, client_key) = leaf("id-asn.example", ExtendedKeyUsagePurpose::ClientAuth);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let versions = &[&rustls::version::TLS13];

    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(client_chain, client_key)
        .unwrap();
    client.resumption = rustls::client::Resumption::disabled();

    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build().unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    (Arc::new(client), Arc::new(server))
}

/// One full handshake: new connections from the prebuilt configurations, bytes pumped through `buf`
/// until neither side is handshaking.
fn tls_handshake(
    client_config: &Arc<rustls::ClientConfig>,
    server_config: &Arc<rustls::ServerConfig>,
    buf: &mut Vec<u8>,
) -> (rustls::ClientConnection, rustls::ServerConnection) {
    let name = rustls::pki_types::ServerName::try_from("id-in.example").unwrap();
    let mut client = rustls::ClientConnection::new(client_config.clone(), name).unwrap();
    let mut server = rustls::ServerConnection::new(server_config.clone()).unwrap();
    let mut flights = 0;
    while client.is_handshaking() || server.is_handshaking() {
        flights += 1;
        assert!(flights <= 8, "handshake did not complete");
        transfer(&mut client, &mut server, buf);
        transfer(&mut server, &mut client, buf);
    }
    (client, server)
}

/// Moves everything `from` has to send into `to` and lets `to` process it.
fn transfer<A, B>(
    from: &mut impl DerefMut<Target = rustls::ConnectionCommon<A>>,
    to: &mut impl DerefMut<Target = rustls::ConnectionCommon<B>>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).unwrap();
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
}

criterion_group!(benches, establish);
criterion_main!(benches);
