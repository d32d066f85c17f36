//! The phases of `upgrade` (k0sctl's and kubeadm's order): read what every host runs and
//! check the version skew policy, back up etcd, then etcd members one at a time, control
//! planes one at a time (each ready before the next), then the nodes in batches (cordon,
//! drain, swap kubelet and kube-proxy, restart, Ready at the new version, uncordon). The
//! phases share the upgrade's plan (`Shared`); progress is recorded in the cluster state dir so
//! a re-run resumes, and a host already at the target is skipped.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::apply::{Env, apply_role, stage_binaries};
use crate::engine::kubectl::Kubectl;
use crate::engine::upgrade::{
    API_SERVER, Batch, Installed, KUBE_PROXY, KUBELET, Progress, Version, skew_violations,
};
use crate::inventory::HostRole;
use crate::node::{Node, shell_quote};

/// What the upgrade phases share.
pub struct Shared {
    pub target: Version,
    pub batch: Batch,
    /// `kubectl drain --timeout`.
    pub drain_timeout_secs: u64,
    /// How long a restarted node may take to be Ready at the target version.
    pub ready_timeout_secs: u64,
    /// Versions read from each host (component -> version).
    pub installed: BTreeMap<String, BTreeMap<String, Version>>,
    /// etcd's binary differs from the mirror's on some member (read by the preflight).
    pub progress: Progress,
    /// The host kubectl runs on (the first control plane).
    pub kubectl_host: Option<String>,
    /// Set when a host failed: later phases do nothing, the summary says how to resume.
    pub stopped: Option<String>,
}

pub type SharedRef = Rc<RefCell<Shared>>;

/// The component phases this upgrade rolls, in order.
pub const ETCD: &str = "etcd";
pub const CONTROL_PLANE: &str = "control-plane";
/// Roles swapped on every node, in this order.
const NODE_PHASES: &[&str] = &["kubelet", "kube-proxy"];

/// Components whose `--version` the preflight reads, by binary name.
const VERSIONED: &[&str] = &[API_SERVER, KUBELET, KUBE_PROXY];

fn binary_path(s: &RunState, name: &str) -> String {
    s.roles
        .iter()
        .flat_map(|r| r.binaries.iter())
        .find(|b| b.name == name)
        .map(|b| b.path())
        .unwrap_or_else(|| format!("/usr/local/bin/{name}"))
}

/// The hosts with roles in `phase`, inventory order.
fn hosts_in<'s>(s: &'s RunState, phase: &str) -> Vec<&'s Node> {
    s.planned()
        .filter(|n| !s.roles_in(n.name(), phase).is_empty())
        .collect()
}

/// The installed versions, as the skew policy reads them.
fn installed_list(sh: &Shared) -> Vec<Installed> {
    sh.installed
        .iter()
        .flat_map(|(host, m)| {
            m.iter().map(move |(c, v)| Installed {
                host: host.clone(),
                component: c.clone(),
                version: *v,
            })
        })
        .collect()
}

/// A node is done when its kubelet and kube-proxy run the target and this upgrade has not left
/// it cordoned.
fn node_done(sh: &Shared, host: &str) -> bool {
    let at = |c: &str| {
        sh.installed
            .get(host)
            .and_then(|m| m.get(c))
            .is_none_or(|v| *v == sh.target)
    };
    at(KUBELET) && at(KUBE_PROXY) && !sh.progress.cordoned.contains(host)
}

/// The node batches: control planes one at a time first, then the other nodes `batch` at a time.
pub fn node_batches<'a>(nodes: &[(&'a str, bool)], batch: Batch) -> Vec<Vec<&'a str>> {
    let mut out: Vec<Vec<&str>> = nodes
        .iter()
        .filter(|(_, cp)| *cp)
        .map(|(n, _)| vec![*n])
        .collect();
    let workers: Vec<&str> = nodes
        .iter()
        .filter(|(_, cp)| !*cp)
        .map(|(n, _)| *n)
        .collect();
    let size = batch.size(workers.len());
    out.extend(workers.chunks(size).map(|c| c.to_vec()));
    out
}

/// `upgrade-preflight`: every host reachable, versions read from every host, the skew policy
/// checked, the plan printed, the upgrade recorded as in progress.
pub struct Preflight {
    pub shared: SharedRef,
}

