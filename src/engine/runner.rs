//! Runs phases: a header per phase, a spinner and then a result line per host with timings,
//! everything also written to a log file. A host that fails a phase is left out of the later
//! ones (its work so far stays), and the closing summary says which host reached which phase.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use crate::fanout;
use crate::node::Node;
use crate::progress::HostProgress;

/// Where one host stands at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum HostState {
    /// Every phase that concerned it succeeded.
    Done {
        last_phase: String,
    },
    Failed {
        phase: String,
        error: String,
    },
}

pub struct Runner {
    pub dry_run: bool,
    pub limit: usize,
    pub verbose: bool,
    json: bool,
    progress: HostProgress,
    log: Mutex<Option<File>>,
    pub log_path: Option<PathBuf>,
    states: BTreeMap<String, HostState>,
    /// Changes per phase, for the summary and --json.
    pub changes: Vec<(String, String, String)>,
    started: Instant,
}

impl Runner {
    pub fn new(
        dry_run: bool,
        limit: usize,
        verbose: bool,
        json: bool,
        log_dir: Option<&Path>,
    ) -> Self {
        let (log, log_path) = match log_dir.and_then(|d| open_log(d).ok()) {
            Some((f, p)) => (Some(f), Some(p)),
            None => (None, None),
        };
        Runner {
            dry_run,
            limit: limit.max(1),
            verbose,
            json,
            progress: HostProgress::new(json),
            log: Mutex::new(log),
            log_path,
            states: BTreeMap::new(),
            changes: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A line for the terminal (unless --json) and the log.
    pub fn say(&self, line: &str) {
        if !self.json {
            self.progress.println(line);
        }
        self.log(line);
    }

    pub fn log(&self, line: &str) {
        if let Ok(mut guard) = self.log.lock()
            && let Some(f) = guard.as_mut()
        {
            let _ = writeln!(
                f,
                "{} {line}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
            );
        }
    }

    pub fn failed(&self, host: &str) -> bool {
        matches!(self.states.get(host), Some(HostState::Failed { .. }))
    }

    pub fn failed_any(&self, hosts: &[String]) -> bool {
        hosts.iter().any(|h| self.failed(h))
    }

    pub fn fail(&mut self, host: &str, phase: &str, error: String) {
        self.states.insert(
            host.to_string(),
            HostState::Failed {
                phase: phase.to_string(),
                error,
            },
        );
    }

    /// Run `job` on every node not failed so far; it returns the change lines for that host.
    pub async fn phase<'n, F, Fut>(&mut self, phase: &str, nodes: Vec<&'n Node>, job: F)
    where
        F: Fn(&'n Node) -> Fut,
        Fut: Future<Output = anyhow::Result<Vec<String>>>,
    {
        let active: Vec<&Node> = nodes
            .into_iter()
            .filter(|n| !self.failed(n.name()))
            .collect();
        if active.is_empty() {
            return;
        }
        let plural = if active.len() == 1 { "" } else { "s" };
        self.say(&format!("[{phase}] {} host{plural}", active.len()));
        let progress = &self.progress;
        let results = fanout::for_each(
            active,
            self.limit,
            |n| n.name().to_string(),
            |n| {
                let bar = progress.host(n.name(), phase);
                let fut = job(n);
                async move {
                    let r = fut.await;
                    bar.finish_and_clear();
                    r
                }
            },
        )
        .await;
        for r in results {
            let secs = r.elapsed.as_secs_f64();
            match r.result {
                Ok(changes) => {
                    let summary = if changes.is_empty() {
                        "ok".to_string()
                    } else if self.dry_run {
                        format!("{} to change", changes.len())
                    } else {
                        format!("{} changed", changes.len())
                    };
                    self.say(&format!("  {:<14} {summary} ({secs:.1} s)", r.host));
                    for c in &changes {
                        if self.verbose || self.dry_run {
                            self.say(&format!("  {:<14}   {c}", ""));
                        } else {
                            self.log(&format!("  {} {c}", r.host));
                        }
                        self.changes
                            .push((phase.to_string(), r.host.clone(), c.clone()));
                    }
                    self.states.insert(
                        r.host,
                        HostState::Done {
                            last_phase: phase.to_string(),
                        },
                    );
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    self.say(&format!(
                        "  {:<14} FAILED in {phase}: {msg} ({secs:.1} s)",
                        r.host
                    ));
                    self.fail(&r.host, phase, msg);
                }
            }
        }
    }

    /// Closing summary: changes, time, and every host's state; exit 1 when any host failed.
    pub fn finish(&self, command: &str, hosts: &[String]) -> ExitCode {
        let failed: Vec<_> = hosts.iter().filter(|h| self.failed(h)).collect();
        let secs = self.started.elapsed().as_secs_f64();
        let n = self.changes.len();
        let what = if self.dry_run { "to change" } else { "changed" };
        if self.json {
            let states: BTreeMap<&String, Option<&HostState>> =
                hosts.iter().map(|h| (h, self.states.get(h))).collect();
            let changes: Vec<_> = self
                .changes
                .iter()
                .map(|(p, h, c)| serde_json::json!({"phase": p, "host": h, "change": c}))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "command": command, "ok": failed.is_empty(), "dry_run": self.dry_run,
                    "changed": n, "seconds": secs, "hosts": states, "changes": changes,
                    "bytes_sent": crate::ssh::bytes_sent(),
                    "log": self.log_path,
                })
            );
        } else {
            self.say(&format!(
                "{command}: {n} {what} in {secs:.1} s, {:.1} MB sent over SSH",
                crate::ssh::bytes_sent() as f64 / 1e6
            ));
            if !failed.is_empty() {
                self.say("host states:");
                for h in hosts {
                    let line = match self.states.get(h) {
                        Some(HostState::Done { last_phase }) => {
                            format!("done through {last_phase}")
                        }
                        Some(HostState::Failed { phase, error }) => {
                            format!("FAILED in {phase}: {error}")
                        }
                        None => "not reached".to_string(),
                    };
                    self.say(&format!("  {h:<14} {line}"));
                }
                self.say("fix the failures above and re-run: finished work is kept and skipped.");
            }
            if let Some(p) = &self.log_path {
                self.say(&format!("log: {}", p.display()));
            }
        }
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

fn open_log(dir: &Path) -> std::io::Result<(File, PathBuf)> {
    crate::paths::ensure_private_dir(dir)?;
    let path = dir.join(format!(
        "{}.log",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    Ok((f, path))
}
