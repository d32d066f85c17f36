//! A mirror's manifest.json (as `engine::artifacts` reads it), and `verify`, `list`, `export`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ArtifactsError;
use super::pinned::{ComponentKind, Pinned};
use crate::engine::artifacts::sha256_file;

/// manifest.json. Fields written by scripts/build-mirror.sh that this code does not use are
/// kept (`extra`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorManifest {
    pub kubernetes_version: String,
    /// The architecture of bin/ and cni/ (absent in older mirrors: amd64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<String>,
    pub artifacts: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl MirrorManifest {
    pub fn open(mirror: &Path) -> Result<Self, ArtifactsError> {
        let file = mirror.join("manifest.json");
        let text = std::fs::read_to_string(&file).map_err(ArtifactsError::io(&file))?;
        serde_json::from_str(&text).map_err(|e| ArtifactsError::Manifest {
            file: file.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn write(&self, mirror: &Path) -> Result<(), ArtifactsError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ArtifactsError::Manifest {
            file: "manifest.json".into(),
            reason: e.to_string(),
        })?;
        super::fetch::write_atomic(&mirror.join("manifest.json"), text.as_bytes())
    }

    pub fn primary_arch(&self) -> String {
        self.arch.clone().unwrap_or_else(|| "amd64".into())
    }

    /// The architectures with downloads in the mirror.
    pub fn all_arches(&self) -> Vec<String> {
        if self.arches.is_empty() {
            vec![self.primary_arch()]
        } else {
            self.arches.clone()
        }
    }
}

/// The mirror's own pinned manifest (what it was fetched or built with).
pub fn mirror_pinned(mirror: &Path) -> Result<Option<Pinned>, ArtifactsError> {
    let p = mirror.join("pinned.yaml");
    if p.exists() {
        Pinned::load(&p).map(Some)
    } else {
        Ok(None)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub bytes: u64,
    /// "path: what is wrong" lines.
    pub problems: Vec<String>,
}

/// Re-hash every file of the mirror: the unpacked artifacts against manifest.json, the
/// downloads under upstream/ against pinned.yaml.
pub fn verify(mirror: &Path) -> Result<VerifyReport, ArtifactsError> {
    let m = MirrorManifest::open(mirror)?;
    let mut report = VerifyReport::default();
    let mut check = |rel: &str, expected: &str| {
        let path = mirror.join(rel);
        report.checked += 1;
        match sha256_file(&path) {
            Ok(actual) if actual == expected => {
                report.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            }
            Ok(actual) => report
                .problems
                .push(format!("{rel}: sha256 is {actual}, expected {expected}")),
            Err(_) if !path.exists() => report.problems.push(format!("{rel}: missing")),
            Err(e) => report.problems.push(format!("{rel}: {e}")),
        }
    };
    for a in &m.artifacts {
        check(&a.path, &a.sha256);
    }
    if let Some(p) = mirror_pinned(mirror)? {
        for c in p
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::File)
        {
            for arch in m.all_arches() {
                if let (Some(rel), Some(sha)) = (c.layout_path(&arch), c.sha256_for(&arch)) {
                    check(&format!("upstream/{rel}"), sha);
                }
            }
        }
    }
    Ok(report)
}

#[derive(Debug, Serialize)]
pub struct ListRow {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub kind: String,
    pub size: u64,
    pub path: String,
}

pub fn list(mirror: &Path) -> Result<Vec<ListRow>, ArtifactsError> {
    let m = MirrorManifest::open(mirror)?;
    let primary = m.primary_arch();
    let mut rows: Vec<ListRow> = m
        .artifacts
        .iter()
        .map(|a| ListRow {
            name: a.name.clone(),
            version: a.version.clone(),
            arch: if a.kind == "image" {
                "-".into()
            } else {
                a.arch.clone().unwrap_or_else(|| primary.clone())
            },
            kind: a.kind.clone(),
            size: a.size,
            path: a.path.clone(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.kind, &a.name, &a.arch).cmp(&(&b.kind, &b.name, &b.arch)));
    Ok(rows)
}

#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    pub files: usize,
    pub bytes: u64,
    pub manifest: PathBuf,
}

/// Every pinned download of the mirror into `out` in the upstream layout (checked on the way),
/// plus `pinned.yaml`: a directory a web server can serve as `fetch --from`.
pub fn export(mirror: &Path, out: &Path) -> Result<ExportReport, ArtifactsError> {
    let m = MirrorManifest::open(mirror)?;
    let pinned = mirror_pinned(mirror)?.ok_or_else(|| ArtifactsError::Manifest {
        file: mirror.join("pinned.yaml").display().to_string(),
        reason: "missing: this mirror does not say what it was fetched or built with; rebuild it (scripts/build-mirror.sh) or re-fetch it".into(),
    })?;
    let mut report = ExportReport::default();
    let mut copied: BTreeMap<String, ()> = BTreeMap::new();
    for c in &pinned.components {
        let arches = match c.kind {
            ComponentKind::File => m.all_arches(),
            ComponentKind::Image => vec![m.primary_arch()],
        };
        for arch in arches {
            let Some(rel) = c.layout_path(&arch) else {
                continue;
            };
            if copied.insert(rel.clone(), ()).is_some() {
                continue;
            }
            let src = match c.kind {
                ComponentKind::File => mirror.join("upstream").join(&rel),
                ComponentKind::Image => mirror.join(&rel),
            };
            if !src.exists() {
                continue;
            }
            let dest = out.join(&rel);
            let parent = dest.parent().unwrap_or(out);
            std::fs::create_dir_all(parent).map_err(ArtifactsError::io(parent))?;
            let tmp = dest.with_extension("export-tmp");
            let size = std::fs::copy(&src, &tmp).map_err(ArtifactsError::io(&dest))?;
            if let Some(expected) = c.sha256_for(&arch) {
                let actual = sha256_file(&tmp).map_err(|e| ArtifactsError::Manifest {
                    file: tmp.display().to_string(),
                    reason: e.to_string(),
                })?;
                if actual != expected {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(ArtifactsError::Checksum {
                        file: format!("{}", src.display()),
                        expected: expected.to_string(),
                        actual,
                        manifest: mirror.join("pinned.yaml").display().to_string(),
                    });
                }
            }
            std::fs::rename(&tmp, &dest).map_err(ArtifactsError::io(&dest))?;
            report.files += 1;
            report.bytes += size;
        }
    }
    report.manifest = out.join("pinned.yaml");
    std::fs::copy(mirror.join("pinned.yaml"), &report.manifest)
        .map_err(ArtifactsError::io(&report.manifest))?;
    Ok(report)
}
