//! `admin-kubeconfig` (local): the admin's kubeconfig in the cluster state (and, when asked,
//! merged into ~/.kube/config), pointing at the first control-plane host.

use super::{Phase, PhaseFuture, Run, RunState};
use crate::inventory::HostRole;
use crate::pki;

pub struct AdminKubeconfig;

impl Phase for AdminKubeconfig {
    fn title(&self) -> &str {
        "admin-kubeconfig"
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.inv.hosts_with(HostRole::ControlPlane).next().is_some()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let Some(first) = s.inv.hosts_with(HostRole::ControlPlane).next() else {
                return Ok(());
            };
            let pki_dir = &s.env()?.pki_dir.to_path_buf();
            let server = format!(
                "https://{}",
                std::net::SocketAddr::new(first.ssh.address, 6443)
            );
            let name = &s.inv.cluster_name;
            let yaml = pki::kubeconfig_from_dir(pki_dir, "admin", name, &server, "admin")?;
            let path = s.state.save_admin_kubeconfig(&yaml)?;
            runner.say(&format!("admin kubeconfig: {}", path.display()));
            if s.opts.merge_kubeconfig {
                crate::commands::kubeconfig::merge_into_user_config(&yaml, name)?;
            }
            Ok(())
        })
    }

    /// Nothing is written in a dry run: the kubeconfig only says where the API is.
    fn dry_run<'a>(&'a self, _run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
