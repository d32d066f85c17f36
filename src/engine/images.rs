//! Side-load container images (OCI archives from the mirror) into a node's containerd, for
//! clusters with no registry. Skips images already present with the same archive.

use super::artifacts::{Artifacts, Kind};
use crate::node::{Node, NodeError, shell_quote};

const IMAGE_DIR: &str = "/var/lib/director-boot/images";

/// Is this image reference known to the node's containerd (CRI namespace)?
pub async fn present(node: &Node, reference: &str) -> Result<bool, NodeError> {
    let out = node
        .session
        .sudo(&format!(
            "ctr -n k8s.io images ls -q | grep -Fx {}",
            shell_quote(reference)
        ))
        .await?;
    Ok(out.success())
}

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
pub async fn load_all(node: &Node, artifacts: &Artifacts) -> Result<Vec<String>, NodeError> {
    let mut changes = Vec::new();
    for a in artifacts.all().filter(|a| a.kind == Kind::Image) {
        let Some(reference) = a.reference.as_deref() else {
            continue;
        };
        let dest = format!("{IMAGE_DIR}/{}.tar", a.name);
        let copied = node
            .ensure_local_file(&dest, &artifacts.path(a), &a.sha256, 0o644)
            .await?;
        if copied || node.dry_run || !present(node, reference).await? {
            if node.dry_run {
                if copied || !present(node, reference).await.unwrap_or(false) {
                    changes.push(format!("would import {reference}"));
                }
                continue;
            }
            import(node, &dest).await?;
            changes.push(format!("imported {reference}"));
        }
    }
    Ok(changes)
}
