//! `backup` and `restore`.
//!
//! `backup`: connect to the etcd members, snapshot etcd through the first healthy one, and
//! write that snapshot with the cluster state dir (PKI, Secrets encryption key ring, subnets,
//! admin kubeconfig) into one checked file (`backup_archive`), 0600.
//!
//! `restore`: verify the file, connect to every host, put the backup's state dir back, stop
//! the control plane and then etcd everywhere, rebuild every member's data dir from the
//! snapshot under a new cluster token (etcdutl), start etcd and the control plane again
//! (init's component phases: the etcd unit now carries the new token), restart kubelets and
//! kube-proxy, and wait for every node to be Ready.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;

use crate::cluster_state::ClusterState;
use crate::engine::artifacts::Artifacts;
use crate::engine::backup_archive::Written;
use crate::engine::phase::{self, Options, Phase, Run, RunState, backup, restore};
use crate::engine::runner::Runner;
use crate::fleet::{FleetOptions, ssh_config};
use crate::inventory::{HostRole, Inventory};
use crate::paths::Paths;

pub struct BackupRequest {
    pub inv: Inventory,
    pub output: Option<PathBuf>,
    pub dry_run: bool,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
}

pub struct RestoreRequest {
    pub inv: Inventory,
    pub file: PathBuf,
    pub artifacts: PathBuf,
    pub dry_run: bool,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
    /// How long to wait for the nodes to be Ready at the end.
    pub ready_timeout: Duration,
}

/// `<cluster>-<UTC time>.backup.tar.gz` in the current directory.
pub fn default_output(cluster: &str) -> PathBuf {
    PathBuf::from(format!(
        "{cluster}-{}.backup.tar.gz",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ))
}

pub fn backup_phases(
    taken: &backup::Shared,
    output: PathBuf,
    written: &Rc<RefCell<Option<Written>>>,
) -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(phase::connect::Connect),
        Box::new(backup::Snapshot {
            taken: taken.clone(),
        }),
        Box::new(backup::Archive {
            taken: taken.clone(),
            output,
            written: written.clone(),
        }),
    ]
}

pub fn restore_phases(file: PathBuf, opened: &restore::Shared) -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(restore::Verify {
            file,
            opened: opened.clone(),
        }),
        Box::new(phase::connect::Connect),
        Box::new(restore::RestoreState {
            opened: opened.clone(),
        }),
        Box::new(phase::subnets::Subnets),
        Box::new(phase::pki::Pki),
        Box::new(phase::host_plan::HostPlan),
        Box::new(restore::StopUnits {
            title: "stop-control-plane",
            component: "control-plane",
        }),
        Box::new(restore::StopUnits {
            title: "stop-etcd",
            component: "etcd",
        }),
        Box::new(restore::RestoreEtcd {
            opened: opened.clone(),
        }),
        Box::new(phase::component::Component {
            name: "etcd",
            loads_images: false,
        }),
        Box::new(phase::component::Component {
            name: "control-plane",
            loads_images: false,
        }),
        Box::new(restore::RestartUnits {
            title: "restart-nodes",
            components: &["kubelet", "kube-proxy"],
        }),
        Box::new(restore::NodesReady {
            timeout: Duration::from_secs(300),
        }),
        Box::new(phase::admin_kubeconfig::AdminKubeconfig),
    ]
}

fn existing_state(paths: &Paths, inv: &Inventory) -> anyhow::Result<ClusterState> {
    let state = ClusterState::new(paths, &inv.cluster_name);
    if !state.exists() {
        anyhow::bail!(
            "{}: no state for cluster {}; run `director-boot init` first",
            state.dir().display(),
            inv.cluster_name
        );
    }
    Ok(state)
}

/// How a run reports: (dry run, --json, verbose).
type Flags = (bool, bool, bool);

fn new_run(
    inv: Inventory,
    state: ClusterState,
    paths: &Paths,
    fleet: &FleetOptions,
    artifacts: Artifacts,
    (dry_run, json, verbose): Flags,
) -> anyhow::Result<Run> {
    let ssh = ssh_config(paths, &inv, fleet)?;
    state
        .create()
        .with_context(|| format!("cannot use {}", state.dir().display()))?;
    let runner = Runner::new(
        dry_run,
        fleet.concurrency,
        verbose,
        json,
        Some(&state.logs_dir()),
    );
    if dry_run {
        runner.say("dry run: nothing on the hosts or in the state dir is changed");
    }
    Ok(Run {
        runner,
        s: RunState::new(
            Options {
                dry_run,
                ..Options::default()
            },
            inv,
            state,
            ssh,
            artifacts,
        )?,
    })
}

