//! Request and response primitives with their JSON short names (TS-0004 §6.4, Table 8.2.2-1)
//! and JSON serialization (§8.4): a bare object, enumerations as numbers, timestamps as
//! strings. Members this crate does not model are kept in `extra` and written back out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AbsRelTimestamp, Id, Operation, PrimitiveError, ResponseStatusCode, strict};

/// Default largest serialized primitive accepted by the decoders: 1 MiB.
pub const MAX_PRIMITIVE_BYTES: usize = 1 << 20;

/// Default deepest nesting of arrays/objects accepted by the decoders (the primitive
/// object itself is level 1). serde_json's own limit of 128 applies on top.
pub const MAX_NESTING_DEPTH: usize = 32;

/// `m2m:resourceType` value of `<AE>` (TS-0004 §6.3.4.2.1); its CREATE may omit `fr`.
const RESOURCE_TYPE_AE: u32 = 2;

/// Resource limits applied before any typed decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest input in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: MAX_PRIMITIVE_BYTES, max_depth: MAX_NESTING_DEPTH }
    }
}

/// `m2m:responseTypeInfo` (`rt`, TS-0004 §6.3.5.30).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseTypeInfo {
    /// `rtv` Response Type Value: 1 nonBlockingRequestSynch, 2 nonBlockingRequestAsynch,
    /// 3 blockingRequest, 4 flexBlocking, 5 noResponse.
    pub rtv: u8,
    /// `nu` Notification URIs for asynchronous results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nu: Option<Vec<String>>,
    /// Members not modelled here, kept for re-encoding.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResponseTypeInfo {
    /// A Response Type with no notification URIs.
    pub fn new(rtv: u8) -> Self {
        Self { rtv, nu: None, extra: Map::new() }
    }
}

/// A request primitive (TS-0004 Table 6.4.1-1).
///
/// `op`, `to` and `rqi` are required to decode at all; the other mandatory elements
/// (`rvi`, `fr`, `ty` for CREATE) are checked by [`RequestPrimitive::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestPrimitive {
    /// `op` Operation.
    pub op: Operation,
    /// `to` target resource or entity.
    pub to: String,
    /// `fr` Originator ID; optional only for `<AE>` CREATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fr: Option<String>,
    /// `rqi` Request Identifier.
    pub rqi: String,
    /// `ty` Resource Type, mandatory for CREATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<u32>,
    /// `pc` Content, e.g. `{"m2m:ae": {…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc: Option<Value>,
    /// `rids` Role IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rids: Option<Vec<String>>,
    /// `ot` Originating Timestamp (`YYYYMMDDThhmmss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ot: Option<String>,
    /// `rqet` Request Expiration Timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rqet: Option<AbsRelTimestamp>,
    /// `rset` Result Expiration Timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rset: Option<AbsRelTimestamp>,
    /// `oet` Operation Execution Time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oet: Option<AbsRelTimestamp>,
    /// `rt` Response Type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<ResponseTypeInfo>,
    /// `rp` Result Persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rp: Option<AbsRelTimestamp>,
    /// `rcn` Result Content (0..=10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcn: Option<u8>,
    /// `ec` Event Category (2 Immediate, 3 BestEffort, 4 Latest, 100..=999 user-defined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec: Option<u16>,
    /// `da` Delivery Aggregation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub da: Option<bool>,
    /// `gid` Group Request Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// `fc` Filter Criteria (`m2m:filterCriteria`), kept as an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc: Option<Map<String, Value>>,
    /// `drt` Desired Identifier Result Type (1 structured, 2 unstructured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drt: Option<u8>,
    /// `tkns` Tokens (JWS/JWE compact serializations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tkns: Option<Vec<String>>,
    /// `tids` Token IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tids: Option<Vec<String>>,
    /// `ltids` Local Token IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ltids: Option<Vec<String>>,
    /// `tqi` Token Request Indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tqi: Option<bool>,
    /// `grtm` Group Request Target Members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grtm: Option<Vec<String>>,
    /// `asi` Authorization Signature Indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asi: Option<bool>,
    /// `aus` Authorization Signatures (`m2m:signatureList`), kept as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aus: Option<Value>,
    /// `auri` Authorization Relationship Indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auri: Option<bool>,
    /// `sqi` Semantic Query Indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqi: Option<bool>,
    /// `rvi` Release Version Indicator, e.g. `"3"` or `"2a"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rvi: Option<String>,
    /// `vsi` Vendor Information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsi: Option<String>,
    /// Members not modelled here (later releases, vendor extensions), kept for re-encoding.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A response primitive (TS-0004 Table 6.4.2-1).
