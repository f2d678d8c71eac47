//! The two filters of a context walk, each decided directory by directory from the root.
//!
//! - **Include paths** ([`IncludeFilter`]): the paths the build reads (COPY sources, bind
//!   mount sources), absolute from the context root, possibly with COPY wildcards. An entry
//!   is included when it matches one of them or lies beneath a match; a directory on the way
//!   to a possible match is walked but not itself included (its entry is still recorded when
//!   something beneath it is, as fsutil does for parents). BuildKit hands the same paths to
//!   fsutil as `FollowPaths`; matching is component by component with COPY's wildcard rules
//!   ([`super::wildcard`]), so what the walk keeps is a superset of what any COPY of those
//!   paths selects.
//! - **Exclusions** ([`ExcludeState`]): the `.dockerignore` patterns with fsutil's walker
//!   rules (`patternmatcher.MatchesUsingParentResults`): the last pattern that matched the
//!   path or a parent decides, and a pattern is consulted only when it could change the
//!   running answer. This is [`IgnoreFile::is_excluded`] computed incrementally, reusing the
//!   parent's per-pattern results instead of starting from the root for every path.

use super::ContextError;
use super::wildcard::{Wildcard, contains_wildcards};
use kiln_frontend::dockerignore::IgnoreFile;

/// One component of an include path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// A name without wildcards, compared byte for byte (backslashes are literal, as in
    /// BuildKit's copy, which joins these components as they are).
    Literal(Vec<u8>),
    Wildcard(Wildcard),
}

impl Component {
    /// Reads one component as written in a COPY source.
    pub fn parse(text: &str, whole: &str) -> Result<Component, ContextError> {
        if !contains_wildcards(text) {
            return Ok(Component::Literal(text.as_bytes().to_vec()));
        }
        Wildcard::parse(text)
            .map(Component::Wildcard)
            .map_err(|cause| ContextError::InvalidPattern { pattern: whole.to_string(), cause })
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        match self {
            Component::Literal(literal) => literal == name,
            Component::Wildcard(wildcard) => wildcard.matches(&String::from_utf8_lossy(name)),
        }
    }
}

/// The include paths of one walk. An empty filter includes everything.
#[derive(Debug, Clone, Default)]
pub struct IncludeFilter {
    /// Each path as its components; an empty path (the root) is never stored: it turns the
    /// filter off.
    paths: Vec<Vec<Component>>,
    everything: bool,
}

/// Where an entry stands with respect to the include paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inclusion {
    /// It matches an include path or lies beneath a match.
    Included,
    /// A directory that may hold a match: walk it, but keep its own entry only as a parent.
    /// Holds the indices of the paths whose first components it matched.
    OnTheWay(Vec<usize>),
    /// Neither: skip it and everything beneath it.
    Outside,
}

impl IncludeFilter {
    /// A filter from the include paths as the frontend writes them (`/src`, `/*.go`, `/`).
    /// No paths, or `/` among them, means everything, as BuildKit reads an empty
    /// `FollowPaths`.
    pub fn new(include_paths: &[String]) -> Result<IncludeFilter, ContextError> {
        let mut filter = IncludeFilter::default();
        for path in include_paths {
            let components = super::paths::clean_components(path)
                .iter()
                .map(|c| Component::parse(c, path))
                .collect::<Result<Vec<_>, _>>()?;
            filter.push(components);
        }
        filter.everything |= include_paths.is_empty();
        Ok(filter)
    }

    /// Adds a path (from a followed symlink, say).
    pub fn push(&mut self, components: Vec<Component>) {
        if components.is_empty() {
            self.everything = true;
        } else if !self.paths.contains(&components) {
            self.paths.push(components);
        }
    }

    pub fn paths(&self) -> &[Vec<Component>] {
        &self.paths
    }

    pub fn includes_everything(&self) -> bool {
        self.everything
    }

    /// The standing of the context root.
    pub fn root(&self) -> Inclusion {
        if self.everything {
            Inclusion::Included
        } else {
            Inclusion::OnTheWay((0..self.paths.len()).collect())
        }
    }

    /// The standing of the entry `name` inside a directory standing at `parent`, `depth`
    /// being the number of components of the directory's own path.
    pub fn child(&self, parent: &Inclusion, depth: usize, name: &[u8]) -> Inclusion {
        let candidates = match parent {
            Inclusion::Included => return Inclusion::Included,
            Inclusion::Outside => return Inclusion::Outside,
            Inclusion::OnTheWay(candidates) => candidates,
        };
        let mut still = Vec::new();
        for &index in candidates {
            let path = &self.paths[index];
            if path[depth].matches(name) {
                if path.len() == depth + 1 {
                    return Inclusion::Included;
                }
                still.push(index);
            }
        }
        if still.is_empty() { Inclusion::Outside } else { Inclusion::OnTheWay(still) }
    }
}

