//! A plain MQTT client subscribed to `#`: what anyone allowed to read a broker sees.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use onem2m_sa_mqtt::rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;

/// The topics of [`MqttWatcher::sync`]'s own messages (left out of [`MqttWatcher::seen`]).
const MARKER: &str = "onem2m-sa-watcher-marker/";

/// A subscriber on `#` at a broker that records every message it receives, in order. Stops
/// when dropped.
pub struct MqttWatcher {
    client: AsyncClient,
    log: Arc<Mutex<Vec<(String, Bytes)>>>,
    task: JoinHandle<()>,
}

impl MqttWatcher {
    /// Connects to the broker at `broker` (as the client `client_id`), subscribes to `#` and
    /// returns once the subscription is acknowledged (within 20 s, else panics).
    pub async fn start(broker: SocketAddr, client_id: &str) -> Self {
        let mut options = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        // Whatever the broker forwards (rumqttc's default limit is 10 KiB).
        options.set_max_packet_size(usize::MAX, usize::MAX);
        let (client, mut events) = AsyncClient::new(options, 16);
        let log: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let (sub_tx, sub_rx) = tokio::sync::oneshot::channel();
        let mut sub_tx = Some(sub_tx);
        let record = log.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        record
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((p.topic.clone(), p.payload.clone()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = sub_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        client.subscribe("#", QoS::AtMostOnce).await.expect("subscribe to #");
        tokio::time::timeout(Duration::from_secs(20), sub_rx)
            .await
            .expect("the broker acknowledges the subscription to #")
            .expect("the watcher runs");
        Self { client, log, task }
    }

    /// Returns once everything the broker routed before this call has reached the watcher: it
    /// publishes a marker of its own and waits (20 s at most, else panics) until it comes back —
    /// the broker forwards to a subscriber in the order it routes.
    pub async fn sync(&self) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let topic = format!("{MARKER}{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.client.publish(topic.clone(), QoS::AtMostOnce, false, Vec::new()).await.expect("publish a marker");
        let back = async {
            while !self.lock().iter().any(|(t, _)| *t == topic) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), back).await.expect("the marker comes back");
    }

    /// Every message received so far (topic and payload), in order, but the markers.
    pub fn seen(&self) -> Vec<(String, Bytes)> {
        self.lock().iter().filter(|(t, _)| !t.starts_with(MARKER)).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Bytes)>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for MqttWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
