//! `director-boot artifacts`: get the pinned upstream components into an artifact mirror
//! (fetch), check it (verify), show it (list), and hand it on (export in the upstream layout
//! for a site's web server, bundle as one archive for sites without one).
//!
//! A mirror directory holds:
//! - `upstream/<host>/<path>`: every download as the upstream release publishes it (kubespray's
//!   files_repo layout), checked against the pinned manifest;
//! - `bin/`, `cni/` (first architecture) and `arch/<arch>/...` (others): the unpacked binaries;
//! - `images/*.tar`: OCI archives;
//! - `manifest.json` (what `engine::artifacts` reads) and `pinned.yaml` (the manifest used).

pub mod bundle;
pub mod fetch;
pub mod mirror;
pub mod pinned;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactsError {
    #[error(
        "{file}: sha256 is {actual}, expected {expected} (from {manifest}); the download was discarded"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
        manifest: String,
    },
    #[error("{file}: no sha256 for {arch} in {manifest} (and no sha256_url)")]
    NoChecksum {
        file: String,
        arch: String,
        manifest: String,
    },
    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("{archive}: has no member {member}")]
    Member { archive: String, member: String },
    #[error("{file}: {reason}")]
    Manifest { file: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{count} of {total} downloads failed:\n  {list}")]
    Several {
        count: usize,
        total: usize,
        list: String,
    },
}

impl ArtifactsError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ArtifactsError::Io { path, source }
    }
}

/// Human-readable size.
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests;
