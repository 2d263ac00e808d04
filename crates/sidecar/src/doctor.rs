//! `onem2m-sa sidecar --check --connect`: what a config meets beyond its own files — whether the
//! upstream answers like a oneM2M CSE (or AE listener), whether each peer's ingress is reachable
//! and is a sidecar, and whether an SA can be established with it (each side's ticket accepted by
//! the other), and with a Redis `[store]` whether Redis answers and its SA records open under the
//! configured key-encryption key — and, for each problem, what to fix.

use std::time::Duration;

use onem2m_primitive::{Operation, RequestPrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{BindingError, ClientConfig, ClientError, HttpClient};
use tower::ServiceExt;

use crate::config::Config;
use crate::proxy::{Peers, client_config};

/// One thing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it is as it should be.
    pub ok: bool,
    /// What was found.
    pub what: String,
    /// What to do about it (problems only).
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: String) -> Self {
        Self { ok: true, what, fix: None }
    }

    fn problem(what: String, fix: impl Into<String>) -> Self {
        Self { ok: false, what, fix: Some(fix.into()) }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fix {
            None => write!(f, "ok:      {}", self.what),
            Some(fix) => write!(f, "PROBLEM: {}\n         fix: {fix}", self.what),
        }
    }
}

/// Longest a single probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

fn probe_client(base: &str, config: &Config) -> Result<HttpClient, BindingError> {
    let timeout = config.http.request_timeout.min(PROBE_TIMEOUT);
    HttpClient::new(
        base,
        ClientConfig {
            connect_timeout: config.http.connect_timeout.min(timeout),
            request_timeout: timeout,
            ..client_config(&config.http)
        },
    )
}

fn probe(to: &str, fr: &str, rqi: &str) -> RequestPrimitive {
    let mut req = RequestPrimitive::new(Operation::Retrieve, to, Some(fr.to_owned()), rqi);
    req.rvi = Some("3".into());
    req
}

