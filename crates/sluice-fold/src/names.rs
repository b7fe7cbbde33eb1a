//! Signal names as routing meets them: each distinct raw name is sanitized once and its
//! `SignalName` shared by every later record (a new string per record showed in profiles).

use sluice_core::SignalName;

/// Distinct names kept; past this (a payload field with unbounded values) a name is
/// sanitized per record, as without the cache, and memory stays bounded.
const MAX_NAMES: usize = 4096;

#[derive(Debug, Clone, Default)]
pub(crate) struct SignalNames(foldhash::HashMap<Box<str>, SignalName>);

impl SignalNames {
    pub(crate) fn get(&mut self, raw: &str) -> SignalName {
        if let Some(known) = self.0.get(raw) {
            return known.clone();
        }
        let name = SignalName::sanitize(raw);
        if self.0.len() < MAX_NAMES {
            self.0.insert(raw.into(), name.clone());
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_sanitized_once_and_shared() {
        let mut names = SignalNames::default();
        let first = names.get("a/b");
        let again = names.get("a/b");
        assert_eq!(first, SignalName::sanitize("a/b"));
        assert!(std::ptr::eq(first.as_str(), again.as_str()));
    }

    #[test]
    fn past_the_limit_names_are_still_right_but_not_kept() {
        let mut names = SignalNames::default();
        for i in 0..MAX_NAMES + 10 {
            let raw = format!("s{i}");
            assert_eq!(names.get(&raw), SignalName::sanitize(&raw));
        }
        assert_eq!(names.0.len(), MAX_NAMES);
    }
}
