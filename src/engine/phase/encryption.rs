//! Secrets encryption at rest, the steps around the key ring (`pki::encryption`):
//! - `BeginRotation` (local): start a key rotation unless one is pending;
//! - `StageKeys`: the ring's configuration on every control plane, one at a time, each API
//!   server restarted and ready again before the next (so the API never goes away as a whole
//!   and no server is ever asked to read a key it does not hold);
//! - `RewriteSecrets`: every Secret read and written back (upstream's `kubectl get secrets -A
//!   -o json | kubectl replace -f -`), so each is stored under the writer key.
//!
//! Each step records its completion in the ring (state dir) only when every control plane
//! succeeded, so a re-run resumes at the first step not done.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::kubectl::Kubectl;
use crate::inventory::HostRole;
use crate::node::Node;
use crate::pki::encryption::{self, KeyRing, Step};

fn control_planes(s: &RunState) -> Vec<&Node> {
    s.nodes
        .iter()
        .filter(|n| n.host.has_role(HostRole::ControlPlane))
        .collect()
}

fn ring(s: &RunState) -> anyhow::Result<&KeyRing> {
    s.encryption
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no encryption key ring: the pki phase did not run"))
}

/// Record the ring in the PKI dir this run works on (a copy in a dry run).
fn save(s: &RunState) -> anyhow::Result<()> {
    let pki = s
        .pki
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no PKI: the pki phase did not run"))?;
    ring(s)?.save(&pki.path)?;
    Ok(())
}

/// Every control plane must have done the step, or the ring would move on without one.
fn all_done(run: &Run, title: &str) -> anyhow::Result<()> {
    let failed: Vec<&str> = control_planes(&run.s)
        .into_iter()
        .map(|n| n.name())
        .filter(|n| run.runner.failed(n))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{title}: not done on {} (no control plane may be left behind); fix it and run again: the run resumes here",
            failed.join(", ")
        )
    }
}

/// `rotate-key`'s first step (local): load the ring and start a rotation unless one is pending.
pub struct BeginRotation;

impl Phase for BeginRotation {
    fn title(&self) -> &str {
        "encryption-key"
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let work = s.state.pki_work_dir(s.opts.dry_run)?;
            let mut ring = KeyRing::load(&work.path)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no encryption key recorded; run `director-boot init` first",
                    work.path.display()
                )
            })?;
            let started = ring.begin_rotation()?;
            ring.save(&work.path)?;
            let rot = ring
                .rotation
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no rotation pending"))?;
            runner.say("[encryption-key] local");
            runner.say(&format!(
                "  {:<14} {} {} (next: {:?})",
                "control",
                if started {
                    "new key"
                } else {
                    "resuming the rotation to"
                },
                rot.key,
                rot.step
            ));
            if started {
                runner.changes.push((
                    "encryption-key".into(),
                    "local".into(),
                    format!("generated {}", rot.key),
                ));
            }
            s.encryption = Some(ring);
            s.pki = Some(work);
            Ok(())
        })
    }
}

/// Stage the ring's configuration on every control plane, one at a time; with `step`, only
/// when the pending rotation is at that step, and the step is then recorded as done.
pub struct StageKeys {
    pub title: &'static str,
    pub step: Step,
}

impl Phase for StageKeys {
    fn title(&self) -> &str {
        self.title
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.encryption
            .as_ref()
            .is_some_and(|r| r.step() == Some(self.step))
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        control_planes(s)
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let config = ring(&run.s)?.config_yaml();
            let hosts: Vec<String> = self
                .hosts(&run.s)
                .into_iter()
                .map(|n| n.name().to_string())
                .collect();
            // One host per runner phase: the next API server restarts only once this one is
            // ready again.
            for host in &hosts {
                let Run { runner, s } = &mut *run;
                let st = &*s;
                let nodes: Vec<&Node> = st.nodes.iter().filter(|n| n.name() == host).collect();
                let config = &config;
                runner
                    .phase(
                        self.title,
                        nodes,
                        |n| async move { stage_on(n, config).await },
                    )
                    .await;
            }
            all_done(run, self.title)?;
            if let Some(r) = run.s.encryption.as_mut() {
                r.finish_step(self.step);
            }
            save(&run.s)
        })
    }
}

