//! `pki` (local): the cluster's certificates and keys, created once; a re-run keeps every valid
//! file and renews what is missing, expiring or no longer matches the inventory. A dry run works
//! on a copy of the PKI.

use super::{Phase, PhaseFuture, Run};
use crate::inventory::{HostRole, Inventory};
use crate::pki;
use crate::pki::encryption::KeyRing;

pub struct Pki;

pub fn spec(inv: &Inventory) -> pki::PkiSpec {
    let members = |role: HostRole| -> Vec<pki::Member> {
        inv.hosts_with(role)
            .map(|h| pki::Member::new(h.name.clone(), h.ssh.address))
            .collect()
    };
    pki::PkiSpec {
        cluster_name: inv.cluster_name.clone(),
        control_plane: members(HostRole::ControlPlane),
        etcd: members(HostRole::Etcd),
        nodes: inv
            .hosts
            .iter()
            .map(|h| pki::Member::new(h.name.clone(), h.ssh.address))
            .collect(),
        service_cidr: inv.network.service_cidr,
        cluster_domain: "cluster.local".into(),
        apiserver_extra_sans: pki::endpoint_sans(inv),
    }
}

impl Phase for Pki {
    fn title(&self) -> &str {
        "pki"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let dry_run = s.opts.dry_run;
            let work = s.state.pki_work_dir(dry_run)?;
            let report = pki::ensure(&work.path, &spec(&s.inv))?;
            let (ring, ring_created) = KeyRing::ensure(&work.path)?;
            s.encryption = Some(ring);
            s.pki = Some(work);
            runner.say("[pki] local");
            let n = report.created.len() + report.renewed.len() + usize::from(ring_created);
            runner.say(&format!(
                "  {:<14} {}",
                "control",
                if n == 0 {
                    "ok".to_string()
                } else if dry_run {
                    format!("{n} to change")
                } else {
                    format!("{n} changed")
                }
            ));
            for p in &report.created {
                runner.changes.push((
                    "pki".into(),
                    "local".into(),
                    format!("created {}", p.display()),
                ));
            }
            for r in &report.renewed {
                runner.changes.push((
                    "pki".into(),
                    "local".into(),
                    format!("renewed {} ({})", r.path.display(), r.reason),
                ));
            }
            if ring_created {
                runner.changes.push((
                    "pki".into(),
                    "local".into(),
                    format!(
                        "created the Secrets encryption key ({})",
                        pki::encryption::PROVIDER
                    ),
                ));
            }
            for w in &report.warnings {
                runner.say(&format!("  warning: {w}"));
            }
            Ok(())
        })
    }
}
