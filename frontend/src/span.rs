//! Source positions: every instruction and every error carries the lines it came from.

use serde::Serialize;

/// An inclusive range of 1-based line numbers in the Dockerfile.
///
/// Invariant: `start_line <= end_line`. A span of `0..=0` means "no position" and is used
/// only for instructions that did not come from the file's text (ONBUILD sub-instructions
/// keep BuildKit's zero lines; triggers of a base image have no lines in this file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
}

impl Span {
    pub fn new(start_line: usize, end_line: usize) -> Self {
        debug_assert!(start_line <= end_line);
        Span { start_line, end_line }
    }

    pub fn line(line: usize) -> Self {
        Span::new(line, line)
    }

    /// Whether this span points at real lines of the file.
    pub fn is_known(&self) -> bool {
        self.start_line > 0
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start_line == self.end_line {
            write!(f, "line {}", self.start_line)
        } else {
            write!(f, "lines {}-{}", self.start_line, self.end_line)
        }
    }
}
