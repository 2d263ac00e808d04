//! Capabilities negotiated at establishment (an extension of the seed, docs/protocol.md §3.2).
//!
//! The Initiator lists in [`SaInit`](crate::message::SaInit) member `cap` the capabilities it
//! supports; the Responder answers in [`SaInitReply`](crate::message::SaInitReply) member `cap`
//! the ones it supports too. Both lists are in the transcript, so an attacker who strips or
//! changes either breaks the signatures. A peer that sends no `cap` supports none; unknown codes
//! are ignored. The set both support is recorded on the SA ([`EstablishedSa::capabilities`]).
//!
//! [`EstablishedSa::capabilities`]: crate::EstablishedSa::capabilities

use std::fmt;

/// Most capability codes a `cap` member may list.
pub const MAX_CAPABILITY_CODES: usize = 16;

/// A set of capabilities of this version of the protocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u16);

/// One capability: its code on the wire and its name.
struct Known {
    bit: u16,
    code: u16,
    name: &'static str,
}

const KNOWN: [Known; 2] = [Known { bit: 1, code: 1, name: "compact" }, Known { bit: 2, code: 2, name: "kem-update" }];

impl Capabilities {
    /// No capability (a peer that sends no `cap`).
    pub const NONE: Self = Self(0);
    /// Code 1, `compact`: the node accepts secured primitives in the compact binary form (§4.3).
    pub const COMPACT: Self = Self(1);
    /// Code 2, `kem-update`: the node accepts a key update with a fresh KEM exchange (`kpk`, §3.4).
    pub const KEM_UPDATE: Self = Self(2);
    /// Every capability this version knows.
    pub const ALL: Self = Self(3);

    /// Whether every capability of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The capabilities in both sets.
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The capabilities in either set.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as listed in a `cap` member: the codes in ascending order.
    pub fn to_codes(self) -> Vec<u16> {
        KNOWN.iter().filter(|k| self.0 & k.bit != 0).map(|k| k.code).collect()
    }

    /// The set a `cap` member lists; unknown codes are ignored.
    pub fn from_codes(codes: &[u16]) -> Self {
        Self(KNOWN.iter().filter(|k| codes.contains(&k.code)).fold(0, |acc, k| acc | k.bit))
    }

    /// The capability named `name` (`compact`, `kem-update`).
    pub fn from_name(name: &str) -> Option<Self> {
        KNOWN.iter().find(|k| k.name == name).map(|k| Self(k.bit))
    }

    /// The names of the capabilities in the set, in code order.
    pub fn names(self) -> Vec<&'static str> {
        KNOWN.iter().filter(|k| self.0 & k.bit != 0).map(|k| k.name).collect()
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_ignored() {
        assert_eq!(Capabilities::ALL.to_codes(), vec![1, 2]);
        assert_eq!(Capabilities::from_codes(&[2, 99, 1, 7]), Capabilities::ALL);
        assert_eq!(Capabilities::from_codes(&[99]), Capabilities::NONE);
        assert_eq!(Capabilities::from_codes(&[]), Capabilities::NONE);
        assert!(Capabilities::ALL.contains(Capabilities::COMPACT));
        assert!(!Capabilities::KEM_UPDATE.contains(Capabilities::COMPACT));
        assert_eq!(Capabilities::from_name("kem-update"), Some(Capabilities::KEM_UPDATE));
        assert_eq!(Capabilities::ALL.to_string(), "compact,kem-update");
        assert_eq!(format!("{:?}", Capabilities::COMPACT), r#"{"compact"}"#);
    }
}
