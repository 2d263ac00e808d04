//! The admin endpoint (loopback only): Prometheus metrics, health and readiness, and the SA
//! list with removal.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition of every `onem2m_sa_*` metric |
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /readyz` | `200 ready` once every listener is up; `503` while starting or draining |
//! | `GET /sa` | JSON: this node's SAs (identifier, peer, direction, suite, expiry) |
//! | `DELETE /sa/<id>` | removes the SA (hex identifier): an outbound SA with Remove SA sent to the Responder, an inbound one locally; `404` if unknown |
//! | `POST /reload` | reloads the config file (as SIGHUP does): `200` with what was kept and removed, `400` with the error (the running configuration stays) |

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use onem2m_sa::SaId;
use onem2m_sa::flows::UpdateResult;
use onem2m_sa::table::SaEntry;
use serde_json::json;
use tower::Service;

use crate::proxy::Runtime;

/// Renders the metrics exposition.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Installs the Prometheus recorder as the process's metrics recorder (once; later calls return
/// the same renderer). If another recorder was installed first, the renderer reports that.
pub fn install_prometheus() -> MetricsRender {
    static HANDLE: OnceLock<MetricsRender> = OnceLock::new();
    HANDLE
        .get_or_init(|| match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Arc::new(move || handle.render()),
            Err(e) => {
                let why = format!("# metrics unavailable: {e}\n");
                Arc::new(move || why.clone())
            }
        })
        .clone()
}

/// The admin endpoint as an HTTP service.
#[derive(Clone)]
pub struct Admin {
    runtime: Runtime,
    ready: Arc<AtomicBool>,
    metrics: Option<MetricsRender>,
}

impl Admin {
    /// The admin endpoint of a sidecar's `runtime`; `ready` is the readiness flag, `metrics`
    /// the renderer.
    pub fn new(runtime: Runtime, ready: Arc<AtomicBool>, metrics: Option<MetricsRender>) -> Self {
        Self { runtime, ready, metrics }
    }
}

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> http::Response<Bytes> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.into())
        .expect("static response parts")
}

fn json_reply(status: u16, value: serde_json::Value) -> http::Response<Bytes> {
    reply(status, "application/json", value.to_string())
}

fn describe(entry: &SaEntry, direction: &str) -> serde_json::Value {
    json!({
        "sa_id": entry.sa_id().to_string(),
        "peer": entry.peer().as_str(),
        "direction": direction,
        "suite": entry.suite().to_string(),
        "expires_unix": entry.expires_unix(),
        "update_requested": entry.update_requested(),
    })
}

/// Parses the hex form of an SA identifier (as `GET /sa` lists it).
pub fn parse_sa_id(hex_id: &str) -> Option<SaId> {
    let bytes = hex::decode(hex_id).ok()?;
    Some(SaId(bytes.try_into().ok()?))
}

impl Service<http::Request<Bytes>> for Admin {
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let path = req.uri().path().trim_end_matches('/').to_owned();
            let method = req.method().clone();
            let rsp = match (method.as_str(), path.as_str()) {
                ("GET", "/healthz") => reply(200, "text/plain", "ok\n"),
                ("GET", "/readyz") if this.ready.load(Ordering::Acquire) => reply(200, "text/plain", "ready\n"),
                ("GET", "/readyz") => reply(503, "text/plain", "not ready\n"),
                ("GET", "/metrics") => match &this.metrics {
                    Some(render) => reply(200, "text/plain; version=0.0.4", render()),
                    None => reply(404, "text/plain", "metrics are not enabled\n"),
                },
                ("GET", "/sa") => {
                    let mut sas = Vec::new();
                    for (i, (node, _)) in this.runtime.nodes().into_iter().enumerate() {
                        sas.extend(node.outbound().entries().iter().map(|e| describe(e, "outbound")));
                        // With a store every generation reads its one table: listed once.
                        if i == 0 || node.store().is_none() {
                            sas.extend(node.inbound().entries().iter().map(|e| describe(e, "inbound")));
                        }
                    }
                    json_reply(200, json!({ "node": this.runtime.node().id().as_str(), "sas": sas }))
                }
                ("DELETE", p) if p.starts_with("/sa/") => this.remove(&p["/sa/".len()..]).await,
                ("POST", "/reload") => {
                    let runtime = this.runtime.clone();
                    match tokio::task::spawn_blocking(move || runtime.reload_from_file()).await {
                        Ok(Ok(done)) => {
                            tracing::info!(kept = done.sas_kept, removed = done.sas_removed, "{done} (admin endpoint)");
                            json_reply(
                                200,
                                json!({ "reloaded": true, "sas_kept": done.sas_kept, "sas_removed": done.sas_removed }),
                            )
                        }
                        Ok(Err(e)) => {
                            tracing::error!("reload refused: {e}");
                            json_reply(400, json!({ "reloaded": false, "error": e }))
                        }
                        Err(e) => json_reply(500, json!({ "reloaded": false, "error": e.to_string() })),
                    }
                }
                (_, "/healthz" | "/readyz" | "/metrics" | "/sa" | "/reload") => {
                    reply(405, "text/plain", "method not allowed\n")
                }
                _ => reply(404, "text/plain", "not found\n"),
            };
            Ok(rsp)
        })
    }
}

impl Admin {
    async fn remove(&self, id: &str) -> http::Response<Bytes> {
        let Some(sa_id) = parse_sa_id(id) else {
            return json_reply(400, json!({ "error": "an SA identifier is 16 hex digits" }));
        };
        let nodes = self.runtime.nodes();
        let outbound = nodes.iter().find(|(n, _)| n.outbound().get(sa_id).is_some());
        let inbound = nodes.iter().find(|(n, _)| n.inbound().get(sa_id).is_some());
        let (direction, confirm) = match (outbound, inbound) {
            (Some((node, peers)), _) => ("outbound", node.remove(sa_id, peers.clone()).await),
            (None, Some((node, _))) => ("inbound", node.remove_inbound_everywhere(sa_id).await),
            (None, None) => return json_reply(404, json!({ "error": "no such SA", "sa_id": id })),
        };
        let accepted = confirm.0.result == UpdateResult::Accepted;
        tracing::info!(sa = %sa_id, direction, accepted, "SA removed by the administrator");
        json_reply(
            if accepted { 200 } else { 409 },
            json!({
                "sa_id": sa_id.to_string(),
                "direction": direction,
                "removed": accepted,
                "reason": confirm.0.rejection_reason.map(|r| format!("{r:?}")),
            }),
        )
    }
}
