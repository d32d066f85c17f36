//! `addons`: the cluster add-ons (roles of the `addons` phase: CoreDNS, the API server's access
//! to the kubelets) applied with kubectl from the first healthy control-plane host.

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::addons;
use crate::inventory::HostRole;
use crate::node::Node;

pub struct Addons;

pub const PHASE: &str = "addons";

impl Phase for Addons {
    fn title(&self) -> &str {
        PHASE
    }

    /// Cluster-wide: not part of `init --limit`, which touches only the named hosts.
    fn should_run(&self, s: &RunState) -> bool {
        s.opts.only_hosts.is_none()
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
            runner
                .phase(PHASE, vec![cp], |n| async move {
                    let nc = st
                        .node_ctx
                        .get(n.name())
                        .ok_or_else(|| anyhow::anyhow!("no node context"))?;
                    let mut changes = Vec::new();
                    for r in roles {
                        changes.extend(addons::apply(env, n, nc, r).await?);
                    }
                    Ok(changes)
                })
                .await;
            Ok(())
        })
    }
}
