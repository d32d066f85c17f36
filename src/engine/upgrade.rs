//! What `upgrade` decides before it touches a host, kept apart from the phases so it is
//! tested without hosts: Kubernetes versions, the version skew policy, worker batches, and
//! what the cluster state dir records (the installed version, an upgrade in progress).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cluster_state::{ClusterState, StateError, write_private};

/// A release version: `v1.37.2` (also read from `Kubernetes v1.37.2`, `1.37.2`,
/// `v1.37.2-rc.1`: pre-release and build suffixes are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// The last word of `text` that parses as a version (`--version` output).
    pub fn find(text: &str) -> Option<Version> {
        text.split_whitespace()
            .rev()
            .find_map(|w| w.parse::<Version>().ok())
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let core = t.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        let num = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| format!("not a version: {s:?}"))
        };
        match parts.as_slice() {
            [a, b, c] => Ok(Version {
                major: num(a)?,
                minor: num(b)?,
                patch: num(c)?,
            }),
            _ => Err(format!("not a version: {s:?} (expected like v1.37.2)")),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// How many worker nodes go at once: `--batch 2` or `--batch 25%` (of the workers, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Count(usize),
    Percent(u8),
}

impl Default for Batch {
    fn default() -> Self {
        Batch::Count(1)
    }
}

impl FromStr for Batch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("--batch {s:?}: expected a number of nodes (2) or a percentage (25%)");
        if let Some(p) = s.trim().strip_suffix('%') {
            let p: u8 = p.trim().parse().map_err(|_| bad())?;
            if p == 0 || p > 100 {
                return Err(bad());
            }
            return Ok(Batch::Percent(p));
        }
        let n: usize = s.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        Ok(Batch::Count(n))
    }
}

impl Batch {
    /// Nodes per batch out of `total`.
    pub fn size(self, total: usize) -> usize {
        match self {
            Batch::Count(n) => n.max(1),
            Batch::Percent(p) => (total * p as usize).div_ceil(100).max(1),
        }
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Batch::Count(n) => write!(f, "{n}"),
            Batch::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Components whose version the skew policy speaks of.
pub const API_SERVER: &str = "kube-apiserver";
pub const KUBELET: &str = "kubelet";
pub const KUBE_PROXY: &str = "kube-proxy";

/// One installed component on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub host: String,
    pub component: String,
    pub version: Version,
}

/// Kubernetes' version skew policy for going to `target`: no downgrade, at most one minor at a
/// time, and never a kubelet (or kube-proxy) newer than an API server. Every violation, one
/// line each.
pub fn skew_violations(target: Version, installed: &[Installed]) -> Vec<String> {
    let mut out = Vec::new();
    for i in installed {
        if i.version.major != target.major {
            out.push(format!(
                "{}'s {} is {}: director-boot does not change the major version (to {target})",
                i.host, i.component, i.version
            ));
        } else if i.version > target {
            out.push(format!(
                "{}'s {} is {}, newer than {target}: director-boot does not downgrade",
                i.host, i.component, i.version
            ));
        } else if target.minor > i.version.minor + 1 {
            out.push(format!(
                "{}'s {} is {}: upgrades go one minor at a time; upgrade to v{}.{}.x first",
                i.host,
                i.component,
                i.version,
                target.major,
                i.version.minor + 1
            ));
        }
    }
    let oldest_api = installed
        .iter()
        .filter(|i| i.component == API_SERVER)
        .min_by_key(|i| i.version);
    if let Some(api) = oldest_api {
        for i in installed
            .iter()
            .filter(|i| i.component == KUBELET || i.component == KUBE_PROXY)
        {
            if i.version > api.version {
                out.push(format!(
                    "{}'s {} is {}, newer than {}'s API server {}: the skew policy forbids a node newer than an API server; upgrade the control planes first",
                    i.host, i.component, i.version, api.host, api.version
                ));
            }
        }
    }
    out
}

/// An upgrade in progress, in `<cluster state>/upgrade.json`: what a re-run resumes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub to: String,
    /// The etcd snapshot taken before anything changed.
    #[serde(default)]
    pub backup: Option<PathBuf>,
    /// Nodes this upgrade cordoned and has not uncordoned yet.
    #[serde(default)]
    pub cordoned: BTreeSet<String>,
    /// Nodes finished (binaries swapped, Ready at the target, uncordoned).
    #[serde(default)]
    pub done: BTreeSet<String>,
}

