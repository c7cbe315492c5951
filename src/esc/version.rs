//! ESC release numbers, compared numerically (`5.10.0.86` is newer than `5.9.1`).
//!
//! Owns: [`EscVersion`] and its [`VersionError`]. Imports only the leaf [`crate::esc::text`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use thiserror::Error;

use crate::esc::text::clip;

/// A string that is not an ESC version.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{input:?} is not an ESC version (expected dot-separated numbers such as 5.10.0.86)")]
pub struct VersionError {
    input: String,
}

impl VersionError {
    fn new(input: &str) -> Self {
        Self {
            input: clip(input, 80),
        }
    }

    /// A short, stable CamelCase reason: a Kubernetes condition reason and a metric label.
    pub fn reason(&self) -> &'static str {
        "InvalidEscVersion"
    }
}

/// An ESC version such as `5.10.0.86`: dot-separated numbers, compared component by component as
/// numbers, missing trailing components counting as zero (`5.9` == `5.9.0`).
///
/// Restore's downgrade check uses it: an artifact taken on a newer ESC must not be restored on an
/// older one (ESC does not support database schema downgrade).
#[derive(Clone, Debug)]
pub struct EscVersion {
    parts: Vec<u64>,
}

impl EscVersion {
    /// The numeric components as written (`[5, 10, 0, 86]`).
    pub fn components(&self) -> &[u64] {
        &self.parts
    }

    /// The first `n` components, for comparisons at a coarser grain (e.g. the schema version
    /// `5.10` of a `5.10.0.86` release).
    pub fn truncated(&self, n: usize) -> EscVersion {
        EscVersion {
            parts: self.parts.iter().copied().take(n.max(1)).collect(),
        }
    }

    fn significant(&self) -> &[u64] {
        let end = self
            .parts
            .iter()
            .rposition(|p| *p != 0)
            .map_or(0, |i| i + 1);
        &self.parts[..end]
    }
}

impl FromStr for EscVersion {
    type Err = VersionError;

    /// Parses `5.10.0.86`; a leading `v` is accepted. Anything else than dot-separated decimal
    /// numbers is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let body = trimmed
            .strip_prefix('v')
            .or_else(|| trimmed.strip_prefix('V'))
            .unwrap_or(trimmed);
        if body.is_empty() {
            return Err(VersionError::new(s));
        }
        let parts = body
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 18 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(VersionError::new(s))
                } else {
                    p.parse::<u64>().map_err(|_| VersionError::new(s))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EscVersion { parts })
    }
}

impl fmt::Display for EscVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Ord for EscVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| {
                let a = self.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for EscVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for EscVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for EscVersion {}

impl Hash for EscVersion {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with Eq: trailing zeros do not count.
        self.significant().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> EscVersion {
        s.parse().unwrap()
    }

    #[test]
    fn compares_numerically_not_lexically() {
        assert!(v("5.10.0.86") > v("5.9.1"));
        assert!(v("5.9.1.20") < v("5.10"));
        assert!(v("4.4") > v("3.1.0.145"));
        assert!(v("5.10.0.86") > v("5.10.0.9"));
    }

    #[test]
    fn trailing_zeros_are_equal_and_hash_alike() {
        use std::collections::HashSet;
        assert_eq!(v("5.9"), v("5.9.0.0"));
        let set: HashSet<_> = [v("5.9"), v("5.9.0")].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn displays_as_parsed_and_truncates() {
        assert_eq!(v("v5.10.0.86").to_string(), "5.10.0.86");
        assert_eq!(v("5.10.0.86").truncated(2).to_string(), "5.10");
        assert_eq!(v("5.10.0.86").components(), &[5, 10, 0, 86]);
    }

    #[test]
    fn rejects_garbage_with_the_input_in_the_error() {
        for bad in [
            "",
            "5..1",
            "5.a",
            "5.10-rc1",
            ".5",
            "5.",
            "99999999999999999999",
        ] {
            let err = bad.parse::<EscVersion>().unwrap_err();
            assert!(err.to_string().contains("not an ESC version"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn order_matches_padded_tuple_order(a in proptest::collection::vec(0u64..1000, 1..6),
                                            b in proptest::collection::vec(0u64..1000, 1..6)) {
            let va: EscVersion = a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(".").parse().unwrap();
            let vb: EscVersion = b.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(".").parse().unwrap();
            let mut pa = a.clone();
            let mut pb = b.clone();
            let n = pa.len().max(pb.len());
            pa.resize(n, 0);
            pb.resize(n, 0);
            prop_assert_eq!(va.cmp(&vb), pa.cmp(&pb));
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = s.parse::<EscVersion>();
        }
    }
}
