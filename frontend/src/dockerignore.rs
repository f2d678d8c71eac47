//! `.dockerignore` pattern semantics (filled by the dockerignore work).
