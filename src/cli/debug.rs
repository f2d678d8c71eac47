//! `kiln debug ...`: print what the frontend makes of a Dockerfile.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {}

pub fn run(cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
