//! The artifact store: binaries and images from a mirror directory (`manifest.json` + files, as
//! written by scripts/build-mirror.sh or `artifacts fetch`), verified by sha256 before use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Binary,
    Image,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// Relative to the mirror directory.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Image reference (`registry.k8s.io/pause:3.10`) for images.
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// Architecture of a binary (`artifacts fetch --arch` mirrors hold several); absent: the
    /// mirror's.
    #[serde(default)]
    pub arch: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Manifest {
    kubernetes_version: String,
    /// The architecture of bin/ and cni/ (absent: the only one).
    #[serde(default)]
    arch: Option<String>,
    artifacts: Vec<Artifact>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "no artifact mirror at {dir}: {reason}. Build one with scripts/build-mirror.sh (lab) or `director-boot artifacts fetch`, or point --artifacts at a mirror"
    )]
    NoMirror { dir: PathBuf, reason: String },
    #[error("the artifact mirror {dir} has no {name}; it is needed by role {role}")]
    Missing {
        dir: PathBuf,
        name: String,
        role: String,
    },
    #[error(
        "{path}: sha256 is {actual}, the manifest says {expected}; the mirror is corrupt, rebuild or re-fetch it"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
    pub kubernetes_version: String,
    /// Binaries and images by name: the two kinds may share a name (`coredns`).
    binaries: BTreeMap<String, Artifact>,
    images: BTreeMap<String, Artifact>,
}

impl Artifacts {
    pub fn open(dir: &Path) -> Result<Self, ArtifactError> {
        let file = dir.join("manifest.json");
        let text = std::fs::read_to_string(&file).map_err(|e| ArtifactError::NoMirror {
            dir: dir.to_path_buf(),
            reason: format!("{}: {e}", file.display()),
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| ArtifactError::NoMirror {
            dir: dir.to_path_buf(),
            reason: format!("{}: {e}", file.display()),
        })?;
        // Binaries of the mirror's own architecture only (other arches live under arch/).
        let primary = m.arch.clone();
        let (images, binaries): (Vec<Artifact>, Vec<Artifact>) = m
            .artifacts
            .into_iter()
            .filter(|a| a.arch.is_none() || primary.is_none() || a.arch == primary)
            .partition(|a| a.kind == Kind::Image);
        let by_name = |v: Vec<Artifact>| v.into_iter().map(|a| (a.name.clone(), a)).collect();
        Ok(Artifacts {
            dir: dir.to_path_buf(),
            kubernetes_version: m.kubernetes_version,
            binaries: by_name(binaries),
            images: by_name(images),
        })
    }

    /// No mirror: for actions that stage no binary (`secrets rotate-key`).
    pub fn none() -> Self {
        Artifacts {
            dir: PathBuf::new(),
            kubernetes_version: String::new(),
            binaries: BTreeMap::new(),
            images: BTreeMap::new(),
        }
    }

    /// A binary by name.
    pub fn get(&self, name: &str, role: &str) -> Result<&Artifact, ArtifactError> {
        self.binaries
            .get(name)
            .ok_or_else(|| ArtifactError::Missing {
                dir: self.dir.clone(),
                name: name.to_string(),
                role: role.to_string(),
            })
    }

    pub fn path(&self, a: &Artifact) -> PathBuf {
        self.dir.join(&a.path)
    }

    pub fn all(&self) -> impl Iterator<Item = &Artifact> {
        self.binaries.values().chain(self.images.values())
    }

    /// Image references by short name, for templates.
    pub fn images(&self) -> BTreeMap<String, String> {
        self.images
            .values()
            .filter_map(|a| a.reference.clone().map(|r| (a.name.clone(), r)))
            .collect()
    }

    /// Recompute the sha256 of one artifact and compare with the manifest.
    pub fn verify(&self, a: &Artifact) -> Result<(), ArtifactError> {
        let path = self.path(a);
        let actual = sha256_file(&path)?;
        if actual != a.sha256 {
            return Err(ArtifactError::Checksum {
                path,
                expected: a.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

pub fn sha256_file(path: &Path) -> Result<String, ArtifactError> {
    crate::hash::sha256_file(path).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_and_verifies_a_mirror() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/etcd"), b"etcd-binary").unwrap();
        let sha = sha256_file(&dir.path().join("bin/etcd")).unwrap();
        let manifest = serde_json::json!({
            "kubernetes_version": "v1.36.3",
            "artifacts": [
                {"name": "etcd", "version": "3.4.23", "kind": "binary", "path": "bin/etcd", "sha256": sha, "size": 11},
                {"name": "pause", "version": "3.10", "kind": "image", "path": "images/pause.tar", "sha256": "00", "size": 1, "ref": "registry.k8s.io/pause:3.10"}
            ]
        });
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        let a = Artifacts::open(dir.path()).unwrap();
        assert_eq!(a.kubernetes_version, "v1.36.3");
        a.verify(a.get("etcd", "etcd").unwrap()).unwrap();
        assert_eq!(a.images()["pause"], "registry.k8s.io/pause:3.10");
        let e = a.get("kubelet", "kubelet").unwrap_err().to_string();
        assert!(
            e.contains("has no kubelet; it is needed by role kubelet"),
            "{e}"
        );
        std::fs::write(dir.path().join("bin/etcd"), b"tampered").unwrap();
        let e = a
            .verify(a.get("etcd", "etcd").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("the mirror is corrupt"), "{e}");
    }

    #[test]
    fn missing_mirror_says_what_to_do() {
        let e = Artifacts::open(Path::new("/nonexistent/mirror"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts/build-mirror.sh"), "{e}");
    }
}
