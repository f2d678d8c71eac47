//! Putting outputs in place so that a failed export leaves nothing behind.
//!
//! - Files ([`write_file_atomically`]): written to a temp file in the destination's
//!   directory (`.kiln-out-*`), flushed and fsynced, made 0644 and renamed over the
//!   destination only when everything succeeded; on error the temp file is removed and an
//!   existing destination is untouched. A destination that is a device, FIFO or socket
//!   (`dest=/dev/null`) is written into instead: a rename would replace the node.
//! - Directories ([`write_dir_atomically`]): filled in a temp directory beside the
//!   destination (`.kiln-local-*`). A missing destination is created by one rename. An
//!   existing one is merged into, as BuildKit's local exporter does: each entry of the new
//!   tree is renamed into place, replacing what has its name (a directory over a directory
//!   is merged instead), and other files in the destination are left alone. Nothing under
//!   the destination changes until the new tree is complete. Entries of the destination are
//!   never followed: a symlink there is replaced, not written through.

use super::ExportError;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn io_error<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ExportError + 'p {
    move |source| ExportError::Io { op, path: path.to_path_buf(), source }
}

/// The directory a destination lives in (created when missing).
fn parent_dir(dest: &Path) -> Result<PathBuf, ExportError> {
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_error("create directory", &parent))?;
    Ok(parent)
}

/// Runs `write` on a temp file beside `dest` and renames it to `dest` if `write` succeeds.
pub fn write_file_atomically<T>(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    match fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            return Err(ExportError::DestIsDirectory { path: dest.to_path_buf() });
        }
        // A device (`dest=/dev/null`), FIFO or socket: renaming over it would replace the
        // node itself (as root, the host's /dev/null by a regular file). Write into it.
        Ok(meta) if !meta.is_file() => return write_in_place(dest, write),
        _ => {}
    }
    let parent = parent_dir(dest)?;
    let temp = tempfile::Builder::new()
        .prefix(".kiln-out-")
        .tempfile_in(&parent)
        .map_err(io_error("create a temporary file in", &parent))?;
    let mut buffered = BufWriter::with_capacity(256 * 1024, temp);
    let result = write(&mut buffered)?;
    let temp = buffered.into_inner().map_err(|err| ExportError::Write(err.into_error()))?;
    let temp_path = temp.path().to_path_buf();
    temp.as_file().sync_all().map_err(io_error("fsync", &temp_path))?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_error("chmod", &temp_path))?;
    temp.persist(dest).map_err(|err| ExportError::Io {
        op: "rename into place",
        path: dest.to_path_buf(),
        source: err.error,
    })?;
    Ok(result)
}

/// Runs `write` on `dest` opened for writing as it is (a special file, not replaced).
fn write_in_place<T>(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    let file = File::options().write(true).open(dest).map_err(io_error("open", dest))?;
    let mut buffered = BufWriter::with_capacity(256 * 1024, file);
    let result = write(&mut buffered)?;
    buffered.flush().map_err(ExportError::Write)?;
    Ok(result)
}

/// Runs `fill` on a temp directory beside `dest`, then moves its contents into `dest`.
pub fn write_dir_atomically<T>(
    dest: &Path,
    fill: impl FnOnce(&Path) -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    let existing = match fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => true,
        Ok(_) => return Err(ExportError::DestNotDirectory { path: dest.to_path_buf() }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => return Err(io_error("inspect", dest)(err)),
    };
    let parent = parent_dir(dest)?;
    let temp = tempfile::Builder::new()
        .prefix(".kiln-local-")
        .tempdir_in(&parent)
        .map_err(io_error("create a temporary directory in", &parent))?;
    let result = fill(temp.path())?;
    if existing {
        merge(temp.path(), dest)?;
    } else {
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755))
            .map_err(io_error("chmod", temp.path()))?;
        let tree = temp.keep();
        if let Err(source) = fs::rename(&tree, dest) {
            let _ = fs::remove_dir_all(&tree);
            return Err(ExportError::Io {
                op: "rename into place",
                path: dest.to_path_buf(),
                source,
            });
        }
    }
    Ok(result)
}

/// Moves every entry of `src` into `dst` (see the module docs), `src` left empty.
fn merge(src: &Path, dst: &Path) -> Result<(), ExportError> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(io_error("read directory", src))?
        .collect::<Result<_, _>>()
        .map_err(io_error("read directory", src))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let from_meta = fs::symlink_metadata(&from).map_err(io_error("inspect", &from))?;
        match fs::symlink_metadata(&to) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error("inspect", &to)(err)),
            Ok(to_meta) if to_meta.is_dir() && from_meta.is_dir() => {
                merge(&from, &to)?;
                copy_dir_metadata(&from_meta, &to)?;
                continue;
            }
            Ok(to_meta) if to_meta.is_dir() => {
                fs::remove_dir_all(&to).map_err(io_error("replace", &to))?;
            }
            Ok(_) if from_meta.is_dir() => {
                fs::remove_file(&to).map_err(io_error("replace", &to))?
            }
            Ok(_) => {} // rename replaces files and symlinks atomically
        }
        fs::rename(&from, &to).map_err(io_error("move into place", &to))?;
    }
    Ok(())
}

