//! `subnets` (local): a pod subnet per host, kept in the cluster state so it never moves under
//! a running node; a new host gets a free one, a removed host's is released.

use super::{Phase, PhaseFuture, Run};
use crate::engine::subnets;

pub struct Subnets;

impl Phase for Subnets {
    fn title(&self) -> &str {
        "subnets"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let s = &mut run.s;
            let previous = s.state.subnets()?.unwrap_or_default();
            let names: Vec<String> = s.inv.hosts.iter().map(|h| h.name.clone()).collect();
            let now = subnets::allocate(
                &previous,
                &names,
                s.inv.network.pod_cidr,
                s.inv.network.node_prefix,
            )?;
            if now != previous && !s.opts.dry_run {
                s.state.save_subnets(&now)?;
            }
            s.subnets = now;
            Ok(())
        })
    }
}
