//! `restore`'s own phases (the rest are init's: subnets, pki, the host plan, the etcd and
//! control-plane component phases):
//! - `verify` (local): the backup file's checks (`backup_archive::open`), and that it is this
//!   cluster's;
//! - `state` (local): the cluster state dir as the backup has it (the snapshot's Secrets are
//!   encrypted under the backup's key ring, its tokens signed by its keys); files that differ
//!   are moved to `before-restore-<time>/` first;
//! - `stop-control-plane`, `stop-etcd`: the API servers (and their controllers) before etcd;
//! - `restore-etcd`: a new cluster token, recorded in the state dir (the etcd unit takes it
//!   from there), then on every member: etcdutl and the snapshot staged, the data dir rebuilt
//!   from the snapshot with `etcdutl snapshot restore` (the old one kept as
//!   `/var/lib/etcd.before-restore`), owned by the etcd user;
//! - `restart-nodes`: kubelet and kube-proxy restarted, so nothing runs on a stale cache;
//! - `nodes-ready`: every node Ready with a fresh heartbeat.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::backup_archive::{self, Opened};
use crate::engine::kubectl::Kubectl;
use crate::inventory::HostRole;
use crate::node::{Node, last_lines, shell_quote};

pub type Shared = Rc<RefCell<Option<Opened>>>;

/// Where the snapshot and etcdutl go on each member for the restore.
const REMOTE_DIR: &str = "/var/lib/director-boot/restore";
const ETCDUTL: &str = "/usr/local/bin/etcdutl";
const DATA_DIR: &str = "/var/lib/etcd";

pub struct Verify {
    pub file: PathBuf,
    pub opened: Shared,
}

impl Phase for Verify {
    fn title(&self) -> &str {
        "verify"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let o = backup_archive::open(&self.file)?;
            if o.manifest.cluster != s.inv.cluster_name {
                anyhow::bail!(
                    "{}: a backup of cluster {}, not of {} (the inventory's); refusing to restore it here",
                    self.file.display(),
                    o.manifest.cluster,
                    s.inv.cluster_name
                );
            }
            runner.say("[verify] local");
            runner.say(&format!(
                "  {:<14} {}: cluster {}, taken {} through {}, {} files, every checksum matches",
                "control",
                self.file.display(),
                o.manifest.cluster,
                o.manifest.created,
                o.manifest.etcd_member,
                o.manifest.files.len()
            ));
            *self.opened.borrow_mut() = Some(o);
            Ok(())
        })
    }
}

fn opened(shared: &Shared) -> anyhow::Result<std::cell::Ref<'_, Opened>> {
    std::cell::Ref::filter_map(shared.borrow(), |o| o.as_ref())
        .map_err(|_| anyhow::anyhow!("no verified backup: the verify phase did not run"))
}

/// The state files of the backup that differ from the state dir's now (relative paths).
pub fn differing(dir: &Path, backup: &[(String, &Path)]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (rel, unpacked) in backup {
        let want = std::fs::read(unpacked).with_context(|| format!("{}", unpacked.display()))?;
        let have = std::fs::read(dir.join(rel)).ok();
        if have.as_deref() != Some(&want[..]) {
            out.push(rel.clone());
        }
    }
    Ok(out)
}

pub struct RestoreState {
    pub opened: Shared,
}

impl Phase for RestoreState {
    fn title(&self) -> &str {
        "state"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let o = opened(&self.opened)?;
            let dir = s.state.dir().to_path_buf();
            let files = o.state();
            let diff = differing(&dir, &files)?;
            runner.say("[state] local");
            if diff.is_empty() {
                runner.say(&format!(
                    "  {:<14} ok ({} matches the backup)",
                    "control",
                    dir.display()
                ));
                return Ok(());
            }
            let aside = dir.join(format!(
                "before-restore-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ));
            for rel in &diff {
                let verb = if s.opts.dry_run {
                    "would restore"
                } else {
                    "restored"
                };
                runner
                    .changes
                    .push(("state".into(), "local".into(), format!("{verb} {rel}")));
                if s.opts.dry_run {
                    continue;
                }
                let target = dir.join(rel);
                if target.exists() {
                    let keep = aside.join(rel);
                    if let Some(p) = keep.parent() {
                        crate::paths::ensure_private_dir(p)
                            .with_context(|| format!("{}", p.display()))?;
                    }
                    std::fs::rename(&target, &keep).with_context(|| {
                        format!("moving {} to {}", target.display(), keep.display())
                    })?;
                }
                if let Some(p) = target.parent() {
                    crate::paths::ensure_private_dir(p)
                        .with_context(|| format!("{}", p.display()))?;
                }
                let unpacked = files
                    .iter()
                    .find(|(r, _)| r == rel)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| anyhow::anyhow!("{rel}: not in the backup"))?;
                let data = std::fs::read(unpacked)?;
                crate::cluster_state::write_private(&target, &data)?;
            }
            runner.say(&format!(
                "  {:<14} {} {} files of {} from the backup{}",
                "control",
                if s.opts.dry_run {
                    "would restore"
                } else {
                    "restored"
                },
                diff.len(),
                dir.display(),
                if s.opts.dry_run {
                    String::new()
                } else {
                    format!(" (the replaced ones are in {})", aside.display())
                }
            ));
            Ok(())
        })
    }
}

