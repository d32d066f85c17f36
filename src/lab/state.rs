//! The lab state file: what this lab created, recorded BEFORE creating it, so `down` (also
//! the cleanup after a failed `up`) touches exactly the lab's own resources and nothing else.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LabError;

pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    pub format: u32,
    /// The lab directory this state belongs to (also the bridge's owner tag).
    pub lab_dir: PathBuf,
    /// We created the bridge (so `down` deletes it).
    pub bridge: bool,
    /// How many of the first nodes are control planes (`lab up --control-planes`); 0 in
    /// state files written before the option existed, meaning 1.
    #[serde(default)]
    pub control_planes: u32,
    /// Nodes run firewalld (`lab up --firewalld`), as RHEL-family hosts do.
    #[serde(default)]
    pub firewalld: bool,
    /// The only SSH login (`lab up --user NAME`): key login, passwordless sudo, no root login,
    /// as RHEL cloud images and Vagrant boxes have it. `None`: root logs in.
    #[serde(default)]
    pub user: Option<String>,
    pub nodes: Vec<NodeRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub index: u32,
    pub name: String,
    pub address: String,
    /// Network namespace and host veth were (being) created.
    pub netns: bool,
    pub veth: bool,
    /// Cgroup dirs of this node, one per hierarchy.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// systemd-nspawn's PID and its start time (guards against PID reuse).
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    /// The node's SSH host public key (`ssh-ed25519 AAAA...`).
    pub host_key: Option<String>,
}

impl LabState {
    /// The recorded control-plane count (at least 1).
    pub fn control_planes(&self) -> u32 {
        self.control_planes.max(1)
    }

    pub fn new(lab_dir: &Path) -> Self {
        LabState {
            format: FORMAT,
            lab_dir: lab_dir.to_path_buf(),
            ..LabState::default()
        }
    }

    pub fn path(lab_dir: &Path) -> PathBuf {
        lab_dir.join(STATE_FILE)
    }

    /// The recorded state, or `None` when this state dir has no lab.
    pub fn load(lab_dir: &Path) -> Result<Option<LabState>, LabError> {
        let path = Self::path(lab_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(&path)(e)),
        };
        let state: LabState = serde_json::from_str(&text).map_err(|e| LabError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if state.format != FORMAT {
            return Err(LabError::State {
                path,
                message: format!("format {} is not {FORMAT}", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Write atomically (temp file + rename) so a crash never leaves half a state file.
    pub fn save(&self) -> Result<(), LabError> {
        let path = Self::path(&self.lab_dir);
        let tmp = self.lab_dir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(LabError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(LabError::io(&path))
    }

    pub fn node(&self, index: u32) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.index == index)
    }

    /// The record of node `index`, created (and kept sorted) when missing.
    pub fn node_mut(&mut self, index: u32) -> &mut NodeRecord {
        let pos = match self.nodes.iter().position(|n| n.index == index) {
            Some(p) => p,
            None => {
                self.nodes.push(NodeRecord {
                    index,
                    name: super::names::node_name(index),
                    address: super::names::node_address(index).to_string(),
                    ..NodeRecord::default()
                });
                self.nodes.sort_by_key(|n| n.index);
                self.nodes
                    .iter()
                    .position(|n| n.index == index)
                    .unwrap_or(0)
            }
        };
        &mut self.nodes[pos]
    }
}

impl NodeRecord {
    /// Running = the recorded nspawn PID is alive and still has the recorded start time.
    pub fn running(&self) -> bool {
        match (self.pid, self.start_time) {
            (Some(pid), Some(start)) => super::sys::alive(pid, start),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_nodes_sorted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), None);
        let mut s = LabState::new(dir.path());
        s.bridge = true;
        s.node_mut(3).pid = Some(42);
        s.node_mut(1).netns = true;
        s.node_mut(3).start_time = Some(7);
        assert_eq!(
            s.nodes.iter().map(|n| n.index).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(
            s.node(3).unwrap().address,
            super::super::names::node_address(3).to_string()
        );
        s.save().unwrap();
        let back = LabState::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, s);
        assert!(!back.node(3).unwrap().running());
    }

    #[test]
    fn rejects_a_garbled_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let err = LabState::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
