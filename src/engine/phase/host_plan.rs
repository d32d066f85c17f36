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
            let mut cluster = context::cluster(
                &s.inv,
                &s.subnets,
                &s.artifacts.kubernetes_version,
                s.artifacts.images(),
            )?;
            if let Some(token) = s.state.etcd_token()? {
                cluster.etcd_token = token;
            }
            for n in &s.nodes {
                match context::node(&s.inv, &cluster, &n.host, &n.facts) {
                    Ok(c) => {
                        if let Some(e) = context::mtu_problem(&s.inv, &c, &n.facts) {
                            runner.fail(n.name(), self.title(), e.to_string());
                        }
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
                    if wanted(&s.opts, r, left_out)
                        && r.applies_to(&n.host.roles)
                        && plan::applies(&s.renderer, r, &ctx)?
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

/// Whether this run wants a role at all: in the action's components, and for a host outside
/// `--limit` only a role that lists its peers.
fn wanted(
    opts: &super::Options,
    role: &crate::engine::role::ComponentRole,
    left_out: bool,
) -> bool {
    opts.only_components
        .is_none_or(|p| p.contains(&role.phase.as_str()))
        && (!left_out || super::PEER_ROLES.contains(&role.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::phase::Options;

    fn names(opts: &Options, left_out: bool) -> Vec<String> {
        crate::engine::render::roles()
            .unwrap()
            .iter()
            .filter(|r| wanted(opts, r, left_out))
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn a_host_outside_limit_only_learns_its_peers() {
        let opts = Options {
            only_hosts: Some(vec!["node5".into()]),
            limit_peers: true,
            ..Options::default()
        };
        assert_eq!(
            names(&opts, true),
            [
                "apiserver-lb",
                "apiserver-vip",
                "kube-apiserver",
                "overlay",
                "overlay-wireguard"
            ]
        );
        let inside = names(&opts, false);
        assert!(inside.contains(&"etcd".to_string()) && inside.contains(&"kubelet".to_string()));
    }

    #[test]
    fn peer_roles_exist() {
        let all = names(&Options::default(), false);
        for r in crate::engine::phase::PEER_ROLES {
            assert!(all.contains(&r.to_string()), "{r} is no role");
        }
    }
}
