//! Notifications from the CSE to an AE over an SA in the other direction: the mapping of points
//! of access (`poa`) done when the AE registers.
//!
//! The CSE-side ingress sees every request an authenticated peer makes. When the peer creates
//! or updates an AE whose representation carries `poa` URLs, each `http` URL `U` is replaced by
//! `http://<egress>/.sa-poa/<b64url(peer)>/<b64url(U)>`: a URL on this sidecar's loopback egress
//! that names the peer. The CSE then sends its notifications for that AE to the egress, which
//! seals them over an SA with the peer; the peer's ingress opens them and forwards them to its own
//! upstream (the AE's listener) at `U`'s path. Answers going back to the peer have the mapping
//! undone, so the AE sees the `poa` it registered.
//!
//! The mapped URL is self-describing (no state to lose when the sidecar restarts). The egress
//! only ever sends what arrives on such a URL to the peer the URL names, and the peer's ingress
//! only ever forwards to its configured upstream, so an AE cannot point notifications at a third
//! party through the mapping.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive};
use onem2m_sa::credential::NodeId;
use serde_json::Value;

/// The path prefix of mapped points of access on the egress.
pub const PREFIX: &str = "/.sa-poa/";

/// Resource type of an AE (TS-0004).
const TY_AE: u32 = 2;

/// Maps points of access to the egress at `base` (`http://127.0.0.1:port`).
#[derive(Debug, Clone)]
pub struct PoaMap {
    base: String,
}

/// A mapped point of access, decoded on the egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The peer the notification goes to.
    pub peer: NodeId,
    /// The point of access the AE registered.
    pub poa: String,
    /// What the CSE appended to the mapped URL's path (`/Csub2`, `/cse-in/capAE`), or empty.
    pub suffix: String,
}

impl Mapped {
    /// The path the request takes at the peer: the registered point of access's path with the
    /// appended suffix after it (`/notify` + `/Csub2` = `/notify/Csub2`).
    pub fn target_path(&self) -> String {
        let base = path_of(&self.poa);
        match self.suffix.as_str() {
            "" => base.to_owned(),
            suffix => format!("{}{suffix}", base.trim_end_matches('/')),
        }
    }
}

impl PoaMap {
    /// A mapping onto the egress listening at `base`.
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into() }
    }

    /// The mapped form of `poa` for `peer`.
    pub fn map(&self, peer: &NodeId, poa: &str) -> String {
        format!(
            "{}{PREFIX}{}/{}",
            self.base,
            URL_SAFE_NO_PAD.encode(peer.as_str()),
            URL_SAFE_NO_PAD.encode(poa.as_bytes())
        )
    }

    /// The registered point of access behind a mapped URL of this egress (as mapped: nothing
    /// appended).
    fn unmap(&self, url: &str) -> Option<String> {
        let path = url.strip_prefix(&self.base)?;
        decode_path(path).filter(|m| m.suffix.is_empty()).map(|m| m.poa)
    }

    /// Rewrites the `poa` of an AE that `peer` creates or updates. Returns how many were mapped.
    pub fn rewrite_request(&self, req: &mut RequestPrimitive, peer: &NodeId) -> usize {
        let is_ae_write = match req.op {
            Operation::Create => req.ty == Some(TY_AE),
            Operation::Update => true,
            _ => false,
        };
        if !is_ae_write {
            return 0;
        }
        let mut n = 0;
        if let Some(poa) = poa_list(req.pc.as_mut()) {
            for u in poa.iter_mut() {
                if let Some(s) = u.as_str().filter(|s| s.starts_with("http://") || s.starts_with("https://")) {
                    *u = Value::String(self.map(peer, s));
                    n += 1;
                }
            }
        }
        n
    }

    /// Undoes the mapping in an answer's AE representation.
    pub fn restore_response(&self, rsp: &mut ResponsePrimitive) {
        if let Some(poa) = poa_list(rsp.pc.as_mut()) {
            for u in poa.iter_mut() {
                if let Some(original) = u.as_str().and_then(|s| self.unmap(s)) {
                    *u = Value::String(original);
                }
            }
        }
    }
}

fn poa_list(pc: Option<&mut Value>) -> Option<&mut Vec<Value>> {
    pc?.get_mut("m2m:ae")?.get_mut("poa")?.as_array_mut()
}

