use std::process::ExitCode;

use crate::cli::LabCommand;
use crate::lab;
use crate::paths::Paths;

pub async fn run(paths: &Paths, command: LabCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Up { nodes } => {
            let inventory = lab::up(paths, nodes).await?;
            if json {
                println!("{}", serde_json::json!({ "inventory": inventory }));
            } else {
                println!("lab is up; inventory: {}", inventory.display());
            }
        }
        LabCommand::Status => {
            let nodes = lab::status(paths).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
            } else if nodes.is_empty() {
                println!("no lab on this machine (director-boot lab up --nodes N)");
            } else {
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.address.clone(),
                            n.state.clone(),
                            n.pid.map(|p| p.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::output::table(&["NODE", "ADDRESS", "STATE", "PID"], &rows)
                );
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