/// Write the configuration (0600, control planes only); when it changed, restart the API
/// server and wait until it is ready.
async fn stage_on(n: &Node, config: &str) -> anyhow::Result<Vec<String>> {
    let changed = n
        .ensure_file(encryption::NODE_PATH, config.as_bytes(), 0o600)
        .await?;
    if !changed {
        return Ok(Vec::new());
    }
    let mut changes = vec![format!(
        "{} {}",
        if n.dry_run { "would write" } else { "wrote" },
        encryption::NODE_PATH
    )];
    if n.dry_run {
        changes.push("would restart kube-apiserver".into());
        return Ok(changes);
    }
    n.sudo_ok("systemctl restart kube-apiserver").await?;
    wait_ready(n, Duration::from_secs(180)).await?;
    changes.push("restarted kube-apiserver (ready)".into());
    Ok(changes)
}

/// This host's API server answers /readyz.
pub async fn wait_ready(n: &Node, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match Kubectl::on(n)
            .run("--request-timeout=5s get --raw /readyz")
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    anyhow::bail!(
        "kube-apiserver not ready after {} s: {last}",
        limit.as_secs()
    )
}

/// Rewrite every Secret under the writer key, from the first healthy control plane. In
/// `init`, once (a cluster built before encryption at rest has Secrets in clear); in a
/// rotation, at its `Rewrite` step.
pub struct RewriteSecrets {
    pub title: &'static str,
    /// The rotation step this is; `None` in init (then only while not yet rewritten and no
    /// rotation is pending: that one rewrites itself).
    pub step: Option<Step>,
}

impl Phase for RewriteSecrets {
    fn title(&self) -> &str {
        self.title
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.encryption.as_ref().is_some_and(|r| match self.step {
            Some(step) => r.step() == Some(step),
            None => !r.rewritten && r.rotation.is_none(),
        })
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        control_planes(s)
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            // Every control plane must hold the writer key first (init: the control-plane
            // phase staged it), or a Secret written here could not be read there.
            if self.step.is_none() && run.runner.failed_any(&names(&run.s)) {
                run.runner
                    .say(&format!("[{}] skipped: a control plane failed", self.title));
                return Ok(());
            }
            let Run { runner, s } = &mut *run;
            let st = &*s;
            let Some(cp) = self
                .hosts(st)
                .into_iter()
                .find(|n| !runner.failed(n.name()))
            else {
                anyhow::bail!("{}: no control plane left to run it", self.title);
            };
            let name = cp.name().to_string();
            runner
                .phase(self.title, vec![cp], |n| async move {
                    if n.dry_run {
                        return Ok(vec![
                            "would rewrite every Secret under the writer key".into(),
                        ]);
                    }
                    let n_secrets = rewrite_secrets(n).await?;
                    Ok(vec![format!("rewrote {n_secrets} Secrets")])
                })
                .await;
            if run.runner.failed(&name) {
                anyhow::bail!("{}: failed on {name}; run again to retry", self.title);
            }
            if let Some(r) = run.s.encryption.as_mut() {
                match self.step {
                    Some(step) => r.finish_step(step),
                    None => r.rewritten = true,
                }
            }
            save(&run.s)
        })
    }
}

fn names(s: &RunState) -> Vec<String> {
    control_planes(s)
        .into_iter()
        .map(|n| n.name().to_string())
        .collect()
}

/// Upstream's procedure: read every Secret and replace it unchanged, which stores it again
/// through the writer. A Secret changed in between fails with a conflict: retried (it was then
/// written under the writer key anyway, but the whole list is cheap to redo). The Secrets'
/// bodies only pass through the pipe on the host; only the count comes back.
async fn rewrite_secrets(n: &Node) -> anyhow::Result<usize> {
    let mut last = None;
    for _ in 0..5 {
        match Kubectl::on(n).rewrite_secrets().await {
            Ok(count) => return Ok(count),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("no attempt")))
    .context("rewriting every Secret")
}
