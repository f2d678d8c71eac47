//! Errors of the syntax layer.
//!
//! Invariant: every [`SyntaxError`] carries a known [`Span`] (1-based lines, `start_line >= 1`)
//! that lies within the input. Errors found at end of input point at the last line; an empty
//! input gets line 1. `Display` is the bare message, lowercase and without a trailing period:
//! the caller adds the file name and [`SyntaxError::span`].

use crate::Span;
use thiserror::Error;

/// Why a Dockerfile could not be turned into a syntax tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyntaxError {
    #[error("dockerfile is not valid utf-8")]
    InvalidUtf8 { span: Span },

    #[error("dockerfile line greater than max allowed size of {}", super::lines::MAX_LINE_LEN - 1)]
    LineTooLong { span: Span },

    #[error("only one {name} parser directive can be used")]
    DuplicateDirective { name: String, span: Span },

    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscape { value: String, span: Span },

    #[error("file with no instructions")]
    NoInstructions { span: Span },

    #[error("unterminated heredoc")]
    UnterminatedHeredoc { span: Span },

    /// The word after `<<` could not be read (an unbalanced quote or `${`).
    #[error("failed to process heredoc word {word:?}: {reason}")]
    HeredocWord { word: String, reason: String, span: Span },

    /// An instruction's arguments do not fit its form (see [`ArgumentError`]).
    #[error("{error}")]
    Arguments { error: ArgumentError, span: Span },
}

impl SyntaxError {
    /// The lines the error is about; always known (`start_line >= 1`).
    pub fn span(&self) -> Span {
        match self {
            SyntaxError::InvalidUtf8 { span }
            | SyntaxError::LineTooLong { span }
            | SyntaxError::DuplicateDirective { span, .. }
            | SyntaxError::InvalidEscape { span, .. }
            | SyntaxError::NoInstructions { span }
            | SyntaxError::UnterminatedHeredoc { span }
            | SyntaxError::HeredocWord { span, .. }
            | SyntaxError::Arguments { span, .. } => *span,
        }
    }
}

/// An instruction whose arguments cannot be split by the instruction's form. It becomes a
/// [`SyntaxError::Arguments`] once the lines of the instruction are known.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArgumentError {
    #[error("when using json array syntax, arrays must be comprised of strings only")]
    NotStringArray,

    /// `ENV name` / `LABEL name`: the legacy `KEY value` form without a value.
    #[error("{instruction} must have two arguments")]
    MissingValue { instruction: &'static str },

    /// `ENV a=1 b`: a word without `=` in the `name=value` form.
    #[error("syntax error - can't find = in {word:?}, must be of the form: name=value")]
    MissingEquals { word: String },

    /// `ONBUILD ONBUILD ...` beyond any sensible depth (BuildKit refuses even two levels when
    /// it types the instructions; the limit keeps parsing free of deep recursion).
    #[error("onbuild instructions nested more than {limit} deep")]
    OnbuildTooDeep { limit: usize },
}
