//! Content digests (`algorithm:hex`) and a hasher that checks bytes against one.
//!
//! Invariants of a [`Digest`]: the algorithm is one kiln can compute (`sha256`, `sha384`,
//! `sha512`) and the hex part is lower case with exactly the length that algorithm produces,
//! so two digests of the same bytes always compare and print equal.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected algorithm:hex")]
    Malformed(String),
    #[error("invalid digest {input:?}: unsupported digest algorithm {algorithm:?}")]
    UnsupportedAlgorithm { input: String, algorithm: String },
    #[error("invalid digest {input:?}: {algorithm} needs {expected} lower-case hex characters")]
    BadHex { input: String, algorithm: &'static str, expected: usize },
}

/// Hash algorithms a digest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0c442…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `bytes` hash to this digest (with this digest's algorithm).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let mut hasher = DigestHasher::new(self.algorithm);
        hasher.update(bytes);
        hasher.finish() == *self
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(input: &str) -> Result<Self, DigestError> {
        let (algorithm, hex) =
            input.split_once(':').ok_or_else(|| DigestError::Malformed(input.to_string()))?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha384" => Algorithm::Sha384,
            "sha512" => Algorithm::Sha512,
            other => {
                let valid_name = !other.is_empty()
                    && other.split(['+', '.', '_', '-']).all(|part| {
                        !part.is_empty()
                            && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    });
                if !valid_name || hex.is_empty() {
                    return Err(DigestError::Malformed(input.to_string()));
                }
                return Err(DigestError::UnsupportedAlgorithm {
                    input: input.to_string(),
                    algorithm: other.to_string(),
                });
            }
        };
        let valid_hex = hex.len() == algorithm.hex_len()
            && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_hex {
            return Err(DigestError::BadHex {
                input: input.to_string(),
                algorithm: algorithm.name(),
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest { algorithm, hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hashing with any supported algorithm.
pub struct DigestHasher {
    state: HasherState,
}

enum HasherState {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => HasherState::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
        };
        DigestHasher { state }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            HasherState::Sha256(h) => h.update(bytes),
            HasherState::Sha384(h) => h.update(bytes),
            HasherState::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self.state {
            HasherState::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            HasherState::Sha384(h) => (Algorithm::Sha384, h.finalize().to_vec()),
            HasherState::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_and_round_trips() {
        let digest = Digest::sha256_of(b"");
        assert_eq!(digest.to_string(), EMPTY_SHA256);
        assert_eq!(EMPTY_SHA256.parse::<Digest>().unwrap(), digest);
        assert!(digest.matches(b""));
        assert!(!digest.matches(b"x"));
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
    }

    #[test]
    fn sha512_digests_verify() {
        let mut hasher = DigestHasher::new(Algorithm::Sha512);
        hasher.update(b"abc");
        let digest = hasher.finish();
        assert!(digest.to_string().starts_with("sha512:ddaf35a193617aba"));
        assert!(digest.matches(b"abc"));
    }

    #[test]
    fn rejects_bad_digests() {
        let cases = [
            ("sha256", "invalid digest \"sha256\": expected algorithm:hex"),
            (
                "sha256:abc",
                "invalid digest \"sha256:abc\": sha256 needs 64 lower-case hex characters",
            ),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "invalid digest \"md5:d41d8cd98f00b204e9800998ecf8427e\": unsupported digest algorithm \"md5\"",
            ),
            ("Sha256:abc", "invalid digest \"Sha256:abc\": expected algorithm:hex"),
        ];
        for (input, message) in cases {
            assert_eq!(input.parse::<Digest>().unwrap_err().to_string(), message, "{input}");
        }
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
    }
}
