//! `director-boot upgrade INVENTORY --to VERSION`: the arguments become an
//! `engine::action::upgrade` request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::engine::action::upgrade::{self, Request};
use crate::engine::upgrade::{Batch, Version};
use crate::paths::Paths;

pub struct UpgradeArgs<'a> {
    pub inventory: &'a Path,
    pub to: Version,
    pub batch: Batch,
    pub drain_timeout: u64,
    pub dry_run: bool,
    pub artifacts: Option<PathBuf>,
    pub ssh: &'a SshArgs,
    pub json: bool,
    pub verbose: bool,
}

pub async fn run(paths: &Paths, a: UpgradeArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    upgrade::run(
        paths,
        Request {
            inv,
            inventory_path: a.inventory.to_path_buf(),
            to: a.to,
            batch: a.batch,
            dry_run: a.dry_run,
            artifacts: a.artifacts,
            drain_timeout_secs: a.drain_timeout,
            fleet: a.ssh.fleet(),
            json: a.json,
            verbose: a.verbose,
        },
    )
    .await
}
