//! `preflight`: every host's checks (ports, swap, clock, reachability of the peers, ...) and
//! the checks across hosts; a failed check fails its host unless skipped by name. Warnings are
//! shown after the phase; they are not changes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::endpoint;
use crate::engine::preflight::{self, Verdict};
use crate::inventory::HostRole;
use crate::node::Node;

pub struct Preflight;

/// Every host's peers' addresses (what it must reach).
fn peers(s: &RunState) -> BTreeMap<String, Vec<String>> {
    s.inv
        .hosts
        .iter()
        .map(|h| {
            let others = s
                .inv
                .hosts
                .iter()
                .filter(|o| o.name != h.name)
                .map(|o| o.ssh.address.to_string())
                .collect();
            (h.name.clone(), others)
        })
        .collect()
}

impl Phase for Preflight {
    fn title(&self) -> &str {
        "preflight"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.nodes.iter().collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let s = &*s;
            let hosts = self.hosts(s);
            let cross = preflight::cross_checks(&hosts);
            let peers = peers(s);
            // An external endpoint is checked once, from here; a VIP from each control plane.
            let endpoint = s.inv.control_plane_endpoint.as_ref();
            let external = match endpoint {
                Some(e) if e.vip().is_none() => Some(endpoint::external_check(e).await),
                _ => None,
            };
            let vip = endpoint.and_then(|e| e.vip());
            // A control plane joining a running cluster finds the VIP held by another one.
            let mut cluster_vrrp = false;
            if vip.is_some() {
                for n in hosts
                    .iter()
                    .filter(|n| n.host.has_role(HostRole::ControlPlane))
                {
                    if endpoint::vrrp_running(n).await {
                        cluster_vrrp = true;
                        break;
                    }
                }
            }
            let mirror_arch = preflight::mirror_arch(&s.artifacts);
            let mirror_arch = mirror_arch.as_deref();
            let external = &external;
            let warnings = Mutex::new(Vec::<String>::new());
            let (cross, peers, warnings_ref) = (&cross, &peers, &warnings);
            let skip = &s.opts.skip_preflight;
            runner
                .phase(self.title(), hosts, |n| async move {
                    let mine = peers.get(n.name()).map(Vec::as_slice).unwrap_or(&[]);
                    let mut checks = preflight::host_checks(n, mine, mirror_arch).await?;
                    checks.extend(cross.get(n.name()).cloned().unwrap_or_default());
                    if n.host.has_role(HostRole::ControlPlane) {
                        checks.extend(external.clone());
                        if let Some(vip) = vip {
                            checks.extend(endpoint::vip_checks(n, vip, cluster_vrrp).await);
                        }
                    }
                    preflight::skip(&mut checks, skip);
                    let failed: Vec<String> = checks
                        .iter()
                        .filter(|c| c.verdict == Verdict::Fail)
                        .map(|c| format!("{}: {}", c.name, c.detail))
                        .collect();
                    if !failed.is_empty() {
                        anyhow::bail!("{} (skip with --skip-preflight NAME)", failed.join("; "));
                    }
                    if let Ok(mut w) = warnings_ref.lock() {
                        for c in checks.iter().filter(|c| c.verdict == Verdict::Warn) {
                            w.push(format!(
                                "  {:<14} warning: {}: {}",
                                n.name(),
                                c.name,
                                c.detail
                            ));
                        }
                    }
                    Ok(Vec::new())
                })
                .await;
            for w in warnings.into_inner().unwrap_or_default() {
                runner.say(&w);
            }
            Ok(())
        })
    }
}
