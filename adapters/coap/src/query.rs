//! Uri-Query options ↔ request parameters and filter criteria (TS-0008 §6.2.2.3): one option
//! per parameter, `name=value` in short names, list items joined with `+`. The mapping itself
//! is [`onem2m_primitive::query`] (shared with the HTTP binding). CoAP options are UTF-8 text,
//! so nothing is percent-encoded; an item that contains `+` cannot be sent.

use onem2m_primitive::RequestPrimitive;
use onem2m_primitive::query::{self, Decoded, QuerySyntax};

use crate::BindingError;

/// The Uri-Query items for `req`: `op` when `explicit_op` (non-blocking and flex-blocking
/// requests are POSTs, TS-0008 §6.2.1), `atrl` being the partial-retrieve attribute list.
pub(crate) fn encode(req: &RequestPrimitive, explicit_op: bool, atrl: &[String]) -> Result<Vec<String>, BindingError> {
    let params = query::encode(req, QuerySyntax::COAP, explicit_op, atrl)?;
    let mut items = Vec::with_capacity(params.len());
    for param in params {
        let item = format!("{}={}", param.name, param.values.join("+"));
        if item.len() > 255 {
            return Err(BindingError::Unmappable {
                element: param.element,
                reason: "longer than a Uri-Query option (255 bytes)".to_owned(),
            });
        }
        items.push(item);
    }
    Ok(items)
}

/// Reads the Uri-Query items into `req`.
pub(crate) fn decode<'a>(
    items: impl IntoIterator<Item = &'a str>,
    req: &mut RequestPrimitive,
) -> Result<Decoded, BindingError> {
    Ok(query::decode(items, req, QuerySyntax::COAP, |text| Ok(text.to_owned()))?)
}
