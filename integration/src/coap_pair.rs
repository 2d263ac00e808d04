//! The CoAP sidecar pair in front of the demo CSE, for the CoAP fault and interop tests:
//! CoAP AE → AE-side sidecar (CoAP egress) → secured over CoAP, straight or through a
//! [`LossyUdp`] → CSE-side sidecar (CoAP ingress) → demo CSE (HTTP), which records every
//! request it executes (by request ID): that record is what "exactly once" is checked on.

use std::net::SocketAddr;
use std::time::Duration;

use onem2m_sa_examples::demo_cse::DemoCse;
use onem2m_sa_examples::demo_http::{ServedCse, serve_demo_cse};
use onem2m_sa_sidecar::config::{Config, Listener};
use onem2m_sa_sidecar::demo::{self, CSE_BASE, CSE_ID, DemoPki, loopback};
use onem2m_sa_sidecar::proxy::{Listeners, Sidecar};

use crate::lossy_udp::{LossyUdp, Rates};

/// The sidecars' time for a whole CoAP exchange (`coap.request_timeout`): short enough that a
/// request whose datagrams keep getting lost fails (4008 / 5103) well within an AE's timeout.
pub const SIDECAR_EXCHANGE: Duration = Duration::from_secs(10);

/// The pair and the demo CSE behind it.
pub struct CoapPair {
    /// The demo CSE (HTTP).
    pub cse: ServedCse,
    /// The CSE host's sidecar: CoAP ingress only.
    pub cse_sidecar: Sidecar,
    /// The AE host's sidecar: CoAP egress only, the CSE at a `coap://` address.
    pub ae_sidecar: Sidecar,
    /// The lossy relay on the secured hop, if asked for.
    pub lossy: Option<LossyUdp>,
}

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl CoapPair {
    /// Starts the CSE and the pair on loopback; with `lossy`, the secured CoAP hop runs
    /// through a [`LossyUdp`] with that seed and those rates.
    pub async fn start(lossy: Option<(u64, Rates)>) -> Self {
        Self::start_with(lossy, |_| {}).await
    }

    /// [`CoapPair::start`], with both sidecars' configs changed by `tune` first.
    pub async fn start_with(lossy: Option<(u64, Rates)>, tune: impl Fn(&mut Config)) -> Self {
        let pki = DemoPki::new();
        let cse = serve_demo_cse(loopback().await.expect("bind"), DemoCse::new(CSE_ID, CSE_BASE)).await.expect("CSE");
        let mut cse_config = demo::cse_sidecar_config(&pki, &cse.base(), any());
        cse_config.egress = None;
        cse_config.peers.clear();
        cse_config.coap.request_timeout = SIDECAR_EXCHANGE;
        let ingress = cse_config.ingress.as_mut().expect("ingress");
        ingress.http = None;
        ingress.coap = Some(Listener { listen: any() });
        tune(&mut cse_config);
        let cse_sidecar = Sidecar::start(&cse_config, Listeners::default(), None).await.expect("CSE-side sidecar");
        let cse_coap = cse_sidecar.coap_addresses().ingress.expect("CoAP ingress");
        let lossy = match lossy {
            Some((seed, rates)) => Some(LossyUdp::start(cse_coap, seed, rates).await.expect("lossy relay")),
            None => None,
        };
        let mut ae_config = demo::coap_ae_sidecar_config(&pki, lossy.as_ref().map_or(cse_coap, LossyUdp::addr));
        ae_config.coap.request_timeout = SIDECAR_EXCHANGE;
        tune(&mut ae_config);
        let ae_sidecar = Sidecar::start(&ae_config, Listeners::default(), None).await.expect("AE-side sidecar");
        Self { cse, cse_sidecar, ae_sidecar, lossy }
    }

    /// The AE-side CoAP egress (plaintext).
    pub fn egress(&self) -> SocketAddr {
        self.ae_sidecar.coap_addresses().egress.expect("CoAP egress")
    }

    /// The CSE-side CoAP ingress (secured).
    pub fn ingress(&self) -> SocketAddr {
        self.cse_sidecar.coap_addresses().ingress.expect("CoAP ingress")
    }

    /// How many times the CSE executed the request `rqi`.
    pub fn executions(&self, rqi: &str) -> usize {
        self.cse.cse.executed().iter().filter(|(_, r)| r == rqi).count()
    }

    /// The request IDs the CSE executed, in order.
    pub fn executed(&self) -> Vec<String> {
        self.cse.cse.executed().into_iter().map(|(_, r)| r).collect()
    }

    /// Stops everything gracefully.
    pub async fn shutdown(self) {
        self.ae_sidecar.shutdown().await;
        self.cse_sidecar.shutdown().await;
        self.cse.shutdown().await;
    }
}
