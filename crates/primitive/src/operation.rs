//! The Operation parameter `op` (TS-0004 §6.3.4.2.5, `m2m:operation`), serialized as a number.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A oneM2M operation (`op`). Unknown numbers are rejected when decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Operation {
    /// CREATE (1).
    Create = 1,
    /// RETRIEVE (2).
    Retrieve = 2,
    /// UPDATE (3).
    Update = 3,
    /// DELETE (4).
    Delete = 4,
    /// NOTIFY (5).
    Notify = 5,
}

impl Operation {
    /// The numeric value used on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The operation for a wire value, or `None` for a value TS-0004 does not define.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Create,
            2 => Self::Retrieve,
            3 => Self::Update,
            4 => Self::Delete,
            5 => Self::Notify,
            _ => return None,
        })
    }

    /// The upper-case name used in the specifications, e.g. `"CREATE"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Retrieve => "RETRIEVE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Notify => "NOTIFY",
        }
    }
}

impl From<Operation> for u8 {
    fn from(op: Operation) -> Self {
        op.as_u8()
    }
}

/// The error for a number that is not a oneM2M operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownOperation(u8);

impl fmt::Display for UnknownOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown operation {} (expected 1..=5)", self.0)
    }
}

impl TryFrom<u8> for Operation {
    type Error = UnknownOperation;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::from_u8(value).ok_or(UnknownOperation(value))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values() {
        for n in 1..=5u8 {
            let op: Operation = serde_json::from_str(&n.to_string()).unwrap();
            assert_eq!(op.as_u8(), n);
            assert_eq!(serde_json::to_string(&op).unwrap(), n.to_string());
        }
        for bad in ["0", "6", "255", "-1", "\"1\"", "1.0"] {
            assert!(serde_json::from_str::<Operation>(bad).is_err(), "{bad}");
        }
    }
}
