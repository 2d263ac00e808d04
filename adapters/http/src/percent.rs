//! Percent-encoding (RFC 3986 §2.1) of path segments and query components.

use std::fmt::Write;

/// Whether `b` is an RFC 3986 unreserved character.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `s` with every byte except unreserved characters and those in `keep` percent-encoded.
pub(crate) fn encode_into(out: &mut String, s: &str, keep: &[u8]) {
    for &b in s.as_bytes() {
        if unreserved(b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8. `+` is left as it is (TS-0009 uses it as a
/// list separator, not as a space).
pub(crate) fn decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| format!("truncated escape in `{s}`"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| format!("bad escape in `{s}`"))?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in `{s}`"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("escapes in `{s}` are not UTF-8"))
}
