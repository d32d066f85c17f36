//! `director-boot backup INVENTORY [-o FILE]` and `director-boot restore INVENTORY FILE --yes`:
//! the arguments become `engine::action::backup` requests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::engine::action::backup::{self, BackupRequest, RestoreRequest};
use crate::paths::Paths;

pub async fn backup(
    paths: &Paths,
    inventory: &Path,
    output: Option<PathBuf>,
    dry_run: bool,
    ssh: &SshArgs,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    backup::run_backup(
        paths,
        BackupRequest {
            inv,
            output,
            dry_run,
            fleet: ssh.fleet(),
            json,
            verbose,
        },
    )
    .await
}

pub struct RestoreArgs<'a> {
    pub inventory: &'a Path,
    pub file: PathBuf,
    pub yes: bool,
    pub dry_run: bool,
    pub artifacts: Option<PathBuf>,
    pub ready_timeout: u64,
    pub ssh: &'a SshArgs,
    pub json: bool,
    pub verbose: bool,
}

/// Why a restore does not start without `--yes` (none in a dry run).
pub fn refusal(yes: bool, dry_run: bool, file: &Path) -> Option<String> {
    (!yes && !dry_run).then(|| {
        format!(
            "restore replaces the whole cluster state with {} (every etcd member's data, the \
             state dir's PKI and keys): everything written since that backup is lost. Run \
             again with --yes to do it, or with --dry-run to see what it would do",
            file.display()
        )
    })
}

pub async fn restore(paths: &Paths, a: RestoreArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    if !a.file.is_file() {
        anyhow::bail!("{}: no such backup file", a.file.display());
    }
    if let Some(why) = refusal(a.yes, a.dry_run, &a.file) {
        anyhow::bail!("{why}");
    }
    backup::run_restore(
        paths,
        RestoreRequest {
            inv,
            file: a.file,
            artifacts: a.artifacts.unwrap_or_else(|| paths.cache.join("mirror")),
            dry_run: a.dry_run,
            fleet: a.ssh.fleet(),
            json: a.json,
            verbose: a.verbose,
            ready_timeout: Duration::from_secs(a.ready_timeout),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_needs_yes_unless_it_is_a_dry_run() {
        let f = Path::new("lab.backup.tar.gz");
        let why = refusal(false, false, f).expect("refused");
        assert!(
            why.contains("--yes") && why.contains("lab.backup.tar.gz"),
            "{why}"
        );
        assert!(refusal(true, false, f).is_none());
        assert!(refusal(false, true, f).is_none());
    }
}
