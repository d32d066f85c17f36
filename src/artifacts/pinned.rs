//! The pinned component manifest (`pinned.yaml`): what to download, from where, and the sha256
//! each download must have. The built-in one is `src/artifacts/pinned.yaml`; sites and
//! scripts/build-mirror.sh write files of the same format for `--manifest`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArtifactsError;

/// The manifest compiled into director-boot.
pub const BUILTIN: &str = include_str!("pinned.yaml");

/// Key of `sha256` for files that are the same on every architecture (images).
pub const ALL_ARCHES: &str = "all";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    pub source: String,
    pub kubernetes_version: String,
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    #[default]
    File,
    Image,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_file")]
    pub kind: ComponentKind,
    pub version: String,
    /// Upstream download URL template ({version}, {arch}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Upstream checksum file next to the download ({url}), when `sha256` has no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_url: Option<String>,
    /// Image reference (images).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Registry digest of the image (images; informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Relative path of the file in a served layout and in the mirror (images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// sha256 of the download per architecture (`all` for arch-independent files).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
}

fn is_file(k: &ComponentKind) -> bool {
    *k == ComponentKind::File
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Artifact name in the mirror's manifest.json (what roles ask for).
    pub name: String,
    /// File inside the tarball; absent: the download is the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Path relative to the mirror (bin/..., cni/...).
    pub path: String,
}

