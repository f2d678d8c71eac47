//! Word expansion and splitting with BuildKit rules.
