//! Apply one role to one node: directories, binaries, PKI files, kubeconfigs and rendered files
//! made to match; `on_change` commands and unit restarts only when something changed; then the
//! role's health checks. In dry-run it only reports what it would do.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::artifacts::Artifacts;
use super::context::NodeContext;
use super::plan::{render_files, tera_context};
use super::render::Renderer;
use super::role::{ComponentRole, parse_mode};
use crate::engine::context::ClusterContext;
use crate::node::{Node, last_lines, shell_quote};

/// Everything a role application reads besides the node.
pub struct Env<'a> {
    pub renderer: &'a Renderer,
    pub cluster: &'a ClusterContext,
    pub artifacts: &'a Artifacts,
    pub pki_dir: &'a Path,
    /// Per host, the binaries the artifacts phase wrote: their roles count as changed.
    pub staged: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

/// What applying a role did (or would do) on one node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One line per change, e.g. "wrote /etc/systemd/system/etcd.service".
    pub changes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Host(#[from] crate::node::NodeError),
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

/// The on-node URL of a kubeconfig's API server: `local` is this host's own API server,
/// `internal` the cluster's API for a control-plane component (the node-local load balancer
/// in an HA cluster, else this host's own), `cluster` the cluster's API for a node.
fn server_url(kind: &str, cluster: &ClusterContext) -> String {
    match kind {
        "local" => "https://127.0.0.1:6443".to_string(),
        "internal" if cluster.api_lb.is_none() => "https://127.0.0.1:6443".to_string(),
        _ => cluster.api_server.clone(),
    }
}

/// Where a wanted file's content comes from.
enum Content<'a> {
    Bytes(Vec<u8>),
    /// A mirror artifact, streamed from disk and checked against its manifest before upload.
    Artifact(&'a super::artifacts::Artifact),
}

struct Want<'a> {
    dest: String,
    sha256: String,
    mode: u32,
    content: Content<'a>,
    label: String,
}

fn bytes_want<'a>(dest: String, data: Vec<u8>, mode: u32) -> Want<'a> {
    let sha256 = crate::ssh::sha256_hex(&data);
    Want {
        label: dest.clone(),
        dest,
        sha256,
        mode,
        content: Content::Bytes(data),
    }
}

