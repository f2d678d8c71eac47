//! Verification: re-hash every blob (in parallel) and check that records and tagged images
//! only refer to blobs that are present and intact.
//!
//! With `fix` (what [`Root::verify`] does), damaged blobs are removed, and so is every
//! record that refers to a damaged or missing blob, or that cannot be read: those records
//! would make a build reuse content that is not there. Tags are never removed; a tagged
//! image missing blobs is reported. Fixing holds the exclusive root lock; checking alone
//! holds a lease. Snapshots are not checked (they carry no digest of their own).

use crate::digest::Digest;
use crate::error::{CacheError, IoContext, Result};
use crate::index::CacheKey;
use crate::layout::Root;
use crate::reach::reachable;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

/// How to verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Remove damaged blobs and the records that need them.
    pub fix: bool,
}

/// A blob whose content does not match its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedBlob {
    /// The digest the blob is stored under.
    pub digest: Digest,
    /// What its content hashes to, or why it could not be read.
    pub problem: String,
}

/// A cache record that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// The record's file.
    pub path: PathBuf,
    /// Its key, when the file name is one.
    pub key: Option<CacheKey>,
    /// What is wrong.
    pub problem: String,
}

/// What `verify` found (and, with `fix`, removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: u64,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Blobs whose content does not match their digest.
    pub damaged_blobs: Vec<DamagedBlob>,
    /// Records referring to damaged or missing blobs, or unreadable.
    pub bad_records: Vec<BadRecord>,
    /// Tagged images (by reference, or manifest digest when untagged) missing a blob.
    pub broken_images: Vec<(String, Digest)>,
    /// Files under `blobs/sha256` whose names are not digests (left as they are).
    pub stray_files: Vec<PathBuf>,
    /// Whether the damaged blobs and bad records were removed.
    pub fixed: bool,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.damaged_blobs.is_empty()
            && self.bad_records.is_empty()
            && self.broken_images.is_empty()
    }
}

