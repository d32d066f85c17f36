//! `remove-node`: take one node out of the cluster (kubespray's remove-node, k0sctl's
//! reset of one host):
//! 1. `removal-plan`: what the node is (roles, reachable, a Node object, an etcd member) and
//!    the refusals: the last control plane, an etcd removal that would lose quorum. Without
//!    `--yes` the plan is shown and nothing is changed.
//! 2. `drain`: `kubectl cordon` + `kubectl drain` (the eviction API, so PodDisruptionBudgets
//!    are respected) with a timeout; what would not move is named and nothing else happens.
//! 3. `etcd-remove`: `etcdctl member remove` through a remaining healthy member.
//! 4. `reset`: the host wiped as `director-boot reset` does, when it can be reached.
//! 5. `delete-node`: the Node object deleted (after the reset, so its kubelet cannot register
//!    it again).
//! 6. `record`: the node recorded as removed in the cluster state (`validate` and `init` say
//!    so while the inventory still lists it).
//! 7. The remaining hosts converge without it: the roles that list peers (overlay routes,
//!    API load balancer backends, keepalived peers, the API servers' etcd list), through the
//!    same phases as `init`. A re-run after a failure redoes only what is left.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::cluster_state::ClusterState;
use crate::engine::artifacts::Artifacts;
use crate::engine::etcd_cluster::{self, RemovalRefused, View, check_removal};
use crate::engine::kubectl::Kubectl;
use crate::engine::phase::{self, Options, Phase, PhaseFuture, Run, RunState};
use crate::engine::runner::Runner;
use crate::engine::{context, reset, subnets};
use crate::fleet::{FleetOptions, ssh_config};
use crate::inventory::{HostRole, Inventory};
use crate::membership::{self, RemovedNode};
use crate::node::{Node, shell_quote};
use crate::paths::Paths;

/// The component phases the remaining hosts converge: those of the roles that list peers.
pub const PEER_COMPONENTS: &[&str] = &[
    "apiserver-lb",
    "control-plane",
    "overlay-wireguard",
    "overlay",
];

pub struct Request {
    pub inv: Inventory,
    pub node: String,
    pub yes: bool,
    pub drain_timeout_secs: u64,
    pub artifacts: Option<PathBuf>,
    pub fleet: FleetOptions,
    pub json: bool,
    pub verbose: bool,
}

/// What is known about the node to remove when the plan is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub name: String,
    pub roles: Vec<String>,
    pub reachable: bool,
    /// Whether the API has a Node object of that name.
    pub node_object: bool,
    /// etcd's members and their health (`None`: not an etcd host).
    pub etcd: Option<Vec<(String, bool)>>,
    /// Whether it is one of those members.
    pub etcd_member: bool,
    /// Control planes other than this node in the inventory.
    pub other_control_planes: usize,
    pub is_control_plane: bool,
    pub drain_timeout_secs: u64,
}

/// Why the removal is refused, if it is.
pub fn refusal(f: &Facts) -> Option<RemovalRefused> {
    if f.is_control_plane && f.other_control_planes == 0 {
        return Some(RemovalRefused::LastControlPlane {
            name: f.name.clone(),
        });
    }
    match &f.etcd {
        Some(members) if f.etcd_member => check_removal(members, &f.name).err(),
        _ => None,
    }
}

