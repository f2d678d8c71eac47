//! Image references (`alpine`, `user/app:1.0`, `127.0.0.1:5000/x:tag@sha256:…`), parsed and
//! normalised by Docker's rules (distribution/reference `ParseNormalizedNamed`).
//!
//! Invariants of a [`Reference`]: `registry` is never empty (`docker.io` when the input names
//! none, `index.docker.io` is folded into `docker.io`); Docker Hub repositories with a single
//! path component get the `library/` prefix; the repository is lower case, made of
//! `[a-z0-9]+` components joined by `.`, `_`, `__` or runs of `-`, and at most 255 characters;
//! a tag matches `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is a validated [`Digest`].
//! No default tag is stored: `latest` is implied only when neither tag nor digest is given
//! (see [`Reference::manifest_reference`]).

use super::digest::{Digest, DigestError};
use regex::Regex;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Docker Hub's canonical name in references.
pub const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_REPOSITORY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error("invalid reference format: {0:?}")]
    InvalidFormat(String),
    #[error("invalid reference format: repository name ({repository}) must be lowercase")]
    Uppercase { repository: String },
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    #[error("invalid reference {input:?}: repository name must not be more than 255 characters")]
    NameTooLong { input: String },
    #[error("invalid reference {input:?}: {source}")]
    Digest { input: String, source: DigestError },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

struct Patterns {
    reference: Regex,
    identifier: Regex,
    tag: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain_name = format!(r"{domain_component}(?:\.{domain_component})*");
        let host = format!(r"(?:{domain_name}|\[(?:[a-fA-F0-9:]+)\])");
        let domain = format!(r"{host}(?::[0-9]+)?");
        let path_component = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
        let remote = format!(r"{path_component}(?:/{path_component})*");
        let tag = r"[\w][\w.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        let reference = format!(r"^(?:({domain})/)?({remote})(?::({tag}))?(?:@({digest}))?$");
        Patterns {
            reference: Regex::new(&reference).expect("reference pattern is valid"),
            identifier: Regex::new("^[a-f0-9]{64}$").expect("identifier pattern is valid"),
            tag: Regex::new(&format!("^{tag}$")).expect("tag pattern is valid"),
        }
    })
}

/// Splits a familiar name into registry and remainder as Docker does: the first path
/// element is a registry when it is `localhost`, contains `.` or `:`, or has upper case.
fn split_registry(name: &str) -> (&str, String) {
    let (registry, remainder) = match name.split_once('/') {
        None => return (DOCKER_HUB, format!("{OFFICIAL_PREFIX}{name}")),
        Some((first, rest)) if first == "localhost" => (first, rest),
        Some((first, rest)) if first == LEGACY_DOCKER_HUB => (DOCKER_HUB, rest),
        Some((first, rest)) if first.contains(['.', ':']) => (first, rest),
        Some((first, rest)) if first.to_lowercase() != first => (first, rest),
        Some(_) => (DOCKER_HUB, name),
    };
    if registry == DOCKER_HUB && !remainder.contains('/') {
        return (registry, format!("{OFFICIAL_PREFIX}{remainder}"));
    }
    (registry, remainder.to_string())
}

impl Reference {
    /// Parses `input` the way `docker pull` does, filling in `docker.io` and `library/`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let patterns = patterns();
        if patterns.identifier.is_match(input) {
            return Err(ReferenceError::HexIdentifier(input.to_string()));
        }
        let (registry, remainder) = split_registry(input);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase { repository: remote.to_string() });
        }
        let full = format!("{registry}/{remainder}");
        let captures = patterns
            .reference
            .captures(&full)
            .ok_or_else(|| ReferenceError::InvalidFormat(input.to_string()))?;
        let registry = captures.get(1).map_or(DOCKER_HUB, |m| m.as_str()).to_string();
        let repository = captures[2].to_string();
        if repository.len() > MAX_REPOSITORY_LEN {
            return Err(ReferenceError::NameTooLong { input: input.to_string() });
        }
        let tag = captures.get(3).map(|m| m.as_str().to_string());
        let digest = captures
            .get(4)
            .map(|m| m.as_str().parse::<Digest>())
            .transpose()
            .map_err(|source| ReferenceError::Digest { input: input.to_string(), source })?;
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The registry as written in references: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the name errors and credentials speak of.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one (it
    /// wins over a tag, as in Docker), else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository with `digest` pinned (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !patterns().tag.is_match(tag) {
            return Err(ReferenceError::InvalidFormat(format!("{}:{tag}", self.name())));
        }
        Ok(Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, ReferenceError> {
        Reference::parse(input)
    }
}

