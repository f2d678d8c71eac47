//! Where word expansion looks variables up: the [`EnvGetter`] trait and its implementations for
//! the collections the frontend keeps environments in.
//!
//! Invariants:
//! - Keys compare exactly (case-sensitive), as BuildKit does on unix.
//! - A list of pairs behaves like a sequence of `ENV` assignments: the last pair for a key wins.
//! - [`EnvGetter::keys`] lists every key once, in a deterministic order (first appearance for
//!   lists, sorted for maps), so callers that print or hash it get stable results.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A read-only view of the variables a word is expanded against.
pub trait EnvGetter {
    /// The value of `key`, or `None` when it is unset. A set-but-empty variable is `Some("")`.
    fn get(&self, key: &str) -> Option<&str>;
    /// Every key that is set, each once.
    fn keys(&self) -> Vec<String>;
}

impl EnvGetter for [(String, String)] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter().rev().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.iter()
            .filter(|(name, _)| seen.insert(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl EnvGetter for Vec<(String, String)> {
    fn get(&self, key: &str) -> Option<&str> {
        EnvGetter::get(self.as_slice(), key)
    }

    fn keys(&self) -> Vec<String> {
        EnvGetter::keys(self.as_slice())
    }
}

impl EnvGetter for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }

    fn keys(&self) -> Vec<String> {
        BTreeMap::keys(self).cloned().collect()
    }
}

impl EnvGetter for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = HashMap::keys(self).cloned().collect();
        keys.sort();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn last_pair_for_a_key_wins() {
        let env = pairs(&[("foo", "bar"), ("car", "hat"), ("car", "bike")]);
        assert_eq!(EnvGetter::get(&env, "foo"), Some("bar"));
        assert_eq!(EnvGetter::get(&env, "car"), Some("bike"));
        assert_eq!(EnvGetter::keys(&env), ["foo", "car"]);
    }

    #[test]
    fn empty_value_is_set_and_missing_key_is_unset() {
        let env = pairs(&[("foo", "")]);
        assert_eq!(EnvGetter::get(&env, "foo"), Some(""));
        assert_eq!(EnvGetter::get(&env, "bar"), None);
        assert_eq!(EnvGetter::get(pairs(&[]).as_slice(), "foo"), None);
    }

    #[test]
    fn keys_are_case_sensitive() {
        let env = pairs(&[("PATH", "/bin")]);
        assert_eq!(EnvGetter::get(&env, "path"), None);
        let map: HashMap<String, String> = env.iter().cloned().collect();
        assert_eq!(EnvGetter::get(&map, "Path"), None);
        assert_eq!(EnvGetter::get(&map, "PATH"), Some("/bin"));
    }

    #[test]
    fn map_keys_are_sorted() {
        let map: HashMap<String, String> =
            pairs(&[("b", "1"), ("a", "2"), ("c", "3")]).into_iter().collect();
        assert_eq!(EnvGetter::keys(&map), ["a", "b", "c"]);
        let tree: BTreeMap<String, String> = map.into_iter().collect();
        assert_eq!(EnvGetter::keys(&tree), ["a", "b", "c"]);
        assert_eq!(EnvGetter::get(&tree, "a"), Some("2"));
    }
}
