//! The image config file (`application/vnd.oci.image.config.v1+json`, which Docker's
//! `application/vnd.docker.container.image.v1+json` is the same document as): one typed view
//! for configs kiln pulls and configs it writes.
//!
//! Field names and omission rules are Docker's (`github.com/moby/docker-image-spec`, which
//! BuildKit writes): a field Docker tags `omitempty` is left out when empty (empty string,
//! empty list or map, `false`, zero duration, no value); `architecture`, `os`, `config` and
//! `rootfs` (with `type` and `diff_ids`) are always written. `null` reads as empty, as Go
//! reads it (Docker writes `"Volumes": null`, `"OnBuild": null`).
//!
//! Fields the spec does not name (`container_config`, `docker_version`, `Hostname`, a base
//! image's inline cache, …) are kept in `extra` maps at each level, so parsing and writing
//! a pulled config loses nothing. Deriving a new image from a base ([`super::derive`]) drops
//! them, as BuildKit does when it re-types the base config.

use super::ImageError;
use super::canonical::to_canonical_bytes;
use kiln_cache::Digest;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Fields a document carries that kiln has no type for, kept as they were.
pub type Extra = BTreeMap<String, Value>;

/// `rootfs.type` of every image config.
pub const ROOTFS_TYPE_LAYERS: &str = "layers";

/// An image config file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageConfigFile {
    /// RFC 3339 creation time, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "null_default")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub author: String,
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub os_version: String,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub variant: String,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rootfs`: the layer stack as uncompressed digests, bottom first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { kind: ROOTFS_TYPE_LAYERS.to_owned(), diff_ids: Vec::new(), extra: Extra::new() }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "null_default")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `config`: how containers of the image run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub user: String,
    /// `"80/tcp"`; written as an object whose values are `{}`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty", with = "key_set")]
    pub exposed_ports: BTreeSet<String>,
    /// `KEY=value` strings in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    /// Written as an object whose values are `{}`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty", with = "key_set")]
    pub volumes: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub working_dir: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "null_default")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub on_build: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub shell: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `config.Healthcheck`. Durations are nanoseconds; zero means "inherit".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]`, `["CMD", args…]`, `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "null_default")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "null_default")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "null_default")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "null_default")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "null_default")]
    pub retries: i64,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImageConfigFile {
    /// Parses a config blob.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfigFile, ImageError> {
        let config: ImageConfigFile =
            serde_json::from_slice(bytes).map_err(|source| ImageError::ParseConfig { source })?;
        Ok(config)
    }

    /// The canonical bytes of this config (see [`super::canonical`]); its digest is the
    /// image's config digest (Docker's image id).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        to_canonical_bytes(self)
            .map_err(|source| ImageError::Encode { what: "image config", source })
    }

    /// The bytes and their digest.
    pub fn to_blob(&self) -> Result<(Vec<u8>, Digest), ImageError> {
        let bytes = self.to_bytes()?;
        let digest = Digest::of(&bytes);
        Ok((bytes, digest))
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Reads `null` (and absence, with `#[serde(default)]`) as the type's default, as Go does.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A set of strings written as a JSON object whose values are `{}` (Go's
/// `map[string]struct{}`). Reading ignores the values.
mod key_set {
    use serde::de::IgnoredAny;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::{BTreeMap, BTreeSet};