/// The steps the removal takes, in order, as lines for the user.
pub fn plan_steps(f: &Facts) -> Vec<String> {
    let mut steps = Vec::new();
    if f.node_object {
        steps.push(format!(
            "cordon and drain {} (kubectl drain: PodDisruptionBudgets respected, DaemonSet pods left, at most {} s)",
            f.name, f.drain_timeout_secs
        ));
    } else {
        steps.push(format!("no Node object {}: nothing to drain", f.name));
    }
    if let (Some(members), true) = (&f.etcd, f.etcd_member) {
        let healthy = members.iter().filter(|(_, h)| *h).count();
        steps.push(format!(
            "etcdctl member remove {}: {} members ({healthy} healthy) -> {}",
            f.name,
            members.len(),
            members.len() - 1
        ));
    }
    if f.reachable {
        steps.push(format!(
            "reset {}: stop and remove every unit, binary, certificate and data dir init put there",
            f.name
        ));
    } else {
        steps.push(format!(
            "{} cannot be reached: it is NOT reset; wipe it before it is used again",
            f.name
        ));
    }
    if f.node_object {
        steps.push(format!("delete the Node object {}", f.name));
    }
    steps.push(format!(
        "record {} as removed in the cluster state; then delete it from the inventory",
        f.name
    ));
    steps.push(format!(
        "converge the remaining hosts without {}: overlay routes, API load balancer backends{}",
        f.name,
        if f.etcd_member {
            ", the API servers' etcd list"
        } else {
            ""
        }
    ));
    steps
}

pub fn phases(node: &str, yes: bool, drain_timeout_secs: u64) -> Vec<Box<dyn Phase>> {
    let target = node.to_string();
    let mut list: Vec<Box<dyn Phase>> = vec![
        Box::new(phase::connect::Connect),
        Box::new(RemovalPlan {
            target: target.clone(),
            yes,
            drain_timeout_secs,
        }),
        Box::new(Drain {
            target: target.clone(),
            timeout_secs: drain_timeout_secs,
        }),
        Box::new(EtcdRemove {
            target: target.clone(),
        }),
        Box::new(ResetHost {
            target: target.clone(),
        }),
        Box::new(DeleteNode {
            target: target.clone(),
        }),
        Box::new(Record {
            target: target.clone(),
        }),
        Box::new(Forget { target }),
        Box::new(phase::subnets::Subnets),
        Box::new(phase::pki::Pki),
        Box::new(phase::host_plan::HostPlan),
        Box::new(phase::artifacts::Artifacts),
    ];
    for &name in PEER_COMPONENTS {
        if name == "overlay-wireguard" {
            // The remaining hosts' WireGuard peers are rendered from their public keys.
            list.push(Box::new(phase::overlay_keys::OverlayKeys));
        }
        list.push(Box::new(phase::component::Component {
            name,
            loads_images: false,
        }));
    }
    list
}

pub async fn run(paths: &Paths, req: Request) -> anyhow::Result<ExitCode> {
    let inv = req.inv;
    let Some(host) = inv.hosts.iter().find(|h| h.name == req.node) else {
        anyhow::bail!(
            "{} is not in the inventory (hosts: {}); remove-node takes a host the inventory still lists",
            req.node,
            inv.hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let target_address = host.ssh.address;
    let ssh = ssh_config(paths, &inv, &req.fleet)?;
    let state = ClusterState::new(paths, &inv.cluster_name);
    if !state.exists() {
        anyhow::bail!(
            "{}: no state for cluster {}; remove-node works on a cluster `director-boot init` built",
            state.dir().display(),
            inv.cluster_name
        );
    }
    let artifacts_dir = req.artifacts.unwrap_or_else(|| paths.cache.join("mirror"));
    let artifacts = Artifacts::open(&artifacts_dir)?;
    let runner = Runner::new(
        false,
        req.fleet.concurrency,
        req.verbose,
        req.json,
        Some(&state.logs_dir()),
    );
    let remaining: Vec<String> = inv
        .hosts
        .iter()
        .filter(|h| h.name != req.node)
        .map(|h| h.name.clone())
        .collect();
    let mut run = Run {
        runner,
        s: RunState::new(
            Options {
                only_components: Some(PEER_COMPONENTS),
                ..Options::default()
            },
            inv,
            state,
            ssh,
            artifacts,
        )?,
    };
    let list = phases(&req.node, req.yes, req.drain_timeout_secs);
    phase::run_all(&list[..1], &mut run).await?;
    let reached = run.s.nodes.iter().any(|n| n.name() == req.node);
    if !reached {
        run.runner.say(&format!(
            "  {} cannot be reached ({target_address}): it is removed from the cluster but not reset",
            req.node
        ));
    }
    phase::run_all(&list[1..], &mut run).await?;
    let mut hosts = remaining;
    if reached {
        hosts.push(req.node.clone());
    }
    let code = run.runner.finish("remove-node", &hosts);
    if code == ExitCode::SUCCESS {
        run.runner.say(&format!(
            "{} is out of the cluster: delete it from the inventory now (validate and init refuse an inventory that still lists it)",
            req.node
        ));
    }
    Ok(code)
}

/// The first connected, unfailed control plane other than the target: where kubectl runs.
fn kubectl_host<'s>(run: &'s Run, target: &str) -> anyhow::Result<&'s Node> {
    run.s
        .nodes
        .iter()
        .find(|n| {
            n.name() != target
                && n.host.has_role(HostRole::ControlPlane)
                && !run.runner.failed(n.name())
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no control plane other than {target} can be reached: kubectl has nowhere to run; bring one back and re-run"
            )
        })
}