/// Stop the units of one component phase's roles on every host that has them.
pub struct StopUnits {
    pub title: &'static str,
    pub component: &'static str,
}

fn units_in<'s>(s: &'s RunState, host: &str, component: &str) -> Vec<&'s str> {
    s.roles_in(host, component)
        .into_iter()
        .flat_map(|r| r.units.iter().map(String::as_str))
        .collect()
}

impl Phase for StopUnits {
    fn title(&self) -> &str {
        self.title
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned()
            .filter(|n| !units_in(s, n.name(), self.component).is_empty())
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let hosts = self.hosts(st);
            let names: Vec<String> = hosts.iter().map(|n| n.name().to_string()).collect();
            runner
                .phase(self.title, hosts, |n| async move {
                    let units: Vec<String> = units_in(st, n.name(), self.component)
                        .into_iter()
                        .map(shell_quote)
                        .collect();
                    let list = units.join(" ");
                    if !n.dry_run {
                        n.sudo_ok(&format!("systemctl stop {list}")).await?;
                    }
                    Ok(vec![format!(
                        "{} {}",
                        if n.dry_run { "would stop" } else { "stopped" },
                        list
                    )])
                })
                .await;
            // A member left running would serve (and write) the old data beside the restored.
            let failed: Vec<&String> = names.iter().filter(|h| runner.failed(h)).collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "{}: not stopped on {}; nothing was restored (start them again with `director-boot init`)",
                    self.title,
                    failed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        })
    }
}

/// A new etcd cluster token: the cluster's name and 8 random hex digits.
pub fn new_token(cluster: &str) -> anyhow::Result<String> {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("{cluster}-etcd-{}", hex::encode(b)))
}

/// The commands that rebuild one member's data dir from the staged snapshot.
pub fn restore_script(
    name: &str,
    initial_cluster: &str,
    token: &str,
    peer_url: &str,
    snapshot: &str,
) -> String {
    let tmp = format!("{DATA_DIR}.restoring");
    let old = format!("{DATA_DIR}.before-restore");
    format!(
        "set -e; rm -rf {tmp}; \
         {ETCDUTL} snapshot restore {snap} --name {name} --initial-cluster {ic} \
         --initial-cluster-token {token} --initial-advertise-peer-urls {peer} \
         --data-dir {tmp} >/dev/null; \
         rm -rf {old}; if [ -e {DATA_DIR} ]; then mv {DATA_DIR} {old}; fi; mv {tmp} {DATA_DIR}; \
         if getent passwd etcd >/dev/null; then chown -R etcd:etcd {DATA_DIR}; fi; \
         chmod 0700 {DATA_DIR}; \
         if command -v restorecon >/dev/null 2>&1; then restorecon -R {DATA_DIR} || true; fi; \
         rm -f {snap}",
        snap = shell_quote(snapshot),
        name = shell_quote(name),
        ic = shell_quote(initial_cluster),
        token = shell_quote(token),
        peer = shell_quote(peer_url),
    )
}

pub struct RestoreEtcd {
    pub opened: Shared,
}

