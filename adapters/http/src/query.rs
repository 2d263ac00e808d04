//! Query component ↔ request parameters and filter criteria (TS-0009 §6.2.2.2,
//! Table 6.2.2.2-1). Lists are joined with a literal `+`; a `+` inside a value is sent as `%2B`.

use std::collections::HashSet;

use onem2m_primitive::{AbsRelTimestamp, RequestPrimitive, ResponseTypeInfo};
use serde_json::{Map, Value};

use crate::{BindingError, percent};

/// How a filter-criteria member is written in the query and typed in `fc`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string, multiplicity 0..1.
    Str,
    /// An unsigned integer, multiplicity 0..1.
    Num,
    /// A list of strings, multiplicity 0..n, `+`-joined.
    StrList,
    /// A list of unsigned integers, multiplicity 0..n, `+`-joined.
    NumList,
}

/// Filter-criteria members with their own query field, in the order they are written.
const FILTER_FIELDS: &[(&str, Kind)] = &[
    ("crb", Kind::Str),
    ("cra", Kind::Str),
    ("ms", Kind::Str),
    ("us", Kind::Str),
    ("sts", Kind::Num),
    ("stb", Kind::Num),
    ("exb", Kind::Str),
    ("exa", Kind::Str),
    ("lbl", Kind::StrList),
    ("ty", Kind::NumList),
    ("sza", Kind::Num),
    ("szb", Kind::Num),
    ("cty", Kind::StrList),
    ("lim", Kind::Num),
    ("fu", Kind::Num),
    ("smf", Kind::StrList),
    ("fo", Kind::Num),
    ("cfs", Kind::Num),
    ("cfq", Kind::Str),
    ("lvl", Kind::Num),
    ("ofst", Kind::Num),
    ("arp", Kind::Str),
];

/// Filter-criteria members holding attribute filters, with their query-name prefix.
const ATTRIBUTE_FILTERS: &[(&str, &str)] = &[("atr", ""), ("catr", "c."), ("patr", "p.")];

/// Request parameters with a query field (besides the filter criteria).
const PARAMETERS: &[&str] =
    &["rt", "rp", "rcn", "da", "drt", "rids", "tids", "ltids", "tqi", "asi", "auri", "sqi", "atrl"];

/// Whether `name` is a query field of its own, i.e. not usable as an attribute-filter name.
fn is_reserved(name: &str) -> bool {
    name == "atr" || PARAMETERS.contains(&name) || FILTER_FIELDS.iter().any(|(n, _)| *n == name)
}

/// Collects `name=value` pairs, percent-encoding names and values.
#[derive(Default)]
struct Writer(String);

impl Writer {
    fn pair(&mut self, name: &str, items: &[&str]) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        percent::encode_into(&mut self.0, name, &[]);
        self.0.push('=');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push('+');
            }
            percent::encode_into(&mut self.0, item, &[]);
        }
    }

    fn scalar(&mut self, name: &str, value: Option<impl ToString>) {
        if let Some(value) = value {
            self.pair(name, &[&value.to_string()]);
        }
    }

    fn list(&mut self, name: &str, items: Option<&Vec<String>>) -> Result<(), BindingError> {
        let Some(items) = items.filter(|items| !items.is_empty()) else { return Ok(()) };
        if items.iter().any(String::is_empty) {
            return Err(unmappable(name, "a list item is empty"));
        }
        self.pair(name, &items.iter().map(String::as_str).collect::<Vec<_>>());
        Ok(())
    }
}

fn unmappable(element: &str, reason: impl Into<String>) -> BindingError {
    BindingError::Unmappable { element: element.to_owned(), reason: reason.into() }
}

