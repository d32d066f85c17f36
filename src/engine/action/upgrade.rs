//! `upgrade --to VERSION`: init's connect, subnets, pki and host plan (what templates see, with
//! the target version's binaries selected from the mirror), then the upgrade's own phases
//! (`phase::upgrade`): preflight of the skew policy and the plan, an etcd snapshot, etcd
//! members and control planes one at a time, the nodes in batches, and the version recorded.
//! A host that fails stops the upgrade; the progress in the state dir makes a re-run resume.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context;

use crate::cluster_state::ClusterState;
use crate::engine::artifacts::Artifacts;
use crate::engine::phase::upgrade::{self as up, Shared, SharedRef};
use crate::engine::phase::{self, Options, Phase, Run, RunState};
use crate::engine::runner::Runner;
use crate::engine::upgrade::{Batch, Progress, Version};
use crate::fleet::{FleetOptions, ssh_config};
use crate::inventory::Inventory;
use crate::paths::Paths;

pub struct Request {
    pub inv: Inventory,
    /// The inventory file, for the resume hint.
    pub inventory_path: PathBuf,
    pub to: Version,
    pub batch: Batch,
    pub dry_run: bool,
    pub artifacts: Option<PathBuf>,
    pub drain_timeout_secs: u64,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
}

pub fn phases(shared: &SharedRef) -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(phase::connect::Connect),
        Box::new(phase::subnets::Subnets),
        Box::new(phase::pki::Pki),
        Box::new(phase::host_plan::HostPlan),
        Box::new(up::Preflight {
            shared: shared.clone(),
        }),
        Box::new(up::EtcdBackup {
            shared: shared.clone(),
        }),
        Box::new(up::Rolling {
            component: up::ETCD,
            shared: shared.clone(),
        }),
        Box::new(up::Rolling {
            component: up::CONTROL_PLANE,
            shared: shared.clone(),
        }),
        Box::new(up::Nodes {
            shared: shared.clone(),
        }),
        Box::new(up::Record {
            shared: shared.clone(),
        }),
    ]
}

pub async fn run(paths: &Paths, req: Request) -> anyhow::Result<ExitCode> {
    let inv = req.inv;
    let ssh = ssh_config(paths, &inv, &req.fleet)?;
    let state = ClusterState::new(paths, &inv.cluster_name);
    if !state.exists() || !state.pki_dir().exists() {
        anyhow::bail!(
            "{}: no state for cluster {}; `upgrade` works on a cluster `init` built",
            state.dir().display(),
            inv.cluster_name
        );
    }
    let artifacts_dir = req.artifacts.unwrap_or_else(|| paths.cache.join("mirror"));
    let mut artifacts = Artifacts::open(&artifacts_dir)?;
    let target = req.to.to_string();
    artifacts
        .select(&target)
        .with_context(|| format!("upgrade --to {target}"))?;
    if let Some(p) = state.upgrade_progress()?
        && p.to != target
        && !req.dry_run
    {
        anyhow::bail!(
            "an upgrade to {} is in progress ({}): finish it (`upgrade --to {}`) before going to {target}",
            p.to,
            state.upgrade_file().display(),
            p.to
        );
    }
    let runner = Runner::new(
        req.dry_run,
        req.fleet.concurrency,
        req.verbose,
        req.json,
        Some(&state.logs_dir()),
    );
    if req.dry_run {
        runner.say("dry run: nothing on the hosts or in the state dir is changed");
    }
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let shared: SharedRef = Rc::new(RefCell::new(Shared {
        target: req.to,
        batch: req.batch,
        drain_timeout_secs: req.drain_timeout_secs,
        ready_timeout_secs: 300,
        installed: Default::default(),
        progress: Progress::default(),
        kubectl_host: None,
        stopped: None,
    }));
    let mut run = Run {
        runner,
        s: RunState::new(
            Options {
                dry_run: req.dry_run,
                ..Options::default()
            },
            inv,
            state,
            ssh,
            artifacts,
        )?,
    };
    let list = phases(&shared);
    phase::run_all(&list, &mut run).await?;
    let sh = shared.borrow();
    if let Some(why) = &sh.stopped {
        let left: Vec<String> = up::unfinished(&sh).into_iter().collect();
        run.runner.say(&format!(
            "upgrade to {target} stopped: {why}. Not yet at {target}: {}. Fix that host and re-run `director-boot upgrade {} --to {target}`: hosts already at {target} are skipped (progress: {}).",
            if left.is_empty() { "-".to_string() } else { left.join(", ") },
            req.inventory_path.display(),
            run.s.state.upgrade_file().display()
        ));
    }
    Ok(run.runner.finish("upgrade", &hosts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_runs_preflight_backup_etcd_control_planes_nodes_in_order() {
        let shared: SharedRef = Rc::new(RefCell::new(Shared {
            target: "v1.37.2".parse().unwrap(),
            batch: Batch::default(),
            drain_timeout_secs: 300,
            ready_timeout_secs: 300,
            installed: Default::default(),
            progress: Progress::default(),
            kubectl_host: None,
            stopped: None,
        }));
        let titles: Vec<String> = phases(&shared)
            .iter()
            .map(|p| p.title().to_string())
            .collect();
        assert_eq!(
            titles,
            [
                "connect",
                "subnets",
                "pki",
                "facts",
                "upgrade-preflight",
                "etcd-backup",
                "etcd",
                "control-plane",
                "nodes",
                "upgrade-record"
            ]
        );
    }
}
