//! HTTP request ↔ request primitive (TS-0009 §6.2, §6.4, §6.5).

use bytes::Bytes;
use http::{HeaderMap, Method};
use onem2m_primitive::query::{apply_attribute_list, split_attribute_list};
use onem2m_primitive::{AbsRelTimestamp, Operation, RequestPrimitive, ResponseTypeInfo};
use serde_json::Value;

use crate::body::{self, ContentType, MediaType};
use crate::headers::{self, parsed, put, single};
use crate::query;
use crate::{BindingError, Limits, percent};

/// Maps a received HTTP request to a request primitive with the default [`Limits`].
///
/// See [`request_to_primitive_with_limits`].
pub fn request_to_primitive<B: AsRef<[u8]>>(request: &http::Request<B>) -> Result<RequestPrimitive, BindingError> {
    request_to_primitive_with_limits(request, &Limits::default())
}

/// Maps a received HTTP request to a request primitive.
///
/// * Sizes are checked first: every header value, the request-target, the body.
/// * `op` from the method (TS-0009 Table 6.2.1-1): POST is CREATE when `Content-Type` has a
///   `ty` parameter, else NOTIFY. A `ty` on another method is refused
///   ([`BindingError::ResourceTypeNotAllowed`], 4000), as a CSE refuses it: dropping it would
///   execute a malformed request.
/// * `to` from the path (§6.2.2.1): `/~/…` SP-relative (`/…`), `/_/…` absolute (`//…`),
///   anything else CSE-relative (leading `/` removed). Percent-escapes are decoded after the
///   form is recognized, so `/%7E/x` is the CSE-relative `~/x`.
/// * `X-M2M-RI` is required (4000 if absent or empty); `fr`, `rvi` etc. are taken as sent and
///   not validated: call [`RequestPrimitive::validate`] for that.
/// * Query fields (§6.2.2.2) fill the request parameters and `fc`; a single `atrl` value is
///   appended to `to` after `#`, several become `pc` `{"m2m:atrl": […]}` (partial RETRIEVE).
/// * The body is `pc`, decoded from JSON or CBOR (strictly: one value, depth limit, no
///   duplicate member names or map keys; CBOR items JSON cannot carry are refused, see
///   [`CborError`](crate::CborError)). Other media types give
///   [`BindingError::UnsupportedMediaType`] (4015).
/// * `Authorization` is read as `tkns` (`+`-joined, §6.4.19) unless it is an HTTP
///   authentication-scheme credential such as `Bearer …` (§7.1), which is left to the caller.
pub fn request_to_primitive_with_limits<B: AsRef<[u8]>>(
    request: &http::Request<B>,
    limits: &Limits,
) -> Result<RequestPrimitive, BindingError> {
    let h = request.headers();
    headers::check_sizes(h, limits)?;
    let uri = request.uri();
    let target_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target_len > limits.max_target_bytes {
        return Err(BindingError::TargetTooLarge { size: target_len, limit: limits.max_target_bytes });
    }
    let body = request.body().as_ref();
    if body.len() > limits.max_body_bytes {
        return Err(BindingError::BodyTooLarge { size: body.len(), limit: limits.max_body_bytes });
    }
    let content_type = body::content_type(h, limits)?;
    let ty = content_type.as_ref().and_then(|c| c.ty);
    let op = match *request.method() {
        Method::POST if ty.is_some() => Operation::Create,
        Method::POST => Operation::Notify,
        Method::GET => Operation::Retrieve,
        Method::PUT => Operation::Update,
        Method::DELETE => Operation::Delete,
        ref other => return Err(BindingError::UnsupportedMethod(other.to_string())),
    };
    if let Some(ty) = ty.filter(|_| op != Operation::Create) {
        return Err(BindingError::ResourceTypeNotAllowed { method: request.method().to_string(), ty });
    }
    let to = path_to_id(uri.path())?;
    let rqi = single(h, headers::RI, limits)?
        .filter(|r| !r.is_empty())
        .ok_or(BindingError::MissingHeader(headers::RI.name))?;
    let fr = single(h, headers::ORIGIN, limits)?;
    let mut req = RequestPrimitive::new(op, to, fr, rqi);
    req.ty = ty;
    let atrl = query::decode(uri.query().unwrap_or_default(), &mut req)?;
    read_headers(h, limits, &mut req)?;
    req.pc = body::decode(body, content_type.as_ref(), limits)?;
    apply_attribute_list(&mut req, atrl)?;
    Ok(req)
}

