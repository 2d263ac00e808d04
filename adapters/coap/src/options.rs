//! Option numbers (RFC 7252 §5.10, RFC 7959, TS-0008 Table 6.2.2.4.0-1 and the older oneM2M
//! numbering), Content-Formats (TS-0008 Table 6.2.2.2-1) and the checks every received option
//! goes through: known, within its length, not repeated unless repeatable.

use coap_lite::Packet;

use crate::BindingError;

/// RFC 7252 / RFC 7959 option numbers this binding reads or writes.
pub mod rfc {
    /// Uri-Host.
    pub const URI_HOST: u16 = 3;
    /// ETag.
    pub const ETAG: u16 = 4;
    /// Observe (RFC 7641), elective: ignored.
    pub const OBSERVE: u16 = 6;
    /// Uri-Port.
    pub const URI_PORT: u16 = 7;
    /// Location-Path.
    pub const LOCATION_PATH: u16 = 8;
    /// Uri-Path.
    pub const URI_PATH: u16 = 11;
    /// Content-Format.
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age.
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query.
    pub const URI_QUERY: u16 = 15;
    /// Accept.
    pub const ACCEPT: u16 = 17;
    /// Location-Query.
    pub const LOCATION_QUERY: u16 = 20;
    /// Block2 (RFC 7959).
    pub const BLOCK2: u16 = 23;
    /// Block1 (RFC 7959).
    pub const BLOCK1: u16 = 27;
    /// Size2 (RFC 7959).
    pub const SIZE2: u16 = 28;
    /// Size1.
    pub const SIZE1: u16 = 60;
    /// No-Response (RFC 7967), elective.
    pub const NO_RESPONSE: u16 = 258;
}

/// oneM2M option numbers, TS-0008 V3.9.0 Table 6.2.2.4.0-1 (renumbered for IANA in V3.7.0).
/// All are critical and unsafe (odd numbers).
pub mod onem2m {
    /// oneM2M-OT, Originating Timestamp.
    pub const OT: u16 = 259;
    /// oneM2M-RTURI, notificationURI of Response Type.
    pub const RTURI: u16 = 263;
    /// oneM2M-TY, Resource Type.
    pub const TY: u16 = 267;
    /// oneM2M-RVI, Release Version Indicator.
    pub const RVI: u16 = 271;
    /// oneM2M-ASRI, Authorization Signature Request Information.
    pub const ASRI: u16 = 275;
    /// oneM2M-FR, From.
    pub const FR: u16 = 279;
    /// oneM2M-RQI, Request Identifier.
    pub const RQI: u16 = 283;
    /// oneM2M-RQET, Request Expiration Timestamp.
    pub const RQET: u16 = 291;
    /// oneM2M-RSET, Result Expiration Timestamp.
    pub const RSET: u16 = 295;
    /// oneM2M-OET, Operation Execution Time.
    pub const OET: u16 = 299;
    /// oneM2M-EC, Event Category.
    pub const EC: u16 = 303;
    /// oneM2M-RSC, Response Status Code.
    pub const RSC: u16 = 307;
    /// oneM2M-GID, Group Request Identifier.
    pub const GID: u16 = 311;
    /// oneM2M-CTO, Content Offset.
    pub const CTO: u16 = 319;
    /// oneM2M-CTS, Content Status.
    pub const CTS: u16 = 323;
    /// oneM2M-ATI, Assigned Token Identifiers.
    pub const ATI: u16 = 327;
    /// oneM2M-VSI, Vendor Information.
    pub const VSI: u16 = 331;
    /// oneM2M-GTM, Group Request Target Members.
    pub const GTM: u16 = 335;
    /// oneM2M-AUS, Authorization Signatures.
    pub const AUS: u16 = 339;
}