/// The `.dockerignore` decision for one path, with the per-pattern results its children
/// start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExcludeState {
    /// For each pattern: whether it matched this path or a parent (only set when consulted).
    matched: Vec<bool>,
    pub excluded: bool,
}

impl ExcludeState {
    /// The state of the context root: nothing matched, nothing excluded.
    pub fn root(ignore: &IgnoreFile) -> ExcludeState {
        ExcludeState { matched: vec![false; ignore.patterns().len()], excluded: false }
    }

    /// The state of `path` (slash-separated, relative to the root), a child of `self`'s path.
    pub fn child(&self, ignore: &IgnoreFile, path: &str) -> ExcludeState {
        let mut matched = self.matched.clone();
        let mut excluded = false;
        for (pattern, hit) in ignore.patterns().iter().zip(matched.iter_mut()) {
            // Consulted only when it could change the answer; a match at a parent sticks.
            if !*hit && pattern.is_exception() == excluded {
                *hit = pattern.matches(path);
            }
            if *hit {
                excluded = !pattern.is_exception();
            }
        }
        ExcludeState { matched, excluded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(paths: &[&str]) -> IncludeFilter {
        IncludeFilter::new(&paths.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// The standing of a slash-separated path, walking from the root.
    fn standing(filter: &IncludeFilter, path: &str) -> Inclusion {
        let mut state = filter.root();
        for (depth, name) in path.split('/').enumerate() {
            state = filter.child(&state, depth, name.as_bytes());
        }
        state
    }

    #[test]
    fn literal_include_paths() {
        let f = filter(&["/src", "/go.mod"]);
        assert_eq!(standing(&f, "src"), Inclusion::Included);
        assert_eq!(standing(&f, "src/a/b.go"), Inclusion::Included);
        assert_eq!(standing(&f, "go.mod"), Inclusion::Included);
        assert_eq!(standing(&f, "go.sum"), Inclusion::Outside);
        assert_eq!(standing(&f, "srcx"), Inclusion::Outside);
    }

    #[test]
    fn nested_and_wildcard_include_paths() {
        let f = filter(&["/cmd/app/main.go", "/pkg/*/*.go"]);
        assert_eq!(standing(&f, "cmd"), Inclusion::OnTheWay(vec![0]));
        assert_eq!(standing(&f, "cmd/app"), Inclusion::OnTheWay(vec![0]));
        assert_eq!(standing(&f, "cmd/app/main.go"), Inclusion::Included);
        assert_eq!(standing(&f, "cmd/app/other.go"), Inclusion::Outside);
        assert_eq!(standing(&f, "pkg/x"), Inclusion::OnTheWay(vec![1]));
        assert_eq!(standing(&f, "pkg/x/a.go"), Inclusion::Included);
        assert_eq!(standing(&f, "pkg/x/a.rs"), Inclusion::Outside);
        assert_eq!(standing(&f, "pkg/a.go"), Inclusion::OnTheWay(vec![1]));
    }

    #[test]
    fn root_or_nothing_includes_everything() {
        assert!(filter(&["/"]).includes_everything());
        assert!(filter(&["/src", "/"]).includes_everything());
        assert!(filter(&[]).includes_everything());
        assert!(filter(&["/./.."]).includes_everything());
        assert_eq!(standing(&filter(&["/"]), "any/thing"), Inclusion::Included);
    }

    #[test]
    fn malformed_wildcards_are_errors() {
        let err = IncludeFilter::new(&["/src/[".to_string()]).unwrap_err();
        assert_eq!(err.to_string(), "invalid COPY source \"/src/[\": `[` has no closing `]`");
    }

    /// The incremental decision agrees with the frontend's from-the-root one.
    #[test]
    fn incremental_exclusion_agrees_with_is_excluded() {
        let ignore = IgnoreFile::parse(
            "node_modules\n!node_modules/keep\n*.log\n!important.log\nbuild/**\n!build/out/*.txt\n\
             docs\n!docs/**/*.md\ndocs/private\n**/tmp\n",
        )
        .unwrap();
        let paths = [
            "node_modules/a/b",
            "node_modules/keep/x",
            "a.log",
            "important.log",
            "x/important.log",
            "build/out/a.txt",
            "build/out/a.bin",
            "build/other/a.txt",
            "docs/a.md",
            "docs/sub/b.md",
            "docs/private/c.md",
            "docs/x.txt",
            "src/tmp/f",
            "tmp",
            "src/main.rs",
        ];
        for path in paths {
            let mut state = ExcludeState::root(&ignore);
            let mut prefix = String::new();
            for name in path.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(name);
                state = state.child(&ignore, &prefix);
                assert_eq!(state.excluded, ignore.is_excluded(&prefix), "{prefix}");
            }
        }
    }
}
