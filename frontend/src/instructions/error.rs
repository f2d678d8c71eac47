//! The error every instruction-level check returns: what is wrong, and on which lines.

use crate::Span;

/// A Dockerfile instruction that cannot mean anything: unknown instruction, bad or duplicate
/// flag, wrong argument count, malformed `--mount` ...
///
/// `Display` is the cause alone, lowercase where kiln words it; callers add the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InstructionError {
    pub message: String,
    pub span: Span,
}

impl InstructionError {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        InstructionError { message: message.into(), span }
    }
}