/// The other etcd hosts, connected: where etcdctl runs.
fn etcd_hosts<'s>(run: &'s Run, target: &str) -> Vec<&'s Node> {
    run.s
        .nodes
        .iter()
        .filter(|n| {
            n.name() != target && n.host.has_role(HostRole::Etcd) && !run.runner.failed(n.name())
        })
        .collect()
}

async fn etcd_view(run: &Run, target: &str) -> anyhow::Result<View> {
    let (view, errors) = etcd_cluster::first_view(etcd_hosts(run, target)).await;
    view.ok_or_else(|| {
        anyhow::anyhow!(
            "no etcd member other than {target} answers ({}): the quorum cannot be checked; bring etcd back and re-run",
            if errors.is_empty() {
                "no other etcd host is reachable".to_string()
            } else {
                errors.join("; ")
            }
        )
    })
}

fn is_member(view: &View, target: &str, peer: &str) -> Option<u64> {
    view.members
        .iter()
        .find(|m| m.name == target || m.peer_urls.iter().any(|u| u == peer))
        .map(|m| m.id)
}

async fn node_object_exists(kubectl: &Node, target: &str) -> anyhow::Result<bool> {
    let out = Kubectl::on(kubectl)
        .run(&format!(
            "get node {} -o name --ignore-not-found",
            shell_quote(target)
        ))
        .await?;
    Ok(!out.stdout.trim().is_empty())
}

fn target_peer(s: &RunState, target: &str) -> String {
    s.inv
        .hosts
        .iter()
        .find(|h| h.name == target)
        .map(|h| etcd_cluster::peer_url(h.ssh.address))
        .unwrap_or_default()
}

/// A step on the cluster (not on one host's files): its header, result line and changes.
fn report(runner: &mut Runner, title: &str, via: &str, started: Instant, changes: &[String]) {
    let secs = started.elapsed().as_secs_f64();
    let summary = if changes.is_empty() {
        "ok".to_string()
    } else {
        format!("{} changed", changes.len())
    };
    runner.say(&format!("[{title}] through {via}"));
    runner.say(&format!("  {:<14} {summary} ({secs:.1} s)", via));
    for c in changes {
        runner.say(&format!("  {:<14}   {c}", ""));
        runner
            .changes
            .push((title.to_string(), via.to_string(), c.clone()));
    }
}

struct RemovalPlan {
    target: String,
    yes: bool,
    drain_timeout_secs: u64,
}

