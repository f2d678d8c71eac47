//! Between config files and the frontend: the base image's config as lowering input, and
//! the final config of a built stage.
//!
//! [`derive_timed`] follows BuildKit's exporter: the result starts from the base config
//! (platform, author, history, layers), takes the stage's runtime config whole, appends one
//! history entry per instruction the stage recorded (comment `buildkit.dockerfile.v0`) and the
//! new layers' diff_ids. Like BuildKit, which re-types the base config, it keeps only the
//! fields the image spec names: a base's `container_config`, `docker_version` or inline cache
//! do not leak into the new image.
//!
//! Times, as BuildKit sets them (`exporter/containerimage/writer.go`): with
//! `SOURCE_DATE_EPOCH` every new history entry is stamped with it. Without it, an entry that
//! made a layer takes the time that layer was first made (kept in the cache record, so a
//! rebuild from the cache yields the same image); entries without a time take the time of the
//! first new layer when they come before it, else the time of the layer before them; the
//! config's `created` is the last history entry's time. [`derive`] stamps everything with one
//! given time (fixtures and tests).
//!
//! Invariant checked: the stage's history entries that made a layer are exactly as many as
//! the new diff_ids, so history and `rootfs.diff_ids` stay in step.

use super::ImageError;
use super::config::{ContainerConfig, HealthConfig, History, ImageConfigFile, RootFs};
use super::time::Timestamp;
use kiln_cache::Digest;
use kiln_frontend::graph::{Healthcheck, ImageConfig, StageImage};
use kiln_frontend::platform::Platform;

/// The `comment` BuildKit's Dockerfile frontend gives its history entries.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

impl ContainerConfig {
    /// The frontend's view of this runtime config (what lowering starts a stage from).
    pub fn to_frontend(&self) -> ImageConfig {
        let some = |text: &String| (!text.is_empty()).then(|| text.clone());
        let some_list = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
        ImageConfig {
            user: some(&self.user),
            exposed_ports: self.exposed_ports.clone(),
            env: self.env.clone(),
            entrypoint: some_list(&self.entrypoint),
            cmd: some_list(&self.cmd),
            volumes: self.volumes.clone(),
            working_dir: some(&self.working_dir),
            labels: self.labels.clone(),
            stop_signal: some(&self.stop_signal),
            args_escaped: self.args_escaped,
            healthcheck: self.healthcheck.as_ref().map(|health| Healthcheck {
                test: health.test.clone(),
                interval: health.interval,
                timeout: health.timeout,
                start_period: health.start_period,
                start_interval: health.start_interval,
                // Docker rejects negative retries; read them as "inherit" (0).
                retries: u32::try_from(health.retries.max(0)).unwrap_or(u32::MAX),
            }),
            on_build: self.on_build.clone(),
            shell: self.shell.clone(),
        }
    }

    /// The runtime config a stage ends with, as written into its image.
    pub fn from_frontend(config: &ImageConfig) -> ContainerConfig {
        ContainerConfig {
            user: config.user.clone().unwrap_or_default(),
            exposed_ports: config.exposed_ports.clone(),
            env: config.env.clone(),
            entrypoint: config.entrypoint.clone().unwrap_or_default(),
            cmd: config.cmd.clone().unwrap_or_default(),
            volumes: config.volumes.clone(),
            working_dir: config.working_dir.clone().unwrap_or_default(),
            labels: config.labels.clone(),
            stop_signal: config.stop_signal.clone().unwrap_or_default(),
            args_escaped: config.args_escaped,
            healthcheck: config.healthcheck.as_ref().map(|health| HealthConfig {
                test: health.test.clone(),
                interval: health.interval,
                timeout: health.timeout,
                start_period: health.start_period,
                start_interval: health.start_interval,
                retries: i64::from(health.retries),
                extra: Default::default(),
            }),
            on_build: config.on_build.clone(),
            shell: config.shell.clone(),
            extra: Default::default(),
        }
    }
}

