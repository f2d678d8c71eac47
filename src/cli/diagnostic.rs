//! Dockerfile errors shown the way users read them: file, line, cause, and the lines at
//! fault with a marker, rendered by `annotate-snippets`.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use kiln_frontend::Span;

/// A frontend error located in a Dockerfile.
#[derive(Debug, thiserror::Error)]
#[error("{rendered}")]
pub struct DockerfileError {
    rendered: String,
}

impl DockerfileError {
    /// `file:line: cause`, followed by the offending lines when the span is known.
    pub fn new(file: &str, text: &str, span: Option<Span>, cause: &str) -> Self {
        let Some(span) = span.filter(|s| s.is_known()) else {
            return DockerfileError { rendered: format!("error: {file}: {cause}") };
        };
        let line_starts: Vec<usize> =
            std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let start = line_starts.get(span.start_line - 1).copied().unwrap_or(text.len());
        let end = line_starts.get(span.end_line).map(|e| e.saturating_sub(1)).unwrap_or(text.len());
        let end = end.max(start).min(text.len());
        let title = format!("{file}:{}: {cause}", span.start_line);
        if start >= text.len() {
            return DockerfileError { rendered: format!("error: {title}") };
        }
        let report = [Level::ERROR.primary_title(&title).element(
            Snippet::source(text).path(file).annotation(AnnotationKind::Primary.span(start..end)),
        )];
        DockerfileError { rendered: Renderer::plain().render(&report).to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_line_and_cause() {
        let text = "FROM busybox\nRUNN echo hi\n";
        let err = DockerfileError::new(
            "Dockerfile",
            text,
            Some(Span::line(2)),
            "unknown instruction: RUNN",
        );
        let shown = err.to_string();
        assert!(shown.contains("Dockerfile:2: unknown instruction: RUNN"), "{shown}");
        assert!(shown.contains("RUNN echo hi"), "{shown}");
    }

    #[test]
    fn without_a_line() {
        let err = DockerfileError::new(
            "Dockerfile",
            "FROM a\n",
            None,
            "target stage \"x\" could not be found",
        );
        assert_eq!(err.to_string(), "error: Dockerfile: target stage \"x\" could not be found");
    }
}
