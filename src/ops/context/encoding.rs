//! The canonical, type-tagged, length-prefixed byte encoding that selection digests hash
//! (the layout is documented in the [parent module](super)).
//!
//! Invariant: every variable-length field is preceded by its length and every record by a
//! tag, so two different sequences of fields can never encode to the same bytes.

use kiln_cache::{Digest, Hasher};

/// Feeds fields straight into a sha256 hasher.
pub struct Encoder {
    hasher: Hasher,
}

impl Encoder {
    /// Starts an encoding with its domain string, so digests of different kinds of data
    /// never collide.
    pub fn new(domain: &str) -> Encoder {
        let mut encoder = Encoder { hasher: Hasher::new() };
        encoder.bytes(domain.as_bytes());
        encoder
    }

    pub fn tag(&mut self, tag: u8) {
        self.hasher.update(&[tag]);
    }

    pub fn u32(&mut self, value: u32) {
        self.hasher.update(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.hasher.update(&value.to_le_bytes());
    }

    /// A length (u64, little-endian) then the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.hasher.update(bytes);
    }

    /// Exactly 32 bytes, no length.
    pub fn digest(&mut self, digest: &Digest) {
        self.hasher.update(digest.as_bytes());
    }

    pub fn finish(self) -> Digest {
        self.hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(f: impl FnOnce(&mut Encoder)) -> Digest {
        let mut encoder = Encoder::new("test");
        f(&mut encoder);
        encoder.finish()
    }

    #[test]
    fn length_prefixes_keep_field_boundaries() {
        let ab_c = encode(|e| {
            e.bytes(b"ab");
            e.bytes(b"c");
        });
        let a_bc = encode(|e| {
            e.bytes(b"a");
            e.bytes(b"bc");
        });
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn the_domain_separates_encodings() {
        let mut one = Encoder::new("one");
        one.u32(1);
        let mut two = Encoder::new("two");
        two.u32(1);
        assert_ne!(one.finish(), two.finish());
    }

    #[test]
    fn bytes_are_exactly_as_documented() {
        let mut expected = Vec::new();
        expected.extend_from_slice(&4u64.to_le_bytes());
        expected.extend_from_slice(b"test");
        expected.push(b'F');
        expected.extend_from_slice(&0o644u32.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&2u64.to_le_bytes());
        expected.extend_from_slice(b"hi");
        let encoded = encode(|e| {
            e.tag(b'F');
            e.u32(0o644);
            e.u64(7);
            e.bytes(b"hi");
        });
        assert_eq!(encoded, Digest::of(&expected));
    }
}
