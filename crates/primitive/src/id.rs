//! M2M identifiers in their three forms (TS-0004 §6.2.3/§6.2.4, TS-0001 §7.2 Table 7.2-1).
//!
//! * CSE-relative: `CAE01`, `cse-base/ae1` (no leading slash);
//! * SP-relative: `/id-in/CAE01` (starts with the SP-relative CSE-ID);
//! * absolute: `//sp.example.com/id-in/CAE01` (starts with the M2M-SP-ID).
//!
//! Segments use the RFC 3986 unreserved characters; a trailing `#attr` sub-address is allowed.
//! Parsing is strict where leniency would let two spellings name one entity: the SP-ID must be
//! a lowercase FQDN, and empty, `.` and `..` segments are rejected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest identifier accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;

/// Which of the three formats an [`Id`] is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdForm {
    /// Relative to the CSE receiving the request, e.g. `CAE01` or `cse-base/ae1`.
    CseRelative,
    /// Relative to the M2M Service Provider domain, e.g. `/id-in/CAE01`.
    SpRelative,
    /// Globally unique, e.g. `//sp.example.com/id-in/CAE01`.
    Absolute,
}

/// Who assigned an AE-ID-Stem, from its first character (TS-0001 Table 7.2-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeIdType {
    /// `C…`: assigned by the Registrar CSE, unique only under that CSE.
    CType,
    /// `S…`: assigned by the M2M Service Provider, unique in the SP domain.
    SType,
}

impl AeIdType {
    /// The type of an AE-ID-Stem: `C…` or `S…`; `None` for any other first character.
    pub fn of_stem(stem: &str) -> Option<Self> {
        match stem.as_bytes().first() {
            Some(b'C') => Some(Self::CType),
            Some(b'S') => Some(Self::SType),
            _ => None,
        }
    }
}

/// Why a string is not a oneM2M identifier, or why a conversion is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string is empty.
    #[error("identifier is empty")]
    Empty,
    /// The string exceeds [`MAX_ID_BYTES`].
    #[error("identifier of {len} bytes exceeds {MAX_ID_BYTES} bytes")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// A character outside the RFC 3986 unreserved set (and `/`, `#` separators).
    #[error("invalid character {ch:?} at byte {index}")]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        index: usize,
    },
    /// Two consecutive slashes, or a leading/trailing slash where a segment is due.
    #[error("empty path segment at byte {index}")]
    EmptySegment {
        /// Byte offset where the segment should start.
        index: usize,
    },
    /// A `.` or `..` segment.
    #[error("dot segment at byte {index}")]
    DotSegment {
        /// Byte offset of the segment.
        index: usize,
    },
    /// The M2M-SP-ID is not a lowercase FQDN.
    #[error("M2M-SP-ID is not a lowercase FQDN")]
    InvalidSpId,
    /// An absolute identifier with no CSE-ID after the M2M-SP-ID.
    #[error("absolute identifier has no CSE-ID")]
    MissingCseId,
    /// A `#` with no attribute name after it.
    #[error("empty attribute name after '#'")]
    EmptyAttribute,
    /// A CSE-relative identifier cannot be converted without knowing its CSE.
    #[error("identifier is CSE-relative")]
    CseRelative,
    /// The argument given as a CSE-ID is not one.
    #[error("not a CSE-ID")]
    NotACseId,
    /// The identifier is not an AE-ID (its stem starts with neither `C` nor `S`).
    #[error("not an AE-ID")]
    NotAnAeId,
}

/// A parsed oneM2M identifier (AE-ID, CSE-ID or resource ID), keeping its original spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id {
    raw: String,
    form: IdForm,
    /// Byte offset where the SP-relative part starts (0 unless absolute).
    sp_end: usize,
    /// Byte offset where the CSE-ID ends (0 for CSE-relative).
    cse_end: usize,
    /// Byte offset of `#`, or `raw.len()`.
    path_end: usize,
}

/// (form, sp_end, cse_end, path_end); see the fields of [`Id`].
type Layout = (IdForm, usize, usize, usize);

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn invalid_char(s: &str, index: usize) -> IdError {
    let ch = s[index..].chars().next().unwrap_or('\u{fffd}');
    IdError::InvalidCharacter { ch, index }
}

