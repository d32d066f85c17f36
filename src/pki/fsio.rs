//! File-system helpers: optional reads, atomic writes with fixed modes, private
//! directories.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{PkiError, Result};

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const KEY_MODE: u32 = 0o600;
pub(crate) const CERT_MODE: u32 = 0o644;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_path_buf();
    move |source| PkiError::Io {
        action,
        path,
        source,
    }
}

/// `Ok(None)` if the file does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

pub(crate) fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("stat", path)(e)),
    }
}

/// Write `data` to `path` atomically: a temporary file in the same directory,
/// created with `mode` (so a key is never readable by others, not even
/// briefly), fsynced, renamed over `path`, then the directory fsynced.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = parent.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove stale temporary file", &tmp)(e)),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        // The umask may have stripped bits from `mode`; set it exactly.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(io("set permissions on", &tmp))?;
        f.write_all(data).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename temporary file onto", path))?;
        if let Ok(d) = File::open(parent) {
            // Best effort: persist the rename.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create `path` (and parents) with mode 0700 if missing. An existing
/// directory readable by group/others is tightened to 0700; returns the path
/// if that happened.
pub(crate) fn ensure_private_dir(path: &Path) -> Result<Option<PathBuf>> {
    match fs::metadata(path) {
        Ok(md) if md.is_dir() => tighten(path, md.permissions().mode(), DIR_MODE),
        Ok(_) => Err(PkiError::Io {
            action: "use as directory",
            path: path.to_path_buf(),
            source: std::io::Error::new(ErrorKind::AlreadyExists, "exists and is not a directory"),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(io("create directory", path))?;
            // Explicit chmod: the umask may have changed the mode.
            fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
                .map_err(io("set permissions on", path))?;
            Ok(None)
        }
        Err(e) => Err(io("stat", path)(e)),
    }
}

/// If the file at `path` grants group/other any access, chmod it to `want`.
pub(crate) fn tighten_key(path: &Path) -> Result<Option<PathBuf>> {
    let md = fs::metadata(path).map_err(io("stat", path))?;
    tighten(path, md.permissions().mode(), KEY_MODE)
}

fn tighten(path: &Path, mode: u32, want: u32) -> Result<Option<PathBuf>> {
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, Permissions::from_mode(want))
        .map_err(io("set permissions on", path))?;
    Ok(Some(path.to_path_buf()))
}
