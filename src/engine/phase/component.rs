//! A component phase (node-prep, etcd, control-plane, runtime, kubelet, kube-proxy, overlay):
//! one generic phase driven by role data. It applies, on every host, the component roles
//! (`roles/<component>/role.yaml`) that name this phase; `runtime` also loads the image
//! archives into containerd, on every worker. A [`Stage`] runs several components as one
//! phase: on each host, independent chains of components at once.

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::apply::{Env, apply_role};
use crate::engine::images;
use crate::inventory::HostRole;
use crate::node::Node;

/// The component phase applied one host at a time once the cluster runs.
const ROLLING: &str = "control-plane";
/// The component after which the image archives are loaded (containerd is running then).
const RUNTIME: &str = "runtime";

pub struct Component {
    pub name: &'static str,
    /// Also load the staged image archives into containerd (the runtime phase of a full init:
    /// every worker, whether or not a role of this phase changed).
    pub loads_images: bool,
}

/// Whether a host gets the images loaded by a phase that loads them.
fn takes_images(s: &RunState, n: &Node) -> bool {
    !s.limited_out(n.name())
        && (n.host.has_role(HostRole::Worker) || n.host.has_role(HostRole::ControlPlane))
}

/// One component on one host: its roles at once (roles of one phase do not depend on each
/// other's order: a controller-manager retries until its API server answers, so one role's
/// uploads overlap another's startup wait), then the images when asked.
async fn apply_component(
    st: &RunState,
    env: &Env<'_>,
    n: &Node,
    name: &str,
    loads_images: bool,
) -> anyhow::Result<Vec<String>> {
    let nc = st
        .node_ctx
        .get(n.name())
        .ok_or_else(|| anyhow::anyhow!("no node context"))?;
    let roles = st.roles_in(n.name(), name);
    let outcomes =
        futures::future::try_join_all(roles.iter().map(|r| apply_role(env, n, nc, r))).await?;
    let mut changes: Vec<String> = outcomes.into_iter().flat_map(|o| o.changes).collect();
    if loads_images && takes_images(st, n) {
        let staged = st.staged.get(n.name());
        changes.extend(images::load_all(n, &st.artifacts, staged).await?);
    }
    Ok(changes)
}

impl Phase for Component {
    fn title(&self) -> &str {
        self.name
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned()
            .filter(|n| {
                !s.roles_in(n.name(), self.name).is_empty()
                    || (self.loads_images && takes_images(s, n))
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
                    apply_component(st, env, n, self.name, self.loads_images).await
                })
                .await;
            runner.limit = limit;
            Ok(())
        })
    }
}

/// Components that run as one phase. On each host the chains run at once and the components
/// of a chain in order: `[[etcd, control-plane], [runtime]]` starts containerd and loads the
/// images while etcd and the API server come up, on the control planes as on the workers,
/// which have nothing else to do then. `runtime` loads the images as [`Component`] does.
pub struct Stage {
    title: String,
    chains: Vec<Vec<&'static str>>,
}

impl Stage {
    /// `None` when no component is left.
    pub fn new(chains: Vec<Vec<&'static str>>) -> Option<Stage> {
        let chains: Vec<Vec<&'static str>> = chains.into_iter().filter(|c| !c.is_empty()).collect();
        let names: Vec<&str> = chains.iter().flatten().copied().collect();
        (!names.is_empty()).then(|| Stage {
            title: names.join("+"),
            chains,
        })
    }

    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.chains.iter().flatten().copied()
    }
}

impl Phase for Stage {
    fn title(&self) -> &str {
        &self.title
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned()
            .filter(|n| {
                self.names().any(|name| {
                    !s.roles_in(n.name(), name).is_empty()
                        || (name == RUNTIME && takes_images(s, n))
                })
            })
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let env = st.env()?;
            let env = &env;
            // The rolling rule of the control plane, for its part alone: the other chains
            // (and the other components of its chain) go on every host at once.
            let rolling = (self.names().any(|n| n == ROLLING)
                && st.state.admin_kubeconfig().exists())
            .then(|| tokio::sync::Semaphore::new(1));
            let rolling = &rolling;
            runner
                .phase(&self.title, self.hosts(st), |n| async move {
                    let chains = self.chains.iter().map(|chain| async move {
                        let mut changes = Vec::new();
                        for &name in chain {
                            let _turn = match (name == ROLLING, rolling) {
                                (true, Some(sem)) => Some(sem.acquire().await?),
                                _ => None,
                            };
                            changes
                                .extend(apply_component(st, env, n, name, name == RUNTIME).await?);
                        }
                        Ok::<_, anyhow::Error>(changes)
                    });
                    let done = futures::future::try_join_all(chains).await?;
                    Ok(done.into_iter().flatten().collect())
                })
                .await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_named_after_its_components_and_drops_empty_chains() {
        let s = Stage::new(vec![vec!["etcd", "control-plane"], vec![], vec!["runtime"]]).unwrap();
        assert_eq!(s.title(), "etcd+control-plane+runtime");
        assert_eq!(s.chains.len(), 2);
        assert!(Stage::new(vec![vec![], vec![]]).is_none());
    }
}
