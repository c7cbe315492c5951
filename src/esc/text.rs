//! Text that came back from a node: cleaned once before any parser reads it ([`OutputText`]),
//! and quoted for error messages ([`quote_output`], [`clip`]).
//!
//! Owns: the output-cleaning rules and the quoting rules. Imports nothing of the ESC domain (a
//! leaf: every other module may use it).
//!
//! Why one cleaning step: a remote command's bytes may carry ANSI colour codes, carriage returns
//! of a progress display, or a NUL stuck to the end of the last line. Trimming whitespace alone
//! lets such bytes into parsed values (a backup path ending in `\0`, a health word that no longer
//! matches), so every parser reads [`OutputText`], never the raw bytes.

use std::fmt;

/// At most this many bytes of remote output are quoted in an error message.
pub const QUOTE_LIMIT: usize = 400;

/// Quotes remote output for an error message: at most [`QUOTE_LIMIT`] bytes, lossily decoded,
/// control characters escaped, with a note of how many raw bytes were cut.
pub fn quote_output(raw: &[u8]) -> String {
    quote_capped(raw, 0)
}

/// [`quote_output`] of a buffer that was already capped: `dropped` raw bytes never reached it
/// (stderr beyond its limit) and count in the note of what was cut.
pub fn quote_capped(raw: &[u8], dropped: u64) -> String {
    let (head, rest) = if raw.len() > QUOTE_LIMIT {
        (&raw[..QUOTE_LIMIT], (raw.len() - QUOTE_LIMIT) as u64)
    } else {
        (raw, 0)
    };
    // Counted on the raw bytes: a lossy decoding turns one invalid byte into a three-byte
    // replacement character and would overstate what was cut.
    let rest = rest + dropped;
    let mut quoted = format!("{:?}", String::from_utf8_lossy(head).as_ref());
    if rest > 0 {
        quoted.push_str(&format!(" (+{rest} more bytes)"));
    }
    quoted
}

/// Truncates a free-form string (a command line, a path, a line of output) for an error message.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A remote command's output, cleaned for parsing: lossily decoded, ANSI escape sequences
/// removed, carriage returns taken as line ends, each line trimmed of whitespace and control
/// characters at both ends, a control character inside a line replaced by U+FFFD (visible, and
/// no parser accepts it), empty lines dropped.
///
/// Inside a line the control character is replaced rather than removed: `/tmp/a\0b` must not
/// become the different, valid-looking path `/tmp/ab`.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputText {
    /// The cleaned, non-empty lines, joined by `\n`.
    text: String,
}

impl OutputText {
    /// Cleans `raw` (see the type's documentation).
    pub fn new(raw: &[u8]) -> Self {
        let decoded = String::from_utf8_lossy(raw);
        let mut text = String::with_capacity(decoded.len());
        for line in decoded.split(['\n', '\r']) {
            let line = clean_line(line);
            if !line.is_empty() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&line);
            }
        }
        OutputText { text }
    }

    /// The cleaned lines, each trimmed and non-empty.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines()
    }

    /// The cleaned text, lines separated by `\n`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for OutputText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputText({:?})", self.text)
    }
}

/// True for what is trimmed from the ends of a line: whitespace, control characters and the
/// byte-order mark.
fn is_edge_junk(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '\u{feff}'
}

