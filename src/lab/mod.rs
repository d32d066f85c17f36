//! The local lab: N real machines (systemd-nspawn) on this host, each in its own network
//! namespace on a lab bridge, reachable over SSH, ready for kubelet and containerd.
//!
//! CONTRACT: `up`, `status`, `down` (and `stop_node`, `start_node`) are called by
//! `commands/lab.rs`.
//!
//! Layout: `rootfs` (shared base), `machine` (one node), `netns`, `cgroup`, `keys`,
//! `inventory`, `state` (what the lab created), `prereqs`, `names`, `sys`.

mod cgroup;
mod error;
mod inventory;
mod keys;
mod machine;
pub mod names;
mod netns;
mod prereqs;
mod rootfs;
mod state;
mod sys;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

pub use error::LabError;
use machine::NodeDirs;
use state::LabState;

use crate::paths::Paths;
use crate::progress::HostProgress;

/// How many nodes boot at once: booting is CPU-bound, and this machine has 2 cores.
const BOOT_PARALLELISM: usize = 6;
/// How long one node may take from nspawn start to sshd answering (under parallel boot).
const BOOT_LIMIT: Duration = Duration::from_secs(180);
/// How long an already running node's sshd may take to answer on a repeated `up`.
const RUNNING_SSH_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    /// "running", "stopped", ...
    pub state: String,
    pub pid: Option<u32>,
    /// Its roles in the lab inventory, e.g. ["etcd", "control-plane"].
    pub roles: Vec<String>,
}

/// The lab as `lab status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabStatus {
    pub nodes: Vec<NodeStatus>,
    /// `address:port` of the control-plane endpoint, with several control planes.
    pub control_plane_endpoint: Option<String>,
}

/// The lab dir, absolute: it is the bridge's owner tag and ends up in mount options.
fn lab_dir(paths: &Paths) -> PathBuf {
    let dir = paths.lab_dir();
    std::path::absolute(&dir).unwrap_or(dir)
}

/// One lab command at a time on this machine (the lab's names are machine-wide); the flock
/// is released when the returned file is dropped, also when the process dies.
async fn machine_lock(say: &dyn Fn(&str)) -> Result<std::fs::File, LabError> {
    names::check_slot().map_err(LabError::Invalid)?;
    let path = PathBuf::from(names::machine_lock());
    let path = path.as_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LabError::io(path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            say("lab: waiting for another director-boot lab command to finish");
            tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .map_err(|e| LabError::Invalid(format!("lock wait: {e}")))?
                .map_err(LabError::io(path))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(LabError::io(path)(e)),
    }
}

/// Refuse when the fixed-name lab resources belong to another state dir's lab.
fn check_ownership(lab_dir: &Path) -> Result<(), LabError> {
    let ours = netns::owner_tag(lab_dir);
    if let Some(owner) = netns::bridge_owner()
        && owner != ours
    {
        return Err(LabError::OtherLab {
            bridge: names::bridge(),
            owner: if owner.is_empty() {
                "no owner tag: not a director-boot lab".into()
            } else {
                owner
            },
        });
    }
    Ok(())
}

/// Shared context of one `up`/`start` run.
struct Ctx {
    lab_dir: PathBuf,
    base: PathBuf,
    client_pub: String,
    hierarchies: Vec<cgroup::Hierarchy>,
    state: Arc<Mutex<LabState>>,
}

impl Ctx {
    /// Change the state and save it at once (it is the record `down` relies on).
    fn record(&self, f: impl FnOnce(&mut LabState)) -> Result<(), LabError> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| LabError::Invalid("lab state lock poisoned".into()))?;
        f(&mut guard);
        guard.save()
    }

    fn node(&self, index: u32) -> Option<state::NodeRecord> {
        self.state.lock().ok().and_then(|s| s.node(index).cloned())
    }
}