impl Phase for RestoreEtcd {
    fn title(&self) -> &str {
        "restore-etcd"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned()
            .filter(|n| n.host.has_role(HostRole::Etcd))
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let token = new_token(&run.s.inv.cluster_name)?;
            // Recorded before any member runs on it: the etcd unit (and any later init) take
            // the token from the state dir.
            if !run.s.opts.dry_run {
                run.s.state.save_etcd_token(&token)?;
            }
            let Run { runner, s } = run;
            let cluster = s
                .cluster
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("no cluster context: the host plan did not run"))?;
            cluster.etcd_token = token.clone();
            let st = &*s;
            let cluster = st
                .cluster
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no cluster context"))?;
            let etcdutl = st.artifacts.get("etcdutl", "restore").map_err(|e| {
                anyhow::anyhow!(
                    "{e}; restore needs etcdutl (etcdctl 3.6 cannot restore a snapshot): rebuild the mirror with scripts/build-mirror.sh, which adds it"
                )
            })?;
            let snapshot = opened(&self.opened)?
                .snapshot()
                .ok_or_else(|| anyhow::anyhow!("the backup has no etcd snapshot"))?
                .to_path_buf();
            let snapshot = &snapshot;
            let hosts = self.hosts(st);
            let names: Vec<String> = hosts.iter().map(|n| n.name().to_string()).collect();
            let token = &token;
            runner
                .phase(self.title(), hosts, |n| async move {
                    let member = cluster
                        .etcd
                        .iter()
                        .find(|m| m.name == n.name())
                        .ok_or_else(|| anyhow::anyhow!("not an etcd member of the plan"))?;
                    let peer = format!(
                        "https://{}:2380",
                        match member.address {
                            std::net::IpAddr::V6(a) => format!("[{a}]"),
                            a => a.to_string(),
                        }
                    );
                    let remote = format!("{REMOTE_DIR}/snapshot.db");
                    if n.dry_run {
                        return Ok(vec![
                            format!("would stage {ETCDUTL} and the snapshot"),
                            format!(
                                "would rebuild {DATA_DIR} from the snapshot (member {}, {peer}, new cluster token {token}); the old one kept as {DATA_DIR}.before-restore",
                                n.name()
                            ),
                        ]);
                    }
                    let mut changes = Vec::new();
                    st.artifacts.verify(etcdutl)?;
                    if n.session
                        .upload_file(&st.artifacts.path(etcdutl), ETCDUTL, 0o755)
                        .await?
                        == crate::ssh::UploadOutcome::Written
                    {
                        changes.push(format!("wrote {ETCDUTL} ({})", etcdutl.version));
                    }
                    n.sudo_ok(&format!("mkdir -p {REMOTE_DIR} && chmod 0700 {REMOTE_DIR}"))
                        .await?;
                    n.session.upload_file(snapshot, &remote, 0o600).await?;
                    let script = restore_script(
                        n.name(),
                        &cluster.etcd_initial_cluster,
                        token,
                        &peer,
                        &remote,
                    );
                    let out = n.session.sudo(&script).await?;
                    if !out.success() {
                        anyhow::bail!(
                            "etcdutl snapshot restore failed: {}",
                            last_lines(&format!("{}\n{}", out.stdout, out.stderr), 4)
                        );
                    }
                    changes.push(format!(
                        "rebuilt {DATA_DIR} from the snapshot (cluster token {token}; the old data dir is {DATA_DIR}.before-restore)"
                    ));
                    Ok(changes)
                })
                .await;
            let failed: Vec<&String> = names.iter().filter(|h| runner.failed(h)).collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "restore-etcd failed on {}; fix that and run restore again (it starts over from the backup)",
                    failed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        })
    }
}

/// Restart the units of the given component phases that are running (kubelet, kube-proxy):
/// after a restore nothing should work from a cache of the state before it.
pub struct RestartUnits {
    pub title: &'static str,
    pub components: &'static [&'static str],
}

impl Phase for RestartUnits {
    fn title(&self) -> &str {
        self.title
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned()
            .filter(|n| {
                self.components
                    .iter()
                    .any(|c| !units_in(s, n.name(), c).is_empty())
            })
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            runner
                .phase(self.title, self.hosts(st), |n| async move {
                    let units: Vec<String> = self
                        .components
                        .iter()
                        .flat_map(|c| units_in(st, n.name(), c))
                        .map(shell_quote)
                        .collect();
                    let list = units.join(" ");
                    if !n.dry_run {
                        n.sudo_ok(&format!("systemctl restart {list}")).await?;
                    }
                    Ok(vec![format!(
                        "{} {list}",
                        if n.dry_run {
                            "would restart"
                        } else {
                            "restarted"
                        }
                    )])
                })
                .await;
            Ok(())
        })
    }
}

/// Every node with a kubelet Ready, its lease renewed within the last 40 s (a Node restored
/// from the snapshot says Ready from before; only a fresh lease says its kubelet is back).
pub struct NodesReady {
    pub timeout: Duration,
}

const READY_QUERY: &str = "get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}'";
const LEASE_QUERY: &str = "-n kube-node-lease get leases -o jsonpath='{range .items[*]}{.metadata.name}={.spec.renewTime} {end}'";