/// Checks `s[start..]` as `segment *("/" segment) ["#" attribute]`; returns
/// (end of the first segment, offset of `#` or `s.len()`).
fn check_path(s: &str, start: usize) -> Result<(usize, usize), IdError> {
    let bytes = s.as_bytes();
    let path_end = s[start..].find('#').map_or(s.len(), |i| start + i);
    let mut first_end = None;
    let mut seg_start = start;
    for i in start..=path_end {
        if i < path_end && bytes[i] != b'/' {
            if !is_unreserved(bytes[i]) {
                return Err(invalid_char(s, i));
            }
            continue;
        }
        match &s[seg_start..i] {
            "" => return Err(IdError::EmptySegment { index: seg_start }),
            "." | ".." => return Err(IdError::DotSegment { index: seg_start }),
            _ => {}
        }
        first_end.get_or_insert(i);
        seg_start = i + 1;
    }
    if path_end < s.len() {
        let attr = &s[path_end + 1..];
        if attr.is_empty() {
            return Err(IdError::EmptyAttribute);
        }
        if let Some(i) = attr.bytes().position(|b| !is_unreserved(b)) {
            return Err(invalid_char(s, path_end + 1 + i));
        }
    }
    Ok((first_end.unwrap_or(path_end), path_end))
}

/// A lowercase FQDN: labels of `[a-z0-9-]`, 1 to 63 bytes, not starting or ending with `-`.
/// (TS-0004 §6.2.3 also requires a label to start with a letter; digits are accepted here
/// as RFC 1123 allows.)
fn check_fqdn(fqdn: &str) -> Result<(), IdError> {
    let ok = !fqdn.is_empty()
        && fqdn.len() <= 253
        && fqdn.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        });
    if ok { Ok(()) } else { Err(IdError::InvalidSpId) }
}

/// Accepts an M2M-SP-ID written as `//fqdn` or `fqdn`; returns the FQDN.
fn normalize_sp_id(sp_id: &str) -> Result<&str, IdError> {
    let fqdn = sp_id.strip_prefix("//").unwrap_or(sp_id);
    check_fqdn(fqdn)?;
    Ok(fqdn)
}

