//! `kiln rmi [-f] REF...`: removes tags from the local store, as `docker rmi` untags.
//!
//! A REF is a name, normalised like `-t` (`app` → `docker.io/library/app:latest`), or an
//! image id (the config digest, `sha256:` optional, at least 4 hex digits of its start) as
//! `kiln images` prints it; a name that is tagged wins over the same bare hex read as an id.
//! An id names every tag of that image; when there are several, `--force` is needed (as
//! Docker asks), and a prefix that fits two images is refused. Only tags go: blobs stay
//! until `kiln cache prune` finds nothing refers to them. Every REF is checked before
//! anything is removed; then each is tried, and unknown ones are reported and make the
//! command exit 1.

use super::images::{full_reference, open_store};
use crate::export::names::familiar_name;
use crate::image::local::{self, StoredImage};
use anyhow::bail;
use clap::Args;
use kiln_cache::Root;
use kiln_frontend::platform::Platform;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Untag every tag of an image given by id
    #[arg(short, long)]
    force: bool,
    /// Image names (NAME[:TAG]) or ids to untag
    #[arg(required = true, value_name = "REF")]
    references: Vec<String>,
}

/// What one REF may name.
struct Target {
    text: String,
    /// The full reference, when the text is a valid name.
    reference: Option<String>,
    /// The id prefix (lowercase hex), when the text looks like one.
    id: Option<String>,
}

impl Target {
    fn parse(text: &str) -> anyhow::Result<Target> {
        let digest = text.strip_prefix("sha256:");
        let hex = digest.unwrap_or(text);
        let id = (4..=64).contains(&hex.len())
            && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let id = id.then(|| hex.to_string());
        // `sha256:HEX` is an id (as a name it would be repository "sha256", tag HEX).
        let reference = match full_reference(text) {
            Ok(_) if digest.is_some() && id.is_some() => None,
            Ok(reference) => Some(reference),
            Err(_) if id.is_some() => None,
            Err(err) => return Err(err),
        };
        Ok(Target { text: text.to_string(), reference, id })
    }
}

pub fn run(args: RmiArgs, root_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let targets: Vec<Target> =
        args.references.iter().map(|r| Target::parse(r)).collect::<anyhow::Result<_>>()?;
    let root = open_store(root_dir)?;
    let mut code = ExitCode::SUCCESS;
    for target in targets {
        match untag(&root, &target, args.force) {
            Ok(untagged) => {
                for reference in untagged {
                    println!("Untagged: {}", familiar_name(&reference));
                }
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Removes what `target` names; returns the references untagged.
fn untag(root: &Root, target: &Target, force: bool) -> anyhow::Result<Vec<String>> {
    let store = root.images();
    if let Some(reference) = &target.reference
        && store.untag(reference)?
    {
        return Ok(vec![reference.clone()]);
    }
    let Some(prefix) = &target.id else {
        bail!("no such image: {}", target.reference.as_deref().unwrap_or(&target.text));
    };
    let images = local::list(root, &Platform::host())?;
    let tags = tags_of_id(&images, prefix, &target.text, force)?;
    for reference in &tags {
        store.untag(reference)?;
    }
    Ok(tags)
}

/// The tags of the one image whose id starts with `prefix`.
fn tags_of_id(
    images: &[StoredImage],
    prefix: &str,
    text: &str,
    force: bool,
) -> anyhow::Result<Vec<String>> {
    let matching: Vec<&StoredImage> =
        images.iter().filter(|i| i.config_digest.hex().starts_with(prefix)).collect();
    let ids: BTreeSet<&str> = matching.iter().map(|i| i.config_digest.hex()).collect();
    match ids.len() {
        0 => bail!("no such image: {text}"),
        1 => {}
        _ => bail!("image id prefix {text} is ambiguous: it starts {} images", ids.len()),
    }
    if matching.len() > 1 && !force {
        bail!(
            "unable to untag {text} (use --force): the image is tagged {}",
            matching.iter().map(|i| familiar_name(&i.reference)).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(matching.into_iter().map(|i| i.reference.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(reference: &str, id: char) -> StoredImage {
        StoredImage {
            reference: reference.into(),
            digest: format!("sha256:{}", "0".repeat(64)).parse().unwrap(),
            config_digest: format!("sha256:{}", id.to_string().repeat(64)).parse().unwrap(),
            created: None,
            size: 0,
        }
    }

    #[test]
    fn targets_are_names_ids_or_both() {
        let both = Target::parse("abcd").unwrap();
        assert_eq!(both.reference.as_deref(), Some("docker.io/library/abcd:latest"));
        assert_eq!(both.id.as_deref(), Some("abcd"));
        let full = format!("sha256:{}", "a".repeat(64));
        let id = Target::parse(&full).unwrap();
        assert_eq!((id.reference, id.id), (None, Some("a".repeat(64))));
        let name = Target::parse("app:1").unwrap();
        assert_eq!(name.id, None);
        assert!(Target::parse("Bad Name").is_err());
    }

    #[test]
    fn ids_name_all_tags_of_one_image() {
        let images = [image("docker.io/library/a:1", 'a'), image("docker.io/library/a:2", 'a')];
        let images = [images.as_slice(), &[image("docker.io/library/b:1", 'b')]].concat();
        assert_eq!(tags_of_id(&images, "bbbb", "bbbb", false).unwrap(), ["docker.io/library/b:1"]);
        let err = tags_of_id(&images, "aaaa", "aaaa", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to untag aaaa (use --force): the image is tagged a:1, a:2"
        );
        assert_eq!(tags_of_id(&images, "aaaa", "aaaa", true).unwrap().len(), 2);
        let err = tags_of_id(&images, "cccc", "cccc", true).unwrap_err();
        assert_eq!(err.to_string(), "no such image: cccc");
        let mixed = [image("docker.io/library/x:1", 'a'), image("docker.io/library/y:1", 'a')];
        let mut other = image("docker.io/library/z:1", 'a');
        other.config_digest = format!("sha256:aaaa{}", "c".repeat(60)).parse().unwrap();
        let mixed = [mixed.as_slice(), &[other]].concat();
        let err = tags_of_id(&mixed, "aaaa", "aaaa", true).unwrap_err();
        assert_eq!(err.to_string(), "image id prefix aaaa is ambiguous: it starts 2 images");
    }
}
