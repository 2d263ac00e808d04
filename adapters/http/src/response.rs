//! Response primitive ↔ HTTP response (TS-0009 §6.3, §6.4, §6.5).

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use onem2m_primitive::{AbsRelTimestamp, ResponsePrimitive, ResponseStatusCode, ati};
use serde_json::Value;

use crate::body::{self, ContentType, MediaType};
use crate::headers::{self, parsed, put, single};
use crate::{BindingError, Limits, percent};

/// Builds the HTTP response for a response primitive.
///
/// The status code is `rsc.http_status()` (TS-0009 Table 6.3.2-1) and `X-M2M-RSC` always
/// carries the exact code (§6.4.17); `X-M2M-RI`, `X-M2M-RVI`, `X-M2M-Origin` (`fr`),
/// `X-M2M-OT`, `X-M2M-RST`, `X-M2M-EC`, `X-M2M-CTS`, `X-M2M-CTO`, `X-M2M-ATI`, `X-M2M-ASRI`
/// and `X-M2M-VSI` carry the other parameters; the body is `pc` as `application/json`.
///
/// `Content-Type` is always written, also without a body (an answer from ACME to a DELETE
/// has one): the primitive cannot tell whether the CSE sent it, and the header is harmless
/// where §6.4.3 does not require it. `Content-Location` (§6.4.4) is written for a 2001
/// (CREATED) answer whose content holds the created resource's URI (`m2m:uri` with `rcn` 2,
/// `m2m:rce`/`uri` with `rcn` 3), percent-encoding what a header value cannot hold; the
/// [`PrimitiveService`](crate::PrimitiveService), which knows the request, writes it for
/// every answer to a CREATE (also a non-blocking CREATE's 1001), as ACME does.
///
/// `to` and `extra` members are not carried. `tqf` (Token Request Information, which §6.5 puts
/// in the body of a 4103 response) is not supported yet and gives [`BindingError::Unmappable`].
pub fn response_to_http(rsp: &ResponsePrimitive) -> Result<http::Response<Bytes>, BindingError> {
    response_to_http_as(rsp, MediaType::Json)
}

/// Builds the HTTP response for a response primitive, with the body in `media`.
///
/// As [`response_to_http`]; the `Content-Type` is `application/json` or `application/cbor`.
pub fn response_to_http_as(rsp: &ResponsePrimitive, media: MediaType) -> Result<http::Response<Bytes>, BindingError> {
    encode_response(rsp, media, rsp.rsc == ResponseStatusCode::CREATED)
}

/// [`response_to_http_as`], with `Content-Location` written when `to_create` (the answer is to
/// a CREATE request) and the content names a URI.
pub(crate) fn encode_response(
    rsp: &ResponsePrimitive,
    media: MediaType,
    to_create: bool,
) -> Result<http::Response<Bytes>, BindingError> {
    if rsp.tqf.is_some() {
        return Err(BindingError::Unmappable {
            element: "tqf".to_owned(),
            reason: "Token Request Information in the body is not supported yet".to_owned(),
        });
    }
    let status = StatusCode::from_u16(rsp.rsc.http_status()).map_err(|e| BindingError::Encode(e.to_string()))?;
    let body = body::encode(rsp.pc.as_ref(), media)?;
    let mut response =
        http::Response::builder().status(status).body(body).map_err(|e| BindingError::Encode(e.to_string()))?;
    let h = response.headers_mut();
    put(h, headers::RSC, &rsp.rsc.code().to_string())?;
    put(h, headers::RI, &rsp.rqi)?;
    let opt = |h: &mut HeaderMap, name, value: Option<String>| value.map_or(Ok(()), |v| put(h, name, &v));
    opt(h, headers::RVI, rsp.rvi.clone())?;
    opt(h, headers::ORIGIN, rsp.fr.clone())?;
    opt(h, headers::OT, rsp.ot.clone())?;
    opt(h, headers::RST, rsp.rset.as_ref().map(ToString::to_string))?;
    opt(h, headers::EC, rsp.ec.map(|v| v.to_string()))?;
    opt(h, headers::CTS, rsp.cnst.map(|v| v.to_string()))?;
    opt(h, headers::CTO, rsp.cnot.map(|v| v.to_string()))?;
    opt(h, headers::ATI, rsp.ati.as_ref().map(encode_ati).transpose()?)?;
    opt(h, headers::ASRI, rsp.asri.map(|v| v.to_string()))?;
    opt(h, headers::VSI, rsp.vsi.clone())?;
    put(h, headers::CONTENT_TYPE, &ContentType::of(rsp.pc.as_ref(), media, None).to_string())?;
    if let Some(uri) = created_uri(rsp.pc.as_ref()).filter(|_| to_create) {
        let mut location = String::with_capacity(uri.len());
        percent::encode_into(&mut location, uri, LOCATION_KEEP);
        put(h, headers::CONTENT_LOCATION, &location)?;
    }
    Ok(response)
}

