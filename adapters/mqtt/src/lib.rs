//! oneM2M MQTT binding (TS-0010 V3.1.0) on [`rumqttc`]: the topics and the ID encoding in them,
//! request/response correlation, duplicate suppression and reconnection, as Tower services.
//!
//! * Pure: [`topic`] (`/oneM2M/req|resp|reg_req|reg_resp/<originator>/<receiver>/<type>`,
//!   [`encode_id`]: leading `/` dropped, `/` → `:`), [`decode_message`] (topic and JSON payload
//!   under [`Limits`], the function the `mqtt_decode` fuzz target drives).
//! * [`Endpoint`]: one MQTT connection for one node (its topic ID). A dedicated task polls
//!   rumqttc's event loop and only forwards what it receives — nothing awaits a publish from
//!   inside it (rumqttc #263/#1025) —, reconnects with exponential back-off and resubscribes
//!   after every CONNACK. Everything is published with QoS 1; what the broker redelivers is
//!   recognised: a duplicate request is never executed twice (one that arrives after the
//!   answer gets the answer again), an answer nobody waits for is dropped. Malformed topics and payloads,
//!   oversize payloads and unknown request identifiers are dropped and counted ([`Stats`]).
//! * [`MqttClient`]: a `Service<RequestPrimitive>` to one receiver: publishes on
//!   `req/<me>/<receiver>/json` and waits for the answer on `resp/<me>/<receiver>/json` with
//!   the same `rqi`, within a timeout ([`ClientError`] says which RSC to answer with).
//! * [`Endpoint::serve`]: hands every request to the node to a `Service<RequestPrimitive>` and
//!   publishes its answer on the response topic.
//! * `broker` (feature `broker`): a small MQTT 3.1.1 broker in-process (QoS 0 and 1, wildcard
//!   subscriptions, a tap on every PUBLISH), for tests and the demo.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "broker")]
pub mod broker;
mod codec;
mod endpoint;
pub mod topic;

pub use codec::{DecodeError, Message, decode_message, encode_request, encode_response, scan_rqi};
pub use endpoint::{
    ClientError, Endpoint, EndpointConfig, MqttClient, Stats, StatsSnapshot, current_originator, current_receiver,
};
/// The MQTT client library this crate builds on (its `MqttOptions` configure the connection).
pub use rumqttc;
pub use topic::{Format, Kind, Topic, TopicError, decode_id, encode_id};

/// The error type at the Tower boundaries of this crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Default largest payload: 1 MiB (TS-0010 §6.2 recommends far less, about 100 kB, for
/// constrained brokers; the broker's own limit applies too).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Limits checked on every received message before its payload is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Deepest nesting of arrays and objects in a payload.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_payload_bytes: MAX_PAYLOAD_BYTES, max_depth: onem2m_primitive::MAX_NESTING_DEPTH }
    }
}
