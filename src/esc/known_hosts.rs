//! OpenSSH `known_hosts` content: parsing, host matching and host key verification. Pure (no
//! files, no network): the caller passes the content it loaded, e.g. from a Secret.
//!
//! Supported, as in OpenSSH (`sshd(8)`, section SSH_KNOWN_HOSTS FILE FORMAT): comma-separated
//! host patterns with `*`/`?` wildcards and `!` negation, `[host]:port` for ports other than 22,
//! hashed entries `|1|base64(salt)|base64(HMAC-SHA1(salt, host))` (`ssh-keygen -H`), the
//! `@revoked` marker, comments. `@cert-authority` lines are skipped (host certificates are not
//! accepted). Unparsable lines are skipped and reported by [`KnownHosts::invalid_lines`], as
//! OpenSSH skips them.
//!
//! Owns: [`KnownHosts`], fingerprints, and [`HostKeyError`] (raised here, and by the transport's
//! host key check for what known_hosts cannot vouch for, such as certificates). Imports only the
//! leaf [`crate::esc::vocab`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;
use thiserror::Error;

use crate::esc::vocab::NodeAddr;

/// A server host key that the known_hosts content does not vouch for. The connection is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HostKeyError {
    /// No known_hosts entry names this host and port.
    #[error(
        "host key of {node} is unknown: the server offered {algorithm} key {fingerprint}, and the \
         known_hosts content has no entry for {}; add the node's host key to it",
        host_port_pattern(&node.host, node.port)
    )]
    Unknown {
        node: NodeAddr,
        algorithm: String,
        fingerprint: String,
    },
    /// Entries name this host, but none holds the offered key.
    #[error(
        "HOST KEY MISMATCH for {node}: the server offered {algorithm} key {fingerprint}, but \
         known_hosts has {known} for it; refusing to connect (the node was reinstalled, or \
         someone is intercepting the connection)"
    )]
    Mismatch {
        node: NodeAddr,
        algorithm: String,
        fingerprint: String,
        /// The recorded keys, as `algorithm fingerprint (line N)`, comma-separated.
        known: String,
    },
    /// The offered key is marked `@revoked`.
    #[error("host key {fingerprint} of {node} is marked @revoked in known_hosts")]
    Revoked { node: NodeAddr, fingerprint: String },
    /// The server presented a certificate; only plain host keys are supported.
    #[error(
        "{node} presented a host certificate ({fingerprint}); only plain host keys listed in \
         known_hosts are supported"
    )]
    CertificateUnsupported { node: NodeAddr, fingerprint: String },
}

impl HostKeyError {
    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            HostKeyError::Unknown { .. } => "HostKeyUnknown",
            HostKeyError::Mismatch { .. } => "HostKeyMismatch",
            HostKeyError::Revoked { .. } => "HostKeyRevoked",
            HostKeyError::CertificateUnsupported { .. } => "HostCertificateUnsupported",
        }
    }

    /// The node whose key was refused.
    pub fn node(&self) -> &NodeAddr {
        match self {
            HostKeyError::Unknown { node, .. }
            | HostKeyError::Mismatch { node, .. }
            | HostKeyError::Revoked { node, .. }
            | HostKeyError::CertificateUnsupported { node, .. } => node,
        }
    }
}

/// The `SHA256:base64` fingerprint of a public key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The host field OpenSSH writes and looks up: `host` for port 22, `[host]:port` otherwise.
pub fn host_port_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// A known_hosts line for `key` at `host:port` (unhashed, no comment).
pub fn known_hosts_line(host: &str, port: u16, key: &PublicKey) -> String {
    let openssh = key
        .to_openssh()
        .unwrap_or_else(|_| String::from("<unencodable key>"));
    // to_openssh() appends the key's comment, if any; keep `type base64` only.
    let mut parts = openssh.split_whitespace();
    let algo = parts.next().unwrap_or_default();
    let b64 = parts.next().unwrap_or_default();
    format!("{} {algo} {b64}", host_port_pattern(host, port))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Clone, Debug)]
