//! `director-boot init` (and `overlay up|expose`, which are init restricted): the arguments
//! become an `engine::action::init` request; the engine runs the phases.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::engine::action::init::{self, Request};
use crate::engine::phase::Options;
use crate::paths::Paths;

pub struct InitArgs<'a> {
    pub inventory: &'a Path,
    pub dry_run: bool,
    pub artifacts: Option<PathBuf>,
    pub skip_preflight: Vec<String>,
    pub merge_kubeconfig: bool,
    pub ssh: &'a SshArgs,
    pub json: bool,
    pub verbose: bool,
    /// Only these component phases (`overlay up`); `None` = the whole cluster with addons and
    /// the admin kubeconfig.
    pub only_phases: Option<&'static [&'static str]>,
    /// Only these hosts (the others are still connected: their facts feed the peers' routes).
    pub only_hosts: Option<Vec<String>>,
    /// The command name in the summary.
    pub command: &'static str,
    /// `overlay rotate-keys`: new WireGuard keys for these hosts (empty: all).
    pub rotate_wireguard: Option<Vec<String>>,
}

pub async fn run(paths: &Paths, a: InitArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    if let Some(only) = &a.only_hosts {
        let unknown: Vec<&str> = only
            .iter()
            .filter(|h| !inv.hosts.iter().any(|x| &x.name == *h))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "--limit: {} not in {}; hosts are {}",
                unknown.join(", "),
                a.inventory.display(),
                inv.hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    // A bundle file (`artifacts bundle`): unpacked and checked once into the cache, then used
    // as the mirror.
    let artifacts = match a.artifacts {
        Some(file) if file.is_file() => Some(
            crate::artifacts::bundle::mirror_from_bundle(&paths.cache, &file)
                .await
                .with_context(|| format!("--artifacts {}", file.display()))?,
        ),
        Some(dir) => Some(dir),
        // The inventory names where the artifacts come from: fetch what the mirror lacks.
        None => match &inv.artifacts {
            Some(src) => {
                let dir = paths.cache.join("mirror");
                super::artifacts::fetch_for_init(paths, &dir, src, a.json).await?;
                Some(dir)
            }
            None => None,
        },
    };
    init::run(
        paths,
        Request {
            inv,
            opts: Options {
                dry_run: a.dry_run,
                skip_preflight: a.skip_preflight,
                merge_kubeconfig: a.merge_kubeconfig,
                only_components: a.only_phases,
                only_hosts: a.only_hosts,
                // A full init's --limit: the other hosts learn the named ones.
                limit_peers: a.only_phases.is_none(),
                rotate_wireguard: a.rotate_wireguard,
            },
            artifacts,
            fleet: a.ssh.fleet(),
            json: a.json,
            verbose: a.verbose,
            command: a.command,
        },
    )
    .await
}
