//! One handler per subcommand; each returns the process exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::paths::Paths;

pub mod apps;
pub mod artifacts;
mod backup;
mod catalog;
mod certs;
pub mod connect;
mod deploy_app;
mod exec;
mod facts;
pub mod images;
pub mod init;
pub mod kubeconfig;
mod lab;
mod netcheck;
mod overlay;
mod probe;
mod remove_node;
mod reset;
mod secrets;
mod upgrade;
mod validate;

pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DIRECTOR_BOOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("director_boot={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_args(&cli.global);
    let json = cli.global.json;
    match cli.command {
        Command::Validate { inventory } => validate::run(&paths, &inventory, json),
        Command::Facts { inventory, ssh } => facts::run(&paths, &inventory, &ssh, json).await,
        Command::Exec {
            inventory,
            hosts,
            sudo,
            persist,
            ssh,
            command,
        } => {
            exec::run(
                &paths,
                &inventory,
                exec::ExecArgs {
                    hosts: hosts.as_deref(),
                    sudo,
                    persist,
                    ssh: &ssh,
                    command: &command,
                    json,
                },
            )
            .await
        }
        Command::MuxAgent {
            inventory,
            idle,
            socket,
            ssh,
        } => {
            let idle = std::time::Duration::from_secs(idle);
            crate::mux::serve(&paths, &inventory, &ssh, idle, &socket).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab { command } => lab::run(&paths, command, json).await,
        Command::Images { command } => images::run(&paths, command, json).await,
        Command::Artifacts { command } => artifacts::run(&paths, command, json).await,
        Command::Init {
            inventory,
            dry_run,
            artifacts,
            skip_preflight,
            merge_kubeconfig,
            limit,
            ssh,
        } => {
            init::run(
                &paths,
                init::InitArgs {
                    inventory: &inventory,
                    dry_run,
                    artifacts,
                    skip_preflight,
                    merge_kubeconfig,
                    ssh: &ssh,
                    json,
                    verbose: cli.global.verbose > 0,
                    only_phases: None,
                    only_hosts: (!limit.is_empty()).then_some(limit),
                    command: "init",
                    rotate_wireguard: None,
                },
            )
            .await
        }
        Command::Overlay { command } => {
            overlay::run(&paths, command, json, cli.global.verbose > 0).await
        }
        Command::Certs(args) => certs::run(&paths, args, json, cli.global.verbose > 0).await,
        Command::Backup {
            inventory,
            output,
            dry_run,
            ssh,
        } => {
            backup::backup(
                &paths,
                &inventory,
                output,
                dry_run,
                &ssh,
                json,
                cli.global.verbose > 0,
            )
            .await
        }
        Command::Restore {
            inventory,
            file,
            yes,
            dry_run,
            artifacts,
            ready_timeout,
            ssh,
        } => {
            backup::restore(
                &paths,
                backup::RestoreArgs {
                    inventory: &inventory,
                    file,
                    yes,
                    dry_run,
                    artifacts,
                    ready_timeout,
                    ssh: &ssh,
                    json,
                    verbose: cli.global.verbose > 0,
                },
            )
            .await
        }
        Command::Upgrade {
            inventory,
            to,
            batch,
            drain_timeout,
            dry_run,
            artifacts,
            ssh,
        } => {
            upgrade::run(
                &paths,
                upgrade::UpgradeArgs {
                    inventory: &inventory,
                    to,
                    batch,
                    drain_timeout,
                    dry_run,
                    artifacts,
                    ssh: &ssh,
                    json,
                    verbose: cli.global.verbose > 0,
                },
            )
            .await
        }
        Command::Secrets { command } => {
            secrets::run(&paths, command, json, cli.global.verbose > 0).await
        }
        Command::Netcheck {
            inventory,
            pairs,
            duration,
            streams,
            crr_duration,
            skip,
            udp_bitrate,
            min_efficiency,
            max_udp_loss,
            html,
            pair_timeout,
            probe_binary,
            mode,
            ssh,
        } => {
            netcheck::run(
                &paths,
                netcheck::NetcheckArgs {
                    inventory: &inventory,
                    pairs,
                    duration,
                    streams,
                    crr_duration,
                    skip,
                    udp_bitrate,
                    min_efficiency,
                    max_udp_loss,
                    html,
                    pair_timeout,
                    probe_binary,
                    mode,
                    ssh: &ssh,
                    json,
                    verbose: cli.global.verbose > 0,
                },
            )
            .await
        }
        Command::Probe { command } => probe::run(command, json).await,
        Command::DeployApp {
            app,
            render: true,
            spec,
            ..
        } => catalog::render(&app, &spec, json),
        Command::DeployApp {
            app,
            render: false,
            spec,
            kube,
        } => deploy_app::run(&paths, &app, &spec, &kube.kube_args(), json).await,
        Command::Catalog { command } => catalog::run(command, json),
        Command::Apps(args) => apps::run(&paths, args, json, &deploy_app::rerender).await,
        Command::RemoveNode {
            inventory,
            node,
            yes,
            drain_timeout,
            artifacts,
            ssh,
        } => {
            remove_node::run(
                &paths,
                remove_node::Args {
                    inventory: &inventory,
                    node,
                    yes,
                    drain_timeout,
                    artifacts,
                    ssh: &ssh,
                    json,
                    verbose: cli.global.verbose > 0,
                },
            )
            .await
        }
        Command::Reset {
            inventory,
            yes,
            forget,
            ssh,
        } => {
            reset::run(
                &paths,
                &inventory,
                yes,
                forget,
                &ssh,
                json,
                cli.global.verbose > 0,
            )
            .await
        }
    }
}

/// Closing summary on stderr: every failed host with its reason; exit 1 if any failed.
fn summarize<T>(results: &[crate::fanout::HostResult<T>], json: bool) -> ExitCode {
    let failed = crate::fanout::failures(results);
    if !json {
        let ok = results.len() - failed.len();
        eprintln!("{ok} ok, {} failed", failed.len());
        for (host, reason) in &failed {
            eprintln!("  {host}: {reason}");
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
