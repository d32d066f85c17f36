//! The local lab: N real machines (systemd-nspawn) on this host, each in its own network
//! namespace on a lab bridge, reachable over SSH, ready for kubelet and containerd.
//!
//! CONTRACT: `up`, `status`, `down` are called by `commands/lab.rs`.

use crate::paths::Paths;

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    /// "running", "stopped", ...
    pub state: String,
    pub pid: Option<u32>,
}

/// Build (or reuse) the lab with `nodes` machines; returns the path of the ready inventory.
pub async fn up(paths: &Paths, nodes: u32) -> anyhow::Result<std::path::PathBuf> {
    let _ = (paths, nodes);
    anyhow::bail!("director-boot lab up is not built yet")
}

pub async fn status(paths: &Paths) -> anyhow::Result<Vec<NodeStatus>> {
    let _ = paths;
    anyhow::bail!("director-boot lab status is not built yet")
}

pub async fn down(paths: &Paths) -> anyhow::Result<()> {
    let _ = paths;
    anyhow::bail!("director-boot lab down is not built yet")
}