/// Prepare and boot one node unless it is already running; returns whether it was started.
async fn bring_up(ctx: &Ctx, index: u32, bar: &indicatif::ProgressBar) -> Result<bool, LabError> {
    let name = names::node_name(index);
    let d = NodeDirs::new(&ctx.lab_dir, &name);
    if let Some(rec) = ctx.node(index).filter(|n| n.running()) {
        // Running is not enough for a usable lab: its sshd must answer too.
        let (pid, start) = (rec.pid.unwrap_or(0), rec.start_time.unwrap_or(0));
        machine::wait_for_ssh(&d, index, pid, start, RUNNING_SSH_LIMIT).await?;
        return Ok(false);
    }
    ctx.record(|s| {
        s.node_mut(index);
    })?;
    bar.set_message("root filesystem");
    machine::mount_root(&ctx.base, &d).await?;
    let (firewalld, user) = ctx
        .state
        .lock()
        .map(|s| (s.firewalld, s.user.clone()))
        .unwrap_or_default();
    let host_key =
        machine::personalize(&d, &name, &ctx.client_pub, firewalld, user.as_deref()).await?;
    ctx.record(|s| s.node_mut(index).host_key = Some(host_key))?;

    bar.set_message("network");
    ctx.record(|s| s.node_mut(index).netns = true)?;
    netns::create_netns(index).await?;
    ctx.record(|s| s.node_mut(index).veth = true)?;
    netns::create_veth(index).await?;

    bar.set_message("cgroups");
    let dirs = cgroup::node_dirs(&ctx.hierarchies, index);
    ctx.record(|s| s.node_mut(index).cgroups = dirs.clone())?;
    cgroup::prepare(&ctx.hierarchies, index).await?;

    bar.set_message("booting");
    let (pid, start) = machine::launch(&d, index, &dirs)?;
    ctx.record(|s| {
        let n = s.node_mut(index);
        n.pid = Some(pid);
        n.start_time = Some(start);
    })?;
    bar.set_message("waiting for sshd");
    machine::wait_for_ssh(&d, index, pid, start, BOOT_LIMIT).await?;
    Ok(true)
}

/// Known_hosts and inventory from the recorded nodes.
fn write_client_files(lab_dir: &Path, state: &LabState) -> Result<PathBuf, LabError> {
    let pinned: Vec<(String, String)> = state
        .nodes
        .iter()
        .filter_map(|n| n.host_key.clone().map(|k| (n.address.clone(), k)))
        .collect();
    let kh = keys::known_hosts_path(lab_dir);
    std::fs::write(&kh, keys::render_known_hosts(&pinned)).map_err(LabError::io(&kh))?;
    let hosts: Vec<(String, String)> = state
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.address.clone()))
        .collect();
    let path = lab_dir.join("inventory.yaml");
    let text = inventory::render_for(
        lab_dir,
        &hosts,
        state.control_planes() as usize,
        state.user.as_deref(),
    )
    .map_err(|e| LabError::Invalid(format!("cannot render the lab inventory: {e}")))?;
    std::fs::write(&path, text).map_err(LabError::io(&path))?;
    Ok(path)
}

/// Common start of `up` and `start`: root, prerequisites, ownership, base, key, bridge.
async fn context(paths: &Paths, progress: &HostProgress, nodes: u32) -> Result<Ctx, LabError> {
    let say = |line: &str| progress.println(line);
    let lab_dir = lab_dir(paths);
    let existing = LabState::load(&lab_dir)?;
    let total = nodes.max(existing.as_ref().map_or(0, |s| s.nodes.len() as u32));
    prereqs::ensure(total, &say).await?;
    crate::paths::ensure_private_dir(&lab_dir).map_err(LabError::io(&lab_dir))?;
    check_ownership(&lab_dir)?;
    let mut state = existing.unwrap_or_else(|| LabState::new(&lab_dir));
    state.lab_dir = lab_dir.clone();
    let in_use = state
        .nodes
        .iter()
        .any(|n| sys::is_mount_point(&NodeDirs::new(&lab_dir, &n.name).root).unwrap_or(true));
    let base = rootfs::ensure(&paths.cache, in_use, &say).await?;
    let client_pub = keys::ensure_client_key(&lab_dir).await?;
    if netns::bridge_owner().is_none() {
        // Foreign per-node leftovers with our fixed names would be silently reused.
        if let Some(ns) =
            (1..=names::MAX_NODES).find(|i| netns::netns_exists(*i) && state.node(*i).is_none())
        {
            return Err(LabError::Foreign {
                what: format!("network namespace {}", names::netns(ns)),
            });
        }
    }
    state.bridge = true;
    state.save()?;
    netns::create_bridge(&netns::owner_tag(&lab_dir)).await?;
    Ok(Ctx {
        lab_dir,
        base,
        client_pub,
        hierarchies: cgroup::hierarchies()?,
        state: Arc::new(Mutex::new(state)),
    })
}