/// The numbering before TS-0008 V3.7.0, still sent by deployed CSEs (Eclipse OM2M, Mobius,
/// OpenDaylight IoTDM): accepted on ingress, never sent. OT (259), RTURI (263) and TY (267)
/// kept their numbers.
pub mod legacy {
    /// oneM2M-FR (elective under the old numbering).
    pub const FR: u16 = 256;
    /// oneM2M-RQI.
    pub const RQI: u16 = 257;
    /// oneM2M-RQET.
    pub const RQET: u16 = 260;
    /// oneM2M-RSET.
    pub const RSET: u16 = 261;
    /// oneM2M-OET.
    pub const OET: u16 = 262;
    /// oneM2M-EC.
    pub const EC: u16 = 264;
    /// oneM2M-RSC.
    pub const RSC: u16 = 265;
    /// oneM2M-GID.
    pub const GID: u16 = 266;
    /// oneM2M-RVI (Mobius).
    pub const RVI: u16 = 268;
}

/// Definition of a known option: length bounds and repeatability.
struct Def {
    number: u16,
    min: usize,
    max: usize,
    repeatable: bool,
}

const fn def(number: u16, min: usize, max: usize, repeatable: bool) -> Def {
    Def { number, min, max, repeatable }
}

/// Every option this binding accepts on ingress. An option not listed is ignored when
/// elective (even number) and refused with 4.02 when critical (odd number).
///
/// The oneM2M timestamps (OT, RQET, RSET, OET) are 15 bytes when absolute; relative
/// milliseconds are shorter, so 1..=255 is accepted. EC is 1 byte in the table but
/// user-defined categories (100..=999) need 2.
const KNOWN: &[Def] = &[
    def(rfc::URI_HOST, 1, 255, false),
    def(rfc::ETAG, 1, 8, true),
    def(rfc::OBSERVE, 0, 3, false),
    def(rfc::URI_PORT, 0, 2, false),
    def(rfc::LOCATION_PATH, 0, 255, true),
    def(rfc::URI_PATH, 0, 255, true),
    def(rfc::CONTENT_FORMAT, 0, 2, false),
    def(rfc::MAX_AGE, 0, 4, false),
    def(rfc::URI_QUERY, 0, 255, true),
    def(rfc::ACCEPT, 0, 2, false),
    def(rfc::LOCATION_QUERY, 0, 255, true),
    def(rfc::BLOCK2, 0, 3, false),
    def(rfc::BLOCK1, 0, 3, false),
    def(rfc::SIZE2, 0, 4, false),
    def(rfc::SIZE1, 0, 4, false),
    def(rfc::NO_RESPONSE, 0, 1, false),
    def(onem2m::OT, 1, 255, false),
    def(onem2m::RTURI, 0, 255, false),
    def(onem2m::TY, 0, 2, false),
    def(onem2m::RVI, 1, 2, false),
    def(onem2m::ASRI, 0, 255, false),
    def(onem2m::FR, 0, 255, false),
    def(onem2m::RQI, 0, 255, false),
    def(onem2m::RQET, 1, 255, false),
    def(onem2m::RSET, 1, 255, false),
    def(onem2m::OET, 1, 255, false),
    def(onem2m::EC, 0, 2, false),
    def(onem2m::RSC, 0, 2, false),
    def(onem2m::GID, 0, 255, false),
    def(onem2m::CTO, 0, 2, false),
    def(onem2m::CTS, 0, 2, false),
    def(onem2m::ATI, 0, 255, false),
    def(onem2m::VSI, 0, 255, false),
    def(onem2m::GTM, 0, 512, false),
    def(onem2m::AUS, 0, 255, false),
    def(legacy::FR, 0, 255, false),
    def(legacy::RQI, 0, 255, false),
    def(legacy::RQET, 1, 255, false),
    def(legacy::RSET, 1, 255, false),
    def(legacy::OET, 1, 255, false),
    def(legacy::EC, 0, 2, false),
    def(legacy::RSC, 0, 2, false),
    def(legacy::GID, 0, 255, false),
    def(legacy::RVI, 1, 2, false),
];

