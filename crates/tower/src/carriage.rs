//! Outer addressing and carriage: how the outer primitives that carry SA messages and sealed
//! requests to a peer are addressed, and in what content they travel (docs/protocol.md §3.8).
//!
//! A peer's node ID (the ID its ticket and the SA messages name) is not always what a transit
//! CSE routes: an ACME MN-CSE refuses `POST /~/id-in` ("SP-relative ID is too short") and routes
//! `/id-in/cse-in` (the IN-CSE's `<CSEBase>`) or `/id-mn/Cae-host` (an AE registered at it).
//! [`Outer::to`] and [`Outer::from`] are chosen per peer, apart from the node IDs.
//!
//! Two carriages:
//!
//! * [`Carriage::Standard`] — the content as TS-0004 §7.6.2 writes it: `{"m2m:seci": {"sit": 5,
//!   "epo": …}}` for a sealed request, `{"sa:msg": …}` for an SA message, in a NOTIFY to `to`.
//! * [`Carriage::Notification`] — for transit CSEs that forward only notification content
//!   (ACME checks that a NOTIFY carries `m2m:sgn` before it forwards it): the same content as
//!   the event's representation of a notification, `{"m2m:sgn": {"sur": <to>, "nev": {"net": 1,
//!   "rep": <standard content>}}}`.
//!
//! The receiver accepts both, whatever it is configured to send: [`unwrap`] takes the standard
//! content out of a notification that carries it. Answers travel in the standard content (a
//! transit CSE relays the content of an answer unchanged). The outer primitive shows in clear
//! only its addressing (`to`, `fr`, `rqi`), the content's member names and the size of the
//! sealed message; nothing of the inner primitive.

use onem2m_primitive::{Operation, RequestPrimitive};
use onem2m_sa::credential::NodeId;
use serde_json::Value;

use crate::rb;

/// The content member of a notification.
const SGN: &str = "m2m:sgn";

/// The `nev.net` of a carrying notification (1, "update of resource").
pub const CARRIAGE_NET: u64 = 1;

/// The content the outer requests to a peer travel in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Carriage {
    /// `m2m:seci` (sealed requests) and `sa:msg` (SA messages) as the NOTIFY's content.
    #[default]
    Standard,
    /// The standard content inside a notification (`m2m:sgn`, in `nev.rep`), for transit CSEs
    /// that forward only notifications.
    Notification,
}

impl Carriage {
    /// The carriage's name in configuration files: `standard` or `notification`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Notification => "notification",
        }
    }
}

impl std::str::FromStr for Carriage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standard" => Ok(Self::Standard),
            "notification" => Ok(Self::Notification),
            other => Err(format!("unknown carriage {other:?}: `standard` or `notification`")),
        }
    }
}

/// How the outer requests to one peer are addressed and carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outer {
    /// The outer `to`: the peer's `<CSEBase>` (`/id-in/cse-in`) or `<AE>` (`/id-mn/Cae-host`),
    /// or its node ID when the path needs nothing else.
    pub to: String,
    /// The outer `fr`: this node's ID, or the ID its registrar knows it by (an AE-ID).
    pub from: String,
    /// The content the requests travel in.
    pub carriage: Carriage,
}

impl Outer {
    /// The default: `to` the peer's node ID, `fr` this node's, the standard carriage.
    pub fn direct(peer: &str, me: &str) -> Self {
        Self { to: peer.to_owned(), from: me.to_owned(), carriage: Carriage::Standard }
    }

    fn notify(&self, rqi: String, content: Value) -> RequestPrimitive {
        let mut req = RequestPrimitive::new(Operation::Notify, &self.to, Some(self.from.clone()), rqi);
        req.rvi = Some("3".to_owned());
        req.pc = Some(wrap(self.carriage, &self.to, content));
        req
    }

    /// The NOTIFY that carries the SA message `message`.
    pub fn sa_request(&self, rqi: String, message: &[u8]) -> RequestPrimitive {
        let mut req = rb::request(&self.to, &self.from, rqi, message);
        if let Some(pc) = req.pc.take() {
            req.pc = Some(wrap(self.carriage, &self.to, pc));
        }
        req
    }

