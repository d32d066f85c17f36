//! Where an app's files come from: the catalog shipped inside the binary (`catalog/`), or a
//! directory the user names, so an app can be added without rebuilding.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

static CATALOG: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/catalog");

/// The directory of shared Kubernetes object templates inside the catalog.
pub const BASE: &str = "_base";

#[derive(Debug, Clone)]
enum Location {
    Embedded(&'static Dir<'static>),
    Disk(PathBuf),
}

/// One app's directory.
#[derive(Debug, Clone)]
pub struct AppFiles {
    /// The directory's name, which must be the app's `name`.
    pub name: String,
    location: Location,
}

impl AppFiles {
    pub fn embedded(name: &str) -> Option<AppFiles> {
        if name.starts_with('_') || name.contains('/') {
            return None;
        }
        CATALOG.get_dir(name).map(|dir| AppFiles {
            name: name.to_string(),
            location: Location::Embedded(dir),
        })
    }

    pub fn from_dir(path: &Path) -> AppFiles {
        let name = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        AppFiles {
            name,
            location: Location::Disk(path.to_path_buf()),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.location, Location::Embedded(_))
    }

    /// The directory as the user should see it (`catalog/spark`, `./my-catalog/foo`).
    pub fn dir_display(&self) -> String {
        match &self.location {
            Location::Embedded(_) => format!("catalog/{}", self.name),
            Location::Disk(p) => p.display().to_string(),
        }
    }

    /// A file of the app as the user should see it.
    pub fn display(&self, rel: &str) -> String {
        match &self.location {
            Location::Embedded(_) => format!("catalog/{}/{rel}", self.name),
            Location::Disk(p) => p.join(rel).display().to_string(),
        }
    }

    /// A file's text: `Ok(None)` when there is no such file, `Err` when it cannot be read.
    pub fn read(&self, rel: &str) -> Result<Option<String>, String> {
        match &self.location {
            Location::Embedded(dir) => {
                let path = dir.path().join(rel);
                match CATALOG.get_file(&path) {
                    None => Ok(None),
                    Some(f) => f
                        .contents_utf8()
                        .map(|t| Some(t.to_string()))
                        .ok_or_else(|| "not UTF-8 text".to_string()),
                }
            }
            Location::Disk(dir) => match std::fs::read(dir.join(rel)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
                Ok(bytes) => String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| "not UTF-8 text".to_string()),
            },
        }
    }
}

/// The apps shipped in the binary, by name.
pub fn embedded_names() -> Vec<String> {
    let mut names: Vec<String> = CATALOG
        .dirs()
        .filter_map(|d| d.path().file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    names.sort();
    names
}

/// The shared object templates (`catalog/_base/*`), as (name, text).
pub fn base_templates() -> Vec<(String, String)> {
    let Some(dir) = CATALOG.get_dir(BASE) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = dir
        .files()
        .filter_map(|f| {
            let name = f.path().file_name()?.to_string_lossy().into_owned();
            Some((name, f.contents_utf8()?.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Whether a command-line argument names a directory rather than a shipped app: anything with
/// a `/` (`./foo`, `dir/foo`) or `.`/`..`; a bare word is always a catalog name.
pub fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg == "." || arg == ".."
}
