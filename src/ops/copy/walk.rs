//! The walk of one COPY source tree: which entries a copy creates, in which order.
//!
//! This is fsutil's `copier.copy` decision logic, separated from the writing so that the
//! copy ([`super::tree`]) and the cache key ([`super::digest`]) see exactly the same entries:
//!
//! - paths are matched relative to the source item (`rel`, `a/b`); the item itself (empty
//!   `rel`) is always included;
//! - `--exclude` patterns ([`IgnoreFile`] semantics: a match on a path or a parent) leave an
//!   entry out; an excluded directory is not entered unless some `!` pattern could
//!   re-include something below it;
//! - an include pattern (`--parents`) keeps only what it matches (or what is below a match);
//!   directories on the way to a match are created too, when the match is met, with their
//!   own metadata ([`Visit::Parent`]); nothing outside the pattern's literal prefix is
//!   walked;
//! - symlinks inside the tree are entries, never followed; children are visited sorted by
//!   name.

use super::CopyError;
use crate::fs::{Entry, MergedRoot, RootPath};
use kiln_frontend::dockerignore::IgnoreFile;

/// What to keep of a source tree.
#[derive(Debug, Clone, Default)]
pub(super) struct Rules {
    pub exclude: Option<IgnoreFile>,
    pub include: Option<Include>,
}

/// A `--parents` pattern, relative to the source item.
#[derive(Debug, Clone)]
pub(super) struct Include {
    pub matcher: IgnoreFile,
    /// The pattern's leading components without wildcards: nothing outside them can match.
    pub literal: Vec<String>,
}

impl Include {
    pub fn new(pattern: &str) -> Result<Self, CopyError> {
        let matcher = IgnoreFile::parse(pattern)
            .map_err(|source| CopyError::Pattern { pattern: pattern.to_string(), source })?;
        let literal = pattern
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .take_while(|c| !c.contains(['*', '?', '[', '\\']))
            .map(str::to_string)
            .collect();
        Ok(Include { matcher, literal })
    }

    /// Whether something at or below `rel` could match.
    fn may_match_within(&self, rel: &RootPath) -> bool {
        rel.components()
            .iter()
            .zip(self.literal.iter())
            .all(|(have, want)| have.to_string_lossy() == want.as_str())
    }
}

impl Rules {
    fn exclude_has_exceptions(&self) -> bool {
        self.exclude.as_ref().is_some_and(|e| e.patterns().iter().any(|p| p.is_exception()))
    }
}

/// How an entry is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    /// Selected for itself (or the item root).
    Direct,
    /// Not selected, but a directory on the way to something selected.
    Parent,
}

/// Walks the tree of `top` (an entry of `source`), calling `visit` for every entry the copy
/// creates, parents before children.
pub(super) fn walk(
    source: &MergedRoot,
    top: &Entry,
    rules: &Rules,
    visit: &mut dyn FnMut(&RootPath, &Entry, Visit) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let mut walker = Walker {
        source,
        rules,
        exceptions: rules.exclude_has_exceptions(),
        pending: Vec::new(),
        visit,
    };
    walker.entry(RootPath::root(), top)
}

struct Walker<'a> {
    source: &'a MergedRoot,
    rules: &'a Rules,
    exceptions: bool,
    /// Directories entered, with whether they were already visited.
    pending: Vec<(RootPath, Entry, bool)>,
    visit: &'a mut dyn FnMut(&RootPath, &Entry, Visit) -> Result<(), CopyError>,
}

impl Walker<'_> {
    fn entry(&mut self, rel: RootPath, entry: &Entry) -> Result<(), CopyError> {
        let (include, excluded) = if rel.is_root() {
            (true, false)
        } else {
            let text = rel.to_slash_string();
            let mut include =
                self.rules.include.as_ref().is_none_or(|i| i.matcher.is_excluded(&text));
            let excluded = self.rules.exclude.as_ref().is_some_and(|e| e.is_excluded(&text));
            if excluded {
                include = false;
            }
            if !include {
                let can_skip = match &self.rules.include {
                    None => !self.exceptions,
                    Some(inc) => !inc.may_match_within(&rel) && !self.exceptions,
                };
                if can_skip {
                    return Ok(());
                }
            }
            (include, excluded)
        };
        if !include && !entry.is_dir() {
            return Ok(());
        }
        if include {
            for (path, parent, visited) in self.pending.iter_mut() {
                if !*visited {
                    (self.visit)(path, parent, Visit::Parent)?;
                    *visited = true;
                }
            }
        }
        if !entry.is_dir() {
            return (self.visit)(&rel, entry, Visit::Direct);
        }
        if include {
            (self.visit)(&rel, entry, Visit::Direct)?;
        }
        if excluded && !self.exceptions {
            return Ok(());
        }
        self.pending.push((rel.clone(), entry.clone(), include));
        let children = self
            .source
            .list(entry)
            .map_err(|source| CopyError::Source { path: entry.path().to_string(), source })?;
        for (name, child) in children {
            self.entry(rel.join(name), &child)?;
        }
        self.pending.pop();
        Ok(())
    }
}
