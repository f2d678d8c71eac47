//! `kiln debug run`: run one command in a sandbox over given layer directories.
//!
//! A hidden tool for trying the sandbox by hand and for end-to-end tests. The command's
//! output is streamed to ours, its exit code becomes ours (128+N for a signal), and with
//! `--report FILE` the result (status, rootfs mode, stubs, warnings) is written as JSON.
//! SIGINT/SIGTERM kill the sandbox.

use crate::sandbox::{
    ExitStatus, Mount, NetworkMode, ProcessSpec, RootfsMode, RootfsModeRequest, RootfsSpec,
    Sandbox, SandboxSpec, Stream,
};
use anyhow::{Context, bail};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DebugRunArgs {
    /// Lower layer directory (repeatable; topmost first)
    #[arg(long = "lower")]
    lowers: Vec<PathBuf>,
    /// Writable upper directory
    #[arg(long)]
    upper: PathBuf,
    /// Empty work directory on the same filesystem as --upper
    #[arg(long)]
    work: PathBuf,
    /// UID:GID[:GID,...] to run as (numbers)
    #[arg(long, default_value = "0:0")]
    user: String,
    /// none|host
    #[arg(long, default_value = "host")]
    network: String,
    /// KEY=VALUE (repeatable; the environment is exactly these)
    #[arg(long = "env")]
    env: Vec<String>,
    /// Working directory inside the sandbox
    #[arg(long, default_value = "/")]
    cwd: String,
    #[arg(long, default_value = "kiln")]
    hostname: String,
    /// Use the copy fallback instead of overlayfs
    #[arg(long)]
    copy: bool,
    /// SOURCE:TARGET[:ro] bind mount (repeatable)
    #[arg(long = "bind")]
    binds: Vec<String>,
    /// TARGET for a tmpfs (repeatable)
    #[arg(long = "tmpfs")]
    tmpfs: Vec<String>,
    /// Write the result as JSON to this file
    #[arg(long)]
    report: Option<PathBuf>,
    /// Start the sandbox with the caller's own ids instead of from kiln's user namespace
    /// (exercises the sandbox's unprivileged path: `newuidmap` per run)
    #[arg(long)]
    pub no_userns: bool,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn parse_user(text: &str) -> anyhow::Result<(u32, u32, Vec<u32>)> {
    let mut parts = text.splitn(3, ':');
    let uid = parts.next().unwrap_or("").parse().context("--user: invalid uid")?;
    let gid = match parts.next() {
        Some(gid) => gid.parse().context("--user: invalid gid")?,
        None => uid,
    };
    let groups = match parts.next() {
        Some(list) if !list.is_empty() => list
            .split(',')
            .map(|g| g.parse().context("--user: invalid supplementary gid"))
            .collect::<anyhow::Result<_>>()?,
        _ => Vec::new(),
    };
    Ok((uid, gid, groups))
}

fn parse_bind(text: &str) -> anyhow::Result<Mount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, readonly) = match parts.as_slice() {
        [source, target] => (source, target, false),
        [source, target, "ro"] => (source, target, true),
        _ => bail!("--bind {text:?}: expected SOURCE:TARGET[:ro]"),
    };
    Ok(Mount::Bind { source: PathBuf::from(source), target: (*target).to_owned(), readonly })
}

pub fn run(args: DebugRunArgs) -> anyhow::Result<ExitCode> {
    let (uid, gid, additional_gids) = parse_user(&args.user)?;
    let network = match args.network.as_str() {
        "host" | "default" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => bail!("--network {other:?}: expected none or host"),
    };
    let mut mounts =
        args.binds.iter().map(|b| parse_bind(b)).collect::<anyhow::Result<Vec<_>>>()?;
    mounts.extend(args.tmpfs.iter().map(|target| Mount::Tmpfs {
        target: target.clone(),
        size: None,
        mode: None,
    }));
    let spec = SandboxSpec {
        rootfs: RootfsSpec {
            lowers: args.lowers,
            upper: args.upper,
            work: args.work,
            mode: if args.copy { RootfsModeRequest::Copy } else { RootfsModeRequest::Auto },
        },
        process: ProcessSpec {
            argv: args.command,
            env: args.env,
            cwd: args.cwd,
            uid,
            gid,
            additional_gids,
            no_new_privs: false,
        },
        hostname: args.hostname,
        network,
        mounts,
    };
    let sandbox = Sandbox::new(spec);
    watch_signals(sandbox.kill_handle());
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = sandbox.run(&mut |stream, line| {
        let _ = match stream {
            Stream::Stdout => stdout.lock().write_all(line),
            Stream::Stderr => stderr.lock().write_all(line),
        };
    })?;
    for warning in &result.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = args.report {
        let report = serde_json::json!({
            "status": match result.status {
                ExitStatus::Code(code) => serde_json::json!({"code": code}),
                ExitStatus::Signal(signal) => serde_json::json!({"signal": signal}),
            },
            "rootfs_mode": match &result.rootfs_mode {
                RootfsMode::Overlay => serde_json::json!("overlay"),
                RootfsMode::Copy { root } => serde_json::json!({"copy": root}),
            },
            "stubs": result.stubs.iter().map(|s| serde_json::json!({
                "path": s.path,
                "kind": format!("{:?}", s.kind),
                "removed": s.removed,
            })).collect::<Vec<_>>(),
            "warnings": result.warnings,
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(match result.status {
        ExitStatus::Code(code) => ExitCode::from(code.clamp(0, 255) as u8),
        ExitStatus::Signal(signal) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
    })
}

/// Kill the sandbox on SIGINT/SIGTERM.
fn watch_signals(killer: crate::sandbox::KillHandle) {
    super::signals::watch(&[libc::SIGINT, libc::SIGTERM], move |_| killer.kill());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_accepts_uid_gid_and_groups() {
        assert_eq!(parse_user("1000").unwrap(), (1000, 1000, vec![]));
        assert_eq!(parse_user("1:2:3,4").unwrap(), (1, 2, vec![3, 4]));
        assert!(parse_user("x:1").is_err());
    }

    #[test]
    fn bind_accepts_ro_suffix() {
        assert_eq!(
            parse_bind("/a:/b:ro").unwrap(),
            Mount::Bind { source: "/a".into(), target: "/b".into(), readonly: true }
        );
        assert!(parse_bind("/a").is_err());
    }
}