impl ClusterState {
    fn version_file(&self) -> PathBuf {
        self.dir().join("kubernetes-version")
    }

    pub fn upgrade_file(&self) -> PathBuf {
        self.dir().join("upgrade.json")
    }

    pub fn backups_dir(&self) -> PathBuf {
        self.dir().join("backups")
    }

    /// The Kubernetes version the cluster runs (written by `init` and `upgrade`); `None` for a
    /// cluster built before it was recorded.
    pub fn kubernetes_version(&self) -> Option<String> {
        std::fs::read_to_string(self.version_file())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn save_kubernetes_version(&self, version: &str) -> Result<(), StateError> {
        write_private(&self.version_file(), format!("{version}\n").as_bytes())
    }

    pub fn upgrade_progress(&self) -> Result<Option<Progress>, StateError> {
        let file = self.upgrade_file();
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path: file, source })
    }

    pub fn save_upgrade_progress(&self, p: &Progress) -> Result<(), StateError> {
        let file = self.upgrade_file();
        let text = serde_json::to_string_pretty(p).map_err(|source| StateError::Corrupt {
            path: file.clone(),
            source,
        })?;
        write_private(&file, text.as_bytes())
    }

    pub fn finish_upgrade(&self, version: &str) -> Result<(), StateError> {
        self.save_kubernetes_version(version)?;
        match std::fs::remove_file(self.upgrade_file()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
                path: self.upgrade_file(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Which Kubernetes version `init` installs: the one an unfinished upgrade is going to is
/// refused (finish the upgrade), else the recorded one, else the mirror's default. The mirror
/// must hold it: a cluster is never downgraded by an `init` from an older mirror.
pub fn init_version(
    state: &ClusterState,
    artifacts: &mut crate::engine::artifacts::Artifacts,
) -> anyhow::Result<()> {
    if let Some(p) = state.upgrade_progress()? {
        anyhow::bail!(
            "an upgrade to {} is in progress ({}): finish it with `director-boot upgrade INVENTORY --to {}` before `init`",
            p.to,
            state.upgrade_file().display(),
            p.to
        );
    }
    if let Some(v) = state.kubernetes_version() {
        artifacts.select(&v).map_err(|e| {
            anyhow::anyhow!(
                "the cluster runs Kubernetes {v} (recorded in {}), so init would install {v}: {e}",
                state.version_file().display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn inst(host: &str, component: &str, version: &str) -> Installed {
        Installed {
            host: host.into(),
            component: component.into(),
            version: v(version),
        }
    }

    #[test]
    fn versions_parse_from_flags_and_tool_output() {
        assert_eq!(v("v1.37.2"), v("1.37.2"));
        assert_eq!(
            Version::find("Kubernetes v1.36.3\n"),
            Some(Version {
                major: 1,
                minor: 36,
                patch: 3
            })
        );
        assert_eq!(Version::find("etcd Version: 3.6.14"), Some(v("3.6.14")));
        assert_eq!(v("v1.37.0-rc.1"), v("v1.37.0"));
        assert!("1.37".parse::<Version>().is_err());
        assert!("latest".parse::<Version>().is_err());
        assert_eq!(v("v1.37.2").to_string(), "v1.37.2");
        assert!(v("v1.36.10") > v("v1.36.9"));
    }

    #[test]
    fn batches_are_counts_or_percentages_of_the_workers() {
        assert_eq!("2".parse::<Batch>().unwrap().size(10), 2);
        assert_eq!("25%".parse::<Batch>().unwrap().size(10), 3);
        assert_eq!("10%".parse::<Batch>().unwrap().size(3), 1);
        assert_eq!("100%".parse::<Batch>().unwrap().size(7), 7);
        assert_eq!(Batch::default().size(5), 1);
        for bad in ["0", "0%", "101%", "x", "-1", ""] {
            assert!(bad.parse::<Batch>().is_err(), "{bad}");
        }
    }

    #[test]
    fn skew_policy_one_minor_no_downgrade_nodes_after_control_planes() {
        let t = v("v1.37.2");
        let ok = [
            inst("cp", API_SERVER, "v1.36.3"),
            inst("w", KUBELET, "v1.36.3"),
            inst("w", KUBE_PROXY, "v1.36.3"),
        ];
        assert!(skew_violations(t, &ok).is_empty());
        // resuming: control plane done, worker not yet
        let mid = [
            inst("cp", API_SERVER, "v1.37.2"),
            inst("w", KUBELET, "v1.36.3"),
        ];
        assert!(skew_violations(t, &mid).is_empty());

        let two = [inst("cp", API_SERVER, "v1.35.4")];
        let e = skew_violations(t, &two).join("\n");
        assert!(
            e.contains("one minor at a time; upgrade to v1.36.x first"),
            "{e}"
        );

        let down = [inst("cp", API_SERVER, "v1.38.0")];
        let e = skew_violations(t, &down).join("\n");
        assert!(e.contains("does not downgrade"), "{e}");

        let newer_node = [
            inst("cp", API_SERVER, "v1.36.3"),
            inst("w", KUBELET, "v1.37.2"),
        ];
        let e = skew_violations(t, &newer_node).join("\n");
        assert!(
            e.contains("w's kubelet is v1.37.2, newer than cp's API server v1.36.3"),
            "{e}"
        );
    }

    #[test]
    fn init_keeps_the_recorded_version_and_waits_for_an_unfinished_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("mirror");
        std::fs::create_dir_all(&mirror).unwrap();
        let manifest = serde_json::json!({
            "kubernetes_version": "v1.36.3",
            "artifacts": [
                {"name": "kubelet", "version": "v1.36.3", "kind": "binary", "path": "bin/kubelet", "sha256": "00", "size": 1}
            ],
            "kubernetes_versions": [{"version": "v1.37.2", "artifacts": [
                {"name": "kubelet", "version": "v1.37.2", "kind": "binary", "path": "versions/v1.37.2/bin/kubelet", "sha256": "11", "size": 1}
            ]}]
        });
        std::fs::write(mirror.join("manifest.json"), manifest.to_string()).unwrap();
        let open = || crate::engine::artifacts::Artifacts::open(&mirror).unwrap();
        let paths = crate::paths::Paths {
            state: dir.path().join("state"),
            cache: dir.path().join("cache"),
        };
        let st = ClusterState::new(&paths, "c");
        st.create().unwrap();
        // a new cluster: the mirror's default
        let mut a = open();
        init_version(&st, &mut a).unwrap();
        assert_eq!(a.kubernetes_version, "v1.36.3");
        // upgraded: the recorded version, never the older default
        st.save_kubernetes_version("v1.37.2").unwrap();
        let mut a = open();
        init_version(&st, &mut a).unwrap();
        assert_eq!(a.get("kubelet", "kubelet").unwrap().sha256, "11");
        st.save_kubernetes_version("v1.38.1").unwrap();
        let e = init_version(&st, &mut open()).unwrap_err().to_string();
        assert!(e.contains("the cluster runs Kubernetes v1.38.1"), "{e}");
        // an upgrade under way: init refuses
        st.save_upgrade_progress(&Progress {
            to: "v1.37.2".into(),
            ..Progress::default()
        })
        .unwrap();
        let e = init_version(&st, &mut open()).unwrap_err().to_string();
        assert!(e.contains("an upgrade to v1.37.2 is in progress"), "{e}");
    }

    #[test]
    fn state_records_version_and_progress() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths {
            state: dir.path().to_path_buf(),
            cache: dir.path().join("cache"),
        };
        let st = ClusterState::new(&paths, "c");
        st.create().unwrap();
        assert_eq!(st.kubernetes_version(), None);
        assert_eq!(st.upgrade_progress().unwrap(), None);
        let p = Progress {
            to: "v1.37.2".into(),
            cordoned: ["node2".to_string()].into(),
            ..Progress::default()
        };
        st.save_upgrade_progress(&p).unwrap();
        assert_eq!(st.upgrade_progress().unwrap(), Some(p));
        st.finish_upgrade("v1.37.2").unwrap();
        assert_eq!(st.kubernetes_version().as_deref(), Some("v1.37.2"));
        assert_eq!(st.upgrade_progress().unwrap(), None);
    }
}