impl Phase for Preflight {
    fn title(&self) -> &str {
        "upgrade-preflight"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned().collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let unreachable: Vec<&str> = s
                .inv
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .filter(|h| runner.failed(h) || !s.nodes.iter().any(|n| n.name() == *h))
                .collect();
            if !unreachable.is_empty() {
                anyhow::bail!(
                    "upgrade needs every host; not reachable: {} (see above). Nothing was changed; fix it and re-run",
                    unreachable.join(", ")
                );
            }
            let found = Mutex::new(BTreeMap::<String, BTreeMap<String, Version>>::new());
            let script: String = VERSIONED
                .iter()
                .map(|b| {
                    let p = shell_quote(&binary_path(s, b));
                    format!(
                        "if [ -x {p} ]; then printf '%s ' {b}; {p} --version 2>&1 | head -n 1; fi; "
                    )
                })
                .collect();
            {
                let (found, script) = (&found, &script);
                runner
                    .phase(self.title(), self.hosts(s), |n| async move {
                        let out = n.sudo_ok(script).await.context("reading versions")?;
                        let mut m = BTreeMap::new();
                        for line in out.stdout.lines() {
                            let mut w = line.splitn(2, ' ');
                            let (Some(c), Some(rest)) = (w.next(), w.next()) else {
                                continue;
                            };
                            let v = Version::find(rest).ok_or_else(|| {
                                anyhow::anyhow!("{c} --version said {rest:?}: not a version")
                            })?;
                            m.insert(c.to_string(), v);
                        }
                        let lines = m.iter().map(|(c, v)| format!("{c} {v}")).collect();
                        if let Ok(mut f) = found.lock() {
                            f.insert(n.name().to_string(), m);
                        }
                        Ok(lines)
                    })
                    .await;
            }
            let failed: Vec<&str> = s
                .nodes
                .iter()
                .map(|n| n.name())
                .filter(|h| runner.failed(h))
                .collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "cannot read the installed versions on {}; nothing was changed",
                    failed.join(", ")
                );
            }
            let mut sh = self.shared.borrow_mut();
            sh.installed = found.into_inner().unwrap_or_default();
            let violations = skew_violations(sh.target, &installed_list(&sh));
            if !violations.is_empty() {
                anyhow::bail!(
                    "the version skew policy forbids this upgrade (nothing was changed):\n  {}",
                    violations.join("\n  ")
                );
            }
            if sh.installed.values().all(|m| !m.contains_key(API_SERVER)) {
                anyhow::bail!("no control plane runs kube-apiserver: run `init` first");
            }
            sh.kubectl_host = hosts_in(s, CONTROL_PLANE)
                .first()
                .map(|n| n.name().to_string());
            // The plan.
            let target = sh.target;
            runner.say(&format!("upgrade plan to {target}:"));
            let describe = |host: &str, comps: &[&str]| -> String {
                let m = sh.installed.get(host);
                comps
                    .iter()
                    .filter_map(|c| m.and_then(|m| m.get(*c)).map(|v| (c, v)))
                    .map(|(c, v)| {
                        if *v == target {
                            format!("{c} {v} (at target: skipped)")
                        } else {
                            format!("{c} {v} -> {target}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let etcd: Vec<&str> = hosts_in(s, ETCD).iter().map(|n| n.name()).collect();
            runner.say(&format!(
                "  1. etcd snapshot from {} into {}",
                etcd.first().copied().unwrap_or("-"),
                s.state.backups_dir().display()
            ));
            runner.say(&format!(
                "  2. etcd members one at a time ({}): binaries swapped only where they differ from the mirror's",
                etcd.join(", ")
            ));
            runner.say("  3. control planes one at a time, each ready (/readyz) before the next:");
            for n in hosts_in(s, CONTROL_PLANE) {
                runner.say(&format!(
                    "     {}: {}",
                    n.name(),
                    describe(n.name(), &[API_SERVER])
                ));
            }
            let nodes = node_list(s);
            let batches = node_batches(&nodes, sh.batch);
            runner.say(&format!(
                "  4. nodes (control planes first, then workers {} at a time): cordon, drain, swap kubelet + kube-proxy, restart, Ready, uncordon:",
                sh.batch
            ));
            for (i, b) in batches.iter().enumerate() {
                let what: Vec<String> = b
                    .iter()
                    .map(|h| {
                        if node_done(&sh, h) {
                            format!("{h} (at target: skipped)")
                        } else {
                            format!("{h}: {}", describe(h, &[KUBELET, KUBE_PROXY]))
                        }
                    })
                    .collect();
                runner.say(&format!("     batch {}: {}", i + 1, what.join("; ")));
            }
            if !s.opts.dry_run {
                let mut p = s.state.upgrade_progress()?.unwrap_or_default();
                if p.to != target.to_string() {
                    // A new upgrade (or the first): nothing of another one carries over, but a
                    // node it left cordoned is still ours to uncordon.
                    p = Progress {
                        to: target.to_string(),
                        cordoned: p.cordoned,
                        ..Progress::default()
                    };
                } else {
                    runner.say(&format!(
                        "resuming the upgrade to {target} recorded in {}",
                        s.state.upgrade_file().display()
                    ));
                }
                s.state.save_upgrade_progress(&p)?;
                sh.progress = p;
            }
            Ok(())
        })
    }
}

/// Every host with a kubelet, with whether it is a control plane.
fn node_list(s: &RunState) -> Vec<(&str, bool)> {
    hosts_in(s, "kubelet")
        .into_iter()
        .map(|n| (n.name(), n.host.has_role(HostRole::ControlPlane)))
        .collect()
}

fn anything_to_do(sh: &Shared) -> bool {
    sh.installed
        .values()
        .any(|m| m.values().any(|v| *v != sh.target))
        || !sh.progress.cordoned.is_empty()
}

/// `etcd-backup`: an `etcdctl snapshot save` on the first etcd member, copied into the cluster
/// state dir (0600) before anything changes. Once per upgrade: a resumed one keeps its backup.
pub struct EtcdBackup {
    pub shared: SharedRef,
}

const REMOTE_SNAPSHOT: &str = "/var/lib/director-boot/etcd-pre-upgrade.db";

impl Phase for EtcdBackup {
    fn title(&self) -> &str {
        "etcd-backup"
    }

    fn should_run(&self, _s: &RunState) -> bool {
        let sh = self.shared.borrow();
        sh.stopped.is_none() && sh.progress.backup.is_none() && anything_to_do(&sh)
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        hosts_in(s, ETCD).into_iter().take(1).collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let hosts = self.hosts(s);
            let Some(first) = hosts.first() else {
                anyhow::bail!("no etcd member to back up");
            };
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let target = self.shared.borrow().target;
            let local = s
                .state
                .backups_dir()
                .join(format!("etcd-{stamp}-before-{target}.db"));
            let saved = Mutex::new(None);
            {
                let (local, saved, dry) = (&local, &saved, s.opts.dry_run);
                runner
                    .phase(self.title(), hosts.clone(), |n| async move {
                        if dry {
                            return Ok(vec![format!(
                                "would save an etcd snapshot from {} into {}",
                                n.name(),
                                local.display()
                            )]);
                        }
                        let cmd = format!(
                            "mkdir -p /var/lib/director-boot && ETCDCTL_API=3 /usr/local/bin/etcdctl \
                             --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
                             --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
                             --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
                             --command-timeout=60s snapshot save {REMOTE_SNAPSHOT} >/dev/null && chmod 600 {REMOTE_SNAPSHOT}"
                        );
                        n.sudo_ok(&cmd).await.context("etcdctl snapshot save")?;
                        let data = n
                            .session
                            .read_file(REMOTE_SNAPSHOT)
                            .await
                            .context("copying the snapshot")?
                            .ok_or_else(|| anyhow::anyhow!("{REMOTE_SNAPSHOT} vanished"))?;
                        crate::paths::ensure_private_dir(
                            local.parent().unwrap_or(std::path::Path::new(".")),
                        )?;
                        crate::cluster_state::write_private(local, &data)?;
                        n.sudo_ok(&format!("rm -f {REMOTE_SNAPSHOT}")).await?;
                        if let Ok(mut g) = saved.lock() {
                            *g = Some(data.len());
                        }
                        Ok(vec![format!(
                            "saved an etcd snapshot ({} bytes) into {}",
                            data.len(),
                            local.display()
                        )])
                    })
                    .await;
            }
            if runner.failed(first.name()) {
                let msg = format!(
                    "the etcd backup on {} failed; nothing else was changed",
                    first.name()
                );
                self.shared.borrow_mut().stopped = Some(msg);
                return Ok(());
            }
            if !s.opts.dry_run {
                let mut sh = self.shared.borrow_mut();
                sh.progress.backup = Some(local);
                s.state.save_upgrade_progress(&sh.progress)?;
            }
            Ok(())
        })
    }
}

