//! The Docker image reference grammar, to reject a bad `FROM` before any lookup.
//!
//! `[domain[:port]/]path[:tag][@digest]`, path components lower case `[a-z0-9]` runs joined by
//! `.`, `_`, `__` or `-`s; tags `[\w][\w.-]{0,127}`; digests `algorithm:hex` (32+ hex digits).
//! Resolution (Docker Hub defaults, pinning) is the engine's; this only checks the shape.

use regex::Regex;
use std::sync::OnceLock;

fn grammar() -> &'static Regex {
    static GRAMMAR: OnceLock<Regex> = OnceLock::new();
    GRAMMAR.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let separator = "(?:[._]|__|-+)";
        let component = format!("{alnum}(?:{separator}{alnum})*");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let host = format!(r"(?:{domain_component}(?:\.{domain_component})*|\[[a-fA-F0-9:]+\])");
        let domain = format!("{host}(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{component}(?:/{component})*");
        let tag = r"[\w][\w.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        Regex::new(&format!("^({name})(?::({tag}))?(?:@({digest}))?$")).expect("valid grammar")
    })
}

/// Checks `reference`'s shape; the error says what is wrong, as Docker words it.
pub fn validate_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err(
            "invalid reference format: repository name must have at least one component".into()
        );
    }
    if let Some(caps) = grammar().captures(reference) {
        if caps[1].len() > 255 {
            return Err(
                "invalid reference format: repository name must not be more than 255 characters"
                    .into(),
            );
        }
        return Ok(());
    }
    if grammar().is_match(&reference.to_ascii_lowercase()) {
        return Err(format!(
            "invalid reference format: repository name ({reference}) must be lowercase"
        ));
    }
    Err(format!("invalid reference format: {reference:?}"))
}

#[cfg(test)]
mod tests {
    use super::validate_reference as v;

    #[test]
    fn accepts_real_references() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "library/alpine",
            "docker.io/library/alpine:latest",
            "ghcr.io/owner/repo/sub:v1.2-rc_3",
            "localhost:5000/app",
            "127.0.0.1:5000/a/b:c",
            "[::1]:5000/x",
            "my-registry.example.com/team__x/app.name",
            "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "alpine:3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(v(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_ones() {
        for bad in [":latest", "alpine:", "upper/X", "a//b", "-a", "a:b:c", "x@sha256:123", "/abs"]
        {
            assert!(v(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            v("Alpine"),
            Err("invalid reference format: repository name (Alpine) must be lowercase".into())
        );
    }
}
