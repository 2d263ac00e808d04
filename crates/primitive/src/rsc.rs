//! Response Status Codes (TS-0004 §6.6.3) and their binding mappings: HTTP status codes
//! per TS-0009 Table 6.3.2-1 and CoAP response codes per TS-0008 Table 6.2.4-1.
//!
//! One static table drives the constants, names and both mappings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Operation;

/// A oneM2M Response Status Code (`rsc`), serialized as a number.
///
/// Any `u16` is representable so that codes from later releases pass through unchanged;
/// the associated constants cover every code of TS-0004 V3.32.0 §6.6.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponseStatusCode(u16);

/// The class of a Response Status Code, from its thousands digit (TS-0004 §6.6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RscClass {
    /// 1xxx: acknowledgement of a non-blocking request.
    Informational,
    /// 2xxx: the operation succeeded.
    Success,
    /// 3xxx: reserved, no codes defined.
    Redirection,
    /// 4xxx: the Originator sent something wrong.
    OriginatorError,
    /// 5xxx: the Receiver failed.
    ReceiverError,
    /// 6xxx: an external system reported an error over Mcn.
    NetworkError,
    /// Outside 1000..=6999.
    Unknown,
}

/// One row: code, TS-0004 name, HTTP status, CoAP (class, detail).
type Row = (u16, &'static str, u16, (u8, u8));

macro_rules! rsc_table {
    ($( $name:ident = $code:literal => $http:literal, ($cc:literal, $cd:literal); )*) => {
        impl ResponseStatusCode {
            $(
                #[doc = concat!("`", stringify!($code), " ", stringify!($name),
                    "`: HTTP ", stringify!($http), ", CoAP (class, detail) (",
                    stringify!($cc), ", ", stringify!($cd), ").")]
                pub const $name: Self = Self($code);
            )*
        }

        /// Sorted by code so lookups can binary-search.
        const TABLE: &[Row] = &[ $( ($code, stringify!($name), $http, ($cc, $cd)), )* ];
    };
}