/// Apply `phases`' roles of one host with the mirror's (selected) binaries: staged first, so
/// a changed binary restarts its units; health checks wait (e.g. /readyz).
async fn swap(s: &RunState, n: &Node, phases: &[&str]) -> anyhow::Result<Vec<String>> {
    let roles: Vec<_> = phases
        .iter()
        .flat_map(|p| s.roles_in(n.name(), p))
        .collect();
    let (staged_lines, written) = stage_binaries(&s.artifacts, n, &roles).await?;
    // A dry run stages nothing, so the roles below report the same binaries again.
    let mut changes = if n.dry_run { Vec::new() } else { staged_lines };
    let base = s.env()?;
    let staged = BTreeMap::from([(n.name().to_string(), written)]);
    let env = Env {
        renderer: base.renderer,
        cluster: base.cluster,
        artifacts: base.artifacts,
        pki_dir: base.pki_dir,
        staged: &staged,
    };
    let nc = s
        .node_ctx
        .get(n.name())
        .ok_or_else(|| anyhow::anyhow!("no node context"))?;
    // One role after the other: the API server is ready before its controllers restart.
    for r in roles {
        let o = apply_role(&env, n, nc, r).await?;
        changes.extend(o.changes);
    }
    Ok(changes)
}

/// The leader-elected controllers whose leadership a control-plane restart hands over.
const LEASES: &str = "kube-controller-manager kube-scheduler";
const LEASE_WAIT_SECS: u64 = 120;