impl Id {
    /// Parses an identifier in any of the three forms.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::layout(s).map(|layout| Self::from_layout(s.to_owned(), layout))
    }

    fn from_layout(raw: String, (form, sp_end, cse_end, path_end): Layout) -> Self {
        Self { raw, form, sp_end, cse_end, path_end }
    }

    fn layout(s: &str) -> Result<Layout, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_BYTES {
            return Err(IdError::TooLong { len: s.len() });
        }
        if let Some(rest) = s.strip_prefix("//") {
            let slash = match rest.find('/') {
                Some(i) => i,
                None if rest.contains('#') => return Err(IdError::InvalidSpId),
                None => return Err(IdError::MissingCseId),
            };
            check_fqdn(&rest[..slash])?;
            let sp_end = 2 + slash;
            let (cse_end, path_end) = check_path(s, sp_end + 1)?;
            Ok((IdForm::Absolute, sp_end, cse_end, path_end))
        } else if s.starts_with('/') {
            let (cse_end, path_end) = check_path(s, 1)?;
            Ok((IdForm::SpRelative, 0, cse_end, path_end))
        } else {
            let (_, path_end) = check_path(s, 0)?;
            Ok((IdForm::CseRelative, 0, 0, path_end))
        }
    }

    /// The identifier as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The identifier as an owned string.
    pub fn into_string(self) -> String {
        self.raw
    }

    /// The form it is written in.
    pub fn form(&self) -> IdForm {
        self.form
    }

    /// The M2M-SP-ID including its `//`, e.g. `//sp.example.com`; only for absolute IDs.
    pub fn sp_id(&self) -> Option<&str> {
        (self.form == IdForm::Absolute).then(|| &self.raw[..self.sp_end])
    }

    /// The SP-relative form, e.g. `/id-in/CAE01`; `None` for CSE-relative IDs.
    pub fn sp_relative(&self) -> Option<&str> {
        (self.form != IdForm::CseRelative).then(|| &self.raw[self.sp_end..])
    }

    /// The SP-relative CSE-ID, e.g. `/id-in`; `None` for CSE-relative IDs.
    ///
    /// For an SP-relative S-type AE-ID such as `/Sabc` this is the whole ID: the
    /// TS-0004 grammar does not distinguish it from a CSE-ID.
    pub fn cse_id(&self) -> Option<&str> {
        (self.form != IdForm::CseRelative).then(|| &self.raw[self.sp_end..self.cse_end])
    }

    /// The part relative to the CSE, without `#attribute`: `CAE01` for `/id-in/CAE01`, the
    /// whole path for a CSE-relative ID, and `""` for a bare CSE-ID.
    pub fn cse_relative(&self) -> &str {
        match self.form {
            IdForm::CseRelative => &self.raw[..self.path_end],
            _ if self.cse_end == self.path_end => "",
            _ => &self.raw[self.cse_end + 1..self.path_end],
        }
    }

    /// The attribute sub-address after `#` (TS-0004 §6.2.4), if any.
    pub fn attribute(&self) -> Option<&str> {
        (self.path_end < self.raw.len()).then(|| &self.raw[self.path_end + 1..])
    }

    /// Whether this is exactly a CSE-ID (`/id-in` or `//sp.example.com/id-in`).
    pub fn is_cse_id(&self) -> bool {
        self.form != IdForm::CseRelative && self.cse_end == self.path_end && self.path_end == self.raw.len()
    }

    /// Reads the ID as an AE-ID (TS-0004 §6.2.3 ABNF): a CSE-relative stem `C…`/`S…`,
    /// `[//sp]/cse/C…`, or `[//sp]/S…`. `None` if it has any other shape.
    ///
    /// `/S…` is also a valid CSE-ID; the grammar cannot tell them apart, so it reads as
    /// an S-type AE-ID here.
    pub fn ae_id_type(&self) -> Option<AeIdType> {
        if self.attribute().is_some() {
            return None;
        }
        let rel = self.cse_relative();
        match self.form {
            IdForm::CseRelative if !rel.contains('/') => AeIdType::of_stem(rel),
            IdForm::CseRelative => None,
            _ if rel.is_empty() => {
                let stem = &self.raw[self.sp_end + 1..self.cse_end];
                (AeIdType::of_stem(stem) == Some(AeIdType::SType)).then_some(AeIdType::SType)
            }
            _ if !rel.contains('/') && AeIdType::of_stem(rel) == Some(AeIdType::CType) => Some(AeIdType::CType),
            _ => None,
        }
    }

    /// The absolute form within the given M2M-SP (`//fqdn` or `fqdn`). An absolute ID is
    /// returned unchanged; a CSE-relative one is an error (see [`Self::with_cse_id`]).
    pub fn to_absolute(&self, sp_id: &str) -> Result<Self, IdError> {
        match self.form {
            IdForm::Absolute => Ok(self.clone()),
            IdForm::SpRelative => {
                let fqdn = normalize_sp_id(sp_id)?;
                Self::parse(&format!("//{fqdn}{}", self.raw))
            }
            IdForm::CseRelative => Err(IdError::CseRelative),
        }
    }

    /// Prefixes a CSE-relative ID with the CSE-ID of the CSE it is relative to
    /// (`/id-in` or `//sp/id-in`); other forms are returned unchanged.
    ///
    /// For an AE-ID-Stem use [`Self::ae_id_sp_relative`]: S-type stems do not take a CSE-ID.
    pub fn with_cse_id(&self, cse_id: &str) -> Result<Self, IdError> {
        if self.form != IdForm::CseRelative {
            return Ok(self.clone());
        }
        let cse = Self::parse(cse_id)?;
        if !cse.is_cse_id() {
            return Err(IdError::NotACseId);
        }
        Self::parse(&format!("{}/{}", cse.raw, self.raw))
    }

    /// The SP-relative (or, if already so, absolute) AE-ID for an AE-ID or AE-ID-Stem
    /// registered with `registrar_cse_id`: `C…` becomes `/registrar/C…`, `S…` becomes `/S…`
    /// (TS-0001 Table 7.2-1).
    pub fn ae_id_sp_relative(&self, registrar_cse_id: &str) -> Result<Self, IdError> {
        match (self.form, self.ae_id_type()) {
            (_, None) => Err(IdError::NotAnAeId),
            (IdForm::CseRelative, Some(AeIdType::SType)) => Self::parse(&format!("/{}", self.raw)),
            (IdForm::CseRelative, Some(AeIdType::CType)) => self.with_cse_id(registrar_cse_id),
            _ => Ok(self.clone()),
        }
    }
}

impl FromStr for Id {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::layout(&s).map(|layout| Self::from_layout(s, layout))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.raw
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms_and_parts() {
        let a = id("//sp.example.com/id-in/CAE01");
        assert_eq!(a.form(), IdForm::Absolute);
        assert_eq!(a.sp_id(), Some("//sp.example.com"));
        assert_eq!(a.cse_id(), Some("/id-in"));
        assert_eq!(a.sp_relative(), Some("/id-in/CAE01"));
        assert_eq!(a.cse_relative(), "CAE01");
        assert!(!a.is_cse_id());
        assert_eq!(a.ae_id_type(), Some(AeIdType::CType));

        let s = id("/id-in/CAE01");
        assert_eq!(s.form(), IdForm::SpRelative);
        assert_eq!(s.sp_id(), None);
        assert_eq!(s.cse_id(), Some("/id-in"));
        assert_eq!(s.to_absolute("//sp.example.com").unwrap(), a);
        assert_eq!(s.to_absolute("sp.example.com").unwrap(), a);

        let c = id("cse-base/ae1");
        assert_eq!(c.form(), IdForm::CseRelative);
        assert_eq!(c.cse_id(), None);
        assert_eq!(c.cse_relative(), "cse-base/ae1");
        assert_eq!(c.ae_id_type(), None);
        assert_eq!(c.to_absolute("sp.example.com"), Err(IdError::CseRelative));
        assert_eq!(c.with_cse_id("/id-in").unwrap().as_str(), "/id-in/cse-base/ae1");
        assert_eq!(c.with_cse_id("/id-in/x"), Err(IdError::NotACseId));
    }

