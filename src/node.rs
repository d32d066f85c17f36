//! The host abstraction phases work with: one SSH session, the host's inventory entry, its
//! facts and OS-family traits, and idempotent primitives (files, directories, units) that can
//! report what they would change instead of changing it (dry-run).

use std::path::Path;

use crate::facts::Facts;
use crate::inventory::Host;
use crate::osfamily::FamilyTraits;
use crate::ssh::{Output, Session, SshError, UploadOutcome};

pub struct Node {
    pub host: Host,
    pub session: Session,
    pub facts: Facts,
    pub traits: Option<FamilyTraits>,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: `{command}` exited {code}: {stderr}")]
    Failed {
        host: String,
        command: String,
        code: u32,
        stderr: String,
    },
    #[error("{host}: cannot read {path}: {reason}")]
    Local {
        host: String,
        path: String,
        reason: String,
    },
}

/// Single-quote a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Node {
    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// Run as root; a non-zero exit is an error carrying stderr.
    pub async fn sudo_ok(&self, command: &str) -> Result<Output, NodeError> {
        let out = self.session.sudo(command).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(NodeError::Failed {
                host: self.host.name.clone(),
                command: command.to_string(),
                code: out.exit_code,
                stderr: last_lines(&out.stderr, 5),
            })
        }
    }

    /// Does `path` already have this sha256 and mode?
    async fn file_matches(&self, path: &str, sha256: &str, mode: u32) -> Result<bool, NodeError> {
        let q = shell_quote(path);
        let out = self
            .session
            .sudo(&format!(
                "[ -f {q} ] && sha256sum {q} | cut -d' ' -f1 && stat -c %a {q}"
            ))
            .await?;
        let mut lines = out.stdout.lines();
        let (Some(sum), Some(m)) = (lines.next(), lines.next()) else {
            return Ok(false);
        };
        Ok(sum.trim() == sha256 && u32::from_str_radix(m.trim(), 8).ok() == Some(mode))
    }

    /// Make `path` hold `data` with `mode`; true when it changed (or would, in dry-run).
    pub async fn ensure_file(&self, path: &str, data: &[u8], mode: u32) -> Result<bool, NodeError> {
        if self.dry_run {
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
            return Ok(!self.file_matches(path, &sha, mode).await?);
        }
        Ok(self.session.upload(data, path, mode).await? == UploadOutcome::Written)
    }

    /// Like `ensure_file` for a (large) local file, streamed.
    pub async fn ensure_local_file(
        &self,
        path: &str,
        local: &Path,
        sha256: &str,
        mode: u32,
    ) -> Result<bool, NodeError> {
        if self.file_matches(path, sha256, mode).await? {
            return Ok(false);
        }
        if self.dry_run {
            return Ok(true);
        }
        Ok(self.session.upload_file(local, path, mode).await? == UploadOutcome::Written)
    }

    /// Make a directory exist with `mode`; true when it changed.
    pub async fn ensure_dir(&self, path: &str, mode: u32) -> Result<bool, NodeError> {
        let q = shell_quote(path);
        let out = self.session.sudo(&format!("stat -c %a {q}")).await?;
        let current = u32::from_str_radix(out.stdout.trim(), 8).ok();
        if out.success() && current == Some(mode) {
            return Ok(false);
        }
        if !self.dry_run {
            self.sudo_ok(&format!("mkdir -p {q} && chmod {mode:o} {q}"))
                .await?;
        }
        Ok(true)
    }

    /// Whether a systemd unit is enabled and active.
    pub async fn unit_running(&self, unit: &str) -> Result<bool, NodeError> {
        let q = shell_quote(unit);
        let out = self
            .session
            .sudo(&format!(
                "systemctl is-enabled --quiet {q} && systemctl is-active --quiet {q}"
            ))
            .await?;
        Ok(out.success())
    }
}

/// The last `n` non-empty lines of a command's output, for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn keeps_last_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 3), "");
    }
}
