//! `backup`'s phases: `snapshot` (an etcd snapshot through the first healthy member, saved on
//! that host with etcdctl, downloaded, checked and removed there) and `archive` (local: the
//! snapshot and the cluster state dir in one verified file, `backup_archive`).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::backup_archive::{self, Input};
use crate::inventory::HostRole;
use crate::node::{Node, last_lines, shell_quote};

/// etcdctl on an etcd member, as root, with the health-check client certificate the etcd role
/// puts on every member (etcd authorizes any client its CA signed).
pub const ETCDCTL: &str = "ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints=https://127.0.0.1:2379 \
     --cacert=/etc/kubernetes/pki/etcd/ca.crt \
     --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
     --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

/// Where the snapshot is saved on the member before it is downloaded (root only).
const REMOTE_DIR: &str = "/var/lib/director-boot/backup";

/// What `snapshot` hands to `archive`.
#[derive(Default)]
pub struct Taken {
    pub member: String,
    pub data: Vec<u8>,
}

pub type Shared = Rc<RefCell<Option<Taken>>>;

pub fn etcd_members(s: &RunState) -> Vec<&Node> {
    s.nodes
        .iter()
        .filter(|n| n.host.has_role(HostRole::Etcd))
        .collect()
}

/// Is this member's etcd healthy? `Err` says why not.
pub async fn member_health(n: &Node) -> anyhow::Result<()> {
    let out = n
        .session
        .sudo(&format!("{ETCDCTL} --command-timeout=5s endpoint health"))
        .await?;
    if out.success() {
        Ok(())
    } else {
        anyhow::bail!(
            "{}",
            last_lines(&format!("{}\n{}", out.stdout, out.stderr), 2)
        )
    }
}

pub struct Snapshot {
    pub taken: Shared,
}

impl Phase for Snapshot {
    fn title(&self) -> &str {
        "snapshot"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        etcd_members(s)
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let st = &*s;
            // The first healthy member; the others are only reported.
            let mut chosen = None;
            let mut tried = Vec::new();
            for n in self.hosts(st) {
                if runner.failed(n.name()) {
                    continue;
                }
                match member_health(n).await {
                    Ok(()) => {
                        chosen = Some(n);
                        break;
                    }
                    Err(e) => {
                        runner.say(&format!(
                            "  {:<14} etcd not healthy, trying the next member: {e:#}",
                            n.name()
                        ));
                        tried.push(n.name().to_string());
                    }
                }
            }
            let Some(member) = chosen else {
                anyhow::bail!(
                    "snapshot: no healthy etcd member to take it through (tried {}); a backup needs one member that answers `etcdctl endpoint health`",
                    if tried.is_empty() {
                        "none reachable".to_string()
                    } else {
                        tried.join(", ")
                    }
                );
            };
            let name = member.name().to_string();
            let taken = &self.taken;
            runner
                .phase("snapshot", vec![member], |n| async move {
                    if n.dry_run {
                        return Ok(vec![format!(
                            "would save an etcd snapshot through {} (healthy) and download it",
                            n.name()
                        )]);
                    }
                    let data = save_and_fetch(n).await?;
                    let line = format!(
                        "saved an etcd snapshot through {} ({} bytes)",
                        n.name(),
                        data.len()
                    );
                    *taken.borrow_mut() = Some(Taken {
                        member: n.name().to_string(),
                        data,
                    });
                    Ok(vec![line])
                })
                .await;
            if runner.failed(&name) {
                anyhow::bail!("snapshot through {name} failed; nothing was written");
            }
            Ok(())
        })
    }
}

/// `etcdctl snapshot save` into a root-only file, its sha256 there, download, compare, remove.
async fn save_and_fetch(n: &Node) -> anyhow::Result<Vec<u8>> {
    let file = format!("{REMOTE_DIR}/snapshot-{}.db", std::process::id());
    let q = shell_quote(&file);
    let out = n
        .sudo_ok(&format!(
            "umask 077 && mkdir -p {REMOTE_DIR} && rm -f {q} && {ETCDCTL} --command-timeout=300s snapshot save {q} >/dev/null && sha256sum {q}"
        ))
        .await?;
    let remote_sum = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let data = n.session.read_file(&file).await;
    let _ = n.sudo_ok(&format!("rm -f {q}")).await;
    let data = data?.ok_or_else(|| anyhow::anyhow!("{file} vanished before it was read"))?;
    let local_sum = backup_archive::sha256_hex(&data);
    if local_sum != remote_sum {
        anyhow::bail!(
            "the snapshot changed in transit: sha256 {local_sum} here, {remote_sum} on {}",
            n.name()
        );
    }
    Ok(data)
}

/// `archive` (local): the snapshot and the cluster state dir into one file.
pub struct Archive {
    pub taken: Shared,
    pub output: PathBuf,
    /// Filled with what was written, for the command's report.
    pub written: Rc<RefCell<Option<backup_archive::Written>>>,
}

impl Phase for Archive {
    fn title(&self) -> &str {
        "archive"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let state = backup_archive::state_files(s.state.dir())?;
            runner.say("[archive] local");
            if s.opts.dry_run {
                runner.say(&format!(
                    "  {:<14} would write {} (0600): the etcd snapshot and {} files of {} (PKI, Secrets encryption keys, subnets, admin kubeconfig)",
                    "control",
                    self.output.display(),
                    state.len(),
                    s.state.dir().display()
                ));
                runner.changes.push((
                    "archive".into(),
                    "local".into(),
                    format!("would write {}", self.output.display()),
                ));
                return Ok(());
            }
            let taken = self.taken.borrow();
            let Some(taken) = taken.as_ref() else {
                anyhow::bail!("archive: no snapshot was taken");
            };
            let w = backup_archive::write(
                &self.output,
                &Input {
                    cluster: &s.inv.cluster_name,
                    etcd_member: &taken.member,
                    snapshot: &taken.data,
                    state,
                },
            )?;
            runner.say(&format!(
                "  {:<14} wrote {} ({} bytes, {} files, sha256 {})",
                "control",
                w.path.display(),
                w.size,
                w.files,
                w.sha256
            ));
            runner.changes.push((
                "archive".into(),
                "local".into(),
                format!("wrote {}", w.path.display()),
            ));
            *self.written.borrow_mut() = Some(w);
            Ok(())
        })
    }
}