    pub(super) fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let empty = serde_json::Map::new();
        let mut map = serializer.serialize_map(Some(set.len()))?;
        for key in set {
            map.serialize_entry(key, &empty)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeSet<String>, D::Error> {
        let map = Option::<BTreeMap<String, IgnoredAny>>::deserialize(deserializer)?;
        Ok(map.unwrap_or_default().into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_DIGEST: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// A config as an old `docker build` wrote it: legacy fields, nulls, a healthcheck.
    fn docker_config() -> String {
        format!(
            r##"{{
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "created": "2024-01-01T00:00:00.123Z", "author": "someone",
            "config": {{
                "Hostname": "", "AttachStdout": false,
                "User": "app", "Env": ["PATH=/bin", "A=b"], "Entrypoint": ["/init"], "Cmd": null,
                "WorkingDir": "/srv", "ExposedPorts": {{"80/tcp": {{}}, "53/udp": {{}}}},
                "Volumes": null, "Labels": {{"org.x": "y"}}, "StopSignal": "SIGTERM",
                "Healthcheck": {{"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3}},
                "OnBuild": null, "Shell": ["/bin/bash", "-c"], "ArgsEscaped": true
            }},
            "container_config": {{"Cmd": ["/bin/sh", "-c", "#(nop) CMD []"]}},
            "docker_version": "24.0.0",
            "rootfs": {{"type": "layers", "diff_ids": ["{EMPTY_DIGEST}"]}},
            "history": [
                {{"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /", "x": 1}},
                {{"created_by": "CMD []", "empty_layer": true}}
            ]
        }}"##
        )
    }

    #[test]
    fn reads_every_docker_field_and_keeps_unknown_ones() {
        let config = ImageConfigFile::parse(docker_config().as_bytes()).unwrap();
        assert_eq!(
            (config.os.as_str(), config.architecture.as_str(), config.variant.as_str()),
            ("linux", "arm64", "v8")
        );
        assert_eq!(config.created.as_deref(), Some("2024-01-01T00:00:00.123Z"));
        assert_eq!(config.author, "someone");
        let c = &config.config;
        assert_eq!(c.user, "app");
        assert_eq!(c.env, ["PATH=/bin", "A=b"]);
        assert_eq!(c.entrypoint, ["/init"]);
        assert!(c.cmd.is_empty());
        assert!(c.volumes.is_empty());
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.exposed_ports.iter().collect::<Vec<_>>(), ["53/udp", "80/tcp"]);
        assert_eq!(c.labels["org.x"], "y");
        assert_eq!(c.stop_signal, "SIGTERM");
        let health = c.healthcheck.as_ref().unwrap();
        assert_eq!(health.test, ["CMD", "true"]);
        assert_eq!((health.interval, health.timeout, health.retries), (30_000_000_000, 0, 3));
        assert!(c.on_build.is_empty());
        assert_eq!(c.shell, ["/bin/bash", "-c"]);
        assert!(c.args_escaped);
        assert_eq!(c.extra["Hostname"], "");
        assert_eq!(c.extra["AttachStdout"], false);
        assert_eq!(config.extra["docker_version"], "24.0.0");
        assert_eq!(config.extra["container_config"]["Cmd"][2], "#(nop) CMD []");
        assert_eq!(config.rootfs.kind, "layers");
        assert_eq!(config.rootfs.diff_ids, [Digest::parse(EMPTY_DIGEST).unwrap()]);
        assert_eq!(config.history.len(), 2);
        assert_eq!(config.history[0].extra["x"], 1);
        assert!(config.history[1].empty_layer);
    }

    #[test]
    fn round_trip_keeps_everything_but_empty_fields() {
        let config = ImageConfigFile::parse(docker_config().as_bytes()).unwrap();
        let bytes = config.to_bytes().unwrap();
        assert_eq!(ImageConfigFile::parse(&bytes).unwrap(), config);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["config"]["AttachStdout"], false);
        assert_eq!(value["container_config"]["Cmd"][0], "/bin/sh");
        // Empty and null fields are left out, as Docker's omitempty does.
        let config_keys: Vec<&String> = value["config"].as_object().unwrap().keys().collect();
        assert_eq!(
            config_keys,
            [
                "ArgsEscaped",
                "AttachStdout",
                "Entrypoint",
                "Env",
                "ExposedPorts",
                "Healthcheck",
                "Hostname",
                "Labels",
                "Shell",
                "StopSignal",
                "User",
                "WorkingDir"
            ]
        );
        assert_eq!(
            value["config"]["ExposedPorts"],
            serde_json::json!({"53/udp": {}, "80/tcp": {}})
        );
        assert_eq!(
            value["config"]["Healthcheck"],
            serde_json::json!({"Test": ["CMD", "true"], "Interval": 30000000000u64, "Retries": 3})
        );
        assert_eq!(
            value["history"][1],
            serde_json::json!({"created_by": "CMD []", "empty_layer": true})
        );
    }

    #[test]
    fn golden_bytes_of_a_small_config() {
        let config = ImageConfigFile {
            created: Some("2024-01-01T00:00:00Z".into()),
            architecture: "amd64".into(),
            os: "linux".into(),
            config: ContainerConfig {
                env: vec!["PATH=/usr/bin:/bin".into()],
                cmd: vec!["sh".into()],
                working_dir: "/".into(),
                labels: BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
                exposed_ports: BTreeSet::from(["8080/tcp".into()]),
                ..Default::default()
            },
            rootfs: RootFs {
                diff_ids: vec![Digest::parse(EMPTY_DIGEST).unwrap()],
                ..Default::default()
            },
            history: vec![History {
                created: Some("2024-01-01T00:00:00Z".into()),
                created_by: "COPY a /a # buildkit".into(),
                comment: "buildkit.dockerfile.v0".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let expected = concat!(
            r#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/usr/bin:/bin"],"#,
            r#""ExposedPorts":{"8080/tcp":{}},"Labels":{"a":"1","b":"2"},"WorkingDir":"/"},"#,
            r#""created":"2024-01-01T00:00:00Z","#,
            r#""history":[{"comment":"buildkit.dockerfile.v0","created":"2024-01-01T00:00:00Z","created_by":"COPY a /a # buildkit"}],"#,
            r#""os":"linux","rootfs":{"diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],"type":"layers"}}"#
        );
        let (bytes, digest) = config.to_blob().unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        assert_eq!(digest, Digest::of(expected.as_bytes()));
        // Same input, same bytes.
        assert_eq!(config.clone().to_bytes().unwrap(), bytes);
    }

    #[test]
    fn minimal_config_always_has_platform_config_and_rootfs() {
        let bytes = ImageConfigFile::default().to_bytes().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"architecture":"","config":{},"os":"","rootfs":{"diff_ids":[],"type":"layers"}}"#
        );
        let parsed = ImageConfigFile::parse(b"{}").unwrap();
        assert_eq!(parsed.rootfs.kind, "layers");
        let parsed =
            ImageConfigFile::parse(br#"{"config":null,"rootfs":null,"history":null}"#).unwrap();
        assert_eq!(parsed, ImageConfigFile::default());
    }

    #[test]
    fn bad_configs_are_errors() {
        let err = ImageConfigFile::parse(br#"{"rootfs":{"type":"layers","diff_ids":["nope"]}}"#)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid image config: invalid digest \"nope\""),
            "{err}"
        );
        let err = ImageConfigFile::parse(b"[]").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid image config: invalid type: sequence"),
            "{err}"
        );
        let err = ImageConfigFile::parse(br#"{"config":{"Env":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: string \"x\""), "{err}");
        let err = ImageConfigFile::parse(b"{").unwrap_err();
        assert!(err.to_string().starts_with("invalid image config: EOF"), "{err}");
    }
}
