//! Relationship rb on a oneM2M binding: SA messages travel as NOTIFY primitives.
//!
//! The Initiator sends each establishment or control message as the content of a NOTIFY
//! addressed to the peer node, `{"sa:msg": <message>}`; the Responder's message rides in the
//! response, under the same member. Through a transit CSE that forwards only notification
//! content, the request's content travels inside an `m2m:sgn` (see [`crate::carriage`]); the
//! answer's content is relayed unchanged.

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use serde_json::Value;

/// The content member that carries an SA message.
pub const SA_MESSAGE: &str = "sa:msg";

/// How the Responder's text starts when it drops an SA message without answering it: the
/// Initiator resends on such an answer (the drop may be transient, e.g. an SaInit still being
/// processed), and on no other error answer without an SA message.
pub const DROPPED: &str = "SA message dropped: ";

/// The text of an error answer (its `m2m:dbg`), or empty.
pub fn error_text(rsp: &ResponsePrimitive) -> String {
    match rsp.pc.as_ref().and_then(|pc| pc.get("m2m:dbg")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Whether an answer to an SA message is an error from a hop that is not the peer's SA
/// endpoint: an error code, no SA message, and not the Responder's own drop ([`DROPPED`]).
/// A transit CSE that refuses the message, or a CSE reached instead of its sidecar, answers
/// so; resending the same bytes would be refused again.
pub fn is_hop_refusal(rsp: &ResponsePrimitive) -> bool {
    if !rsp.rsc.is_error() || message_of(rsp.pc.as_ref()).is_some() {
        return false;
    }
    let text = error_text(rsp);
    // A peer of the previous version drops without the prefix; its transient drops are resent.
    !(text.starts_with(DROPPED) || TRANSIENT_UNMARKED.contains(&text.as_str()))
}

/// The texts of the Responder's transient drops as a peer of the previous version answers them
/// (without [`DROPPED`]): an SaInit still being processed, or whose slot expired meanwhile.
const TRANSIENT_UNMARKED: [&str; 2] =
    ["the same SaInit is being processed", "the establishment expired while it was processed"];

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

#[cfg(test)]
mod tests {
    use onem2m_sa::manage::DropReason;

    use super::*;

    /// The previous version's transient drops are recognised by the texts the core gives them.
    #[test]
    fn transient_drop_texts_are_the_cores() {
        for reason in [DropReason::InProgress, DropReason::Expired] {
            assert!(TRANSIENT_UNMARKED.contains(&reason.to_string().as_str()), "{reason}");
            let rsp = ResponsePrimitive::error(Rsc::BAD_REQUEST, "r", reason.to_string());
            assert!(!is_hop_refusal(&rsp));
        }
        let marked = ResponsePrimitive::error(Rsc::BAD_REQUEST, "r", format!("{DROPPED}{}", DropReason::Replayed));
        assert!(!is_hop_refusal(&marked));
        let hop = ResponsePrimitive::error(Rsc::BAD_REQUEST, "r", "Not a NOTIFY request or response");
        assert!(is_hop_refusal(&hop));
        assert!(!is_hop_refusal(&ResponsePrimitive::new(Rsc::OK, "r")), "not an error");
    }
}
