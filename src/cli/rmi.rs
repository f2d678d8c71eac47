//! `kiln rmi REF...`: removes tags from the local store, as `docker rmi` untags.
//!
//! Each REF is normalised like `-t` (`app` → `docker.io/library/app:latest`). Only the tag
//! goes; blobs stay until `kiln cache prune` finds nothing refers to them. Every REF is
//! tried; unknown ones are reported and make the command exit 1.

use super::images::{full_reference, open_store};
use crate::export::names::familiar_name;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image references to untag (NAME[:TAG])
    #[arg(required = true, value_name = "REF")]
    references: Vec<String>,
}

pub fn run(args: RmiArgs, root_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    // Every name is checked before anything is removed.
    let references: Vec<String> =
        args.references.iter().map(|r| full_reference(r)).collect::<anyhow::Result<_>>()?;
    let root = open_store(root_dir)?;
    let store = root.images();
    let mut code = ExitCode::SUCCESS;
    for reference in references {
        if store.untag(&reference)? {
            println!("Untagged: {}", familiar_name(&reference));
        } else {
            eprintln!("error: no such image: {reference}");
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}