impl Root {
    /// Checks every blob, record and tag, removing damaged blobs and the records that need
    /// them. Waits for running builds (exclusive root lock).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(VerifyOptions { fix: true }, &mut || {})
    }

    /// [`Root::verify`] with options; `on_wait` is called once if it has to wait for a lock.
    pub fn verify_with(
        &self,
        options: VerifyOptions,
        on_wait: &mut dyn FnMut(),
    ) -> Result<VerifyReport> {
        let _exclusive;
        let _lease;
        if options.fix {
            _exclusive = self.lock_exclusive(on_wait)?;
        } else {
            _lease = self.lease_notify(on_wait)?;
        }
        let blobs = self.blobs();
        let (digests, stray_files) = blobs.list()?;
        let results: Vec<(Digest, Result<(Digest, u64)>)> = digests
            .par_iter()
            .map(|digest| {
                let path = blobs.path(digest);
                let hashed = fs::File::open(&path).and_then(Digest::of_reader).at("read", &path);
                (*digest, hashed)
            })
            .collect();
        let mut report =
            VerifyReport { stray_files, fixed: options.fix, ..VerifyReport::default() };
        let mut damaged = BTreeSet::new();
        for (digest, hashed) in results {
            match hashed {
                Ok((actual, size)) => {
                    report.blobs_checked += 1;
                    report.bytes_checked += size;
                    if actual != digest {
                        damaged.insert(digest);
                        report.damaged_blobs.push(DamagedBlob {
                            digest,
                            problem: format!("content hashes to {actual}"),
                        });
                    }
                }
                // Removed meanwhile (only possible without the exclusive lock): not damage.
                Err(CacheError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    report.blobs_checked += 1;
                    damaged.insert(digest);
                    report.damaged_blobs.push(DamagedBlob { digest, problem: err.to_string() });
                }
            }
        }
        if options.fix {
            for digest in &damaged {
                blobs.remove(digest)?;
            }
        }

        let index = self.records();
        for item in index.iter() {
            let bad = match item {
                Ok((key, record)) => {
                    let problem = record.layers.iter().find_map(|layer| {
                        if damaged.contains(&layer.blob) {
                            Some(format!("layer blob {} is damaged", layer.blob))
                        } else if !blobs.contains(&layer.blob) {
                            Some(format!("layer blob {} is missing", layer.blob))
                        } else {
                            None
                        }
                    });
                    problem.map(|problem| BadRecord {
                        path: index.path(&key),
                        key: Some(key),
                        problem,
                    })
                }
                Err(CacheError::Corrupt { path, reason, .. }) => {
                    let key = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".json"))
                        .and_then(|n| CacheKey::new(n).ok());
                    Some(BadRecord { path, key, problem: format!("unreadable: {reason}") })
                }
                Err(err) => return Err(err),
            };
            if let Some(bad) = bad {
                if options.fix {
                    match fs::remove_file(&bad.path) {
                        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                            return Err(err).at("remove", &bad.path);
                        }
                        _ => {}
                    }
                }
                report.bad_records.push(bad);
            }
        }

        let reach = reachable(self)?;
        report.broken_images = reach.missing;
        for (name, needed) in &reach.per_image {
            for digest in needed.intersection(&damaged) {
                report.broken_images.push((name.clone(), *digest));
            }
        }
        report.broken_images.sort();
        report.broken_images.dedup();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{image, key, open_root, record};
    use std::os::unix::fs::PermissionsExt;

    fn damage(root: &Root, digest: &Digest, bytes: &[u8]) {
        let path = root.blobs().path(digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn clean_store_verifies_clean() {
        let (_dir, root) = open_root();
        image(&root, "a:1", b"layer");
        record(&root, &key(1), &[b"x", b"y"], 1);
        let report = root.verify().unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.blobs_checked, 5);
        assert_eq!(report.bytes_checked, root.du().unwrap().blobs.bytes);
    }

    #[test]
    fn damaged_blob_is_reported_and_removed_with_its_records() {
        let (_dir, root) = open_root();
        let img = image(&root, "a:1", b"shared layer");
        let rec1 = record(&root, &key(1), &[b"shared layer", b"own"], 1);
        record(&root, &key(2), &[b"unrelated"], 1);
        damage(&root, &img.layer, b"shared layeR");

        let report = root.verify().unwrap();
        assert!(!report.is_clean());
        assert_eq!(
            report.damaged_blobs,
            vec![DamagedBlob {
                digest: img.layer,
                problem: format!("content hashes to {}", Digest::of(b"shared layeR"))
            }]
        );
        assert_eq!(
            report.bad_records,
            vec![BadRecord {
                path: root.records().path(&key(1)),
                key: Some(key(1)),
                problem: format!("layer blob {} is damaged", rec1.layers[0].blob),
            }]
        );
        assert_eq!(report.broken_images, vec![("a:1".to_owned(), img.layer)]);
        assert!(report.fixed);
        assert!(!root.blobs().contains(&img.layer));
        assert_eq!(root.records().get(&key(1)).unwrap(), None);
        assert!(root.records().get(&key(2)).unwrap().is_some());
        // The tag stays; a second run reports the image's missing layer only.
        let again = root.verify().unwrap();
        assert!(again.damaged_blobs.is_empty() && again.bad_records.is_empty());
        assert_eq!(again.broken_images, vec![("a:1".to_owned(), img.layer)]);
    }

    #[test]
    fn check_only_reports_and_keeps_everything() {
        let (_dir, root) = open_root();
        let rec = record(&root, &key(1), &[b"content"], 1);
        damage(&root, &rec.layers[0].blob, b"CONTENT");
        let report = root.verify_with(VerifyOptions { fix: false }, &mut || {}).unwrap();
        assert_eq!(report.damaged_blobs.len(), 1);
        assert_eq!(report.bad_records.len(), 1);
        assert!(!report.fixed);
        assert!(root.blobs().contains(&rec.layers[0].blob));
        assert!(root.records().get(&key(1)).unwrap().is_some());
    }

    #[test]
    fn records_pointing_at_missing_blobs_or_unreadable_are_removed() {
        let (_dir, root) = open_root();
        let rec = record(&root, &key(1), &[b"content"], 1);
        root.blobs().remove(&rec.layers[0].blob).unwrap();
        let corrupt = root.records().path(&key(2));
        fs::create_dir_all(corrupt.parent().unwrap()).unwrap();
        fs::write(&corrupt, b"[]").unwrap();
        fs::write(root.path().join("blobs/sha256/not-a-digest"), b"?").unwrap();

        let report = root.verify().unwrap();
        assert!(report.damaged_blobs.is_empty());
        let problems: Vec<(Option<CacheKey>, &str)> =
            report.bad_records.iter().map(|b| (b.key.clone(), b.problem.as_str())).collect();
        let missing = format!("layer blob {} is missing", rec.layers[0].blob);
        let mut expected = vec![(Some(key(1)), missing.as_str())];
        let unreadable = report.bad_records.iter().find(|b| b.key == Some(key(2))).unwrap();
        assert!(
            unreadable
                .problem
                .starts_with("unreadable: invalid length 0, expected struct CacheRecord"),
            "{}",
            unreadable.problem
        );
        expected.push((Some(key(2)), unreadable.problem.as_str()));
        expected.sort();
        let mut problems = problems;
        problems.sort();
        assert_eq!(problems, expected);
        assert_eq!(report.stray_files, vec![root.path().join("blobs/sha256/not-a-digest")]);
        assert_eq!(root.records().iter().count(), 0);
    }
}