/// Bring up the given nodes in parallel (bounded), one progress line each.
async fn bring_up_all(
    ctx: &Ctx,
    progress: &HostProgress,
    indexes: Vec<u32>,
) -> Result<usize, LabError> {
    let results: Vec<Result<bool, LabError>> = futures::stream::iter(indexes)
        .map(|i| {
            let bar = progress.host(&names::node_name(i), "waiting");
            async move {
                let t = Instant::now();
                let r = bring_up(ctx, i, &bar).await;
                bar.finish_and_clear();
                // One line per node, also when the bars are hidden (logs, CI).
                let name = names::node_name(i);
                progress.println(&match &r {
                    Ok(true) => format!(
                        "{name}: sshd up on {} ({:.1} s)",
                        names::node_address(i),
                        t.elapsed().as_secs_f64()
                    ),
                    Ok(false) => format!("{name}: already running"),
                    Err(e) => format!("{name}: failed: {e}"),
                });
                r
            }
        })
        .buffer_unordered(BOOT_PARALLELISM)
        .collect()
        .await;
    let mut started = 0;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(true) => started += 1,
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(started)
    } else {
        Err(LabError::Invalid(format!(
            "{} node(s) did not come up (`director-boot lab down` cleans up):\n  {}",
            errors.len(),
            errors.join("\n  ")
        )))
    }
}

/// Refuse a control-plane count that cannot make a sound cluster of `nodes`.
fn check_control_planes(control_planes: u32, nodes: u32) -> Result<(), LabError> {
    if control_planes == 0 || control_planes > nodes {
        return Err(LabError::Invalid(format!(
            "--control-planes {control_planes} with --nodes {nodes}: give 1 to {nodes} control planes (or more nodes)"
        )));
    }
    // Each control plane is an etcd member; an even count buys no fault tolerance.
    if control_planes > 1 && control_planes.is_multiple_of(2) {
        return Err(LabError::Invalid(format!(
            "--control-planes {control_planes}: {}",
            crate::inventory::quorum_arithmetic(control_planes as usize)
        )));
    }
    Ok(())
}

/// How `lab up` makes its nodes look (RHEL-like options).
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Run firewalld on every node.
    pub firewalld: bool,
    /// The only SSH login: key login, passwordless sudo; root cannot log in.
    pub user: Option<String>,
}

