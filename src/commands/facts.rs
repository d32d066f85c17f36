use std::path::Path;
use std::process::ExitCode;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::fanout;
use crate::fleet::{peer_of, ssh_config};
use crate::node::Node;
use crate::paths::Paths;
use crate::progress::HostProgress;

pub async fn run(
    paths: &Paths,
    inventory: &Path,
    args: &SshArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    let cfg = ssh_config(paths, &inv, &args.fleet())?;
    let progress = HostProgress::new(json);
    let items: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| (h.clone(), peer_of(&inv, h)))
        .collect();
    let results = fanout::for_each(
        items,
        args.concurrency as usize,
        |(h, _)| h.name.clone(),
        |(host, peer)| {
            let cfg = cfg.clone();
            let bar = progress.host(&host.name, "connecting");
            async move {
                let node = Node::open(&host, &peer, &cfg, false).await;
                bar.finish_with_message(if node.is_ok() { "done" } else { "failed" });
                let node = node?;
                let facts = node.facts.clone();
                node.session.close().await;
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