    #[test]
    fn cse_ids() {
        assert!(id("/id-in").is_cse_id());
        assert!(id("//sp.example.com/id-in").is_cse_id());
        assert_eq!(id("//sp.example.com/id-in").cse_relative(), "");
        assert!(!id("/id-in/x").is_cse_id());
        assert!(!id("id-in").is_cse_id());
        assert!(!id("/id-in#lbl").is_cse_id());
    }

    #[test]
    fn ae_ids() {
        assert_eq!(id("CAE01").ae_id_type(), Some(AeIdType::CType));
        assert_eq!(id("Sabc").ae_id_type(), Some(AeIdType::SType));
        assert_eq!(id("xabc").ae_id_type(), None);
        assert_eq!(id("/Sabc").ae_id_type(), Some(AeIdType::SType));
        assert_eq!(id("//m2m.things.com/S98821").ae_id_type(), Some(AeIdType::SType));
        assert_eq!(id("/cse2/C3532ea3").ae_id_type(), Some(AeIdType::CType));
        // An S-type stem never sits under a CSE-ID.
        assert_eq!(id("/cse2/S3532ea3").ae_id_type(), None);
        assert_eq!(id("/cse2").ae_id_type(), None);
        assert_eq!(id("CAE01").ae_id_sp_relative("/id-in").unwrap().as_str(), "/id-in/CAE01");
        assert_eq!(id("Sxyz").ae_id_sp_relative("/id-in").unwrap().as_str(), "/Sxyz");
        assert_eq!(id("cnt1").ae_id_sp_relative("/id-in"), Err(IdError::NotAnAeId));
    }

    #[test]
    fn attributes() {
        let a = id("cse-in/cnt1#lbl");
        assert_eq!(a.attribute(), Some("lbl"));
        assert_eq!(a.cse_relative(), "cse-in/cnt1");
        assert_eq!(id("/id-in/x#rn").cse_relative(), "x");
        assert_eq!(Id::parse("cnt1#"), Err(IdError::EmptyAttribute));
        assert!(Id::parse("cnt1#a#b").is_err());
        assert!(Id::parse("cnt1#a/b").is_err());
    }

    #[test]
    fn rejects() {
        assert_eq!(Id::parse(""), Err(IdError::Empty));
        assert_eq!(Id::parse(&"a".repeat(MAX_ID_BYTES + 1)), Err(IdError::TooLong { len: MAX_ID_BYTES + 1 }));
        assert!(Id::parse(&"a".repeat(MAX_ID_BYTES)).is_ok());
        assert_eq!(Id::parse("/"), Err(IdError::EmptySegment { index: 1 }));
        assert_eq!(Id::parse("a//b"), Err(IdError::EmptySegment { index: 2 }));
        assert_eq!(Id::parse("a/"), Err(IdError::EmptySegment { index: 2 }));
        assert_eq!(Id::parse("a/../b"), Err(IdError::DotSegment { index: 2 }));
        assert_eq!(Id::parse("/."), Err(IdError::DotSegment { index: 1 }));
        assert_eq!(Id::parse("a b"), Err(IdError::InvalidCharacter { ch: ' ', index: 1 }));
        assert_eq!(Id::parse("/id-in/é"), Err(IdError::InvalidCharacter { ch: 'é', index: 7 }));
        assert!(Id::parse("a?b").is_err());
        assert!(Id::parse("a%2Fb").is_err());
        assert_eq!(Id::parse("//sp.example.com"), Err(IdError::MissingCseId));
        assert_eq!(Id::parse("//sp.example.com/"), Err(IdError::EmptySegment { index: 17 }));
        assert_eq!(Id::parse("//"), Err(IdError::MissingCseId));
        assert_eq!(Id::parse("///x"), Err(IdError::InvalidSpId));
        assert_eq!(Id::parse("//SP.example.com/x"), Err(IdError::InvalidSpId));
        assert_eq!(Id::parse("//-sp.com/x"), Err(IdError::InvalidSpId));
        assert_eq!(Id::parse("//sp..com/x"), Err(IdError::InvalidSpId));
        assert_eq!(Id::parse("//sp_x.com/x"), Err(IdError::InvalidSpId));
    }

    #[test]
    fn serde_as_string() {
        let a: Id = serde_json::from_str("\"/id-in/CAE01\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"/id-in/CAE01\"");
        assert!(serde_json::from_str::<Id>("\"a//b\"").is_err());
    }
}
