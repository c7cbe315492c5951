//! Mounts of this process's mount namespace, from `/proc/self/mountinfo`.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Every mount point, in mount order.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read("/proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(parse_mount_point)
        .collect())
}

/// The mount points at `dir` or beneath it (whole path components: `/a/bc` is not under `/a/b`).
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect())
}

/// The mount point (field 5) of one `mountinfo` line. The kernel writes a space, tab, newline
/// and backslash in a path as `\040`, `\011`, `\012` and `\134`; they are decoded here.
pub fn parse_mount_point(line: &[u8]) -> Option<PathBuf> {
    let field = line.split(|&b| b == b' ').nth(4)?;
    if field.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let escaped = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                u8::try_from(value).ok()
            });
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_point_is_the_fifth_field() {
        let line = b"36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw";
        assert_eq!(parse_mount_point(line), Some(PathBuf::from("/mnt/parent")));
    }

    #[test]
    fn escaped_spaces_tabs_newlines_and_backslashes_are_decoded() {
        let line = br"40 1 0:50 / /tmp/a\040b\011c\012d\134e rw - tmpfs tmpfs rw";
        assert_eq!(
            parse_mount_point(line),
            Some(PathBuf::from("/tmp/a b\tc\nd\\e"))
        );
    }

    #[test]
    fn a_backslash_without_three_octal_digits_stays() {
        assert_eq!(
            parse_mount_point(br"1 1 0:1 / /x\09 rw - t t rw"),
            Some(PathBuf::from(r"/x\09"))
        );
        assert_eq!(
            parse_mount_point(br"1 1 0:1 / /x\ rw - t t rw"),
            Some(PathBuf::from(r"/x\"))
        );
        // Three octal digits, but beyond a byte: not an escape the kernel writes.
        assert_eq!(
            parse_mount_point(br"1 1 0:1 / /x\777 rw - t t rw"),
            Some(PathBuf::from(r"/x\777"))
        );
    }

    #[test]
    fn short_and_empty_lines_have_no_mount_point() {
        assert_eq!(parse_mount_point(b""), None);
        assert_eq!(parse_mount_point(b"1 2 3:4 /"), None);
    }

    #[test]
    fn this_process_sees_the_root_and_proc_mounts() {
        let all = mount_points().unwrap();
        assert!(all.contains(&PathBuf::from("/")));
        assert_eq!(mounts_under(Path::new("/")).unwrap(), all);
        // /proc is a mount of its own (this reader needs it); the root is not under it.
        let under_proc = mounts_under(Path::new("/proc")).unwrap();
        assert!(under_proc.contains(&PathBuf::from("/proc")));
        assert!(!under_proc.contains(&PathBuf::from("/")));
    }
}
