//! Add-ons: Kubernetes manifests (templates) applied with kubectl from a control-plane host.
//! A manifest is applied only when its rendered text differs from the last one applied there;
//! the health checks (rollouts) run only when the caller waits.

use super::apply::{Env, apply_role, wait_healthy};
use super::context::NodeContext;
use super::kubectl::Kubectl;
use super::plan::{applies, tera_context};
use super::role::ComponentRole;
use crate::node::Node;

const ADDON_DIR: &str = "/etc/kubernetes/addons";

pub async fn apply(
    env: &Env<'_>,
    node: &Node,
    nc: &NodeContext,
    role: &ComponentRole,
    wait: bool,
) -> anyhow::Result<Vec<String>> {
    let ctx = tera_context(env.cluster, nc);
    // An add-on whose `when` does not hold (say, its image is not in this mirror) is left out.
    if !applies(env.renderer, role, &ctx)? {
        return Ok(Vec::new());
    }
    // Files, binaries and units of the role itself, without its health checks (they usually
    // need the manifests applied first).
    let mut bare = role.clone();
    bare.health.clear();
    let mut changes = apply_role(env, node, nc, &bare).await?.changes;
    for m in &role.manifests {
        let text = env.renderer.render(m, &ctx)?;
        let base = m.rsplit('/').next().unwrap_or(m);
        let dest = format!("{ADDON_DIR}/{}-{base}", role.name);
        let pending = format!("{dest}.pending");
        // The applied copy is written only after kubectl succeeded, so a failed apply is retried.
        let same = !node.dry_run_probe(&dest, text.as_bytes(), 0o600).await?;
        if same {
            continue;
        }
        if node.dry_run {
            changes.push(format!("would apply {m}"));
            continue;
        }
        node.ensure_file(&pending, text.as_bytes(), 0o600).await?;
        Kubectl::on(node)
            .apply_file_then_move(&pending, &dest)
            .await?;
        changes.push(format!("applied {m}"));
    }
    if wait && !node.dry_run {
        for h in &role.health {
            let cmd = env.renderer.render_str(&h.command, &ctx)?;
            wait_healthy(node, &role.name, &h.name, &cmd, h.timeout_secs).await?;
        }
    }
    Ok(changes)
}
