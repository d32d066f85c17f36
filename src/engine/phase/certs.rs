//! `certs renew`'s phases:
//! - `renew` (local): leaf certificates re-issued from the existing CAs (`pki::renew`: the
//!   named ones, every one, or only those due); CAs and keys stay. A dry run works on a copy.
//! - `stage-certs`: every role's certificate-bearing files (its `pki` files and kubeconfigs,
//!   nothing else: no binary, template or package) made to match the PKI, and only the roles
//!   whose files changed restart their units and prove their health (`apply_role` on that
//!   projection of the role). etcd members and control planes go one host at a time, so
//!   neither etcd's quorum nor the API is lost; the other components all at once.

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::action::init::COMPONENTS;
use crate::engine::apply::{Env, apply_role};
use crate::engine::role::ComponentRole;
use crate::inventory::Inventory;
use crate::node::Node;
use crate::pki;
use crate::pki::encryption::KeyRing;

/// The cluster's PKI spec (what `init`'s pki phase ensures).
pub fn spec(inv: &Inventory) -> pki::PkiSpec {
    super::pki::spec(inv)
}

pub struct RenewLeaves {
    pub which: pki::Renew,
}

impl Phase for RenewLeaves {
    fn title(&self) -> &str {
        "renew"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let dry_run = s.opts.dry_run;
            if !s.state.pki_dir().exists() {
                anyhow::bail!(
                    "no PKI for cluster {} at {}: run `director-boot init` first",
                    s.inv.cluster_name,
                    s.state.pki_dir().display()
                );
            }
            let work = s.state.pki_work_dir(dry_run)?;
            let report = pki::renew(&work.path, &spec(&s.inv), &self.which)?;
            let (ring, _) = KeyRing::ensure(&work.path)?;
            s.encryption = Some(ring);
            s.pki = Some(work);
            runner.say("[renew] local");
            let n = report.renewed.len() + report.created.len();
            runner.say(&format!(
                "  {:<14} {}",
                "control",
                match (n, dry_run) {
                    (0, _) => "nothing to renew".to_string(),
                    (n, true) => format!("{n} certificates to re-issue"),
                    (n, false) => format!("{n} certificates re-issued"),
                }
            ));
            let verb = if dry_run {
                "would re-issue"
            } else {
                "re-issued"
            };
            for r in &report.renewed {
                let line = format!("{verb} {} ({})", r.path.display(), r.reason);
                if dry_run || runner.verbose {
                    runner.say(&format!("  {:<14}   {line}", ""));
                }
                runner.changes.push(("renew".into(), "local".into(), line));
            }
            for p in &report.created {
                runner.changes.push((
                    "renew".into(),
                    "local".into(),
                    format!(
                        "{} {}",
                        if dry_run { "would create" } else { "created" },
                        p.display()
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

/// The part of a role that carries certificates: its PKI files and kubeconfigs, with the
/// units, `on_change` commands (the etcd role hands its files to the etcd user) and health
/// checks that go with them. `None` for a role without certificates.
pub fn cert_part(role: &ComponentRole) -> Option<ComponentRole> {
    if role.pki.is_empty() && role.kubeconfigs.is_empty() {
        return None;
    }
    let mut r = role.clone();
    r.packages.clear();
    r.binaries.clear();
    r.files.clear();
    r.dirs.clear();
    r.manifests.clear();
    Some(r)
}

pub struct StageCerts;

/// Components whose hosts go one at a time (quorum, the API).
const ONE_AT_A_TIME: &[&str] = &["etcd", "control-plane"];

fn cert_roles(s: &RunState, host: &str, component: &str) -> Vec<ComponentRole> {
    s.roles_in(host, component)
        .into_iter()
        .filter_map(cert_part)
        .collect()
}

/// One host's certificate files of one component, with the restarts they call for.
async fn stage_on(
    st: &RunState,
    env: &Env<'_>,
    component: &str,
    n: &Node,
) -> anyhow::Result<Vec<String>> {
    let nc = st
        .node_ctx
        .get(n.name())
        .ok_or_else(|| anyhow::anyhow!("no node context"))?;
    let mut changes = Vec::new();
    for r in cert_roles(st, n.name(), component) {
        changes.extend(apply_role(env, n, nc, &r).await?.changes);
    }
    Ok(changes)
}

impl Phase for StageCerts {
    fn title(&self) -> &str {
        "stage-certs"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned().collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for &component in COMPONENTS {
                let Run { runner, s } = &mut *run;
                let st = &*s;
                let env = st.env()?;
                let env = &env;
                let hosts: Vec<&Node> = st
                    .planned()
                    .filter(|n| !cert_roles(st, n.name(), component).is_empty())
                    .collect();
                let title = format!("certs {component}");
                if ONE_AT_A_TIME.contains(&component) {
                    for h in hosts {
                        runner
                            .phase(&title, vec![h], |n| stage_on(st, env, component, n))
                            .await;
                    }
                } else {
                    runner
                        .phase(&title, hosts, |n| stage_on(st, env, component, n))
                        .await;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cert_part_of_a_role_keeps_only_certificates_and_what_restarts() {
        let roles = crate::engine::render::roles().unwrap();
        let etcd = roles.iter().find(|r| r.name == "etcd").unwrap();
        let part = cert_part(etcd).unwrap();
        assert!(part.binaries.is_empty() && part.files.is_empty() && part.dirs.is_empty());
        assert_eq!(part.pki, etcd.pki);
        assert_eq!(part.units, ["etcd"]);
        assert_eq!(
            part.on_change, etcd.on_change,
            "the etcd user must own its new files"
        );
        assert!(!part.health.is_empty());
        // roles without certificates take no part
        for r in &roles {
            if r.pki.is_empty() && r.kubeconfigs.is_empty() {
                assert!(cert_part(r).is_none(), "{}", r.name);
            }
        }
        let kubelet = roles.iter().find(|r| r.name == "kubelet").unwrap();
        let part = cert_part(kubelet).unwrap();
        assert_eq!(part.kubeconfigs, kubelet.kubeconfigs);
        assert_eq!(part.units, ["kubelet"]);
    }
}
