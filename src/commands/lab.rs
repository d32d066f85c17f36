use std::process::ExitCode;

use crate::cli::LabCommand;
use crate::lab;
use crate::paths::Paths;

pub async fn run(paths: &Paths, command: LabCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Up {
            nodes,
            control_planes,
            firewalld,
            user,
        } => {
            let opts = lab::UpOptions { firewalld, user };
            let inventory = lab::up(paths, nodes, control_planes, opts).await?;
            if json {
                println!("{}", serde_json::json!({ "inventory": inventory }));
            } else {
                println!("lab is up; inventory: {}", inventory.display());
            }
        }
        LabCommand::Status => {
            let status = lab::status(paths).await?;
            let nodes = &status.nodes;
            if json {
                // A list of nodes (as before the endpoint existed); the endpoint is in the
                // inventory and in the text form.
                println!("{}", serde_json::to_string_pretty(nodes)?);
            } else if nodes.is_empty() {
                println!("no lab on this machine (director-boot lab up --nodes N)");
            } else {
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.address.clone(),
                            n.roles.join(","),
                            n.state.clone(),
                            n.pid.map(|p| p.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::output::table(&["NODE", "ADDRESS", "ROLES", "STATE", "PID"], &rows)
                );
                if let Some(ep) = &status.control_plane_endpoint {
                    println!("control-plane endpoint: {ep} (a virtual IP on the control planes)");
                }
            }
        }
        LabCommand::Down => {
            let removed = lab::teardown(paths).await?;
            if json {
                println!("{}", serde_json::json!({ "removed": removed }));
            } else if removed {
                println!("lab removed");
            } else {
                println!("no lab in {}; nothing to do", paths.lab_dir().display());
            }
        }
        LabCommand::Stop { node } => {
            lab::stop_node(paths, &node).await?;
            if json {
                println!("{}", serde_json::json!({ "stopped": node }));
            } else {
                println!("{node} stopped");
            }
        }
        LabCommand::Start { node } => {
            lab::start_node(paths, &node).await?;
            if json {
                println!("{}", serde_json::json!({ "started": node }));
            } else {
                println!("{node} running");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
