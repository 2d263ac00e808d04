//! The binary form of a primitive (onem2m-sa, docs/protocol.md §4.5): what the compact secured
//! form (§4.3) seals instead of the TS-0004 JSON serialization.
//!
//! The elements every primitive carries are fields of their own — a flags byte, `op` or `rsc`,
//! length-prefixed strings — and the content `pc` is the JSON of its value taking the rest of the
//! bytes, so a small request costs about what its CoAP options and payload cost (TS-0008) rather
//! than a JSON object with its member names. Every other element (`rt`, `fc`, `ot`, vendor
//! members…) travels as one JSON object, so nothing the JSON form carries is lost:
//!
//! ```text
//! request : op‖flags ‖ str to ‖ str rqi ‖ [str fr] ‖ [varint ty] ‖ [str rvi] ‖ [str others] ‖ [pc]
//! response: 0‖flags  ‖ varint rsc ‖ str rqi ‖ [str to] ‖ [str fr] ‖ [str rvi] ‖ [str others] ‖ [pc]
//! byte 0  : bits 7–5 op (1–5) in a request, 0 in a response · bit 4 pc · bit 3 others · bit 2 rvi
//!           · bit 1 ty (request) / to (response) · bit 0 fr
//! str     : varint byte length ‖ bytes (UTF-8 for the IDs and `rvi`, a JSON object for others)
//! varint  : unsigned LEB128, minimal, at most 64 bits
//! ```
//!
//! Decoding applies the same [`DecodeLimits`] as the JSON decoders (size; nesting, counting the
//! primitive as level 1), the same duplicate-member check (an element in `others` that has a
//! field of its own is a duplicate), and refuses unknown flag bits, non-minimal varints, lengths
//! past the end and strings that are not UTF-8.

use serde_json::{Map, Value};

use crate::primitive::{decode_object_members, encode};
use crate::varint::{self, VarintError};
use crate::{DecodeLimits, Operation, PrimitiveError, RequestPrimitive, ResponsePrimitive, ResponseStatusCode};

/// Flag: `pc` is present (the rest of the bytes).
const PC: u8 = 0x10;
/// Flag: other elements follow as one JSON object.
const OTHERS: u8 = 0x08;
/// Flag: `rvi` is present.
const RVI: u8 = 0x04;
/// Flag: `ty` (request) or `to` (response) is present.
const TY_OR_TO: u8 = 0x02;
/// Flag: `fr` is present.
const FR: u8 = 0x01;
/// Every flag.
const FLAGS: u8 = PC | OTHERS | RVI | TY_OR_TO | FR;

/// The elements with a field of their own, in a request.
const REQUEST_FIELDS: [&str; 7] = ["op", "to", "rqi", "fr", "ty", "rvi", "pc"];
/// The elements with a field of their own, in a response.
const RESPONSE_FIELDS: [&str; 6] = ["rsc", "rqi", "to", "fr", "rvi", "pc"];

