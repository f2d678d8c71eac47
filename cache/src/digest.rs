//! Content digests: `sha256:<64 lowercase hex>`, the only algorithm the store uses.
//!
//! Invariant: a [`Digest`] value always holds exactly 32 bytes, so its text form is always
//! valid; parsing is strict (lowercase hex only, as the OCI image spec requires for sha256),
//! so one content has exactly one spelling and one file name under `blobs/sha256/`.

use crate::error::CacheError;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

const PREFIX: &str = "sha256:";

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of everything `reader` yields, read in bounded chunks.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        Ok((hasher.finish(), total))
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Digest, CacheError> {
        let invalid = |reason| CacheError::InvalidDigest { text: text.to_owned(), reason };
        let Some((algorithm, encoded)) = text.split_once(':') else {
            return Err(invalid("missing \"algorithm:\" prefix"));
        };
        if algorithm != "sha256" {
            return Err(invalid("only sha256 is supported"));
        }
        Digest::from_hex(encoded).ok_or_else(|| invalid("expected 64 lowercase hex characters"))
    }

    /// Parses the bare 64-character lowercase hex form (a blob file name, a snapshot id).
    pub fn from_hex(hex: &str) -> Option<Digest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Digest(out))
    }

    /// The 64-character lowercase hex encoding, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
        out
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Whether `text` is 64 lowercase hex characters (the shape of keys, ids and blob names).
pub(crate) fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|c| hex_value(c).is_some())
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = CacheError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Digest::parse(text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(digest: &Digest) -> Self {
        // A `Digest` is always a well-formed sha256 digest, which oci-spec accepts.
        oci_spec::image::Sha256Digest::from_str(&digest.hex())
            .map(Into::into)
            .unwrap_or_else(|_| unreachable!("64 lowercase hex is a valid sha256 digest"))
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = CacheError;
    fn try_from(digest: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(digest.as_ref())
    }
}

/// Incremental sha256 hashing that yields a [`Digest`].
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let out = self.0.finalize();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&out);
        Digest(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(Digest::of_reader(&b""[..]).unwrap(), (Digest::parse(EMPTY).unwrap(), 0));
    }

    #[test]
    fn parse_and_format_round_trip() {
        let digest = Digest::parse(EMPTY).unwrap();
        assert_eq!(digest.to_string(), EMPTY);
        assert_eq!(digest.hex(), &EMPTY[7..]);
        assert_eq!(Digest::from_hex(&digest.hex()), Some(digest));
        assert_eq!(format!("{digest:?}"), format!("Digest({EMPTY})"));
    }

    #[test]
    fn parse_is_strict() {
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        let cases: &[(&str, &str)] = &[
            ("", "missing \"algorithm:\" prefix"),
            (&EMPTY[7..], "missing \"algorithm:\" prefix"),
            ("sha512:abcd", "only sha256 is supported"),
            ("SHA256:e3b0", "only sha256 is supported"),
            ("sha256:", "expected 64 lowercase hex characters"),
            (&EMPTY[..70], "expected 64 lowercase hex characters"),
            (&upper, "expected 64 lowercase hex characters"),
        ];
        for (text, reason) in cases {
            let err = Digest::parse(text).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid digest {text:?}: {reason}"), "{text}");
        }
        let extra = format!("{EMPTY}0");
        assert!(Digest::parse(&extra).is_err());
        let with_space = format!(" {EMPTY}");
        assert!(Digest::parse(&with_space).is_err());
        let non_hex = format!("sha256:{}g", &EMPTY[7..70]);
        assert!(Digest::parse(&non_hex).is_err());
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (streamed, size) = Digest::of_reader(&data[..]).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(streamed, Digest::of(&data));
        let mut hasher = Hasher::new();
        for chunk in data.chunks(7) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.finish(), streamed);
    }

    #[test]
    fn serde_uses_the_text_form_and_validates() {
        let digest = Digest::of(b"x");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{digest}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn converts_to_and_from_oci_spec() {
        let digest = Digest::of(b"x");
        let oci: oci_spec::image::Digest = (&digest).into();
        assert_eq!(oci.to_string(), digest.to_string());
        assert_eq!(Digest::try_from(&oci).unwrap(), digest);
    }
}