    /// The ESPrim NOTIFY that carries the sealed request `jwe`.
    pub fn secured_request(&self, rqi: &str, jwe: &[u8]) -> RequestPrimitive {
        self.sealed_request(rqi, onem2m_sa::secure::Encoding::Jwe, jwe)
    }

    /// The NOTIFY that carries the request `wire` sealed in `encoding` (docs/protocol.md §4.3).
    pub fn sealed_request(&self, rqi: &str, encoding: onem2m_sa::secure::Encoding, wire: &[u8]) -> RequestPrimitive {
        self.notify(rqi.to_owned(), crate::form::content(encoding, wire))
    }

    /// Whether the outer requests go straight to `peer`'s own endpoint: addressed to its node ID,
    /// in the standard carriage (nothing in between that needs oneM2M content to route them).
    pub fn is_direct(&self, peer: &NodeId) -> bool {
        self.to == peer.as_str() && self.carriage == Carriage::Standard
    }
}

/// `content` in `carriage`; `to` is the notification's `sur`.
pub fn wrap(carriage: Carriage, to: &str, content: Value) -> Value {
    match carriage {
        Carriage::Standard => content,
        Carriage::Notification => {
            serde_json::json!({ SGN: { "sur": to, "nev": { "net": CARRIAGE_NET, "rep": content } } })
        }
    }
}

/// Whether `content` is standard SA content: a sealed request or an SA message.
fn is_standard(content: &Value) -> bool {
    content.get("m2m:seci").is_some() || content.get(rb::SA_MESSAGE).is_some()
}

/// The standard content a notification carries (`m2m:sgn` whose `nev.rep` is a sealed request
/// or an SA message), if `pc` is one; any other notification is `None`.
pub fn unwrap(pc: &Value) -> Option<&Value> {
    let rep = pc.get(SGN)?.get("nev")?.get("rep")?;
    is_standard(rep).then_some(rep)
}

/// `req` with the standard content in place of the notification that carries it (unchanged
/// when it is not a NOTIFY in the notification carriage).
pub fn unwrapped(mut req: RequestPrimitive) -> RequestPrimitive {
    if req.op != Operation::Notify {
        return req;
    }
    if req.pc.as_ref().and_then(unwrap).is_some() {
        // Moved out, not copied: the sealed message may be large.
        req.pc = req.pc.as_mut().and_then(|pc| pc.pointer_mut("/m2m:sgn/nev/rep")).map(Value::take);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_carriage_round_trips_and_leaves_real_notifications_alone() {
        let outer = Outer { to: "/id-in/cse-in".into(), from: "Cae-host".into(), carriage: Carriage::Notification };
        let req = outer.secured_request("r1", b"aaa.bbb");
        assert_eq!((req.to.as_str(), req.fr.as_deref()), ("/id-in/cse-in", Some("Cae-host")));
        let pc = req.pc.clone().unwrap();
        assert_eq!(pc["m2m:sgn"]["sur"], "/id-in/cse-in");
        assert_eq!(pc["m2m:sgn"]["nev"]["net"], 1);
        let opened = unwrapped(req);
        assert_eq!(opened.pc.unwrap(), serde_json::json!({"m2m:seci": {"sit": 5, "epo": "aaa.bbb"}}));
        let sa = unwrapped(outer.sa_request("r2".into(), br#"{"t":1}"#));
        assert!(rb::is_sa_message(&sa));
        // A notification about a resource is not SA content.
        let mut real = RequestPrimitive::new(Operation::Notify, "/id-in/cse-in", Some("/id-mn".into()), "r3");
        real.pc = Some(serde_json::json!({"m2m:sgn": {"nev": {"net": 1, "rep": {"m2m:cin": {"con": "x"}}}}}));
        assert_eq!(unwrapped(real.clone()).pc, real.pc);
    }
}