/// The fully qualified form: `docker.io/library/alpine:latest`, `host/x@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (None, None) => write!(f, ":{DEFAULT_TAG}"),
            (tag, digest) => {
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                if let Some(digest) = digest {
                    write!(f, "@{digest}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    fn norm(input: &str) -> String {
        Reference::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}")).to_string()
    }

    #[test]
    fn normalises_familiar_names() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app/sub:v1", "docker.io/user/app/sub:v1"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/user/app", "docker.io/user/app:latest"),
            ("docker.io/library/alpine:edge", "docker.io/library/alpine:edge"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("127.0.0.1:5000/x:tag", "127.0.0.1:5000/x:tag"),
            ("ghcr.io/owner/repo:1.0.0-rc.1", "ghcr.io/owner/repo:1.0.0-rc.1"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            (
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
            ),
            ("myhost:5000/a/b/c", "myhost:5000/a/b/c:latest"),
            ("Docker/docker", "Docker/docker:latest"),
            ("192.168.0.1", "docker.io/library/192.168.0.1:latest"),
            ("192.168.0.1:80", "docker.io/library/192.168.0.1:80"),
            ("docker---rules/docker", "docker.io/docker---rules/docker:latest"),
            ("dock__er/d_o.c-k", "docker.io/dock__er/d_o.c-k:latest"),
            ("alpine:V1_UPPER", "docker.io/library/alpine:V1_UPPER"),
        ];
        for (input, expected) in cases {
            assert_eq!(norm(input), expected, "{input}");
        }
    }

    #[test]
    fn parts_are_exposed() {
        let r = Reference::parse(&format!("127.0.0.1:5000/x/y:tag@sha256:{HEX}")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "x/y");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest().unwrap().to_string(), format!("sha256:{HEX}"));
        assert_eq!(r.name(), "127.0.0.1:5000/x/y");
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x/y:tag@sha256:{HEX}"));

        let bare = Reference::parse("alpine").unwrap();
        assert_eq!(bare.tag(), None);
        assert_eq!(bare.manifest_reference(), "latest");
        let pinned = Reference::parse(&format!("alpine@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.to_string(), format!("docker.io/library/alpine@sha256:{HEX}"));
        assert_eq!(pinned.tag(), None);
        assert_eq!(bare.with_tag("3").unwrap().to_string(), "docker.io/library/alpine:3");
        assert!(bare.with_tag("-bad").is_err());
    }

    #[test]
    fn rejects_invalid_references() {
        let invalid = [
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            "alpine:",
            "alpine:-tag",
            "alpine@",
            "alpine@sha256:",
            "alpine:tag:tag",
            "alpine latest",
            ":tag",
            "@sha256:abc",
        ];
        for input in invalid {
            assert!(Reference::parse(input).is_err(), "{input:?} should be rejected");
        }
        let long_tag = format!("alpine:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        assert!(Reference::parse(&format!("alpine:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn error_messages() {
        let err = |s: &str| Reference::parse(s).unwrap_err().to_string();
        assert_eq!(err(""), "invalid reference format: empty reference");
        assert_eq!(
            err("Alpine"),
            "invalid reference format: repository name (library/Alpine) must be lowercase"
        );
        assert_eq!(
            err("docker.io/docker/Docker:tag"),
            "invalid reference format: repository name (docker/Docker) must be lowercase"
        );
        assert_eq!(err("a//b"), "invalid reference format: \"a//b\"");
        assert_eq!(
            err(HEX),
            format!("invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(
            err("alpine@sha256:abcd0123abcd0123abcd0123abcd0123"),
            "invalid reference \"alpine@sha256:abcd0123abcd0123abcd0123abcd0123\": invalid digest \"sha256:abcd0123abcd0123abcd0123abcd0123\": sha256 needs 64 lower-case hex characters"
        );
        let long = format!("{}/docker", "a".repeat(256));
        assert_eq!(
            err(&long),
            format!(
                "invalid reference {long:?}: repository name must not be more than 255 characters"
            )
        );
    }

    #[test]
    fn hex_names_are_allowed_with_a_registry() {
        assert_eq!(norm(&format!("docker.io/{HEX}")), format!("docker.io/library/{HEX}:latest"));
    }
}
