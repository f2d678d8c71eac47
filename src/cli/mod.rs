//! Command-line interface: clap types, and the dispatch of each subcommand.
//!
//! Arguments are parsed once here; each subcommand resolves them into its own settings
//! before doing any work. Errors reach [`main`] as `anyhow::Error` and become exit code 1
//! (clap's usage errors keep clap's exit code 2).

mod cache;
mod debug;
mod debug_run;
mod diagnostic;
mod plan;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Daemonless, rootless, Dockerfile-compatible image builder"
)]
pub struct Cli {
    /// State root: image store and build cache [default: /var/lib/kiln as root, else
    /// $XDG_DATA_HOME/kiln or ~/.local/share/kiln]
    #[arg(long, global = true, env = "KILN_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect how kiln reads a Dockerfile
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Manage the build cache and store: du, prune, verify
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Internal: the sandbox helper kiln re-executes itself as (spec on descriptor 3)
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit,
}

/// Entry point of the `kiln` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(cmd) => debug::run(cmd),
        Command::Cache(cmd) => cache::run(cmd, cli.root.as_deref()),
        Command::SandboxInit => return ExitCode::from(crate::sandbox::init::main() as u8),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            match err.downcast_ref::<diagnostic::DockerfileError>() {
                // Already rendered with its title and source lines.
                Some(located) => eprintln!("{located}"),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
