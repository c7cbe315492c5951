//! The tar encoding of an artifact, and nothing else: POSIX ustar header blocks (mode 0644,
//! owner 0:0, the manifest's `finishedAt` as every entry's time), a PAX extended header with a
//! `size` record for members of 8 GiB and more, and the parsing of both. Pure: no I/O.
//!
//! Owns: the block layout and [`HeaderError`]. Imports nothing of the crate.

use std::fmt;

/// A tar block: headers are one block, data is padded to whole blocks.
pub(super) const BLOCK: usize = 512;

/// The largest size a ustar header's 11 octal digits hold (8 GiB - 1); larger members carry a
/// PAX `size` record.
pub(super) const OCTAL_SIZE_MAX: u64 = 0o777_7777_7777;

/// A header that is not one this format writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderError(pub String);

impl HeaderError {
    fn new(detail: impl Into<String>) -> Self {
        HeaderError(detail.into())
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The zeros after `size` bytes of data, up to the next block boundary.
pub(super) fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// The header blocks of a regular file: one ustar block, preceded by a PAX extended header
/// with a `size` record when the size does not fit ustar's octal field.
pub(super) fn entry_headers(path: &str, size: u64, mtime: u64) -> Vec<u8> {
    if size <= OCTAL_SIZE_MAX {
        ustar_header(path, size, mtime, b'0').to_vec()
    } else {
        pax_entry_headers(path, size, mtime)
    }
}

/// A PAX extended header holding `size`, then the ustar block (whose own size field is 0, the
/// PAX record overriding it), as POSIX.1-2001 specifies.
pub(super) fn pax_entry_headers(path: &str, size: u64, mtime: u64) -> Vec<u8> {
    let record = pax_record("size", &size.to_string());
    let file = path.rsplit('/').next().unwrap_or(path);
    let pax_name: String = format!("PaxHeaders/{file}").chars().take(100).collect();
    let mut out = ustar_header(&pax_name, record.len() as u64, mtime, b'x').to_vec();
    out.extend_from_slice(&record);
    out.resize(out.len() + padding(record.len() as u64), 0);
    out.extend_from_slice(&ustar_header(path, 0, mtime, b'0'));
    out
}

/// One PAX record, `LEN key=value\n`, where `LEN` counts the whole record, its own digits too.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while body.len() + len.to_string().len() != len {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}").into_bytes()
}

/// A POSIX ustar header block: mode 0644, owner 0:0, no user or group names. `path` is at
/// most 100 bytes (the manifest's rules; the manifest's own name is short).
fn ustar_header(path: &str, size: u64, mtime: u64, typeflag: u8) -> [u8; BLOCK] {
    debug_assert!(path.len() <= 100, "{path}");
    let mut h = [0u8; BLOCK];
    h[..path.len()].copy_from_slice(path.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces, and written as six digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h
}

/// `value` in octal, zero-padded to fill `field` but its last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    debug_assert_eq!(
        text.len(),
        digits,
        "{value} does not fit {digits} octal digits"
    );
    field[..digits].copy_from_slice(&text.as_bytes()[..digits]);
    field[digits] = 0;
}

/// An octal field as tar writers write it: optional leading spaces, digits, then NULs or
/// spaces. GNU's base-256 form is not written by this format and is refused.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field.iter().skip_while(|&&b| b == b' ');
    let digits: Vec<u8> = text
        .clone()
        .take_while(|&&b| b != 0 && b != b' ')
        .copied()
        .collect();
    let rest_ok = text.skip(digits.len()).all(|&b| b == 0 || b == b' ');
    if digits.is_empty() || !rest_ok || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

/// A NUL-terminated text field.
fn text_field(field: &[u8]) -> Result<&str, HeaderError> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).map_err(|_| HeaderError::new("a header's name is not UTF-8"))
}

/// One header block, parsed and checked.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RawHeader {
    pub path: String,
    pub size: u64,
    pub typeflag: u8,
}

pub(super) fn parse_header(h: &[u8; BLOCK]) -> Result<RawHeader, HeaderError> {
    let stored = parse_octal(&h[148..156])
        .ok_or_else(|| HeaderError::new("a header's checksum field is not a number"))?;
    let unsigned: u64 = h[..148]
        .iter()
        .chain(&[b' '; 8])
        .chain(&h[156..])
        .map(|&b| u64::from(b))
        .sum();
    if stored != unsigned {
        return Err(HeaderError::new(format!(
            "a header's checksum is {stored:o}, its bytes sum to {unsigned:o}: the archive is corrupt"
        )));
    }
    if &h[257..263] != b"ustar\0" || &h[263..265] != b"00" {
        return Err(HeaderError::new("a header is not a POSIX ustar header"));
    }
    let name = text_field(&h[..100])?;
    let prefix = text_field(&h[345..500])?;
    let path = if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    };
    let size = parse_octal(&h[124..136])
        .ok_or_else(|| HeaderError::new(format!("the size of {path:?} is not a number")))?;
    Ok(RawHeader {
        path,
        size,
        typeflag: h[156],
    })
}

/// What a PAX extended header overrides: the two keys this format reads; others are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PaxOverrides {
    pub path: Option<String>,
    pub size: Option<u64>,
}

