//! **Demo fixture**: a small in-memory CSE. It is the embedded upstream of the demo and the
//! integration tests, not a CSE to deploy: no access control, no persistence, no announcement,
//! a handful of resource types (CSEBase, AE, container, contentInstance, subscription).
//!
//! It speaks primitives (TS-0004): CREATE, RETRIEVE, UPDATE, DELETE on a resource tree addressed
//! structured (`cse-base/ae/cnt`), unstructured (a resource ID) or SP-relative (`/id-in/…`), and
//! it sends NOTIFY primitives to the subscribers of a resource when a child is created. It
//! counts and records every request it executes, so tests can show that nothing ran twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use onem2m_primitive::{Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode as Rsc};
use serde_json::{Map, Value, json};

/// Resource types this fixture knows (TS-0004 §6.3.4.2.1).
pub mod ty {
    /// AE.
    pub const AE: u32 = 2;
    /// container.
    pub const CONTAINER: u32 = 3;
    /// contentInstance.
    pub const CONTENT_INSTANCE: u32 = 4;
    /// CSEBase.
    pub const CSE_BASE: u32 = 5;
    /// subscription.
    pub const SUBSCRIPTION: u32 = 23;
}

fn short_name(ty: u32) -> &'static str {
    match ty {
        ty::AE => "m2m:ae",
        ty::CONTAINER => "m2m:cnt",
        ty::CONTENT_INSTANCE => "m2m:cin",
        ty::CSE_BASE => "m2m:cb",
        ty::SUBSCRIPTION => "m2m:sub",
        _ => "m2m:unknown",
    }
}

#[derive(Debug, Clone)]
struct Resource {
    ty: u32,
    rn: String,
    pi: Option<String>,
    attrs: Map<String, Value>,
}

#[derive(Debug, Default)]
struct Tree {
    resources: HashMap<String, Resource>,
    /// Structured path (`cse-base/ae/cnt`) → resource ID.
    paths: HashMap<String, String>,
    next: u64,
}

/// A NOTIFY the CSE wants delivered to a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The notification URI of the subscription.
    pub target: String,
    /// The NOTIFY primitive.
    pub request: RequestPrimitive,
}

/// The in-memory CSE. Cheap to clone; clones share the tree.
#[derive(Debug, Clone)]
pub struct DemoCse {
    cse_id: String,
    base: String,
    tree: Arc<Mutex<Tree>>,
    executed: Arc<Mutex<Vec<(Operation, String)>>>,
    outbox: Arc<Mutex<Vec<Notification>>>,
}

