//! Request parameters ↔ URI query parameters, shared by the HTTP binding (TS-0009 §6.2.2.2,
//! Table 6.2.2.2-1: one percent-encoded query string) and the CoAP binding (TS-0008 §6.2.2.3:
//! one Uri-Query option per parameter, plain UTF-8 text).
//!
//! Both write `name=value` in short names, list items joined with `+`, filter-criteria members
//! (TS-0004 §6.3.5.8) as their own parameters and attribute filters as `name=value` (`c.`/`p.`
//! prefixes for child/parent attributes). What differs is captured by [`QuerySyntax`]; how the
//! parameters are framed (query string or options) stays with each binding.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::{AbsRelTimestamp, Operation, RequestPrimitive, ResponseTypeInfo};

/// The parameter name of the partial-retrieve attribute list.
pub const ATTRIBUTE_LIST: &str = "atrl";
/// The member of a RETRIEVE's content that lists attributes for a partial RETRIEVE.
pub const ATTRIBUTE_LIST_CONTENT: &str = "m2m:atrl";

/// What a binding carries in its query parameters, and whether it escapes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuerySyntax {
    /// `op` and `tkns` are query parameters (TS-0008). TS-0009 carries the operation in the
    /// method and the tokens in `Authorization`, so there they are plain attribute-filter names.
    pub op_and_tokens: bool,
    /// Names and values are percent-encoded (TS-0009), so any text can be carried. Without
    /// escaping (TS-0008) a list item containing `+` or an attribute-filter name containing `=`
    /// cannot be written.
    pub escaped: bool,
}

impl QuerySyntax {
    /// The HTTP binding (TS-0009 V3.9.1 §6.2.2.2).
    pub const HTTP: Self = Self { op_and_tokens: false, escaped: true };
    /// The CoAP binding (TS-0008 V3.9.0 §6.2.2.3).
    pub const COAP: Self = Self { op_and_tokens: true, escaped: false };
}

/// A request cannot be written as query parameters, or query parameters do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// An element of the primitive has no query parameter, or a value it cannot carry.
    #[error("`{element}` cannot be written as a query parameter: {reason}")]
    Unmappable {
        /// The element, e.g. `fc.lbl`.
        element: String,
        /// Why.
        reason: String,
    },
    /// A query parameter does not parse as the parameter it names.
    #[error("query parameter `{name}`: {reason}")]
    Invalid {
        /// The parameter name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A parameter of multiplicity 0..1 is given more than once.
    #[error("query parameter `{0}` is given more than once")]
    Duplicate(String),
}

/// One query parameter: its name and values (one for a scalar; a list's items, to be joined
/// with `+`). Values are plain text; escaping them is the binding's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParam {
    /// The parameter name (a short name, or an attribute-filter name with its prefix).
    pub name: String,
    /// The primitive element it carries (`rids`, `fc.lbl`, `fc.atr`, …), for error reports.
    pub element: String,
    /// The values, never empty.
    pub values: Vec<String>,
}

/// How a filter-criteria member is written and typed in `fc`.
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

/// Filter-criteria members with their own query parameter, in the order they are written.
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

/// Filter-criteria members holding attribute filters, with their parameter-name prefix.
const ATTRIBUTE_FILTERS: &[(&str, &str)] = &[("atr", ""), ("catr", "c."), ("patr", "p.")];

/// Request parameters with a query parameter in every binding (besides the filter criteria).
const PARAMETERS: &[&str] =
    &["rt", "rp", "rcn", "da", "drt", "rids", "tids", "ltids", "tqi", "asi", "auri", "sqi", ATTRIBUTE_LIST];

/// Request parameters of multiplicity 0..n in every binding.
const LISTS: &[&str] = &["rids", "tids", "ltids", ATTRIBUTE_LIST];

impl QuerySyntax {
    /// Whether `name` is a parameter of its own, i.e. not usable as an attribute-filter name.
    fn is_reserved(self, name: &str) -> bool {
        name == "atr"
            || PARAMETERS.contains(&name)
            || (self.op_and_tokens && matches!(name, "op" | "tkns"))
            || FILTER_FIELDS.iter().any(|(n, _)| *n == name)
    }

    fn is_list(self, name: &str) -> bool {
        LISTS.contains(&name) || (self.op_and_tokens && name == "tkns")
    }
}

fn unmappable(element: &str, reason: impl Into<String>) -> QueryError {
    QueryError::Unmappable { element: element.to_owned(), reason: reason.into() }
}

