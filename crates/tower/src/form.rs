//! Which form a secured primitive travels in: the ESPrim JWE inside `m2m:seci`, or the compact
//! binary form (docs/protocol.md §4.3), chosen per peer and per SA.
//!
//! The compact form is sent only to a peer that accepts it: one whose SA negotiated the
//! `compact` capability at establishment ([`SecuredForm::Auto`], the default), or one the
//! operator configured for it ([`SecuredForm::Compact`]). Inside a primitive it is the content
//! `{"sa:cmp": …}` ([`onem2m_primitive::compact`]), which the HTTP and CoAP bindings carry as
//! the raw body / payload with their own media type / Content-Format. A receiver always takes
//! the JWE form; it takes the compact form when it offers the `compact` capability, and
//! answers a request in the form the request came in.
//!
//! What is sealed differs with the form: the binary form of the primitive (docs/protocol.md §4.5)
//! in the compact form, its TS-0004 JSON in the JWE form (which any JOSE library opens).

use std::collections::HashMap;
use std::sync::RwLock;

use onem2m_primitive::{PrimitiveError, RequestPrimitive, ResponsePrimitive, compact};
use onem2m_sa::Capabilities;
use onem2m_sa::credential::NodeId;
use onem2m_sa::secure::{
    Encoding, Sealed, SecureError, decode_compact, decode_jwe, epo_from_content, to_notify_content,
};
use onem2m_sa::table::SaEntry;
use serde_json::Value;

/// The form of the secured primitives sent to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecuredForm {
    /// The compact form when the SA negotiated `compact`, the JWE form otherwise (the default).
    #[default]
    Auto,
    /// Always the ESPrim JWE form (e.g. across transit CSEs, or to other implementations).
    Jwe,
    /// Always the compact form, negotiated or not (both operators configured it).
    Compact,
}

impl SecuredForm {
    /// The encoding of a message sealed under an SA that negotiated `capabilities`.
    pub fn encoding(self, capabilities: Capabilities) -> Encoding {
        match self {
            Self::Auto if capabilities.contains(Capabilities::COMPACT) => Encoding::Compact,
            Self::Auto | Self::Jwe => Encoding::Jwe,
            Self::Compact => Encoding::Compact,
        }
    }

    /// The configuration name: `auto`, `jwe` or `compact`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Jwe => "jwe",
            Self::Compact => "compact",
        }
    }
}

impl std::str::FromStr for SecuredForm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "jwe" => Ok(Self::Jwe),
            "compact" => Ok(Self::Compact),
            other => Err(format!("`{other}` is not a secured form (auto, jwe or compact)")),
        }
    }
}

impl std::fmt::Display for SecuredForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The forms a node sends per peer (read once per request; written at configuration).
#[derive(Debug, Default)]
pub(crate) struct Forms {
    per_peer: RwLock<HashMap<NodeId, SecuredForm>>,
}

impl Forms {
    pub(crate) fn set(&self, peer: NodeId, form: SecuredForm) {
        let mut map = self.per_peer.write().unwrap_or_else(|e| e.into_inner());
        if form == SecuredForm::Auto {
            map.remove(&peer);
        } else {
            map.insert(peer, form);
        }
    }

    pub(crate) fn get(&self, peer: &NodeId) -> SecuredForm {
        let map = self.per_peer.read().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return SecuredForm::Auto;
        }
        map.get(peer).copied().unwrap_or_default()
    }

    /// The encoding of a request to `peer` sealed under `entry`.
    pub(crate) fn encoding(&self, peer: &NodeId, entry: &SaEntry) -> Encoding {
        self.get(peer).encoding(entry.capabilities())
    }
}

/// The content of an outer primitive that carries `wire` sealed in `encoding`.
pub(crate) fn content(encoding: Encoding, wire: &[u8]) -> Value {
    match encoding {
        Encoding::Jwe => to_notify_content(wire),
        Encoding::Compact => compact::content(wire),
    }
}

/// The plaintext a primitive is sealed as: its binary form (docs/protocol.md §4.5) in the
/// compact form, its JSON (TS-0004) in the JWE form.
pub(crate) fn plaintext<P: Plaintext>(encoding: Encoding, primitive: &P) -> Result<Vec<u8>, PrimitiveError> {
    match encoding {
        Encoding::Compact => primitive.binary(),
        Encoding::Jwe => primitive.json(),
    }
}

/// Decodes an opened plaintext of `encoding` (see [`plaintext`]).
pub(crate) fn primitive<P: Plaintext>(encoding: Encoding, plain: &[u8]) -> Result<P, PrimitiveError> {
    match encoding {
        Encoding::Compact => P::from_binary(plain),
        Encoding::Jwe => P::from_json(plain),
    }
}

/// A primitive in both plaintext forms.
pub(crate) trait Plaintext: Sized {
    fn binary(&self) -> Result<Vec<u8>, PrimitiveError>;
    fn json(&self) -> Result<Vec<u8>, PrimitiveError>;
    fn from_binary(plain: &[u8]) -> Result<Self, PrimitiveError>;
    fn from_json(plain: &[u8]) -> Result<Self, PrimitiveError>;
}

macro_rules! plaintext_forms {
    ($($t:ty),*) => {$(
        impl Plaintext for $t {
            fn binary(&self) -> Result<Vec<u8>, PrimitiveError> {
                self.to_binary_vec()
            }
            fn json(&self) -> Result<Vec<u8>, PrimitiveError> {
                self.to_json_vec()
            }
            fn from_binary(plain: &[u8]) -> Result<Self, PrimitiveError> {
                Self::from_binary_slice(plain)
            }
            fn from_json(plain: &[u8]) -> Result<Self, PrimitiveError> {
                Self::from_json_slice(plain)
            }
        }
    )*};
}
plaintext_forms!(RequestPrimitive, ResponsePrimitive);

/// Whether `pc` is a secured primitive, in either form.
pub(crate) fn is_secured(pc: &Value) -> bool {
    pc.get("m2m:seci").is_some() || compact::is_compact(pc)
}

/// Decodes the secured primitive `pc` holds, in either form, into `scratch`.
pub(crate) fn decode<'a>(pc: &'a Value, scratch: &'a mut Vec<u8>) -> Result<Sealed<'a>, SecureError> {
    match compact::bytes(pc) {
        Some(bytes) => {
            *scratch = bytes.map_err(|_| SecureError::Malformed("compact content is not base64url"))?;
            decode_compact(scratch)
        }
        None => decode_jwe(epo_from_content(pc)?.as_bytes(), scratch),
    }
}
