//! `connect`: open every host of the inventory (session + facts) in parallel; a host that
//! cannot be reached is failed and left out of everything after.

use super::{Phase, PhaseFuture, Run};

pub struct Connect;

impl Phase for Connect {
    fn title(&self) -> &str {
        "connect"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let s = &mut run.s;
            s.nodes =
                crate::fleet::open_nodes(&mut run.runner, &s.inv, &s.ssh, s.opts.dry_run).await;
            Ok(())
        })
    }
}
