//! `etcd-members` (before the etcd phase): how each etcd host's unit bootstraps, and new
//! members joined one at a time.
//!
//! A member's `--initial-cluster` and `--initial-cluster-state` are recorded in the cluster
//! state the first time they are decided and kept for life (see `membership`), so the etcd
//! phase re-renders the same unit for every existing member whatever the inventory now lists.
//! An etcd host without a record is decided by asking etcd (kubespray's and k0s's way):
//! - no member answers and no etcd host holds data: a new cluster; every etcd host bootstraps
//!   it (`new`, the whole inventory's members);
//! - members answer and no record exists (a cluster built before membership was recorded):
//!   the started members are recorded as they were bootstrapped;
//! - members answer and the host is not one of them: it joins. `etcdctl member add` through a
//!   healthy member, then its unit (`existing`, the members of the day plus itself) is applied
//!   and must be healthy before the next joiner is added. A joiner that is not added is left out
//!   of the etcd phase (it must never bootstrap a cluster of its own).

use std::collections::BTreeMap;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::apply::apply_role;
use crate::engine::etcd_cluster::{self, join_initial_cluster, peer_url};
use crate::inventory::HostRole;
use crate::membership::{self, EtcdMemberRecord, STATE_EXISTING, STATE_NEW};
use crate::node::Node;

pub struct EtcdMembers;

pub const TITLE: &str = "etcd-members";
const JOIN: &str = "etcd-join";

impl Phase for EtcdMembers {
    fn title(&self) -> &str {
        TITLE
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.opts
            .only_components
            .is_none_or(|only| only.contains(&"etcd"))
            && s.inv.hosts_with(HostRole::Etcd).next().is_some()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dry_run = run.s.opts.dry_run;
            let mut records = membership::etcd_members(&run.s.state)?;
            let etcd_hosts: Vec<(String, String)> = run
                .s
                .inv
                .hosts_with(HostRole::Etcd)
                .map(|h| (h.name.clone(), peer_url(h.ssh.address)))
                .collect();
            let unknown: Vec<&(String, String)> = etcd_hosts
                .iter()
                .filter(|(n, _)| !records.contains_key(n))
                .collect();
            let mut joiners: Vec<(String, String)> = Vec::new();
            if !unknown.is_empty() {
                let (view, errors) =
                    etcd_cluster::first_view(answering_order(&run.s, &records)).await;
                match view {
                    None => {
                        let mut with_data = Vec::new();
                        for n in etcd_nodes(&run.s) {
                            if etcd_cluster::has_data(n).await {
                                with_data.push(n.name().to_string());
                            }
                        }
                        if with_data.is_empty() {
                            // A new cluster: every member bootstraps it together.
                            let all = run
                                .s
                                .cluster
                                .as_ref()
                                .map(|c| c.etcd_initial_cluster.clone())
                                .unwrap_or_default();
                            records.clear();
                            for (name, _) in &etcd_hosts {
                                records.insert(
                                    name.clone(),
                                    EtcdMemberRecord {
                                        initial_cluster: all.clone(),
                                        cluster_state: STATE_NEW.into(),
                                    },
                                );
                            }
                        } else {
                            let why = if errors.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", errors.join("; "))
                            };
                            for (name, _) in &unknown {
                                run.runner.fail(
                                    name,
                                    TITLE,
                                    format!(
                                        "cannot add {name} to etcd: no member answers{why}, yet {} hold etcd data; bring etcd up and re-run",
                                        with_data.join(", ")
                                    ),
                                );
                            }
                        }
                    }
                    Some(view) => {
                        if records.is_empty() {
                            // Recorded as they were bootstrapped: the started members, in
                            // inventory order.
                            let started: Vec<&(String, String)> = etcd_hosts
                                .iter()
                                .filter(|(n, _)| view.find(n).is_some_and(|m| m.started()))
                                .collect();
                            let initial = started
                                .iter()
                                .map(|(n, u)| format!("{n}={u}"))
                                .collect::<Vec<_>>()
                                .join(",");
                            for (name, _) in &started {
                                records.insert(
                                    name.clone(),
                                    EtcdMemberRecord {
                                        initial_cluster: initial.clone(),
                                        cluster_state: STATE_NEW.into(),
                                    },
                                );
                            }
                        }
                        joiners = etcd_hosts
                            .iter()
                            .filter(|(n, _)| !records.contains_key(n))
                            .cloned()
                            .collect();
                    }
                }
                if !dry_run {
                    membership::save_etcd_members(&run.s.state, &records)?;
                }
            }
            apply_records(&mut run.s, &records);
            let mut stop: Option<String> = None;
            for (name, url) in joiners {
                if let Some(why) = &stop {
                    run.runner.fail(&name, TITLE, why.clone());
                    continue;
                }
                let planned = run.s.host_roles.contains_key(&name)
                    && !run.s.limited_out(&name)
                    && run.s.nodes.iter().any(|n| n.name() == name)
                    && !run.runner.failed(&name);
                if !planned {
                    // Left out of this run (--limit, unreachable): joins in a later run, and
                    // is never started on its own meanwhile.
                    if let Some(roles) = run.s.host_roles.get_mut(&name) {
                        roles.retain(|r| r.phase != "etcd");
                    }
                    continue;
                }
                match join(run, &name, &url).await {
                    Ok(Some(record)) => {
                        records.insert(name.clone(), record);
                        if !dry_run {
                            membership::save_etcd_members(&run.s.state, &records)?;
                        }
                    }
                    Ok(None) => {
                        stop = Some(
                            "not added to etcd: adding an earlier member failed; fix that and re-run"
                                .to_string(),
                        );
                    }
                    Err(e) => {
                        run.runner.fail(&name, JOIN, format!("{e:#}"));
                        stop = Some(format!(
                            "not added to etcd: adding {name} failed; fix that and re-run"
                        ));
                    }
                }
            }
            Ok(())
        })
    }
}

