//! Filesystem views and writers for the steps that touch files without running anything:
//! COPY, ADD and WORKDIR.
//!
//! - [`MergedRoot`] (`merged`): a read-only view of a stack of layer directories in overlay
//!   lower format (or of one plain directory, a build context), with symlinks resolved
//!   inside the root and host access confined to the layer directories.
//! - [`LayerDir`] (`layer_dir`): a new, initially empty layer directory written over a
//!   root, confined to itself, replicating the existing directories it writes into.
//! - `archive`: ADD's tar detection and extraction into a [`LayerDir`].
//! - `users`: `/etc/passwd` and `/etc/group` lookups with BuildKit's rules for `USER` and
//!   for `--chown`.
//! - `mode`: `--chmod` values, octal or symbolic.
//! - `glob`: COPY source wildcards (Go's `filepath.Match`).
//! - [`RootPath`] (`path`): a path inside a root, made of plain components only.
//!
//! Every path these modules take or give is a path inside a root, never a host path, and
//! nothing here reads or writes outside the directories it was opened on.

pub mod archive;
mod error;
pub mod glob;
pub mod layer_dir;
pub mod merged;
pub mod mode;
mod path;
pub mod users;
pub mod xattr;

#[cfg(test)]
pub(crate) mod testutil;

pub use error::FsError;
pub use layer_dir::{LayerDir, NewMeta};
pub use merged::{Entry, FileKind, MergedRoot, Resolved, Stat, Time};
pub use path::{RootPath, is_plain};
pub use users::{ExecUser, Owner, lookup_user, resolve_chown};
