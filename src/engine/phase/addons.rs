//! `addons`: the cluster add-ons (roles of the `addons` phase: CoreDNS, the API server's access
//! to the kubelets) applied with kubectl from the first healthy control-plane host.

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::addons;
use crate::inventory::HostRole;
use crate::node::Node;

/// The add-ons phase. `init` runs it twice: once right after the control plane with
/// `wait: false` (the manifests go in while the nodes are still being set up, so the
/// scheduler places CoreDNS the moment a node is Ready), and once at the end, which finds the
/// manifests applied and waits for the add-ons to be available.
pub struct Addons {
    pub wait: bool,
}

pub const PHASE: &str = "addons";
/// The title of the early pass.
pub const APPLY_TITLE: &str = "addons-apply";

impl Phase for Addons {
    fn title(&self) -> &str {
        if self.wait { PHASE } else { APPLY_TITLE }
    }

    /// Cluster-wide: not part of `init --limit`, which touches only the named hosts.
    /// A dry run reports the add-ons once, in the final pass.
    fn should_run(&self, s: &RunState) -> bool {
        s.opts.only_hosts.is_none() && (self.wait || !s.opts.dry_run)
    }

    /// The control-plane hosts; the phase runs on the first that has not failed.
    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.nodes
            .iter()
            .filter(|n| n.host.has_role(HostRole::ControlPlane))
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let Some(cp) = self
                .hosts(st)
                .into_iter()
                .find(|n| !runner.failed(n.name()))
            else {
                return Ok(());
            };
            let env = st.env()?;
            let env = &env;
            let roles: Vec<_> = st.roles.iter().filter(|r| r.phase == PHASE).collect();
            let roles = &roles;
            let wait = self.wait;
            runner
                .phase(self.title(), vec![cp], |n| async move {
                    let nc = st
                        .node_ctx
                        .get(n.name())
                        .ok_or_else(|| anyhow::anyhow!("no node context"))?;
                    // Add-ons do not depend on each other: one's rollout wait (CoreDNS
                    // becoming available) overlaps the others' applies.
                    let applied = futures::future::try_join_all(
                        roles.iter().map(|r| addons::apply(env, n, nc, r, wait)),
                    )
                    .await?;
                    Ok(applied.into_iter().flatten().collect())
                })
                .await;
            Ok(())
        })
    }
}
