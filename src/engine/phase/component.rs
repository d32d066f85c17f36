//! A component phase (node-prep, etcd, control-plane, runtime, kubelet, kube-proxy, overlay):
//! one generic phase driven by role data. It applies, on every host, the component roles
//! (`roles/<component>/role.yaml`) that name this phase; `runtime` also loads the image
//! archives into containerd, on every worker.

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::apply::apply_role;
use crate::engine::images;
use crate::inventory::HostRole;
use crate::node::Node;

/// The component phase applied one host at a time once the cluster runs.
const ROLLING: &str = "control-plane";

pub struct Component {
    pub name: &'static str,
    /// Also load the staged image archives into containerd (the runtime phase of a full init:
    /// every worker, whether or not a role of this phase changed).
    pub loads_images: bool,
}

impl Phase for Component {
    fn title(&self) -> &str {
        self.name
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned()
            .filter(|n| {
                !s.roles_in(n.name(), self.name).is_empty()
                    || (self.loads_images
                        && !s.limited_out(n.name())
                        && (n.host.has_role(HostRole::Worker)
                            || n.host.has_role(HostRole::ControlPlane)))
            })
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let env = st.env()?;
            let env = &env;
            // On a running cluster the API servers change one at a time (each ready again
            // before the next), so a peer joining or leaving never takes the whole API away.
            let limit = runner.limit;
            if self.name == ROLLING && st.state.admin_kubeconfig().exists() {
                runner.limit = 1;
            }
            runner
                .phase(self.name, self.hosts(st), |n| async move {
                    let nc = st
                        .node_ctx
                        .get(n.name())
                        .ok_or_else(|| anyhow::anyhow!("no node context"))?;
                    // Roles of one phase do not depend on each other's order (a
                    // controller-manager retries until its API server answers), so they go on
                    // at once: one role's uploads overlap another's startup wait.
                    let roles = st.roles_in(n.name(), self.name);
                    let outcomes = futures::future::try_join_all(
                        roles.iter().map(|r| apply_role(env, n, nc, r)),
                    )
                    .await?;
                    let mut changes: Vec<String> =
                        outcomes.into_iter().flat_map(|o| o.changes).collect();
                    if self.loads_images {
                        let staged = st.staged.get(n.name());
                        changes.extend(images::load_all(n, &st.artifacts, staged).await?);
                    }
                    Ok(changes)
                })
                .await;
            runner.limit = limit;
            Ok(())
        })
    }
}
