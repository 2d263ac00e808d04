//! CoAP message ↔ primitive (TS-0008 §6.2): method ↔ `op`, Uri-Path ↔ `to`, Uri-Query ↔
//! request parameters, oneM2M options ↔ the other parameters, payload ↔ `pc`, response code and
//! oneM2M-RSC ↔ `rsc`. The packets built here carry no type, message ID or token: the
//! messaging layer ([`serve`](crate::serve), [`CoapClient`](crate::CoapClient)) sets those.

use coap_lite::{CoapOption, MessageClass, Packet};
use onem2m_primitive::compact;
use onem2m_primitive::query::{apply_attribute_list, split_attribute_list};
use onem2m_primitive::{
    AbsRelTimestamp, Operation, RequestPrimitive, ResponsePrimitive, ResponseStatusCode, ResponseTypeInfo, ati,
};
use serde_json::Value;

use crate::options::{self, decode_uint, encode_uint, legacy, onem2m, rfc};
use crate::query;
use crate::{BindingError, Limits, MediaType, body};

/// How a request primitive is put on the wire besides what it says itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    /// Serialization of the payload (and the Content-Format sent).
    pub media: MediaType,
    /// Uri-Host: the host of the target's point of access (TS-0008 §6.2.2.3), if not the
    /// destination IP address.
    pub uri_host: Option<String>,
    /// Uri-Port, if not the destination UDP port.
    pub uri_port: Option<u16>,
}

/// The raw code byte of a message (class << 5 | detail).
pub(crate) fn code_byte(packet: &Packet) -> u8 {
    u8::from(packet.header.code)
}

/// `(class, detail)` as the code byte.
pub(crate) fn code_of(class: u8, detail: u8) -> u8 {
    (class << 5) | (detail & 0x1f)
}

fn set_code(packet: &mut Packet, (class, detail): (u8, u8)) {
    packet.header.code = MessageClass::from(code_of(class, detail));
}

fn add(packet: &mut Packet, number: u16, value: Vec<u8>) {
    packet.add_option(CoapOption::from(number), value);
}

fn add_str(packet: &mut Packet, number: u16, element: &str, value: &str, max: usize) -> Result<(), BindingError> {
    if value.len() > max {
        return Err(BindingError::Unmappable {
            element: element.to_owned(),
            reason: format!("{} bytes exceed the option's {max}", value.len()),
        });
    }
    add(packet, number, value.as_bytes().to_vec());
    Ok(())
}

fn unmappable(element: &str, reason: &str) -> BindingError {
    BindingError::Unmappable { element: element.to_owned(), reason: reason.to_owned() }
}

/// The one value of an option sent under `current` or (older numbering) `older`.
fn single(packet: &Packet, current: u16, older: Option<u16>) -> Result<Option<&[u8]>, BindingError> {
    let mut found = None;
    for number in std::iter::once(current).chain(older) {
        if let Some(values) = packet.get_option(CoapOption::from(number)) {
            if values.len() > 1 || found.is_some() {
                return Err(BindingError::DuplicateOption(current));
            }
            found = values.front().map(Vec::as_slice);
        }
    }
    Ok(found)
}

fn text(number: u16, value: &[u8]) -> Result<String, BindingError> {
    String::from_utf8(value.to_vec())
        .map_err(|_| BindingError::InvalidOption { number, reason: "not UTF-8 text".to_owned() })
}

fn single_str(packet: &Packet, current: u16, older: Option<u16>) -> Result<Option<String>, BindingError> {
    single(packet, current, older)?.map(|v| text(current, v)).transpose()
}

fn single_uint(packet: &Packet, current: u16, older: Option<u16>) -> Result<Option<u32>, BindingError> {
    Ok(single(packet, current, older)?.map(decode_uint))
}

fn strings(packet: &Packet, number: u16) -> Result<Vec<String>, BindingError> {
    packet.get_option(CoapOption::from(number)).into_iter().flatten().map(|v| text(number, v)).collect()
}