impl ImageConfigFile {
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        let variant = (!self.variant.is_empty()).then_some(self.variant.as_str());
        Platform::new(&self.os, &self.architecture, variant)
    }

    /// The base of a stage that starts `FROM scratch`: the platform and nothing else.
    pub fn scratch(platform: &Platform) -> ImageConfigFile {
        ImageConfigFile {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// A layer a stage added: its diff_id and when it was first made (RFC 3339), if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayer {
    pub diff_id: Digest,
    pub created: Option<String>,
}

/// [`derive_timed`] with every new history entry (and the config) created at `created`.
pub fn derive(
    base: &ImageConfigFile,
    stage: &StageImage,
    new_diff_ids: &[Digest],
    created: Timestamp,
) -> Result<ImageConfigFile, ImageError> {
    let layers: Vec<NewLayer> =
        new_diff_ids.iter().map(|&diff_id| NewLayer { diff_id, created: None }).collect();
    derive_timed(base, stage, &layers, Some(created))
}

/// The config of the image a stage produces: `base` (the config of the stage's base image,
/// or [`ImageConfigFile::scratch`]) with the stage's runtime config, history and new layers;
/// `epoch` is `SOURCE_DATE_EPOCH` (see the module docs for how times are chosen).
pub fn derive_timed(
    base: &ImageConfigFile,
    stage: &StageImage,
    new_layers: &[NewLayer],
    epoch: Option<Timestamp>,
) -> Result<ImageConfigFile, ImageError> {
    if base.os.is_empty() {
        return Err(ImageError::MissingPlatformField { field: "os" });
    }
    if base.architecture.is_empty() {
        return Err(ImageError::MissingPlatformField { field: "architecture" });
    }
    let layer_entries = stage.history.iter().filter(|entry| !entry.empty_layer).count();
    if layer_entries != new_layers.len() {
        return Err(ImageError::LayerCountMismatch {
            history: layer_entries,
            layers: new_layers.len(),
        });
    }
    let epoch_text = epoch.map(|time| time.rfc3339());
    let mut history: Vec<History> = base
        .history
        .iter()
        .map(|entry| History { extra: Default::default(), ..entry.clone() })
        .collect();
    let mut layer_times = new_layers.iter().map(|layer| layer.created.clone());
    history.extend(stage.history.iter().map(|entry| {
        let layer_time = if entry.empty_layer { None } else { layer_times.next().flatten() };
        History {
            created: epoch_text.clone().or(layer_time),
            created_by: entry.created_by.clone(),
            author: String::new(),
            comment: HISTORY_COMMENT.to_owned(),
            empty_layer: entry.empty_layer,
            extra: Default::default(),
        }
    }));
    fill_history_times(&mut history);
    let created = history.iter().rev().find_map(|entry| entry.created.clone());
    let mut diff_ids = base.rootfs.diff_ids.clone();
    diff_ids.extend(new_layers.iter().map(|layer| layer.diff_id));
    Ok(ImageConfigFile {
        created,
        author: stage.author.clone().unwrap_or_else(|| base.author.clone()),
        architecture: base.architecture.clone(),
        os: base.os.clone(),
        os_version: base.os_version.clone(),
        os_features: base.os_features.clone(),
        variant: base.variant.clone(),
        config: ContainerConfig::from_frontend(&stage.config),
        rootfs: RootFs { diff_ids, ..Default::default() },
        history,
        extra: Default::default(),
    })
}

/// Gives history entries without a time the time of the first layer after a gap, or of the
/// entry before them (BuildKit's `normalizeLayersAndHistory`).
fn fill_history_times(history: &mut [History]) {
    let mut created = None;
    let mut gap = false;
    for entry in history.iter() {
        match &entry.created {
            Some(time) => {
                created = Some(time.clone());
                if gap {
                    break;
                }
            }
            None => gap = true,
        }
    }
    gap = false;
    for entry in history.iter_mut() {
        match &entry.created {
            Some(time) if gap => created = Some(time.clone()),
            Some(_) => {}
            None => {
                gap = true;
                entry.created = created.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_frontend::graph::HistoryEntry;
    use std::collections::{BTreeMap, BTreeSet};

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn full_frontend_config() -> ImageConfig {
        ImageConfig {
            user: Some("app".into()),
            exposed_ports: BTreeSet::from(["80/tcp".into()]),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            entrypoint: Some(vec!["/init".into()]),
            cmd: Some(vec!["run".into()]),
            volumes: BTreeSet::from(["/data".into()]),
            working_dir: Some("/srv".into()),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            stop_signal: Some("SIGINT".into()),
            args_escaped: true,
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval: 1,
                timeout: 2,
                start_period: 3,
                start_interval: 4,
                retries: 5,
            }),
            on_build: vec!["RUN x".into()],
            shell: vec!["/bin/bash".into(), "-c".into()],
        }
    }

    #[test]
    fn frontend_config_round_trips() {
        let config = full_frontend_config();
        assert_eq!(ContainerConfig::from_frontend(&config).to_frontend(), config);
        let empty = ImageConfig::default();
        assert_eq!(ContainerConfig::from_frontend(&empty), ContainerConfig::default());
        assert_eq!(ContainerConfig::default().to_frontend(), empty);
    }

    #[test]
    fn pulled_config_reads_into_the_frontend() {
        let file = ImageConfigFile::parse(
            br#"{"os":"linux","architecture":"arm","variant":"v7","config":{"Env":["PATH=/x"],
            "Cmd":null,"Entrypoint":[],"WorkingDir":"","OnBuild":["RUN a"],
            "Healthcheck":{"Test":["NONE"],"Retries":-1}}}"#,
        )
        .unwrap();
        let config = file.config.to_frontend();
        assert_eq!(config.env, ["PATH=/x"]);
        assert_eq!((config.cmd, config.entrypoint, config.working_dir), (None, None, None));
        assert_eq!(config.on_build, ["RUN a"]);
        let health = config.healthcheck.unwrap();
        assert_eq!((health.test, health.retries), (vec!["NONE".to_string()], 0));
        assert_eq!(file.platform(), Platform::new("linux", "arm", Some("v7")));
    }

    fn base() -> ImageConfigFile {
        ImageConfigFile::parse(
            format!(
                r#"{{"os":"linux","architecture":"amd64","os.version":"1","author":"base author",
                "created":"2020-01-01T00:00:00Z","docker_version":"1.0",
                "config":{{"Env":["PATH=/base"],"Hostname":"h"}},
                "rootfs":{{"type":"layers","diff_ids":["{}"],"x":1}},
                "history":[{{"created":"2020-01-01T00:00:00Z","created_by":"ADD base","y":2}}]}}"#,
                digest(0)
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn stage() -> StageImage {
        StageImage {
            config: full_frontend_config(),
            author: None,
            history: vec![
                HistoryEntry { created_by: "ENV A=1".into(), empty_layer: true },
                HistoryEntry {
                    created_by: "RUN /bin/sh -c make # buildkit".into(),
                    empty_layer: false,
                },
                HistoryEntry { created_by: "COPY . / # buildkit".into(), empty_layer: false },
            ],
        }
    }

    #[test]
    fn derive_appends_history_and_layers_and_replaces_config() {
        let created = Timestamp::from_unix(1_700_000_000).unwrap();
        let out = derive(&base(), &stage(), &[digest(1), digest(2)], created).unwrap();
        assert_eq!(out.created.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(out.author, "base author");
        assert_eq!(
            (out.os.as_str(), out.architecture.as_str(), out.os_version.as_str()),
            ("linux", "amd64", "1")
        );
        assert_eq!(out.config, ContainerConfig::from_frontend(&full_frontend_config()));
        assert_eq!(
            out.rootfs,
            RootFs { diff_ids: vec![digest(0), digest(1), digest(2)], ..Default::default() }
        );
        assert!(out.extra.is_empty(), "docker_version is not carried over");
        let history: Vec<(Option<&str>, &str, &str, bool)> = out
            .history
            .iter()
            .map(|h| {
                (h.created.as_deref(), h.created_by.as_str(), h.comment.as_str(), h.empty_layer)
            })
            .collect();
        let at = Some("2023-11-14T22:13:20Z");
        assert_eq!(
            history,
            [
                (Some("2020-01-01T00:00:00Z"), "ADD base", "", false),
                (at, "ENV A=1", HISTORY_COMMENT, true),
                (at, "RUN /bin/sh -c make # buildkit", HISTORY_COMMENT, false),
                (at, "COPY . / # buildkit", HISTORY_COMMENT, false),
            ]
        );
        assert!(out.history[0].extra.is_empty());

        let mut with_maintainer = stage();
        with_maintainer.author = Some("me".into());
        let out = derive(&base(), &with_maintainer, &[digest(1), digest(2)], created).unwrap();
        assert_eq!(out.author, "me");
    }

    #[test]
    fn derive_is_deterministic_for_a_fixed_time() {
        let created = Timestamp::from_unix(0).unwrap();
        let one = derive(&base(), &stage(), &[digest(1), digest(2)], created).unwrap();
        let two = derive(&base(), &stage(), &[digest(1), digest(2)], created).unwrap();
        assert_eq!(one.to_bytes().unwrap(), two.to_bytes().unwrap());
    }

    #[test]
    fn without_epoch_entries_take_their_layers_times() {
        let at = |n: u8| Some(format!("2024-01-0{n}T00:00:00Z"));
        let layers = [
            NewLayer { diff_id: digest(1), created: at(2) },
            NewLayer { diff_id: digest(2), created: at(3) },
        ];
        let mut stage = stage();
        stage.history.push(HistoryEntry { created_by: "CMD x".into(), empty_layer: true });
        let out = derive_timed(&base(), &stage, &layers, None).unwrap();
        let times: Vec<Option<String>> = out.history.iter().map(|h| h.created.clone()).collect();
        // ENV (before any new layer) takes the first new layer's time, CMD the last one's.
        assert_eq!(times, [Some("2020-01-01T00:00:00Z".into()), at(2), at(2), at(3), at(3)]);
        assert_eq!(out.created, at(3));
        // The same layers (a rebuild from the cache) give the same bytes.
        let again = derive_timed(&base(), &stage, &layers, None).unwrap();
        assert_eq!(out.to_bytes().unwrap(), again.to_bytes().unwrap());
        // Without new layers, the base's last time stands.
        let metadata_only = StageImage {
            history: vec![HistoryEntry { created_by: "ENV A=1".into(), empty_layer: true }],
            ..Default::default()
        };
        let out = derive_timed(&base(), &metadata_only, &[], None).unwrap();
        assert_eq!(out.created.as_deref(), Some("2020-01-01T00:00:00Z"));
        assert_eq!(out.history[1].created.as_deref(), Some("2020-01-01T00:00:00Z"));
        // With SOURCE_DATE_EPOCH, every new entry has the epoch, whatever the layers' times.
        let epoch = Timestamp::from_unix(0).unwrap();
        let out = derive_timed(&base(), &stage, &layers, Some(epoch)).unwrap();
        assert!(
            out.history[1..].iter().all(|h| h.created.as_deref() == Some("1970-01-01T00:00:00Z"))
        );
        assert_eq!(out.created.as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn derive_from_scratch() {
        let scratch = ImageConfigFile::scratch(&Platform::new("linux", "arm", Some("v7")));
        let stage = StageImage {
            history: vec![HistoryEntry {
                created_by: "COPY a / # buildkit".into(),
                empty_layer: false,
            }],
            ..Default::default()
        };
        let created = Timestamp::from_unix(86_400).unwrap();
        let out = derive(&scratch, &stage, &[digest(9)], created).unwrap();
        let text = String::from_utf8(out.to_bytes().unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                concat!(
                    r#"{{"architecture":"arm","config":{{}},"created":"1970-01-02T00:00:00Z","#,
                    r#""history":[{{"comment":"buildkit.dockerfile.v0","created":"1970-01-02T00:00:00Z","created_by":"COPY a / # buildkit"}}],"#,
                    r#""os":"linux","rootfs":{{"diff_ids":["{}"],"type":"layers"}},"variant":"v7"}}"#
                ),
                digest(9)
            )
        );
    }

    #[test]
    fn derive_checks_its_inputs() {
        let created = Timestamp::from_unix(0).unwrap();
        let err = derive(&base(), &stage(), &[digest(1)], created).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the stage's history records 2 layers but 1 new layers were given"
        );
        let mut no_os = base();
        no_os.os.clear();
        let err = derive(&no_os, &stage(), &[digest(1), digest(2)], created).unwrap_err();
        assert_eq!(err.to_string(), "invalid base image config: missing os");
        let mut no_arch = base();
        no_arch.architecture.clear();
        let err = derive(&no_arch, &stage(), &[digest(1), digest(2)], created).unwrap_err();
        assert_eq!(err.to_string(), "invalid base image config: missing architecture");
    }
}
