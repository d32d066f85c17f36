//! Pure part of applying a role: what files a node should have, rendered from templates.

use super::context::{ClusterContext, NodeContext};
use super::render::{RenderError, Renderer, merge_extra};
use super::role::{ComponentRole, MergeExtra, parse_mode};

/// A file a node should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    pub dest: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

pub fn tera_context(cluster: &ClusterContext, node: &NodeContext) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("cluster", cluster);
    ctx.insert("node", node);
    ctx
}

/// Render every template of `role` for one node (inventory extras merged in).
pub fn render_files(
    r: &Renderer,
    role: &ComponentRole,
    ctx: &tera::Context,
    node: &NodeContext,
) -> Result<Vec<DesiredFile>, RenderError> {
    let mut out = Vec::new();
    for f in &role.files {
        let dest = r.render_str(&f.dest, ctx)?;
        let mut text = r.render(&f.template, ctx)?;
        match f.merge {
            Some(MergeExtra::KubeletExtra) => {
                text = merge_extra(&f.template, &text, &node.kubelet_extra)?
            }
            Some(MergeExtra::ContainerdExtra) => {
                text = merge_extra(&f.template, &text, &node.containerd_extra)?
            }
            None => {}
        }
        out.push(DesiredFile {
            dest,
            content: text.into_bytes(),
            // ComponentRole::parse already rejected bad modes.
            mode: parse_mode(&f.mode).unwrap_or(0o644),
        });
    }
    Ok(out)
}

/// Whether a role's `when` condition holds for this context.
pub fn applies(
    r: &Renderer,
    role: &ComponentRole,
    ctx: &tera::Context,
) -> Result<bool, RenderError> {
    match &role.when {
        None => Ok(true),
        Some(cond) => {
            let out = r.render_str(&format!("{{% if {cond} %}}yes{{% endif %}}"), ctx)?;
            Ok(out == "yes")
        }
    }
}