fn source(e: &(dyn std::error::Error + 'static)) -> String {
    e.source().map(|s| format!(": {s}")).unwrap_or_default()
}

/// Runs every check: the upstream, then each peer (reachable, a sidecar, an SA established —
/// which leaves one SA at the peer, removed when it expires).
pub async fn connect_checks(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let me = config.node.id.as_str();
    if let Some(ingress) = &config.ingress {
        out.push(check_upstream(&ingress.upstream, me, config).await);
    }
    out.extend(check_store(config).await);
    let node = config.build_node();
    let peers = match Peers::new(config) {
        Ok(p) => p,
        Err(e) => {
            out.push(Finding::problem(format!("peers: {e}"), "correct the [[peer]] address"));
            return out;
        }
    };
    for p in &config.peers {
        // A CoAP peer has no listener to probe without a request: the SA establishment below is
        // the probe.
        let reachable = if p.is_coap() || p.is_mqtt() {
            Finding::ok(format!("peer {}: {} (CoAP or MQTT; probed by the SA establishment)", p.id, p.address))
        } else if p.outer != crate::config::PeerOuter::default() {
            // Reached through a transit CSE, which answers a plaintext probe as a CSE does.
            Finding::ok(format!("peer {}: {} (through a transit CSE; probed by the SA establishment)", p.id, p.address))
        } else {
            check_peer_ingress(&p.id.to_string(), &p.address, me, config).await
        };
        let go_on = reachable.ok;
        out.push(reachable);
        if !go_on {
            continue;
        }
        let established = tokio::time::timeout(PROBE_TIMEOUT * 2, node.sa_with(&p.id, peers.clone())).await;
        out.push(match established {
            Ok(Ok(sa)) => Finding::ok(format!("peer {}: SA established ({:?}, {})", p.id, sa.suite(), sa.sa_id())),
            Ok(Err(e)) => Finding::problem(
                format!("peer {}: no SA could be established: {e}", p.id),
                format!(
                    "the peer's ticket must name {} and come from one of this node's [[trust_anchor]]s, and this \
                     node's ticket from one of the peer's; they must share a suite (node.suites)",
                    p.id
                ),
            ),
            Err(_) => Finding::problem(
                format!("peer {}: no answer to the SA establishment within {:?}", p.id, PROBE_TIMEOUT * 2),
                "check that the peer's sidecar is running and reachable",
            ),
        });
    }
    out
}

/// With `[store] kind = "redis"`: whether Redis answers, and whether the SA records in it open
/// under this replica's key-encryption key (replicas with different keys refuse each other's SAs).
async fn check_store(config: &Config) -> Option<Finding> {
    let place = crate::proxy::store_place(config);
    let store = match crate::proxy::redis_store(config) {
        Ok(None) => return None,
        Ok(Some(store)) => store,
        Err(e) => {
            return Some(Finding::problem(e.to_string(), "correct [store] url (or sentinels and master, or cluster)"));
        }
    };
    let unreachable = |why: String| {
        Finding::problem(
            format!("store: Redis at {place} not reachable ({why})"),
            "start Redis there, or correct [store] url (or sentinels and master, or cluster); the sidecar starts without it \
             but refuses every establishment with 5000 until it is reachable",
        )
    };
    Some(match tokio::time::timeout(PROBE_TIMEOUT, store.verify()).await {
        Ok(Ok((good, 0))) => Finding::ok(format!(
            "store: Redis at {place} reachable; {good} SA records open under the key-encryption key"
        )),
        Ok(Ok((good, bad))) => Finding::problem(
            format!("store: {bad} of {} SA records at {place} do not open under store.kek_file", good + bad),
            "every replica of a deployment needs the same kek_file; with another one, a replica refuses the \
             SAs the others record (or records were altered in Redis)",
        ),
        Ok(Err(e)) => unreachable(e.to_string()),
        Err(_) => unreachable(format!("no answer within {PROBE_TIMEOUT:?}")),
    })
}

async fn check_upstream(upstream: &str, me: &str, config: &Config) -> Finding {
    if crate::config::is_mqtt_address(upstream) {
        // The AEs' local broker: there is no one to ask until an AE subscribes.
        return Finding::ok(format!("ingress.upstream {upstream} is the MQTT-only AEs' local broker (not probed)"));
    }
    let client = match probe_client(upstream, config) {
        Ok(c) => c,
        Err(e) => return Finding::problem(format!("ingress.upstream {upstream}: {e}"), "give an http:// URL"),
    };
    match client.oneshot(probe(me, me, "onem2m-sa-check-upstream")).await {
        Ok(rsp) => Finding::ok(format!("ingress.upstream {upstream} answers like oneM2M (RSC {})", rsp.rsc.code())),
        Err(e) => {
            let what = |s: String| format!("ingress.upstream {upstream} {s}");
            match e.downcast_ref::<ClientError>() {
                Some(c @ ClientError::InvalidResponse(m)) => Finding::problem(
                    what(format!("answers HTTP, but not like oneM2M ({c}: {m})")),
                    "ingress.upstream must be the CSE's (or the AE listener's) oneM2M HTTP address, TS-0009 binding",
                ),
                Some(c @ ClientError::NoResponsePrimitive { .. }) => Finding::problem(
                    what(format!("answers HTTP, but not like oneM2M ({c})")),
                    "ingress.upstream must be the CSE's (or the AE listener's) oneM2M HTTP address, TS-0009 binding",
                ),
                Some(c) => Finding::problem(
                    what(format!("does not answer ({c}{})", source(c))),
                    "start the CSE (or the AE's listener) there, or correct ingress.upstream",
                ),
                None => Finding::problem(what(format!("failed: {e}")), "correct ingress.upstream"),
            }
        }
    }
}

async fn check_peer_ingress(id: &str, address: &str, me: &str, config: &Config) -> Finding {
    let client = match probe_client(address, config) {
        Ok(c) => c,
        Err(e) => return Finding::problem(format!("peer {id} {address}: {e}"), "give an http:// URL"),
    };
    match client.oneshot(probe(id, me, "onem2m-sa-check-peer")).await {
        Ok(rsp) if rsp.rsc == Rsc::SECURITY_ASSOCIATION_REQUIRED => {
            Finding::ok(format!("peer {id} {address} reachable, a sidecar ingress (plaintext refused with 4107)"))
        }
        Ok(rsp) => Finding::problem(
            format!(
                "peer {id} {address} answers a plaintext request with {}: not like a sidecar ingress",
                rsp.rsc.code()
            ),
            "a [[peer]] address is the peer sidecar's ingress (ingress.http.listen), not the CSE or the AE itself",
        ),
        Err(e) => {
            let detail = match e.downcast_ref::<ClientError>() {
                Some(c) => format!("{c}{}", source(c)),
                None => e.to_string(),
            };
            Finding::problem(
                format!("peer {id} {address} not reachable ({detail})"),
                "check the address, that the peer's sidecar runs with this ingress.http.listen, and firewalls",
            )
        }
    }
}