impl Phase for RemovalPlan {
    fn title(&self) -> &str {
        "removal-plan"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let t = &self.target;
            let host = run
                .s
                .inv
                .hosts
                .iter()
                .find(|h| &h.name == t)
                .ok_or_else(|| anyhow::anyhow!("{t} is not in the inventory"))?
                .clone();
            let kubectl = kubectl_host(run, t)?;
            let node_object = node_object_exists(kubectl, t)
                .await
                .with_context(|| format!("{}: cannot ask the API about {t}", kubectl.name()))?;
            let (etcd, etcd_member) = if host.has_role(HostRole::Etcd) {
                let view = etcd_view(run, t).await?;
                let member = is_member(&view, t, &target_peer(&run.s, t)).is_some();
                (Some(view.health()), member)
            } else {
                (None, false)
            };
            let facts = Facts {
                name: t.clone(),
                roles: host.roles.iter().map(|r| r.as_str().to_string()).collect(),
                reachable: run.s.nodes.iter().any(|n| n.name() == t),
                node_object,
                etcd,
                etcd_member,
                other_control_planes: run
                    .s
                    .inv
                    .hosts_with(HostRole::ControlPlane)
                    .filter(|h| &h.name != t)
                    .count(),
                is_control_plane: host.has_role(HostRole::ControlPlane),
                drain_timeout_secs: self.drain_timeout_secs,
            };
            let runner = &mut run.runner;
            runner.say(&format!(
                "[removal-plan] {t} ({}, {})",
                facts.roles.join(", "),
                host.ssh.address
            ));
            if let Some(members) = &facts.etcd {
                let list: Vec<String> = members
                    .iter()
                    .map(|(n, h)| format!("{n}{}", if *h { "" } else { " (unhealthy)" }))
                    .collect();
                runner.say(&format!("  etcd members: {}", list.join(", ")));
            }
            if let Some(why) = refusal(&facts) {
                anyhow::bail!("refusing to remove {t}: {why}");
            }
            for (i, step) in plan_steps(&facts).iter().enumerate() {
                runner.say(&format!("  {}. {step}", i + 1));
            }
            if !self.yes {
                anyhow::bail!(
                    "nothing was changed: re-run with --yes to remove {t} as planned above"
                );
            }
            Ok(())
        })
    }
}

struct Drain {
    target: String,
    timeout_secs: u64,
}

/// The message for a drain that did not finish: the pods still there and what to do.
pub fn drain_failure(node: &str, timeout_secs: u64, pods: &[String], detail: &str) -> String {
    let stuck = if pods.is_empty() {
        "none listed".to_string()
    } else {
        pods.join(", ")
    };
    format!(
        "drain of {node} did not finish within {timeout_secs} s; pods that would not move: {stuck}. \
         A PodDisruptionBudget that allows no eviction now, or a pod no controller manages, keeps \
         them there (kubectl get pdb -A). {node} stays cordoned and nothing else was changed; fix \
         that (or raise --drain-timeout) and re-run remove-node. kubectl said: {detail}"
    )
}

impl Phase for Drain {
    fn title(&self) -> &str {
        "drain"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let t = &self.target;
            let started = Instant::now();
            let kubectl = kubectl_host(run, t)?;
            let via = kubectl.name().to_string();
            if !node_object_exists(kubectl, t).await? {
                report(&mut run.runner, "drain", &via, started, &[]);
                return Ok(());
            }
            let k = Kubectl::on(kubectl);
            let q = shell_quote(t);
            let mut changes = Vec::new();
            k.run(&format!("cordon {q}")).await?;
            changes.push(format!("cordoned {t}"));
            let drained = k
                .run(&format!(
                    "drain {q} --ignore-daemonsets --delete-emptydir-data --timeout={}s",
                    self.timeout_secs
                ))
                .await;
            if let Err(e) = drained {
                let pods = k
                    .run(&format!(
                        "get pods -A --field-selector spec.nodeName={q} -o jsonpath='{{range .items[*]}}{{.metadata.namespace}}/{{.metadata.name}}:{{.metadata.ownerReferences[0].kind}}{{\"\\n\"}}{{end}}'"
                    ))
                    .await
                    .map(|o| {
                        o.stdout
                            .lines()
                            .filter(|l| !l.ends_with(":DaemonSet") && !l.trim().is_empty())
                            .map(|l| l.trim_end_matches(':').to_string())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                report(&mut run.runner, "drain", &via, started, &changes);
                anyhow::bail!(
                    "{}",
                    drain_failure(t, self.timeout_secs, &pods, &format!("{e}"))
                );
            }
            changes.push(format!("drained {t}"));
            report(&mut run.runner, "drain", &via, started, &changes);
            Ok(())
        })
    }
}

