//! One handler per subcommand; each returns the process exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::paths::Paths;

mod certs;
pub mod connect;
mod exec;
mod facts;
pub mod images;
pub mod init;
mod kubeconfig;
mod lab;
mod reset;
mod validate;

/// Exit code of a command that exists in the CLI but is not built yet.
pub const EXIT_NOT_BUILT: u8 = 3;

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
        Command::Validate { inventory } => validate::run(&inventory, json),
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
        Command::Init {
            inventory,
            dry_run,
            artifacts,
            skip_preflight,
            merge_kubeconfig,
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
                },
            )
            .await
        }
        Command::Certs { inventory } => certs::run(&paths, &inventory, json),
        Command::Netcheck { .. } => not_built("netcheck", "issue 4"),
        Command::DeployApp { .. } => not_built("deploy-app", "issue 5"),
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

/// Say plainly that a command does not exist yet, and fail.
fn not_built(name: &str, issue: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "director-boot {name} is not available yet in this build (planned in {issue}); nothing was done."
    );
    Ok(ExitCode::from(EXIT_NOT_BUILT))
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
