//! CBOR bodies (TS-0004 §8.5, RFC 8949): the same `pc` structure as the JSON serialization,
//! decoded strictly into the `serde_json::Value` the JSON path gives, so that both media types
//! reach the layers above as one value. Anything JSON cannot say is refused rather than guessed.

use ciborium_ll::{Decoder, Header, simple};
use serde_json::{Map, Number, Value};

use crate::BindingError;

/// Why a CBOR body was refused (answered with `BAD_REQUEST`, 4000).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The data ends inside an item.
    #[error("CBOR data ends early")]
    Truncated,
    /// Not well-formed CBOR (reserved header values, a misplaced break, invalid UTF-8 text).
    #[error("malformed CBOR at byte {0}")]
    Malformed(usize),
    /// More data follows the single item a body holds.
    #[error("data after the CBOR item, at byte {0}")]
    TrailingData(usize),
    /// Arrays and maps are nested deeper than [`Limits::max_json_depth`](crate::Limits).
    #[error("CBOR nesting exceeds {limit} levels")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// A map has the same key twice (as JSON member names, keys shall be unique).
    #[error("duplicate map key `{0}`")]
    DuplicateKey(String),
    /// A map key is not a text string (JSON member names are text).
    #[error("map key at byte {0} is not a text string")]
    NonTextKey(usize),
    /// A tagged item (dates, big numbers, …): oneM2M's CBOR uses none.
    #[error("tag {tag} at byte {offset} is not accepted")]
    Tag {
        /// The tag number.
        tag: u64,
        /// Where the tag starts.
        offset: usize,
    },
    /// The simple value `undefined`, which JSON cannot carry.
    #[error("`undefined` at byte {0} is not accepted")]
    Undefined(usize),
    /// A simple value other than `false`, `true`, `null` and `undefined`.
    #[error("simple value {value} at byte {offset} is not accepted")]
    SimpleValue {
        /// The simple value.
        value: u8,
        /// Where it starts.
        offset: usize,
    },
    /// A byte string, which JSON cannot carry (oneM2M sends binary content as base64 text).
    #[error("byte string at byte {0} is not accepted")]
    ByteString(usize),
    /// A NaN or infinite float, which JSON cannot carry.
    #[error("NaN or infinite float at byte {0}")]
    NonFiniteFloat(usize),
    /// A negative integer below `i64::MIN`.
    #[error("negative integer at byte {0} does not fit in 64 bits")]
    IntegerOutOfRange(usize),
}

/// Decodes a body holding exactly one CBOR data item of at most `max_depth` nested arrays and
/// maps. The caller has checked the size.
pub(crate) fn decode(body: &[u8], max_depth: usize) -> Result<Value, CborError> {
    let mut reader = Reader { decoder: Decoder::from(body), len: body.len(), max_depth, scratch: [0; 1024] };
    let value = reader.item(max_depth)?;
    match reader.decoder.offset() {
        end if end == body.len() => Ok(value),
        end => Err(CborError::TrailingData(end)),
    }
}

/// Encodes `pc` as one CBOR data item: text strings, integers (major types 0/1), floats,
/// arrays and maps with text keys, in the order of the JSON members.
pub(crate) fn encode(pc: &Value) -> Result<Vec<u8>, BindingError> {
    let mut out = Vec::new();
    ciborium::into_writer(pc, &mut out).map_err(|e| BindingError::Encode(e.to_string()))?;
    Ok(out)
}

struct Reader<'a> {
    decoder: Decoder<&'a [u8]>,
    len: usize,
    max_depth: usize,
    /// Text is copied through this buffer (ciborium-ll reads into caller memory).
    scratch: [u8; 1024],
}

