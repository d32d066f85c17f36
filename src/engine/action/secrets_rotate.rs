//! `secrets rotate-key`: a new Secrets encryption key, brought in without a moment where a
//! control plane cannot read what another wrote (upstream's procedure, k3s's `secrets-encrypt
//! rotate-keys`): the new key as a reader on every control plane (each API server restarted
//! and ready before the next), then as the writer everywhere, every Secret rewritten, then the
//! old key dropped. Every step is recorded in the state dir when done on every control plane,
//! so a re-run after a failure resumes at the step that failed; a run after a finished
//! rotation starts a new one.

use std::process::ExitCode;

use anyhow::Context;

use crate::cluster_state::ClusterState;
use crate::engine::artifacts::Artifacts;
use crate::engine::phase::encryption::{BeginRotation, RewriteSecrets, StageKeys};
use crate::engine::phase::{self, Options, Phase, Run, RunState};
use crate::engine::runner::Runner;
use crate::fleet::{FleetOptions, ssh_config};
use crate::inventory::{HostRole, Inventory};
use crate::paths::Paths;
use crate::pki::encryption::Step;

pub struct Request {
    pub inv: Inventory,
    pub dry_run: bool,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
}

pub fn phases() -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(phase::connect::Connect),
        Box::new(BeginRotation),
        Box::new(StageKeys {
            title: "add-reader",
            step: Step::StageReader,
        }),
        Box::new(StageKeys {
            title: "switch-writer",
            step: Step::StageWriter,
        }),
        Box::new(RewriteSecrets {
            title: "rewrite-secrets",
            step: Some(Step::Rewrite),
        }),
        Box::new(StageKeys {
            title: "drop-old-key",
            step: Step::StagePrune,
        }),
    ]
}

pub async fn run(paths: &Paths, req: Request) -> anyhow::Result<ExitCode> {
    let mut inv = req.inv;
    // Only the control planes hold the keys.
    inv.hosts.retain(|h| h.has_role(HostRole::ControlPlane));
    if inv.hosts.is_empty() {
        anyhow::bail!("the inventory has no control-plane host");
    }
    let ssh = ssh_config(paths, &inv, &req.fleet)?;
    let state = ClusterState::new(paths, &inv.cluster_name);
    if !state.exists() {
        anyhow::bail!(
            "{}: no state for cluster {}; run `director-boot init` first",
            state.dir().display(),
            inv.cluster_name
        );
    }
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
        s: RunState::new(
            Options {
                dry_run: req.dry_run,
                ..Options::default()
            },
            inv,
            state,
            ssh,
            Artifacts::none(),
        )?,
    };
    // A control plane that cannot be reached would be left with the old keys: stop before
    // anything changes.
    let list = phases();
    phase::run_all(&list[..1], &mut run).await?;
    if run.runner.failed_any(&hosts) {
        return Ok(run.runner.finish("secrets rotate-key", &hosts));
    }
    phase::run_all(&list[1..], &mut run).await?;
    Ok(run.runner.finish("secrets rotate-key", &hosts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_runs_reader_writer_rewrite_prune_in_order() {
        let titles: Vec<String> = phases().iter().map(|p| p.title().to_string()).collect();
        assert_eq!(
            titles,
            [
                "connect",
                "encryption-key",
                "add-reader",
                "switch-writer",
                "rewrite-secrets",
                "drop-old-key"
            ]
        );
    }
}
