//! The store over TLS (`rediss://`): a real `redis-server` with a TLS port, its
//! certificate and the replicas' client certificates issued by a test CA (rcgen). Replicas
//! given the CA and a client certificate share SAs through it; one without the CA (the system's
//! roots do not know it), or without a client certificate where Redis asks for one, cannot
//! reach Redis and says so — it never falls back to plaintext.
//!
//! Without `redis-server` on the PATH the test says so and passes, unless
//! `ONEM2M_REQUIRE_REDIS=1` (CI sets it), where it fails.

mod common;

use std::time::Duration;

use common::TlsRedis;
use onem2m_sa::Now;
use onem2m_sa::crypto::Suite;
use onem2m_sa::table::TableConfig;
use onem2m_sa::testkit::linked;
use onem2m_sa_store_redis::{Kek, RedisStore, RedisStoreConfig, RedisTls, StoreError};

fn config(port: u16, tls: RedisTls) -> RedisStoreConfig {
    RedisStoreConfig {
        tls,
        timeout: Duration::from_millis(1_000),
        ..RedisStoreConfig::new(format!("rediss://127.0.0.1:{port}/"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sas_over_tls_and_refuse_a_server_they_cannot_verify() {
    let Some(tls_redis) = TlsRedis::start() else { return };
    let (pki, tls_port) = (&tls_redis.pki, tls_redis.tls_port);
    let trusted = RedisTls {
        ca_pem: Some(pki.ca.clone().into_bytes()),
        client: Some((pki.client.0.clone().into_bytes(), zeroize::Zeroizing::new(pki.client.1.clone().into_bytes()))),
    };
    let kek = || Kek::new(&[0x21; 32]).unwrap();
    let a = RedisStore::connect(config(tls_port, trusted.clone()), kek(), TableConfig::default()).await.unwrap();
    let b = RedisStore::connect(config(tls_port, trusted.clone()), kek(), TableConfig::default()).await.unwrap();
    b.spawn_listener(Duration::from_millis(50));
    let l = linked(Suite::X25519_AES128GCM_SHA256, TableConfig::default(), 51, Now::new(1_000, 1_800_000_000));
    let sa = l.pair.responder.sa(l.sa_id).unwrap().sa.clone();
    a.publish(&sa).await.unwrap();
    assert!(b.load(sa.sa_id).await.is_ok());
    assert!(b.table().get(sa.sa_id).is_some(), "the SA crossed Redis over TLS");
    assert!(a.accept(sa.sa_id, 0, 1).await.unwrap());
    assert!(!b.accept(sa.sa_id, 0, 1).await.unwrap(), "the shared window, over TLS");

    // The system's roots do not know the test CA: Redis is not verified, nothing is sent.
    let unverified = RedisTls { ca_pem: None, ..trusted.clone() };
    let e = RedisStore::connect(config(tls_port, unverified), kek(), TableConfig::default()).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    // Redis asks for a client certificate: without one, refused.
    let anonymous = RedisTls { client: None, ..trusted.clone() };
    let e = RedisStore::connect(config(tls_port, anonymous), kek(), TableConfig::default()).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    // Plaintext to the TLS port: not Redis's answer.
    let plain = RedisStoreConfig {
        timeout: Duration::from_millis(1_000),
        ..RedisStoreConfig::new(format!("redis://127.0.0.1:{tls_port}/"))
    };
    assert!(RedisStore::connect(plain, kek(), TableConfig::default()).await.is_err());
    // Nothing secret in the configuration's Debug: no key, no password.
    let mut with_password = config(tls_port, trusted);
    with_password.url = format!("rediss://default:s3cret@127.0.0.1:{tls_port}/");
    with_password.cluster = vec!["rediss://:s3cret@10.0.0.1:7000".into()];
    let shown = format!("{with_password:?}");
    assert!(!shown.contains("PRIVATE KEY") && !shown.contains("BEGIN") && !shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("default:<redacted>@127.0.0.1"), "{shown}");
}