/// The query string for `req` (without `?`), `atrl` being the partial-retrieve attribute list.
pub(crate) fn encode(req: &RequestPrimitive, atrl: &[String]) -> Result<String, BindingError> {
    let mut w = Writer::default();
    w.scalar("rt", req.rt.as_ref().map(|rt| rt.rtv));
    w.scalar("rp", req.rp.as_ref());
    w.scalar("rcn", req.rcn);
    w.scalar("da", req.da);
    w.scalar("drt", req.drt);
    w.list("rids", req.rids.as_ref())?;
    w.list("tids", req.tids.as_ref())?;
    w.list("ltids", req.ltids.as_ref())?;
    w.scalar("tqi", req.tqi);
    w.scalar("asi", req.asi);
    w.scalar("auri", req.auri);
    w.scalar("sqi", req.sqi);
    if let Some(fc) = &req.fc {
        encode_filter(&mut w, fc)?;
    }
    if !atrl.is_empty() {
        w.list("atrl", Some(&atrl.to_vec()))?;
    }
    Ok(w.0)
}

fn encode_filter(w: &mut Writer, fc: &Map<String, Value>) -> Result<(), BindingError> {
    if let Some(unknown) =
        fc.keys().find(|k| !FILTER_FIELDS.iter().any(|(n, _)| n == k) && !ATTRIBUTE_FILTERS.iter().any(|(n, _)| n == k))
    {
        return Err(unmappable(&format!("fc.{unknown}"), "no query field in TS-0009 Table 6.2.2.2-1"));
    }
    for &(name, kind) in FILTER_FIELDS {
        let Some(value) = fc.get(name) else { continue };
        let element = format!("fc.{name}");
        let items: Vec<&Value> = match (kind, value) {
            (Kind::StrList | Kind::NumList, Value::Array(items)) => items.iter().collect(),
            _ => vec![value],
        };
        if items.is_empty() {
            continue;
        }
        let mut texts = Vec::with_capacity(items.len());
        for item in items {
            texts.push(match (kind, item) {
                (Kind::Str | Kind::StrList, Value::String(s)) if !s.is_empty() => s.clone(),
                (Kind::Num | Kind::NumList, Value::Number(n)) if n.is_u64() => n.to_string(),
                _ => return Err(unmappable(&element, format!("unexpected value {item}"))),
            });
        }
        w.pair(name, &texts.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for &(member, prefix) in ATTRIBUTE_FILTERS {
        let Some(value) = fc.get(member) else { continue };
        let element = format!("fc.{member}");
        let Value::Array(attributes) = value else {
            return Err(unmappable(&element, "not a list of attributes"));
        };
        for attribute in attributes {
            let nm = attribute.get("nm").and_then(Value::as_str).unwrap_or_default();
            let val = match attribute.get("val") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => return Err(unmappable(&element, format!("attribute {attribute} has no scalar `val`"))),
            };
            let keys_ok = attribute.as_object().is_some_and(|o| o.keys().all(|k| k == "nm" || k == "val"));
            if nm.is_empty() || !keys_ok || (prefix.is_empty() && (is_reserved(nm) || has_prefix(nm))) {
                return Err(unmappable(&element, format!("attribute {attribute} cannot be written as `name=value`")));
            }
            w.pair(&format!("{prefix}{nm}"), &[&val]);
        }
    }
    Ok(())
}

fn has_prefix(name: &str) -> bool {
    name.starts_with("c.") || name.starts_with("p.")
}

fn invalid(name: &str, reason: impl Into<String>) -> BindingError {
    BindingError::InvalidQuery { name: name.to_owned(), reason: reason.into() }
}

fn decode_item(name: &str, raw: &str) -> Result<String, BindingError> {
    percent::decode(raw).map_err(|reason| invalid(name, reason))
}

fn decode_list(name: &str, raw: &str) -> Result<Vec<String>, BindingError> {
    raw.split('+').filter(|s| !s.is_empty()).map(|s| decode_item(name, s)).collect()
}

fn decode_num<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, BindingError> {
    let text = decode_item(name, raw)?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, format!("`{text}` is not an unsigned integer")));
    }
    text.parse().map_err(|_| invalid(name, format!("`{text}` is out of range")))
}

fn decode_bool(name: &str, raw: &str) -> Result<bool, BindingError> {
    match decode_item(name, raw)?.as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(invalid(name, format!("`{other}` is not one of true, false, 1, 0"))),
    }
}

