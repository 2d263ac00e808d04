//! The MQTT suite against the in-process broker (`onem2m_sa_mqtt::broker`): nothing to install.

mod common;

use std::net::SocketAddr;

use onem2m_sa_mqtt::broker::{Broker, BrokerConfig};

impl common::TestBroker for Broker {
    fn addr(&self) -> SocketAddr {
        self.local_addr()
    }

    async fn restart(&self) {
        Broker::restart(self).await.unwrap();
    }
}

async fn broker() -> Broker {
    Broker::start(([127, 0, 0, 1], 0).into(), BrokerConfig::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_through_the_embedded_broker() {
    let b = broker().await;
    common::round_trips(b.local_addr(), "emb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dropped_and_counted() {
    let b = broker().await;
    common::hostile_input(b.local_addr(), "emb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_limits() {
    let b = broker().await;
    common::timeouts_and_limits(b.local_addr(), "emb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_workload() {
    let b = broker().await;
    common::broker_restart(&b, "emb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_wrong_credentials() {
    let config = BrokerConfig { credentials: Some(("sidecar".into(), "s3cret".into())), ..BrokerConfig::default() };
    let b = Broker::start(([127, 0, 0, 1], 0).into(), config).await.unwrap();
    let addr = b.local_addr();
    let c = common::config("id-auth");
    let mut good = c.options("C::id-auth", "127.0.0.1", addr.port());
    good.set_credentials("sidecar", "s3cret");
    let e = onem2m_sa_mqtt::Endpoint::start(good, c.clone());
    tokio::time::timeout(std::time::Duration::from_secs(20), e.ready()).await.unwrap();
    let mut bad = c.options("C::id-bad", "127.0.0.1", addr.port());
    bad.set_credentials("sidecar", "wrong");
    let refused = onem2m_sa_mqtt::Endpoint::start(bad, c);
    while refused.stats().connection_errors == 0 {
        tokio::task::yield_now().await;
    }
    assert!(!refused.is_ready() && refused.stats().connects == 0);
}