impl Reader<'_> {
    fn remaining(&mut self) -> usize {
        self.len - self.decoder.offset()
    }

    fn pull(&mut self) -> Result<(usize, Header), CborError> {
        let offset = self.decoder.offset();
        self.decoder.pull().map(|h| (offset, h)).map_err(ll_error)
    }

    /// Whether an indefinite-length array or map ends here (consuming the break if so).
    fn at_break(&mut self) -> Result<bool, CborError> {
        match self.pull()? {
            (_, Header::Break) => Ok(true),
            (_, header) => {
                self.decoder.push(header);
                Ok(false)
            }
        }
    }

    /// A declared length of items that each take at least `min_size` bytes, checked against the
    /// data left so that no capacity is reserved for items that cannot be there.
    fn declared(&mut self, len: usize, min_size: usize) -> Result<usize, CborError> {
        match len.checked_mul(min_size) {
            Some(needed) if needed <= self.remaining() => Ok(len),
            _ => Err(CborError::Truncated),
        }
    }

    fn item(&mut self, depth_left: usize) -> Result<Value, CborError> {
        let (offset, header) = self.pull()?;
        match header {
            Header::Positive(n) => Ok(Value::from(n)),
            // Major type 1 encodes -1 - n.
            Header::Negative(n) => {
                i64::try_from(n).map(|n| Value::from(-1 - n)).map_err(|_| CborError::IntegerOutOfRange(offset))
            }
            Header::Float(f) => Number::from_f64(f).map(Value::Number).ok_or(CborError::NonFiniteFloat(offset)),
            Header::Simple(simple::FALSE) => Ok(Value::Bool(false)),
            Header::Simple(simple::TRUE) => Ok(Value::Bool(true)),
            Header::Simple(simple::NULL) => Ok(Value::Null),
            Header::Simple(simple::UNDEFINED) => Err(CborError::Undefined(offset)),
            Header::Simple(value) => Err(CborError::SimpleValue { value, offset }),
            Header::Tag(tag) => Err(CborError::Tag { tag, offset }),
            Header::Break => Err(CborError::Malformed(offset)),
            Header::Bytes(_) => Err(CborError::ByteString(offset)),
            Header::Text(len) => self.text(len).map(Value::String),
            Header::Array(len) => {
                let inner = depth_left.checked_sub(1).ok_or(CborError::TooDeep { limit: self.max_depth })?;
                let mut items = Vec::new();
                match len {
                    Some(len) => {
                        items.reserve_exact(self.declared(len, 1)?);
                        for _ in 0..len {
                            items.push(self.item(inner)?);
                        }
                    }
                    None => {
                        while !self.at_break()? {
                            items.push(self.item(inner)?);
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            Header::Map(len) => {
                let inner = depth_left.checked_sub(1).ok_or(CborError::TooDeep { limit: self.max_depth })?;
                let mut map = Map::new();
                match len {
                    Some(len) => {
                        self.declared(len, 2)?;
                        for _ in 0..len {
                            self.member(&mut map, inner)?;
                        }
                    }
                    None => {
                        while !self.at_break()? {
                            self.member(&mut map, inner)?;
                        }
                    }
                }
                Ok(Value::Object(map))
            }
        }
    }

    fn member(&mut self, map: &mut Map<String, Value>, depth_left: usize) -> Result<(), CborError> {
        let key = match self.pull()? {
            (_, Header::Text(len)) => self.text(len)?,
            (offset, _) => return Err(CborError::NonTextKey(offset)),
        };
        match map.entry(key) {
            serde_json::map::Entry::Occupied(e) => Err(CborError::DuplicateKey(e.key().clone())),
            serde_json::map::Entry::Vacant(e) => {
                e.insert(self.item(depth_left)?);
                Ok(())
            }
        }
    }

    /// The text string whose header (of length `len`, `None` if indefinite) was just pulled.
    fn text(&mut self, len: Option<usize>) -> Result<String, CborError> {
        let mut text = String::with_capacity(len.map(|l| self.declared(l, 1)).transpose()?.unwrap_or(0));
        let mut segments = self.decoder.text(len);
        while let Some(mut segment) = segments.pull().map_err(ll_error)? {
            while let Some(chunk) = segment.pull(&mut self.scratch).map_err(ll_error)? {
                text.push_str(chunk);
            }
        }
        Ok(text)
    }
}

/// Reading from a slice fails only at its end.
fn ll_error<E>(e: ciborium_ll::Error<E>) -> CborError {
    match e {
        ciborium_ll::Error::Io(_) => CborError::Truncated,
        ciborium_ll::Error::Syntax(offset) => CborError::Malformed(offset),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        encode(v).unwrap()
    }

    #[test]
    fn round_trip() {
        for v in [
            json!({"m2m:cin": {"con": "hello", "cnf": "text/plain:0", "st": 3, "lbl": ["a", "b"]}}),
            json!([1, -1, 0, u64::MAX, i64::MIN, 1.5, -0.25, true, false, null, "", "é€😀"]),
            json!({}),
            json!("x".repeat(5000)),
        ] {
            assert_eq!(decode(&enc(&v), 32).unwrap(), v);
        }
    }

    #[test]
    fn members_keep_their_order() {
        let v = json!({"z": 1, "a": 2, "m": 3});
        let keys: Vec<_> = decode(&enc(&v), 32).unwrap().as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn indefinite_lengths() {
        // [_ 1, {_ "a": "x" "y"}] with the text in two chunks.
        let data = [0x9f, 0x01, 0xbf, 0x61, b'a', 0x7f, 0x61, b'x', 0x61, b'y', 0xff, 0xff, 0xff];
        assert_eq!(decode(&data, 32).unwrap(), json!([1, {"a": "xy"}]));
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], CborError)] = &[
            (&[0xc1, 0x01], CborError::Tag { tag: 1, offset: 0 }),
            (&[0xf7], CborError::Undefined(0)),
            (&[0xf0], CborError::SimpleValue { value: 16, offset: 0 }),
            (&[0x81, 0x41, 0x00], CborError::ByteString(1)),
            (&[0xf9, 0x7e, 0x00], CborError::NonFiniteFloat(0)),
            (&[0xfa, 0x7f, 0x80, 0x00, 0x00], CborError::NonFiniteFloat(0)),
            (&[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0], CborError::IntegerOutOfRange(0)),
            (&[0xa1, 0x01, 0x02], CborError::NonTextKey(1)),
            (&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02], CborError::DuplicateKey("a".into())),
            (&[0x01, 0x02], CborError::TrailingData(1)),
            (&[0x82, 0x01], CborError::Truncated),
            (&[], CborError::Truncated),
            (&[0xff], CborError::Malformed(0)),
            (&[0x1c], CborError::Malformed(0)),
            (&[0x62, 0xc3, 0x28], CborError::Malformed(0)),
            // Declared lengths far beyond the data reserve nothing.
            (&[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], CborError::Truncated),
            (&[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], CborError::Truncated),
            (&[0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], CborError::Truncated),
        ];
        for (data, expected) in cases {
            assert_eq!(&decode(data, 32).unwrap_err(), expected, "{data:02x?}");
        }
    }

    #[test]
    fn depth_limit_counts_arrays_and_maps() {
        let nested = |n: usize| {
            let mut v = json!(1);
            for i in 0..n {
                v = if i % 2 == 0 { json!([v]) } else { json!({"k": v}) };
            }
            enc(&v)
        };
        assert!(decode(&nested(2), 2).is_ok());
        assert_eq!(decode(&nested(3), 2).unwrap_err(), CborError::TooDeep { limit: 2 });
        // Far deeper than the limit: refused without recursing through it.
        let mut deep = vec![0x81; 100_000];
        deep.push(0x01);
        assert_eq!(decode(&deep, 32).unwrap_err(), CborError::TooDeep { limit: 32 });
    }
}
