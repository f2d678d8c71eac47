//! Platform strings (`os/arch[/variant]`), normalised the way containerd and BuildKit do.
//!
//! Invariants of a [`Platform`]: `os` and `architecture` are non-empty, lower case and
//! normalised (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7` ...); `variant` is
//! `None` rather than an empty string, and is dropped where it is the architecture's only
//! meaning (`amd64/v1`, `arm64/v8`), so two spellings of one platform compare equal.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os[/arch[/variant]]")]
    Malformed(String),
    #[error("invalid platform {input:?}: unknown operating system {os:?}")]
    UnknownOs { input: String, os: String },
}

/// Operating systems Go (and so the OCI image spec) knows; anything else is a typo.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let (architecture, variant) = normalize_arch(&architecture.to_ascii_lowercase(), variant);
        Platform { os: normalize_os(os), architecture, variant }
    }

    /// The platform kiln itself runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// Parses `os`, `os/arch`, `os/arch/variant`, or a bare architecture (`arm64`), which,
    /// as in containerd, means that architecture on the host's operating system.
    pub fn parse(input: &str) -> Result<Self, PlatformError> {
        let malformed = || PlatformError::Malformed(input.to_string());
        let parts: Vec<&str> = input.trim().split('/').collect();
        if parts.iter().any(|p| p.is_empty() || p.contains(char::is_whitespace)) {
            return Err(malformed());
        }
        let known_os = |os: &str| KNOWN_OS.contains(&normalize_os(os).as_str());
        match parts.as_slice() {
            [single] if known_os(single) => {
                let host = Platform::host();
                let os = normalize_os(single);
                if os == host.os {
                    Ok(host)
                } else {
                    Ok(Platform::new(&os, &host.architecture, None))
                }
            }
            [single] if is_known_arch(single) => {
                Ok(Platform::new(&Platform::host().os, single, None))
            }
            [os, ..] if !known_os(os) => {
                Err(PlatformError::UnknownOs { input: input.to_string(), os: os.to_string() })
            }
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(malformed()),
        }
    }

    /// The variant a platform means when it names none (`arm64` means `v8`).
    pub fn default_variant(&self) -> Option<&str> {
        match self.architecture.as_str() {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            "amd64" => Some("v1"),
            _ => None,
        }
    }

    /// The variant, or the architecture's default when none was given.
    pub fn effective_variant(&self) -> Option<&str> {
        self.variant.as_deref().or_else(|| self.default_variant())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    match os.as_str() {
        "macos" => "darwin".to_string(),
        _ => os,
    }
}

fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch.to_ascii_lowercase().as_str(),
        "386"
            | "i386"
            | "amd64"
            | "x86_64"
            | "x86-64"
            | "arm"
            | "armhf"
            | "armel"
            | "arm64"
            | "aarch64"
            | "ppc64"
            | "ppc64le"
            | "s390x"
            | "riscv64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "loong64"
            | "wasm"
    )
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_ascii_lowercase).filter(|v| !v.is_empty());
    let (arch, variant) = match arch {
        "i386" => ("386", variant),
        "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64", variant.filter(|v| v != "8" && v != "v8")),
        "armhf" => ("arm", Some("v7".to_string())),
        "armel" => ("arm", Some("v6".to_string())),
        "arm" => {
            let variant = match variant.as_deref() {
                None | Some("7") => Some("v7".to_string()),
                Some("5") | Some("6") | Some("8") => variant.map(|v| format!("v{v}")),
                _ => variant,
            };
            ("arm", variant)
        }
        other => (other, variant),
    };
    (arch.to_string(), variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Platform::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_spellings() {
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/amd64/v1"), "linux/amd64");
        assert_eq!(p("linux/amd64/v3"), "linux/amd64/v3");
        assert_eq!(p("Linux/AArch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/6"), "linux/arm/v6");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/i386"), "linux/386");
        assert_eq!(p("windows/amd64"), "windows/amd64");
        assert_eq!(p("macos/arm64"), "darwin/arm64");
    }

    #[test]
    fn bare_architecture_means_host_os() {
        assert_eq!(Platform::parse("arm64").unwrap().os, Platform::host().os);
        assert_eq!(Platform::parse("arm64").unwrap().architecture, "arm64");
    }

    #[test]
    fn bare_os_means_host_architecture() {
        assert_eq!(Platform::parse("linux").unwrap().architecture, Platform::host().architecture);
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "/", "linux/", "linux//v7", "linux/amd64/v1/x", "foo/amd64", "foo", "a b/c"]
        {
            assert!(Platform::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            Platform::parse("lnux/amd64").unwrap_err().to_string(),
            "invalid platform \"lnux/amd64\": unknown operating system \"lnux\""
        );
    }

    #[test]
    fn default_variants() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(arm64.variant, None);
        assert_eq!(arm64.effective_variant(), Some("v8"));
        assert_eq!(Platform::parse("linux/s390x").unwrap().effective_variant(), None);
    }
}
