use std::fmt;
use std::sync::Arc;

/// Longest sanitized name kept whole; longer names are cut and suffixed with a hash.
const MAX_LEN: usize = 100;
const KEEP_WHEN_CUT: usize = 80;

/// A signal name made safe to use as one path segment.
///
/// Signal names come from untrusted record payloads, so they must never escape the
/// configured prefix. The rule is reversible for short names (distinct inputs stay distinct):
/// ASCII letters, digits and `-` are kept, and `.` and `_` are kept except in the first
/// position (Spark and Hive hide paths starting with either, and Sluice's own bookkeeping
/// lives under `_` names such as `_windows/` and `_dead_letter/`); every other byte (including `/`, `\`, `~`, control and non-ASCII bytes) becomes `~XX` (hex).
/// An empty name becomes `~`. A result longer than 100 bytes is cut to 80 and suffixed with
/// `~` and a 64-bit FNV-1a hash of the original, so it stays unique in practice and bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalName(Arc<str>);

impl SignalName {
    pub fn sanitize(raw: &str) -> Self {
        if raw.is_empty() {
            return Self(Arc::from("~"));
        }
        let mut out = String::with_capacity(raw.len());
        for (i, b) in raw.bytes().enumerate() {
            let keep =
                b.is_ascii_alphanumeric() || b == b'-' || ((b == b'.' || b == b'_') && i > 0);
            if keep {
                out.push(b as char);
            } else {
                out.push_str(&format!("~{b:02X}"));
            }
        }
        if out.len() > MAX_LEN {
            out.truncate(KEEP_WHEN_CUT);
            out.push_str(&format!("~{:016x}", fnv1a(raw.as_bytes())));
        }
        Self(out.into())
    }

    /// A name read back from the lake or from progress, already sanitized: kept as it is
    /// when `sanitize` could have made it, else sanitized (so it still cannot escape).
    pub fn from_sanitized(name: &str) -> Self {
        let could_be_output = !name.is_empty()
            && name.len() <= MAX_LEN
            && !name.starts_with(['.', '_'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
        if could_be_output {
            Self(Arc::from(name))
        } else {
            Self::sanitize(name)
        }
    }

    /// The name dead-letter files carry; no record's signal can sanitize to it.
    pub fn dead_letter() -> Self {
        Self(Arc::from("_dead_letter"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_unchanged() {
        assert_eq!(
            SignalName::sanitize("engine.temp-1_x").as_str(),
            "engine.temp-1_x"
        );
    }

    #[test]
    fn traversal_and_separators_are_escaped() {
        assert_eq!(
            SignalName::sanitize("../../etc").as_str(),
            "~2E.~2F..~2Fetc"
        );
        assert_eq!(SignalName::sanitize("a/b\\c").as_str(), "a~2Fb~5Cc");
        assert_eq!(SignalName::sanitize("\n").as_str(), "~0A");
        assert_eq!(SignalName::sanitize("").as_str(), "~");
        assert_eq!(SignalName::sanitize(".").as_str(), "~2E");
    }

    #[test]
    fn names_hidden_by_spark_or_taken_by_bookkeeping_are_escaped() {
        assert_eq!(SignalName::sanitize("_windows").as_str(), "~5Fwindows");
        assert_eq!(
            SignalName::sanitize("_dead_letter").as_str(),
            "~5Fdead_letter"
        );
        assert_ne!(
            SignalName::sanitize("_dead_letter"),
            SignalName::dead_letter()
        );
        assert_eq!(SignalName::sanitize("a_b").as_str(), "a_b");
    }

    #[test]
    fn sanitized_names_read_back_unchanged() {
        for raw in ["hum/x", "engine.temp", &"é".repeat(80), "_x", ""] {
            let once = SignalName::sanitize(raw);
            assert_eq!(SignalName::from_sanitized(once.as_str()), once, "{raw}");
        }
        // Whatever is read back still cannot escape a prefix.
        assert_eq!(SignalName::from_sanitized("../x").as_str(), "~2E.~2Fx");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = SignalName::sanitize(&"x".repeat(4096));
        let b = SignalName::sanitize(&format!("{}y", "x".repeat(4095)));
        assert!(a.as_str().len() <= MAX_LEN);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn never_escapes_a_prefix(raw in any::<String>()) {
            let s = SignalName::sanitize(&raw);
            let s = s.as_str();
            prop_assert!(!s.is_empty() && s.len() <= MAX_LEN);
            prop_assert!(!s.starts_with('.') && !s.starts_with('_'));
            prop_assert_eq!(SignalName::from_sanitized(s).as_str().to_string(), s);
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)));
        }

        #[test]
        fn short_names_stay_distinct(a in "[ -~]{0,20}", b in "[ -~]{0,20}") {
            prop_assume!(a != b);
            prop_assert_ne!(SignalName::sanitize(&a), SignalName::sanitize(&b));
        }
    }
}