fn clean_line(line: &str) -> String {
    let plain = strip_ansi(line);
    plain
        .trim_matches(is_edge_junk)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// Removes ANSI/VT100 escape sequences from one line (never looks past the line's end):
/// CSI (`ESC [` parameters, intermediates, one final byte), OSC/DCS/SOS/PM/APC strings (up to
/// BEL or `ESC \`, else the end of the line), and the other escapes (`ESC`, intermediates, one
/// final byte, e.g. `ESC ( B`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => {}
            Some('[') => {
                // Parameters 0x30–0x3F and intermediates 0x20–0x2F, then one final 0x40–0x7E.
                while chars.next_if(|c| ('\x20'..='\x3f').contains(c)).is_some() {}
                chars.next_if(|c| ('\x40'..='\x7e').contains(c));
            }
            Some(']' | 'P' | 'X' | '^' | '_') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            Some(c) if ('\x20'..='\x2f').contains(&c) => {
                while chars.next_if(|c| ('\x20'..='\x2f').contains(c)).is_some() {}
                chars.next_if(|c| ('\x30'..='\x7e').contains(c));
            }
            // A two-byte escape (`ESC 7`, `ESC M`, ...): both bytes go.
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(raw: &[u8]) -> Vec<String> {
        OutputText::new(raw).lines().map(str::to_owned).collect()
    }

    #[test]
    fn quote_truncates_and_escapes() {
        let long = "x".repeat(QUOTE_LIMIT + 10);
        let q = quote_output(long.as_bytes());
        assert!(q.ends_with("(+10 more bytes)"), "{q}");
        assert_eq!(quote_output(b"a\nb\x00"), "\"a\\nb\\0\"");
        assert_eq!(quote_output(&[0xff, b'a']), "\"\u{fffd}a\"");
    }

    #[test]
    fn quote_counts_raw_bytes_not_replacement_characters() {
        // 500 invalid bytes: 100 raw bytes are cut, although their lossy decoding is 300 bytes.
        let q = quote_output(&[0xff; QUOTE_LIMIT + 100]);
        assert!(q.ends_with("(+100 more bytes)"), "{q}");
        let q = quote_capped(b"abc", 7);
        assert_eq!(q, "\"abc\" (+7 more bytes)");
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(clip("abc", 5), "abc");
    }

    #[test]
    fn control_bytes_at_line_ends_are_trimmed() {
        assert_eq!(
            lines(b"Backup completed: /tmp/x.tar.bz2\0"),
            ["Backup completed: /tmp/x.tar.bz2"]
        );
        assert_eq!(
            lines(b"\xef\xbb\xbfESC status=0 ESC Master Healthy\x07\x00\n\x01\x7f\n"),
            ["ESC status=0 ESC Master Healthy"]
        );
    }

    #[test]
    fn control_bytes_inside_a_line_stay_visible() {
        assert_eq!(lines(b"/tmp/a\0b"), ["/tmp/a\u{fffd}b"]);
        assert_eq!(lines(b"a\tb"), ["a\tb"]);
    }

    #[test]
    fn carriage_returns_end_lines() {
        assert_eq!(
            lines(b"Operation Mode = OPERATION\r\n 10%\r100%\r\nend"),
            ["Operation Mode = OPERATION", "10%", "100%", "end"]
        );
    }

    #[test]
    fn ansi_sequences_are_removed() {
        assert_eq!(
            lines(b"\x1b[1;32mESC status=0 ESC Master Healthy\x1b[0m"),
            ["ESC status=0 ESC Master Healthy"]
        );
        assert_eq!(
            lines(b"\x1b]0;title\x07pgsql is stopped\x1b(B\x1b7"),
            ["pgsql is stopped"]
        );
        assert_eq!(lines(b"\x1b]8;;http://x\x1b\\link"), ["link"]);
        // An unterminated sequence ends with its line, never eats the next one.
        assert_eq!(lines(b"a\x1b]junk\nb\x1b[12"), ["a", "b"]);
    }

    proptest! {
        #[test]
        fn cleaned_lines_have_no_controls_at_the_edges(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = OutputText::new(&raw);
            for line in text.lines() {
                prop_assert!(!line.is_empty());
                prop_assert!(!line.starts_with(is_edge_junk) && !line.ends_with(is_edge_junk), "{:?}", line);
                prop_assert!(!line.contains(|c: char| c.is_control() && c != '\t'), "{:?}", line);
            }
        }

        #[test]
        fn printable_lines_pass_unchanged(lines_in in proptest::collection::vec("[!-~]([ -~]{0,40}[!-~])?", 0..6)) {
            let raw = lines_in.join("\n");
            let text = OutputText::new(raw.as_bytes());
            let got: Vec<&str> = text.lines().collect();
            prop_assert_eq!(got, lines_in.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
