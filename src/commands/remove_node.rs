//! `director-boot remove-node INVENTORY NODE [--yes]`: the arguments become an
//! `engine::action::remove_node` request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::engine::action::remove_node::{self, Request};
use crate::paths::Paths;

pub struct Args<'a> {
    pub inventory: &'a Path,
    pub node: String,
    pub yes: bool,
    pub drain_timeout: u64,
    pub artifacts: Option<PathBuf>,
    pub ssh: &'a SshArgs,
    pub json: bool,
    pub verbose: bool,
}

pub async fn run(paths: &Paths, a: Args<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    remove_node::run(
        paths,
        Request {
            inv,
            node: a.node,
            yes: a.yes,
            drain_timeout_secs: a.drain_timeout,
            artifacts: a.artifacts,
            fleet: a.ssh.fleet(),
            json: a.json,
            verbose: a.verbose,
        },
    )
    .await
}