/// Checks every option of a received message: a critical option must be known, a known
/// option within its length bounds and, unless repeatable, present once (RFC 7252 §5.4).
pub fn check(packet: &Packet) -> Result<(), BindingError> {
    for (&number, values) in packet.options() {
        let Some(d) = KNOWN.iter().find(|d| d.number == number) else {
            if number % 2 == 1 {
                return Err(BindingError::BadOption(number));
            }
            continue;
        };
        if values.len() > 1 && !d.repeatable {
            return Err(if number % 2 == 1 {
                BindingError::BadOption(number)
            } else {
                BindingError::DuplicateOption(number)
            });
        }
        if let Some(v) = values.iter().find(|v| v.len() < d.min || v.len() > d.max) {
            return Err(BindingError::OptionLength { number, len: v.len(), min: d.min, max: d.max });
        }
    }
    Ok(())
}

/// The largest value of a CoAP `uint` option (RFC 7252 §3.2) of up to 4 bytes.
pub fn decode_uint(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// A CoAP `uint` in the fewest bytes (0 is the empty value).
pub fn encode_uint(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    bytes[skip..].to_vec()
}

/// Serialization of payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaType {
    /// JSON (TS-0004 §8.4), sent as Content-Format 50 (`application/json`).
    #[default]
    Json,
    /// CBOR (TS-0004 §8.5), sent as Content-Format 60 (`application/cbor`).
    Cbor,
}

/// Content-Format numbers (TS-0008 Table 6.2.2.2-1, RFC 7252 §12.3).
pub mod content_format {
    /// application/xml.
    pub const XML: u16 = 41;
    /// application/json.
    pub const JSON: u16 = 50;
    /// application/cbor.
    pub const CBOR: u16 = 60;
    /// application/vnd.onem2m-res+json.
    pub const RES_JSON: u16 = 10001;
    /// application/vnd.onem2m-ntfy+xml.
    pub const NTFY_XML: u16 = 10002;
    /// application/vnd.onem2m-ntfy+json.
    pub const NTFY_JSON: u16 = 10003;
    /// application/vnd.onem2m-preq+xml.
    pub const PREQ_XML: u16 = 10006;
    /// application/vnd.onem2m-preq+json.
    pub const PREQ_JSON: u16 = 10007;
    /// application/vnd.onem2m-prsp+xml.
    pub const PRSP_XML: u16 = 10008;
    /// application/vnd.onem2m-prsp+json.
    pub const PRSP_JSON: u16 = 10009;
    /// application/vnd.onem2m-res+cbor.
    pub const RES_CBOR: u16 = 10010;
    /// application/vnd.onem2m-ntfy+cbor.
    pub const NTFY_CBOR: u16 = 10011;
    /// application/vnd.onem2m-preq+cbor.
    pub const PREQ_CBOR: u16 = 10012;
    /// application/vnd.onem2m-prsp+cbor.
    pub const PRSP_CBOR: u16 = 10013;
    /// application/vnd.onem2m-res+xml.
    pub const RES_XML: u16 = 10014;
    /// ACME's number for application/vnd.onem2m-res+json (not in TS-0008; accepted).
    pub const ACME_RES_JSON: u16 = 10015;
}

impl MediaType {
    /// The Content-Format number sent.
    pub fn content_format(self) -> u16 {
        match self {
            Self::Json => content_format::JSON,
            Self::Cbor => content_format::CBOR,
        }
    }

    /// The serialization a Content-Format stands for, if this binding decodes it: resource
    /// and notification representations in JSON or CBOR. XML and the serialized-primitive
    /// formats (`preq`, `prsp`) are not a `pc`.
    pub fn from_content_format(number: u16) -> Option<Self> {
        use content_format::*;
        match number {
            JSON | RES_JSON | NTFY_JSON | ACME_RES_JSON => Some(Self::Json),
            CBOR | RES_CBOR | NTFY_CBOR => Some(Self::Cbor),
            _ => None,
        }
    }
}
