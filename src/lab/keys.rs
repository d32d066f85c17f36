//! SSH keys of the lab: one client key for the control machine, one host key per node, and
//! the known_hosts file that pins the host keys.

use std::path::{Path, PathBuf};

use super::error::LabError;
use super::sys::run;

pub fn client_key_path(lab_dir: &Path) -> PathBuf {
    lab_dir.join("id_ed25519")
}

pub fn known_hosts_path(lab_dir: &Path) -> PathBuf {
    lab_dir.join("known_hosts")
}

/// Generate an ed25519 key pair without passphrase at `path` (and `path.pub`).
pub async fn generate(path: &Path, comment: &str) -> Result<(), LabError> {
    let path_s = path.display().to_string();
    run(
        "ssh-keygen",
        &[
            "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &path_s,
        ],
    )
    .await
    .map(|_| ())
}

/// `ssh-ed25519 AAAA...` of a public key file, without its comment.
pub fn public_key(pub_path: &Path) -> Result<String, LabError> {
    let text = std::fs::read_to_string(pub_path).map_err(LabError::io(pub_path))?;
    key_without_comment(&text).ok_or_else(|| {
        LabError::Invalid(format!("{} is not an SSH public key", pub_path.display()))
    })
}

fn key_without_comment(text: &str) -> Option<String> {
    let mut parts = text.split_whitespace();
    let kind = parts.next()?;
    let blob = parts.next()?;
    kind.starts_with("ssh-").then(|| format!("{kind} {blob}"))
}

/// The lab's client key (created 0600 by ssh-keygen when missing); returns its public key.
pub async fn ensure_client_key(lab_dir: &Path) -> Result<String, LabError> {
    let key = client_key_path(lab_dir);
    let pub_path = key.with_extension("pub");
    if !key.exists() || !pub_path.exists() {
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&pub_path);
        generate(&key, "director-boot-lab").await?;
    }
    public_key(&pub_path)
}

/// known_hosts lines: `ADDRESS KEYTYPE BLOB`, one per node.
pub fn render_known_hosts(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(addr, key)| format!("{addr} {key}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_comments_and_renders() {
        assert_eq!(
            key_without_comment("ssh-ed25519 AAAAC3Nz root@node1\n").as_deref(),
            Some("ssh-ed25519 AAAAC3Nz")
        );
        assert_eq!(key_without_comment("garbage"), None);
        let kh = render_known_hosts(&[
            ("10.213.0.11".into(), "ssh-ed25519 AAA1".into()),
            ("10.213.0.12".into(), "ssh-ed25519 AAA2".into()),
        ]);
        assert_eq!(
            kh,
            "10.213.0.11 ssh-ed25519 AAA1\n10.213.0.12 ssh-ed25519 AAA2\n"
        );
    }
}
