//! `director-boot secrets rotate-key INVENTORY`: the arguments become an
//! `engine::action::secrets_rotate` request.

use std::process::ExitCode;

use super::connect::load_inventory;
use crate::cli::SecretsCommand;
use crate::engine::action::secrets_rotate::{self, Request};
use crate::paths::Paths;

pub async fn run(
    paths: &Paths,
    command: SecretsCommand,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::RotateKey {
            inventory,
            dry_run,
            ssh,
        } => {
            let inv = load_inventory(&inventory)?;
            secrets_rotate::run(
                paths,
                Request {
                    inv,
                    dry_run,
                    fleet: ssh.fleet(),
                    json,
                    verbose,
                },
            )
            .await
        }
    }
}
