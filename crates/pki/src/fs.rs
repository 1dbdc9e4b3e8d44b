//! Small file helpers: atomic writes with a fixed mode, reads that report the path, private
//! directories.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// Mode of every private key and kubeconfig we write.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of public files (certificates).
pub(crate) const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of the tls directory.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;

/// Read a whole file as UTF-8; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::io("read", path, err)),
    }
}

/// Write `contents` to `path` atomically: a temporary file in the same directory, created with
/// `mode`, flushed to disk, then renamed over `path`. A crash leaves either the old or the new
/// file, never a torn one.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = temporary_sibling(path);
    let result = write_new_file(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|err| Error::io("rename", &tmp, err)));
    if result.is_err() {
        // Best effort: do not leave a stray temporary file behind.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .map_err(|err| Error::io("create", path, err))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| Error::io("write", path, err))?;
    // The umask may have removed bits from `mode`, never added any; set it exactly anyway so
    // public files stay readable whatever the umask.
    set_mode(path, mode)
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::random();
    path.with_file_name(format!(".{name}.tmp-{}-{suffix:x}", std::process::id()))
}

/// Create `dir` (and its parents) if needed and make it private (0700).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|err| Error::io("create directory", dir, err))?;
    set_mode(dir, PRIVATE_DIR_MODE)
}

/// Create the parent directory of `path` if it is missing (normal permissions).
pub(crate) fn ensure_parent_dir(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(|err| Error::io("create directory", parent, err))
        }
        _ => Ok(()),
    }
}

/// Set the permission bits of `path` to exactly `mode` (no-op off unix).
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|err| Error::io("set permissions on", path, err))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// If an existing private file is readable by group or others, tighten it to 0600.
pub(crate) fn tighten_private_file(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = fs::metadata(path).map_err(|err| Error::io("inspect", path, err))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "private file was accessible to others; setting mode 0600");
            set_mode(path, PRIVATE_FILE_MODE)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
