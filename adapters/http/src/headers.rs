//! The oneM2M header fields (TS-0009 §6.4) and checked access to header values.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{BindingError, Limits};

/// `X-M2M-Origin` ↔ `fr` (§6.4.7).
pub(crate) const ORIGIN: &str = "X-M2M-Origin";
/// `X-M2M-RI` ↔ `rqi` (§6.4.8).
pub(crate) const RI: &str = "X-M2M-RI";
/// `X-M2M-GID` ↔ `gid` (§6.4.10).
pub(crate) const GID: &str = "X-M2M-GID";
/// `X-M2M-RTU` ↔ `rt.nu`, `&`-joined (§6.4.11).
pub(crate) const RTU: &str = "X-M2M-RTU";
/// `X-M2M-OT` ↔ `ot` (§6.4.12).
pub(crate) const OT: &str = "X-M2M-OT";
/// `X-M2M-RST` ↔ `rset` (§6.4.13).
pub(crate) const RST: &str = "X-M2M-RST";
/// `X-M2M-RET` ↔ `rqet` (§6.4.14).
pub(crate) const RET: &str = "X-M2M-RET";
/// `X-M2M-OET` ↔ `oet` (§6.4.15).
pub(crate) const OET: &str = "X-M2M-OET";
/// `X-M2M-EC` ↔ `ec` (§6.4.16).
pub(crate) const EC: &str = "X-M2M-EC";
/// `X-M2M-RSC` ↔ `rsc` (§6.4.17).
pub(crate) const RSC: &str = "X-M2M-RSC";
/// `X-M2M-ATI` ↔ `ati`, `lti:tkid` pairs joined by `+` (§6.4.18).
pub(crate) const ATI: &str = "X-M2M-ATI";
/// `Authorization` ↔ `tkns`, joined by `+` (§6.4.19).
pub(crate) const AUTHORIZATION: &str = "Authorization";
/// `X-M2M-CTS` ↔ `cnst` (§6.4.20).
pub(crate) const CTS: &str = "X-M2M-CTS";
/// `X-M2M-CTO` ↔ `cnot` (§6.4.21).
pub(crate) const CTO: &str = "X-M2M-CTO";
/// `X-M2M-RVI` ↔ `rvi` (§6.4.22).
pub(crate) const RVI: &str = "X-M2M-RVI";
/// `X-M2M-VSI` ↔ `vsi` (§6.4.23).
pub(crate) const VSI: &str = "X-M2M-VSI";
/// `X-M2M-AS` ↔ `aus`, joined by `+` (§6.4.24).
pub(crate) const AS: &str = "X-M2M-AS";
/// `X-M2M-ASRI` ↔ `asri` (§6.4.25).
pub(crate) const ASRI: &str = "X-M2M-ASRI";
/// `Content-Type` (§6.4.3).
pub(crate) const CONTENT_TYPE: &str = "Content-Type";
/// `Content-Location`: the created resource's URI in a CREATE answer (§6.4.4).
pub(crate) const CONTENT_LOCATION: &str = "Content-Location";

/// Checks every header value of a received message against the size limit.
pub(crate) fn check_sizes(headers: &HeaderMap, limits: &Limits) -> Result<(), BindingError> {
    for (name, value) in headers {
        if value.len() > limits.max_header_value_bytes {
            return Err(BindingError::HeaderTooLarge {
                name: name.as_str().to_owned(),
                size: value.len(),
                limit: limits.max_header_value_bytes,
            });
        }
    }
    Ok(())
}

/// The value of a header that may occur at most once, as visible ASCII text.
pub(crate) fn single(headers: &HeaderMap, name: &'static str, limits: &Limits) -> Result<Option<String>, BindingError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(BindingError::DuplicateHeader(name));
    }
    if value.len() > limits.max_header_value_bytes {
        return Err(BindingError::HeaderTooLarge {
            name: name.to_owned(),
            size: value.len(),
            limit: limits.max_header_value_bytes,
        });
    }
    let text =
        value.to_str().map_err(|_| BindingError::InvalidHeader { name, reason: "not visible ASCII".to_owned() })?;
    Ok(Some(text.trim().to_owned()))
}

/// A header value parsed with `FromStr`.
pub(crate) fn parsed<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &'static str,
    limits: &Limits,
) -> Result<Option<T>, BindingError> {
    single(headers, name, limits)?
        .map(|v| v.parse().map_err(|_| BindingError::InvalidHeader { name, reason: format!("`{v}` does not parse") }))
        .transpose()
}

/// Splits a `+`-joined header list (§6.4.18, §6.4.19, §6.4.24); whitespace around items is
/// insignificant and empty items are dropped.
pub(crate) fn split_plus(value: &str) -> Vec<String> {
    value.split('+').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Joins list items with `+` for a header, refusing items the join would corrupt.
pub(crate) fn join_plus(element: &str, items: &[String]) -> Result<String, BindingError> {
    if let Some(bad) = items.iter().find(|s| s.is_empty() || s.contains('+') || s.trim() != s.as_str()) {
        return Err(BindingError::Unmappable {
            element: element.to_owned(),
            reason: format!("item `{bad}` is empty, has surrounding whitespace or contains `+`"),
        });
    }
    Ok(items.join("+"))
}

/// Adds a header to a message being built.
pub(crate) fn put(headers: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), BindingError> {
    let unmappable = || BindingError::Unmappable {
        element: name.to_owned(),
        reason: format!("`{value}` is not a valid header value"),
    };
    // Visible ASCII without surrounding whitespace, so that the receiver reads back the same text.
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) || value.trim() != value {
        return Err(unmappable());
    }
    let value = HeaderValue::from_str(value).map_err(|_| unmappable())?;
    headers.insert(HeaderName::from_bytes(name.as_bytes()).expect("header name constants are valid tokens"), value);
    Ok(())
}
