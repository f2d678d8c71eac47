//! `kiln debug ...`: print what the frontend makes of its inputs.

use clap::Subcommand;
use kiln_frontend::platform::Platform;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a platform string normalised (the host's when none is given)
    Platform {
        /// os[/arch[/variant]]
        platform: Option<String>,
    },
    /// Run one command in a sandbox over the given layers (for testing the sandbox)
    #[command(hide = true)]
    Run(Box<super::debug_run::DebugRunArgs>),
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCommand::Platform { platform } => {
            let platform = match platform {
                Some(text) => Platform::parse(&text)?,
                None => Platform::host(),
            };
            println!("{platform}");
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::Run(args) => super::debug_run::run(*args),
    }
}