/// Which of `want` are not Ready with a lease renewed within 40 s of `now`.
pub fn not_ready(want: &[String], ready: &str, leases: &str, now: i64) -> Vec<String> {
    let pairs = |t: &str| -> Vec<(String, String)> {
        t.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let ready = pairs(ready);
    let leases = pairs(leases);
    want.iter()
        .filter(|name| {
            let is_ready = ready.iter().any(|(n, s)| n == *name && s == "True");
            let fresh = leases.iter().any(|(n, t)| {
                n == *name
                    && chrono::DateTime::parse_from_rfc3339(t)
                        .is_ok_and(|t| now - t.timestamp() <= 40)
            });
            !(is_ready && fresh)
        })
        .cloned()
        .collect()
}

impl Phase for NodesReady {
    fn title(&self) -> &str {
        "nodes-ready"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.nodes
            .iter()
            .filter(|n| n.host.has_role(HostRole::ControlPlane))
            .collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            let want: Vec<String> = st
                .inv
                .hosts
                .iter()
                .filter(|h| h.has_role(HostRole::ControlPlane) || h.has_role(HostRole::Worker))
                .map(|h| h.name.clone())
                .collect();
            let Some(cp) = self
                .hosts(st)
                .into_iter()
                .find(|n| !runner.failed(n.name()))
            else {
                anyhow::bail!("nodes-ready: no control plane left to ask");
            };
            let want = &want;
            let limit = self.timeout;
            runner
                .phase(self.title(), vec![cp], |n| async move {
                    if n.dry_run {
                        return Ok(vec![format!(
                            "would wait for {} nodes to be Ready",
                            want.len()
                        )]);
                    }
                    let t0 = Instant::now();
                    let mut last;
                    loop {
                        let k = Kubectl::on(n);
                        let now = n
                            .sudo_ok("date -u +%s")
                            .await
                            .ok()
                            .and_then(|o| o.stdout.trim().parse::<i64>().ok());
                        let ready = k.run(READY_QUERY).await;
                        let leases = k.run(LEASE_QUERY).await;
                        match (now, ready, leases) {
                            (Some(now), Ok(r), Ok(l)) => {
                                let missing = not_ready(want, &r.stdout, &l.stdout, now);
                                if missing.is_empty() {
                                    return Ok(vec![format!(
                                        "{} nodes Ready after {:.0} s",
                                        want.len(),
                                        t0.elapsed().as_secs_f64()
                                    )]);
                                }
                                last = format!("not Ready yet: {}", missing.join(", "));
                            }
                            (_, Err(e), _) | (_, _, Err(e)) => last = e.to_string(),
                            (None, ..) => last = "cannot read the host's clock".into(),
                        }
                        if t0.elapsed() > limit {
                            anyhow::bail!("after {} s: {last}", limit.as_secs());
                        }
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                })
                .await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_a_fresh_lease() {
        let want = vec!["node1".to_string(), "node2".to_string()];
        let ready = "node1=True node2=True ";
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:00:30Z")
            .unwrap()
            .timestamp();
        let leases = "node1=2026-12-07T12:00:20.123456Z node2=2026-12-07T11:50:00.000000Z ";
        assert_eq!(not_ready(&want, ready, leases, now), ["node2"]);
        let leases = "node1=2026-12-07T12:00:20.123456Z node2=2026-12-07T12:00:29.5Z ";
        assert!(not_ready(&want, ready, leases, now).is_empty());
        assert_eq!(
            not_ready(&want, "node1=True node2=Unknown", leases, now),
            ["node2"]
        );
    }

    #[test]
    fn the_restore_script_rebuilds_the_data_dir_aside_then_swaps_it_in() {
        let s = restore_script(
            "node1",
            "node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380",
            "lab-etcd-0badcafe",
            "https://10.0.0.1:2380",
            "/var/lib/director-boot/restore/snapshot.db",
        );
        assert!(s.starts_with("set -e;"), "{s}");
        assert!(s.contains("/usr/local/bin/etcdutl snapshot restore '/var/lib/director-boot/restore/snapshot.db' --name 'node1' --initial-cluster 'node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380' --initial-cluster-token 'lab-etcd-0badcafe' --initial-advertise-peer-urls 'https://10.0.0.1:2380' --data-dir /var/lib/etcd.restoring"), "{s}");
        let restore = s.find("snapshot restore").unwrap();
        let swap = s
            .find("mv /var/lib/etcd /var/lib/etcd.before-restore")
            .unwrap();
        let chown = s.find("chown -R etcd:etcd /var/lib/etcd").unwrap();
        assert!(restore < swap && swap < chown, "{s}");
    }

    #[test]
    fn tokens_are_new_each_time() {
        let a = new_token("lab").unwrap();
        let b = new_token("lab").unwrap();
        assert!(a.starts_with("lab-etcd-") && a.len() == "lab-etcd-".len() + 8);
        assert_ne!(a, b);
    }
}