/// Decodes an egress request path `/.sa-poa/<peer>/<poa>[/<suffix>]`: a CSE may append a path
/// to the point of access it was given (ACME notifies `<poa>/Csub2` and forwards retargeted
/// requests to `<poa>/cse-in/capAE`); the suffix is kept, `/` included.
pub fn decode_path(path: &str) -> Option<Mapped> {
    let rest = path.strip_prefix(PREFIX)?;
    let (peer, rest) = rest.split_once('/')?;
    let (poa, suffix) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let peer = String::from_utf8(URL_SAFE_NO_PAD.decode(peer).ok()?).ok()?;
    let poa = String::from_utf8(URL_SAFE_NO_PAD.decode(poa).ok()?).ok()?;
    Some(Mapped { peer: NodeId::new(peer).ok()?, poa, suffix: suffix.to_owned() })
}

/// The path of a URL (`/` when it has none), without its query.
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer() -> NodeId {
        NodeId::new("/id-ae-host").unwrap()
    }

    #[test]
    fn ae_registration_is_mapped_and_restored() {
        let map = PoaMap::new("http://127.0.0.1:8081");
        let mut req = RequestPrimitive::new(Operation::Create, "cse-base", Some("Cae1".into()), "r1");
        req.ty = Some(2);
        req.pc = Some(json!({"m2m:ae": {"rn": "lamp", "poa": ["http://10.0.0.5:9000/notify", "mqtt://b/x"]}}));
        assert_eq!(map.rewrite_request(&mut req, &peer()), 1);
        let mapped = req.pc.as_ref().unwrap()["m2m:ae"]["poa"][0].as_str().unwrap().to_owned();
        assert!(mapped.starts_with("http://127.0.0.1:8081/.sa-poa/"));
        assert_eq!(req.pc.as_ref().unwrap()["m2m:ae"]["poa"][1], "mqtt://b/x");
        let decoded = decode_path(path_of(&mapped)).unwrap();
        assert_eq!(decoded, Mapped { peer: peer(), poa: "http://10.0.0.5:9000/notify".into(), suffix: String::new() });
        assert_eq!(decoded.target_path(), "/notify");

        let mut rsp = ResponsePrimitive::new(onem2m_primitive::ResponseStatusCode::CREATED, "r1");
        rsp.pc = req.pc.clone();
        map.restore_response(&mut rsp);
        assert_eq!(rsp.pc.unwrap()["m2m:ae"]["poa"][0], "http://10.0.0.5:9000/notify");
    }

    #[test]
    fn other_requests_are_left_alone() {
        let map = PoaMap::new("http://127.0.0.1:8081");
        let mut req = RequestPrimitive::new(Operation::Create, "cse-base", Some("Cae1".into()), "r1");
        req.ty = Some(3);
        req.pc = Some(json!({"m2m:ae": {"poa": ["http://x/"]}}));
        assert_eq!(map.rewrite_request(&mut req, &peer()), 0);
        let mut get = RequestPrimitive::new(Operation::Retrieve, "cse-base", Some("Cae1".into()), "r2");
        assert_eq!(map.rewrite_request(&mut get, &peer()), 0);
    }

    #[test]
    fn an_appended_path_follows_the_registered_one() {
        let map = PoaMap::new("http://127.0.0.1:8081");
        for (poa, suffix, target) in [
            ("http://10.0.0.5:9000/notify", "/Csub2", "/notify/Csub2"),
            ("http://10.0.0.5:9000/notify/", "/cse-in/capAE", "/notify/cse-in/capAE"),
            ("http://10.0.0.5:9000", "/cse-in/capAE", "/cse-in/capAE"),
            ("http://10.0.0.5:9000/", "/", "/"),
        ] {
            let url = format!("{}{suffix}", map.map(&peer(), poa));
            let m = decode_path(path_of(&url)).unwrap();
            assert_eq!((m.poa.as_str(), m.suffix.as_str(), m.target_path().as_str()), (poa, suffix, target));
        }
    }

    #[test]
    fn malformed_paths_do_not_decode() {
        for p in ["/.sa-poa/", "/.sa-poa/abc", "/.sa-poa/!!/x", "/other/a/b", "/.sa-poa/L2lk/%%", "/.sa-poa/L2lk/%%/x"]
        {
            assert_eq!(decode_path(p), None, "{p}");
        }
        assert_eq!(path_of("http://h:1/a/b?x=1"), "/a/b");
        assert_eq!(path_of("http://h:1"), "/");
    }
}