// CoAP codes are (class, detail): 4.03 Forbidden is (4, 3).
rsc_table! {
    // 1000 has no CoAP code in TS-0008 ("Not used"); 2.01 like its two siblings is our choice.
    ACCEPTED = 1000 => 202, (2, 1);
    ACCEPTED_NON_BLOCKING_REQUEST_SYNCH = 1001 => 202, (2, 1);
    // TS-0008: 2.01 if a <request> resource was created, else 2.04.
    ACCEPTED_NON_BLOCKING_REQUEST_ASYNCH = 1002 => 202, (2, 1);
    // TS-0008: 2.05 for RETRIEVE, 2.04 (empty payload) for NOTIFY; see `coap_code_for`.
    OK = 2000 => 200, (2, 5);
    CREATED = 2001 => 201, (2, 1);
    DELETED = 2002 => 200, (2, 2);
    UPDATED = 2004 => 200, (2, 4);
    BAD_REQUEST = 4000 => 400, (4, 0);
    RELEASE_VERSION_NOT_SUPPORTED = 4001 => 501, (5, 1);
    NOT_FOUND = 4004 => 404, (4, 4);
    OPERATION_NOT_ALLOWED = 4005 => 405, (4, 5);
    REQUEST_TIMEOUT = 4008 => 504, (5, 4);
    UNSUPPORTED_MEDIA_TYPE = 4015 => 415, (4, 15);
    SUBSCRIPTION_CREATOR_HAS_NO_PRIVILEGE = 4101 => 403, (4, 3);
    CONTENTS_UNACCEPTABLE = 4102 => 400, (4, 0);
    ORIGINATOR_HAS_NO_PRIVILEGE = 4103 => 403, (4, 3);
    GROUP_REQUEST_IDENTIFIER_EXISTS = 4104 => 409, (4, 0);
    // The bindings disagree: HTTP 409 Conflict, CoAP 4.03 Forbidden.
    CONFLICT = 4105 => 409, (4, 3);
    ORIGINATOR_NOT_AUTHENTICATED = 4106 => 403, (4, 3);
    SECURITY_ASSOCIATION_REQUIRED = 4107 => 403, (4, 3);
    INVALID_CHILD_RESOURCE_TYPE = 4108 => 403, (4, 3);
    NO_MEMBERS = 4109 => 403, (4, 3);
    GROUP_MEMBER_TYPE_INCONSISTENT = 4110 => 400, (4, 0);
    ESPRIM_UNSUPPORTED_OPTION = 4111 => 403, (4, 3);
    ESPRIM_UNKNOWN_KEY_ID = 4112 => 403, (4, 3);
    ESPRIM_UNKNOWN_ORIG_RAND_ID = 4113 => 403, (4, 3);
    ESPRIM_UNKNOWN_RECV_RAND_ID = 4114 => 403, (4, 3);
    ESPRIM_BAD_MAC = 4115 => 403, (4, 3);
    ESPRIM_IMPERSONATION_ERROR = 4116 => 403, (4, 3);
    ORIGINATOR_HAS_ALREADY_REGISTERED = 4117 => 403, (4, 3);
    ONTOLOGY_NOT_AVAILABLE = 4118 => 404, (4, 4);
    LINKED_SEMANTICS_NOT_AVAILABLE = 4119 => 404, (4, 4);
    INVALID_SEMANTICS = 4120 => 400, (4, 2);
    MASHUP_MEMBER_NOT_FOUND = 4121 => 404, (4, 4);
    INVALID_TRIGGER_PURPOSE = 4122 => 400, (4, 2);
    ILLEGAL_TRANSACTION_STATE_TRANSITION_ATTEMPTED = 4123 => 400, (4, 0);
    BLOCKING_SUBSCRIPTION_ALREADY_EXISTS = 4124 => 409, (4, 0);
    SPECIALIZATION_SCHEMA_NOT_FOUND = 4125 => 501, (5, 1);
    APP_RULE_VALIDATION_FAILED = 4126 => 403, (4, 3);
    OPERATION_DENIED_BY_REMOTE_ENTITY = 4127 => 403, (4, 3);
    // Absent from both binding tables; 403/4.03 as ACME-oneM2M-CSE does.
    SERVICE_SUBSCRIPTION_NOT_ESTABLISHED = 4128 => 403, (4, 3);
    INVALID_SPARQL_QUERY = 4143 => 400, (4, 0);
    INTERNAL_SERVER_ERROR = 5000 => 500, (5, 0);
    NOT_IMPLEMENTED = 5001 => 501, (5, 1);
    TARGET_NOT_REACHABLE = 5103 => 404, (4, 4);
    RECEIVER_HAS_NO_PRIVILEGE = 5105 => 403, (4, 3);
    ALREADY_EXISTS = 5106 => 409, (4, 0);
    REMOTE_ENTITY_NOT_REACHABLE = 5107 => 404, (4, 4);
    TARGET_NOT_SUBSCRIBABLE = 5203 => 403, (4, 3);
    SUBSCRIPTION_VERIFICATION_INITIATION_FAILED = 5204 => 500, (5, 0);
    SUBSCRIPTION_HOST_HAS_NO_PRIVILEGE = 5205 => 403, (4, 3);
    NON_BLOCKING_SYNCH_REQUEST_NOT_SUPPORTED = 5206 => 501, (5, 1);
    NOT_ACCEPTABLE = 5207 => 406, (4, 6);
    DISCOVERY_DENIED_BY_IPE = 5208 => 403, (4, 3);
    GROUP_MEMBERS_NOT_RESPONDED = 5209 => 500, (5, 0);
    ESPRIM_DECRYPTION_ERROR = 5210 => 500, (5, 0);
    ESPRIM_ENCRYPTION_ERROR = 5211 => 500, (5, 0);
    SPARQL_UPDATE_ERROR = 5212 => 500, (5, 0);
    TARGET_HAS_NO_SESSION_CAPABILITY = 5214 => 403, (4, 3);
    SESSION_IS_ONLINE = 5215 => 403, (4, 3);
    JOIN_MULTICAST_GROUP_FAILED = 5216 => 500, (5, 0);
    LEAVE_MULTICAST_GROUP_FAILED = 5217 => 500, (5, 0);
    TRIGGERING_DISABLED_FOR_RECIPIENT = 5218 => 403, (4, 3);
    UNABLE_TO_REPLACE_REQUEST = 5219 => 409, (4, 0);
    UNABLE_TO_RECALL_REQUEST = 5220 => 409, (4, 0);
    CROSS_RESOURCE_OPERATION_FAILURE = 5221 => 500, (5, 0);
    TRANSACTION_PROCESSING_IS_INCOMPLETE = 5222 => 403, (4, 3);
    EXTERNAL_OBJECT_NOT_REACHABLE = 6003 => 404, (4, 4);
    EXTERNAL_OBJECT_NOT_FOUND = 6005 => 404, (4, 4);
    MAX_NUMBER_OF_MEMBER_EXCEEDED = 6010 => 400, (4, 0);
    MGMT_SESSION_CANNOT_BE_ESTABLISHED = 6020 => 500, (5, 0);
    MGMT_SESSION_ESTABLISHMENT_TIMEOUT = 6021 => 500, (5, 0);
    INVALID_CMDTYPE = 6022 => 400, (4, 0);
    INVALID_ARGUMENTS = 6023 => 400, (4, 0);
    INSUFFICIENT_ARGUMENTS = 6024 => 400, (4, 0);
    MGMT_CONVERSION_ERROR = 6025 => 500, (5, 0);
    MGMT_CANCELLATION_FAILED = 6026 => 500, (5, 0);
    ALREADY_COMPLETE = 6028 => 409, (4, 0);
    MGMT_COMMAND_NOT_CANCELLABLE = 6029 => 409, (4, 0);
    EXTERNAL_OBJECT_NOT_REACHABLE_BEFORE_RQET_TIMEOUT = 6030 => 504, (5, 4);
    EXTERNAL_OBJECT_NOT_REACHABLE_BEFORE_OET_TIMEOUT = 6031 => 504, (5, 4);
}