fn read_headers(h: &HeaderMap, limits: &Limits, req: &mut RequestPrimitive) -> Result<(), BindingError> {
    req.rvi = single(h, headers::RVI, limits)?;
    req.gid = single(h, headers::GID, limits)?;
    req.ot = single(h, headers::OT, limits)?;
    req.rset = single(h, headers::RST, limits)?.map(AbsRelTimestamp::from_text);
    req.rqet = single(h, headers::RET, limits)?.map(AbsRelTimestamp::from_text);
    req.oet = single(h, headers::OET, limits)?.map(AbsRelTimestamp::from_text);
    req.ec = parsed(h, headers::EC, limits)?;
    req.vsi = single(h, headers::VSI, limits)?;
    if let Some(rtu) = single(h, headers::RTU, limits)? {
        let nu: Vec<String> = rtu.split('&').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if !nu.is_empty() {
            // An RTU without `rt` in the query: blockingRequest (3) is the default Response Type.
            req.rt.get_or_insert_with(|| ResponseTypeInfo::new(3)).nu = Some(nu);
        }
    }
    if let Some(auth) = single(h, headers::AUTHORIZATION, limits)?.filter(|a| !is_auth_scheme(a)) {
        let tkns = headers::split_plus(&auth);
        req.tkns = (!tkns.is_empty()).then_some(tkns);
    }
    if let Some(aus) = single(h, headers::AS, limits)? {
        let aus = headers::split_plus(&aus);
        req.aus = (!aus.is_empty()).then(|| Value::Array(aus.into_iter().map(Value::String).collect()));
    }
    Ok(())
}

/// Whether an `Authorization` value is `<auth-scheme> <credentials>` (RFC 7235), e.g.
/// `Bearer …`, rather than `+`-joined JWS/JWE tokens (whose first item contains `.`).
fn is_auth_scheme(value: &str) -> bool {
    value.split_once(' ').is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// `to` from the path component (TS-0009 §6.2.2.1, Table 6.2.2.1-1).
fn path_to_id(path: &str) -> Result<String, BindingError> {
    let decode = |s: &str| percent::decode(s).map_err(BindingError::InvalidPath);
    if let Some(rest) = path.strip_prefix("/~/") {
        Ok(format!("/{}", decode(rest)?))
    } else if let Some(rest) = path.strip_prefix("/_/") {
        Ok(format!("//{}", decode(rest)?))
    } else if let Some(rest) = path.strip_prefix('/') {
        if rest == "~" || rest == "_" {
            return Err(BindingError::InvalidPath(format!("`{path}` names no resource")));
        }
        decode(rest)
    } else {
        Err(BindingError::InvalidPath(format!("`{path}` does not start with `/`")))
    }
}

/// Path component for `to` (without any `#attribute`).
fn id_to_path(to: &str) -> String {
    const KEEP: &[u8] = b"/:@!$'()*,;=";
    let mut path = String::with_capacity(to.len() + 3);
    if let Some(rest) = to.strip_prefix("//") {
        path.push_str("/_/");
        percent::encode_into(&mut path, rest, KEEP);
    } else if let Some(rest) = to.strip_prefix('/') {
        path.push_str("/~/");
        percent::encode_into(&mut path, rest, KEEP);
    } else {
        path.push('/');
        // A CSE-relative ID whose first segment is `~` or `_` must not look like the other forms.
        let (first, rest) = match to.as_bytes().first() {
            Some(b'~') => ("%7E", &to[1..]),
            Some(b'_') => ("%5F", &to[1..]),
            _ => ("", to),
        };
        path.push_str(first);
        percent::encode_into(&mut path, rest, KEEP);
    }
    path
}

/// Builds the HTTP request for a request primitive (TS-0009 §6.2, §6.4, §6.5).
///
/// `base` is prepended to the origin-form path: `""` gives an origin-form target (`/~/…`),
/// `"http://host:port"` an absolute-form one. The body is `pc` as JSON with
/// `Content-Type: application/json`, plus `;ty=N` for a CREATE. In a RETRIEVE, `to#attr` and a
/// `pc` of just `{"m2m:atrl": […]}` become the `atrl` query field.
///
/// Fails with [`BindingError::Unmappable`] (5000) when the primitive holds something the HTTP
/// binding cannot carry: a CREATE without `ty` or another operation with one (the receiver
/// would see a different operation), `grtm`, filter-criteria members without a query field,
/// values that are not valid header text, list items containing the separator. Members in
/// `extra` (of the primitive and of `rt`) are not carried.
pub fn primitive_to_request(req: &RequestPrimitive, base: &str) -> Result<http::Request<Bytes>, BindingError> {
    primitive_to_request_as(req, base, MediaType::Json)
}

/// Builds the HTTP request for a request primitive, with the body in `media`.
///
/// As [`primitive_to_request`]; the `Content-Type` is `application/json` or `application/cbor`
/// (plus `;ty=N` for a CREATE).
pub fn primitive_to_request_as(
    req: &RequestPrimitive,
    base: &str,
    media: MediaType,
) -> Result<http::Request<Bytes>, BindingError> {
    let unmappable = |element: &str, reason: &str| BindingError::Unmappable {
        element: element.to_owned(),
        reason: reason.to_owned(),
    };
    let method = match req.op {
        Operation::Create => Method::POST,
        Operation::Retrieve => Method::GET,
        Operation::Update => Method::PUT,
        Operation::Delete => Method::DELETE,
        Operation::Notify => Method::POST,
    };
    match (req.op, req.ty) {
        (Operation::Create, None) => return Err(unmappable("ty", "a CREATE without ty would arrive as a NOTIFY")),
        (op, Some(_)) if op != Operation::Create => return Err(unmappable("ty", "only a CREATE carries ty")),
        _ => {}
    }
    if req.grtm.is_some() {
        return Err(unmappable("grtm", "TS-0009 V3.9.1 has no header for Group Request Target Members"));
    }
    let (to, atrl, pc) = split_attribute_list(req);
    let mut uri = format!("{}{}", base.trim_end_matches('/'), id_to_path(to));
    let query = query::encode(req, &atrl)?;
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query);
    }
    let body = body::encode(pc, media)?;
    let mut request =
        http::Request::builder().method(method).uri(uri).body(body).map_err(|e| BindingError::Encode(e.to_string()))?;
    let h = request.headers_mut();
    if let Some(fr) = &req.fr {
        put(h, headers::ORIGIN, fr)?;
    }
    put(h, headers::RI, &req.rqi)?;
    write_headers(h, req)?;
    let ty = req.ty.filter(|_| req.op == Operation::Create);
    if pc.is_some() || ty.is_some() {
        let content_type = ContentType::of(pc, media, ty);
        put(h, headers::CONTENT_TYPE, &content_type.to_string())?;
    }
    Ok(request)
}