/// An `m2m:absRelTimestamp` read from text: an optionally signed integer is relative
/// milliseconds, anything else an absolute timestamp (kept as text, not validated here).
pub(crate) fn abs_rel(text: String) -> AbsRelTimestamp {
    let digits = text.strip_prefix('-').unwrap_or(&text);
    match (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse::<i64>().ok()) {
        Some(Some(ms)) => AbsRelTimestamp::Relative(ms),
        _ => AbsRelTimestamp::Absolute(text),
    }
}

fn extend_list(slot: &mut Option<Vec<String>>, items: Vec<String>) {
    if !items.is_empty() {
        slot.get_or_insert_with(Vec::new).extend(items);
    }
}

/// Reads the query string into `req`; returns the partial-retrieve attribute list (`atrl`).
///
/// Fields of multiplicity 0..1 may not repeat; 0..n fields may repeat and accumulate. Any
/// other field name is an attribute filter (`c.`/`p.` prefixes for child/parent attributes).
pub(crate) fn decode(query: &str, req: &mut RequestPrimitive) -> Result<Vec<String>, BindingError> {
    let mut seen = HashSet::new();
    let mut fc = Map::new();
    let mut atrl = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_item(raw_name, raw_name)?;
        let name = name.as_str();
        let filter = FILTER_FIELDS.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind);
        let multi = matches!(name, "rids" | "tids" | "ltids" | "atrl")
            || matches!(filter, Some(Kind::StrList | Kind::NumList))
            || !is_reserved(name);
        if !multi && !seen.insert(name.to_owned()) {
            return Err(BindingError::DuplicateQuery(name.to_owned()));
        }
        match name {
            "rt" => req.rt = Some(ResponseTypeInfo::new(decode_num(name, raw)?)),
            "rp" => req.rp = Some(abs_rel(decode_item(name, raw)?)),
            "rcn" => req.rcn = Some(decode_num(name, raw)?),
            "da" => req.da = Some(decode_bool(name, raw)?),
            "drt" => req.drt = Some(decode_num(name, raw)?),
            "rids" => extend_list(&mut req.rids, decode_list(name, raw)?),
            "tids" => extend_list(&mut req.tids, decode_list(name, raw)?),
            "ltids" => extend_list(&mut req.ltids, decode_list(name, raw)?),
            "tqi" => req.tqi = Some(decode_bool(name, raw)?),
            "asi" => req.asi = Some(decode_bool(name, raw)?),
            "auri" => req.auri = Some(decode_bool(name, raw)?),
            "sqi" => req.sqi = Some(decode_bool(name, raw)?),
            "atrl" => atrl.extend(decode_list(name, raw)?),
            "atr" => return Err(invalid(name, "`atr` is not used; attribute filters are written `name=value`")),
            _ => match filter {
                Some(Kind::Str) => {
                    fc.insert(name.to_owned(), Value::String(decode_item(name, raw)?));
                }
                Some(Kind::Num) => {
                    fc.insert(name.to_owned(), Value::from(decode_num::<u64>(name, raw)?));
                }
                Some(kind @ (Kind::StrList | Kind::NumList)) => {
                    let mut items = Vec::new();
                    for item in raw.split('+').filter(|s| !s.is_empty()) {
                        items.push(match kind {
                            Kind::NumList => Value::from(decode_num::<u64>(name, item)?),
                            _ => Value::String(decode_item(name, item)?),
                        });
                    }
                    if !items.is_empty() {
                        let slot = fc.entry(name.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
                        if let Value::Array(list) = slot {
                            list.extend(items);
                        }
                    }
                }
                None => {
                    let (member, nm) = match (name.strip_prefix("c."), name.strip_prefix("p.")) {
                        (Some(nm), _) => ("catr", nm),
                        (_, Some(nm)) => ("patr", nm),
                        _ => ("atr", name),
                    };
                    if nm.is_empty() {
                        return Err(invalid(name, "empty attribute name"));
                    }
                    let mut attribute = Map::new();
                    attribute.insert("nm".to_owned(), Value::String(nm.to_owned()));
                    attribute.insert("val".to_owned(), Value::String(decode_item(name, raw)?));
                    let slot = fc.entry(member.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = slot {
                        list.push(Value::Object(attribute));
                    }
                }
            },
        }
    }
    if !fc.is_empty() {
        req.fc = Some(fc);
    }
    Ok(atrl)
}
