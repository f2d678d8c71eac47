//! RUN `--mount`s turned into sandbox mounts: tmpfs, bind (from the context, a stage or an
//! image; read-only unless `rw`, whose writes are discarded), cache (leased for the RUN),
//! secret (from `--secret`, as a private file outside the state root or an environment
//! variable; never in a layer, key or record) and ssh (an agent forward with the asked owner
//! and mode). Everything a mount needs while the command runs is held by [`MountGuards`].

use super::{Engine, SecretSource, StepOutput};
use crate::ops;
use crate::sandbox::Mount;
use crate::solver::fs_steps::{self, Source};
use kiln_frontend::graph::{RunOp, StepId};
use kiln_frontend::instructions::MountType;

impl Engine<'_> {
    /// RUN --mount → sandbox mounts, and what must live while the RUN does in `guards`.
    /// Secret files go to a private temporary directory outside the state root.
    pub(super) fn run_mounts(
        &self,
        op: &RunOp,
        inputs: &[(StepId, &StepOutput)],
        env: &mut Vec<String>,
        guards: &mut MountGuards,
    ) -> Result<Vec<Mount>, String> {
        let mut mounts = Vec::new();
        // As BuildKit's exec does, point SSH_AUTH_SOCK at the first ssh mount.
        if let Some(first) = op.mounts.iter().find(|m| m.kind == MountType::Ssh)
            && !env.iter().any(|kv| kv.starts_with("SSH_AUTH_SOCK="))
        {
            env.push(format!("SSH_AUTH_SOCK={}", first.target));
        }
        for m in &op.mounts {
            match m.kind {
                MountType::Tmpfs => mounts.push(Mount::Tmpfs {
                    target: m.target.clone(),
                    size: m.size_limit,
                    mode: None,
                }),
                MountType::Bind => {
                    let source = m.source.expect("bind mounts have a source");
                    let from = match self.output_of(inputs, source) {
                        StepOutput::Context(c) => Source::Context(c),
                        StepOutput::Rootfs(r) => Source::Rootfs(r),
                    };
                    let (guard, host) = fs_steps::materialize(self.root, &from, &m.source_path)?;
                    guards.views.push(guard);
                    mounts.push(if m.readonly {
                        Mount::Bind { source: host, target: m.target.clone(), readonly: true }
                    } else {
                        Mount::BindOverlay { source: host, target: m.target.clone() }
                    });
                }
                MountType::Cache => {
                    // `from=` a stage or image: the cache starts as a copy of its files.
                    let from = m.source.and_then(|id| self.output_of(inputs, id).rootfs());
                    let fill = |dir: &std::path::Path| {
                        let from = from.expect("only filled with a source");
                        let (_guard, files) = fs_steps::materialize(
                            self.root,
                            &Source::Rootfs(from),
                            &m.source_path,
                        )?;
                        std::fs::rename(&files, dir)
                            .map_err(|e| format!("seeding the cache from {}: {e}", m.source_path))
                    };
                    let seed = from.filter(|r| !r.layers.is_empty()).map(|r| {
                        ops::cache_mount::CacheSeed { key: r.key.to_string(), fill: &fill }
                    });
                    let lease = ops::cache_mount::acquire(self.root, m, seed.as_ref())?;
                    mounts.push(Mount::Bind {
                        source: lease.dir.clone(),
                        target: m.target.clone(),
                        readonly: m.readonly,
                    });
                    guards.leases.push(lease);
                }
                MountType::Secret => {
                    let id = m.id.clone().unwrap_or_default();
                    let Some(source) = self.options.secrets.get(&id) else {
                        if m.required {
                            return Err(format!("secret {id} not found"));
                        }
                        continue;
                    };
                    let value = match source {
                        SecretSource::File(path) => std::fs::read(path).map_err(|e| {
                            format!("reading secret {id} from {}: {e}", path.display())
                        })?,
                        SecretSource::Env(var) => std::env::var(var)
                            .map_err(|_| {
                                format!("secret {id}: environment variable {var} is not set")
                            })?
                            .into_bytes(),
                    };
                    if let Some(var) = &m.env {
                        env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
                    }
                    if !m.target.is_empty() {
                        let dir = match &mut guards.secrets_dir {
                            Some(dir) => dir.path().to_path_buf(),
                            None => {
                                let dir = tempfile::Builder::new()
                                    .prefix("kiln-secrets-")
                                    .tempdir()
                                    .map_err(|e| format!("creating a secrets directory: {e}"))?;
                                let path = dir.path().to_path_buf();
                                guards.secrets_dir = Some(dir);
                                path
                            }
                        };
                        let file = dir.join(format!("{}", mounts.len()));
                        write_private(
                            &file,
                            &value,
                            m.mode.unwrap_or(0o400),
                            m.uid.unwrap_or(0),
                            m.gid.unwrap_or(0),
                        )?;
                        mounts.push(Mount::Bind {
                            source: file,
                            target: m.target.clone(),
                            readonly: true,
                        });
                    }
                }
                MountType::Ssh => {
                    let id = m.id.clone().unwrap_or_else(|| "default".into());
                    match self.options.ssh.get(&id) {
                        Some(agent) => {
                            let forward = ops::ssh_forward::forward(
                                agent,
                                m.uid.unwrap_or(0),
                                m.gid.unwrap_or(0),
                                m.mode.unwrap_or(0o600),
                            )
                            .map_err(|e| format!("forwarding SSH agent {id}: {e}"))?;
                            mounts.push(Mount::Bind {
                                source: forward.socket.clone(),
                                target: m.target.clone(),
                                readonly: true,
                            });
                            guards.forwards.push(forward);
                        }
                        None if m.required => {
                            return Err(format!(
                                "no SSH key {id:?} forwarded (use --ssh {id}=SOCKET)"
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(mounts)
    }
}

/// What a RUN's mounts need kept alive until the command ends: the secrets directory, cache
/// mount leases, materialized bind sources and SSH agent forwards.
#[derive(Default)]
pub(super) struct MountGuards {
    secrets_dir: Option<tempfile::TempDir>,
    leases: Vec<ops::cache_mount::CacheMountLease>,
    views: Vec<tempfile::TempDir>,
    forwards: Vec<ops::ssh_forward::AgentForward>,
}

fn write_private(
    path: &std::path::Path,
    value: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing a secret file: {e}"))?;
    file.write_all(value).map_err(|e| format!("writing a secret file: {e}"))?;
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("writing a secret file: {e}"))
}