fn invalid(name: &str, reason: impl Into<String>) -> QueryError {
    QueryError::Invalid { name: name.to_owned(), reason: reason.into() }
}

/// Collects the parameters.
struct Writer {
    syntax: QuerySyntax,
    params: Vec<QueryParam>,
}

impl Writer {
    fn push(&mut self, element: &str, name: &str, values: Vec<String>) {
        self.params.push(QueryParam { name: name.to_owned(), element: element.to_owned(), values });
    }

    fn scalar(&mut self, name: &str, value: Option<impl ToString>) {
        if let Some(value) = value {
            self.push(name, name, vec![value.to_string()]);
        }
    }

    fn list(&mut self, name: &str, items: Option<&[String]>) -> Result<(), QueryError> {
        let Some(items) = items.filter(|items| !items.is_empty()) else { return Ok(()) };
        if items.iter().any(String::is_empty) {
            return Err(unmappable(name, "a list item is empty"));
        }
        if !self.syntax.escaped && items.iter().any(|s| s.contains('+')) {
            return Err(unmappable(name, "a list item contains `+`"));
        }
        self.push(name, name, items.to_vec());
        Ok(())
    }
}

/// The query parameters for `req`, in a fixed order: `op` first when `explicit_op` (only with
/// [`QuerySyntax::op_and_tokens`]), the request parameters, the filter criteria, then `atrl`
/// (`atrl` being the partial-retrieve attribute list, see [`split_attribute_list`]).
///
/// Fails with [`QueryError::Unmappable`] for a filter-criteria member without a query
/// parameter, a value of the wrong type, an empty list item, an attribute filter that cannot be
/// written as `name=value`, or text the syntax cannot carry unescaped.
pub fn encode(
    req: &RequestPrimitive,
    syntax: QuerySyntax,
    explicit_op: bool,
    atrl: &[String],
) -> Result<Vec<QueryParam>, QueryError> {
    let mut w = Writer { syntax, params: Vec::new() };
    if explicit_op && syntax.op_and_tokens {
        w.scalar("op", Some(req.op.as_u8()));
    }
    w.scalar("rt", req.rt.as_ref().map(|rt| rt.rtv));
    w.scalar("rp", req.rp.as_ref());
    w.scalar("rcn", req.rcn);
    w.scalar("da", req.da);
    w.scalar("drt", req.drt);
    w.list("rids", req.rids.as_deref())?;
    if syntax.op_and_tokens {
        w.list("tkns", req.tkns.as_deref())?;
    }
    w.list("tids", req.tids.as_deref())?;
    w.list("ltids", req.ltids.as_deref())?;
    w.scalar("tqi", req.tqi);
    w.scalar("asi", req.asi);
    w.scalar("auri", req.auri);
    w.scalar("sqi", req.sqi);
    if let Some(fc) = &req.fc {
        encode_filter(&mut w, fc)?;
    }
    w.list(ATTRIBUTE_LIST, Some(atrl))?;
    Ok(w.params)
}

fn encode_filter(w: &mut Writer, fc: &Map<String, Value>) -> Result<(), QueryError> {
    if let Some(unknown) =
        fc.keys().find(|k| !FILTER_FIELDS.iter().any(|(n, _)| n == k) && !ATTRIBUTE_FILTERS.iter().any(|(n, _)| n == k))
    {
        return Err(unmappable(&format!("fc.{unknown}"), "no query parameter for it (TS-0009 Table 6.2.2.2-1)"));
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
        if !w.syntax.escaped && kind == Kind::StrList && texts.iter().any(|t| t.contains('+')) {
            return Err(unmappable(&element, "a list item contains `+`"));
        }
        w.push(&element, name, texts);
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
            if nm.is_empty()
                || (!w.syntax.escaped && nm.contains('='))
                || !keys_ok
                || (prefix.is_empty() && (w.syntax.is_reserved(nm) || prefixed))
            {
                return Err(unmappable(&element, format!("attribute {attribute} cannot be written as `name=value`")));
            }
            w.push(&element, &format!("{prefix}{nm}"), vec![val]);
        }
    }
    Ok(())
}

/// What the query parameters say besides the parameters written into the request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// `op`, when given explicitly (only with [`QuerySyntax::op_and_tokens`]).
    pub op: Option<Operation>,
    /// The partial-retrieve attribute list, for [`apply_attribute_list`].
    pub atrl: Vec<String>,
}