impl DemoCse {
    /// A CSE with CSE-ID `cse_id` (e.g. `/id-in`) and a CSEBase named `base` (e.g. `cse-base`).
    pub fn new(cse_id: &str, base: &str) -> Self {
        let mut tree = Tree::default();
        let mut attrs = Map::new();
        attrs.insert("csi".into(), json!(cse_id));
        tree.resources.insert("cb".into(), Resource { ty: ty::CSE_BASE, rn: base.into(), pi: None, attrs });
        tree.paths.insert(base.into(), "cb".into());
        Self {
            cse_id: cse_id.into(),
            base: base.into(),
            tree: Arc::new(Mutex::new(tree)),
            executed: Arc::new(Mutex::new(Vec::new())),
            outbox: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every request executed so far: operation and request identifier, in order.
    pub fn executed(&self) -> Vec<(Operation, String)> {
        self.executed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the notifications waiting to be delivered.
    pub fn take_notifications(&self) -> Vec<Notification> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Number of resources in the tree, the CSEBase included.
    pub fn len(&self) -> usize {
        self.tree.lock().unwrap_or_else(|e| e.into_inner()).resources.len()
    }

    /// Whether the tree holds only the CSEBase (never empty).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The URLs a notification for `target` goes to: `target` itself when it is an `http(s)` URL,
    /// else the points of access (`poa`) of the AE whose resource ID or AE-ID it is.
    pub fn notification_urls(&self, target: &str) -> Vec<String> {
        if target.starts_with("http://") || target.starts_with("https://") {
            return vec![target.to_owned()];
        }
        let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        let id = target.strip_prefix(&self.cse_id).map_or(target, |rest| rest.trim_start_matches('/'));
        tree.resources
            .get(id)
            .filter(|r| r.ty == ty::AE)
            .and_then(|r| r.attrs.get("poa"))
            .and_then(|poa| poa.as_array())
            .map(|poa| {
                poa.iter().filter_map(|u| u.as_str()).filter(|u| u.starts_with("http")).map(str::to_owned).collect()
            })
            .unwrap_or_default()
    }

    /// Executes one request.
    pub fn handle(&self, req: &RequestPrimitive) -> ResponsePrimitive {
        self.executed.lock().unwrap_or_else(|e| e.into_inner()).push((req.op, req.rqi.clone()));
        let mut rsp = match self.dispatch(req) {
            Ok(rsp) => rsp,
            Err((rsc, why)) => ResponsePrimitive::error(rsc, &req.rqi, why),
        };
        rsp.rvi = req.rvi.clone();
        rsp.to = req.fr.clone();
        rsp.fr = Some(self.cse_id.clone());
        rsp
    }

    fn dispatch(&self, req: &RequestPrimitive) -> Result<ResponsePrimitive, (Rsc, String)> {
        let mut tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        let target = self.resolve(&tree, &req.to).ok_or((Rsc::NOT_FOUND, format!("no resource {}", req.to)))?;
        match req.op {
            Operation::Retrieve => Ok(self.representation(&tree, &target, Rsc::OK, &req.rqi)),
            Operation::Create => self.create(&mut tree, &target, req),
            Operation::Update => {
                let attrs = req
                    .pc
                    .as_ref()
                    .and_then(|pc| pc.as_object())
                    .and_then(|o| o.values().next())
                    .and_then(|v| v.as_object())
                    .ok_or((Rsc::BAD_REQUEST, "UPDATE needs a resource representation".into()))?
                    .clone();
                let r = tree.resources.get_mut(&target).expect("resolved");
                for (k, v) in attrs {
                    if !["ri", "rn", "pi", "ty", "ct"].contains(&k.as_str()) {
                        r.attrs.insert(k, v);
                    }
                }
                Ok(self.representation(&tree, &target, Rsc::UPDATED, &req.rqi))
            }
            Operation::Delete => {
                if target == "cb" {
                    return Err((Rsc::OPERATION_NOT_ALLOWED, "the CSEBase cannot be deleted".into()));
                }
                let rsp = self.representation(&tree, &target, Rsc::DELETED, &req.rqi);
                Self::delete(&mut tree, &target);
                Ok(rsp)
            }
            Operation::Notify => Ok(ResponsePrimitive::new(Rsc::OK, &req.rqi)),
        }
    }

    fn resolve(&self, tree: &Tree, to: &str) -> Option<String> {
        let local = match to.strip_prefix(&self.cse_id) {
            Some(rest) => rest.trim_start_matches('/'),
            None if to.starts_with('/') => return None,
            None => to,
        };
        let local = if local.is_empty() || local == "~" { self.base.as_str() } else { local };
        if tree.resources.contains_key(local) {
            return Some(local.to_owned());
        }
        tree.paths.get(local.trim_end_matches('/')).cloned()
    }

    fn path_of(tree: &Tree, ri: &str) -> String {
        let r = &tree.resources[ri];
        match &r.pi {
            Some(pi) => format!("{}/{}", Self::path_of(tree, pi), r.rn),
            None => r.rn.clone(),
        }
    }

    fn create(
        &self,
        tree: &mut Tree,
        parent: &str,
        req: &RequestPrimitive,
    ) -> Result<ResponsePrimitive, (Rsc, String)> {
        let ty = req.ty.ok_or((Rsc::BAD_REQUEST, "CREATE needs ty".into()))?;
        let allowed = match tree.resources[parent].ty {
            ty::CSE_BASE => [ty::AE, ty::CONTAINER, ty::SUBSCRIPTION].contains(&ty),
            ty::AE => [ty::CONTAINER, ty::SUBSCRIPTION].contains(&ty),
            ty::CONTAINER => [ty::CONTAINER, ty::CONTENT_INSTANCE, ty::SUBSCRIPTION].contains(&ty),
            _ => false,
        };
        if !allowed {
            return Err((Rsc::INVALID_CHILD_RESOURCE_TYPE, format!("ty {ty} not allowed here")));
        }
        let mut attrs = req
            .pc
            .as_ref()
            .and_then(|pc| pc.get(short_name(ty)))
            .and_then(|v| v.as_object())
            .cloned()
            .ok_or((Rsc::BAD_REQUEST, format!("content must be {{\"{}\": {{…}}}}", short_name(ty))))?;
        tree.next += 1;
        let ri = match ty {
            ty::AE => match req.fr.as_deref() {
                Some(fr) if !fr.is_empty() && fr != "C" && fr != "S" => fr.trim_start_matches('/').to_owned(),
                _ => format!("Cae{}", tree.next),
            },
            _ => format!("r{}", tree.next),
        };
        let rn = attrs.remove("rn").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| ri.clone());
        let path = format!("{}/{rn}", Self::path_of(tree, parent));
        if tree.paths.contains_key(&path) || tree.resources.contains_key(&ri) {
            return Err((Rsc::CONFLICT, format!("{path} already exists")));
        }
        if ty == ty::AE {
            attrs.insert("aei".into(), json!(ri));
        }
        tree.resources.insert(ri.clone(), Resource { ty, rn, pi: Some(parent.to_owned()), attrs });
        tree.paths.insert(path, ri.clone());
        self.notify_subscribers(tree, parent, &ri);
        Ok(self.representation(tree, &ri, Rsc::CREATED, &req.rqi))
    }

    fn notify_subscribers(&self, tree: &Tree, parent: &str, created: &str) {
        let event = self.representation(tree, created, Rsc::OK, "").pc;
        // A new subscription is not told about itself.
        let subs = tree
            .resources
            .iter()
            .filter(|(ri, r)| r.ty == ty::SUBSCRIPTION && r.pi.as_deref() == Some(parent) && ri.as_str() != created);
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        for (ri, sub) in subs {
            let targets = sub.attrs.get("nu").and_then(|nu| nu.as_array()).cloned().unwrap_or_default();
            for target in targets.iter().filter_map(|t| t.as_str()) {
                let mut n = RequestPrimitive::new(
                    Operation::Notify,
                    target,
                    Some(self.cse_id.clone()),
                    format!("ntf-{ri}-{created}"),
                );
                n.rvi = Some("3".into());
                n.pc =
                    Some(json!({ "m2m:sgn": { "sur": Self::path_of(tree, ri), "nev": { "rep": event, "net": 3 } } }));
                outbox.push(Notification { target: target.to_owned(), request: n });
            }
        }
    }

    fn delete(tree: &mut Tree, ri: &str) {
        let children: Vec<String> =
            tree.resources.iter().filter(|(_, r)| r.pi.as_deref() == Some(ri)).map(|(c, _)| c.clone()).collect();
        for c in children {
            Self::delete(tree, &c);
        }
        let path = Self::path_of(tree, ri);
        tree.paths.remove(&path);
        tree.resources.remove(ri);
    }

    fn representation(&self, tree: &Tree, ri: &str, rsc: Rsc, rqi: &str) -> ResponsePrimitive {
        let r = &tree.resources[ri];
        let mut body = r.attrs.clone();
        body.insert("ri".into(), json!(ri));
        body.insert("rn".into(), json!(r.rn));
        body.insert("ty".into(), json!(r.ty));
        if let Some(pi) = &r.pi {
            body.insert("pi".into(), json!(pi));
        }
        let mut rsp = ResponsePrimitive::new(rsc, rqi);
        rsp.pc = Some(json!({ short_name(r.ty): body }));
        rsp
    }
}
