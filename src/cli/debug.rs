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
    /// Print the build graph of a Dockerfile as JSON (base images are not looked up)
    Plan(super::plan::PlanArgs),
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
        DebugCommand::Plan(args) => super::plan::run(args),
    }
}
