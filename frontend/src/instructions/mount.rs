//! `RUN --mount=...` values, parsed into typed mounts with BuildKit's per-type checks.
//!
//! A value is one CSV record of `key=value` fields (plus the bare words `ro`, `readonly`,
//! `rw`, `readwrite` and `required`). Each value is expanded with the stage's ARG/ENV before
//! it is read, so parsing happens during lowering, where the expander is known.
//!
//! Invariants of a parsed [`Mount`]: `mode`, `uid` and `gid` only on cache, secret and ssh
//! mounts; `sharing` only on cache mounts; `required` only on secret and ssh mounts;
//! `size_limit` only on tmpfs; a secret has no `from` and not both `source` and `id`.

use super::csv;
use super::suggest::did_you_mean;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share one cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub size_limit: Option<u64>,
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub required: bool,
    /// For secrets: the environment variable to expose the secret in.
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Parses one `--mount` value, expanding each field's value with `expand` first.
pub fn parse_mount(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, String> {
    let fields = csv::fields(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        size_limit: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut readonly_given = false;
    for field in &fields {
        let Some((key, raw)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => (m.readonly, readonly_given) = (true, true),
                "readwrite" | "rw" => (m.readonly, readonly_given) = (false, true),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let value = expand(raw)?;
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let hint = suggestion(&value, &["bind", "cache", "tmpfs", "secret", "ssh"]);
                        return Err(format!("unsupported mount type {value:?}{hint}"));
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &value)?;
                readonly_given = true;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &value)?;
                readonly_given = true;
            }
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = parse_bool(&key, &value)?
            }
            "size" if m.kind == MountType::Tmpfs => {
                m.size_limit = Some(
                    ram_in_bytes(&value)
                        .ok_or_else(|| format!("invalid value for {key}: {value}"))?,
                )
            }
            "required" | "size" => {
                return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind.as_str()));
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        let hint = suggestion(&value, &["shared", "private", "locked"]);
                        return Err(format!("unsupported sharing value {value:?}{hint}"));
                    }
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid value {value} for mode"))?,
                )
            }
            "uid" => {
                m.uid = Some(value.parse().map_err(|_| format!("invalid value {value} for uid"))?)
            }
            "gid" => {
                m.gid = Some(value.parse().map_err(|_| format!("invalid value {value} for gid"))?)
            }
            "env" => m.env = Some(value),
            _ => {
                let hint = suggestion(&key, ALL_KEYS);
                return Err(format!("unexpected key '{key}' in '{field}'{hint}"));
            }
        }
    }
    check(&mut m, readonly_given)?;
    Ok(m)
}

fn check(m: &mut Mount, readonly_given: bool) -> Result<(), String> {
    let kind = m.kind.as_str();
    if !matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (name, given) in
            [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())]
        {
            if given {
                return Err(format!("{name} not allowed for {kind:?} type mounts"));
            }
        }
    }
    if !readonly_given {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {kind} mount"));
    }
    Ok(())
}

fn suggestion(word: &str, candidates: &[&str]) -> String {
    did_you_mean(word, candidates).map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// A size like `64m`, `1.5GiB`, `100` (bytes), with binary multiples as Docker's
/// `RAMInBytes` reads them.
pub fn ram_in_bytes(text: &str) -> Option<u64> {
    let digits_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    let bytes = number * multiplier as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Mount, String> {
        parse_mount(value, &mut |s| Ok(s.to_string()))
    }

    #[test]
    fn defaults_per_type() {
        let bind = parse("target=/src").unwrap();
        assert_eq!(bind.kind, MountType::Bind);
        assert!(bind.readonly);
        let cache = parse("type=cache,target=/root/.cache,id=go,sharing=locked,mode=0700,uid=1000")
            .unwrap();
        assert!(!cache.readonly);
        assert_eq!(cache.sharing, Some(Sharing::Locked));
        assert_eq!(cache.mode, Some(0o700));
        assert_eq!(cache.uid, Some(1000));
        let tmpfs = parse("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(tmpfs.size_limit, Some(64 << 20));
        let secret = parse("type=secret,id=token,required,env=TOKEN").unwrap();
        assert!(secret.required && secret.readonly);
        assert_eq!(secret.env.as_deref(), Some("TOKEN"));
        let rw = parse("type=bind,from=build,source=/out,target=/in,rw").unwrap();
        assert!(!rw.readonly);
        assert_eq!(rw.from.as_deref(), Some("build"));
    }

    #[test]
    fn expands_values() {
        let m =
            parse_mount("type=cache,target=$DIR", &mut |s| Ok(s.replace("$DIR", "/c"))).unwrap();
        assert_eq!(m.target.as_deref(), Some("/c"));
    }

    #[test]
    fn per_type_checks() {
        let cases = [
            ("type=bogus", "unsupported mount type \"bogus\""),
            ("type=cahce", "unsupported mount type \"cahce\" (did you mean cache?)"),
            ("type=bind,mode=0700", "mode not allowed for \"bind\" type mounts"),
            ("type=tmpfs,uid=1", "uid not allowed for \"tmpfs\" type mounts"),
            ("type=bind,required", "unexpected key 'required' for mount type 'bind'"),
            ("type=cache,size=1m", "unexpected key 'size' for mount type 'cache'"),
            ("type=secret,from=x,id=a", "secret mount should not have a from"),
            ("type=secret", "invalid secret mount. one of source, target required"),
            ("type=secret,source=a,id=b", "both source and id can't be set"),
            ("type=bind,sharing=locked", "invalid cache sharing set for bind mount"),
            ("type=cache,sharing=open", "unsupported sharing value \"open\""),
            ("type=cache,mode=999", "invalid value 999 for mode"),
            ("type=cache,uid=-1", "invalid value -1 for uid"),
            ("type=tmpfs,size=lots", "invalid value for size: lots"),
            ("type=bind,ro=maybe", "invalid value for ro: maybe"),
            (
                "type=bind,targte=/x",
                "unexpected key 'targte' in 'targte=/x' (did you mean target?)",
            ),
            ("type=bind,nonsense", "invalid field 'nonsense' must be a key=value pair"),
            (
                "type=bind,\"x",
                "failed to parse csv mounts: extraneous or missing \" in quoted-field: type=bind,\"x",
            ),
        ];
        for (value, message) in cases {
            assert_eq!(parse(value).unwrap_err(), message, "for {value}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(ram_in_bytes("2 MB"), Some(2 << 20));
        assert_eq!(ram_in_bytes("x"), None);
        assert_eq!(ram_in_bytes("1q"), None);
    }
}