/// After a control plane's controllers restarted: wait until each leader lease is held by a
/// live process again (its holder changed, or its holder renewed it since). Until the new
/// controller-manager leads, EndpointSlices do not follow evictions: a node drained in that
/// window would leave Services sending traffic to pods that are gone.
async fn wait_controllers_lead(n: &Node) -> anyhow::Result<()> {
    let k = Kubectl::on(n);
    let query = format!(
        "-n kube-system get lease {LEASES} -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.spec.holderIdentity}} {{.spec.renewTime}}{{\"\\n\"}}{{end}}'"
    );
    let read = || async {
        k.run(&query)
            .await
            .map(|o| {
                o.stdout
                    .lines()
                    .filter_map(|l| {
                        let mut w = l.split_whitespace();
                        Some((w.next()?.to_string(), l.to_string()))
                    })
                    .collect::<BTreeMap<String, String>>()
            })
            .unwrap_or_default()
    };
    let first = read().await;
    let deadline = Instant::now() + Duration::from_secs(LEASE_WAIT_SECS);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read().await;
        let waiting: Vec<&String> = first
            .iter()
            .filter(|(name, line)| now.get(*name) == Some(*line))
            .map(|(name, _)| name)
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "no live leader for {} {LEASE_WAIT_SECS} s after the restart (lease not renewed)",
                waiting
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

/// `etcd` and `control-plane`: the component's roles, one host at a time, stopping at the
/// first host that fails. What already matches the mirror is left alone.
pub struct Rolling {
    pub component: &'static str,
    pub shared: SharedRef,
}

impl Phase for Rolling {
    fn title(&self) -> &str {
        self.component
    }

    fn should_run(&self, _s: &RunState) -> bool {
        let sh = self.shared.borrow();
        sh.stopped.is_none() && anything_to_do(&sh)
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        hosts_in(s, self.component)
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let component = self.component;
            let phases = [component];
            let phases = &phases[..];
            let leases = component == CONTROL_PLANE;
            for n in hosts_in(st, component) {
                runner
                    .phase(component, vec![n], |n| async move {
                        let changes = swap(st, n, phases).await?;
                        if leases && !changes.is_empty() && !n.dry_run {
                            wait_controllers_lead(n).await?;
                        }
                        Ok(changes)
                    })
                    .await;
                if runner.failed(n.name()) {
                    self.shared.borrow_mut().stopped =
                        Some(format!("{} failed in {component}", n.name()));
                    break;
                }
            }
            Ok(())
        })
    }
}

