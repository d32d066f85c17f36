//! `init`: connect, preflight, subnets, pki, the host plan, artifacts, then the component
//! phases driven by role files, then addons and the admin kubeconfig. Every phase skips what is
//! already right; a dry run only reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cluster_state::ClusterState;
use crate::engine::artifacts::Artifacts;
use crate::engine::phase::{self, Options, Phase, Run, RunState};
use crate::engine::preflight;
use crate::engine::render::{self, Renderer};
use crate::engine::role::ComponentRole;
use crate::engine::runner::Runner;
use crate::fleet::{FleetOptions, ssh_config};
use crate::inventory::Inventory;
use crate::paths::Paths;

/// Component phases in the order they run; every role file names one of these or `addons`.
pub const COMPONENTS: &[&str] = &[
    "node-prep",
    "apiserver-lb",
    "etcd",
    "control-plane",
    "runtime",
    "kubelet",
    "kube-proxy",
    "overlay-wireguard",
    "overlay",
];

/// The components `overlay up` converges.
pub const OVERLAY_COMPONENTS: &[&str] = &["node-prep", "overlay-wireguard", "overlay"];

pub struct Request {
    pub inv: Inventory,
    pub opts: Options,
    pub artifacts: Option<PathBuf>,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
    /// The command name in the summary.
    pub command: &'static str,
}

/// The phases of `init`; with `only_components`, the cluster-wide steps (addons, the admin
/// kubeconfig) are left out and only those component phases run.
pub fn phases(only_components: Option<&[&str]>) -> Vec<Box<dyn Phase>> {
    let mut list: Vec<Box<dyn Phase>> = vec![
        Box::new(phase::connect::Connect),
        Box::new(phase::preflight::Preflight),
        Box::new(phase::subnets::Subnets),
        Box::new(phase::pki::Pki),
        Box::new(phase::host_plan::HostPlan),
        Box::new(phase::artifacts::Artifacts),
    ];
    for &name in COMPONENTS {
        if only_components.is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        if name == "etcd" {
            list.push(Box::new(phase::etcd_members::EtcdMembers));
        }
        if name == "overlay-wireguard" {
            list.push(Box::new(phase::overlay_keys::OverlayKeys));
            // Only with `overlay rotate-keys`.
            list.push(Box::new(phase::overlay_rotate::RotateKeys));
        }
        list.push(Box::new(phase::component::Component {
            name,
            loads_images: name == "runtime",
        }));
        if name == "control-plane" && only_components.is_none() {
            list.push(Box::new(phase::addons::Addons { wait: false }));
        }
    }
    if only_components.is_none() {
        list.push(Box::new(phase::addons::Addons { wait: true }));
        list.push(Box::new(phase::encryption::RewriteSecrets {
            title: "secrets-encrypt",
            step: None,
        }));
        list.push(Box::new(phase::admin_kubeconfig::AdminKubeconfig));
    }
    list
}

pub async fn run(paths: &Paths, req: Request) -> anyhow::Result<ExitCode> {
    let unknown = preflight::unknown_skips(&req.opts.skip_preflight);
    if !unknown.is_empty() {
        anyhow::bail!(
            "--skip-preflight: unknown check(s) {}; known: {}",
            unknown.join(", "),
            preflight::CHECKS.join(", ")
        );
    }
    let inv = req.inv;
    let ssh = ssh_config(paths, &inv, &req.fleet)?;
    let state = ClusterState::new(paths, &inv.cluster_name);
    state
        .create()
        .with_context(|| format!("cannot create {}", state.dir().display()))?;
    // A node `remove-node` took out must leave the inventory before the cluster is converged.
    crate::membership::check_inventory(&state, &inv, "the inventory")?;
    if !req.opts.dry_run {
        crate::membership::prune_removed(&state, &inv)?;
    }
    let artifacts_dir = req.artifacts.unwrap_or_else(|| paths.cache.join("mirror"));
    let mut artifacts = Artifacts::open(&artifacts_dir)?;
    // The version the cluster runs (recorded by an earlier init or upgrade), never older.
    crate::engine::upgrade::init_version(&state, &mut artifacts)?;
    let version = artifacts.kubernetes_version.clone();
    let renderer = Renderer::new()?;
    let roles = render::roles()?;
    check_role_phases(&roles)?;
    let runner = Runner::new(
        req.opts.dry_run,
        req.fleet.concurrency,
        req.verbose,
        req.json,
        Some(&state.logs_dir()),
    );
    if req.opts.dry_run {
        runner.say("dry run: nothing on the hosts is changed");
    }
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let list = phases(req.opts.only_components);
    let mut run = Run {
        runner,
        s: RunState {
            opts: req.opts,
            inv,
            state,
            ssh,
            artifacts,
            renderer,
            roles,
            nodes: Vec::new(),
            subnets: Default::default(),
            pki: None,
            encryption: None,
            cluster: None,
            node_ctx: Default::default(),
            host_roles: Default::default(),
            staged: Default::default(),
        },
    };
    phase::run_all(&list, &mut run).await?;
    let full = run.s.opts.only_components.is_none() && run.s.opts.only_hosts.is_none();
    if full && !run.s.opts.dry_run && !run.runner.failed_any(&hosts) {
        run.s.state.save_kubernetes_version(&version)?;
    }
    Ok(run.runner.finish(req.command, &hosts))
}

/// Every role's phase must be one the engine runs.
fn check_role_phases(roles: &[ComponentRole]) -> anyhow::Result<()> {
    for r in roles {
        if r.phase != phase::addons::PHASE && !COMPONENTS.contains(&r.phase.as_str()) {
            anyhow::bail!(
                "role {}: unknown phase {:?}; phases are {} and addons",
                r.name,
                r.phase,
                COMPONENTS.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(only: Option<&[&str]>) -> Vec<String> {
        phases(only).iter().map(|p| p.title().to_string()).collect()
    }

    #[test]
    fn init_runs_every_phase_in_order() {
        assert_eq!(
            titles(None),
            [
                "connect",
                "preflight",
                "subnets",
                "pki",
                "facts",
                "artifacts",
                "node-prep",
                "apiserver-lb",
                "etcd-members",
                "etcd",
                "control-plane",
                "addons-apply",
                "runtime",
                "kubelet",
                "kube-proxy",
                "overlay-keys",
                "overlay-rotate",
                "overlay-wireguard",
                "overlay",
                "addons",
                "secrets-encrypt",
                "admin-kubeconfig"
            ]
        );
    }

    #[test]
    fn overlay_up_is_init_restricted_to_its_components() {
        assert_eq!(
            titles(Some(OVERLAY_COMPONENTS)),
            [
                "connect",
                "preflight",
                "subnets",
                "pki",
                "facts",
                "artifacts",
                "node-prep",
                "overlay-keys",
                "overlay-rotate",
                "overlay-wireguard",
                "overlay"
            ]
        );
    }

    #[test]
    fn shipped_roles_name_known_phases() {
        check_role_phases(&render::roles().unwrap()).unwrap();
    }
}