pub(super) fn parse_pax(mut data: &[u8]) -> Result<PaxOverrides, HeaderError> {
    let bad = || HeaderError::new("a PAX extended header is malformed");
    let mut out = PaxOverrides::default();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = std::str::from_utf8(&data[space + 1..len - 1]).map_err(|_| bad())?;
        let (key, value) = record.split_once('=').ok_or_else(bad)?;
        match key {
            "path" => out.path = Some(value.to_owned()),
            "size" => out.size = Some(value.parse().map_err(|_| bad())?),
            _ => {}
        }
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_round_trip() {
        let h = ustar_header("logs/esc-1/esc_log.tar.bz2", 1234, 1_795_600_000, b'0');
        assert_eq!(
            parse_header(&h).unwrap(),
            RawHeader {
                path: "logs/esc-1/esc_log.tar.bz2".into(),
                size: 1234,
                typeflag: b'0'
            }
        );
        assert_eq!(&h[124..136], b"00000002322\0");
        // Six digits, NUL, space: what GNU tar writes and checks.
        assert_eq!(&h[154..156], b"\0 ");
        let max = ustar_header("x", OCTAL_SIZE_MAX, 0, b'0');
        assert_eq!(parse_header(&max).unwrap().size, OCTAL_SIZE_MAX);
    }

    #[test]
    fn headers_are_checked() {
        let good = ustar_header("database/db", 5, 0, b'0');
        for at in [0, 100, 124, 136, 156, 257, 300] {
            let mut bad = good;
            bad[at] ^= 0x04;
            let err = parse_header(&bad).unwrap_err();
            assert!(err.0.contains("checksum"), "byte {at}: {err}");
        }
        // A GNU-format header (magic "ustar  ") with a correct checksum is still refused.
        let mut gnu = good;
        gnu[257..265].copy_from_slice(b"ustar  \0");
        gnu[148..156].fill(b' ');
        let sum: u64 = gnu.iter().map(|&b| u64::from(b)).sum();
        octal(&mut gnu[148..155], sum);
        assert!(parse_header(&gnu).unwrap_err().0.contains("POSIX ustar"));
    }

    #[test]
    fn the_prefix_field_joins_the_name() {
        let mut h = ustar_header("file", 0, 0, b'0');
        h[345..351].copy_from_slice(b"a/long");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..155], sum);
        assert_eq!(parse_header(&h).unwrap().path, "a/long/file");
    }

    #[test]
    fn octal_fields() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"   644 \0"), Some(0o644));
        assert_eq!(parse_octal(b"644\0\0\0\0\0"), Some(0o644));
        for bad in [
            &b"\0\0\0\0"[..],
            b"    ",
            b"0008\0",
            b"12 3\0",
            b"\x80\0\0\0\0\0\0\x05",
        ] {
            assert_eq!(parse_octal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("size", "10737418240"), b"20 size=10737418240\n");
        // Across the lengths where the count gains a digit (9 → 10, 99 → 100, 999 → 1000).
        for n in 0..1100 {
            let value = "v".repeat(n);
            let record = pax_record("path", &value);
            let len: usize = std::str::from_utf8(&record)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, record.len(), "{n}");
            let parsed = parse_pax(&record).unwrap();
            assert_eq!(parsed.path.as_deref(), Some(value.as_str()));
        }
        let two = [pax_record("mtime", "1.5"), pax_record("size", "9")].concat();
        assert_eq!(
            parse_pax(&two).unwrap(),
            PaxOverrides {
                path: None,
                size: Some(9)
            }
        );
        for bad in [
            &b"5 size=9\n"[..],
            b"30 size=9\n",
            b"x size=9\n",
            b"10 size9\n\n",
            b"11 size=x1\n",
        ] {
            assert!(
                parse_pax(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn large_sizes_take_a_pax_header() {
        let headers = entry_headers("database/db", OCTAL_SIZE_MAX + 1, 0);
        assert_eq!(headers.len(), 3 * BLOCK);
        let pax: &[u8; BLOCK] = headers[..BLOCK].try_into().unwrap();
        let pax = parse_header(pax).unwrap();
        assert_eq!((pax.path.as_str(), pax.typeflag), ("PaxHeaders/db", b'x'));
        let record = &headers[BLOCK..BLOCK + pax.size as usize];
        assert_eq!(parse_pax(record).unwrap().size, Some(OCTAL_SIZE_MAX + 1));
        let file: &[u8; BLOCK] = headers[2 * BLOCK..].try_into().unwrap();
        assert_eq!(parse_header(file).unwrap().size, 0);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in proptest::collection::vec(any::<u8>(), BLOCK)) {
            let block: [u8; BLOCK] = raw.clone().try_into().unwrap();
            let _ = parse_header(&block);
            let _ = parse_pax(&raw);
        }

        #[test]
        fn sizes_round_trip(size in 0..=OCTAL_SIZE_MAX, mtime in 0..=OCTAL_SIZE_MAX) {
            let h = ustar_header("m", size, mtime, b'0');
            prop_assert_eq!(parse_header(&h).unwrap().size, size);
            prop_assert_eq!(parse_octal(&h[136..148]), Some(mtime));
        }
    }
}
