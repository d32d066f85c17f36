//! `certs renew`: leaf certificates re-issued from the existing CAs (the named ones, all, or
//! only those due), staged on the hosts that use them, and only the units whose certificate
//! files changed restarted (etcd and control planes one host at a time); then the admin
//! kubeconfig of the state dir. CAs, keys, binaries and every other file stay as they are.
//!
//! kubelet client certificates also renew themselves: the kubelet rotates them through the
//! API (`rotateCertificates: true`), the controller manager signs node client CSRs with the
//! cluster CA and approves a node's renewal of its own (the `selfnodeclient` binding, an addon).

use std::process::ExitCode;

use anyhow::Context;

use crate::cluster_state::ClusterState;
use crate::engine::artifacts::Artifacts;
use crate::engine::phase::{self, Options, Phase, Run, RunState, certs};
use crate::engine::runner::Runner;
use crate::fleet::{FleetOptions, ssh_config};
use crate::inventory::Inventory;
use crate::paths::Paths;
use crate::pki::Renew;

pub struct Request {
    pub inv: Inventory,
    pub which: Renew,
    pub dry_run: bool,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
}

pub fn phases(which: Renew) -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(phase::connect::Connect),
        Box::new(phase::subnets::Subnets),
        Box::new(certs::RenewLeaves { which }),
        Box::new(phase::host_plan::HostPlan),
        Box::new(certs::StageCerts),
        Box::new(phase::admin_kubeconfig::AdminKubeconfig),
    ]
}

pub async fn run(paths: &Paths, req: Request) -> anyhow::Result<ExitCode> {
    let inv = req.inv;
    let state = ClusterState::new(paths, &inv.cluster_name);
    if !state.pki_dir().exists() {
        anyhow::bail!(
            "{}: no PKI for cluster {}; run `director-boot init` first",
            state.pki_dir().display(),
            inv.cluster_name
        );
    }
    // Names are checked before any host is contacted.
    if let Renew::Named(names) = &req.which {
        let known = crate::pki::leaf_names(&certs::spec(&inv))?;
        if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
            anyhow::bail!(
                "{bad}: no such leaf certificate in cluster {}; leaves are: {} (CAs are never re-issued)",
                inv.cluster_name,
                known.join(", ")
            );
        }
    }
    let ssh = ssh_config(paths, &inv, &req.fleet)?;
    state
        .create()
        .with_context(|| format!("cannot use {}", state.dir().display()))?;
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
    let mut run = Run {
        runner,
        s: // Only certificate files are staged: no binary is compared or uploaded.
            RunState::new(Options {
                dry_run: req.dry_run,
                ..Options::default()
            }, inv, state, ssh, Artifacts::none())?,
    };
    let list = phases(req.which);
    // A host that cannot be reached would keep certificates the PKI no longer has: stop
    // before anything is re-issued.
    phase::run_all(&list[..1], &mut run).await?;
    if run.runner.failed_any(&hosts) {
        run.runner
            .say("not every host answered: nothing was renewed; fix that and run again");
        return Ok(run.runner.finish("certs renew", &hosts));
    }
    phase::run_all(&list[1..], &mut run).await?;
    Ok(run.runner.finish("certs renew", &hosts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_reissues_then_stages_then_refreshes_the_admin_kubeconfig() {
        let titles: Vec<String> = phases(Renew::All)
            .iter()
            .map(|p| p.title().to_string())
            .collect();
        assert_eq!(
            titles,
            [
                "connect",
                "subnets",
                "renew",
                "facts",
                "stage-certs",
                "admin-kubeconfig"
            ]
        );
    }
}
