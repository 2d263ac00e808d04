//! The text form of `ati` (`m2m:dynAuthLocalTokenIdAssignments`, TS-0004 §6.3.5.47) shared by
//! the HTTP `X-M2M-ATI` header (TS-0009 §6.4.18) and the CoAP oneM2M-ATI option (TS-0008
//! §6.2.2.4.15): one `lti:tkid` item per assignment, the items joined with `+` by the binding.

use serde_json::{Map, Value};

/// The `lti:tkid` items of `{"ltia": [{"lti": …, "tkid": …}, …]}`.
///
/// `None` when `ati` has another shape, or an `lti` is empty or contains `:` (it would not
/// read back as the same pair).
pub fn to_items(ati: &Value) -> Option<Vec<String>> {
    let pairs = ati.get("ltia")?.as_array()?;
    let mut items = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let lti = pair.get("lti")?.as_str()?;
        let tkid = pair.get("tkid")?.as_str()?;
        if lti.is_empty() || lti.contains(':') {
            return None;
        }
        items.push(format!("{lti}:{tkid}"));
    }
    Some(items)
}

/// `{"ltia": […]}` from `lti:tkid` items (`lti` and `tkid` trimmed); `Err` with the first
/// item that has no `:`.
pub fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Value, &'a str> {
    let mut ltia = Vec::new();
    for item in items {
        let (lti, tkid) = item.split_once(':').ok_or(item)?;
        let mut pair = Map::new();
        pair.insert("lti".to_owned(), Value::String(lti.trim().to_owned()));
        pair.insert("tkid".to_owned(), Value::String(tkid.trim().to_owned()));
        ltia.push(Value::Object(pair));
    }
    let mut ati = Map::new();
    ati.insert("ltia".to_owned(), Value::Array(ltia));
    Ok(Value::Object(ati))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_round_trip() {
        let ati = json!({"ltia": [{"lti": "l1", "tkid": "t1"}, {"lti": "l2", "tkid": ""}]});
        let items = to_items(&ati).unwrap();
        assert_eq!(items, ["l1:t1", "l2:"]);
        assert_eq!(from_items(items.iter().map(String::as_str)), Ok(ati));
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert_eq!(to_items(&json!({"ltia": [{"lti": "a:b", "tkid": "t"}]})), None);
        assert_eq!(to_items(&json!({"ltia": [{"lti": "", "tkid": "t"}]})), None);
        assert_eq!(to_items(&json!({"ltia": [{"lti": "l"}]})), None);
        assert_eq!(to_items(&json!(["l:t"])), None);
        assert_eq!(from_items(["l:t", "nocolon"]), Err("nocolon"));
    }
}