/// Characters a `Content-Location` value keeps as they are: RFC 3986 reserved characters and
/// `%` (a URI the CSE already escaped is not escaped twice); everything else that is not
/// unreserved (non-ASCII, controls, space) is percent-encoded.
const LOCATION_KEEP: &[u8] = b":/?#[]@!$&'()*+,;=%";

/// The URI of the created resource in a CREATE answer's content (TS-0004 §7.3.3.12):
/// `m2m:uri` (`rcn` 2) or `m2m:rce`/`uri` (`rcn` 3).
fn created_uri(pc: Option<&Value>) -> Option<&str> {
    let pc = pc?;
    pc.get("m2m:uri").or_else(|| pc.get("m2m:rce")?.get("uri"))?.as_str()
}

/// Maps a received HTTP response to a response primitive with the default [`Limits`].
pub fn http_to_response<B: AsRef<[u8]>>(response: &http::Response<B>) -> Result<ResponsePrimitive, BindingError> {
    http_to_response_with_limits(response, &Limits::default())
}

/// Maps a received HTTP response to a response primitive.
///
/// `X-M2M-RSC` and `X-M2M-RI` are required (4000 if absent); `rsc` is taken from `X-M2M-RSC`,
/// not from the status code, and the two are not cross-checked. The body is decoded as in
/// [`request_to_primitive`](crate::request_to_primitive).
pub fn http_to_response_with_limits<B: AsRef<[u8]>>(
    response: &http::Response<B>,
    limits: &Limits,
) -> Result<ResponsePrimitive, BindingError> {
    let h = response.headers();
    headers::check_sizes(h, limits)?;
    let body = response.body().as_ref();
    if body.len() > limits.max_body_bytes {
        return Err(BindingError::BodyTooLarge { size: body.len(), limit: limits.max_body_bytes });
    }
    let content_type = body::content_type(h, limits)?;
    let rsc: u16 = parsed(h, headers::RSC, limits)?.ok_or(BindingError::MissingHeader(headers::RSC.name))?;
    let rqi = single(h, headers::RI, limits)?
        .filter(|r| !r.is_empty())
        .ok_or(BindingError::MissingHeader(headers::RI.name))?;
    let mut rsp = ResponsePrimitive::new(ResponseStatusCode::new(rsc), rqi);
    rsp.rvi = single(h, headers::RVI, limits)?;
    rsp.fr = single(h, headers::ORIGIN, limits)?;
    rsp.ot = single(h, headers::OT, limits)?;
    rsp.rset = single(h, headers::RST, limits)?.map(AbsRelTimestamp::from_text);
    rsp.ec = parsed(h, headers::EC, limits)?;
    rsp.cnst = parsed(h, headers::CTS, limits)?;
    rsp.cnot = parsed(h, headers::CTO, limits)?;
    rsp.ati = single(h, headers::ATI, limits)?.map(|v| decode_ati(&v)).transpose()?;
    rsp.asri = single(h, headers::ASRI, limits)?
        .map(|v| match v.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => {
                Err(BindingError::InvalidHeader { name: headers::ASRI.name, reason: format!("`{v}` is not a boolean") })
            }
        })
        .transpose()?;
    rsp.vsi = single(h, headers::VSI, limits)?;
    rsp.pc = body::decode(body, content_type.as_ref(), limits)?;
    Ok(rsp)
}

/// `X-M2M-ATI` (§6.4.18): the `lti:tkid` items of `ati` joined by `+`.
fn encode_ati(ati: &Value) -> Result<String, BindingError> {
    let items = ati::to_items(ati).ok_or_else(|| BindingError::Unmappable {
        element: "ati".to_owned(),
        reason: format!("unexpected value {ati}"),
    })?;
    headers::join_plus("ati", &items)
}

fn decode_ati(value: &str) -> Result<Value, BindingError> {
    let items = headers::split_plus(value);
    ati::from_items(items.iter().map(String::as_str)).map_err(|item| BindingError::InvalidHeader {
        name: headers::ATI.name,
        reason: format!("`{item}` is not `lti:tkid`"),
    })
}
