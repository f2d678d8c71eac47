//! The image configuration blob: a typed view of what kiln needs, with every other field kept.
//!
//! The view is our own serde type rather than `oci-spec`'s because Docker's config carries
//! fields the OCI spec does not (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`, …) and
//! those must survive into images kiln builds on top. Unknown fields land in `extra` maps
//! at each level. The exact bytes live beside the view in [`ImageConfigBlob`].

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest config blob kiln reads into memory; real ones are a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

type Extra = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `config` object: how containers of the image run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "null_as_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "null_as_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "null_as_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Docker's `Healthcheck`; durations are nanoseconds, as Docker writes them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A map written as `null` reads as absent (Docker writes `"Volumes": null`).
fn null_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// A config blob: its exact bytes, digest and typed view.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfigBlob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub config: ImageConfig,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_fields_and_keeps_unknown_ones() {
        let json = r#"{
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "User": "app", "Env": ["PATH=/bin", "A=b"], "Entrypoint": ["/init"], "Cmd": null,
                "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}}, "Volumes": null,
                "Labels": {"org.x": "y"}, "StopSignal": "SIGTERM",
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3},
                "OnBuild": ["RUN echo hi"], "Shell": ["/bin/bash", "-c"], "ArgsEscaped": true,
                "Hostname": "", "AttachStdout": false
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "history": [{"created_by": "COPY . /", "empty_layer": false}],
            "container": "abc", "docker_version": "24.0.0"
        }"#;
        let config = ImageConfig::parse(json.as_bytes()).unwrap();
        assert_eq!(
            (config.os.as_str(), config.architecture.as_str(), config.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        let c = config.config.as_ref().unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.env.as_deref().unwrap(), ["PATH=/bin", "A=b"]);
        assert_eq!(c.entrypoint.as_deref().unwrap(), ["/init"]);
        assert_eq!(c.cmd, None);
        assert_eq!(c.volumes, None);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        assert_eq!(c.labels.as_ref().unwrap()["org.x"], "y");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
        let health = c.healthcheck.as_ref().unwrap();
        assert_eq!((health.interval, health.retries), (Some(30_000_000_000), Some(3)));
        assert_eq!(c.on_build.as_deref().unwrap(), ["RUN echo hi"]);
        assert_eq!(c.shell.as_deref().unwrap(), ["/bin/bash", "-c"]);
        assert_eq!(c.args_escaped, Some(true));
        assert_eq!(c.extra["Hostname"], "");
        assert_eq!(config.extra["docker_version"], "24.0.0");
        assert_eq!(config.rootfs.diff_ids.len(), 1);
        assert_eq!(config.history.as_ref().unwrap()[0].created_by.as_deref(), Some("COPY . /"));

        // nothing is lost in a round trip through the view
        let again: serde_json::Value = serde_json::to_value(&config).unwrap();
        assert_eq!(again["config"]["AttachStdout"], false);
        assert_eq!(again["container"], "abc");
        assert_eq!(again["config"]["Healthcheck"]["Test"][1], "true");
    }

    #[test]
    fn bad_diff_ids_are_errors() {
        let err =
            ImageConfig::parse(br#"{"rootfs":{"type":"layers","diff_ids":["nope"]}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid digest \"nope\""), "{err}");
    }
}
