//! Wait for roles to become Ready, with a progress line per role (`worker 1/2 ready`), and
//! stop early when a member has a definitive problem (see [`Grace`]) instead of waiting for
//! the timeout.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, LogParams};
use serde::Serialize;

use super::diagnose::{Grace, MemberProblem, tail_lines};
use super::error::AppsError;
use super::observe::{RoleSnapshot, RoleTarget, snapshot};
use crate::progress::HostProgress;

/// Lines of the crashed container's previous log shown in a crash-loop diagnosis.
pub const CRASH_LOG_LINES: i64 = 20;

/// How long and how often to wait.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    /// Total time for the whole operation.
    pub timeout: Duration,
    pub poll: Duration,
    pub grace: Grace,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            timeout: Duration::from_secs(600),
            poll: Duration::from_secs(2),
            grace: Grace::default(),
        }
    }
}

/// Why a wait ended without every role Ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    Timeout { secs: u64 },
    Problems,
}

/// The roles that did not become Ready, and the state of every member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotReady {
    pub instance: String,
    pub waiting_for: Vec<String>,
    pub why: Why,
    pub elapsed_secs: u64,
    pub roles: Vec<RoleSnapshot>,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles = self.waiting_for.join(", ");
        match &self.why {
            Why::Timeout { secs } => write!(
                f,
                "{}: {roles} not Ready after {secs} s (--timeout)",
                self.instance
            )?,
            Why::Problems => write!(
                f,
                "{}: {roles} cannot become Ready (after {} s)",
                self.instance, self.elapsed_secs
            )?,
        }
        write!(f, "\n{}", member_lines(&self.roles))
    }
}

/// One line per member (`role pod phase node: problem`), for errors and status.
pub fn member_lines(roles: &[RoleSnapshot]) -> String {
    let mut out = String::new();
    for r in roles {
        let ready = r.members_now.iter().filter(|m| m.ready).count();
        out.push_str(&format!("  {} {}/{} ready\n", r.id, ready, r.members));
        if !r.exists {
            out.push_str(&format!("    StatefulSet {} not created\n", r.statefulset));
        }
        for m in &r.members_now {
            let state = if m.ready { "Ready" } else { m.phase.as_str() };
            let node = m.node.as_deref().unwrap_or("-");
            out.push_str(&format!("    {} {state} on {node}", m.pod));
            if m.restarts > 0 {
                out.push_str(&format!(", {} restarts", m.restarts));
            }
            if let Some(p) = &m.problem {
                out.push_str(&format!(": {p}"));
            }
            out.push('\n');
        }
        let seen = r.members_now.len() as u32;
        if r.exists && seen < r.members {
            out.push_str(&format!(
                "    {} member pod(s) not created yet\n",
                r.members - seen
            ));
        }
    }
    out
}

/// Watches the roles applied so far.
pub struct Watcher {
    client: Client,
    namespace: String,
    instance: String,
    policy: WaitPolicy,
    started: Instant,
    targets: Vec<RoleTarget>,
    progress: HostProgress,
    bars: HashMap<String, ProgressBar>,
    /// Plain lines instead of spinners (stderr not a terminal, and not --json).
    lines: bool,
    last_line: HashMap<String, String>,
    first_seen: HashMap<(String, &'static str), Instant>,
}

impl Watcher {
    pub fn new(
        client: Client,
        namespace: &str,
        instance: &str,
        policy: WaitPolicy,
        json: bool,
    ) -> Self {
        Watcher {
            client,
            namespace: namespace.to_string(),
            instance: instance.to_string(),
            policy,
            started: Instant::now(),
            targets: Vec::new(),
            progress: HostProgress::new(json),
            bars: HashMap::new(),
            lines: !json && !std::io::stderr().is_terminal(),
            last_line: HashMap::new(),
            first_seen: HashMap::new(),
        }
    }

    /// Time left of the total timeout.
    pub fn remaining(&self) -> Duration {
        self.policy.timeout.saturating_sub(self.started.elapsed())
    }

    /// Start showing and watching a role (after it was applied).
    pub fn watch(&mut self, target: RoleTarget) {
        let bar = self
            .progress
            .host(&target.id, &format!("0/{} ready", target.members));
        self.bars.insert(target.id.clone(), bar);
        self.targets.retain(|t| t.id != target.id);
        self.targets.push(target);
    }

    /// Print a line above the progress bars (plain stderr when they are hidden).
    pub fn say(&self, line: &str) {
        if self.lines || self.bars.is_empty() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }

    fn show(&mut self, snap: &RoleSnapshot) {
        let mut msg = format!("{}/{} ready", snap.ready_count(), snap.members);
        if let Some(m) = snap.members_now.iter().find(|m| m.problem.is_some()) {
            if let Some(p) = &m.problem {
                msg.push_str(&format!(" — {}: {}", m.pod, p.tag()));
            }
        } else if let Some(m) = snap.members_now.iter().find(|m| !m.ready) {
            msg.push_str(&format!(" — {}: {}", m.pod, m.phase));
        } else if snap
            .members_now
            .iter()
            .any(|m| m.ordinal.is_none_or(|o| o >= snap.members))
        {
            msg.push_str(" — removing members");
        }
        if let Some(bar) = self.bars.get(&snap.id) {
            if snap.is_ready() {
                bar.finish_with_message(msg.clone());
            } else {
                bar.set_message(msg.clone());
            }
        }
        if self.lines && self.last_line.get(&snap.id) != Some(&msg) {
            eprintln!("{} {msg}", snap.id);
            self.last_line.insert(snap.id.clone(), msg);
        }
    }

