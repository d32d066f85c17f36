use std::path::Path;
use std::process::ExitCode;

use crate::cluster_state::ClusterState;
use crate::inventory;
use crate::membership;
use crate::paths::Paths;

pub fn run(paths: &Paths, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match inventory::load(path) {
        Ok(inv) => {
            // Nodes `remove-node` took out must leave the inventory.
            let state = ClusterState::new(paths, &inv.cluster_name);
            if let Err(e) = membership::check_inventory(&state, &inv, &path.display().to_string()) {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "valid": false,
                            "problems": [{"field": "hosts", "message": format!("{e:#}")}],
                        })
                    );
                } else {
                    eprintln!("error: {e:#}");
                }
                return Ok(ExitCode::FAILURE);
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "valid": true,
                        "hosts": inv.hosts.len(),
                        "control_plane_endpoint": inv.control_plane_endpoint,
                        "warnings": inv.warnings,
                    })
                );
            } else {
                for w in &inv.warnings {
                    eprintln!("warning: {w}");
                }
                let endpoint = match &inv.control_plane_endpoint {
                    Some(ep) if ep.managed_vip => {
                        format!(", control-plane endpoint {} (virtual IP)", ep.url())
                    }
                    Some(ep) => format!(", control-plane endpoint {}", ep.url()),
                    None => String::new(),
                };
                println!(
                    "{}: valid ({} hosts, cluster {}{endpoint})",
                    path.display(),
                    inv.hosts.len(),
                    inv.cluster_name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                let problems: Vec<_> = e
                    .problems
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "file": p.file, "line": p.line, "column": p.column,
                            "field": p.field, "message": p.message,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "valid": false, "problems": problems })
                );
            } else {
                eprint!("error: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
