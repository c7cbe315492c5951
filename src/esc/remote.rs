//! Remote command lines built from argument vectors, and the paths allowed in them. Pure.
//!
//! Every command the operator sends is an argument vector quoted for the remote POSIX shell, so a
//! path can never inject a second command. Paths must be absolute and plain: no control
//! characters and no `scp://` style URLs — the operator moves files itself and never puts
//! credentials on an ESC command line.
//!
//! Owns: [`RemotePath`], [`CommandLine`], shell quoting and [`PathError`]. Imports only the leaf
//! [`crate::esc::text`].

use std::fmt;

use thiserror::Error;

use crate::esc::text::clip;

/// A remote path that may not be used in a command line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("unusable remote path {path:?}: {why}")]
pub struct PathError {
    path: String,
    why: &'static str,
}

impl PathError {
    /// `path` (clipped) is unusable because `why`.
    pub fn new(path: &str, why: &'static str) -> Self {
        PathError {
            path: clip(path, 120),
            why,
        }
    }

    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        "InvalidRemotePath"
    }
}

/// The longest path accepted (Linux PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;

/// An absolute path on an ESC node, safe to put in a command line.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RemotePath(String);

impl RemotePath {
    /// Validates `path`: absolute, at most [`MAX_PATH_LEN`] bytes, no control characters, not a
    /// URL.
    pub fn new(path: impl Into<String>) -> Result<Self, PathError> {
        let path = path.into();
        let why = if !path.starts_with('/') {
            Some("must be absolute")
        } else if path.len() > MAX_PATH_LEN {
            Some("too long")
        } else if path.chars().any(char::is_control) {
            Some("contains control characters")
        } else if path.contains("://") {
            Some("must be a local path on the node, not a URL")
        } else {
            None
        };
        match why {
            Some(why) => Err(PathError {
                path: clip(&path, 120),
                why,
            }),
            None => Ok(RemotePath(path)),
        }
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This path with `suffix` appended to its last component (for a temporary sibling).
    pub fn with_suffix(&self, suffix: &str) -> Result<Self, PathError> {
        RemotePath::new(format!("{}{suffix}", self.0))
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemotePath({:?})", self.0)
    }
}

impl TryFrom<&str> for RemotePath {
    type Error = PathError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        RemotePath::new(s)
    }
}

/// Quotes one argument for a POSIX shell: bare when it only holds safe characters, otherwise in
/// single quotes with embedded `'` written as `'\''`.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A remote command: an argument vector, rendered as one quoted command line.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandLine {
    argv: Vec<String>,
    name: &'static str,
}

