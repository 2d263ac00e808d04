//! Unsigned LEB128 varints as the onem2m-sa wire uses them (docs/protocol.md §4.3, §4.5): groups
//! of 7 bits, least significant first, the high bit set on every byte but the last; minimal (no
//! last byte of 0 after the first) and at most 64 bits (10 bytes).

/// Why a varint was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// A last byte of 0 after the first: another encoding of a shorter varint.
    NonMinimal,
    /// More than 64 bits.
    Overflow,
}

/// Appends `v` to `out`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at the start of `buf` and how many bytes it took.
pub fn get(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return Err(VarintError::Overflow);
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(VarintError::NonMinimal);
            }
            return Ok((v, i + 1));
        }
    }
    Err(if buf.len() >= 10 { VarintError::Overflow } else { VarintError::Truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(get(&out), Ok((v, out.len())), "{v}");
        }
        let mut out = Vec::new();
        put(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(get(&[]), Err(VarintError::Truncated));
        assert_eq!(get(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get(&[0x80, 0x00]), Err(VarintError::NonMinimal));
        assert_eq!(get(&[0xff; 9].iter().copied().chain([0x7f]).collect::<Vec<_>>()), Err(VarintError::Overflow));
        assert_eq!(get(&[0xff; 10]), Err(VarintError::Overflow));
    }
}