enum HostPattern {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Plain { pattern: String, negated: bool },
}

#[derive(Clone, Debug)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: Vec<HostPattern>,
    key: PublicKey,
}

/// Parsed known_hosts content.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    invalid_lines: Vec<usize>,
}

impl KnownHosts {
    /// Parses OpenSSH known_hosts content. Never fails: bad lines are skipped and listed in
    /// [`KnownHosts::invalid_lines`].
    pub fn parse(content: &str) -> Self {
        let mut out = KnownHosts::default();
        for (idx, raw) in content.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(idx + 1, line) {
                Ok(Some(entry)) => out.entries.push(entry),
                Ok(None) => {}
                Err(()) => out.invalid_lines.push(idx + 1),
            }
        }
        out
    }

    /// The 1-based numbers of the lines that could not be parsed (skipped).
    pub fn invalid_lines(&self) -> &[usize] {
        &self.invalid_lines
    }

    /// The number of usable entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no usable entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn matching(&self, host: &str, port: u16) -> impl Iterator<Item = &Entry> {
        let name = host_port_pattern(&host.to_ascii_lowercase(), port);
        self.entries
            .iter()
            .filter(move |e| hosts_match(&e.hosts, &name))
    }

    /// The host key algorithms recorded for `host:port`, in file order, RSA expanded to its
    /// SHA-2 signature variants — to offer the server exactly the kinds of key we can verify
    /// (as OpenSSH's client orders its HostKeyAlgorithms by known_hosts).
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self.matching(host, port) {
            if e.marker != Marker::None {
                continue;
            }
            let algs = match e.key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                other => vec![other],
            };
            for a in algs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Verifies the key a server at `host:port` offered. `Ok` only when a non-revoked entry
    /// for this host and port holds exactly this key.
    pub fn verify(&self, host: &str, port: u16, offered: &PublicKey) -> Result<(), HostKeyError> {
        let node = || NodeAddr::new(host, port);
        let fp = fingerprint(offered);
        let mut known = Vec::new();
        let mut accepted = false;
        for e in self.matching(host, port) {
            let same = e.key.key_data() == offered.key_data();
            match e.marker {
                Marker::Revoked if same => {
                    return Err(HostKeyError::Revoked {
                        node: node(),
                        fingerprint: fp,
                    });
                }
                Marker::Revoked => {}
                Marker::None if same => accepted = true,
                Marker::None => known.push(format!(
                    "{} {} (line {})",
                    e.key.algorithm().as_str(),
                    fingerprint(&e.key),
                    e.line
                )),
            }
        }
        // @revoked lines apply whatever host they name ("*" is common); check them too.
        for e in &self.entries {
            if e.marker == Marker::Revoked && e.key.key_data() == offered.key_data() {
                return Err(HostKeyError::Revoked {
                    node: node(),
                    fingerprint: fp,
                });
            }
        }
        if accepted {
            return Ok(());
        }
        let algorithm = offered.algorithm().as_str().to_owned();
        if known.is_empty() {
            Err(HostKeyError::Unknown {
                node: node(),
                algorithm,
                fingerprint: fp,
            })
        } else {
            Err(HostKeyError::Mismatch {
                node: node(),
                algorithm,
                fingerprint: fp,
                known: known.join(", "),
            })
        }
    }
}

