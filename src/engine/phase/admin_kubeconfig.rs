//! `admin-kubeconfig` (local): the admin's kubeconfig in the cluster state (and, when asked,
//! merged into ~/.kube/config), pointing at the control-plane endpoint (else the only control
//! plane).

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
            let env = s.env()?;
            let pki_dir = &env.pki_dir.to_path_buf();
            // The control-plane endpoint, else the only control plane.
            let server = env.cluster.api_endpoint.clone();
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
