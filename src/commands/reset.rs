//! `director-boot reset`: remove everything init installed, on every reachable host.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::cluster_state::ClusterState;
use crate::engine::context;
use crate::engine::render::{self, Renderer};
use crate::engine::reset;
use crate::engine::runner::Runner;
use crate::engine::subnets;
use crate::fleet::{open_nodes, ssh_config};
use crate::paths::Paths;

pub async fn run(
    paths: &Paths,
    inventory: &Path,
    yes: bool,
    forget: bool,
    args: &SshArgs,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    if !yes {
        anyhow::bail!(
            "reset deletes the cluster {} on {} hosts (etcd data included); re-run with --yes to confirm",
            inv.cluster_name,
            inv.hosts.len()
        );
    }
    let cfg = ssh_config(paths, &inv, &args.fleet())?;
    let state = ClusterState::new(paths, &inv.cluster_name);
    let renderer = Renderer::new()?;
    let roles = render::roles()?;
    let mut runner = Runner::new(
        false,
        args.concurrency as usize,
        verbose,
        json,
        Some(&state.logs_dir()),
    );
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    // Subnets only feed path templates here; any consistent assignment will do.
    let recorded = state.subnets().ok().flatten().unwrap_or_default();
    let subnets = subnets::allocate(
        &recorded,
        &hosts,
        inv.network.pod_cidr,
        inv.network.node_prefix,
    )?;
    let cluster = context::cluster(&inv, &subnets, "", BTreeMap::new())?;

    let nodes = open_nodes(&mut runner, &inv, &cfg, false).await;
    let (renderer_ref, roles_ref, cluster_ref, inv_ref) = (&renderer, &roles, &cluster, &inv);
    runner
        .phase("reset", nodes.iter().collect(), |n| async move {
            let nc = context::node(inv_ref, cluster_ref, &n.host, &n.facts)?;
            let plan = reset::plan(renderer_ref, roles_ref, cluster_ref, &nc, &n.host.roles)?;
            let script = reset::script(renderer_ref, &plan)?;
            let out = n
                .sudo_ok(&crate::node::script_command(&script, &[]))
                .await?;
            Ok(out.stdout.lines().map(str::to_string).collect())
        })
        .await;
    if forget && !runner.failed_any(&hosts) && state.exists() {
        state.forget()?;
        runner.say(&format!("removed local state {}", state.dir().display()));
    }
    Ok(runner.finish("reset", &hosts))
}
