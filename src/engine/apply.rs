//! Apply one role to one node: directories, binaries, PKI files, kubeconfigs and rendered files
//! made to match; `on_change` commands and unit restarts only when something changed; then the
//! role's health checks. In dry-run it only reports what it would do.

use std::path::Path;
use std::time::{Duration, Instant};

use super::artifacts::Artifacts;
use super::context::NodeContext;
use super::plan::{render_files, tera_context};
use super::render::Renderer;
use super::role::{RoleDef, parse_mode};
use crate::engine::context::ClusterContext;
use crate::node::{Node, last_lines, shell_quote};

/// Everything a role application reads besides the node.
pub struct Env<'a> {
    pub renderer: &'a Renderer,
    pub cluster: &'a ClusterContext,
    pub artifacts: &'a Artifacts,
    pub pki_dir: &'a Path,
}

/// What applying a role did (or would do) on one node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One line per change, e.g. "wrote /etc/systemd/system/etcd.service".
    pub changes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("role {role}")]
    Node {
        role: String,
        #[source]
        source: crate::node::NodeError,
    },
    #[error("role {role}")]
    Render {
        role: String,
        #[source]
        source: super::render::RenderError,
    },
    #[error("role {role}")]
    Artifact {
        role: String,
        #[source]
        source: super::artifacts::ArtifactError,
    },
    #[error("role {role}: PKI: {reason}")]
    Pki { role: String, reason: String },
    #[error("role {role}: health check \"{check}\" still failing after {secs} s: {last}")]
    Unhealthy {
        role: String,
        check: String,
        secs: u64,
        last: String,
    },
}

/// The on-node path of a kubeconfig's API server.
fn server_url(kind: &str, cluster: &ClusterContext) -> String {
    if kind == "local" {
        "https://127.0.0.1:6443".to_string()
    } else {
        cluster.api_server.clone()
    }
}

pub async fn apply_role(
    env: &Env<'_>,
    node: &Node,
    node_ctx: &NodeContext,
    role: &RoleDef,
) -> Result<Outcome, ApplyError> {
    let name = role.name.clone();
    let n_err = |source| ApplyError::Node {
        role: name.clone(),
        source,
    };
    let r_err = |source| ApplyError::Render {
        role: name.clone(),
        source,
    };
    let verb = if node.dry_run { "would write" } else { "wrote" };
    let ctx = tera_context(env.cluster, node_ctx);
    let mut out = Outcome::default();
    let mut unit_files_changed = false;
    // Render first: a template error must surface before anything is uploaded.
    let rendered = render_files(env.renderer, role, &ctx, node_ctx).map_err(r_err)?;

    for d in &role.dirs {
        let path = env.renderer.render_str(&d.path, &ctx).map_err(r_err)?;
        let mode = parse_mode(&d.mode).unwrap_or(0o755);
        if node.ensure_dir(&path, mode).await.map_err(n_err)? {
            out.changes.push(format!(
                "{} dir {path}",
                if node.dry_run {
                    "would create"
                } else {
                    "created"
                }
            ));
        }
    }

    for b in &role.binaries {
        let a = env
            .artifacts
            .get(&b.name, &role.name)
            .map_err(|source| ApplyError::Artifact {
                role: name.clone(),
                source,
            })?;
        let dest = b.path();
        let local = env.artifacts.path(a);
        if node
            .ensure_local_file(&dest, &local, &a.sha256, 0o755)
            .await
            .map_err(n_err)?
        {
            out.changes
                .push(format!("{verb} {dest} ({} {})", a.name, a.version));
        }
    }

    for p in &role.pki {
        let src = env.renderer.render_str(&p.src, &ctx).map_err(r_err)?;
        let dest = env.renderer.render_str(&p.dest, &ctx).map_err(r_err)?;
        let data = std::fs::read(env.pki_dir.join(&src)).map_err(|e| ApplyError::Pki {
            role: name.clone(),
            reason: format!("{}: {e}", env.pki_dir.join(&src).display()),
        })?;
        let mode = if src.ends_with(".key") { 0o600 } else { 0o644 };
        if node.ensure_file(&dest, &data, mode).await.map_err(n_err)? {
            out.changes.push(format!("{verb} {dest}"));
        }
    }

    for k in &role.kubeconfigs {
        let stem = env.renderer.render_str(&k.cert, &ctx).map_err(r_err)?;
        let dest = env.renderer.render_str(&k.dest, &ctx).map_err(r_err)?;
        let server = server_url(&k.server, env.cluster);
        let yaml =
            crate::pki::kubeconfig_from_dir(env.pki_dir, &stem, &env.cluster.name, &server, &stem)
                .map_err(|e| ApplyError::Pki {
                    role: name.clone(),
                    reason: e.to_string(),
                })?;
        if node
            .ensure_file(&dest, yaml.as_bytes(), 0o600)
            .await
            .map_err(n_err)?
        {
            out.changes.push(format!("{verb} {dest}"));
        }
    }

    for f in rendered {
        if node
            .ensure_file(&f.dest, &f.content, f.mode)
            .await
            .map_err(n_err)?
        {
            unit_files_changed |= f.dest.starts_with("/etc/systemd/");
            out.changes.push(format!("{verb} {}", f.dest));
        }
    }

    let changed = !out.changes.is_empty();
    if changed && !node.dry_run {
        if unit_files_changed {
            node.sudo_ok("systemctl daemon-reload")
                .await
                .map_err(n_err)?;
        }
        for cmd in &role.on_change {
            let cmd = env.renderer.render_str(cmd, &ctx).map_err(r_err)?;
            node.sudo_ok(&cmd).await.map_err(n_err)?;
        }
    }

    for unit in &role.units {
        let q = shell_quote(unit);
        if changed {
            if !node.dry_run {
                node.sudo_ok(&format!(
                    "systemctl enable --quiet {q} && systemctl restart {q}"
                ))
                .await
                .map_err(n_err)?;
            }
            out.changes.push(format!(
                "{} {unit}",
                if node.dry_run {
                    "would restart"
                } else {
                    "restarted"
                }
            ));
        } else if !node.unit_running(unit).await.map_err(n_err)? {
            if !node.dry_run {
                node.sudo_ok(&format!("systemctl enable --quiet --now {q}"))
                    .await
                    .map_err(n_err)?;
            }
            out.changes.push(format!(
                "{} {unit}",
                if node.dry_run {
                    "would start"
                } else {
                    "started"
                }
            ));
        }
    }

    if !node.dry_run {
        for h in &role.health {
            let cmd = env.renderer.render_str(&h.command, &ctx).map_err(r_err)?;
            wait_healthy(node, &role.name, &h.name, &cmd, h.timeout_secs).await?;
        }
    }
    Ok(out)
}

/// Retry a check once a second until it passes or `secs` run out.
pub async fn wait_healthy(
    node: &Node,
    role: &str,
    check: &str,
    cmd: &str,
    secs: u64,
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match node.session.sudo(cmd).await {
            Ok(o) if o.success() => return Ok(()),
            Ok(o) => last_lines(&format!("{}\n{}", o.stdout, o.stderr), 3),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(ApplyError::Unhealthy {
                role: role.to_string(),
                check: check.to_string(),
                secs,
                last,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