/// Recorded members first (they are the ones that can answer), then the other etcd hosts.
fn answering_order<'s>(
    s: &'s RunState,
    records: &BTreeMap<String, EtcdMemberRecord>,
) -> Vec<&'s Node> {
    let mut v: Vec<&Node> = etcd_nodes(s)
        .filter(|n| records.contains_key(n.name()))
        .collect();
    v.extend(etcd_nodes(s).filter(|n| !records.contains_key(n.name())));
    v
}

fn etcd_nodes(s: &RunState) -> impl Iterator<Item = &Node> {
    s.nodes.iter().filter(|n| n.host.has_role(HostRole::Etcd))
}

/// Every recorded member's unit keeps the flags it was bootstrapped with.
fn apply_records(s: &mut RunState, records: &BTreeMap<String, EtcdMemberRecord>) {
    for (name, r) in records {
        if let Some(nc) = s.node_ctx.get_mut(name) {
            nc.etcd_initial_cluster = r.initial_cluster.clone();
            nc.etcd_cluster_state = r.cluster_state.clone();
        }
    }
}

/// Add one member and start it; its record when it is up (`None` when the host failed).
async fn join(run: &mut Run, name: &str, url: &str) -> anyhow::Result<Option<EtcdMemberRecord>> {
    let records = membership::etcd_members(&run.s.state)?;
    let (view, errors) = etcd_cluster::first_view(
        answering_order(&run.s, &records)
            .into_iter()
            .filter(|n| n.name() != name),
    )
    .await;
    let view = view.ok_or_else(|| {
        anyhow::anyhow!(
            "no etcd member answers, so {name} cannot be added: {}",
            errors.join("; ")
        )
    })?;
    let initial = join_initial_cluster(&view.members, name, url);
    let record = EtcdMemberRecord {
        initial_cluster: initial.clone(),
        cluster_state: STATE_EXISTING.into(),
    };
    if let Some(nc) = run.s.node_ctx.get_mut(name) {
        nc.etcd_initial_cluster = initial;
        nc.etcd_cluster_state = STATE_EXISTING.into();
    }
    let already = view
        .members
        .iter()
        .any(|m| m.peer_urls.iter().any(|u| u == url));
    let Run { runner, s } = run;
    let st = &*s;
    let env = st.env()?;
    let (env, view) = (&env, &view);
    let via = st
        .nodes
        .iter()
        .find(|n| n.name() == view.via)
        .ok_or_else(|| anyhow::anyhow!("{}: not connected", view.via))?;
    let target: Vec<&Node> = st.nodes.iter().filter(|n| n.name() == name).collect();
    runner
        .phase(JOIN, target, |n| async move {
            let mut changes = Vec::new();
            if !already {
                if !st.opts.dry_run {
                    etcd_cluster::member_add(via, n.name(), url).await?;
                }
                changes.push(format!(
                    "etcd member add {} {url} (through {}; {} members before)",
                    n.name(),
                    view.via,
                    view.members.len()
                ));
            }
            if st.opts.dry_run {
                // The etcd phase reports what its unit would get.
                return Ok(changes);
            }
            let nc = st
                .node_ctx
                .get(n.name())
                .ok_or_else(|| anyhow::anyhow!("no node context"))?;
            for r in st.roles_in(n.name(), "etcd") {
                changes.extend(apply_role(env, n, nc, r).await?.changes);
            }
            Ok(changes)
        })
        .await;
    Ok((!runner.failed(name)).then_some(record))
}