fn parse_line(line_no: usize, line: &str) -> Result<Option<Entry>, ()> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or(())?;
    let marker = if let Some(m) = first.strip_prefix('@') {
        let marker = match m {
            "revoked" => Marker::Revoked,
            "cert-authority" => {
                // Host certificates are not accepted: skip, not an error.
                return Ok(None);
            }
            _ => return Err(()),
        };
        first = fields.next().ok_or(())?;
        marker
    } else {
        Marker::None
    };
    let key_type = fields.next().ok_or(())?;
    let key_b64 = fields.next().ok_or(())?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}")).map_err(|_| ())?;
    if key.algorithm().as_str() != key_type {
        return Err(());
    }
    let hosts = first
        .split(',')
        .filter(|p| !p.is_empty())
        .map(parse_host_pattern)
        .collect::<Result<Vec<_>, _>>()?;
    if hosts.is_empty() {
        return Err(());
    }
    Ok(Some(Entry {
        line: line_no,
        marker,
        hosts,
        key,
    }))
}

fn parse_host_pattern(p: &str) -> Result<HostPattern, ()> {
    if let Some(rest) = p.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or(())?;
        let salt = STANDARD.decode(salt).map_err(|_| ())?;
        let hash = STANDARD.decode(hash).map_err(|_| ())?;
        if hash.len() != 20 {
            return Err(());
        }
        return Ok(HostPattern::Hashed { salt, hash });
    }
    let (negated, pat) = match p.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    Ok(HostPattern::Plain {
        pattern: pat.to_ascii_lowercase(),
        negated,
    })
}

/// OpenSSH semantics: the line matches if some positive pattern matches and no negated one does.
fn hosts_match(patterns: &[HostPattern], name: &str) -> bool {
    let mut positive = false;
    for p in patterns {
        match p {
            HostPattern::Hashed { salt, hash } => {
                if let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt)
                    && mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
                {
                    positive = true;
                }
            }
            HostPattern::Plain { pattern, negated } => {
                if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                    if *negated {
                        return false;
                    }
                    positive = true;
                }
            }
        }
    }
    positive
}