/// Reads `name=value` items into `req`.
///
/// `unescape` turns the raw text of a name or of one value (a list item, after splitting at `+`)
/// into plain text: percent-decoding for HTTP, the identity for CoAP; its error is reported as
/// [`QueryError::Invalid`]. Empty items are skipped. Parameters of multiplicity 0..1 may not
/// repeat ([`QueryError::Duplicate`]); 0..n parameters may repeat and accumulate; any other
/// name is an attribute filter (`c.`/`p.` prefixes for child/parent attributes).
pub fn decode<'a>(
    items: impl IntoIterator<Item = &'a str>,
    req: &mut RequestPrimitive,
    syntax: QuerySyntax,
    unescape: impl Fn(&str) -> Result<String, String>,
) -> Result<Decoded, QueryError> {
    let text = |name: &str, raw: &str| unescape(raw).map_err(|reason| invalid(name, reason));
    let list = |name: &str, raw: &str| -> Result<Vec<String>, QueryError> {
        raw.split('+').filter(|s| !s.is_empty()).map(|s| text(name, s)).collect()
    };
    let num = |name: &str, raw: &str| text(name, raw).and_then(|t| parse_num::<u64>(name, &t));
    let boolean = |name: &str, raw: &str| text(name, raw).and_then(|t| parse_bool(name, &t));
    let mut seen = HashSet::new();
    let mut fc = Map::new();
    let mut out = Decoded::default();
    for item in items {
        if item.is_empty() {
            continue;
        }
        let (raw_name, raw) = item.split_once('=').unwrap_or((item, ""));
        let name = text(raw_name, raw_name)?;
        let name = name.as_str();
        let filter = FILTER_FIELDS.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind);
        let multi =
            syntax.is_list(name) || matches!(filter, Some(Kind::StrList | Kind::NumList)) || !syntax.is_reserved(name);
        if !multi && !seen.insert(name.to_owned()) {
            return Err(QueryError::Duplicate(name.to_owned()));
        }
        match name {
            "op" if syntax.op_and_tokens => {
                let op = text(name, raw).and_then(|t| parse_num::<u8>(name, &t))?;
                out.op = Some(Operation::from_u8(op).ok_or_else(|| invalid(name, format!("{op} is no operation")))?);
            }
            "rt" => {
                let rtv = text(name, raw).and_then(|t| parse_num(name, &t))?;
                let nu = req.rt.take().and_then(|rt| rt.nu);
                req.rt = Some(ResponseTypeInfo { nu, ..ResponseTypeInfo::new(rtv) });
            }
            "rp" => req.rp = Some(AbsRelTimestamp::from_text(text(name, raw)?)),
            "rcn" => req.rcn = Some(text(name, raw).and_then(|t| parse_num(name, &t))?),
            "da" => req.da = Some(boolean(name, raw)?),
            "drt" => req.drt = Some(text(name, raw).and_then(|t| parse_num(name, &t))?),
            "rids" => extend(&mut req.rids, list(name, raw)?),
            "tkns" if syntax.op_and_tokens => extend(&mut req.tkns, list(name, raw)?),
            "tids" => extend(&mut req.tids, list(name, raw)?),
            "ltids" => extend(&mut req.ltids, list(name, raw)?),
            "tqi" => req.tqi = Some(boolean(name, raw)?),
            "asi" => req.asi = Some(boolean(name, raw)?),
            "auri" => req.auri = Some(boolean(name, raw)?),
            "sqi" => req.sqi = Some(boolean(name, raw)?),
            ATTRIBUTE_LIST => out.atrl.extend(list(name, raw)?),
            "atr" => return Err(invalid(name, "`atr` is not used; attribute filters are written `name=value`")),
            _ => match filter {
                Some(Kind::Str) => {
                    fc.insert(name.to_owned(), Value::String(text(name, raw)?));
                }
                Some(Kind::Num) => {
                    fc.insert(name.to_owned(), Value::from(num(name, raw)?));
                }
                Some(kind @ (Kind::StrList | Kind::NumList)) => {
                    let mut items = Vec::new();
                    for item in raw.split('+').filter(|s| !s.is_empty()) {
                        items.push(match kind {
                            Kind::NumList => Value::from(num(name, item)?),
                            _ => Value::String(text(name, item)?),
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
                    attribute.insert("val".to_owned(), Value::String(text(name, raw)?));
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

fn parse_num<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, QueryError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, format!("`{text}` is not an unsigned integer")));
    }
    text.parse().map_err(|_| invalid(name, format!("`{text}` is out of range")))
}

fn parse_bool(name: &str, text: &str) -> Result<bool, QueryError> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(invalid(name, format!("`{other}` is not one of true, false, 1, 0"))),
    }
}

fn extend(slot: &mut Option<Vec<String>>, items: Vec<String>) {
    if !items.is_empty() {
        slot.get_or_insert_with(Vec::new).extend(items);
    }
}

/// Splits a request to be sent into its target, the partial-retrieve attribute list and the
/// content to send: in a RETRIEVE, `to#attr` becomes `atrl` = `[attr]`, and a `pc` of exactly
/// `{"m2m:atrl": [two or more names]}` (or `{"atrl": …}`, as earlier versions of this crate
/// wrote it) becomes `atrl` with no content. Otherwise `to` and `pc` are returned as they are.
pub fn split_attribute_list(req: &RequestPrimitive) -> (&str, Vec<String>, Option<&Value>) {
    let pc = req.pc.as_ref();
    if req.op == Operation::Retrieve {
        if let Some((id, attribute)) = req.to.split_once('#') {
            return (id, vec![attribute.to_owned()], pc);
        }
        if let Some(list) = attribute_list(pc) {
            return (&req.to, list, None);
        }
    }
    (&req.to, Vec::new(), pc)
}

/// The attribute names of a `pc` that is exactly `{"m2m:atrl": ["name", …]}` (or `{"atrl": …}`)
/// with two or more names.
fn attribute_list(pc: Option<&Value>) -> Option<Vec<String>> {
    let object = pc?.as_object().filter(|o| o.len() == 1)?;
    let list = object.get(ATTRIBUTE_LIST_CONTENT).or_else(|| object.get(ATTRIBUTE_LIST))?;
    let list = list.as_array().filter(|l| l.len() > 1)?;
    list.iter().map(|v| v.as_str().filter(|s| !s.is_empty() && !s.contains('+')).map(str::to_owned)).collect()
}

/// The inverse of [`split_attribute_list`] on a received RETRIEVE, once its content is read:
/// one attribute name becomes `to#attr`, several a `pc` of `{"m2m:atrl": […]}` (TS-0004: the
/// attributeList is Request Primitive Content, a root element, so it carries the `m2m:` prefix
/// in JSON, like `m2m:seci`; ACME refuses a bare `atrl`).
///
/// Fails with [`QueryError::Invalid`] (`atrl`) for another operation, a `to` that already names
/// an attribute, or several names together with content.
pub fn apply_attribute_list(req: &mut RequestPrimitive, atrl: Vec<String>) -> Result<(), QueryError> {
    if atrl.is_empty() {
        return Ok(());
    }
    if req.op != Operation::Retrieve {
        return Err(invalid(ATTRIBUTE_LIST, "only a RETRIEVE may name attributes"));
    }
    if req.to.contains('#') {
        return Err(invalid(ATTRIBUTE_LIST, "the target already names an attribute"));
    }
    match <[String; 1]>::try_from(atrl) {
        Ok([single]) => {
            req.to.push('#');
            req.to.push_str(&single);
        }
        Err(several) => {
            if req.pc.is_some() {
                return Err(invalid(ATTRIBUTE_LIST, "both content and an attribute list"));
            }
            let mut pc = Map::new();
            pc.insert(
                ATTRIBUTE_LIST_CONTENT.to_owned(),
                Value::Array(several.into_iter().map(Value::String).collect()),
            );
            req.pc = Some(Value::Object(pc));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn retrieve() -> RequestPrimitive {
        RequestPrimitive::new(Operation::Retrieve, "cse-in/cnt", Some("CAE".into()), "r1")
    }

    fn pairs(params: &[QueryParam]) -> Vec<(&str, String)> {
        params.iter().map(|p| (p.name.as_str(), p.values.join("+"))).collect()
    }

    #[test]
    fn a_plus_in_a_list_item_needs_escaping() {
        let mut req = retrieve();
        req.rids = Some(vec!["a+b".into(), "c".into()]);
        req.fc = serde_json::from_value(json!({"lbl": ["x+y"]})).unwrap();
        let http = encode(&req, QuerySyntax::HTTP, false, &[]).unwrap();
        assert_eq!(http[0].values, ["a+b", "c"]);
        assert_eq!(http[1].values, ["x+y"]);
        let err = encode(&req, QuerySyntax::COAP, false, &[]).unwrap_err();
        assert!(matches!(err, QueryError::Unmappable { ref element, .. } if element == "rids"), "{err}");
        req.rids = None;
        let err = encode(&req, QuerySyntax::COAP, false, &[]).unwrap_err();
        assert!(matches!(err, QueryError::Unmappable { ref element, .. } if element == "fc.lbl"), "{err}");
    }

    #[test]
    fn an_equals_sign_in_an_attribute_name_needs_escaping() {
        let mut req = retrieve();
        req.fc = serde_json::from_value(json!({"atr": [{"nm": "a=b", "val": 1}]})).unwrap();
        assert_eq!(pairs(&encode(&req, QuerySyntax::HTTP, false, &[]).unwrap()), [("a=b", "1".to_owned())]);
        assert!(matches!(encode(&req, QuerySyntax::COAP, false, &[]), Err(QueryError::Unmappable { .. })));
    }

    #[test]
    fn op_and_tokens_are_parameters_only_where_the_syntax_says_so() {
        let mut req = retrieve();
        req.tkns = Some(vec!["t1".into(), "t2".into()]);
        let coap = encode(&req, QuerySyntax::COAP, true, &[]).unwrap();
        assert_eq!(pairs(&coap), [("op", "2".to_owned()), ("tkns", "t1+t2".to_owned())]);
        assert!(encode(&req, QuerySyntax::HTTP, true, &[]).unwrap().is_empty());

        let items = ["op=1", "tkns=t1+t2"];
        let mut coap_req = retrieve();
        let decoded = decode(items, &mut coap_req, QuerySyntax::COAP, |t| Ok(t.to_owned())).unwrap();
        assert_eq!(
            (decoded.op, coap_req.tkns, coap_req.fc),
            (Some(Operation::Create), Some(vec!["t1".into(), "t2".into()]), None)
        );
        assert!(matches!(
            decode(["op=1", "op=1"], &mut retrieve(), QuerySyntax::COAP, |t| Ok(t.to_owned())),
            Err(QueryError::Duplicate(_))
        ));
        let mut http_req = retrieve();
        let decoded = decode(items, &mut http_req, QuerySyntax::HTTP, |t| Ok(t.to_owned())).unwrap();
        assert_eq!((decoded.op, http_req.tkns), (None, None));
        assert_eq!(
            Value::Object(http_req.fc.unwrap()),
            json!({"atr": [{"nm": "op", "val": "1"}, {"nm": "tkns", "val": "t1+t2"}]})
        );
    }

    #[test]
    fn values_are_unescaped_after_splitting_lists() {
        let unescape = |t: &str| Ok(t.replace("%2B", "+"));
        let mut req = retrieve();
        decode(["rids=a%2Bb+c", "lbl=x%2By"], &mut req, QuerySyntax::HTTP, unescape).unwrap();
        assert_eq!(req.rids, Some(vec!["a+b".into(), "c".into()]));
        assert_eq!(Value::Object(req.fc.unwrap()), json!({"lbl": ["x+y"]}));
        let err = decode(["rcn=x"], &mut retrieve(), QuerySyntax::HTTP, |_| Err("bad".into())).unwrap_err();
        assert_eq!(err, QueryError::Invalid { name: "rcn".into(), reason: "bad".into() });
    }

    #[test]
    fn the_attribute_list_round_trips() {
        let mut req = retrieve();
        req.to.push_str("#lbl");
        let (to, atrl, pc) = split_attribute_list(&req);
        assert_eq!((to, atrl.as_slice(), pc), ("cse-in/cnt", &["lbl".to_owned()][..], None));
        let mut back = retrieve();
        apply_attribute_list(&mut back, atrl).unwrap();
        assert_eq!(back.to, req.to);

        req = retrieve();
        req.pc = Some(json!({"m2m:atrl": ["lbl", "ty"]}));
        let (to, atrl, pc) = split_attribute_list(&req);
        assert_eq!((to, atrl.len(), pc), ("cse-in/cnt", 2, None));
        let mut back = retrieve();
        apply_attribute_list(&mut back, atrl.clone()).unwrap();
        assert_eq!(back.pc, req.pc);
        // The bare `atrl` earlier versions wrote is still read.
        req.pc = Some(json!({"atrl": ["lbl", "ty"]}));
        assert_eq!(split_attribute_list(&req).1, atrl);
        let mut update = retrieve();
        update.op = Operation::Update;
        assert!(matches!(apply_attribute_list(&mut update, atrl), Err(QueryError::Invalid { .. })));
    }
}