    /// The members whose problem is definitive now.
    fn definitive(&mut self, snaps: &[RoleSnapshot]) -> Vec<(String, MemberProblem)> {
        let now = Instant::now();
        let mut seen_now = Vec::new();
        let mut out = Vec::new();
        for s in snaps {
            for m in &s.members_now {
                let Some(p) = &m.problem else { continue };
                let key = (m.pod.clone(), p.tag());
                let since = *self.first_seen.entry(key.clone()).or_insert(now);
                seen_now.push(key);
                if p.is_definitive(now.duration_since(since), &self.policy.grace) {
                    out.push((m.pod.clone(), p.clone()));
                }
            }
        }
        // A problem that went away starts its grace again if it comes back.
        self.first_seen.retain(|k, _| seen_now.contains(k));
        out
    }

    /// Poll until every role in `roles` is Ready; Err(NotReady) on a definitive problem in
    /// any watched role or at the timeout. Returns the last snapshot of every watched role.
    pub async fn until_ready(&mut self, roles: &[String]) -> Result<Vec<RoleSnapshot>, AppsError> {
        loop {
            let mut snaps = snapshot(&self.client, &self.namespace, &self.targets).await?;
            for s in &snaps {
                self.show(s);
            }
            let done = roles
                .iter()
                .all(|r| snaps.iter().any(|s| &s.id == r && s.is_ready()));
            if done {
                return Ok(snaps);
            }
            let bad = self.definitive(&snaps);
            let timed_out = self.remaining().is_zero();
            if !bad.is_empty() || timed_out {
                attach_crash_logs(&self.client, &self.namespace, &mut snaps).await;
                for s in &snaps {
                    if let Some(bar) = self.bars.get(&s.id) {
                        bar.abandon();
                    }
                }
                let why = if bad.is_empty() {
                    Why::Timeout {
                        secs: self.policy.timeout.as_secs(),
                    }
                } else {
                    Why::Problems
                };
                let waiting_for = roles
                    .iter()
                    .filter(|r| !snaps.iter().any(|s| &s.id == *r && s.is_ready()))
                    .cloned()
                    .collect();
                return Err(AppsError::NotReady(Box::new(NotReady {
                    instance: self.instance.clone(),
                    waiting_for,
                    why,
                    elapsed_secs: self.started.elapsed().as_secs(),
                    roles: snaps,
                })));
            }
            tokio::time::sleep(self.policy.poll.min(self.remaining())).await;
        }
    }

    /// Poll until `gone` pods no longer exist (after lowering replicas).
    pub async fn until_gone(&mut self, gone: &[String]) -> Result<(), AppsError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        loop {
            let mut left = Vec::new();
            for p in gone {
                if api
                    .get_opt(p)
                    .await
                    .map_err(|e| AppsError::api("read", format!("Pod {}/{p}", self.namespace), &e))?
                    .is_some()
                {
                    left.push(p.clone());
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            let snaps = snapshot(&self.client, &self.namespace, &self.targets).await?;
            for s in &snaps {
                self.show(s);
            }
            if self.remaining().is_zero() {
                return Err(AppsError::Timeout {
                    secs: self.policy.timeout.as_secs(),
                    what: format!("{} to terminate", left.join(", ")),
                });
            }
            tokio::time::sleep(self.policy.poll.min(self.remaining())).await;
        }
    }
}

/// Fill in the last log lines of crash-looping members (best effort: a missing previous
/// container log leaves the diagnosis without lines).
pub async fn attach_crash_logs(client: &Client, namespace: &str, snaps: &mut [RoleSnapshot]) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for s in snaps.iter_mut() {
        for m in s.members_now.iter_mut() {
            let Some(MemberProblem::CrashLoop {
                container,
                last_logs,
                ..
            }) = m.problem.as_mut()
            else {
                continue;
            };
            let lp = LogParams {
                container: Some(container.clone()),
                previous: true,
                tail_lines: Some(CRASH_LOG_LINES),
                ..LogParams::default()
            };
            if let Ok(log) = api.logs(&m.pod, &lp).await {
                *last_logs = tail_lines(&log, CRASH_LOG_LINES as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::observe::MemberView;

    #[test]
    fn not_ready_names_members_and_states() {
        let nr = NotReady {
            instance: "cassandra".into(),
            waiting_for: vec!["seed".into()],
            why: Why::Problems,
            elapsed_secs: 21,
            roles: vec![RoleSnapshot {
                id: "seed".into(),
                statefulset: "cassandra-seed".into(),
                members: 2,
                exists: true,
                spec_replicas: Some(2),
                status_replicas: 1,
                ready_replicas: 0,
                observed: true,
                updating: false,
                headless_service: None,
                members_now: vec![MemberView {
                    pod: "cassandra-seed-0".into(),
                    ordinal: Some(0),
                    phase: "Pending".into(),
                    ready: false,
                    node: Some("node2".into()),
                    restarts: 0,
                    terminating: false,
                    configured: false,
                    problem: Some(MemberProblem::ImageMissing {
                        container: "app".into(),
                        image: "localhost/director-boot/cassandra:4.1".into(),
                        node: Some("node2".into()),
                        reason: "ErrImageNeverPull".into(),
                        message: String::new(),
                    }),
                }],
            }],
        };
        let text = nr.to_string();
        assert_eq!(
            text,
            "cassandra: seed cannot become Ready (after 21 s)\n  seed 0/2 ready\n    cassandra-seed-0 Pending on node2: image localhost/director-boot/cassandra:4.1 is not available on node node2 — build it and load it with `director-boot images load`\n    1 member pod(s) not created yet\n"
        );
    }
}
