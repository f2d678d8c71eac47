//! Unix path arithmetic for image paths (never host paths): cleaning, joining with the
//! working directory, keeping the trailing `/` that changes COPY's meaning.

/// Go's `path.Clean` for absolute or relative slash paths.
pub fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `path` made absolute against `workdir` and cleaned; a trailing `/` (or a path of `.`)
/// keeps a trailing `/` so "copy into this directory" survives.
pub fn resolve_against(workdir: &str, path: &str) -> String {
    let wants_dir = path.ends_with('/') || path == "." || path.is_empty() || path.ends_with("/.");
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{workdir}/{path}") };
    let mut cleaned = clean(&joined);
    if wants_dir && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// The new working directory after `WORKDIR path`.
pub fn normalize_workdir(current: Option<&str>, path: &str) -> String {
    if path.starts_with('/') {
        clean(path)
    } else {
        clean(&format!("{}/{path}", current.unwrap_or("/")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("//"), "/");
    }

    #[test]
    fn resolves_destinations() {
        assert_eq!(resolve_against("/app", "."), "/app/");
        assert_eq!(resolve_against("/app", "bin/"), "/app/bin/");
        assert_eq!(resolve_against("/app", "bin"), "/app/bin");
        assert_eq!(resolve_against("/app", "/usr/local/"), "/usr/local/");
        assert_eq!(resolve_against("/", "x/../y"), "/y");
        assert_eq!(resolve_against("/", "/"), "/");
    }

    #[test]
    fn workdirs() {
        assert_eq!(normalize_workdir(None, "app"), "/app");
        assert_eq!(normalize_workdir(Some("/app"), "src/.."), "/app");
        assert_eq!(normalize_workdir(Some("/app"), "/srv/"), "/srv");
    }
}