/// Gives the existing directory `to` the owner, mode and mtime the new tree has for it.
fn copy_dir_metadata(from: &fs::Metadata, to: &Path) -> Result<(), ExportError> {
    // Not following symlinks: `to` was just checked to be a directory, not a link.
    std::os::unix::fs::lchown(to, Some(from.uid()), Some(from.gid()))
        .map_err(io_error("chown", to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(from.mode() & 0o7777))
        .map_err(io_error("chmod", to))?;
    let modified = from.modified().map_err(io_error("inspect", to))?;
    File::open(to)
        .and_then(|dir| dir.set_modified(modified))
        .map_err(io_error("set the mtime of", to))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_appears_only_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.tar");
        let err = write_file_atomically(&dest, |w| {
            w.write_all(b"partial").unwrap();
            Err::<(), _>(ExportError::NoStore)
        })
        .unwrap_err();
        assert!(matches!(err, ExportError::NoStore));
        assert!(!dest.exists());
        assert!(names(&dir.path().join("sub")).is_empty(), "temp file removed");

        let n = write_file_atomically(&dest, |w| {
            w.write_all(b"whole").unwrap();
            Ok(5)
        })
        .unwrap();
        assert_eq!(n, 5);
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o644);

        // A failure later keeps the earlier file.
        write_file_atomically(&dest, |_| Err::<(), _>(ExportError::NoStore)).unwrap_err();
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        assert_eq!(names(&dir.path().join("sub")), ["out.tar"]);
    }

    #[test]
    fn a_special_file_is_written_into_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_file_atomically(&fifo, |w| w.write_all(b"through").map_err(ExportError::Write))
            .unwrap();
        assert_eq!(reader.join().unwrap(), b"through");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
        assert_eq!(names(dir.path()), ["fifo"], "no temp file left");
    }

    #[test]
    fn file_over_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_file_atomically(dir.path(), |_| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), format!("output file {} is a directory", dir.path().display()));
    }

    #[test]
    fn new_directory_is_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        write_dir_atomically(&dest, |tree| {
            fs::write(tree.join("a"), b"1").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(names(&dest), ["a"]);
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(names(dir.path()), ["out"]);

        let dest2 = dir.path().join("failed");
        write_dir_atomically(&dest2, |tree| {
            fs::write(tree.join("a"), b"1").unwrap();
            Err::<(), _>(ExportError::NoStore)
        })
        .unwrap_err();
        assert_eq!(names(dir.path()), ["out"], "nothing left behind");
    }

    #[test]
    fn existing_directory_is_merged_into() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        fs::create_dir_all(dest.join("etc")).unwrap();
        fs::write(dest.join("etc/keep"), b"mine").unwrap();
        fs::write(dest.join("etc/passwd"), b"old").unwrap();
        fs::write(dest.join("user-file"), b"mine").unwrap();
        fs::create_dir(dest.join("bin")).unwrap();
        fs::write(dest.join("bin/old"), b"x").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        symlink(&outside, dest.join("lib")).unwrap();
        fs::write(dest.join("dir-here"), b"file").unwrap();

        write_dir_atomically(&dest, |tree| {
            fs::create_dir(tree.join("etc")).unwrap();
            fs::set_permissions(tree.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
            fs::write(tree.join("etc/passwd"), b"new").unwrap();
            symlink("usr/bin", tree.join("bin")).unwrap();
            fs::create_dir(tree.join("lib")).unwrap();
            fs::write(tree.join("lib/libc"), b"so").unwrap();
            fs::create_dir(tree.join("dir-here")).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(names(&dest), ["bin", "dir-here", "etc", "lib", "user-file"]);
        assert_eq!(fs::read(dest.join("etc/passwd")).unwrap(), b"new");
        assert_eq!(fs::read(dest.join("etc/keep")).unwrap(), b"mine");
        assert_eq!(fs::metadata(dest.join("etc")).unwrap().permissions().mode() & 0o777, 0o750);
        assert_eq!(fs::read_link(dest.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(fs::symlink_metadata(dest.join("lib")).unwrap().is_dir(), "symlink replaced");
        assert!(names(&outside).is_empty(), "nothing written through the symlink");
        assert!(fs::metadata(dest.join("dir-here")).unwrap().is_dir());
        assert_eq!(names(dir.path()), ["out", "outside"], "temp directory removed");
    }

    #[test]
    fn directory_over_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("file");
        fs::write(&dest, b"x").unwrap();
        let err = write_dir_atomically(&dest, |_| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("output directory {} exists and is not a directory", dest.display())
        );
    }
}
