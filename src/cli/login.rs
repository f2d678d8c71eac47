//! `kiln login [SERVER] [-u USER] [-p PASSWORD | --password-stdin]` and
//! `kiln logout [SERVER]`: credentials checked against the registry, then saved in (or
//! removed from) Docker's `config.json` or its credential helper — see
//! [`docker_config`](crate::registry::docker_config) — so Docker, buildx and kiln share
//! them. Docker Hub when no server is named.
//!
//! As `docker login`: `--password-stdin` needs `--username` and takes stdin without its
//! last line break; `--password` works but warns; without them a terminal is asked (the
//! password without echo), and without a terminal the login fails. Nothing is saved when
//! the registry refuses the credentials. The password is never printed: `LoginArgs` has no
//! derived `Debug`, and no message quotes it.

use super::push::registry_client;
use crate::registry::Credential;
use crate::registry::docker_config::{DockerConfig, LoginServer, SavedIn, SavedSecret};
use anyhow::{Context as _, bail};
use clap::Args;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

#[derive(Args)]
pub struct LoginArgs {
    /// Registry (host[:port]); Docker Hub when omitted
    #[arg(value_name = "SERVER")]
    server: Option<String>,
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (insecure: it shows in the process list; use --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
}

impl std::fmt::Debug for LoginArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginArgs")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password_stdin", &self.password_stdin)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry (host[:port]); Docker Hub when omitted
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

pub fn login(args: LoginArgs, insecure: &[String]) -> anyhow::Result<ExitCode> {
    let server = LoginServer::parse(args.server.as_deref());
    let (username, password) = credentials(args)?;
    let config = docker_config()?;
    let client = registry_client(insecure)?;
    let credential = Credential::basic(&username, &password, "kiln login");
    let outcome = client.login(&server.registry, &credential)?;
    let secret = match &outcome.identity_token {
        Some(token) => SavedSecret::IdentityToken(token.expose()),
        None => SavedSecret::Password(&password),
    };
    let saved = config
        .save(&server, &username, secret)
        .with_context(|| format!("cannot save the credentials for {}", server.key))?;
    if let SavedIn::File(path) = saved {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
            path.display()
        );
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let server = LoginServer::parse(args.server.as_deref());
    let config = docker_config()?;
    let host = server.key.trim_start_matches("https://").trim_end_matches('/');
    if config.erase(&server)? {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(ExitCode::SUCCESS)
}

fn docker_config() -> anyhow::Result<DockerConfig> {
    DockerConfig::from_env().context("cannot find Docker's config.json: set DOCKER_CONFIG or HOME")
}

/// The user name and password the flags, stdin or the terminal give.
fn credentials(args: LoginArgs) -> anyhow::Result<(String, String)> {
    let mut password = args.password;
    if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if args.password_stdin {
            bail!("--password and --password-stdin are mutually exclusive");
        }
    }
    if args.password_stdin {
        if args.username.is_none() {
            bail!("must provide --username with --password-stdin");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from stdin")?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        password = Some(text.strip_suffix('\r').unwrap_or(text).to_string());
    }
    let terminal = console::Term::stderr();
    let interactive = std::io::stdin().is_terminal() && terminal.is_term();
    let username = match args.username.filter(|u| !u.is_empty()) {
        Some(username) => username,
        None if interactive => {
            eprint!("Username: ");
            terminal.read_line().context("cannot read the user name")?.trim().to_string()
        }
        None => bail!("cannot perform an interactive login from a non TTY device"),
    };
    let password = match password {
        Some(password) => password,
        None if interactive => {
            eprint!("Password: ");
            terminal.read_secure_line().context("cannot read the password")?
        }
        None => bail!("cannot perform an interactive login from a non TTY device"),
    };
    if username.is_empty() {
        bail!("a user name is required");
    }
    if password.is_empty() {
        bail!("a password is required");
    }
    Ok((username, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_password() {
        let args = LoginArgs {
            server: Some("r:1".into()),
            username: Some("u".into()),
            password: Some("hunter2".into()),
            password_stdin: false,
        };
        let shown = format!("{args:?}");
        assert!(shown.contains("r:1") && !shown.contains("hunter2"), "{shown}");
    }
}
