//! The artifact store: binaries and images from a mirror directory (`manifest.json` + files, as
//! written by scripts/build-mirror.sh or `artifacts fetch`), verified by sha256 before use.
//!
//! A mirror may hold more than one Kubernetes version: `artifacts` has the default version's
//! binaries (what `init` installs on a new cluster), `kubernetes_versions` the kube binaries of
//! further versions (upgrade targets, under `versions/VERSION/bin/`). `select` makes one of
//! them the version whose binaries `get` hands out; everything else (etcd, containerd, CNI,
//! images) serves every version. A mirror with one version has no `kubernetes_versions`.

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
    /// Further Kubernetes versions (upgrade targets): their kube binaries.
    #[serde(default)]
    kubernetes_versions: Vec<VersionSet>,
}

#[derive(Debug, Clone, Deserialize)]
struct VersionSet {
    version: String,
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
    #[error(
        "the artifact mirror {dir} has no Kubernetes {wanted} (it has {have}); build one that does (scripts/build-mirror.sh builds the versions it pins) or point --artifacts at one"
    )]
    NoVersion {
        dir: PathBuf,
        wanted: String,
        have: String,
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
    /// The version `get` hands out kube binaries of (the mirror's default until `select`).
    pub kubernetes_version: String,
    /// The mirror's default version (`init` on a new cluster).
    pub default_version: String,
    /// Binaries and images by name: the two kinds may share a name (`coredns`).
    binaries: BTreeMap<String, Artifact>,
    images: BTreeMap<String, Artifact>,
    /// The default version's binaries that a selected version replaced, to select it again.
    default_binaries: BTreeMap<String, Artifact>,
    /// The kube binaries of further versions, by version then name.
    versions: BTreeMap<String, BTreeMap<String, Artifact>>,
}

/// `1.37.2` and `v1.37.2` name the same version; the mirror spells it with the `v`.
pub fn normalize_version(v: &str) -> String {
    let v = v.trim();
    if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
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
        let versions = m
            .kubernetes_versions
            .into_iter()
            .filter(|v| v.version != m.kubernetes_version)
            .map(|v| {
                let set = v
                    .artifacts
                    .into_iter()
                    .filter(|a| a.kind == Kind::Binary)
                    .filter(|a| a.arch.is_none() || primary.is_none() || a.arch == primary)
                    .map(|a| (a.name.clone(), a))
                    .collect();
                (v.version, set)
            })
            .collect();
        Ok(Artifacts {
            dir: dir.to_path_buf(),
            kubernetes_version: m.kubernetes_version.clone(),
            default_version: m.kubernetes_version,
            binaries: by_name(binaries),
            images: by_name(images),
            default_binaries: BTreeMap::new(),
            versions,
        })
    }

    /// Every Kubernetes version this mirror holds kube binaries of, the default first.
    pub fn kubernetes_versions(&self) -> Vec<String> {
        std::iter::once(self.default_version.clone())
            .chain(self.versions.keys().cloned())
            .collect()
    }

    pub fn has_version(&self, version: &str) -> bool {
        let v = normalize_version(version);
        v == self.default_version || self.versions.contains_key(&v)
    }

    /// Make `version` the one whose kube binaries `get` hands out.
    pub fn select(&mut self, version: &str) -> Result<(), ArtifactError> {
        let v = normalize_version(version);
        if v == self.kubernetes_version {
            return Ok(());
        }
        if !self.has_version(&v) {
            return Err(ArtifactError::NoVersion {
                dir: self.dir.clone(),
                wanted: v,
                have: self.kubernetes_versions().join(", "),
            });
        }
        // Back to the default binaries first, then the selected version's over them.
        for (name, a) in std::mem::take(&mut self.default_binaries) {
            self.binaries.insert(name, a);
        }
        if let Some(set) = self.versions.get(&v) {
            for (name, a) in set {
                if let Some(old) = self.binaries.insert(name.clone(), a.clone()) {
                    self.default_binaries.insert(name.clone(), old);
                }
            }
        }
        self.kubernetes_version = v;
        Ok(())
    }

    /// No mirror: for actions that stage no binary (`secrets rotate-key`).
    pub fn none() -> Self {
        Artifacts {
            dir: PathBuf::new(),
            kubernetes_version: String::new(),
            default_version: String::new(),
            binaries: BTreeMap::new(),
            images: BTreeMap::new(),
            default_binaries: BTreeMap::new(),
            versions: BTreeMap::new(),
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

    /// Recompute the sha256 of one artifact and compare with the manifest (once per run while
    /// the file stays the same: see [`crate::hash::sha256_file_memo`]).
    pub fn verify(&self, a: &Artifact) -> Result<(), ArtifactError> {
        let path = self.path(a);
        let actual = crate::hash::sha256_file_memo(&path).map_err(|source| ArtifactError::Io {
            path: path.clone(),
            source,
        })?;
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
    fn a_mirror_holds_kube_binaries_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::create_dir_all(d.join("versions/v1.37.2/bin")).unwrap();
        std::fs::write(d.join("bin/kubelet"), b"kubelet 1.36").unwrap();
        std::fs::write(d.join("bin/etcd"), b"etcd").unwrap();
        std::fs::write(d.join("versions/v1.37.2/bin/kubelet"), b"kubelet 1.37").unwrap();
        let sha = |p: &str| sha256_file(&d.join(p)).unwrap();
        let manifest = serde_json::json!({
            "kubernetes_version": "v1.36.3",
            "artifacts": [
                {"name": "kubelet", "version": "v1.36.3", "kind": "binary", "path": "bin/kubelet", "sha256": sha("bin/kubelet"), "size": 12},
                {"name": "etcd", "version": "v3.6.14", "kind": "binary", "path": "bin/etcd", "sha256": sha("bin/etcd"), "size": 4}
            ],
            "kubernetes_versions": [
                {"version": "v1.37.2", "artifacts": [
                    {"name": "kubelet", "version": "v1.37.2", "kind": "binary", "path": "versions/v1.37.2/bin/kubelet", "sha256": sha("versions/v1.37.2/bin/kubelet"), "size": 12}
                ]}
            ]
        });
        std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
        let mut a = Artifacts::open(d).unwrap();
        assert_eq!(a.kubernetes_versions(), ["v1.36.3", "v1.37.2"]);
        assert_eq!(a.get("kubelet", "kubelet").unwrap().version, "v1.36.3");
        a.select("1.37.2").unwrap();
        assert_eq!(a.kubernetes_version, "v1.37.2");
        let k = a.get("kubelet", "kubelet").unwrap().clone();
        assert_eq!(k.path, "versions/v1.37.2/bin/kubelet");
        a.verify(&k).unwrap();
        assert_eq!(a.get("etcd", "etcd").unwrap().path, "bin/etcd");
        a.select("v1.36.3").unwrap();
        assert_eq!(a.get("kubelet", "kubelet").unwrap().path, "bin/kubelet");
        let e = a.select("v1.38.0").unwrap_err().to_string();
        assert!(
            e.contains("has no Kubernetes v1.38.0 (it has v1.36.3, v1.37.2)"),
            "{e}"
        );
    }

    #[test]
    fn missing_mirror_says_what_to_do() {
        let e = Artifacts::open(Path::new("/nonexistent/mirror"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts/build-mirror.sh"), "{e}");
    }
}
