//! Cluster membership kept in the cluster's state dir, beside what `cluster_state` keeps:
//! - `etcd-members.json`: per etcd member, the `--initial-cluster` and `--initial-cluster-state`
//!   its unit was first rendered with. etcd reads those flags only on its first start, so a
//!   member's unit keeps them for life: a member joining later never changes (or restarts) the
//!   others (kubespray and k0s decide per host whether the cluster already exists, the same way).
//! - `removed-nodes.json`: the nodes `remove-node` took out, so `validate` and `init` can say so
//!   while the inventory still lists one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster_state::{ClusterState, StateError, write_private};
use crate::inventory::Inventory;

/// `--initial-cluster-state` of the members that bootstrapped the cluster.
pub const STATE_NEW: &str = "new";
/// `--initial-cluster-state` of a member added with `etcdctl member add`.
pub const STATE_EXISTING: &str = "existing";

/// The bootstrap flags of one etcd member's unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMemberRecord {
    /// `name=https://addr:2380,...`
    pub initial_cluster: String,
    /// `new` or `existing`.
    pub cluster_state: String,
}

/// A node `remove-node` took out of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedNode {
    pub name: String,
    pub address: String,
    /// RFC 3339, UTC.
    pub removed_at: String,
}

pub fn etcd_members_file(state: &ClusterState) -> PathBuf {
    state.dir().join("etcd-members.json")
}

pub fn removed_nodes_file(state: &ClusterState) -> PathBuf {
    state.dir().join("removed-nodes.json")
}

fn read<T: DeserializeOwned + Default>(file: &Path) -> Result<T, StateError> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(T::default());
    };
    serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
        path: file.to_path_buf(),
        source,
    })
}

fn write<T: Serialize>(file: &Path, value: &T) -> Result<(), StateError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| StateError::Corrupt {
        path: file.to_path_buf(),
        source,
    })?;
    write_private(file, text.as_bytes())
}

/// The recorded etcd members (empty when none were recorded yet).
pub fn etcd_members(
    state: &ClusterState,
) -> Result<BTreeMap<String, EtcdMemberRecord>, StateError> {
    read(&etcd_members_file(state))
}

pub fn save_etcd_members(
    state: &ClusterState,
    members: &BTreeMap<String, EtcdMemberRecord>,
) -> Result<(), StateError> {
    write(&etcd_members_file(state), members)
}

pub fn removed_nodes(state: &ClusterState) -> Result<Vec<RemovedNode>, StateError> {
    read(&removed_nodes_file(state))
}

pub fn save_removed_nodes(state: &ClusterState, nodes: &[RemovedNode]) -> Result<(), StateError> {
    write(&removed_nodes_file(state), &nodes)
}

/// The removed nodes the inventory still lists.
pub fn still_listed<'a>(inv: &Inventory, removed: &'a [RemovedNode]) -> Vec<&'a RemovedNode> {
    removed
        .iter()
        .filter(|r| inv.hosts.iter().any(|h| h.name == r.name))
        .collect()
}

/// What `validate` and `init` say when the inventory still lists removed nodes.
pub fn still_listed_message(inventory: &str, listed: &[&RemovedNode]) -> String {
    let names: Vec<String> = listed
        .iter()
        .map(|r| format!("{} ({}, removed {})", r.name, r.address, r.removed_at))
        .collect();
    format!(
        "{inventory} still lists {} that `director-boot remove-node` took out of the cluster: {}. \
         Delete {} from the inventory. To bring a removed node back as a new one, delete it, \
         run `director-boot init` once, then add it again",
        if listed.len() == 1 { "a node" } else { "nodes" },
        names.join(", "),
        if listed.len() == 1 { "it" } else { "them" },
    )
}

/// Check, for `validate` and `init`: an error naming the removed nodes the inventory lists.
pub fn check_inventory(
    state: &ClusterState,
    inv: &Inventory,
    inventory: &str,
) -> anyhow::Result<()> {
    if !state.exists() {
        return Ok(());
    }
    let removed = removed_nodes(state)?;
    let listed = still_listed(inv, &removed);
    if listed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", still_listed_message(inventory, &listed))
    }
}

/// After an `init` whose inventory no longer lists them: forget removed nodes (a later node of
/// the same name is a new node).
pub fn prune_removed(state: &ClusterState, inv: &Inventory) -> Result<(), StateError> {
    let removed = removed_nodes(state)?;
    if removed.is_empty() {
        return Ok(());
    }
    let kept: Vec<RemovedNode> = removed
        .iter()
        .filter(|r| inv.hosts.iter().any(|h| h.name == r.name))
        .cloned()
        .collect();
    if kept.len() != removed.len() {
        save_removed_nodes(state, &kept)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    fn state(dir: &Path) -> ClusterState {
        let paths = Paths {
            state: dir.to_path_buf(),
            cache: dir.join("cache"),
        };
        ClusterState::new(&paths, "lab")
    }

    #[test]
    fn records_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let st = state(tmp.path());
        st.create().unwrap();
        assert!(etcd_members(&st).unwrap().is_empty());
        assert!(removed_nodes(&st).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            "n1".to_string(),
            EtcdMemberRecord {
                initial_cluster: "n1=https://10.0.0.1:2380".into(),
                cluster_state: STATE_NEW.into(),
            },
        );
        save_etcd_members(&st, &m).unwrap();
        assert_eq!(etcd_members(&st).unwrap(), m);
        let r = vec![RemovedNode {
            name: "n5".into(),
            address: "10.0.0.5".into(),
            removed_at: "2026-12-07T12:00:00Z".into(),
        }];
        save_removed_nodes(&st, &r).unwrap();
        assert_eq!(removed_nodes(&st).unwrap(), r);
        std::fs::write(removed_nodes_file(&st), "[").unwrap();
        assert!(matches!(
            removed_nodes(&st),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn message_names_the_nodes_and_what_to_do() {
        let r = RemovedNode {
            name: "node5".into(),
            address: "10.213.0.15".into(),
            removed_at: "2026-12-07T12:00:00Z".into(),
        };
        let msg = still_listed_message("lab.yaml", &[&r]);
        assert!(msg.contains("node5 (10.213.0.15"), "{msg}");
        assert!(msg.contains("Delete it from the inventory"), "{msg}");
    }
}