struct EtcdRemove {
    target: String,
}

impl Phase for EtcdRemove {
    fn title(&self) -> &str {
        "etcd-remove"
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.inv
            .hosts
            .iter()
            .any(|h| h.name == self.target && h.has_role(HostRole::Etcd))
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let t = &self.target;
            let started = Instant::now();
            let view = etcd_view(run, t).await?;
            let mut changes = Vec::new();
            if let Some(id) = is_member(&view, t, &target_peer(&run.s, t)) {
                // Health may have changed since the plan.
                if let Err(why) = check_removal(&view.health(), t) {
                    anyhow::bail!("refusing to remove {t}: {why}");
                }
                let via = run
                    .s
                    .nodes
                    .iter()
                    .find(|n| n.name() == view.via)
                    .ok_or_else(|| anyhow::anyhow!("{}: not connected", view.via))?;
                etcd_cluster::member_remove(via, id).await?;
                changes.push(format!(
                    "etcd member remove {t} ({id:x}): {} members left",
                    view.members.len() - 1
                ));
            }
            let mut records = membership::etcd_members(&run.s.state)?;
            if records.remove(t).is_some() {
                membership::save_etcd_members(&run.s.state, &records)?;
            }
            report(&mut run.runner, "etcd-remove", &view.via, started, &changes);
            Ok(())
        })
    }
}

struct ResetHost {
    target: String,
}

impl Phase for ResetHost {
    fn title(&self) -> &str {
        "reset"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.nodes.iter().filter(|n| n.name() == self.target).collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let names: Vec<String> = st.inv.hosts.iter().map(|h| h.name.clone()).collect();
            let recorded = st.state.subnets()?.unwrap_or_default();
            // Subnets only feed path templates here.
            let nets = subnets::allocate(
                &recorded,
                &names,
                st.inv.network.pod_cidr,
                st.inv.network.node_prefix,
            )?;
            let cluster = context::cluster(&st.inv, &nets, "", BTreeMap::new())?;
            let cluster = &cluster;
            runner
                .phase("reset", self.hosts(st), |n| async move {
                    let nc = context::node(&st.inv, cluster, &n.host, &n.facts)?;
                    let plan = reset::plan(&st.renderer, &st.roles, cluster, &nc, &n.host.roles)?;
                    let script = reset::script(&st.renderer, &plan)?;
                    let out = n
                        .sudo_ok(&crate::node::script_command(&script, &[]))
                        .await?;
                    Ok(out.stdout.lines().map(str::to_string).collect())
                })
                .await;
            if runner.failed(&self.target) && st.nodes.iter().any(|n| n.name() == self.target) {
                anyhow::bail!(
                    "{}: reset failed (see above); its Node object and inventory entry are kept; fix it and re-run remove-node",
                    self.target
                );
            }
            Ok(())
        })
    }
}

struct DeleteNode {
    target: String,
}

impl Phase for DeleteNode {
    fn title(&self) -> &str {
        "delete-node"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let t = &self.target;
            let started = Instant::now();
            let kubectl = kubectl_host(run, t)?;
            let via = kubectl.name().to_string();
            let mut changes = Vec::new();
            if node_object_exists(kubectl, t).await? {
                Kubectl::on(kubectl)
                    .run(&format!(
                        "delete node {} --ignore-not-found",
                        shell_quote(t)
                    ))
                    .await?;
                changes.push(format!("deleted the Node object {t}"));
            }
            report(&mut run.runner, "delete-node", &via, started, &changes);
            Ok(())
        })
    }
}

struct Record {
    target: String,
}

