use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::fanout::{self, HostResult};
use crate::fleet::{connect, select_hosts, ssh_config};
use crate::mux::{self, Reply, Request};
use crate::paths::Paths;
use crate::ssh::{Output, Stream};

pub struct ExecArgs<'a> {
    pub hosts: Option<&'a str>,
    pub sudo: bool,
    pub persist: Option<u64>,
    pub ssh: &'a SshArgs,
    pub command: &'a [String],
    pub json: bool,
}

/// Print one output line, prefixed by its host (nothing in JSON mode).
fn print_line(json: bool, width: usize, host: &str, stderr: bool, line: &str) {
    if json {
        return;
    }
    if stderr {
        eprintln!("{host:<width$} ! {line}");
    } else {
        println!("{host:<width$} | {line}");
    }
}

fn finish(out: Output) -> anyhow::Result<Output> {
    if out.success() {
        Ok(out)
    } else {
        anyhow::bail!("exited {}", out.exit_code)
    }
}

pub async fn run(paths: &Paths, inventory: &Path, a: ExecArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    let cfg = ssh_config(paths, &inv, &a.ssh.fleet())?;
    let targets = select_hosts(&inv, a.hosts)?;
    let command = a.command.join(" ");
    let width = targets.iter().map(|h| h.name.len()).max().unwrap_or(0);
    let json = a.json;
    let limit = a.ssh.concurrency as usize;

    let mut results: Option<Vec<HostResult<Output>>> = None;
    if let Some(secs) = a.persist {
        let req = Request {
            hosts: targets.iter().map(|h| h.name.clone()).collect(),
            command: command.clone(),
            sudo: a.sudo,
            concurrency: limit,
        };
        let mut by_host: Vec<Option<HostResult<Output>>> = targets.iter().map(|_| None).collect();
        let index = |name: &str| targets.iter().position(|h| h.name == name);
        let reached = mux::run(paths, inventory, a.ssh, secs, &req, |reply| match reply {
            Reply::Line { host, stderr, line } => print_line(json, width, &host, stderr, &line),
            Reply::Done {
                host,
                output,
                seconds,
            } => {
                if let Some(i) = index(&host) {
                    let out = Output {
                        exit_code: output.exit_code,
                        stdout: output.stdout,
                        stderr: output.stderr,
                    };
                    by_host[i] = Some(HostResult {
                        host,
                        result: finish(out),
                        elapsed: Duration::from_secs_f64(seconds),
                    });
                }
            }
            Reply::Failed {
                host,
                error,
                seconds,
            } => {
                if let Some(i) = index(&host) {
                    by_host[i] = Some(HostResult {
                        host,
                        result: Err(anyhow::anyhow!(error)),
                        elapsed: Duration::from_secs_f64(seconds),
                    });
                }
            }
            Reply::End => {}
        })
        .await;
        match reached {
            Ok(Some(())) => {
                results = Some(
                    by_host
                        .into_iter()
                        .zip(&targets)
                        .map(|(r, h)| {
                            r.unwrap_or_else(|| HostResult {
                                host: h.name.clone(),
                                result: Err(anyhow::anyhow!("the exec agent gave no result")),
                                elapsed: Duration::ZERO,
                            })
                        })
                        .collect(),
                )
            }
            Ok(None) => tracing::warn!("no exec agent could be started; connecting directly"),
            Err(e) => tracing::warn!("exec agent: {e:#}; connecting directly"),
        }
    }

    let results = match results {
        Some(r) => r,
        None => {
            fanout::for_each(
                targets,
                limit,
                |h| h.name.clone(),
                |host| {
                    let cfg = cfg.clone();
                    let command = command.clone();
                    async move {
                        let session = connect(&host, &cfg).await?;
                        let name = host.name.clone();
                        // Lines stream as they arrive, prefixed by the host.
                        let out = session
                            .run_streamed(&command, a.sudo, |stream, line| {
                                print_line(json, width, &name, stream == Stream::Stderr, line)
                            })
                            .await?;
                        session.close().await;
                        finish(out)
                    }
                },
            )
            .await
        }
    };
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| match &r.result {
                Ok(o) => serde_json::json!({
                    "host": r.host, "ok": true, "exit_code": o.exit_code,
                    "stdout": o.stdout, "stderr": o.stderr,
                    "seconds": r.elapsed.as_secs_f64(),
                }),
                Err(e) => serde_json::json!({
                    "host": r.host, "ok": false, "error": format!("{e:#}"),
                    "seconds": r.elapsed.as_secs_f64(),
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(super::summarize(&results, json))
}
