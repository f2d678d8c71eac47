//! `--name[=value]` flags of an instruction, checked against the flags it declares.
//!
//! Rules, as BuildKit applies them: every flag word starts with `--`; `--` alone ends the
//! flags; an undeclared name is an error (with a suggestion when one is close); a boolean flag
//! takes no value, `=true` or `=false` (any case); a string flag needs `=value` and may be given
//! once; a list flag needs `=value` and may repeat, keeping order.

use super::suggest::did_you_mean;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    String,
    List,
}

/// The flags one instruction accepts, and the values found for them.
#[derive(Debug, Default)]
pub struct FlagSet {
    declared: Vec<(&'static str, FlagKind)>,
    values: Vec<(&'static str, String)>,
}

impl FlagSet {
    pub fn new(declared: &[(&'static str, FlagKind)]) -> Self {
        FlagSet { declared: declared.to_vec(), values: Vec::new() }
    }

    /// Reads the flag words; returns the error message for the first bad one.
    pub fn parse(&mut self, words: &[String]) -> Result<(), String> {
        for word in words {
            if word == "--" {
                break;
            }
            let Some(body) = word.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {word}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(declared_name, kind)) = self.declared.iter().find(|(n, _)| *n == name)
            else {
                let names: Vec<&str> = self.declared.iter().map(|(n, _)| *n).collect();
                let hint = did_you_mean(name, &names)
                    .map(|s| format!(" (did you mean --{s}?)"))
                    .unwrap_or_default();
                return Err(format!("unknown flag: --{name}{hint}"));
            };
            if kind != FlagKind::List && self.is_used(declared_name) {
                return Err(format!("duplicate flag specified: --{name}"));
            }
            let value = match kind {
                FlagKind::Bool => match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => "true".to_string(),
                    Some("false") => "false".to_string(),
                    Some("") => return Err(format!("missing a value on flag: --{name}")),
                    Some(other) => {
                        return Err(format!(
                            "expecting boolean value for flag --{name}, not: {other}"
                        ));
                    }
                },
                FlagKind::String | FlagKind::List => match value {
                    Some(value) => value.to_string(),
                    None => return Err(format!("missing a value on flag: --{name}")),
                },
            };
            self.values.push((declared_name, value));
        }
        Ok(())
    }

    pub fn is_used(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| *n == name)
    }

    /// The value of a string flag, when given.
    pub fn string(&self, name: &str) -> Option<String> {
        self.values.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    /// A boolean flag: `None` when absent.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// Every value of a list flag, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn set() -> FlagSet {
        FlagSet::new(&[
            ("link", FlagKind::Bool),
            ("from", FlagKind::String),
            ("exclude", FlagKind::List),
        ])
    }

    #[test]
    fn reads_each_kind() {
        let mut flags = set();
        flags.parse(&words(&["--link", "--from=build", "--exclude=a", "--exclude=b=c"])).unwrap();
        assert_eq!(flags.bool("link"), Some(true));
        assert_eq!(flags.string("from").as_deref(), Some("build"));
        assert_eq!(flags.list("exclude"), ["a", "b=c"]);
    }

    #[test]
    fn bool_values() {
        let mut flags = set();
        flags.parse(&words(&["--link=FALSE"])).unwrap();
        assert_eq!(flags.bool("link"), Some(false));
        assert_eq!(
            set().parse(&words(&["--link=yes"])).unwrap_err(),
            "expecting boolean value for flag --link, not: yes"
        );
        assert_eq!(
            set().parse(&words(&["--link="])).unwrap_err(),
            "missing a value on flag: --link"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            set().parse(&words(&["--form=x"])).unwrap_err(),
            "unknown flag: --form (did you mean --from?)"
        );
        assert_eq!(set().parse(&words(&["--chown=1"])).unwrap_err(), "unknown flag: --chown");
        assert_eq!(
            set().parse(&words(&["--from=a", "--from=b"])).unwrap_err(),
            "duplicate flag specified: --from"
        );
        assert_eq!(
            set().parse(&words(&["--from"])).unwrap_err(),
            "missing a value on flag: --from"
        );
        assert_eq!(set().parse(&words(&["-x"])).unwrap_err(), "arg should start with -- : -x");
    }

    #[test]
    fn double_dash_ends_flags() {
        let mut flags = set();
        flags.parse(&words(&["--link", "--", "--bogus"])).unwrap();
        assert_eq!(flags.bool("link"), Some(true));
    }
}
