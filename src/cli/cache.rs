//! `kiln cache du|prune|verify`: look after the local store (see the `kiln-cache` crate
//! docs for its layout and rules).
//!
//! Sizes given to `--keep-storage` use binary units whatever their spelling, as
//! `docker buildx prune --keep-storage` does: `1k` = `1KB` = `1KiB` = 1024 bytes, and so on
//! up to `P`; a decimal fraction is allowed (`1.5g`) and the result is rounded down to whole
//! bytes. Sizes printed are binary with IEC unit names (`1.5 GiB`).

use anyhow::Context;
use clap::Subcommand;
use kiln_cache::{PruneOptions, Root, Usage, VerifyOptions, VerifyReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Show how much space the store takes, by kind, and how much prune would free
    Du,
    /// Remove cache data: by default only garbage (unreferenced blobs and snapshots,
    /// stale temp files); waits for running builds to finish
    Prune {
        /// Also evict least recently used cache records until the store fits in SIZE
        /// (e.g. 10GB, 512MiB, 1.5g; units are binary)
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        keep_storage: Option<u64>,
        /// Remove every cache record, snapshot and `RUN --mount=type=cache` directory not in
        /// use, keeping only what tagged images need. Rootless, what is left is all owned by
        /// you, so `rm -rf` can delete the state root then (before, files that builds chowned
        /// belong to your subordinate ids)
        #[arg(long)]
        all: bool,
    },
    /// Re-hash every blob; remove damaged blobs and the cache records that need them.
    /// Exits with 1 when anything was damaged or missing
    Verify {
        /// Only report; remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs a `kiln cache` subcommand on the store at `root` (or the default root).
pub fn run(cmd: CacheCommand, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = state_root_path(root)?;
    let root =
        Root::open(&path).with_context(|| format!("cannot open store {}", path.display()))?;
    let mut on_wait = || eprintln!("waiting for running builds to release the store...");
    match cmd {
        CacheCommand::Du => {
            print!("{}", render_usage(&root.du()?));
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Prune { keep_storage, all } => {
            let report = root.prune_notify(PruneOptions { keep_storage, all }, &mut on_wait)?;
            println!(
                "removed {}, {}, {}, {}",
                plural(report.records_removed, "cache record"),
                plural(report.blobs_removed, "blob"),
                plural(report.snapshots_removed, "snapshot"),
                plural(report.tmp_removed, "stale temp entry"),
            );
            println!(
                "freed {}; the store now takes {}",
                format_size(report.bytes_freed),
                format_size(report.remaining)
            );
            if all {
                let mounts = crate::ops::cache_mount::remove_unused(&root)
                    .context("removing cache mounts")?;
                println!("removed {}", plural(mounts, "cache mount"));
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Verify { dry_run } => {
            let report = root.verify_with(VerifyOptions { fix: !dry_run }, &mut on_wait)?;
            print!("{}", render_verify(&report));
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// The state root: `--root`/`KILN_ROOT` when given, else the default for the user who
/// started kiln. Inside kiln's user namespace the engine is uid 0, yet the default stays the
/// invoking user's (`~/.local/share/kiln`), never root's `/var/lib/kiln`.
pub fn state_root_path(root: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match root {
        Some(path) => path.to_path_buf(),
        None => kiln_cache::default_path_for(
            crate::userns::invoking_uid(),
            std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )?,
    })
}

fn render_usage(usage: &Usage) -> String {
    let mut out = String::new();
    let rows = [
        ("blobs", usage.blobs),
        ("records", usage.records),
        ("snapshots", usage.snapshots),
        ("tmp", usage.tmp),
    ];
    out.push_str(&format!("{:<12} {:>8}  {}\n", "KIND", "COUNT", "SIZE"));
    for (name, category) in rows {
        out.push_str(&format!(
            "{name:<12} {:>8}  {}\n",
            category.count,
            format_size(category.bytes)
        ));
    }
    out.push_str(&format!("{:<12} {:>8}  {}\n", "total", "", format_size(usage.total())));
    out.push_str(&format!(
        "garbage: {} (freed by `kiln cache prune`)\n",
        format_size(usage.garbage)
    ));
    out.push_str(&format!(
        "reclaimable: {} (freed by `kiln cache prune --all`)\n",
        format_size(usage.reclaimable)
    ));
    out
}

fn render_verify(report: &VerifyReport) -> String {
    let mut out = format!(
        "checked {} ({})\n",
        plural(report.blobs_checked, "blob"),
        format_size(report.bytes_checked)
    );
    let verb = if report.fixed { "removed" } else { "would remove" };
    for blob in &report.damaged_blobs {
        out.push_str(&format!("damaged blob {}: {} ({verb})\n", blob.digest, blob.problem));
    }
    for record in &report.bad_records {
        let name = match &record.key {
            Some(key) => key.to_string(),
            None => record.path.display().to_string(),
        };
        out.push_str(&format!("bad cache record {name}: {} ({verb})\n", record.problem));
    }
    for (image, digest) in &report.broken_images {
        out.push_str(&format!("image {image} needs blob {digest}, which is missing or damaged\n"));
    }
    for path in &report.stray_files {
        out.push_str(&format!("stray file {} (not a blob; left in place)\n", path.display()));
    }
    if report.is_clean() {
        out.push_str("ok\n");
    } else {
        out.push_str(&format!(
            "found {}, {}, {}\n",
            plural(report.damaged_blobs.len() as u64, "damaged blob"),
            plural(report.bad_records.len() as u64, "bad cache record"),
            plural(report.broken_images.len() as u64, "broken image reference"),
        ));
    }
    out
}

fn plural(count: u64, noun: &str) -> String {
    match (count, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{count} {stem}ies"),
        _ => format!("{count} {noun}s"),
    }
}

/// `bytes` with a binary unit: `512 B`, `1.5 KiB`, `10.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Why a size could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Not a number followed by an optional unit.
    #[error(
        "invalid size {text:?}: expected a number and an optional unit (B, K, M, G, T, P, e.g. 10GB, 512MiB, 1.5g)"
    )]
    Syntax {
        /// The text as given.
        text: String,
    },
    /// The unit is not one we know.
    #[error(
        "invalid size {text:?}: unknown unit {unit:?} (use B, K, M, G, T or P, optionally with B or iB)"
    )]
    Unit {
        /// The text as given.
        text: String,
        /// The unit part.
        unit: String,
    },
    /// More bytes than fit in 64 bits.
    #[error("invalid size {text:?}: too large")]
    TooLarge {
        /// The text as given.
        text: String,
    },
}

/// Parses a size such as `10GB`, `512MiB`, `1.5g`, `4096` (see the module docs).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let syntax = || SizeError::Syntax { text: text.to_owned() };
    let trimmed = text.trim();
    let number_end =
        trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(syntax());
    }
    let power = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        "p" | "pb" | "pib" => 5,
        _ => return Err(SizeError::Unit { text: text.to_owned(), unit: unit.to_owned() }),
    };
    let too_large = || SizeError::TooLarge { text: text.to_owned() };
    let multiplier: u128 = 1024u128.pow(power);
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    // 20 fraction digits are exact to the byte for every unit (1024^5 / 10^20 < 1), and
    // keep the product below 2^128.
    let fraction = &fraction[..fraction.len().min(20)];
    let fraction_bytes = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| syntax())?;
        digits * multiplier / 10u128.pow(fraction.len() as u32)
    };
    let total = whole
        .checked_mul(multiplier)
        .and_then(|w| w.checked_add(fraction_bytes))
        .ok_or_else(too_large)?;
    u64::try_from(total).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("4096", 4096),
            ("10b", 10),
            ("1k", 1024),
            ("1KB", 1024),
            ("1KiB", 1024),
            ("512MiB", 512 << 20),
            ("512 mb", 512 << 20),
            ("10GB", 10 << 30),
            ("1.5g", 3 << 29),
            ("1.5G", 1_610_612_736),
            ("0.1k", 102),
            ("2T", 2 << 40),
            ("1p", 1 << 50),
            ("  3m  ", 3 << 20),
            ("15.999999999999999999999999999999999g", 17_179_869_183),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn garbage_sizes_are_errors() {
        for text in ["", "g", "abc", "1.2.3g", "1.g", ".5g", "-1g", "1e5", "1 000", "+1", "1,5g"] {
            let err = parse_size(text).unwrap_err();
            assert!(
                matches!(err, SizeError::Syntax { .. } | SizeError::Unit { .. }),
                "{text}: {err:?}"
            );
        }
        assert_eq!(
            parse_size("10xb").unwrap_err().to_string(),
            "invalid size \"10xb\": unknown unit \"xb\" (use B, K, M, G, T or P, optionally with B or iB)"
        );
        assert_eq!(
            parse_size("1.g").unwrap_err().to_string(),
            "invalid size \"1.g\": expected a number and an optional unit (B, K, M, G, T, P, e.g. 10GB, 512MiB, 1.5g)"
        );
        assert_eq!(
            parse_size("16384p").unwrap_err(),
            SizeError::TooLarge { text: "16384p".into() }
        );
        assert_eq!(
            parse_size("18446744073709551616").unwrap_err(),
            SizeError::TooLarge { text: "18446744073709551616".into() }
        );
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("99999999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn sizes_format_with_iec_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "blob"), "1 blob");
        assert_eq!(plural(0, "blob"), "0 blobs");
        assert_eq!(plural(2, "stale temp entry"), "2 stale temp entries");
    }
}
