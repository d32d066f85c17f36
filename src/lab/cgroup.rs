//! Host cgroups of the nodes. Each node's nspawn starts from its own `/lab/dblab-nodeI` in
//! EVERY hierarchy: nspawn's cgroup namespace then makes that subtree the node's `/`, so two
//! kubelets never share a cgroup root (lab-notes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::LabError;
use super::names;
use super::sys;

/// One mounted cgroup hierarchy (v1 controller or named hierarchy, or the v2 `unified`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// cpuset needs cpuset.cpus/mems set before a task may join a new cgroup.
    pub cpuset: bool,
}

/// The hierarchies to use, from a mountinfo listing: one mount per distinct hierarchy,
/// mounted at its root.
pub fn hierarchies_from(mounts: &[sys::MountEntry]) -> Vec<Hierarchy> {
    let mut seen_options: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for m in mounts {
        if (m.fs_type != "cgroup" && m.fs_type != "cgroup2") || m.root != "/" {
            continue;
        }
        // The same v1 hierarchy mounted twice has the same super options.
        let key = format!("{} {}", m.fs_type, m.super_options);
        if seen_options.contains(&key) {
            continue;
        }
        seen_options.push(key);
        out.push(Hierarchy {
            mount: m.mount_point.clone(),
            cpuset: m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "cpuset"),
        });
    }
    out
}

pub fn hierarchies() -> Result<Vec<Hierarchy>, LabError> {
    Ok(hierarchies_from(&sys::mounts()?))
}

/// The node's cgroup dir in every hierarchy.
pub fn node_dirs(hierarchies: &[Hierarchy], index: u32) -> Vec<PathBuf> {
    hierarchies
        .iter()
        .map(|h| h.mount.join(names::cgroup(index)))
        .collect()
}

pub fn parent_dirs(hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    hierarchies
        .iter()
        .map(|h| h.mount.join(names::cgroup_parent()))
        .collect()
}

fn copy_cpuset(parent: &Path, child: &Path) -> Result<(), LabError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value =
            std::fs::read_to_string(parent.join(file)).map_err(LabError::io(parent.join(file)))?;
        std::fs::write(child.join(file), value.trim()).map_err(LabError::io(child.join(file)))?;
    }
    Ok(())
}

fn make_dir(h: &Hierarchy, dir: &Path) -> Result<(), LabError> {
    if !dir.is_dir() {
        std::fs::create_dir(dir).map_err(LabError::io(dir))?;
    }
    if h.cpuset
        && let Some(parent) = dir.parent()
    {
        copy_cpuset(parent, dir)?;
    }
    Ok(())
}

/// Every PID in `dir` and below.
pub fn procs(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(procs(&e.path()));
            }
        }
    }
    out
}

/// SIGKILL whatever is left in the node's cgroups (e.g. the node's init after nspawn itself
/// was killed) and wait, bounded, until they are empty.
pub async fn kill_all(dirs: &[PathBuf]) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let pids: Vec<u32> = dirs.iter().flat_map(|d| procs(d)).collect();
        if pids.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        for pid in pids {
            let _ = sys::signal(pid, "KILL").await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Remove a cgroup subtree depth-first (cgroup dirs go with rmdir, not by deleting files).
pub fn remove_tree(dir: &Path) -> Result<(), LabError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(LabError::io(dir))?;
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path())?;
        }
    }
    std::fs::remove_dir(dir).map_err(LabError::io(dir))
}

/// Fresh, empty node cgroups: stale children from a previous boot are removed first (else
/// the next kubelet's Ready is delayed). Returns the node's dirs.
pub async fn prepare(hierarchies: &[Hierarchy], index: u32) -> Result<Vec<PathBuf>, LabError> {
    let dirs = node_dirs(hierarchies, index);
    kill_all(&dirs).await;
    for (h, dir) in hierarchies.iter().zip(&dirs) {
        remove_tree(dir)?;
        if let Some(parent) = dir.parent() {
            make_dir(h, parent)?;
        }
        make_dir(h, dir)?;
    }
    Ok(dirs)
}

/// Remove the node's cgroups after it stopped; retried a little while tasks finish exiting.
pub async fn remove(dirs: &[PathBuf]) -> Result<(), LabError> {
    kill_all(dirs).await;
    let mut last = Ok(());
    for _ in 0..20 {
        last = dirs.iter().try_for_each(|d| remove_tree(d));
        if last.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

/// Remove the `lab` parents when no node is left in them (rmdir refuses non-empty dirs).
pub fn remove_parents(parents: &[PathBuf]) {
    for p in parents {
        let _ = std::fs::remove_dir(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_each_hierarchy_once() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                    34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    50 31 0:29 / /mnt/cpu-again rw - cgroup cgroup rw,cpu\n\
                    51 31 0:29 /sub /mnt/sub rw - cgroup cgroup rw,memory\n\
                    52 31 0:20 / /tmp rw - tmpfs tmpfs rw\n";
        let h = hierarchies_from(&sys::parse_mountinfo(text));
        let mounts: Vec<_> = h.iter().map(|h| h.mount.display().to_string()).collect();
        assert_eq!(
            mounts,
            vec![
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
        );
        assert!(h[1].cpuset && !h[0].cpuset);
        assert_eq!(
            node_dirs(&h, 2)[3],
            PathBuf::from("/sys/fs/cgroup/unified").join(names::cgroup(2))
        );
    }
}