///
/// `rsc` and `rqi` are required to decode; `rvi` is checked by
/// [`ResponsePrimitive::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponsePrimitive {
    /// `rsc` Response Status Code.
    pub rsc: ResponseStatusCode,
    /// `rqi` Request Identifier of the request answered.
    pub rqi: String,
    /// `pc` Content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc: Option<Value>,
    /// `to` the Originator of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `fr` the Receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fr: Option<String>,
    /// `ot` Originating Timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ot: Option<String>,
    /// `rset` Result Expiration Timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rset: Option<AbsRelTimestamp>,
    /// `ec` Event Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec: Option<u16>,
    /// `cnst` Content Status (1 full, 2 partial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnst: Option<u8>,
    /// `cnot` Content Offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnot: Option<u64>,
    /// `ati` Assigned Token Identifiers, kept as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ati: Option<Value>,
    /// `tqf` Token Request Information, kept as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tqf: Option<Value>,
    /// `asri` Authorization Signature Request Information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asri: Option<bool>,
    /// `rvi` Release Version Indicator; omitted only towards Release-1 entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rvi: Option<String>,
    /// `vsi` Vendor Information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsi: Option<String>,
    /// Members not modelled here, kept for re-encoding.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Either kind of primitive, told apart by the presence of `op` (TS-0004 §8.4.3).
#[derive(Debug, Clone, PartialEq)]
pub enum Primitive {
    /// A request (has `op`).
    Request(Box<RequestPrimitive>),
    /// A response (no `op`).
    Response(Box<ResponsePrimitive>),
}

