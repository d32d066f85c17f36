use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::connect::{connect, load_inventory, ssh_config};
use crate::cli::SshArgs;
use crate::facts::{FACTS_SCRIPT, Facts, epoch_now};
use crate::fanout;
use crate::paths::Paths;
use crate::progress::HostProgress;

pub async fn run(
    paths: &Paths,
    inventory: &Path,
    args: &SshArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    let cfg = ssh_config(paths, &inv, args)?;
    let progress = HostProgress::new(json);
    // Each host reports the route to another host (the first one, or the second for itself).
    let peers: Vec<String> = inv
        .hosts
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let peer = if i == 0 {
                inv.hosts.get(1)
            } else {
                inv.hosts.first()
            };
            peer.map(|p| p.ssh.address.to_string())
                .unwrap_or_else(|| "1.1.1.1".to_string())
        })
        .collect();
    let items: Vec<_> = inv.hosts.iter().cloned().zip(peers).collect();
    let results = fanout::for_each(
        items,
        args.concurrency as usize,
        |(h, _)| h.name.clone(),
        |(host, peer)| {
            let cfg = cfg.clone();
            let bar = progress.host(&host.name, "connecting");
            async move {
                let session = connect(&host, &cfg).await;
                let session = match session {
                    Ok(s) => s,
                    Err(e) => {
                        bar.finish_with_message("failed");
                        return Err(e);
                    }
                };
                bar.set_message("gathering facts");
                let script = format!(
                    "sh -s -- {peer} <<'DIRECTOR_BOOT_EOF'\n{FACTS_SCRIPT}DIRECTOR_BOOT_EOF\n"
                );
                let sent = epoch_now();
                let out = session.run(&script).await?;
                let received = epoch_now();
                session.close().await;
                if !out.success() {
                    bar.finish_with_message("failed");
                    anyhow::bail!(
                        "facts probe exited {}: {}",
                        out.exit_code,
                        out.stderr.trim()
                    );
                }
                let facts = Facts::parse(&out.stdout, sent, received)
                    .with_context(|| format!("{}: unexpected facts output", host.name))?;
                bar.finish_with_message("done");
                Ok(facts)
            }
        },
    )
    .await;

    if json {
        let hosts: Vec<_> = results
            .iter()
            .map(|r| match &r.result {
                Ok(f) => serde_json::json!({ "host": r.host, "ok": true, "facts": f }),
                Err(e) => {
                    serde_json::json!({ "host": r.host, "ok": false, "error": format!("{e:#}") })
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&hosts)?);
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .filter_map(|r| r.result.as_ref().ok().map(|f| (r, f)))
            .map(|(r, f)| {
                vec![
                    r.host.clone(),
                    f.hostname.clone(),
                    f.family
                        .map(|x| x.as_str())
                        .unwrap_or("unsupported")
                        .to_string(),
                    if f.os.pretty_name.is_empty() {
                        f.os.id.clone()
                    } else {
                        f.os.pretty_name.clone()
                    },
                    f.kernel.clone(),
                    f.arch.clone(),
                    f.cpus.to_string(),
                    format!("{} MiB", f.memory_mib),
                    format!("{}/{}", f.address, f.interface),
                    f.mtu.map(|m| m.to_string()).unwrap_or_default(),
                    format!("{:+} ms", f.time_offset_ms),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::output::table(
                &[
                    "HOST",
                    "HOSTNAME",
                    "FAMILY",
                    "OS",
                    "KERNEL",
                    "ARCH",
                    "CPUS",
                    "MEMORY",
                    "ADDRESS/IFACE",
                    "MTU",
                    "CLOCK"
                ],
                &rows
            )
        );
    }
    Ok(super::summarize(&results, json))
}
