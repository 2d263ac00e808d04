//! Uri-Query options ↔ request parameters and filter criteria (TS-0008 §6.2.2.3): one option
//! per parameter, `name=value` in short names, list items joined with `+`. CoAP options are
//! UTF-8 text, so nothing is percent-encoded; an item that contains `+` cannot be sent.

use std::collections::HashSet;

use onem2m_primitive::{AbsRelTimestamp, Operation, RequestPrimitive, ResponseTypeInfo};
use serde_json::{Map, Value};

use crate::BindingError;

/// How a filter-criteria member is written and typed in `fc`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Num,
    StrList,
    NumList,
}

/// Filter-criteria members with their own query item (TS-0004 §6.3.5.8), in the order written.
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

/// Filter-criteria members holding attribute filters, with their name prefix.
const ATTRIBUTE_FILTERS: &[(&str, &str)] = &[("atr", ""), ("catr", "c."), ("patr", "p.")];

/// Request parameters carried in Uri-Query (besides the filter criteria).
const PARAMETERS: &[&str] =
    &["op", "rt", "rp", "rcn", "da", "drt", "rids", "tkns", "tids", "ltids", "tqi", "asi", "auri", "sqi", "atrl"];

/// Parameters of multiplicity 0..n.
const LISTS: &[&str] = &["rids", "tkns", "tids", "ltids", "atrl"];

fn is_reserved(name: &str) -> bool {
    name == "atr" || PARAMETERS.contains(&name) || FILTER_FIELDS.iter().any(|(n, _)| *n == name)
}

fn unmappable(element: &str, reason: impl Into<String>) -> BindingError {
    BindingError::Unmappable { element: element.to_owned(), reason: reason.into() }
}

fn invalid(name: &str, reason: impl Into<String>) -> BindingError {
    BindingError::InvalidQuery { name: name.to_owned(), reason: reason.into() }
}

/// Collects `name=value` items.
#[derive(Default)]
struct Writer(Vec<String>);

impl Writer {
    fn pair(&mut self, element: &str, name: &str, items: &[String]) -> Result<(), BindingError> {
        if items.len() > 1 && items.iter().any(|s| s.is_empty() || s.contains('+')) {
            return Err(unmappable(element, "a list item is empty or contains `+`"));
        }
        let item = format!("{name}={}", items.join("+"));
        if item.len() > 255 {
            return Err(unmappable(element, "longer than a Uri-Query option (255 bytes)"));
        }
        self.0.push(item);
        Ok(())
    }

    fn scalar(&mut self, name: &str, value: Option<impl ToString>) -> Result<(), BindingError> {
        match value {
            Some(value) => self.pair(name, name, &[value.to_string()]),
            None => Ok(()),
        }
    }

    fn list(&mut self, name: &str, items: Option<&Vec<String>>) -> Result<(), BindingError> {
        let Some(items) = items.filter(|items| !items.is_empty()) else { return Ok(()) };
        if items.iter().any(|s| s.is_empty() || s.contains('+')) {
            return Err(unmappable(name, "a list item is empty or contains `+`"));
        }
        self.pair(name, name, items)
    }
}

/// The Uri-Query items for `req`: `op` when `explicit_op` (non-blocking and flex-blocking
/// requests are POSTs, TS-0008 §6.2.1), `atrl` being the partial-retrieve attribute list.
pub(crate) fn encode(req: &RequestPrimitive, explicit_op: bool, atrl: &[String]) -> Result<Vec<String>, BindingError> {
    let mut w = Writer::default();
    if explicit_op {
        w.scalar("op", Some(req.op.as_u8()))?;
    }
    w.scalar("rt", req.rt.as_ref().map(|rt| rt.rtv))?;
    w.scalar("rp", req.rp.as_ref())?;
    w.scalar("rcn", req.rcn)?;
    w.scalar("da", req.da)?;
    w.scalar("drt", req.drt)?;
    w.list("rids", req.rids.as_ref())?;
    w.list("tkns", req.tkns.as_ref())?;
    w.list("tids", req.tids.as_ref())?;
    w.list("ltids", req.ltids.as_ref())?;
    w.scalar("tqi", req.tqi)?;
    w.scalar("asi", req.asi)?;
    w.scalar("auri", req.auri)?;
    w.scalar("sqi", req.sqi)?;
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
        return Err(unmappable(&format!("fc.{unknown}"), "no Uri-Query item for it"));
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
        if matches!(kind, Kind::StrList) && texts.iter().any(|t| t.contains('+')) {
            return Err(unmappable(&element, "a list item contains `+`"));
        }
        w.pair(&element, name, &texts)?;
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
            let prefixed = nm.starts_with("c.") || nm.starts_with("p.");
            if nm.is_empty() || nm.contains('=') || !keys_ok || (prefix.is_empty() && (is_reserved(nm) || prefixed)) {
                return Err(unmappable(&element, format!("attribute {attribute} cannot be written as `name=value`")));
            }
            w.pair(&element, &format!("{prefix}{nm}"), &[val])?;
        }
    }
    Ok(())
}

