//! Canonical JSON: the one byte form kiln writes for every content-addressed JSON document
//! (image configs, manifests, indexes) and for the files of exported layouts.
//!
//! The form: object keys sorted by their UTF-8 bytes at every level, no whitespace, strings
//! escaped as RFC 8259 requires (`"`, `\` and control characters; everything else is written
//! as UTF-8), integers written exactly, other numbers in serde_json's shortest round-trip form.
//! The same value always gives the same bytes, so digests computed over them are stable.
//!
//! Why our own writer rather than a crate:
//! - `olpc-cjson` writes control characters inside strings literally, which is not valid JSON;
//!   image configs carry them (a RUN heredoc's `created_by` holds newlines), and Go's decoder
//!   (Docker, containerd, podman) would reject such a config.
//! - `canon-json` implements RFC 8785, whose numbers are IEEE-754 doubles: integers beyond
//!   2^53 (healthcheck durations are nanoseconds) would be rounded, changing the document.
//! - Sorting and serde_json's compact writer are all it takes, and the cache crate's
//!   `index.json` is written the same way, so both agree byte for byte.

use serde::Serialize;
use serde_json::{Map, Value};

/// The canonical bytes of `value`.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    serde_json::to_vec(&sorted(value))
}

/// `value` with every object's keys in byte order (serde_json keeps insertion order).
pub(crate) fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_without_whitespace() {
        let value = json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}, "A": true});
        let bytes = to_canonical_bytes(&value).unwrap();
        assert_eq!(bytes, br#"{"A":true,"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn strings_are_valid_json_and_integers_exact() {
        let value = json!({"s": "line\nnext\t\"q\" \\ \u{1} é <&>", "n": u64::MAX, "i": i64::MIN});
        let bytes = to_canonical_bytes(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"i":-9223372036854775808,"n":18446744073709551615,"s":"line\nnext\t\"q\" \\ \u0001 é <&>"}"#
        );
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn key_order_is_by_bytes() {
        // "é" (0xc3 0xa9) sorts after "z"; "Z" before "a".
        let value = json!({"é": 1, "z": 2, "a": 3, "Z": 4});
        assert_eq!(to_canonical_bytes(&value).unwrap(), r#"{"Z":4,"a":3,"z":2,"é":1}"#.as_bytes());
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let one: Value = serde_json::from_str(r#"{"x":1,"y":{"b":2,"a":1}}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"y":{"a":1,"b":2},"x":1}"#).unwrap();
        assert_eq!(to_canonical_bytes(&one).unwrap(), to_canonical_bytes(&two).unwrap());
    }
}