/// Size check, strict parse, object check, presence of the elements the type requires.
fn decode_object(
    bytes: &[u8],
    limits: DecodeLimits,
    required: &[&'static str],
) -> Result<Map<String, Value>, PrimitiveError> {
    if bytes.len() > limits.max_bytes {
        return Err(PrimitiveError::TooLarge { size: bytes.len(), limit: limits.max_bytes });
    }
    let Value::Object(object) = strict::parse(bytes, limits.max_depth)? else {
        return Err(PrimitiveError::NotAnObject);
    };
    if let Some(missing) = required.iter().find(|name| !object.contains_key(**name)) {
        return Err(PrimitiveError::MissingElement(missing));
    }
    Ok(object)
}

/// The members of a JSON object that holds some of a primitive's elements (the binary form's
/// others, §4.5), parsed strictly; its size was checked with the whole primitive's.
pub(crate) fn decode_object_members(bytes: &[u8], limits: DecodeLimits) -> Result<Map<String, Value>, PrimitiveError> {
    match strict::parse(bytes, limits.max_depth)? {
        Value::Object(object) => Ok(object),
        _ => Err(PrimitiveError::NotAnObject),
    }
}

fn parse_id(element: &'static str, value: &str) -> Result<Id, PrimitiveError> {
    Id::parse(value).map_err(|source| PrimitiveError::InvalidId { element, source })
}

fn check_timestamps<'a>(
    ot: Option<&str>,
    abs_rel: impl IntoIterator<Item = (&'static str, Option<&'a AbsRelTimestamp>)>,
) -> Result<(), PrimitiveError> {
    if let Some(ot) = ot {
        crate::parse_timestamp(ot).map_err(|source| PrimitiveError::InvalidTimestamp { element: "ot", source })?;
    }
    for (element, value) in abs_rel {
        if let Some(value) = value {
            value.check().map_err(|source| PrimitiveError::InvalidTimestamp { element, source })?;
        }
    }
    Ok(())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PrimitiveError> {
    serde_json::to_vec(value).map_err(PrimitiveError::Encode)
}

impl RequestPrimitive {
    /// A request with the given mandatory elements and nothing else (`rvi` unset).
    pub fn new(op: Operation, to: impl Into<String>, fr: Option<String>, rqi: impl Into<String>) -> Self {
        Self {
            op,
            to: to.into(),
            fr,
            rqi: rqi.into(),
            ty: None,
            pc: None,
            rids: None,
            ot: None,
            rqet: None,
            rset: None,
            oet: None,
            rt: None,
            rp: None,
            rcn: None,
            ec: None,
            da: None,
            gid: None,
            fc: None,
            drt: None,
            tkns: None,
            tids: None,
            ltids: None,
            tqi: None,
            grtm: None,
            asi: None,
            aus: None,
            auri: None,
            sqi: None,
            rvi: None,
            vsi: None,
            extra: Map::new(),
        }
    }

    /// Decodes a JSON request with the default [`DecodeLimits`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, PrimitiveError> {
        Self::from_json_slice_with_limits(bytes, DecodeLimits::default())
    }

    /// Decodes a JSON request. Does not [`validate`](Self::validate) it.
    pub fn from_json_slice_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, PrimitiveError> {
        Self::from_object(decode_object(bytes, limits, &["op", "to", "rqi"])?)
    }

    fn from_object(object: Map<String, Value>) -> Result<Self, PrimitiveError> {
        Ok(serde_json::from_value(Value::Object(object))?)
    }

    /// Encodes as JSON.
    pub fn to_json_vec(&self) -> Result<Vec<u8>, PrimitiveError> {
        encode(self)
    }

    /// Whether this is an `<AE>` CREATE, the one request that may omit `fr`.
    pub fn is_ae_create(&self) -> bool {
        self.op == Operation::Create && self.ty == Some(RESOURCE_TYPE_AE)
    }

    /// Checks the mandatory elements and the syntax of IDs and timestamps, reporting the
    /// first problem in this order: `rqi` empty, `to` not an ID, `rvi` missing, `fr` missing
    /// (unless [`is_ae_create`](Self::is_ae_create); an empty `fr` counts as missing) or
    /// not an ID, `ty` missing in a CREATE, a malformed `ot`/`rqet`/`rset`/`oet`/`rp`.
    ///
    /// Every error maps to `BAD_REQUEST` through [`PrimitiveError::rsc`]. The `rvi` value
    /// itself is not judged: which releases are supported is the caller's policy (4001).
    pub fn validate(&self) -> Result<(), PrimitiveError> {
        if self.rqi.is_empty() {
            return Err(PrimitiveError::MissingElement("rqi"));
        }
        parse_id("to", &self.to)?;
        if self.rvi.is_none() {
            return Err(PrimitiveError::MissingElement("rvi"));
        }
        match self.fr.as_deref() {
            None | Some("") if self.is_ae_create() => {}
            None | Some("") => return Err(PrimitiveError::MissingElement("fr")),
            Some(fr) => drop(parse_id("fr", fr)?),
        }
        if self.op == Operation::Create && self.ty.is_none() {
            return Err(PrimitiveError::MissingElement("ty"));
        }
        check_timestamps(
            self.ot.as_deref(),
            [
                ("rqet", self.rqet.as_ref()),
                ("rset", self.rset.as_ref()),
                ("oet", self.oet.as_ref()),
                ("rp", self.rp.as_ref()),
            ],
        )
    }

    /// `to` parsed as an [`Id`].
    pub fn to_id(&self) -> Result<Id, PrimitiveError> {
        parse_id("to", &self.to)
    }

    /// `fr` parsed as an [`Id`]; `Ok(None)` if absent or empty.
    pub fn fr_id(&self) -> Result<Option<Id>, PrimitiveError> {
        match self.fr.as_deref() {
            None | Some("") => Ok(None),
            Some(fr) => parse_id("fr", fr).map(Some),
        }
    }
}

impl ResponsePrimitive {
    /// A response with the given mandatory elements and nothing else (`rvi` unset).
    pub fn new(rsc: ResponseStatusCode, rqi: impl Into<String>) -> Self {
        Self {
            rsc,
            rqi: rqi.into(),
            pc: None,
            to: None,
            fr: None,
            ot: None,
            rset: None,
            ec: None,
            cnst: None,
            cnot: None,
            ati: None,
            tqf: None,
            asri: None,
            rvi: None,
            vsi: None,
            extra: Map::new(),
        }
    }

