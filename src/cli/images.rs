//! `kiln images`: the tagged images of the local store, as `docker images` shows them.
//!
//! Columns: REPOSITORY and TAG (Docker's short form: `app`, `ghcr.io/o/b`), IMAGE ID (the
//! config digest, 12 hex digits unless `--no-trunc`), CREATED (how long ago, Docker's
//! wording), SIZE (what the image takes in the store: compressed layers, config and
//! manifests). `--format json` prints one JSON object per line, `-q` only the ids.
//! Also the shared helpers of the store commands (`images`, `rmi`, `save`).

use crate::export::names::familiar_name;
use crate::image::Timestamp;
use crate::image::local::{self, StoredImage};
use crate::registry::reference::Reference;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_cache::Root;
use kiln_frontend::platform::Platform;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate image ids
    #[arg(long)]
    no_trunc: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

pub fn run(args: ImagesArgs, root_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let root = open_store(root_dir)?;
    let images = local::list(&root, &Platform::host())?;
    let now = Timestamp::now();
    let rows: Vec<Row> = images.iter().map(|image| Row::new(image, args.no_trunc, now)).collect();
    let text = if args.quiet {
        rows.iter().map(|row| format!("{}\n", row.id)).collect()
    } else {
        match args.format {
            ListFormat::Table => render_table(&rows),
            ListFormat::Json => rows.iter().map(|row| format!("{}\n", row.json())).collect(),
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Opens the state root for a store command.
pub(super) fn open_store(root_dir: Option<&Path>) -> anyhow::Result<Root> {
    let path = super::cache::state_root_path(root_dir)?;
    Root::open(&path).with_context(|| format!("cannot open store {}", path.display()))
}

/// A name as `-t` takes it, fully qualified (`alpine` → `docker.io/library/alpine:latest`).
pub(super) fn full_reference(name: &str) -> anyhow::Result<String> {
    Reference::parse(name)
        .map(|reference| reference.to_string())
        .map_err(|e| anyhow::anyhow!("invalid reference {name:?}: {e}"))
}

/// One line of the listing.
struct Row {
    repository: String,
    tag: String,
    id: String,
    name: String,
    digest: String,
    created_at: String,
    created_since: String,
    size: String,
}

impl Row {
    fn new(image: &StoredImage, no_trunc: bool, now: Timestamp) -> Row {
        let (repository, tag) = split_familiar(&image.reference);
        let id = if no_trunc {
            image.config_digest.to_string()
        } else {
            image.config_digest.hex().chars().take(12).collect()
        };
        Row {
            repository,
            tag,
            id,
            name: image.reference.clone(),
            digest: image.digest.to_string(),
            created_at: image.created.map(|t| t.rfc3339_seconds()).unwrap_or_default(),
            created_since: image.created.map_or_else(
                || "N/A".to_string(),
                |t| format!("{} ago", human_duration(now.unix_secs() - t.unix_secs())),
            ),
            size: indicatif::DecimalBytes(image.size).to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "Repository": self.repository,
            "Tag": self.tag,
            "ID": self.id,
            "Name": self.name,
            "Digest": self.digest,
            "CreatedAt": self.created_at,
            "CreatedSince": self.created_since,
            "Size": self.size,
        })
    }
}

/// Docker's short repository and the tag (`<none>` for a digest-only reference).
fn split_familiar(reference: &str) -> (String, String) {
    let Ok(parsed) = Reference::parse(reference) else {
        return (reference.to_string(), "<none>".to_string());
    };
    let familiar = familiar_name(&parsed.name());
    let repository = familiar.strip_suffix(":latest").unwrap_or(&familiar).to_string();
    (repository, parsed.tag().unwrap_or("<none>").to_string())
}

fn render_table(rows: &[Row]) -> String {
    let headers = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| [&r.repository, &r.tag, &r.id, &r.created_since, &r.size].map(String::as_str))
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: [&str; 5]| {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(headers);
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

/// How long `seconds` is, in Docker's words (go-units `HumanDuration`).
fn human_duration(seconds: i64) -> String {
    let hours_rounded = (seconds + 1800) / 3600;
    match seconds {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".to_string(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours_rounded == 1 => "About an hour".to_string(),
        _ if hours_rounded < 48 => format!("{hours_rounded} hours"),
        _ if hours_rounded < 24 * 7 * 2 => format!("{} days", hours_rounded / 24),
        _ if hours_rounded < 24 * 30 * 2 => format!("{} weeks", hours_rounded / 24 / 7),
        _ if hours_rounded < 24 * 365 * 2 => format!("{} months", hours_rounded / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86_400, "2 weeks"),
            (60 * 86_400, "2 months"),
            (3 * 365 * 86_400, "3 years"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn names_are_shown_short() {
        let split = |r: &str| split_familiar(r);
        assert_eq!(split("docker.io/library/app:1"), ("app".into(), "1".into()));
        assert_eq!(split("docker.io/user/app:latest"), ("user/app".into(), "latest".into()));
        assert_eq!(split("ghcr.io/o/b:2"), ("ghcr.io/o/b".into(), "2".into()));
        assert_eq!(split("127.0.0.1:5000/x:y"), ("127.0.0.1:5000/x".into(), "y".into()));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(split(&format!("docker.io/library/app@{digest}")).1, "<none>");
    }

    #[test]
    fn table_columns_line_up() {
        let row = |repository: &str, tag: &str| Row {
            repository: repository.into(),
            tag: tag.into(),
            id: "0123456789ab".into(),
            name: String::new(),
            digest: String::new(),
            created_at: String::new(),
            created_since: "2 hours ago".into(),
            size: "1.20 MB".into(),
        };
        let table = render_table(&[row("app", "1"), row("ghcr.io/o/longer-name", "latest")]);
        assert_eq!(
            table,
            "REPOSITORY              TAG      IMAGE ID       CREATED       SIZE\n\
             app                     1        0123456789ab   2 hours ago   1.20 MB\n\
             ghcr.io/o/longer-name   latest   0123456789ab   2 hours ago   1.20 MB\n"
        );
    }
}