impl CommandLine {
    /// A command from its arguments. `name` is the short label used in errors and logs
    /// (`escadm status --v`, `cat`).
    pub fn new(name: &'static str, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CommandLine {
            argv: argv.into_iter().map(Into::into).collect(),
            name,
        }
    }

    /// The short label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The quoted command line; with `sudo`, prefixed by `sudo -n --` (non-interactive: fails
    /// instead of prompting for a password).
    pub fn render(&self, sudo: bool) -> String {
        let mut line = String::new();
        if sudo {
            line.push_str("sudo -n -- ");
        }
        for (i, a) in self.argv.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&shell_quote(a));
        }
        line
    }

    /// `cat -- PATH`.
    pub fn cat(path: &RemotePath) -> Self {
        CommandLine::new("cat", ["cat", "--", path.as_str()])
    }

    /// Writes stdin to PATH, created with mode 0600: `sh -c 'umask 077 && exec cat > "$1"' sh PATH`.
    pub fn write_stdin_to(path: &RemotePath) -> Self {
        CommandLine::new(
            "write file",
            [
                "sh",
                "-c",
                "umask 077 && exec cat > \"$1\"",
                "sh",
                path.as_str(),
            ],
        )
    }

    /// `stat -c %s -- PATH` (size in bytes).
    pub fn stat_size(path: &RemotePath) -> Self {
        CommandLine::new("stat", ["stat", "-c", "%s", "--", path.as_str()])
    }

    /// The SHA-256 of PATH in `sha256sum`'s format (`HEX  PATH`): `openssl dgst -sha256 -r`
    /// where the node has openssl, else coreutils' `sha256sum`.
    ///
    /// Why not always `sha256sum`: coreutils 9 hashes without the CPU's SHA extensions (about
    /// 0.25 GB/s on the test machine against 0.8 GB/s for openssl), and the backup hashes the
    /// whole database on the node before it streams it, so this pass is a fixed share of every
    /// backup's time. The choice is made by `command -v`, never by a failed run: a failing
    /// openssl fails the command, and a digest that does not parse fails closed.
    pub fn sha256sum(path: &RemotePath) -> Self {
        CommandLine::new(
            "sha256sum",
            [
                "sh",
                "-c",
                "if command -v openssl >/dev/null 2>&1; then exec openssl dgst -sha256 -r \"$1\"; \
                 else exec sha256sum -- \"$1\"; fi",
                "sh",
                path.as_str(),
            ],
        )
    }

    /// `rm -f -- PATH`.
    pub fn remove(path: &RemotePath) -> Self {
        CommandLine::new("rm", ["rm", "-f", "--", path.as_str()])
    }

    /// `mv -f -- FROM TO`.
    pub fn rename(from: &RemotePath, to: &RemotePath) -> Self {
        CommandLine::new("mv", ["mv", "-f", "--", from.as_str(), to.as_str()])
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl fmt::Debug for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandLine({})", self.render(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_are_validated() {
        assert!(RemotePath::new("/tmp/x.tar.bz2").is_ok());
        for bad in [
            "tmp/x",
            "",
            "/tmp/a\nb",
            "/tmp/\0",
            "scp://u:pw@h:/f",
            "/x/scp://u:pw@h",
        ] {
            let err = RemotePath::new(bad).unwrap_err();
            assert!(err.to_string().contains("unusable remote path"), "{err}");
        }
        assert!(RemotePath::new(format!("/{}", "a".repeat(MAX_PATH_LEN))).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--mode=maintenance"), "--mode=maintenance");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }

    #[test]
    fn rendering() {
        let p = RemotePath::new("/tmp/my file").unwrap();
        assert_eq!(CommandLine::cat(&p).render(false), "cat -- '/tmp/my file'");
        assert_eq!(
            CommandLine::sha256sum(&p).render(true),
            "sudo -n -- sh -c 'if command -v openssl >/dev/null 2>&1; then exec openssl dgst -sha256 -r \"$1\"; else exec sha256sum -- \"$1\"; fi' sh '/tmp/my file'"
        );
        assert_eq!(
            CommandLine::write_stdin_to(&p).render(false),
            "sh -c 'umask 077 && exec cat > \"$1\"' sh '/tmp/my file'"
        );
    }

    /// Runs the rendered line through a real `sh` with `printf '%s\0'` as the program: the
    /// arguments must come back exactly, whatever they contain.
    #[test]
    fn quoting_survives_a_real_shell() {
        let args = [
            "plain",
            "with space",
            "quote'in",
            "dq\"x",
            "$HOME",
            "`id`",
            "a\\b",
            "*",
            ";rm -rf /",
            "",
        ];
        let cmd = CommandLine::new("printf", ["printf", "%s\\0"].into_iter().chain(args));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.render(false))
            .output()
            .unwrap();
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = args
            .iter()
            .map(|a| a.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want);
    }

    /// The node-side digest through a real `sh`, once with only openssl on PATH and once with only
    /// coreutils' sha256sum: both print a line the parser reads as the same digest, for a name
    /// that needs quoting. A PATH with neither fails the command rather than printing a digest.
    #[test]
    fn sha256_command_prefers_openssl_and_falls_back_to_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db 'backup'.tar.bz2");
        std::fs::write(&file, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let path = RemotePath::new(file.to_str().unwrap()).unwrap();
        let line = CommandLine::sha256sum(&path).render(false);
        let which = |tool: &str| {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{tool} is not installed (tools/sshd/setup.sh installs it)"
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let run_with = |tools: &[&str]| {
            let bin = dir.path().join(format!("bin-{}", tools.join("-")));
            std::fs::create_dir(&bin).unwrap();
            // `sh` itself: the command line is `sh -c '...'`, as on the node.
            for tool in tools.iter().chain(&["sh"]) {
                std::os::unix::fs::symlink(which(tool), bin.join(tool)).unwrap();
            }
            std::process::Command::new(which("sh"))
                .args(["-c", &line])
                .env("PATH", &bin)
                .output()
                .unwrap()
        };
        for tools in [&["openssl"][..], &["sha256sum"][..]] {
            let out = run_with(tools);
            assert!(out.status.success(), "{tools:?}: {out:?}");
            let digest = crate::esc::parse::parse_sha256sum(&out.stdout).unwrap();
            assert_eq!(digest.to_string(), abc, "{tools:?}");
            // The branch taken shows in the line: openssl's `-r` marks the name with `*`.
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.contains(" *"),
                tools == ["openssl"],
                "{tools:?}: {text}"
            );
        }
        let neither = run_with(&[]);
        assert!(!neither.status.success());
        assert!(crate::esc::parse::parse_sha256sum(&neither.stdout).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn quoted_args_round_trip_through_sh(arg in "[ -~]{0,30}") {
            let cmd = CommandLine::new("printf", ["printf", "%s", arg.as_str()]);
            let out = std::process::Command::new("sh").arg("-c").arg(cmd.render(false)).output().unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout), arg);
        }
    }
}
