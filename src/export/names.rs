//! The forms of an image name that exported archives record, derived from a fully
//! qualified reference (`docker.io/library/app:latest`, as `registry::Reference` prints it).
//!
//! - [`oci_ref_name`]: `org.opencontainers.image.ref.name` in an OCI layout's `index.json`.
//!   containerd (and so BuildKit) writes what follows the repository — the tag, or
//!   `tag@digest` — and the whole name when there is no tag (a digest-only reference).
//! - [`familiar_name`]: `RepoTags` of `docker save`'s `manifest.json`, Docker's short form
//!   (`app:latest`, `user/app:1`, `ghcr.io/x/y:2`), with `:latest` added when the name has
//!   neither tag nor digest.

const DOCKER_HUB: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";

/// Splits `host/path` (the host is everything before the first `/`).
fn split_host(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("", name))
}

/// The repository path and what follows it (`:tag`, `@digest`, `:tag@digest`, or empty).
fn split_object(path: &str) -> (&str, &str) {
    match path.find([':', '@']) {
        Some(at) => path.split_at(at),
        None => (path, ""),
    }
}

/// The OCI layout ref name containerd gives `name`.
pub fn oci_ref_name(name: &str) -> String {
    let (_, path) = split_host(name);
    let (_, object) = split_object(path);
    match object.strip_prefix(':') {
        Some(tag) => tag.to_owned(),
        None => name.to_owned(),
    }
}

/// Docker's familiar form of `name`, tagged `latest` when it has neither tag nor digest.
pub fn familiar_name(name: &str) -> String {
    let (host, path) = split_host(name);
    let (repository, object) = split_object(path);
    let object = if object.is_empty() { ":latest" } else { object };
    if host != DOCKER_HUB {
        return format!("{host}/{repository}{object}");
    }
    let repository = match repository.strip_prefix(OFFICIAL_PREFIX) {
        Some(short) if !short.contains('/') => short,
        _ => repository,
    };
    format!("{repository}{object}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn ref_names_as_containerd_writes_them() {
        assert_eq!(oci_ref_name("docker.io/library/app:latest"), "latest");
        assert_eq!(oci_ref_name("localhost:5000/a/b:v1.2"), "v1.2");
        assert_eq!(oci_ref_name(&format!("ghcr.io/x/y:1@{DIGEST}")), format!("1@{DIGEST}"));
        let digest_only = format!("docker.io/library/app@{DIGEST}");
        assert_eq!(oci_ref_name(&digest_only), digest_only);
        assert_eq!(oci_ref_name("docker.io/library/app"), "docker.io/library/app");
    }

    #[test]
    fn familiar_names_as_docker_prints_them() {
        let cases = [
            ("docker.io/library/app:latest", "app:latest".to_string()),
            ("docker.io/library/app", "app:latest".to_string()),
            ("docker.io/user/app:1", "user/app:1".to_string()),
            ("docker.io/library/a/b:1", "library/a/b:1".to_string()),
            ("ghcr.io/x/y:2", "ghcr.io/x/y:2".to_string()),
            ("localhost:5000/app", "localhost:5000/app:latest".to_string()),
            (&*format!("docker.io/library/app@{DIGEST}"), format!("app@{DIGEST}")),
        ];
        for (name, familiar) in cases {
            assert_eq!(familiar_name(name), familiar, "{name}");
        }
    }
}
