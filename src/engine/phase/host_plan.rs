//! The host plan (local, titled `facts` where a host fails it): what templates see (the
//! cluster and each host, from the inventory, the facts and the subnets) and which component
//! roles each host gets (its inventory roles, the roles' `when` conditions, the action's
//! components, `--limit`: hosts outside it get only the roles that list their peers).

use super::{Phase, PhaseFuture, Run};
use crate::engine::context;
use crate::engine::plan;

pub struct HostPlan;

impl Phase for HostPlan {
    fn title(&self) -> &str {
        "facts"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let cluster = context::cluster(
                &s.inv,
                &s.subnets,
                &s.artifacts.kubernetes_version,
                s.artifacts.images(),
            )?;
            for n in &s.nodes {
                match context::node(&s.inv, &cluster, &n.host, &n.facts) {
                    Ok(c) => {
                        s.node_ctx.insert(n.name().to_string(), c);
                    }
                    Err(e) => runner.fail(n.name(), self.title(), e.to_string()),
                }
            }
            for n in &s.nodes {
                let Some(nc) = s.node_ctx.get(n.name()) else {
                    continue;
                };
                let left_out = s.limited_out(n.name());
                if left_out && !s.opts.limit_peers {
                    continue;
                }
                let ctx = plan::tera_context(&cluster, nc);
                let mut mine = Vec::new();
                for r in &s.roles {
                    let wanted = s
                        .opts
                        .only_components
                        .is_none_or(|p| p.contains(&r.phase.as_str()));
                    let wanted =
                        wanted && (!left_out || super::PEER_ROLES.contains(&r.name.as_str()));
                    if wanted && r.applies_to(&n.host.roles) && plan::applies(&s.renderer, r, &ctx)?
                    {
                        mine.push(r.clone());
                    }
                }
                s.host_roles.insert(n.name().to_string(), mine);
            }
            s.cluster = Some(cluster);
            Ok(())
        })
    }
}
