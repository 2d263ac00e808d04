//! **Demo fixtures** on the HTTP binding (TS-0009): the in-memory [`DemoCse`] served over HTTP,
//! delivering its notifications to the subscribers' points of access, and a notification
//! receiver standing in for an AE's listener. They are the embedded upstreams of
//! `onem2m-sa demo` and of the integration tests, not servers to deploy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use onem2m_sa_http::{BoxError, ClientConfig, HttpClient, Limits, PrimitiveService, ServerConfig, serve};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::{ServiceExt, service_fn};

use crate::demo_cse::{DemoCse, Notification};

/// Counts of the notifications the served CSE tried to deliver.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Answered with a success code by the receiver.
    pub delivered: AtomicU64,
    /// Failed: no URL for the target, unreachable, or an error answer.
    pub failed: AtomicU64,
}

/// A [`DemoCse`] served over HTTP. Dropping it does not stop the server; call [`Self::shutdown`].
pub struct ServedCse {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The CSE itself (shared with the server: inspect what it executed).
    pub cse: DemoCse,
    /// Notification delivery outcomes.
    pub deliveries: Arc<Deliveries>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServedCse {
    /// The base URL (`http://127.0.0.1:port`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, drains requests in flight and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves `cse` on `listener`. Each CREATE that triggers notifications has them delivered in
/// the background, by an HTTP client, to the subscription's `nu` (a URL, or an AE whose `poa`
/// holds URLs).
pub async fn serve_demo_cse(listener: TcpListener, cse: DemoCse) -> std::io::Result<ServedCse> {
    let addr = listener.local_addr()?;
    let client = HttpClient::new(&format!("http://{addr}"), ClientConfig::default())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let deliveries = Arc::new(Deliveries::default());
    let (app, out) = (cse.clone(), deliveries.clone());
    let service = service_fn(move |req: RequestPrimitive| {
        let rsp = app.handle(&req);
        for n in app.take_notifications() {
            let urls = app.notification_urls(&n.target);
            tokio::spawn(deliver(client.clone(), n, urls, out.clone()));
        }
        async move { Ok::<_, BoxError>(rsp) }
    });
    let (stop, mut stopped) = watch::channel(false);
    let svc = PrimitiveService::new(service, Limits::default());
    let task = tokio::spawn(serve(listener, svc, ServerConfig::default(), async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(ServedCse { addr, cse, deliveries, stop, task })
}

/// Splits `http://host:port/path` into the base and the path without its leading `/`.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let base = &url[..url.len() - rest.len() + slash];
    Some((base, rest[slash..].trim_start_matches('/')))
}

async fn deliver(client: HttpClient, n: Notification, urls: Vec<String>, out: Arc<Deliveries>) {
    if urls.is_empty() {
        tracing::debug!(target = %n.target, "notification target has no http point of access");
        out.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    for url in urls {
        let Some((base, path)) = split_url(&url) else {
            out.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut req = n.request.clone();
        // Over HTTP a notification is POSTed to the point of access itself (TS-0009 §6.2.2.1):
        // its path stands for `to`.
        req.to = if path.is_empty() { n.target.clone() } else { path.to_owned() };
        let answer = match client.with_base(base) {
            Ok(c) => c.oneshot(req).await.ok(),
            Err(_) => None,
        };
        match answer {
            Some(rsp) if rsp.rsc.is_success() => out.delivered.fetch_add(1, Ordering::Relaxed),
            other => {
                tracing::debug!(%url, rsc = ?other.map(|r| r.rsc), "notification not delivered");
                out.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// An AE's notification listener: answers every NOTIFY with 2000 and hands it over.
pub struct NotificationReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The notifications received, in arrival order.
    pub received: mpsc::UnboundedReceiver<RequestPrimitive>,
    stop: watch::Sender<bool>,
}

impl NotificationReceiver {
    /// The URL to register as the AE's point of access.
    pub fn poa(&self) -> String {
        format!("http://{}/notify", self.addr)
    }

    /// Stops the listener.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Serves `service` (primitives in, primitives out) over the HTTP binding on `listener`, with the
/// default limits and server configuration, for as long as the runtime runs: a stand-in upstream
/// for tests and benchmarks. Returns its base URL, `http://<address>`.
pub fn serve_stand_in<S>(listener: TcpListener, service: S) -> std::io::Result<String>
where
    S: tower::Service<RequestPrimitive, Response = ResponsePrimitive, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    let addr = listener.local_addr()?;
    tokio::spawn(serve(
        listener,
        PrimitiveService::new(service, Limits::default()),
        ServerConfig::default(),
        std::future::pending(),
    ));
    Ok(format!("http://{addr}"))
}

/// Serves a notification receiver on `listener`.
pub async fn serve_receiver(listener: TcpListener) -> std::io::Result<NotificationReceiver> {
    let addr = listener.local_addr()?;
    let (tx, received) = mpsc::unbounded_channel();
    let service = service_fn(move |req: RequestPrimitive| {
        let rsp = if req.op == Operation::Notify {
            let rsp = ResponsePrimitive::new(Rsc::OK, &req.rqi);
            let _ = tx.send(req);
            rsp
        } else {
            ResponsePrimitive::error(Rsc::OPERATION_NOT_ALLOWED, &req.rqi, "a notification receiver takes NOTIFY only")
        };
        async move { Ok::<_, BoxError>(rsp) }
    });
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(serve(
        listener,
        PrimitiveService::new(service, Limits::default()),
        ServerConfig::default(),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    Ok(NotificationReceiver { addr, received, stop })
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(split_url("http://127.0.0.1:9/notify"), Some(("http://127.0.0.1:9", "notify")));
        assert_eq!(split_url("http://h:1/a/b"), Some(("http://h:1", "a/b")));
        assert_eq!(split_url("http://h:1"), Some(("http://h:1", "")));
        assert_eq!(split_url("mqtt://h"), None);
    }
}
