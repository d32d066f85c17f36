//! Files on the control machine that the inventory names: `~` and relative-path expansion,
//! and the checks a private key must pass before any connection is tried.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The directory relative paths in `inventory_file` are taken from, made absolute so the
/// resolved paths do not depend on where director-boot later runs from.
pub fn base_dir(inventory_file: &Path) -> PathBuf {
    let parent = match inventory_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// `~/x` -> home/x, `x` -> base/x, `/x` stays.
pub fn expand(text: &str, base: &Path, home: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(rest) = text.strip_prefix('~') {
        let rest = match rest.strip_prefix('/') {
            Some(r) => r,
            None if rest.is_empty() => "",
            None => {
                return Err(format!(
                    "`{text}`: only `~/` (your own home) is expanded; write the full path"
                ));
            }
        };
        let home =
            home.ok_or("`~` cannot be expanded: no home directory is known; write the full path")?;
        return Ok(home.join(rest));
    }
    // Drop `.` components so messages show `/inv/key`, not `/inv/./key`.
    Ok(base
        .join(text)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect())
}

/// Why ssh could not use `path` as a private key, if it could not.
pub fn check_key(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| {
        format!(
            "cannot read {shown}: {}: give a readable private key, or remove identity_file to use the ssh-agent",
            reason(&e)
        )
    })?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "{shown} is {what}: give the private key file itself"
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} can be read by group or others (mode {mode:03o}) and ssh refuses such keys: run `chmod 600 {shown}`"
        ));
    }
    File::open(path).map_err(|e| {
        format!(
            "cannot read {shown}: {}: run director-boot as the key's owner, or fix its ownership",
            reason(&e)
        )
    })?;
    Ok(())
}

/// A file the inventory names that may not exist yet, but must not be something else.
pub fn check_writable_file(path: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "{} is a directory: give a file path (it is created if missing)",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// The OS error without its "(os error N)" suffix, which says nothing to a user.
fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotADirectory => "a parent of it is not a directory".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_home_and_relative_paths() {
        let home = Path::new("/home/ops");
        let base = Path::new("/inv");
        assert_eq!(
            expand("~/.ssh/id", base, Some(home)).unwrap(),
            PathBuf::from("/home/ops/.ssh/id")
        );
        assert_eq!(
            expand("~", base, Some(home)).unwrap(),
            PathBuf::from("/home/ops")
        );
        assert_eq!(
            expand("keys/id", base, Some(home)).unwrap(),
            PathBuf::from("/inv/keys/id")
        );
        assert_eq!(expand("/k", base, Some(home)).unwrap(), PathBuf::from("/k"));
        assert_eq!(
            expand("./keys/./id", base, Some(home)).unwrap(),
            PathBuf::from("/inv/keys/id")
        );
        assert_eq!(
            expand("~bob/id", base, Some(home)).unwrap_err(),
            "`~bob/id`: only `~/` (your own home) is expanded; write the full path"
        );
        assert!(expand("~/id", base, None).is_err());
    }

    #[test]
    fn base_dir_is_absolute() {
        assert!(base_dir(Path::new("inv.yaml")).is_absolute());
        assert_eq!(base_dir(Path::new("/a/b/inv.yaml")), PathBuf::from("/a/b"));
    }
}
