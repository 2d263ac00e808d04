//! Relationship rb on a oneM2M binding: SA messages travel as NOTIFY primitives.
//!
//! The Initiator sends each establishment or control message as the content of a NOTIFY
//! addressed to the peer node, `{"sa:msg": <message>}`; the Responder's message rides in the
//! response, under the same member. An unmodified transit CSE forwards both like any other
//! notification.

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use serde_json::Value;

/// The content member that carries an SA message.
pub const SA_MESSAGE: &str = "sa:msg";

fn content(message: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(message).ok()?;
    Some(serde_json::json!({ SA_MESSAGE: value }))
}

/// The NOTIFY that carries `message` from `from` to the peer node `to`.
pub fn request(to: &str, from: &str, rqi: String, message: &[u8]) -> RequestPrimitive {
    let mut req = RequestPrimitive::new(Operation::Notify, to, Some(from.to_owned()), rqi);
    req.rvi = Some("3".to_owned());
    req.pc = content(message);
    req
}

/// The response that carries the Responder's `message`.
pub fn response(rqi: &str, message: &[u8]) -> ResponsePrimitive {
    let mut rsp = ResponsePrimitive::new(Rsc::OK, rqi);
    rsp.rvi = Some("3".to_owned());
    rsp.pc = content(message);
    rsp
}

/// The SA message a primitive's content carries, re-encoded for the core, if any.
pub fn message_of(pc: Option<&Value>) -> Option<Vec<u8>> {
    let msg = pc?.get(SA_MESSAGE)?;
    serde_json::to_vec(msg).ok()
}

/// Whether a request carries an SA message.
pub fn is_sa_message(req: &RequestPrimitive) -> bool {
    req.op == Operation::Notify && req.pc.as_ref().is_some_and(|pc| pc.get(SA_MESSAGE).is_some())
}