    /// An error response whose content is the debug message, `{"m2m:dbg": message}`
    /// (TS-0004 §7.5.2, `m2m:debugInfo`).
    pub fn error(rsc: ResponseStatusCode, rqi: impl Into<String>, message: impl Into<String>) -> Self {
        let mut pc = Map::new();
        pc.insert("m2m:dbg".to_owned(), Value::String(message.into()));
        Self { pc: Some(Value::Object(pc)), ..Self::new(rsc, rqi) }
    }

    /// A response to `request`: same `rqi` and `rvi`, `to` set to the request's `fr`.
    pub fn answering(request: &RequestPrimitive, rsc: ResponseStatusCode) -> Self {
        Self { to: request.fr.clone(), rvi: request.rvi.clone(), ..Self::new(rsc, request.rqi.clone()) }
    }

    /// The `m2m:dbg` message in `pc`, if there is one.
    pub fn debug_info(&self) -> Option<&str> {
        self.pc.as_ref()?.get("m2m:dbg")?.as_str()
    }

    /// Decodes a JSON response with the default [`DecodeLimits`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, PrimitiveError> {
        Self::from_json_slice_with_limits(bytes, DecodeLimits::default())
    }

    /// Decodes a JSON response. Does not [`validate`](Self::validate) it.
    pub fn from_json_slice_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, PrimitiveError> {
        Self::from_object(decode_object(bytes, limits, &["rsc", "rqi"])?)
    }

    fn from_object(object: Map<String, Value>) -> Result<Self, PrimitiveError> {
        Ok(serde_json::from_value(Value::Object(object))?)
    }

    /// Encodes as JSON.
    pub fn to_json_vec(&self) -> Result<Vec<u8>, PrimitiveError> {
        encode(self)
    }

    /// Checks, in this order: `rqi` non-empty, `rvi` present (TS-0004 Table 6.4.2-1; a
    /// Release-1 peer omits it, so skip this check for those), `to`/`fr` valid IDs if
    /// present, `ot`/`rset` well-formed if present.
    pub fn validate(&self) -> Result<(), PrimitiveError> {
        if self.rqi.is_empty() {
            return Err(PrimitiveError::MissingElement("rqi"));
        }
        if self.rvi.is_none() {
            return Err(PrimitiveError::MissingElement("rvi"));
        }
        if let Some(to) = self.to.as_deref() {
            parse_id("to", to)?;
        }
        if let Some(fr) = self.fr.as_deref() {
            parse_id("fr", fr)?;
        }
        check_timestamps(self.ot.as_deref(), [("rset", self.rset.as_ref())])
    }
}

impl Primitive {
    /// Decodes either kind with the default [`DecodeLimits`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, PrimitiveError> {
        Self::from_json_slice_with_limits(bytes, DecodeLimits::default())
    }

    /// Decodes either kind: a request if `op` is present, else a response.
    pub fn from_json_slice_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, PrimitiveError> {
        let object = decode_object(bytes, limits, &["rqi"])?;
        if object.contains_key("op") {
            if !object.contains_key("to") {
                return Err(PrimitiveError::MissingElement("to"));
            }
            RequestPrimitive::from_object(object).map(|r| Self::Request(Box::new(r)))
        } else if object.contains_key("rsc") {
            ResponsePrimitive::from_object(object).map(|r| Self::Response(Box::new(r)))
        } else {
            Err(PrimitiveError::MissingElement("op"))
        }
    }

    /// Encodes as JSON.
    pub fn to_json_vec(&self) -> Result<Vec<u8>, PrimitiveError> {
        match self {
            Self::Request(r) => r.to_json_vec(),
            Self::Response(r) => r.to_json_vec(),
        }
    }

    /// The Request Identifier of either kind.
    pub fn rqi(&self) -> &str {
        match self {
            Self::Request(r) => &r.rqi,
            Self::Response(r) => &r.rqi,
        }
    }
}
