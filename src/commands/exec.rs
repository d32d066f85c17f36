use std::path::Path;
use std::process::ExitCode;

use super::connect::{connect, load_inventory, select_hosts, ssh_config};
use crate::cli::SshArgs;
use crate::fanout;
use crate::paths::Paths;
use crate::ssh::{Output, Stream};

pub async fn run(
    paths: &Paths,
    inventory: &Path,
    hosts: Option<&str>,
    sudo: bool,
    args: &SshArgs,
    command: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    let cfg = ssh_config(paths, &inv, args)?;
    let targets = select_hosts(&inv, hosts)?;
    let command = command.join(" ");
    let width = targets.iter().map(|h| h.name.len()).max().unwrap_or(0);
    let results = fanout::for_each(
        targets,
        args.concurrency as usize,
        |h| h.name.clone(),
        |host| {
            let cfg = cfg.clone();
            let command = command.clone();
            async move {
                let session = connect(&host, &cfg).await?;
                let name = host.name.clone();
                // Lines stream as they arrive, prefixed by the host, unless JSON is wanted.
                let out: Output = session
                    .run_streamed(&command, sudo, |stream, line| {
                        if !json {
                            match stream {
                                Stream::Stdout => println!("{name:<width$} | {line}"),
                                Stream::Stderr => eprintln!("{name:<width$} ! {line}"),
                            }
                        }
                    })
                    .await?;
                session.close().await;
                if !out.success() {
                    anyhow::bail!("exited {}", out.exit_code);
                }
                Ok(out)
            }
        },
    )
    .await;
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