fn split(value: &str, separator: char) -> Vec<String> {
    value.split(separator).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn join(element: &str, items: &[String], separator: char) -> Result<String, BindingError> {
    if items.iter().any(|s| s.is_empty() || s.contains(separator) || s.trim() != s) {
        return Err(unmappable(element, &format!("an item is empty, padded or contains `{separator}`")));
    }
    Ok(items.iter().map(String::as_str).collect::<Vec<_>>().join(&separator.to_string()))
}

/// Uri-Path segments for `to` (TS-0008 §6.2.2.3, Table 6.2.2.3-1): absolute `//sp/…` →
/// `_`, `sp`, …; SP-relative `/cse/…` → `~`, `cse`, …; CSE-relative → its segments.
pub(crate) fn id_to_segments(to: &str) -> Result<Vec<String>, BindingError> {
    let (first, rest) = if let Some(rest) = to.strip_prefix("//") {
        (Some("_"), rest)
    } else if let Some(rest) = to.strip_prefix('/') {
        (Some("~"), rest)
    } else {
        (None, to)
    };
    if rest.is_empty() {
        return Err(unmappable("to", "names no resource"));
    }
    let mut segments: Vec<String> = first.into_iter().map(str::to_owned).collect();
    for (i, segment) in rest.split('/').enumerate() {
        if i == 0 && first.is_none() && (segment == "~" || segment == "_") {
            return Err(unmappable("to", "a CSE-relative ID whose first segment is `~` or `_`"));
        }
        if segment.len() > 255 {
            return Err(unmappable("to", "a segment longer than a Uri-Path option (255 bytes)"));
        }
        segments.push(segment.to_owned());
    }
    Ok(segments)
}

/// `to` from Uri-Path segments (TS-0008 §6.2.2.3).
pub(crate) fn segments_to_id(segments: &[String]) -> Result<String, BindingError> {
    if let Some(bad) = segments.iter().find(|s| s.contains('/')) {
        return Err(BindingError::InvalidPath(format!("segment `{bad}` contains `/`")));
    }
    let (prefix, rest) = match segments.split_first() {
        None => return Err(BindingError::InvalidPath("no Uri-Path".to_owned())),
        Some((first, rest)) if first == "_" => ("//", rest),
        Some((first, rest)) if first == "~" => ("/", rest),
        Some(_) => ("", segments),
    };
    if rest.is_empty() {
        return Err(BindingError::InvalidPath(format!("`{prefix}` names no resource")));
    }
    Ok(format!("{prefix}{}", rest.join("/")))
}

/// Builds the CoAP request for a request primitive (TS-0008 §6.2).
///
/// Blocking requests (no `rt`, or `rt.rtv` 3 or 5) use the method of Table 6.2.1-1; the others
/// are POSTs with `op` in Uri-Query (§6.2.1). A CREATE carries oneM2M-TY; `ty` on another
/// operation, or a CREATE without it, is [`BindingError::Unmappable`] (the receiver would see
/// another operation). In a RETRIEVE, `to#attr` and a `pc` of just `{"m2m:atrl": […]}` become the
/// `atrl` query item. Members in `extra` are not carried.
///
/// A compact secured primitive ([`compact`]) in a NOTIFY is carried bare (docs/protocol.md §4.3,
/// Carriage): a POST with Uri-Host/Port when configured and the raw bytes as payload, with no
/// Uri-Path, no Content-Format and no oneM2M option — `to`, `fr`, `rqi` and `rvi` of the outer
/// NOTIFY are not sent (the sealed object names its SA; the answer is matched by token and bound
/// to its request inside).
pub fn primitive_to_packet(req: &RequestPrimitive, encoding: &Encoding) -> Result<Packet, BindingError> {
    if let Some(pc) = req.pc.as_ref().filter(|pc| is_bare_compact_request(req, pc)) {
        let mut packet = Packet::new();
        set_code(&mut packet, (0, 2));
        if let Some(host) = &encoding.uri_host {
            add_str(&mut packet, rfc::URI_HOST, "Uri-Host", host, 255)?;
        }
        if let Some(port) = encoding.uri_port {
            add(&mut packet, rfc::URI_PORT, encode_uint(port.into()));
        }
        let bytes = compact::bytes(pc).expect("compact content");
        packet.payload = bytes.map_err(|e| unmappable("pc", &format!("compact content: {e}")))?;
        return Ok(packet);
    }
    match (req.op, req.ty) {
        (Operation::Create, None) => return Err(unmappable("ty", "a CREATE without ty would arrive as a NOTIFY")),
        (op, Some(_)) if op != Operation::Create => return Err(unmappable("ty", "only a CREATE carries ty")),
        _ => {}
    }
    let explicit_op = req.rt.as_ref().is_some_and(|rt| matches!(rt.rtv, 1 | 2 | 4));
    let method = match (explicit_op, req.op) {
        (true, _) | (_, Operation::Create | Operation::Notify) => 2,
        (_, Operation::Retrieve) => 1,
        (_, Operation::Update) => 3,
        (_, Operation::Delete) => 4,
    };
    let mut packet = Packet::new();
    set_code(&mut packet, (0, method));
    if let Some(host) = &encoding.uri_host {
        add_str(&mut packet, rfc::URI_HOST, "Uri-Host", host, 255)?;
    }
    if let Some(port) = encoding.uri_port {
        add(&mut packet, rfc::URI_PORT, encode_uint(port.into()));
    }
    let (to, atrl, pc) = split_attribute_list(req);
    for segment in id_to_segments(to)? {
        add(&mut packet, rfc::URI_PATH, segment.into_bytes());
    }
    for item in query::encode(req, explicit_op, &atrl)? {
        add(&mut packet, rfc::URI_QUERY, item.into_bytes());
    }
    if let Some(fr) = &req.fr {
        add_str(&mut packet, onem2m::FR, "fr", fr, 255)?;
    }
    if req.rqi.is_empty() {
        return Err(unmappable("rqi", "empty"));
    }
    add_str(&mut packet, onem2m::RQI, "rqi", &req.rqi, 255)?;
    if let Some(ty) = req.ty {
        let ty = u16::try_from(ty).map_err(|_| unmappable("ty", "above 65535 (oneM2M-TY is 2 bytes)"))?;
        add(&mut packet, onem2m::TY, encode_uint(ty.into()));
    }
    if let Some(rvi) = &req.rvi {
        if rvi.is_empty() {
            return Err(unmappable("rvi", "empty"));
        }
        add_str(&mut packet, onem2m::RVI, "rvi", rvi, 2)?;
    }
    let opt = |packet: &mut Packet, number, element: &str, value: Option<String>| match value {
        Some(v) if v.is_empty() && matches!(number, onem2m::OT | onem2m::RQET | onem2m::RSET | onem2m::OET) => {
            Err(unmappable(element, "empty"))
        }
        Some(v) => add_str(packet, number, element, &v, 255),
        None => Ok(()),
    };
    opt(&mut packet, onem2m::GID, "gid", req.gid.clone())?;
    opt(&mut packet, onem2m::OT, "ot", req.ot.clone())?;
    opt(&mut packet, onem2m::RQET, "rqet", req.rqet.as_ref().map(ToString::to_string))?;
    opt(&mut packet, onem2m::RSET, "rset", req.rset.as_ref().map(ToString::to_string))?;
    opt(&mut packet, onem2m::OET, "oet", req.oet.as_ref().map(ToString::to_string))?;
    opt(&mut packet, onem2m::VSI, "vsi", req.vsi.clone())?;
    if let Some(ec) = req.ec {
        add(&mut packet, onem2m::EC, encode_uint(ec.into()));
    }
    if let Some(nu) = req.rt.as_ref().and_then(|rt| rt.nu.as_ref()).filter(|nu| !nu.is_empty()) {
        add_str(&mut packet, onem2m::RTURI, "rt.nu", &join("rt.nu", nu, '&')?, 255)?;
    }
    if let Some(grtm) = req.grtm.as_ref().filter(|g| !g.is_empty()) {
        add_str(&mut packet, onem2m::GTM, "grtm", &join("grtm", grtm, '+')?, 512)?;
    }
    if let Some(aus) = &req.aus {
        let items: Option<Vec<String>> = match aus {
            Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => None,
        };
        let items = items.ok_or_else(|| unmappable("aus", "not a list of strings"))?;
        if !items.is_empty() {
            add_str(&mut packet, onem2m::AUS, "aus", &join("aus", &items, '+')?, 255)?;
        }
    }
    if let Some(pc) = pc {
        put_payload(&mut packet, pc, encoding.media)?;
    }
    Ok(packet)
}

/// Writes `pc` as the payload in `media` with its Content-Format; a compact secured primitive
/// ([`compact`]) goes raw, with Content-Format [`compact::CONTENT_FORMAT`].
fn put_payload(packet: &mut Packet, pc: &Value, media: MediaType) -> Result<(), BindingError> {
    if let Some(bytes) = compact::bytes(pc) {
        let bytes = bytes.map_err(|e| unmappable("pc", &format!("compact content: {e}")))?;
        add(packet, rfc::CONTENT_FORMAT, encode_uint(compact::CONTENT_FORMAT.into()));
        packet.payload = bytes;
        return Ok(());
    }
    add(packet, rfc::CONTENT_FORMAT, encode_uint(media.content_format().into()));
    packet.payload = body::encode(Some(pc), media)?;
    Ok(())
}

/// Whether `req` (content `pc`) travels as a bare POST: a NOTIFY with a compact secured
/// primitive as content and nothing but `to`, `fr`, `rqi` and `rvi` besides, which are not sent.
pub fn is_bare_compact_request(req: &RequestPrimitive, pc: &Value) -> bool {
    req.op == Operation::Notify && req.ty.is_none() && !req.has_other_elements() && compact::is_compact(pc)
}

/// Whether `rsp` (content `pc`) travels bare: a 2000 with a compact secured primitive as content
/// and nothing but `rqi` and `rvi` besides, which are not sent.
pub fn is_bare_compact_response(rsp: &ResponsePrimitive, pc: &Value) -> bool {
    rsp.rsc == ResponseStatusCode::OK
        && rsp.to.is_none()
        && rsp.fr.is_none()
        && !rsp.has_other_elements()
        && compact::is_compact(pc)
}

/// Whether a message carries a compact secured primitive: Content-Format
/// [`compact::CONTENT_FORMAT`] and a payload.
fn is_compact_packet(packet: &Packet) -> Result<bool, BindingError> {
    let cf = single_uint(packet, rfc::CONTENT_FORMAT, None)?;
    Ok(cf == Some(u32::from(compact::CONTENT_FORMAT)) && !packet.payload.is_empty())
}

/// The `pc` of a received message: a compact secured primitive when its Content-Format is
/// [`compact::CONTENT_FORMAT`], else the payload decoded per its Content-Format.
fn payload_content(packet: &Packet, limits: &Limits) -> Result<Option<Value>, BindingError> {
    let cf = single_uint(packet, rfc::CONTENT_FORMAT, None)?;
    if cf == Some(u32::from(compact::CONTENT_FORMAT)) && !packet.payload.is_empty() {
        if packet.payload.len() > limits.max_payload_bytes {
            let (size, limit) = (packet.payload.len(), limits.max_payload_bytes);
            return Err(BindingError::PayloadTooLarge { size, limit });
        }
        return Ok(Some(compact::content(&packet.payload)));
    }
    body::decode(&packet.payload, content_media(packet)?, limits)
}

/// The serialization named by a message's Content-Format, if it has one.
fn content_media(packet: &Packet) -> Result<Option<MediaType>, BindingError> {
    single_uint(packet, rfc::CONTENT_FORMAT, None)?
        .map(|cf| {
            let cf = u16::try_from(cf).unwrap_or(u16::MAX);
            MediaType::from_content_format(cf).ok_or(BindingError::UnsupportedContentFormat(cf))
        })
        .transpose()
}

/// The serialization an answer should use: the Accept option if present (refused with
/// [`BindingError::NotAcceptable`] when it names a format this binding cannot produce), else
/// the request's Content-Format if this binding decodes it, else JSON (TS-0008 §6.2.2.2).
pub fn answer_media(packet: &Packet) -> Result<MediaType, BindingError> {
    if let Some(accept) = single_uint(packet, rfc::ACCEPT, None)? {
        let accept = u16::try_from(accept).unwrap_or(u16::MAX);
        return MediaType::from_content_format(accept).ok_or(BindingError::NotAcceptable(accept));
    }
    Ok(content_media(packet).ok().flatten().unwrap_or_default())
}

/// Maps a received CoAP request to a request primitive (TS-0008 §6.2).
///
/// * Every option is checked first ([`options::check`]): unknown critical options, bad
///   lengths and repeated non-repeatable options are refused.
/// * `op` from the method (Table 6.2.1-1) or from `op` in Uri-Query (only on a POST); a POST
///   without `op` is a CREATE when oneM2M-TY is present, else a NOTIFY (§6.2.1). oneM2M-TY on
///   another operation is refused ([`BindingError::ResourceTypeNotAllowed`]).
/// * `to` from Uri-Path: first segment `_` absolute, `~` SP-relative, else CSE-relative.
/// * oneM2M options under their current numbers and, for deployed CSEs, the older ones
///   ([`legacy`](crate::options::legacy)); the same parameter under both is refused.
/// * oneM2M-RQI is required (4000 if absent or empty); nothing else is validated here.
/// * The payload is `pc`, JSON or CBOR by Content-Format; any other format is 4015.
/// * A compact secured primitive carried bare — a POST with a payload, no Uri-Path, no oneM2M-RQI
///   and no Content-Format (or [`compact::CONTENT_FORMAT`]); see [`primitive_to_packet`] — is a
///   NOTIFY with the compact content, an empty `to`, no `fr` and `rqi` `coap-` followed by the
///   token in hex. (A oneM2M request always names its target and its request identifier.)
pub fn packet_to_primitive(packet: &Packet, limits: &Limits) -> Result<RequestPrimitive, BindingError> {
    options::check(packet)?;
    if packet.payload.len() > limits.max_payload_bytes {
        return Err(BindingError::PayloadTooLarge { size: packet.payload.len(), limit: limits.max_payload_bytes });
    }
    let bare = code_byte(packet) == 2
        && !packet.payload.is_empty()
        && packet.get_option(CoapOption::UriPath).is_none()
        && single_str(packet, onem2m::RQI, Some(legacy::RQI))?.is_none()
        && single_uint(packet, rfc::CONTENT_FORMAT, None)?.is_none_or(|cf| cf == u32::from(compact::CONTENT_FORMAT));
    if bare {
        let token: String = packet.get_token().iter().map(|b| format!("{b:02x}")).collect();
        let mut req = RequestPrimitive::new(Operation::Notify, String::new(), None, format!("coap-{token}"));
        req.pc = Some(compact::content(&packet.payload));
        return Ok(req);
    }
    let method = match code_byte(packet) {
        1 => Operation::Retrieve,
        2 => Operation::Notify,
        3 => Operation::Update,
        4 => Operation::Delete,
        _ => return Err(BindingError::UnsupportedMethod(packet.header.code.to_string())),
    };
    let segments = strings(packet, rfc::URI_PATH)?;
    let to = segments_to_id(&segments)?;
    let rqi = single_str(packet, onem2m::RQI, Some(legacy::RQI))?
        .filter(|r| !r.is_empty())
        .ok_or(BindingError::MissingOption("oneM2M-RQI"))?;
    let fr = single_str(packet, onem2m::FR, Some(legacy::FR))?;
    let ty = single_uint(packet, onem2m::TY, None)?;
    let mut req = RequestPrimitive::new(method, to, fr, rqi);
    let queries = strings(packet, rfc::URI_QUERY)?;
    let decoded = query::decode(queries.iter().map(String::as_str), &mut req)?;
    req.op = match (decoded.op, method) {
        (Some(op), Operation::Notify) => op,
        (Some(op), m) if op == m => op,
        (Some(op), _) => {
            return Err(BindingError::InvalidQuery {
                name: "op".to_owned(),
                reason: format!("{op} in a {} request (an explicit op comes with POST)", packet.header.code),
            });
        }
        (None, Operation::Notify) if ty.is_some() => Operation::Create,
        (None, m) => m,
    };
    if ty.is_some() && req.op != Operation::Create {
        return Err(BindingError::ResourceTypeNotAllowed(req.op.name()));
    }
    req.ty = ty;
    req.rvi = single_str(packet, onem2m::RVI, Some(legacy::RVI))?;
    req.gid = single_str(packet, onem2m::GID, Some(legacy::GID))?;
    req.ot = single_str(packet, onem2m::OT, None)?;
    req.rqet = single_str(packet, onem2m::RQET, Some(legacy::RQET))?.map(AbsRelTimestamp::from_text);
    req.rset = single_str(packet, onem2m::RSET, Some(legacy::RSET))?.map(AbsRelTimestamp::from_text);
    req.oet = single_str(packet, onem2m::OET, Some(legacy::OET))?.map(AbsRelTimestamp::from_text);
    req.ec = single_uint(packet, onem2m::EC, Some(legacy::EC))?.map(|ec| ec as u16);
    req.vsi = single_str(packet, onem2m::VSI, None)?;
    if let Some(rturi) = single_str(packet, onem2m::RTURI, None)? {
        let nu = split(&rturi, '&');
        if !nu.is_empty() {
            req.rt.get_or_insert_with(|| ResponseTypeInfo::new(3)).nu = Some(nu);
        }
    }
    if let Some(gtm) = single_str(packet, onem2m::GTM, None)? {
        let grtm = split(&gtm, '+');
        req.grtm = (!grtm.is_empty()).then_some(grtm);
    }
    if let Some(aus) = single_str(packet, onem2m::AUS, None)? {
        let aus = split(&aus, '+');
        req.aus = (!aus.is_empty()).then(|| Value::Array(aus.into_iter().map(Value::String).collect()));
    }
    req.pc = payload_content(packet, limits)?;
    apply_attribute_list(&mut req, decoded.atrl)?;
    Ok(req)
}

/// The URI of the created resource in a CREATE answer's content (`m2m:uri`, or `m2m:rce`/`uri`).
fn created_uri(pc: Option<&Value>) -> Option<&str> {
    let pc = pc?;
    pc.get("m2m:uri").or_else(|| pc.get("m2m:rce")?.get("uri"))?.as_str()
}

/// Builds the CoAP response for a response primitive to a request of operation `op`.
///
/// The code is `rsc.coap_code_for(op)` (TS-0008 Table 6.2.4-1) and oneM2M-RSC always carries
/// the exact code (§6.2.4); oneM2M-RQI, -RVI, -FR, -OT, -RSET, -EC, -CTS, -CTO, -ATI, -ASRI and
/// -VSI the other parameters; the payload is `pc` in `media`, with its Content-Format. A 2001
/// answer to a CREATE whose content names the created resource's URI also gets Location-Path
/// (§6.2.3). `to`, `extra` and `tqf` are not carried (`tqf` gives [`BindingError::Unmappable`]).
///
/// A successful (2000) answer whose content is a compact secured primitive, with no element but
/// `rqi` and `rvi` besides ([`is_bare_compact_response`]), is carried bare, like the request
/// (docs/protocol.md §4.3, Carriage): the code, Content-Format [`compact::CONTENT_FORMAT`] and the
/// raw bytes, no oneM2M option; a receiver takes it for 2000 (and the client gives it the
/// request's `rqi`).
pub fn response_to_packet(rsp: &ResponsePrimitive, op: Operation, media: MediaType) -> Result<Packet, BindingError> {
    if let Some(pc) = rsp.pc.as_ref().filter(|pc| is_bare_compact_response(rsp, pc)) {
        let mut packet = Packet::new();
        set_code(&mut packet, rsp.rsc.coap_code_for(op));
        put_payload(&mut packet, pc, media)?;
        return Ok(packet);
    }
    if rsp.tqf.is_some() {
        return Err(unmappable("tqf", "Token Request Information in the payload is not supported yet"));
    }
    let mut packet = Packet::new();
    set_code(&mut packet, rsp.rsc.coap_code_for(op));
    if op == Operation::Create && rsp.rsc == ResponseStatusCode::CREATED {
        if let Some(segments) = created_uri(rsp.pc.as_ref()).and_then(|uri| id_to_segments(uri).ok()) {
            for segment in segments {
                add(&mut packet, rfc::LOCATION_PATH, segment.into_bytes());
            }
        }
    }
    add(&mut packet, onem2m::RSC, encode_uint(rsp.rsc.code().into()));
    add_str(&mut packet, onem2m::RQI, "rqi", &rsp.rqi, 255)?;
    if let Some(rvi) = &rsp.rvi {
        add_str(&mut packet, onem2m::RVI, "rvi", rvi, 2)?;
    }
    let opt = |packet: &mut Packet, number, element: &str, value: Option<String>| match value {
        Some(v) => add_str(packet, number, element, &v, 255),
        None => Ok(()),
    };
    opt(&mut packet, onem2m::FR, "fr", rsp.fr.clone())?;
    opt(&mut packet, onem2m::OT, "ot", rsp.ot.clone().filter(|s| !s.is_empty()))?;
    opt(&mut packet, onem2m::RSET, "rset", rsp.rset.as_ref().map(ToString::to_string))?;
    opt(&mut packet, onem2m::ATI, "ati", rsp.ati.as_ref().map(encode_ati).transpose()?)?;
    opt(&mut packet, onem2m::ASRI, "asri", rsp.asri.map(|v| v.to_string()))?;
    opt(&mut packet, onem2m::VSI, "vsi", rsp.vsi.clone())?;
    if let Some(ec) = rsp.ec {
        add(&mut packet, onem2m::EC, encode_uint(ec.into()));
    }
    if let Some(cnst) = rsp.cnst {
        add(&mut packet, onem2m::CTS, encode_uint(cnst.into()));
    }
    if let Some(cnot) = rsp.cnot {
        let cnot = u16::try_from(cnot).map_err(|_| unmappable("cnot", "above 65535 (oneM2M-CTO is 2 bytes)"))?;
        add(&mut packet, onem2m::CTO, encode_uint(cnot.into()));
    }
    if let Some(pc) = &rsp.pc {
        put_payload(&mut packet, pc, media)?;
    }
    Ok(packet)
}

/// The Response Status Code a CoAP response code stands for when the message carries no
/// oneM2M-RSC (an answer from the CoAP layer, or a peer that omits it).
pub fn rsc_of_code(code: u8) -> ResponseStatusCode {
    let rsc = match (code >> 5, code & 0x1f) {
        (2, 1) => 2001,
        (2, 2) => 2002,
        (2, 4) => 2004,
        (2, _) => 2000,
        (4, 3) => 4103,
        (4, 4) => 4004,
        (4, 5) => 4005,
        (4, 6) => 5207,
        (4, 15) => 4015,
        (4, _) => 4000,
        (5, 1) => 5001,
        (5, 2 | 3) => 5103,
        (5, 4) => 4008,
        _ => 5000,
    };
    ResponseStatusCode::new(rsc)
}

/// Maps a received CoAP response to a response primitive.
///
/// `rsc` is taken from oneM2M-RSC (current or older number), else derived from the response
/// code ([`rsc_of_code`]) — but 2000 for a compact secured answer carried bare; `rqi` from oneM2M-RQI, left empty when absent (an answer from the
/// CoAP layer: the caller knows which request it answers).
pub fn packet_to_response(packet: &Packet, limits: &Limits) -> Result<ResponsePrimitive, BindingError> {
    options::check(packet)?;
    let code = code_byte(packet);
    if code >> 5 < 2 {
        return Err(BindingError::Malformed(format!("code {} is not a response", packet.header.code)));
    }
    let rsc = match single_uint(packet, onem2m::RSC, Some(legacy::RSC))? {
        Some(rsc) => ResponseStatusCode::new(
            u16::try_from(rsc)
                .map_err(|_| BindingError::InvalidOption { number: onem2m::RSC, reason: "too large".into() })?,
        ),
        // A compact secured answer carried bare is a 2000 (its status is inside).
        None if code >> 5 == 2 && is_compact_packet(packet)? => ResponseStatusCode::OK,
        None => rsc_of_code(code),
    };
    let rqi = single_str(packet, onem2m::RQI, Some(legacy::RQI))?.unwrap_or_default();
    let mut rsp = ResponsePrimitive::new(rsc, rqi);
    rsp.rvi = single_str(packet, onem2m::RVI, Some(legacy::RVI))?;
    rsp.fr = single_str(packet, onem2m::FR, Some(legacy::FR))?;
    rsp.ot = single_str(packet, onem2m::OT, None)?;
    rsp.rset = single_str(packet, onem2m::RSET, Some(legacy::RSET))?.map(AbsRelTimestamp::from_text);
    rsp.ec = single_uint(packet, onem2m::EC, Some(legacy::EC))?.map(|ec| ec as u16);
    rsp.cnst = single_uint(packet, onem2m::CTS, None)?
        .map(|v| {
            u8::try_from(v).map_err(|_| BindingError::InvalidOption { number: onem2m::CTS, reason: "too large".into() })
        })
        .transpose()?;
    rsp.cnot = single_uint(packet, onem2m::CTO, None)?.map(u64::from);
    rsp.ati = single_str(packet, onem2m::ATI, None)?.map(|v| decode_ati(&v)).transpose()?;
    rsp.asri = single_str(packet, onem2m::ASRI, None)?
        .map(|v| match v.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(BindingError::InvalidOption { number: onem2m::ASRI, reason: format!("`{v}` is not a boolean") }),
        })
        .transpose()?;
    rsp.vsi = single_str(packet, onem2m::VSI, None)?;
    rsp.pc = payload_content(packet, limits)?;
    Ok(rsp)
}

/// oneM2M-ATI (TS-0008 §6.2.2.4.15): the `lti:tkid` items of `ati` joined by `+`.
fn encode_ati(ati: &Value) -> Result<String, BindingError> {
    let items = ati::to_items(ati).ok_or_else(|| unmappable("ati", &format!("unexpected value {ati}")))?;
    join("ati", &items, '+')
}

fn decode_ati(value: &str) -> Result<Value, BindingError> {
    let items = split(value, '+');
    ati::from_items(items.iter().map(String::as_str)).map_err(|item| BindingError::InvalidOption {
        number: onem2m::ATI,
        reason: format!("`{item}` is not `lti:tkid`"),
    })
}