impl ResponseStatusCode {
    /// A code from its number; any value is accepted.
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// Every code defined by TS-0004 V3.32.0, in ascending order.
    pub fn all() -> impl Iterator<Item = Self> {
        TABLE.iter().map(|row| Self(row.0))
    }

    fn row(self) -> Option<&'static Row> {
        TABLE.binary_search_by_key(&self.0, |row| row.0).ok().map(|i| &TABLE[i])
    }

    /// Whether TS-0004 V3.32.0 defines this code.
    pub fn is_known(self) -> bool {
        self.row().is_some()
    }

    /// The TS-0004 name, e.g. `"SECURITY_ASSOCIATION_REQUIRED"`; `None` for an unknown code.
    ///
    /// 1001 and 1002, described in prose by the spec ("ACCEPTED for
    /// nonBlockingRequestSynch"), are named `ACCEPTED_NON_BLOCKING_REQUEST_SYNCH`/`…ASYNCH`.
    pub fn name(self) -> Option<&'static str> {
        self.row().map(|row| row.1)
    }

    /// The class, from the thousands digit.
    pub const fn class(self) -> RscClass {
        match self.0 / 1000 {
            1 => RscClass::Informational,
            2 => RscClass::Success,
            3 => RscClass::Redirection,
            4 => RscClass::OriginatorError,
            5 => RscClass::ReceiverError,
            6 => RscClass::NetworkError,
            _ => RscClass::Unknown,
        }
    }

    /// Whether the code is in the success class (2xxx). Acknowledgements (1xxx) are not.
    pub const fn is_success(self) -> bool {
        matches!(self.class(), RscClass::Success)
    }

    /// Whether the code reports an error (4xxx, 5xxx, 6xxx or outside the defined range).
    pub const fn is_error(self) -> bool {
        !matches!(self.class(), RscClass::Informational | RscClass::Success | RscClass::Redirection)
    }

    /// The HTTP status code (TS-0009 Table 6.3.2-1).
    ///
    /// Codes missing from the table map by class: 1xxx → 202, 2xxx → 200, 4xxx → 400,
    /// everything else → 500, mirroring how the table maps the generic `BAD_REQUEST` and
    /// `INTERNAL_SERVER_ERROR`.
    pub fn http_status(self) -> u16 {
        match self.row() {
            Some(row) => row.2,
            None => match self.class() {
                RscClass::Informational => 202,
                RscClass::Success => 200,
                RscClass::OriginatorError => 400,
                _ => 500,
            },
        }
    }

    /// The CoAP response code as (class, detail), e.g. 4.03 is `(4, 3)` (TS-0008 Table 6.2.4-1).
    ///
    /// `OK` gives 2.05 (the RETRIEVE case) and `ACCEPTED_NON_BLOCKING_REQUEST_ASYNCH` 2.01
    /// (the `<request>`-created case); use [`Self::coap_code_for`] when the operation is known.
    /// `ACCEPTED` (1000) has no CoAP code in TS-0008 and gives 2.01 like 1001. Codes missing
    /// from the table map by class: 1xxx → 2.01, 2xxx → 2.05, 4xxx → 4.00, else → 5.00.
    pub fn coap_code(self) -> (u8, u8) {
        match self.row() {
            Some(row) => row.3,
            None => match self.class() {
                RscClass::Informational => (2, 1),
                RscClass::Success => (2, 5),
                RscClass::OriginatorError => (4, 0),
                _ => (5, 0),
            },
        }
    }

    /// The CoAP response code for a response to `op`: like [`Self::coap_code`], except that
    /// `OK` to a NOTIFY is 2.04 (Changed, empty payload) as TS-0008 Table 6.2.4-1 requires.
    pub fn coap_code_for(self, op: Operation) -> (u8, u8) {
        if self == Self::OK && op == Operation::Notify { (2, 4) } else { self.coap_code() }
    }
}

impl From<u16> for ResponseStatusCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<ResponseStatusCode> for u16 {
    fn from(rsc: ResponseStatusCode) -> Self {
        rsc.0
    }
}

/// `"4107 SECURITY_ASSOCIATION_REQUIRED"`, or just the number for an unknown code.
impl fmt::Display for ResponseStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} {}", self.0, name),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
        let mut names: Vec<_> = TABLE.iter().map(|r| r.1).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn table_classes_match_codes() {
        for rsc in ResponseStatusCode::all() {
            assert_ne!(rsc.class(), RscClass::Unknown, "{rsc}");
            assert_ne!(rsc.class(), RscClass::Redirection, "{rsc}");
        }
    }
}
