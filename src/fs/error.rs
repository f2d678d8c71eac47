//! Errors of the filesystem views and writers.

use super::RootPath;
use std::io;
use std::path::PathBuf;

/// What went wrong reading a merged root or writing a layer directory. Paths are paths
/// inside the root (`/usr/bin/env`), never host paths, except for the root directories
/// themselves.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("open root directory {path}: {source}")]
    OpenRoot { path: PathBuf, source: io::Error },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: RootPath, source: io::Error },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: RootPath },
    #[error("{path}: not a directory")]
    NotADirectory { path: RootPath },
    #[error("{path} changed while it was being read")]
    Changed { path: RootPath },
}

impl FsError {
    pub(crate) fn io(op: &'static str, path: &RootPath, source: impl Into<io::Error>) -> Self {
        FsError::Io { op, path: path.clone(), source: source.into() }
    }
}