/// Build (or reuse) the lab with `nodes` machines, the first `control_planes` of them control
/// planes (`None`: as the existing lab has it, else 1); returns the path of the ready inventory.
pub async fn up(
    paths: &Paths,
    nodes: u32,
    control_planes: Option<u32>,
    opts: UpOptions,
) -> anyhow::Result<PathBuf> {
    if let Some(u) = &opts.user
        && (u == "root"
            || u.is_empty()
            || u.starts_with('-')
            || !u
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'))
    {
        return Err(LabError::Invalid(format!(
            "--user {u}: give a login name other than root (lowercase letters, digits, '-')"
        ))
        .into());
    }
    if nodes == 0 || nodes > names::MAX_NODES {
        return Err(LabError::Invalid(format!(
            "a lab has 1 to {} nodes, not {nodes}",
            names::MAX_NODES
        ))
        .into());
    }
    if let Some(k) = control_planes {
        check_control_planes(k, nodes)?;
    }
    let progress = HostProgress::new(false);
    let started = Instant::now();
    require_root()?;
    let _lock = machine_lock(&|l| progress.println(l)).await?;
    let ctx = context(paths, &progress, nodes).await?;
    // Growing adds nodes; a smaller N keeps (and starts) the existing ones.
    let recorded: Vec<u32> = ctx
        .state
        .lock()
        .map(|s| s.nodes.iter().map(|n| n.index).collect())
        .unwrap_or_default();
    let mut indexes: Vec<u32> = (1..=nodes).collect();
    for i in recorded {
        if !indexes.contains(&i) {
            indexes.push(i);
        }
    }
    indexes.sort_unstable();
    if indexes.len() > nodes as usize {
        progress.println(&format!(
            "lab: keeping the existing {} nodes (`lab down` first for fewer)",
            indexes.len()
        ));
    }
    // Recorded before booting, so the inventory written even after a failure has it.
    if let Some(k) = control_planes {
        ctx.record(|s| s.control_planes = k)?;
    }
    // Applied to each node when it boots; running nodes keep what they booted with.
    ctx.record(|s| {
        s.firewalld = opts.firewalld;
        s.user = opts.user.clone();
    })?;
    let count = indexes.len();
    let booted = bring_up_all(&ctx, &progress, indexes).await;
    // Even after a failure, the client files describe what is there.
    let inventory = {
        let state = ctx
            .state
            .lock()
            .map_err(|_| LabError::Invalid("lab state lock poisoned".into()))?;
        write_client_files(&ctx.lab_dir, &state)?
    };
    let booted = booted?;
    progress.println(&format!(
        "lab: {count} node(s) up ({booted} started) in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(inventory)
}

pub async fn status(paths: &Paths) -> anyhow::Result<LabStatus> {
    names::check_slot().map_err(LabError::Invalid)?;
    let Some(state) = LabState::load(&lab_dir(paths))? else {
        return Ok(LabStatus {
            nodes: Vec::new(),
            control_plane_endpoint: None,
        });
    };
    let control_planes = state.control_planes() as usize;
    let nodes = state
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let running = n.running();
            NodeStatus {
                name: n.name.clone(),
                address: n.address.clone(),
                state: if running { "running" } else { "stopped" }.into(),
                pid: if running { n.pid } else { None },
                roles: inventory::roles(i, state.nodes.len(), control_planes)
                    .into_iter()
                    .map(String::from)
                    .collect(),
            }
        })
        .collect();
    Ok(LabStatus {
        nodes,
        control_plane_endpoint: inventory::endpoint(control_planes).map(|a| {
            format!(
                "{a}:{}",
                crate::inventory::ControlPlaneEndpoint::DEFAULT_PORT
            )
        }),
    })
}

/// Stop one node (its namespace, dirs and identity are kept for `start`).
async fn stop_one(lab_dir: &Path, state: &mut LabState, index: u32) -> Result<(), LabError> {
    let Some(rec) = state.node(index).cloned() else {
        return Ok(());
    };
    let all_gone = machine::stop(rec.pid, rec.start_time, &rec.cgroups).await;
    if !all_gone {
        return Err(LabError::node(
            &rec.name,
            "processes left in its cgroups after SIGKILL",
        ));
    }
    let n = state.node_mut(index);
    n.pid = None;
    n.start_time = None;
    state.save()?;
    cgroup::remove(&rec.cgroups).await?;
    // nspawn runs in its own mount namespace; anything left here is ours to undo.
    sys::unmount_all_under(&NodeDirs::new(lab_dir, &rec.name).dir).await
}

fn parse_node(name: &str, state: &LabState) -> Result<u32, LabError> {
    names::node_index(name)
        .filter(|i| state.node(*i).is_some())
        .ok_or_else(|| LabError::UnknownNode(name.to_string()))
}

fn require_root() -> Result<(), LabError> {
    if sys::is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

pub async fn stop_node(paths: &Paths, name: &str) -> anyhow::Result<()> {
    require_root()?;
    let _lock = machine_lock(&|l| eprintln!("{l}")).await?;
    let lab_dir = lab_dir(paths);
    let mut state = LabState::load(&lab_dir)?.ok_or_else(|| LabError::UnknownNode(name.into()))?;
    let index = parse_node(name, &state)?;
    stop_one(&lab_dir, &mut state, index).await?;
    Ok(())
}

pub async fn start_node(paths: &Paths, name: &str) -> anyhow::Result<()> {
    let lab = lab_dir(paths);
    let state = LabState::load(&lab)?.ok_or_else(|| LabError::UnknownNode(name.into()))?;
    let index = parse_node(name, &state)?;
    let progress = HostProgress::new(false);
    require_root()?;
    let _lock = machine_lock(&|l| progress.println(l)).await?;
    let ctx = context(paths, &progress, 1).await?;
    bring_up_all(&ctx, &progress, vec![index]).await?;
    Ok(())
}

/// Remove the lab; `Ok(false)` when there was none.
pub async fn teardown(paths: &Paths) -> anyhow::Result<bool> {
    let lab_dir = lab_dir(paths);
    if LabState::load(&lab_dir)?.is_none() {
        return Ok(false);
    }
    require_root()?;
    let _lock = machine_lock(&|l| eprintln!("{l}")).await?;
    // Read again under the lock: a concurrent command may have changed it.
    let Some(mut state) = LabState::load(&lab_dir)? else {
        return Ok(false);
    };
    let mut problems: Vec<String> = Vec::new();
    let indexes: Vec<u32> = state.nodes.iter().map(|n| n.index).collect();
    // Stop in parallel: each node needs a few seconds for its clean poweroff.
    let stops = futures::future::join_all(indexes.iter().map(|&i| {
        let rec = state.node(i).cloned().unwrap_or_default();
        async move {
            (
                i,
                machine::stop(rec.pid, rec.start_time, &rec.cgroups).await,
            )
        }
    }))
    .await;
    for (i, gone) in stops {
        if !gone {
            problems.push(format!(
                "{}: processes left after SIGKILL",
                names::node_name(i)
            ));
        }
    }
    for &i in &indexes {
        let rec = state.node(i).cloned().unwrap_or_default();
        let d = NodeDirs::new(&lab_dir, &rec.name);
        if let Err(e) = cgroup::remove(&rec.cgroups).await {
            // Keep the record so that the next `down` retries.
            problems.push(format!("{}: cgroups: {e}", rec.name));
            continue;
        }
        if let Err(e) = sys::unmount_all_under(&d.dir).await {
            problems.push(format!("{}: {e}", rec.name));
            continue;
        }
        if (rec.netns || rec.veth)
            && let Err(e) = netns::delete_node(i).await
        {
            problems.push(format!("{}: network: {e}", rec.name));
            continue;
        }
        if d.dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&d.dir)
        {
            problems.push(format!("{}: {}: {e}", rec.name, d.dir.display()));
            continue;
        }
        state.nodes.retain(|n| n.index != i);
        state.save()?;
    }
    if let Ok(h) = cgroup::hierarchies() {
        cgroup::remove_parents(&cgroup::parent_dirs(&h));
    }
    if !problems.is_empty() {
        return Err(LabError::Invalid(format!(
            "the lab was only partly removed (run `lab down` again):\n  {}",
            problems.join("\n  ")
        ))
        .into());
    }
    if state.bridge && netns::bridge_owner() == Some(netns::owner_tag(&lab_dir)) {
        netns::delete_bridge().await?;
    }
    sys::unmount_all_under(&lab_dir).await?;
    let _ = std::fs::remove_dir(lab_dir.join("nodes"));
    for f in ["inventory.yaml", "known_hosts"] {
        let _ = std::fs::remove_file(lab_dir.join(f));
    }
    let path = LabState::path(&lab_dir);
    std::fs::remove_file(&path).map_err(LabError::io(&path))?;
    Ok(true)
}

pub async fn down(paths: &Paths) -> anyhow::Result<()> {
    teardown(paths).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_counts() {
        assert!(check_control_planes(1, 1).is_ok());
        assert!(check_control_planes(3, 3).is_ok());
        assert!(check_control_planes(3, 5).is_ok());
        assert_eq!(
            check_control_planes(4, 5).unwrap_err().to_string(),
            "--control-planes 4: 4 etcd members need 3 for quorum and so tolerate 1 failure, like 3 members do: use 3 or 5"
        );
        assert_eq!(
            check_control_planes(2, 3).unwrap_err().to_string(),
            "--control-planes 2: 2 etcd members need 2 for quorum and so tolerate no failure, like 1 member does: use 1 or 3"
        );
        assert_eq!(
            check_control_planes(5, 3).unwrap_err().to_string(),
            "--control-planes 5 with --nodes 3: give 1 to 3 control planes (or more nodes)"
        );
    }
}