impl Pinned {
    pub fn builtin() -> Result<Self, ArtifactsError> {
        Self::parse(BUILTIN, "built-in pinned.yaml")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ArtifactsError> {
        let p: Pinned = serde_yaml::from_str(text).map_err(|e| ArtifactsError::Manifest {
            file: origin.to_string(),
            reason: e.to_string(),
        })?;
        p.check(origin)?;
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Self, ArtifactsError> {
        let text = std::fs::read_to_string(path).map_err(|e| ArtifactsError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Every component has a source, every file entry a path, names are unique.
    fn check(&self, origin: &str) -> Result<(), ArtifactsError> {
        let bad = |reason: String| ArtifactsError::Manifest {
            file: origin.to_string(),
            reason,
        };
        let mut names = std::collections::BTreeSet::new();
        for c in &self.components {
            match c.kind {
                ComponentKind::File => {
                    if c.url.is_none() {
                        return Err(bad(format!("component {}: no url", c.name)));
                    }
                    if c.files.is_empty() {
                        return Err(bad(format!("component {}: no files", c.name)));
                    }
                }
                ComponentKind::Image => {
                    if c.path.is_none() || c.reference.is_none() {
                        return Err(bad(format!("image {}: needs ref and path", c.name)));
                    }
                }
            }
            for (arch, sha) in &c.sha256 {
                if !is_sha256(sha) {
                    return Err(bad(format!(
                        "component {} ({arch}): sha256 `{sha}` is not 64 hex digits",
                        c.name
                    )));
                }
            }
            for f in &c.files {
                if !names.insert(f.name.clone()) {
                    return Err(bad(format!("file {} is listed twice", f.name)));
                }
                if f.path.starts_with('/') || f.path.contains("..") {
                    return Err(bad(format!("file {}: path must be relative", f.name)));
                }
            }
        }
        Ok(())
    }
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `{version}` and `{arch}` substituted.
pub fn expand(template: &str, version: &str, arch: &str) -> String {
    template
        .replace("{version}", version)
        .replace("{arch}", arch)
}

/// A tarball member name without a leading `./`.
pub fn normalize_member(name: &str) -> &str {
    name.trim_start_matches("./")
}

impl Component {
    /// The download URL for one architecture (file components).
    pub fn url_for(&self, arch: &str) -> Option<String> {
        self.url.as_deref().map(|u| expand(u, &self.version, arch))
    }

    /// Path of the download in a served (upstream) layout: host + path of the URL, or the
    /// image's path.
    pub fn layout_path(&self, arch: &str) -> Option<String> {
        match self.kind {
            ComponentKind::File => self.url_for(arch).map(|u| {
                u.split_once("://")
                    .map(|(_, rest)| rest.to_string())
                    .unwrap_or(u)
            }),
            ComponentKind::Image => self.path.clone(),
        }
    }

    pub fn sha256_for(&self, arch: &str) -> Option<&str> {
        self.sha256
            .get(arch)
            .or_else(|| self.sha256.get(ALL_ARCHES))
            .map(String::as_str)
    }

    pub fn checksum_url_for(&self, arch: &str) -> Option<String> {
        let url = self.url_for(arch)?;
        self.sha256_url
            .as_deref()
            .map(|t| expand(&t.replace("{url}", &url), &self.version, arch))
    }
}

/// Architecture names as upstream release files spell them.
pub const ARCHES: &[&str] = &["amd64", "arm64"];

#[cfg(test)]
mod tests {
    use super::*;

    /// The four Kubernetes server binaries have no collected checksum (see pinned.yaml).
    const SIDECAR_ONLY: &[&str] = &[
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ];

    #[test]
    fn builtin_has_every_component_for_both_arches_with_a_real_sha256() {
        let p = Pinned::builtin().unwrap();
        assert!(p.source.contains("kubespray"), "{}", p.source);
        let names: Vec<&str> = p.components.iter().map(|c| c.name.as_str()).collect();
        for want in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "kubectl",
            "etcd",
            "containerd",
            "runc",
            "cni-plugins",
            "crictl",
            "coredns",
            "pause",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for c in p
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::File)
        {
            for arch in ARCHES {
                let url = c.url_for(arch).unwrap();
                assert!(url.starts_with("https://") && url.contains(arch), "{url}");
                assert!(!url.contains('{'), "{url}");
                match c.sha256_for(arch) {
                    Some(sha) => assert!(is_sha256(sha), "{} {arch}: {sha}", c.name),
                    None => {
                        assert!(SIDECAR_ONLY.contains(&c.name.as_str()), "{} {arch}", c.name);
                        assert_eq!(c.checksum_url_for(arch).unwrap(), format!("{url}.sha256"));
                    }
                }
            }
        }
        for c in p
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::Image)
        {
            let digest = c.digest.as_deref().unwrap();
            assert!(is_sha256(digest.trim_start_matches("sha256:")), "{digest}");
            assert!(c.reference.as_deref().unwrap().contains(&c.version));
        }
    }

    #[test]
    fn versions_are_current_releases() {
        let p = Pinned::builtin().unwrap();
        let v = |n: &str| {
            p.components
                .iter()
                .find(|c| c.name == n)
                .map(|c| c.version.clone())
                .unwrap()
        };
        assert_eq!(p.kubernetes_version, "v1.36.3");
        assert!(v("kubelet").starts_with("1.36."));
        assert!(v("etcd").starts_with("3.6."));
        assert!(v("containerd").starts_with("2."));
        assert!(v("cni-plugins").starts_with("1."));
        let runc: Vec<u32> = v("runc").split('.').map(|x| x.parse().unwrap()).collect();
        assert!(runc[0] == 1 && runc[1] >= 3, "{runc:?}");
    }

    #[test]
    fn layout_path_is_host_and_path() {
        let p = Pinned::builtin().unwrap();
        let etcd = p.components.iter().find(|c| c.name == "etcd").unwrap();
        assert_eq!(
            etcd.layout_path("arm64").unwrap(),
            "github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-arm64.tar.gz"
        );
        assert_eq!(
            expand(etcd.files[0].member.as_deref().unwrap(), "3.6.14", "amd64"),
            "etcd-v3.6.14-linux-amd64/etcd"
        );
        assert_eq!(normalize_member("./bridge"), "bridge");
    }

    #[test]
    fn bad_manifests_are_refused_with_the_reason() {
        let e = Pinned::parse(
            "source: x\nkubernetes_version: v1\ncomponents:\n- {name: a, version: '1', url: 'https://h/a', sha256: {amd64: abc}, files: [{name: a, path: bin/a}]}\n",
            "site.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("site.yaml") && e.contains("not 64 hex digits"),
            "{e}"
        );
        let e = Pinned::parse(
            "source: x\nkubernetes_version: v1\ncomponents:\n- {name: a, version: '1', files: [{name: a, path: bin/a}]}\n",
            "site.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("component a: no url"), "{e}");
    }
}
