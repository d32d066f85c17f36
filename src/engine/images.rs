//! Side-load container images (OCI archives from the mirror) into a node's containerd, for
//! clusters with no registry. Skips images already present with the same archive.

use super::artifacts::{Artifact, Artifacts, Kind};
use crate::node::{Node, NodeError, shell_quote};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Artifact(#[from] super::artifacts::ArtifactError),
}

const IMAGE_DIR: &str = "/var/lib/director-boot/images";

/// Import one OCI archive already on the node.
pub async fn import(node: &Node, archive: &str) -> Result<(), NodeError> {
    node.sudo_ok(&format!(
        "ctr -n k8s.io images import {}",
        shell_quote(archive)
    ))
    .await
    .map(|_| ())
}

/// The mirror's images as (artifact, archive path on the node).
fn archives(artifacts: &Artifacts) -> Vec<(&Artifact, String)> {
    artifacts
        .all()
        .filter(|a| a.kind == Kind::Image && a.reference.is_some())
        .map(|a| (a, format!("{IMAGE_DIR}/{}.tar", a.name)))
        .collect()
}

/// Put every image archive on the node (verified, skipped when already there); returns the
/// change lines and the references whose archive was (or would be) written.
async fn copy_archives<'a>(
    node: &Node,
    artifacts: &'a Artifacts,
) -> Result<(Vec<String>, Vec<&'a str>), ImageError> {
    let images = archives(artifacts);
    let dests: Vec<String> = images.iter().map(|(_, d)| d.clone()).collect();
    let snap = node.snapshot(&dests, &[], &[]).await?;
    let (mut changes, mut copied, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    for (a, dest) in &images {
        if snap.file_matches(dest, &a.sha256, 0o644) {
            continue;
        }
        if !node.dry_run {
            artifacts.verify(a)?;
            node.session
                .upload_file(&artifacts.path(a), dest, 0o644)
                .await
                .map_err(NodeError::from)?;
            sums.push((dest.clone(), a.sha256.clone()));
        }
        let verb = if node.dry_run { "would write" } else { "wrote" };
        changes.push(format!("{verb} {dest}"));
        copied.push(a.reference.as_deref().unwrap_or_default());
    }
    node.remember_sums(&sums).await?;
    Ok((changes, copied))
}

/// The artifacts phase's part: image archives onto the node before containerd runs. Returns
/// the change lines and the archive paths written.
pub async fn stage_archives(
    node: &Node,
    artifacts: &Artifacts,
) -> Result<(Vec<String>, Vec<String>), ImageError> {
    let (changes, copied) = copy_archives(node, artifacts).await?;
    let written = archives(artifacts)
        .into_iter()
        .filter(|(a, _)| copied.contains(&a.reference.as_deref().unwrap_or_default()))
        .map(|(_, d)| d)
        .collect();
    Ok((changes, written))
}

/// Make every image of the mirror present in the node's containerd; returns change lines.
/// `staged`: archive paths the artifacts phase wrote this run (to be imported again).
pub async fn load_all(
    node: &Node,
    artifacts: &Artifacts,
    staged: Option<&std::collections::BTreeSet<String>>,
) -> Result<Vec<String>, ImageError> {
    let (mut changes, copied) = copy_archives(node, artifacts).await?;
    // No containerd yet (dry run on a fresh host): nothing is present.
    let listed = node
        .session
        .sudo("ctr -n k8s.io images ls -q")
        .await
        .map_err(NodeError::from)?;
    let present: Vec<&str> = if listed.success() {
        listed.stdout.lines().collect()
    } else {
        Vec::new()
    };
    for (a, dest) in archives(artifacts) {
        let reference = a.reference.as_deref().unwrap_or_default();
        let fresh = staged.is_some_and(|s| s.contains(&dest));
        if fresh || copied.contains(&reference) || !present.contains(&reference) {
            if node.dry_run {
                changes.push(format!("would import {reference}"));
            } else {
                import(node, &dest).await?;
                changes.push(format!("imported {reference}"));
            }
        }
    }
    Ok(changes)
}