/// `nodes`: every host with a kubelet, control planes first one at a time, then the workers in
/// batches: cordon, drain, swap kubelet and kube-proxy, restart, Ready at the target, uncordon.
pub struct Nodes {
    pub shared: SharedRef,
}

impl Nodes {
    async fn one(&self, s: &RunState, kubectl: &Node, n: &Node) -> anyhow::Result<Vec<String>> {
        let (target, drain_timeout, ready_timeout) = {
            let sh = self.shared.borrow();
            (sh.target, sh.drain_timeout_secs, sh.ready_timeout_secs)
        };
        let k = Kubectl::on(kubectl);
        let name = shell_quote(n.name());
        let mut changes = Vec::new();
        if s.opts.dry_run {
            return Ok(vec![format!(
                "would cordon and drain {0}, swap kubelet and kube-proxy to {target}, restart them, wait until Ready at {target}, uncordon",
                n.name()
            )]);
        }
        k.run(&format!("cordon {name}")).await.context("cordon")?;
        changes.push("cordoned".to_string());
        k.run(&format!(
            "drain {name} --ignore-daemonsets --delete-emptydir-data --timeout={drain_timeout}s"
        ))
        .await
        .with_context(|| {
            format!(
                "drain (PodDisruptionBudgets respected, {drain_timeout} s): what would not move is named above; the node stays cordoned"
            )
        })?;
        changes.push("drained".to_string());
        changes.extend(
            swap(s, n, NODE_PHASES)
                .await
                .context("swap kubelet and kube-proxy")?,
        );
        let deadline = Instant::now() + Duration::from_secs(ready_timeout);
        let query = format!(
            "get node {name} -o jsonpath='{{.status.nodeInfo.kubeletVersion}} {{.status.conditions[?(@.type==\"Ready\")].status}}'"
        );
        let want = format!("{target} True");
        loop {
            let seen = match k.run(&query).await {
                Ok(o) => o.stdout.trim().to_string(),
                Err(e) => e.to_string(),
            };
            if seen == want {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "wait Ready: node {} is not Ready at {target} after {ready_timeout} s (last: {seen}); it stays cordoned",
                    n.name()
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        changes.push(format!("Ready at {target}"));
        k.run(&format!("uncordon {name}"))
            .await
            .context("uncordon")?;
        changes.push("uncordoned".to_string());
        Ok(changes)
    }
}

impl Phase for Nodes {
    fn title(&self) -> &str {
        "nodes"
    }

    fn should_run(&self, _s: &RunState) -> bool {
        let sh = self.shared.borrow();
        sh.stopped.is_none() && anything_to_do(&sh)
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let kubectl_host = self.shared.borrow().kubectl_host.clone();
            let Some(kubectl) = kubectl_host
                .as_deref()
                .and_then(|h| st.nodes.iter().find(|n| n.name() == h))
            else {
                anyhow::bail!("no control plane to run kubectl on");
            };
            let nodes = node_list(st);
            let batch = self.shared.borrow().batch;
            let batches = node_batches(&nodes, batch);
            let total = batches.len();
            for (i, b) in batches.iter().enumerate() {
                let todo: Vec<&Node> = {
                    let sh = self.shared.borrow();
                    b.iter()
                        .filter(|h| !node_done(&sh, h))
                        .filter_map(|h| st.nodes.iter().find(|n| n.name() == *h))
                        .collect()
                };
                if todo.is_empty() {
                    runner.say(&format!(
                        "[nodes {}/{total}] {}: at the target, skipped",
                        i + 1,
                        b.join(", ")
                    ));
                    continue;
                }
                let names: Vec<String> = todo.iter().map(|n| n.name().to_string()).collect();
                if !st.opts.dry_run {
                    let mut sh = self.shared.borrow_mut();
                    sh.progress.cordoned.extend(names.iter().cloned());
                    st.state.save_upgrade_progress(&sh.progress)?;
                }
                let title = format!("nodes {}/{total}", i + 1);
                runner
                    .phase(&title, todo, |n| self.one(st, kubectl, n))
                    .await;
                let failed: Vec<&String> = names.iter().filter(|h| runner.failed(h)).collect();
                if !st.opts.dry_run {
                    let mut sh = self.shared.borrow_mut();
                    for h in names.iter().filter(|h| !runner.failed(h)) {
                        sh.progress.cordoned.remove(h);
                        sh.progress.done.insert(h.clone());
                    }
                    st.state.save_upgrade_progress(&sh.progress)?;
                }
                if !failed.is_empty() {
                    self.shared.borrow_mut().stopped = Some(format!(
                        "{} failed in {title}",
                        failed
                            .iter()
                            .map(|h| h.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    break;
                }
            }
            Ok(())
        })
    }
}

/// `upgrade-record` (local): when every host made it, the cluster's version is recorded (a
/// later `init` installs it) and the progress file removed.
pub struct Record {
    pub shared: SharedRef,
}

impl Phase for Record {
    fn title(&self) -> &str {
        "upgrade-record"
    }

    fn should_run(&self, _s: &RunState) -> bool {
        self.shared.borrow().stopped.is_none()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let hosts: Vec<String> = s.inv.hosts.iter().map(|h| h.name.clone()).collect();
            if runner.failed_any(&hosts) {
                return Ok(());
            }
            let target = self.shared.borrow().target.to_string();
            if s.opts.dry_run {
                runner.say(&format!(
                    "would record {target} as the cluster's version in {}",
                    s.state.dir().display()
                ));
                return Ok(());
            }
            s.state.finish_upgrade(&target)?;
            runner.say(&format!(
                "the cluster runs {target}; recorded in {} (init installs it from now on)",
                s.state.dir().display()
            ));
            Ok(())
        })
    }
}

/// The hosts a stopped upgrade did not reach, for the closing message.
pub fn unfinished(sh: &Shared) -> BTreeSet<String> {
    sh.installed
        .iter()
        .filter(|(h, m)| !sh.progress.done.contains(*h) && m.values().any(|v| *v != sh.target))
        .map(|(h, _)| h.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(installed: &[(&str, &str, &str)]) -> Shared {
        let mut m: BTreeMap<String, BTreeMap<String, Version>> = BTreeMap::new();
        for (h, c, v) in installed {
            m.entry(h.to_string())
                .or_default()
                .insert(c.to_string(), v.parse().unwrap());
        }
        Shared {
            target: "v1.37.2".parse().unwrap(),
            batch: Batch::default(),
            drain_timeout_secs: 300,
            ready_timeout_secs: 300,
            installed: m,
            progress: Progress::default(),
            kubectl_host: None,
            stopped: None,
        }
    }

    #[test]
    fn a_node_at_the_target_is_skipped_unless_this_upgrade_left_it_cordoned() {
        let mut sh = shared(&[
            ("cp", API_SERVER, "v1.37.2"),
            ("cp", KUBELET, "v1.37.2"),
            ("cp", KUBE_PROXY, "v1.37.2"),
            ("w1", KUBELET, "v1.37.2"),
            ("w1", KUBE_PROXY, "v1.37.2"),
            ("w2", KUBELET, "v1.36.3"),
            ("w2", KUBE_PROXY, "v1.36.3"),
        ]);
        assert!(node_done(&sh, "cp"));
        assert!(!node_done(&sh, "w2"));
        assert!(anything_to_do(&sh));
        assert_eq!(unfinished(&sh), BTreeSet::from(["w2".to_string()]));
        sh.progress.cordoned.insert("w1".into());
        assert!(!node_done(&sh, "w1"), "left cordoned: uncordon on resume");
        let done = shared(&[("cp", API_SERVER, "v1.37.2"), ("cp", KUBELET, "v1.37.2")]);
        assert!(!anything_to_do(&done));
    }

    #[test]
    fn control_planes_go_alone_then_workers_in_batches() {
        let nodes = [
            ("cp1", true),
            ("w1", false),
            ("cp2", true),
            ("w2", false),
            ("w3", false),
        ];
        assert_eq!(
            node_batches(&nodes, Batch::Count(2)),
            vec![vec!["cp1"], vec!["cp2"], vec!["w1", "w2"], vec!["w3"]]
        );
        assert_eq!(
            node_batches(&nodes, Batch::Percent(100)),
            vec![vec!["cp1"], vec!["cp2"], vec!["w1", "w2", "w3"]]
        );
        assert_eq!(
            node_batches(&nodes, Batch::default()).len(),
            5,
            "one at a time by default"
        );
    }
}