fn decode_num<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, BindingError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, format!("`{text}` is not an unsigned integer")));
    }
    text.parse().map_err(|_| invalid(name, format!("`{text}` is out of range")))
}

fn decode_bool(name: &str, text: &str) -> Result<bool, BindingError> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(invalid(name, format!("`{other}` is not one of true, false, 1, 0"))),
    }
}

/// An `m2m:absRelTimestamp` from text: a (signed) integer is relative milliseconds, anything
/// else an absolute timestamp kept as text.
pub(crate) fn abs_rel(text: String) -> AbsRelTimestamp {
    let digits = text.strip_prefix('-').unwrap_or(&text);
    match (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse::<i64>().ok()) {
        Some(Some(ms)) => AbsRelTimestamp::Relative(ms),
        _ => AbsRelTimestamp::Absolute(text),
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split('+').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn extend(slot: &mut Option<Vec<String>>, items: Vec<String>) {
    if !items.is_empty() {
        slot.get_or_insert_with(Vec::new).extend(items);
    }
}

/// What the Uri-Query items say besides the parameters written into the request.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// `op`, when given explicitly.
    pub(crate) op: Option<Operation>,
    /// The partial-retrieve attribute list.
    pub(crate) atrl: Vec<String>,
}

/// Reads the Uri-Query items into `req`. Items of multiplicity 0..1 may not repeat; 0..n items
/// may repeat and accumulate; any other name is an attribute filter (`c.`/`p.` prefixes).
pub(crate) fn decode<'a>(
    items: impl IntoIterator<Item = &'a str>,
    req: &mut RequestPrimitive,
) -> Result<Decoded, BindingError> {
    let mut seen = HashSet::new();
    let mut fc = Map::new();
    let mut out = Decoded::default();
    for item in items {
        if item.is_empty() {
            continue;
        }
        let (name, raw) = item.split_once('=').unwrap_or((item, ""));
        let filter = FILTER_FIELDS.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind);
        let multi =
            LISTS.contains(&name) || matches!(filter, Some(Kind::StrList | Kind::NumList)) || !is_reserved(name);
        if !multi && !seen.insert(name.to_owned()) {
            return Err(BindingError::DuplicateQuery(name.to_owned()));
        }
        match name {
            "op" => {
                let op = decode_num::<u8>(name, raw)?;
                out.op = Some(Operation::from_u8(op).ok_or_else(|| invalid(name, format!("{op} is no operation")))?);
            }
            "rt" => {
                let nu = req.rt.take().and_then(|rt| rt.nu);
                req.rt = Some(ResponseTypeInfo { nu, ..ResponseTypeInfo::new(decode_num(name, raw)?) });
            }
            "rp" => req.rp = Some(abs_rel(raw.to_owned())),
            "rcn" => req.rcn = Some(decode_num(name, raw)?),
            "da" => req.da = Some(decode_bool(name, raw)?),
            "drt" => req.drt = Some(decode_num(name, raw)?),
            "rids" => extend(&mut req.rids, split_list(raw)),
            "tkns" => extend(&mut req.tkns, split_list(raw)),
            "tids" => extend(&mut req.tids, split_list(raw)),
            "ltids" => extend(&mut req.ltids, split_list(raw)),
            "tqi" => req.tqi = Some(decode_bool(name, raw)?),
            "asi" => req.asi = Some(decode_bool(name, raw)?),
            "auri" => req.auri = Some(decode_bool(name, raw)?),
            "sqi" => req.sqi = Some(decode_bool(name, raw)?),
            "atrl" => out.atrl.extend(split_list(raw)),
            "atr" => return Err(invalid(name, "`atr` is not used; attribute filters are written `name=value`")),
            _ => match filter {
                Some(Kind::Str) => {
                    fc.insert(name.to_owned(), Value::String(raw.to_owned()));
                }
                Some(Kind::Num) => {
                    fc.insert(name.to_owned(), Value::from(decode_num::<u64>(name, raw)?));
                }
                Some(kind @ (Kind::StrList | Kind::NumList)) => {
                    let mut items = Vec::new();
                    for item in raw.split('+').filter(|s| !s.is_empty()) {
                        items.push(match kind {
                            Kind::NumList => Value::from(decode_num::<u64>(name, item)?),
                            _ => Value::String(item.to_owned()),
                        });
                    }
                    if !items.is_empty() {
                        if let Value::Array(list) =
                            fc.entry(name.to_owned()).or_insert_with(|| Value::Array(Vec::new()))
                        {
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
                    attribute.insert("val".to_owned(), Value::String(raw.to_owned()));
                    if let Value::Array(list) = fc.entry(member.to_owned()).or_insert_with(|| Value::Array(Vec::new()))
                    {
                        list.push(Value::Object(attribute));
                    }
                }
            },
        }
    }
    if !fc.is_empty() {
        req.fc = Some(fc);
    }
    Ok(out)
}
