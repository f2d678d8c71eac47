//! Which URL a registry name maps to, and whether plain HTTP or unverified TLS is allowed.
//!
//! The rules (Docker's, with one deliberate difference):
//! - `docker.io` is served by `registry-1.docker.io`.
//! - A registry listed as insecure (`--insecure-registry`, `KILN_INSECURE_REGISTRIES`; an
//!   entry is `host`, `host:port` or an IP range `10.0.0.0/8`) is tried over HTTPS without
//!   certificate verification, then over plain HTTP — as Docker does.
//! - `localhost`, `127.0.0.0/8` and `::1` are tried over HTTPS, then plain HTTP. Unlike
//!   Docker, which also skips certificate checks there, kiln verifies TLS on loopback unless
//!   the registry is listed: a loopback registry that speaks TLS is trusted only through a CA
//!   kiln was given, so a test registry proves certificates are really checked.
//! - Every other registry is HTTPS only, with verification.
//!
//! Falling back to HTTP happens only when the HTTPS attempt failed below HTTP (connection or
//! handshake) and the HTTP attempt answers like a registry; see the client's ping.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "invalid insecure registry {0:?}: expected host, host:port or an ip range like 10.0.0.0/8"
    )]
    BadInsecureEntry(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// How to talk to one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Schemes to try, in order.
    pub schemes: Vec<Scheme>,
    /// Whether TLS certificates are verified.
    pub verify_tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum InsecureEntry {
    Registry(String),
    Host(String),
    Range { network: IpAddr, prefix: u8 },
}

/// Registries the user allowed to use plain HTTP or unverified TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsecureRegistries {
    entries: Vec<InsecureEntry>,
}

/// The environment variable holding a comma-separated insecure registry list.
pub const INSECURE_REGISTRIES_ENV: &str = "KILN_INSECURE_REGISTRIES";

impl InsecureRegistries {
    pub fn new<I, S>(entries: I) -> Result<Self, EndpointError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            parsed.push(parse_entry(entry)?);
        }
        Ok(InsecureRegistries { entries: parsed })
    }

    /// Parses a comma-separated list, as `KILN_INSECURE_REGISTRIES` holds.
    pub fn from_list(list: &str) -> Result<Self, EndpointError> {
        InsecureRegistries::new(list.split(','))
    }

    /// Adds the entries of another list (the environment's to the command line's).
    pub fn extend(&mut self, other: InsecureRegistries) {
        self.entries.extend(other.entries);
    }

    pub fn contains(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let (host, _) = split_host_port(&registry);
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| match entry {
            InsecureEntry::Registry(r) => *r == registry,
            InsecureEntry::Host(h) => h == host,
            InsecureEntry::Range { network, prefix } => {
                ip.is_some_and(|ip| in_range(ip, *network, *prefix))
            }
        })
    }
}

fn parse_entry(entry: &str) -> Result<InsecureEntry, EndpointError> {
    let bad = || EndpointError::BadInsecureEntry(entry.to_string());
    let lower = entry.to_ascii_lowercase();
    // Docker accepts URLs here too; only the host[:port] part means anything.
    let lower =
        lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).unwrap_or(&lower);
    let lower = lower.trim_end_matches('/');
    if let Some((network, prefix)) = lower.split_once('/') {
        let network: IpAddr = network.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        return Ok(InsecureEntry::Range { network, prefix });
    }
    if lower.is_empty() || lower.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = split_host_port(lower);
    match port {
        Some(port) if port.parse::<u16>().is_err() => Err(bad()),
        Some(_) => Ok(InsecureEntry::Registry(lower.to_string())),
        None => Ok(InsecureEntry::Host(host.to_string())),
    }
}

fn in_range(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let (ip, network, bits) = match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if prefix == 0 {
        return true;
    }
    let shift = bits - u32::from(prefix);
    (ip >> shift) == (network >> shift)
}

/// Splits `host[:port]`, keeping IPv6 brackets on the host: `[::1]:5000` → (`[::1]`, `5000`).
pub fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(end) => {
                let (host, rest) = registry.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (registry, None),
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    }
}

/// Whether the registry is on this machine: `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback(registry: &str) -> bool {
    let (host, _) = split_host_port(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `host[:port]` that serves a registry name's API.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

pub fn endpoint_policy(registry: &str, insecure: &InsecureRegistries) -> EndpointPolicy {
    if insecure.contains(registry) {
        EndpointPolicy { schemes: vec![Scheme::Https, Scheme::Http], verify_tls: false }
    } else if is_loopback(registry) {
        EndpointPolicy { schemes: vec![Scheme::Https, Scheme::Http], verify_tls: true }
    } else {
        EndpointPolicy { schemes: vec![Scheme::Https], verify_tls: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(registry: &str, insecure: &[&str]) -> EndpointPolicy {
        endpoint_policy(registry, &InsecureRegistries::new(insecure).unwrap())
    }

    #[test]
    fn loopback_may_fall_back_to_http_but_keeps_verifying() {
        for registry in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.0.0.2:80",
            "127.255.255.254",
            "[::1]:5000",
            "LOCALHOST:1",
        ] {
            assert_eq!(
                policy(registry, &[]),
                EndpointPolicy { schemes: vec![Scheme::Https, Scheme::Http], verify_tls: true },
                "{registry}"
            );
        }
    }

    #[test]
    fn other_registries_are_https_only_unless_listed() {
        let https_only = EndpointPolicy { schemes: vec![Scheme::Https], verify_tls: true };
        let insecure =
            EndpointPolicy { schemes: vec![Scheme::Https, Scheme::Http], verify_tls: false };
        for registry in [
            "docker.io",
            "myregistry:5000",
            "10.1.2.3:5000",
            "128.0.0.1",
            "[fc00::1]:5000",
            "localhost.example.com",
        ] {
            assert_eq!(policy(registry, &[]), https_only, "{registry}");
        }
        assert_eq!(policy("myregistry:5000", &["myregistry:5000"]), insecure);
        assert_eq!(
            policy("myregistry:5000", &["myregistry"]),
            insecure,
            "a bare host covers every port"
        );
        assert_eq!(policy("myregistry:5001", &["myregistry:5000"]), https_only);
        assert_eq!(policy("10.1.2.3:5000", &["10.0.0.0/8"]), insecure);
        assert_eq!(policy("11.1.2.3:5000", &["10.0.0.0/8"]), https_only);
        assert_eq!(policy("[fc00::1]:5000", &["fc00::/7"]), insecure);
        assert_eq!(policy("127.0.0.1:5000", &["127.0.0.1:5000"]), insecure);
        assert_eq!(policy("MyRegistry:5000", &["http://myregistry:5000/"]), insecure);
    }

    #[test]
    fn insecure_list_parsing() {
        let list = InsecureRegistries::from_list("a:5000, b ,,10.0.0.0/8").unwrap();
        assert!(list.contains("a:5000") && list.contains("b:1") && list.contains("10.9.9.9"));
        for bad in ["a:b", "10.0.0.0/33", "x/8", "a b"] {
            assert_eq!(
                InsecureRegistries::from_list(bad).unwrap_err().to_string(),
                format!(
                    "invalid insecure registry {bad:?}: expected host, host:port or an ip range like 10.0.0.0/8"
                )
            );
        }
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split_host_port("[::1]:5000"), ("[::1]", Some("5000")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("host:80"), ("host", Some("80")));
        assert_eq!(split_host_port("host"), ("host", None));
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }
}