pub async fn run_backup(paths: &Paths, req: BackupRequest) -> anyhow::Result<ExitCode> {
    let mut inv = req.inv;
    let state = existing_state(paths, &inv)?;
    // Only the etcd members are asked; a worker that is down does not stop a backup.
    inv.hosts.retain(|h| h.has_role(HostRole::Etcd));
    if inv.hosts.is_empty() {
        anyhow::bail!("the inventory has no etcd host");
    }
    let output = req
        .output
        .unwrap_or_else(|| default_output(&inv.cluster_name));
    if output.exists() {
        anyhow::bail!(
            "{}: exists; a backup never overwrites a file (choose another -o)",
            output.display()
        );
    }
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let mut run = new_run(
        inv,
        state,
        paths,
        &req.fleet,
        Artifacts::none(),
        (req.dry_run, req.json, req.verbose),
    )?;
    let taken = Rc::new(RefCell::new(None));
    let written = Rc::new(RefCell::new(None));
    let list = backup_phases(&taken, output, &written);
    phase::run_all(&list, &mut run).await?;
    // The file is what matters: members that could not be reached are reported, but a
    // written backup is a success.
    if written.borrow().is_some() || req.dry_run {
        let code = run.runner.finish("backup", &[]);
        if !req.json
            && let Some(w) = written.borrow().as_ref()
        {
            println!("{}", w.path.display());
        }
        if hosts.iter().any(|h| run.runner.failed(h)) {
            eprintln!(
                "warning: not every etcd member was reachable; the backup was taken through a healthy one"
            );
        }
        return Ok(code);
    }
    Ok(run.runner.finish("backup", &hosts))
}

pub async fn run_restore(paths: &Paths, req: RestoreRequest) -> anyhow::Result<ExitCode> {
    let inv = req.inv;
    if inv.hosts_with(HostRole::Etcd).next().is_none() {
        anyhow::bail!("the inventory has no etcd host");
    }
    // A restore onto a machine that lost its state dir is what the backup's state is for.
    let state = ClusterState::new(paths, &inv.cluster_name);
    let artifacts = Artifacts::open(&req.artifacts)?;
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let mut run = new_run(
        inv,
        state,
        paths,
        &req.fleet,
        artifacts,
        (req.dry_run, req.json, req.verbose),
    )?;
    let opened = Rc::new(RefCell::new(None));
    let mut list = restore_phases(req.file, &opened);
    if let Some(p) = list.iter_mut().find(|p| p.title() == "nodes-ready") {
        *p = Box::new(restore::NodesReady {
            timeout: req.ready_timeout,
        });
    }
    // Verify and connect first: a host that cannot be reached would be left on the old data,
    // so nothing is changed unless every host answered.
    phase::run_all(&list[..2], &mut run).await?;
    if run.runner.failed_any(&hosts) {
        run.runner
            .say("not every host answered: nothing was changed; fix that and run restore again");
        return Ok(run.runner.finish("restore", &hosts));
    }
    phase::run_all(&list[2..], &mut run).await?;
    Ok(run.runner.finish("restore", &hosts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(list: &[Box<dyn Phase>]) -> Vec<String> {
        list.iter().map(|p| p.title().to_string()).collect()
    }

    #[test]
    fn backup_snapshots_then_archives() {
        let taken = Rc::new(RefCell::new(None));
        let written = Rc::new(RefCell::new(None));
        let list = backup_phases(&taken, "x.tar.gz".into(), &written);
        assert_eq!(titles(&list), ["connect", "snapshot", "archive"]);
    }

    #[test]
    fn restore_verifies_first_stops_the_api_before_etcd_and_ends_with_ready_nodes() {
        let opened = Rc::new(RefCell::new(None));
        let list = restore_phases("x.tar.gz".into(), &opened);
        assert_eq!(
            titles(&list),
            [
                "verify",
                "connect",
                "state",
                "subnets",
                "pki",
                "facts",
                "stop-control-plane",
                "stop-etcd",
                "restore-etcd",
                "etcd",
                "control-plane",
                "restart-nodes",
                "nodes-ready",
                "admin-kubeconfig"
            ]
        );
    }

    #[test]
    fn the_default_output_names_the_cluster_and_the_time() {
        let p = default_output("lab").to_string_lossy().into_owned();
        assert!(
            p.starts_with("lab-2") && p.ends_with("Z.backup.tar.gz"),
            "{p}"
        );
    }
}
