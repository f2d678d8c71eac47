//! Command-line interface: clap types, and the dispatch of each subcommand.
//!
//! Arguments are parsed once here; each subcommand resolves them into its own settings
//! before doing any work. Errors reach [`main`] as `anyhow::Error` and become exit code 1
//! (clap's usage errors keep clap's exit code 2).

mod debug;
mod debug_run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Daemonless, rootless, Dockerfile-compatible image builder"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect how kiln reads a Dockerfile
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Internal: the sandbox helper kiln re-executes itself as (spec on descriptor 3)
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit,
}

/// Entry point of the `kiln` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(cmd) => debug::run(cmd),
        Command::SandboxInit => return ExitCode::from(crate::sandbox::init::main() as u8),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