impl Phase for Record {
    fn title(&self) -> &str {
        "record"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let t = &self.target;
            let address = run
                .s
                .inv
                .hosts
                .iter()
                .find(|h| &h.name == t)
                .map(|h| h.ssh.address.to_string())
                .unwrap_or_default();
            let mut removed = membership::removed_nodes(&run.s.state)?;
            removed.retain(|r| &r.name != t);
            removed.push(RemovedNode {
                name: t.clone(),
                address,
                removed_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            });
            membership::save_removed_nodes(&run.s.state, &removed)?;
            run.runner.say(&format!(
                "[record] {t} recorded as removed in {}",
                membership::removed_nodes_file(&run.s.state).display()
            ));
            Ok(())
        })
    }
}

/// From here on the run works on the cluster without the node (local, silent).
struct Forget {
    target: String,
}

impl Phase for Forget {
    fn title(&self) -> &str {
        "forget"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let t = &self.target;
            run.s.inv.hosts.retain(|h| &h.name != t);
            run.s.nodes.retain(|n| n.name() != t);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            name: "node3".into(),
            roles: vec!["etcd".into(), "control-plane".into()],
            reachable: true,
            node_object: true,
            etcd: Some(vec![
                ("node1".into(), true),
                ("node2".into(), true),
                ("node3".into(), true),
            ]),
            etcd_member: true,
            other_control_planes: 2,
            is_control_plane: true,
            drain_timeout_secs: 300,
        }
    }

    #[test]
    fn removal_runs_its_steps_then_converges_the_rest() {
        let titles: Vec<String> = phases("n", true, 60)
            .iter()
            .map(|p| p.title().to_string())
            .collect();
        assert_eq!(
            titles,
            [
                "connect",
                "removal-plan",
                "drain",
                "etcd-remove",
                "reset",
                "delete-node",
                "record",
                "forget",
                "subnets",
                "pki",
                "facts",
                "artifacts",
                "apiserver-lb",
                "control-plane",
                "overlay-keys",
                "overlay-wireguard",
                "overlay"
            ]
        );
    }

    #[test]
    fn plan_of_an_etcd_control_plane() {
        let f = facts();
        assert_eq!(refusal(&f), None);
        let steps = plan_steps(&f);
        assert!(steps[0].starts_with("cordon and drain node3"), "{steps:?}");
        assert!(steps[1].contains("member remove node3: 3 members (3 healthy) -> 2"));
        assert!(steps[2].starts_with("reset node3"));
        assert!(steps[3].contains("delete the Node object node3"));
        assert!(steps.last().unwrap().contains("the API servers' etcd list"));
    }

    #[test]
    fn plan_of_an_unreachable_worker() {
        let f = Facts {
            name: "node5".into(),
            roles: vec!["worker".into()],
            reachable: false,
            node_object: true,
            etcd: None,
            etcd_member: false,
            other_control_planes: 3,
            is_control_plane: false,
            drain_timeout_secs: 60,
        };
        assert_eq!(refusal(&f), None);
        let steps = plan_steps(&f);
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert!(steps[1].contains("NOT reset"), "{steps:?}");
        assert!(!steps.iter().any(|s| s.contains("etcd")), "{steps:?}");
    }

    #[test]
    fn last_control_plane_and_quorum_are_refused() {
        let mut f = facts();
        f.other_control_planes = 0;
        assert!(matches!(
            refusal(&f),
            Some(RemovalRefused::LastControlPlane { .. })
        ));
        let mut f = facts();
        f.etcd = Some(vec![
            ("node1".into(), true),
            ("node2".into(), false),
            ("node3".into(), true),
        ]);
        let why = refusal(&f).unwrap();
        assert!(why.to_string().contains("would lose etcd quorum"), "{why}");
        // The unhealthy member itself may go.
        f.name = "node2".into();
        assert_eq!(refusal(&f), None);
    }

    #[test]
    fn drain_failure_names_the_pods_and_the_way_out() {
        let m = drain_failure(
            "node5",
            60,
            &["default/web-1:ReplicaSet".into()],
            "global timeout reached",
        );
        assert!(m.contains("default/web-1"), "{m}");
        assert!(m.contains("stays cordoned"), "{m}");
        assert!(m.contains("--drain-timeout"), "{m}");
    }
}
