//! kiln content-addressed store (filled by issue 3).
