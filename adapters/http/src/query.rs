//! Query component ↔ request parameters and filter criteria (TS-0009 §6.2.2.2,
//! Table 6.2.2.2-1). The mapping itself is [`onem2m_primitive::query`] (shared with the CoAP
//! binding); this binding percent-encodes names and values into one query string. Lists are
//! joined with a literal `+`; a `+` inside a value is sent as `%2B`.

use onem2m_primitive::RequestPrimitive;
use onem2m_primitive::query::{self, QuerySyntax};

use crate::{BindingError, percent};

/// The query string for `req` (without `?`), `atrl` being the partial-retrieve attribute list.
pub(crate) fn encode(req: &RequestPrimitive, atrl: &[String]) -> Result<String, BindingError> {
    let mut out = String::new();
    for param in query::encode(req, QuerySyntax::HTTP, false, atrl)? {
        if !out.is_empty() {
            out.push('&');
        }
        percent::encode_into(&mut out, &param.name, &[]);
        out.push('=');
        for (i, value) in param.values.iter().enumerate() {
            if i > 0 {
                out.push('+');
            }
            percent::encode_into(&mut out, value, &[]);
        }
    }
    Ok(out)
}

/// Reads the query string into `req`; returns the partial-retrieve attribute list (`atrl`).
pub(crate) fn decode(query: &str, req: &mut RequestPrimitive) -> Result<Vec<String>, BindingError> {
    Ok(query::decode(query.split('&'), req, QuerySyntax::HTTP, percent::decode)?.atrl)
}