fn malformed(why: &'static str) -> PrimitiveError {
    PrimitiveError::Binary(why)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    varint::put(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The members of `value` (a primitive serialized as a JSON object) that have no field of their own.
fn others_of<T: serde::Serialize>(value: &T, fields: &[&str]) -> Result<Vec<u8>, PrimitiveError> {
    let Value::Object(mut object) = serde_json::to_value(value).map_err(PrimitiveError::Encode)? else {
        unreachable!("a primitive serializes as an object")
    };
    for field in fields {
        object.remove(*field);
    }
    encode(&object)
}

/// The fields both kinds end with: `rvi`, the other elements, `pc`.
fn put_tail(
    out: &mut Vec<u8>,
    rvi: Option<&str>,
    others: Option<&[u8]>,
    pc: Option<&Value>,
) -> Result<(), PrimitiveError> {
    if let Some(rvi) = rvi {
        put_str(out, rvi.as_bytes());
    }
    if let Some(others) = others {
        put_str(out, others);
    }
    if let Some(pc) = pc {
        serde_json::to_writer(out, pc).map_err(PrimitiveError::Encode)?;
    }
    Ok(())
}

/// The flag bits of the fields present, in byte 0.
fn flags(present: [(bool, u8); 5]) -> u8 {
    present.iter().filter(|(on, _)| *on).fold(0, |flags, (_, bit)| flags | bit)
}

impl RequestPrimitive {
    /// Whether any element but `op`, `to`, `fr`, `rqi`, `ty`, `rvi` and `pc` is present (those
    /// with a field of their own in the binary form).
    pub fn has_other_elements(&self) -> bool {
        let Self {
            op: _,
            to: _,
            fr: _,
            rqi: _,
            ty: _,
            pc: _,
            rvi: _,
            rids,
            ot,
            rqet,
            rset,
            oet,
            rt,
            rp,
            rcn,
            ec,
            da,
            gid,
            fc,
            drt,
            tkns,
            tids,
            ltids,
            tqi,
            grtm,
            asi,
            aus,
            auri,
            sqi,
            vsi,
            extra,
        } = self;
        rids.is_some()
            || ot.is_some()
            || rqet.is_some()
            || rset.is_some()
            || oet.is_some()
            || rt.is_some()
            || rp.is_some()
            || rcn.is_some()
            || ec.is_some()
            || da.is_some()
            || gid.is_some()
            || fc.is_some()
            || drt.is_some()
            || tkns.is_some()
            || tids.is_some()
            || ltids.is_some()
            || tqi.is_some()
            || grtm.is_some()
            || asi.is_some()
            || aus.is_some()
            || auri.is_some()
            || sqi.is_some()
            || vsi.is_some()
            || !extra.is_empty()
    }

    /// Appends the binary form (docs/protocol.md §4.5) to `out`.
    pub fn encode_binary(&self, out: &mut Vec<u8>) -> Result<(), PrimitiveError> {
        let others = if self.has_other_elements() { Some(others_of(self, &REQUEST_FIELDS)?) } else { None };
        let flags = flags([
            (self.fr.is_some(), FR),
            (self.ty.is_some(), TY_OR_TO),
            (self.rvi.is_some(), RVI),
            (others.is_some(), OTHERS),
            (self.pc.is_some(), PC),
        ]);
        out.push(self.op.as_u8() << 5 | flags);
        put_str(out, self.to.as_bytes());
        put_str(out, self.rqi.as_bytes());
        if let Some(fr) = &self.fr {
            put_str(out, fr.as_bytes());
        }
        if let Some(ty) = self.ty {
            varint::put(out, u64::from(ty));
        }
        put_tail(out, self.rvi.as_deref(), others.as_deref(), self.pc.as_ref())
    }

    /// The binary form (docs/protocol.md §4.5).
    pub fn to_binary_vec(&self) -> Result<Vec<u8>, PrimitiveError> {
        let mut out = Vec::with_capacity(64);
        self.encode_binary(&mut out)?;
        Ok(out)
    }

    /// Decodes the binary form with the default [`DecodeLimits`].
    pub fn from_binary_slice(bytes: &[u8]) -> Result<Self, PrimitiveError> {
        Self::from_binary_slice_with_limits(bytes, DecodeLimits::default())
    }

    /// Decodes the binary form. Does not [`validate`](Self::validate) it.
    pub fn from_binary_slice_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, PrimitiveError> {
        let mut r = Reader::new(bytes, limits)?;
        let first = r.byte()?;
        let (op, flags) = (first >> 5, first & FLAGS);
        let op = match Operation::from_u8(op) {
            Some(op) => op,
            None if op == 0 => return Err(malformed("a response where a request was expected")),
            None => return Err(malformed("unknown operation")),
        };
        let to = r.string()?;
        let rqi = r.string()?;
        let fr = r.string_if(flags & FR != 0)?;
        let ty = match flags & TY_OR_TO != 0 {
            true => Some(u32::try_from(r.varint()?).map_err(|_| malformed("ty over 32 bits"))?),
            false => None,
        };
        let rvi = r.string_if(flags & RVI != 0)?;
        let others = r.others_if(flags & OTHERS != 0, &REQUEST_FIELDS)?;
        let pc = r.pc_if(flags & PC != 0)?;
        let mut req = match others {
            None => Self::new(op, to, fr, rqi),
            Some(mut object) => {
                object.insert("op".into(), op.as_u8().into());
                object.insert("to".into(), to.into());
                object.insert("rqi".into(), rqi.into());
                if let Some(fr) = fr {
                    object.insert("fr".into(), fr.into());
                }
                serde_json::from_value(Value::Object(object))?
            }
        };
        (req.ty, req.rvi, req.pc) = (ty, rvi, pc);
        Ok(req)
    }
}

impl ResponsePrimitive {
    /// Whether any element but `rsc`, `rqi`, `to`, `fr`, `rvi` and `pc` is present (those with a
    /// field of their own in the binary form).
    pub fn has_other_elements(&self) -> bool {
        let Self { rsc: _, rqi: _, pc: _, to: _, fr: _, rvi: _, ot, rset, ec, cnst, cnot, ati, tqf, asri, vsi, extra } =
            self;
        ot.is_some()
            || rset.is_some()
            || ec.is_some()
            || cnst.is_some()
            || cnot.is_some()
            || ati.is_some()
            || tqf.is_some()
            || asri.is_some()
            || vsi.is_some()
            || !extra.is_empty()
    }

    /// Appends the binary form (docs/protocol.md §4.5) to `out`.
    pub fn encode_binary(&self, out: &mut Vec<u8>) -> Result<(), PrimitiveError> {
        let others = if self.has_other_elements() { Some(others_of(self, &RESPONSE_FIELDS)?) } else { None };
        let flags = flags([
            (self.fr.is_some(), FR),
            (self.to.is_some(), TY_OR_TO),
            (self.rvi.is_some(), RVI),
            (others.is_some(), OTHERS),
            (self.pc.is_some(), PC),
        ]);
        out.push(flags);
        varint::put(out, u64::from(self.rsc.code()));
        put_str(out, self.rqi.as_bytes());
        if let Some(to) = &self.to {
            put_str(out, to.as_bytes());
        }
        if let Some(fr) = &self.fr {
            put_str(out, fr.as_bytes());
        }
        put_tail(out, self.rvi.as_deref(), others.as_deref(), self.pc.as_ref())
    }

    /// The binary form (docs/protocol.md §4.5).
    pub fn to_binary_vec(&self) -> Result<Vec<u8>, PrimitiveError> {
        let mut out = Vec::with_capacity(64);
        self.encode_binary(&mut out)?;
        Ok(out)
    }

    /// Decodes the binary form with the default [`DecodeLimits`].
    pub fn from_binary_slice(bytes: &[u8]) -> Result<Self, PrimitiveError> {
        Self::from_binary_slice_with_limits(bytes, DecodeLimits::default())
    }

    /// Decodes the binary form. Does not [`validate`](Self::validate) it.
    pub fn from_binary_slice_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, PrimitiveError> {
        let mut r = Reader::new(bytes, limits)?;
        let flags = r.byte()?;
        if flags & !FLAGS != 0 {
            return Err(malformed("a request where a response was expected"));
        }
        let rsc = u16::try_from(r.varint()?).map_err(|_| malformed("rsc over 16 bits"))?;
        let rqi = r.string()?;
        let to = r.string_if(flags & TY_OR_TO != 0)?;
        let fr = r.string_if(flags & FR != 0)?;
        let rvi = r.string_if(flags & RVI != 0)?;
        let others = r.others_if(flags & OTHERS != 0, &RESPONSE_FIELDS)?;
        let pc = r.pc_if(flags & PC != 0)?;
        let mut rsp = match others {
            None => Self::new(ResponseStatusCode::new(rsc), rqi),
            Some(mut object) => {
                object.insert("rsc".into(), rsc.into());
                object.insert("rqi".into(), rqi.into());
                serde_json::from_value(Value::Object(object))?
            }
        };
        (rsp.to, rsp.fr, rsp.rvi, rsp.pc) = (to, fr, rvi, pc);
        Ok(rsp)
    }
}

/// A cursor over a binary primitive.
struct Reader<'a> {
    rest: &'a [u8],
    limits: DecodeLimits,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], limits: DecodeLimits) -> Result<Self, PrimitiveError> {
        if bytes.len() > limits.max_bytes {
            return Err(PrimitiveError::TooLarge { size: bytes.len(), limit: limits.max_bytes });
        }
        Ok(Self { rest: bytes, limits })
    }

    fn byte(&mut self) -> Result<u8, PrimitiveError> {
        let (&b, rest) = self.rest.split_first().ok_or(malformed("truncated"))?;
        self.rest = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, PrimitiveError> {
        let (v, n) = varint::get(self.rest).map_err(|e| match e {
            VarintError::Truncated => malformed("truncated"),
            VarintError::NonMinimal => malformed("non-minimal varint"),
            VarintError::Overflow => malformed("varint over 64 bits"),
        })?;
        self.rest = &self.rest[n..];
        Ok(v)
    }

    fn bytes(&mut self) -> Result<&'a [u8], PrimitiveError> {
        let len = self.varint()?;
        let len =
            usize::try_from(len).ok().filter(|&n| n <= self.rest.len()).ok_or(malformed("length past the end"))?;
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String, PrimitiveError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| malformed("string not UTF-8"))
    }

    fn string_if(&mut self, present: bool) -> Result<Option<String>, PrimitiveError> {
        present.then(|| self.string()).transpose()
    }

    /// The other elements: a JSON object with none of the elements that have a field of their own.
    fn others_if(
        &mut self,
        present: bool,
        fields: &[&'static str],
    ) -> Result<Option<Map<String, Value>>, PrimitiveError> {
        if !present {
            return Ok(None);
        }
        let bytes = self.bytes()?;
        let object = decode_object_members(bytes, self.limits)?;
        if let Some(dup) = fields.iter().find(|f| object.contains_key(**f)) {
            return Err(PrimitiveError::DuplicateMember((*dup).to_owned()));
        }
        Ok(Some(object))
    }

    /// The content: the rest of the bytes, one JSON value nested in the primitive (level 2).
    /// `null` is no content, as `"pc":null` is in the JSON form.
    fn pc_if(&mut self, present: bool) -> Result<Option<Value>, PrimitiveError> {
        let rest = std::mem::take(&mut self.rest);
        match present {
            true => match crate::strict::parse(rest, self.limits.max_depth.saturating_sub(1))? {
                Value::Null => Ok(None),
                pc => Ok(Some(pc)),
            },
            false if rest.is_empty() => Ok(None),
            false => Err(malformed("bytes after the last field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cin_create() -> RequestPrimitive {
        let mut req = RequestPrimitive::new(Operation::Create, "/id-in/cse-base/meter/t", Some("Cmeter".into()), "w3");
        req.ty = Some(4);
        req.rvi = Some("3".into());
        req.pc = Some(json!({"m2m:cin": {"rn": "v3", "con": "21.5"}}));
        req
    }

    #[test]
    fn a_small_request_is_its_fields_and_its_content() {
        let req = cin_create();
        let bin = req.to_binary_vec().unwrap();
        let pc = br#"{"m2m:cin":{"rn":"v3","con":"21.5"}}"#;
        let mut expected = vec![0x37, 23];
        expected.extend_from_slice(b"/id-in/cse-base/meter/t");
        expected.extend_from_slice(b"\x02w3\x06Cmeter\x04\x013");
        expected.extend_from_slice(pc);
        assert_eq!(bin, expected);
        assert_eq!(RequestPrimitive::from_binary_slice(&bin).unwrap(), req);
        // 49 bytes less than the JSON form.
        assert_eq!(req.to_json_vec().unwrap().len() - bin.len(), 49);
    }

    #[test]
    fn every_element_survives_the_round_trip() {
        let mut req = cin_create();
        req.rt = Some(crate::ResponseTypeInfo::new(3));
        req.ot = Some("20261207T120000".into());
        req.extra.insert("vendor:x".into(), json!([1, {"a": null}]));
        req.fc = Some(json!({"lim": 3}).as_object().unwrap().clone());
        let bin = req.to_binary_vec().unwrap();
        assert_eq!(bin[0] & OTHERS, OTHERS);
        assert_eq!(RequestPrimitive::from_binary_slice(&bin).unwrap(), req);

        let mut rsp = ResponsePrimitive::answering(&req, ResponseStatusCode::CREATED);
        rsp.fr = Some("/id-in".into());
        rsp.pc = Some(json!({"m2m:cin": {"ri": "cin1", "con": "21.5", "st": 0}}));
        let bin = rsp.to_binary_vec().unwrap();
        assert_eq!(bin[0] & OTHERS, 0);
        assert_eq!(ResponsePrimitive::from_binary_slice(&bin).unwrap(), rsp);
        rsp.cnst = Some(1);
        rsp.extra.insert("x".into(), json!("y"));
        let bin = rsp.to_binary_vec().unwrap();
        assert_eq!(ResponsePrimitive::from_binary_slice(&bin).unwrap(), rsp);
        // No content, no optional element.
        let bare = ResponsePrimitive::new(ResponseStatusCode::DELETED, "d");
        assert_eq!(bare.to_binary_vec().unwrap(), [0x00, 0xd2, 0x0f, 1, b'd']);
        assert_eq!(ResponsePrimitive::from_binary_slice(&[0x00, 0xd2, 0x0f, 1, b'd']).unwrap(), bare);
    }

    #[test]
    fn a_null_content_is_no_content_as_in_json() {
        // Found by the primitive_binary fuzz target: `"pc":null` decodes to no content in the
        // JSON form, so the binary form may not carry a null content either.
        let mut bin = vec![0x70, 0, 1, b'r'];
        bin.extend_from_slice(b"null");
        let req = RequestPrimitive::from_binary_slice(&bin).unwrap();
        assert_eq!(req.pc, None);
        assert_eq!(RequestPrimitive::from_json_slice(&req.to_json_vec().unwrap()).unwrap(), req);
        let mut rsp = ResponsePrimitive::new(ResponseStatusCode::OK, "r");
        rsp.pc = Some(Value::Null);
        let back = ResponsePrimitive::from_binary_slice(&rsp.to_binary_vec().unwrap()).unwrap();
        assert_eq!(back, ResponsePrimitive::from_json_slice(&rsp.to_json_vec().unwrap()).unwrap());
    }

    #[test]
    fn malformed_input_is_refused() {
        let good = cin_create().to_binary_vec().unwrap();
        let refused = |bytes: &[u8]| RequestPrimitive::from_binary_slice(bytes).unwrap_err().to_string();
        assert!(refused(&[]).contains("truncated"));
        assert!(refused(&[0x00, 0, 0]).contains("a response"));
        assert!(refused(&[0xc0, 0, 0]).contains("unknown operation"));
        assert!(refused(&[0x20, 5, b'a']).contains("past the end"));
        assert!(refused(&[0x20, 0x80, 0x00]).contains("non-minimal"));
        assert!(refused(&[0x20, 1, 0xff, 0]).contains("UTF-8"));
        assert!(refused(&[0x20, 0, 0, b'x']).contains("after the last field"));
        assert!(refused(&[0x20, 0, 0, 0x80]).contains("after the last field"));
        let varint = [0x22, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(refused(&varint).contains("64 bits"));
        assert!(refused(&[0x22, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10]).contains("32 bits"));
        let refused_response = |bytes: &[u8]| ResponsePrimitive::from_binary_slice(bytes).unwrap_err().to_string();
        assert!(refused_response(&[0x20, 0xd0, 0x0f, 0]).contains("a request"));
        // An element twice: in a field of its own and in the others.
        let mut dup = vec![0x28, 0, 0];
        put_str(&mut dup, br#"{"rqi":"x"}"#);
        assert!(refused(&dup).contains("duplicate member `rqi`"));
        let mut dup = vec![0x28, 0, 0];
        put_str(&mut dup, br#"{"ot":"1","ot":"2"}"#);
        assert!(refused(&dup).contains("duplicate"));
        let mut not_object = vec![0x28, 0, 0];
        put_str(&mut not_object, b"[1]");
        assert!(refused(&not_object).contains("object"));
        // Every truncation of a valid primitive is refused (the content is JSON to its end).
        for len in 0..good.len() {
            assert!(RequestPrimitive::from_binary_slice(&good[..len]).is_err(), "truncated to {len}");
        }
        // Limits: size and nesting (the primitive is level 1, `pc` level 2).
        let small = DecodeLimits { max_bytes: good.len() - 1, ..DecodeLimits::default() };
        assert!(matches!(
            RequestPrimitive::from_binary_slice_with_limits(&good, small),
            Err(PrimitiveError::TooLarge { .. })
        ));
        let shallow = DecodeLimits { max_depth: 3, ..DecodeLimits::default() };
        assert!(RequestPrimitive::from_binary_slice_with_limits(&good, shallow).is_ok());
        let shallow = DecodeLimits { max_depth: 2, ..DecodeLimits::default() };
        assert!(matches!(
            RequestPrimitive::from_binary_slice_with_limits(&good, shallow),
            Err(PrimitiveError::TooDeep { .. })
        ));
    }
}
