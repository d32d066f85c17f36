//! Side-load container images (OCI archives from the mirror) into a node's containerd, for
//! clusters with no registry. Skips images already present with the same archive.

use super::artifacts::{Artifacts, Kind};
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

/// Make every image of the mirror present on the node; returns change lines.
pub async fn load_all(node: &Node, artifacts: &Artifacts) -> Result<Vec<String>, ImageError> {
    let images: Vec<_> = artifacts
        .all()
        .filter(|a| a.kind == Kind::Image && a.reference.is_some())
        .collect();
    let dests: Vec<String> = images
        .iter()
        .map(|a| format!("{IMAGE_DIR}/{}.tar", a.name))
        .collect();
    let snap = node.snapshot(&dests, &[], &[]).await?;
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
    let mut changes = Vec::new();
    for (a, dest) in images.iter().zip(&dests) {
        let reference = a.reference.as_deref().unwrap_or_default();
        let copy = !snap.file_matches(dest, &a.sha256, 0o644);
        if copy && !node.dry_run {
            artifacts.verify(a)?;
            node.session
                .upload_file(&artifacts.path(a), dest, 0o644)
                .await
                .map_err(NodeError::from)?;
        }
        if copy || !present.contains(&reference) {
            if node.dry_run {
                changes.push(format!("would import {reference}"));
            } else {
                import(node, dest).await?;
                changes.push(format!("imported {reference}"));
            }
        }
    }
    Ok(changes)
}