pub async fn apply_role(
    env: &Env<'_>,
    node: &Node,
    node_ctx: &NodeContext,
    role: &ComponentRole,
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
    let a_err = |source| ApplyError::Artifact {
        role: name.clone(),
        source,
    };
    let dry = node.dry_run;
    let ctx = tera_context(env.cluster, node_ctx);
    let mut out = Outcome::default();

    // Everything the role wants, computed locally first: a template or PKI error surfaces
    // before anything is uploaded.
    let mut wants: Vec<Want> = Vec::new();
    for b in &role.binaries {
        let a = env.artifacts.get(&b.name, &role.name).map_err(a_err)?;
        wants.push(Want {
            dest: b.path(),
            sha256: a.sha256.clone(),
            mode: 0o755,
            content: Content::Artifact(a),
            label: format!("{} ({} {})", b.path(), a.name, a.version),
        });
    }
    for p in &role.pki {
        let src = env.renderer.render_str(&p.src, &ctx).map_err(r_err)?;
        let dest = env.renderer.render_str(&p.dest, &ctx).map_err(r_err)?;
        let local = env.pki_dir.join(&src);
        let data = std::fs::read(&local).map_err(|e| ApplyError::Pki {
            role: name.clone(),
            reason: format!("{}: {e}", local.display()),
        })?;
        // Certificates too (CIS 1.1.20, 4.1.8): only root-run components read them.
        let mode = 0o600;
        wants.push(bytes_want(dest, data, mode));
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
        wants.push(bytes_want(dest, yaml.into_bytes(), 0o600));
    }
    for f in render_files(env.renderer, role, &ctx, node_ctx).map_err(r_err)? {
        wants.push(bytes_want(f.dest, f.content, f.mode));
    }
    let mut dirs = Vec::new();
    for d in &role.dirs {
        let path = env.renderer.render_str(&d.path, &ctx).map_err(r_err)?;
        dirs.push((path, parse_mode(&d.mode).unwrap_or(0o755)));
    }

    // What the host has now, in one round trip.
    let paths: Vec<String> = wants.iter().map(|w| w.dest.clone()).collect();
    let dir_paths: Vec<String> = dirs.iter().map(|(p, _)| p.clone()).collect();
    let snap = node
        .snapshot(&paths, &dir_paths, &role.units)
        .await
        .map_err(n_err)?;

    let wrong_dirs: Vec<&(String, u32)> = dirs
        .iter()
        .filter(|(p, m)| snap.dirs.get(p) != Some(m))
        .collect();
    if !wrong_dirs.is_empty() && !dry {
        let cmd = wrong_dirs
            .iter()
            .map(|(p, m)| format!("mkdir -p {q} && chmod {m:o} {q}", q = shell_quote(p)))
            .collect::<Vec<_>>()
            .join(" && ");
        node.sudo_ok(&cmd).await.map_err(n_err)?;
    }
    for (p, _) in &wrong_dirs {
        out.changes.push(format!(
            "{} dir {p}",
            if dry { "would create" } else { "created" }
        ));
    }

    // Host packages before the files: a unit may run what a package brings.
    if let Some(family) = node.facts.family {
        let missing = super::packages::missing(node, family, &role.packages)
            .await
            .map_err(n_err)?;
        if !missing.is_empty() {
            if !dry {
                node.sudo_ok(&family.install_packages(&missing))
                    .await
                    .map_err(n_err)?;
            }
            out.changes.push(format!(
                "{} packages {}",
                if dry { "would install" } else { "installed" },
                missing.join(" ")
            ));
        }
    }

    let mut unit_files_changed = false;
    let mut written: Vec<(String, String)> = Vec::new();
    let stale: Vec<&Want> = wants
        .iter()
        .filter(|w| !snap.file_matches(&w.dest, &w.sha256, w.mode))
        .collect();
    // Rendered files, keys and kubeconfigs all go in one round trip.
    let small: Vec<crate::ssh::SmallFile> = stale
        .iter()
        .filter_map(|w| match &w.content {
            Content::Bytes(data) => Some(crate::ssh::SmallFile {
                remote: &w.dest,
                data,
                mode: w.mode,
            }),
            Content::Artifact(_) => None,
        })
        .collect();
    if !dry {
        node.session
            .upload_many(&small)
            .await
            .map_err(|e| n_err(e.into()))?;
    }
    for w in stale {
        // The small files went above; mirror binaries stream one by one.
        if let (false, Content::Artifact(a)) = (dry, &w.content) {
            env.artifacts.verify(a).map_err(a_err)?;
            node.session
                .upload_file(&env.artifacts.path(a), &w.dest, w.mode)
                .await
                .map_err(|e| n_err(e.into()))?;
        }
        unit_files_changed |= w.dest.starts_with("/etc/systemd/");
        written.push((w.dest.clone(), w.sha256.clone()));
        out.changes.push(format!(
            "{} {}",
            if dry { "would write" } else { "wrote" },
            w.label
        ));
    }

    // A binary staged earlier in this run (artifacts phase) is this role's change too.
    let staged = env
        .staged
        .get(node.name())
        .is_some_and(|written| role.binaries.iter().any(|b| written.contains(&b.path())));
    let changed = !out.changes.is_empty() || staged;
    if changed && !dry {
        node.remember_sums(&written).await.map_err(n_err)?;
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

    // Units restart only when this role changed something; otherwise only stopped ones start.
    let to_restart: Vec<&String> = if changed {
        role.units.iter().collect()
    } else {
        Vec::new()
    };
    let to_start: Vec<&String> = if changed {
        Vec::new()
    } else {
        role.units
            .iter()
            .filter(|u| snap.units.get(*u) != Some(&true))
            .collect()
    };
    let join = |v: &[&String]| {
        v.iter()
            .map(|u| shell_quote(u))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A unit that fails to start: its own last log lines say why (the error keeps the tail).
    let why = |us: &str| {
        format!(
            " || {{ rc=$?; for u in {us}; do journalctl -u \"$u\" -n 4 --no-pager -o cat >&2; done; exit $rc; }}"
        )
    };
    if !dry {
        if !to_restart.is_empty() {
            let us = join(&to_restart);
            node.sudo_ok(&format!(
                "{{ systemctl enable --quiet {us} && systemctl restart {us}; }}{}",
                why(&us)
            ))
            .await
            .map_err(n_err)?;
        }
        if !to_start.is_empty() {
            let us = join(&to_start);
            node.sudo_ok(&format!("systemctl enable --quiet --now {us}{}", why(&us)))
                .await
                .map_err(n_err)?;
        }
    }
    for u in &to_restart {
        out.changes.push(format!(
            "{} {u}",
            if dry { "would restart" } else { "restarted" }
        ));
    }
    for u in &to_start {
        out.changes.push(format!(
            "{} {u}",
            if dry { "would start" } else { "started" }
        ));
    }

    // Health is proven when something moved; an untouched role was proven by the run that set it.
    if !dry && !out.changes.is_empty() {
        for h in &role.health {
            let cmd = env.renderer.render_str(&h.command, &ctx).map_err(r_err)?;
            wait_healthy(node, &role.name, &h.name, &cmd, h.timeout_secs).await?;
        }
    }
    Ok(out)
}

/// Files of one host in flight at once (each is one SSH channel of the session's few).
const UPLOADS_PER_HOST: usize = 3;

/// The artifacts phase: put every binary the host's roles need in place before any role runs,
/// so all hosts receive theirs at once (workers would otherwise wait through the control-plane
/// phases). Returns the change lines and the paths written.
pub async fn stage_binaries(
    artifacts: &Artifacts,
    node: &Node,
    roles: &[&ComponentRole],
) -> Result<(Vec<String>, std::collections::BTreeSet<String>), ApplyError> {
    let mut wants: std::collections::BTreeMap<
        String,
        (&ComponentRole, &super::artifacts::Artifact),
    > = std::collections::BTreeMap::new();
    for role in roles {
        for b in &role.binaries {
            let a = artifacts
                .get(&b.name, &role.name)
                .map_err(|source| ApplyError::Artifact {
                    role: role.name.clone(),
                    source,
                })?;
            wants.insert(b.path(), (role, a));
        }
    }
    let paths: Vec<String> = wants.keys().cloned().collect();
    let snap = node
        .snapshot(&paths, &[], &[])
        .await
        .map_err(|source| ApplyError::Node {
            role: "artifacts".into(),
            source,
        })?;
    let todo: Vec<_> = wants
        .iter()
        .filter(|(dest, (_, a))| !snap.file_matches(dest, &a.sha256, 0o755))
        .collect();
    // A few files at once: one file's fsync and on-host checksum overlap the next one's
    // transfer, and a host far away keeps its link busy.
    let uploads = futures::stream::iter(todo.iter().map(|&(dest, &(role, a))| async move {
        if !node.dry_run {
            let role_err = |source| ApplyError::Artifact {
                role: role.name.clone(),
                source,
            };
            artifacts.verify(a).map_err(role_err)?;
            node.session
                .upload_file(&artifacts.path(a), dest, 0o755)
                .await
                .map_err(|e| ApplyError::Node {
                    role: role.name.clone(),
                    source: e.into(),
                })?;
        }
        Ok::<_, ApplyError>(())
    }))
    .buffered(UPLOADS_PER_HOST);
    let results: Vec<Result<(), ApplyError>> = uploads.collect().await;
    let mut changes = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    let mut sums = Vec::new();
    let mut first_error = None;
    for (&(dest, &(_, a)), r) in todo.iter().zip(results) {
        match r {
            Ok(()) => {
                if !node.dry_run {
                    sums.push((dest.clone(), a.sha256.clone()));
                }
                let verb = if node.dry_run { "would write" } else { "wrote" };
                changes.push(format!("{verb} {dest} ({} {})", a.name, a.version));
                written.insert(dest.clone());
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // What did arrive is remembered even when another file failed, so a re-run skips it.
    node.remember_sums(&sums)
        .await
        .map_err(|source| ApplyError::Node {
            role: "artifacts".into(),
            source,
        })?;
    match first_error {
        Some(e) => Err(e),
        None => Ok((changes, written)),
    }
}

/// Retry a check every quarter second until it passes or `secs` run out (components come up
/// within a second or two; a coarser poll would add that much to every role that changed).
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
