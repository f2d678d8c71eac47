//! Container ↔ host id translation for layers made or unpacked in a user namespace.
//!
//! An [`IdMap`] holds the uid and gid ranges of a user namespace exactly as the kernel shows
//! them in `/proc/PID/uid_map` and `/proc/PID/gid_map`: `CONTAINER_ID HOST_ID LENGTH` per line.
//! Writing a layer translates the owners seen from the host side back to container ids;
//! applying one translates container ids to host ids. The default map is the identity (no
//! user namespace), which maps every id to itself.
//!
//! Invariant: ranges are kept as given; lookups scan them in order and take the first range
//! that contains the id, as the kernel does (ranges must not overlap there anyway).

use super::error::LayerError;

/// One `CONTAINER_ID HOST_ID LENGTH` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub len: u32,
}

/// uid and gid ranges of a user namespace; [`IdMap::identity`] when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap {
    /// `None` means identity.
    ranges: Option<(Vec<IdRange>, Vec<IdRange>)>,
}

impl IdMap {
    /// Every id maps to itself.
    pub fn identity() -> Self {
        Self { ranges: None }
    }

    /// A map from explicit uid and gid ranges.
    pub fn new(uids: Vec<IdRange>, gids: Vec<IdRange>) -> Self {
        Self { ranges: Some((uids, gids)) }
    }

    /// Parses the text of a `uid_map` and a `gid_map` file.
    pub fn parse(uid_map: &str, gid_map: &str) -> Result<Self, LayerError> {
        Ok(Self::new(parse_ranges(uid_map)?, parse_ranges(gid_map)?))
    }

    /// True for the identity map.
    pub fn is_identity(&self) -> bool {
        self.ranges.is_none()
    }

    /// The host uid of a container uid, if mapped.
    pub fn uid_to_host(&self, uid: u32) -> Option<u32> {
        self.translate(uid, true, true)
    }

    /// The host gid of a container gid, if mapped.
    pub fn gid_to_host(&self, gid: u32) -> Option<u32> {
        self.translate(gid, false, true)
    }

    /// The container uid of a host uid, if mapped.
    pub fn uid_to_container(&self, uid: u32) -> Option<u32> {
        self.translate(uid, true, false)
    }

    /// The container gid of a host gid, if mapped.
    pub fn gid_to_container(&self, gid: u32) -> Option<u32> {
        self.translate(gid, false, false)
    }

    fn translate(&self, id: u32, uid: bool, to_host: bool) -> Option<u32> {
        let Some((uids, gids)) = &self.ranges else { return Some(id) };
        let ranges = if uid { uids } else { gids };
        ranges.iter().find_map(|r| {
            let (from, to) = if to_host { (r.container, r.host) } else { (r.host, r.container) };
            let offset = id.checked_sub(from)?;
            if offset < r.len { to.checked_add(offset) } else { None }
        })
    }
}

fn parse_ranges(text: &str) -> Result<Vec<IdRange>, LayerError> {
    let mut ranges = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |reason| LayerError::IdMap { line: line.to_string(), reason };
        if fields.len() != 3 {
            return Err(bad("expected three fields: container id, host id, length"));
        }
        let num =
            |s: &str| s.parse::<u32>().map_err(|_| bad("field is not a 32-bit unsigned number"));
        let range =
            IdRange { container: num(fields[0])?, host: num(fields[1])?, len: num(fields[2])? };
        if range.len == 0 {
            return Err(bad("range length is zero"));
        }
        if range.container.checked_add(range.len - 1).is_none()
            || range.host.checked_add(range.len - 1).is_none()
        {
            return Err(bad("range runs past the largest id"));
        }
        ranges.push(range);
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps_every_id_to_itself() {
        let map = IdMap::identity();
        assert_eq!(map.uid_to_host(0), Some(0));
        assert_eq!(map.gid_to_container(4_000_000_000), Some(4_000_000_000));
        assert!(map.is_identity());
    }

    #[test]
    fn rootless_map_translates_both_ways() {
        let map = IdMap::parse("0 1000 1\n1 100000 65536\n", "0 1000 1\n1 100000 65536\n").unwrap();
        assert_eq!(map.uid_to_host(0), Some(1000));
        assert_eq!(map.uid_to_host(1), Some(100000));
        assert_eq!(map.uid_to_host(65536), Some(165535));
        assert_eq!(map.uid_to_host(65537), None);
        assert_eq!(map.uid_to_container(1000), Some(0));
        assert_eq!(map.gid_to_container(100005), Some(6));
        assert_eq!(map.gid_to_container(999), None);
    }

    #[test]
    fn malformed_lines_are_refused_with_the_line() {
        let err = IdMap::parse("0 1000\n", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid id map line \"0 1000\": expected three fields: container id, host id, length"
        );
        let err = IdMap::parse("0 x 1", "").unwrap_err();
        assert!(err.to_string().ends_with("field is not a 32-bit unsigned number"), "{err}");
        let err = IdMap::parse("4294967295 0 2", "").unwrap_err();
        assert!(err.to_string().ends_with("range runs past the largest id"), "{err}");
        let err = IdMap::parse("0 0 0", "").unwrap_err();
        assert!(err.to_string().ends_with("range length is zero"), "{err}");
    }
}