fn write_headers(h: &mut HeaderMap, req: &RequestPrimitive) -> Result<(), BindingError> {
    let opt = |h: &mut HeaderMap, name, value: Option<String>| value.map_or(Ok(()), |v| put(h, name, &v));
    opt(h, headers::RVI, req.rvi.clone())?;
    opt(h, headers::GID, req.gid.clone())?;
    opt(h, headers::OT, req.ot.clone())?;
    opt(h, headers::RST, req.rset.as_ref().map(ToString::to_string))?;
    opt(h, headers::RET, req.rqet.as_ref().map(ToString::to_string))?;
    opt(h, headers::OET, req.oet.as_ref().map(ToString::to_string))?;
    opt(h, headers::EC, req.ec.map(|ec| ec.to_string()))?;
    opt(h, headers::VSI, req.vsi.clone())?;
    if let Some(nu) = req.rt.as_ref().and_then(|rt| rt.nu.as_ref()).filter(|nu| !nu.is_empty()) {
        if nu.iter().any(|u| u.is_empty() || u.contains('&')) {
            return Err(BindingError::Unmappable {
                element: "rt.nu".to_owned(),
                reason: "a notification URI is empty or contains `&`".to_owned(),
            });
        }
        put(h, headers::RTU, &nu.join("&"))?;
    }
    if let Some(tkns) = req.tkns.as_ref().filter(|t| !t.is_empty()) {
        put(h, headers::AUTHORIZATION, &headers::join_plus("tkns", tkns)?)?;
    }
    if let Some(aus) = &req.aus {
        let items: Option<Vec<String>> = match aus {
            Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => None,
        };
        let items = items.ok_or_else(|| BindingError::Unmappable {
            element: "aus".to_owned(),
            reason: "not a list of base64url strings".to_owned(),
        })?;
        if !items.is_empty() {
            put(h, headers::AS, &headers::join_plus("aus", &items)?)?;
        }
    }
    Ok(())
}