/// `*` matches any run of characters, `?` exactly one (OpenSSH `match_pattern`). Iterative, so
/// adversarial patterns cannot blow the stack or take exponential time.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Generated with ssh-keygen (OpenSSH 9.2): three host keys, a plain known_hosts, and the
    // same file after `ssh-keygen -H` (hashed entries).
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJLMtBMXUTgl8YUsQEc+tLarR8FLdyDFz6kLJsuVKpP+";
    const ED_FP: &str = "SHA256:mpsvxf5C9tyHnIvVHKnk8EkZXlBMDUG7wf0wUstlXso";
    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPBjjlTYACVfFVAvMdKrlWnol1dVn73fHMH0pGiX/JkKC4b+OC+8HSj5LRL9d3OmJMGP2w3CVorU1vIYRDHKUm0=";
    const EC_FP: &str = "SHA256:Mbo7FIAIjnq16HIdNcbPNwqhxdZk2VdhvQLJuOxQr3k";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC+P7hdBfg2GA8UhtjY47XG+Qaz/0gTwlNRs0VJ8SxYJAhRsBD9lRTjI7BRHB7SUyzP/0yCDq4JcHBrWXFlGKr7bFnhEtInbZys3ovOZ9fp2i29PVMy6RN/tMbpaU91Ds/U7AnHmIsuCsSbyuXJYAgogKDEvL9vnBvlhryJw20KOcHEm/tm0li49+PKnKH07xHGofQIb4N+2Osklwheub2IyJ7ccu8nmzrNdMn0FLOUFbjRhUelusgvrj2rOf62+5WxUvIlfX48/0DZz2fSJqOnd/VKacBWUk7v2lF8vtdhNjOLxS4b+rCfmp5xO4wxEU7yinF6J65DhHZAWDsHWSDV";
    const RSA_FP: &str = "SHA256:Vahv4lD/XhykaCRySQh/8+40JrlpjZ81J6VA2Dv3+5o";
    // `ssh-keygen -H` of:
    //   [127.0.0.2]:2222 ED
    //   esc1.example.com,10.0.0.5 EC
    //   [127.0.0.2]:2222 RSA
    const HASHED: &str = "\
|1|meQPm6TjHK2blwudg/nuBV23TB0=|m46Q4ii9lNtQhBtUXEHsBoFMygE= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJLMtBMXUTgl8YUsQEc+tLarR8FLdyDFz6kLJsuVKpP+ 
|1|BUNu1ely3SuqwRqNlF8AY3fS1Tw=|EqYwsKgBDE7PMDwBU2V19oO3vII= ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPBjjlTYACVfFVAvMdKrlWnol1dVn73fHMH0pGiX/JkKC4b+OC+8HSj5LRL9d3OmJMGP2w3CVorU1vIYRDHKUm0= 
|1|DEg95pn1Ce00ojBHgzm2+MBIrbI=|WrtF8IfZV080COeWZz7vyAI2wf0= ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPBjjlTYACVfFVAvMdKrlWnol1dVn73fHMH0pGiX/JkKC4b+OC+8HSj5LRL9d3OmJMGP2w3CVorU1vIYRDHKUm0= 
|1|VrDLV+IxPPpVR8+Kc+bV2iwBIAo=|F18VMk6mkxlugDDiylTQgMvTi+g= ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC+P7hdBfg2GA8UhtjY47XG+Qaz/0gTwlNRs0VJ8SxYJAhRsBD9lRTjI7BRHB7SUyzP/0yCDq4JcHBrWXFlGKr7bFnhEtInbZys3ovOZ9fp2i29PVMy6RN/tMbpaU91Ds/U7AnHmIsuCsSbyuXJYAgogKDEvL9vnBvlhryJw20KOcHEm/tm0li49+PKnKH07xHGofQIb4N+2Osklwheub2IyJ7ccu8nmzrNdMn0FLOUFbjRhUelusgvrj2rOf62+5WxUvIlfX48/0DZz2fSJqOnd/VKacBWUk7v2lF8vtdhNjOLxS4b+rCfmp5xO4wxEU7yinF6J65DhHZAWDsHWSDV 
";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(fingerprint(&key(ED)), ED_FP);
        assert_eq!(fingerprint(&key(EC)), EC_FP);
        assert_eq!(fingerprint(&key(RSA)), RSA_FP);
    }

    #[test]
    fn plain_entries_with_non_default_port() {
        let kh = KnownHosts::parse(&format!("# comment\n\n[127.0.0.2]:2222 {ED} node-a\n"));
        assert_eq!(kh.len(), 1);
        kh.verify("127.0.0.2", 2222, &key(ED)).unwrap();
        // Same host, other port: unknown (OpenSSH keys on [host]:port).
        let err = kh.verify("127.0.0.2", 22, &key(ED)).unwrap_err();
        assert!(matches!(err, HostKeyError::Unknown { .. }), "{err}");
        let err = kh.verify("127.0.0.2", 2223, &key(ED)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.2 port 2223"), "{msg}");
        assert!(msg.contains("no entry for [127.0.0.2]:2223"), "{msg}");
        assert!(msg.contains(ED_FP), "{msg}");
        assert_eq!(err.node(), &NodeAddr::new("127.0.0.2", 2223));
        assert_eq!(err.reason(), "HostKeyUnknown");
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        let kh = KnownHosts::parse(HASHED);
        assert_eq!(kh.len(), 4);
        assert!(kh.invalid_lines().is_empty());
        kh.verify("127.0.0.2", 2222, &key(ED)).unwrap();
        kh.verify("127.0.0.2", 2222, &key(RSA)).unwrap();
        kh.verify("esc1.example.com", 22, &key(EC)).unwrap();
        kh.verify("ESC1.example.com", 22, &key(EC)).unwrap();
        kh.verify("10.0.0.5", 22, &key(EC)).unwrap();
        assert!(kh.verify("10.0.0.6", 22, &key(EC)).is_err());
    }

    #[test]
    fn mismatch_names_host_port_and_both_fingerprints() {
        let kh = KnownHosts::parse(HASHED);
        let err = kh.verify("esc1.example.com", 22, &key(ED)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, HostKeyError::Mismatch { .. }), "{msg}");
        assert!(msg.contains("esc1.example.com port 22"), "{msg}");
        assert!(msg.contains(ED_FP), "{msg}");
        assert!(msg.contains(EC_FP), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn algorithms_follow_known_hosts() {
        let kh = KnownHosts::parse(HASHED);
        assert_eq!(
            kh.algorithms_for("127.0.0.2", 2222),
            vec![
                Algorithm::Ed25519,
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256)
                },
            ]
        );
        assert!(kh.algorithms_for("127.0.0.3", 2222).is_empty());
    }

    #[test]
    fn wildcards_and_negation() {
        let kh = KnownHosts::parse(&format!("*.example.com,!bad.example.com {ED}\n"));
        kh.verify("esc.example.com", 22, &key(ED)).unwrap();
        assert!(kh.verify("bad.example.com", 22, &key(ED)).is_err());
        assert!(kh.verify("example.org", 22, &key(ED)).is_err());
        let kh = KnownHosts::parse(&format!("[127.0.0.?]:2222 {ED}\n"));
        kh.verify("127.0.0.9", 2222, &key(ED)).unwrap();
        assert!(kh.verify("127.0.0.10", 2222, &key(ED)).is_err());
    }

    #[test]
    fn revoked_keys_are_refused_even_if_also_listed() {
        let kh = KnownHosts::parse(&format!("[h]:2222 {ED}\n@revoked * {ED}\n"));
        let err = kh.verify("h", 2222, &key(ED)).unwrap_err();
        assert!(matches!(err, HostKeyError::Revoked { .. }), "{err}");
    }

    #[test]
    fn bad_lines_are_skipped_and_reported() {
        let kh = KnownHosts::parse(&format!(
            "host ssh-ed25519 notbase64!!\n@cert-authority * {ED}\n@weird h {ED}\nh2 ssh-rsa {}\nonlyhost\n[h]:2222 {ED}\n",
            &ED[12..]
        ));
        assert_eq!(kh.invalid_lines(), &[1, 3, 4, 5]);
        assert_eq!(kh.len(), 1);
        // The @cert-authority line is skipped, not trusted.
        assert!(kh.verify("x", 22, &key(ED)).is_err());
    }

    #[test]
    fn generated_line_round_trips() {
        let line = known_hosts_line("127.0.0.5", 2200, &key(RSA));
        assert!(line.starts_with("[127.0.0.5]:2200 ssh-rsa "));
        KnownHosts::parse(&line)
            .verify("127.0.0.5", 2200, &key(RSA))
            .unwrap();
        assert!(known_hosts_line("h", 22, &key(ED)).starts_with("h ssh-ed25519 "));
    }

    #[test]
    fn wildcard_matcher() {
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"a*b*c", b"aXXbYYc"));
        assert!(!wildcard_match(b"a*b*c", b"aXXbYY"));
        assert!(wildcard_match(b"??", b"ab"));
        assert!(!wildcard_match(b"?", b""));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,400}") {
            let kh = KnownHosts::parse(&s);
            let _ = kh.verify("h", 22, &key(ED));
        }

        #[test]
        fn hashed_entry_matches_exactly_its_host(host in "[a-z0-9.-]{1,30}", port in 1u16.., salt in proptest::collection::vec(any::<u8>(), 20)) {
            let name = host_port_pattern(&host, port);
            let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt).unwrap().chain_update(name.as_bytes());
            let hash = mac.finalize().into_bytes();
            let line = format!("|1|{}|{} {ED}\n", STANDARD.encode(&salt), STANDARD.encode(hash));
            let kh = KnownHosts::parse(&line);
            prop_assert!(kh.verify(&host, port, &key(ED)).is_ok());
            let other_port = if port == 65535 { 1 } else { port + 1 };
            prop_assert!(kh.verify(&host, other_port, &key(ED)).is_err());
        }
    }
}
