//! `director-boot init`: connect, facts, preflight, pki, then the role-driven component phases
//! (node-prep, etcd, control-plane, runtime, kubelet, overlay) and addons, then the admin
//! kubeconfig. Every phase skips what is already right; `--dry-run` only reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ipnet::IpNet;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::engine::apply::{Env, apply_role, stage_binaries};
use crate::engine::artifacts::Artifacts;
use crate::engine::context::{self, NodeContext};
use crate::engine::preflight::{self, Verdict};
use crate::engine::render::{self, Renderer};
use crate::engine::role::ComponentRole;
use crate::engine::runner::Runner;
use crate::engine::{addons, images, plan, subnets};
use crate::fleet::{open_nodes, ssh_config};
use crate::inventory::{HostRole, Inventory};
use crate::node::Node;
use crate::paths::{Paths, ensure_private_dir};
use crate::pki;

/// Component phases in the order they run; every role file names one of these.
pub const PHASES: &[&str] = &[
    "node-prep",
    "etcd",
    "control-plane",
    "runtime",
    "kubelet",
    "kube-proxy",
    "overlay",
];

pub struct InitArgs<'a> {
    pub inventory: &'a Path,
    pub dry_run: bool,
    pub artifacts: Option<PathBuf>,
    pub skip_preflight: Vec<String>,
    pub merge_kubeconfig: bool,
    pub ssh: &'a SshArgs,
    pub json: bool,
    pub verbose: bool,
    /// Only these component phases (`overlay up`); `None` = the whole cluster with addons and
    /// the admin kubeconfig.
    pub only_phases: Option<&'static [&'static str]>,
    /// Only these hosts (the others are still connected: their facts feed the peers' routes).
    pub only_hosts: Option<Vec<String>>,
    /// The command name in the summary.
    pub command: &'static str,
}

pub async fn run(paths: &Paths, a: InitArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    let unknown = preflight::unknown_skips(&a.skip_preflight);
    if !unknown.is_empty() {
        anyhow::bail!(
            "--skip-preflight: unknown check(s) {}; known: {}",
            unknown.join(", "),
            preflight::CHECKS.join(", ")
        );
    }
    let cfg = ssh_config(paths, &inv, &a.ssh.fleet())?;
    let cluster_dir = paths.cluster_dir(&inv.cluster_name);
    ensure_private_dir(&cluster_dir)
        .with_context(|| format!("cannot create {}", cluster_dir.display()))?;
    let artifacts_dir = a
        .artifacts
        .clone()
        .unwrap_or_else(|| paths.cache.join("mirror"));
    let artifacts = Artifacts::open(&artifacts_dir)?;
    let renderer = Renderer::new()?;
    let roles = render::roles()?;
    check_role_phases(&roles)?;
    let mut runner = Runner::new(
        a.dry_run,
        a.ssh.concurrency as usize,
        a.verbose,
        a.json,
        Some(&cluster_dir.join("logs")),
    );
    if a.dry_run {
        runner.say("dry run: nothing on the hosts is changed");
    }
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();

    let nodes = open_nodes(&mut runner, &inv, &cfg, a.dry_run).await;

    // preflight
    let all: Vec<&Node> = nodes.iter().collect();
    let cross = preflight::cross_checks(&all);
    let peers: BTreeMap<String, Vec<String>> = inv
        .hosts
        .iter()
        .map(|h| {
            let others = inv
                .hosts
                .iter()
                .filter(|o| o.name != h.name)
                .map(|o| o.ssh.address.to_string())
                .collect();
            (h.name.clone(), others)
        })
        .collect();
    let skip = a.skip_preflight.clone();
    let cross_ref = &cross;
    let peers_ref = &peers;
    let warnings = std::sync::Mutex::new(Vec::<String>::new());
    let warnings_ref = &warnings;
    runner
        .phase("preflight", all.clone(), |n| {
            let skip = skip.clone();
            async move {
                let mut checks = preflight::host_checks(
                    n,
                    peers_ref.get(n.name()).map(Vec::as_slice).unwrap_or(&[]),
                )
                .await?;
                checks.extend(cross_ref.get(n.name()).cloned().unwrap_or_default());
                preflight::skip(&mut checks, &skip);
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| c.verdict == Verdict::Fail)
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect();
                if !failed.is_empty() {
                    anyhow::bail!("{} (skip with --skip-preflight NAME)", failed.join("; "));
                }
                // Warnings are shown after the phase; they are not changes.
                if let Ok(mut w) = warnings_ref.lock() {
                    for c in checks.iter().filter(|c| c.verdict == Verdict::Warn) {
                        w.push(format!(
                            "  {:<14} warning: {}: {}",
                            n.name(),
                            c.name,
                            c.detail
                        ));
                    }
                }
                Ok(Vec::new())
            }
        })
        .await;

    for w in warnings.into_inner().unwrap_or_default() {
        runner.say(&w);
    }

    // pod subnets and PKI (local)
    let subnets = allocate_subnets(&cluster_dir, &inv, a.dry_run)?;
    let (pki_dir, _pki_tmp) = ensure_pki(&mut runner, &cluster_dir, &inv, a.dry_run)?;
    let cluster = context::cluster(
        &inv,
        &subnets,
        &artifacts.kubernetes_version,
        artifacts.images(),
    )?;
    let mut node_ctx: BTreeMap<String, NodeContext> = BTreeMap::new();
    for n in &nodes {
        match context::node(&inv, &cluster, &n.host, &n.facts) {
            Ok(c) => {
                node_ctx.insert(n.name().to_string(), c);
            }
            Err(e) => runner.fail(n.name(), "facts", e.to_string()),
        }
    }
    // Which roles each host gets (inventory roles and `when` conditions).
    let mut host_roles: BTreeMap<String, Vec<&ComponentRole>> = BTreeMap::new();
    for n in &nodes {
        let Some(nc) = node_ctx.get(n.name()) else {
            continue;
        };
        let ctx = plan::tera_context(&cluster, nc);
        if a.only_hosts
            .as_ref()
            .is_some_and(|only| !only.iter().any(|h| h == n.name()))
        {
            continue;
        }
        let mut mine = Vec::new();
        for r in &roles {
            let wanted = a.only_phases.is_none_or(|p| p.contains(&r.phase.as_str()));
            if wanted && r.applies_to(&n.host.roles) && plan::applies(&renderer, r, &ctx)? {
                mine.push(r);
            }
        }
        host_roles.insert(n.name().to_string(), mine);
    }

    // artifacts: every host's binaries and image archives, all hosts at once
    let staged_map =
        std::sync::Mutex::new(BTreeMap::<String, std::collections::BTreeSet<String>>::new());
    {
        let (roles_ref, staged_ref, artifacts_ref) = (&host_roles, &staged_map, &artifacts);
        let concerned: Vec<&Node> = nodes
            .iter()
            .filter(|n| host_roles.contains_key(n.name()))
            .collect();
        runner
            .phase("artifacts", concerned, |n| async move {
                let mine = roles_ref.get(n.name()).map(Vec::as_slice).unwrap_or(&[]);
                let (mut changes, mut written) = stage_binaries(artifacts_ref, n, mine).await?;
                if mine.iter().any(|r| r.phase == "runtime") {
                    let (lines, archives) = images::stage_archives(n, artifacts_ref).await?;
                    changes.extend(lines);
                    written.extend(archives);
                }
                if let Ok(mut m) = staged_ref.lock() {
                    m.insert(n.name().to_string(), written);
                }
                Ok(changes)
            })
            .await;
    }
    let staged = staged_map.into_inner().unwrap_or_default();
    let env = Env {
        renderer: &renderer,
        cluster: &cluster,
        artifacts: &artifacts,
        pki_dir: &pki_dir,
        staged: &staged,
    };

    // component phases, driven by role files
    for phase in PHASES {
        let mut concerned: Vec<&Node> = Vec::new();
        let mut plan_for: BTreeMap<String, Vec<&ComponentRole>> = BTreeMap::new();
        for n in &nodes {
            let Some(all) = host_roles.get(n.name()) else {
                continue;
            };
            let mine: Vec<&ComponentRole> =
                all.iter().copied().filter(|r| r.phase == *phase).collect();
            let runtime = *phase == "runtime" && a.only_phases.is_none();
            if !mine.is_empty() || (runtime && n.host.has_role(HostRole::Worker)) {
                concerned.push(n);
                plan_for.insert(n.name().to_string(), mine);
            }
        }
        let env_ref = &env;
        let plan_ref = &plan_for;
        let ctx_ref = &node_ctx;
        let artifacts_ref = &artifacts;
        runner
            .phase(phase, concerned, |n| async move {
                let nc = ctx_ref.get(n.name()).context("no node context")?;
                // Roles of one phase do not depend on each other's order (a controller-manager
                // retries until its API server answers), so they go on at once: one role's
                // uploads overlap another's startup wait.
                let roles = plan_ref.get(n.name()).map(Vec::as_slice).unwrap_or(&[]);
                let outcomes = futures::future::try_join_all(
                    roles.iter().map(|r| apply_role(env_ref, n, nc, r)),
                )
                .await?;
                let mut changes: Vec<String> =
                    outcomes.into_iter().flat_map(|o| o.changes).collect();
                if *phase == "runtime" {
                    let staged = env_ref.staged.get(n.name());
                    changes.extend(images::load_all(n, artifacts_ref, staged).await?);
                }
                Ok(changes)
            })
            .await;
    }

    if a.only_phases.is_some() {
        return Ok(runner.finish(a.command, &hosts));
    }
    // addons, from the first healthy control-plane host
    let addon_roles: Vec<&ComponentRole> = roles.iter().filter(|r| r.phase == "addons").collect();
    if let Some(cp) = nodes
        .iter()
        .find(|n| n.host.has_role(HostRole::ControlPlane) && !runner.failed(n.name()))
    {
        let nc = node_ctx.get(cp.name()).cloned();
        let env_ref = &env;
        runner
            .phase("addons", vec![cp], |n| {
                let nc = nc.clone();
                let addon_roles = addon_roles.clone();
                async move {
                    let nc = nc.context("no node context")?;
                    let mut changes = Vec::new();
                    for r in addon_roles {
                        changes.extend(addons::apply(env_ref, n, &nc, r).await?);
                    }
                    Ok(changes)
                }
            })
            .await;
    }

    // the admin kubeconfig
    if !a.dry_run
        && let Some(first) = inv.hosts_with(HostRole::ControlPlane).next()
    {
        let server = format!("https://{}", socket(first.ssh.address, 6443));
        let yaml =
            pki::kubeconfig_from_dir(&pki_dir, "admin", &inv.cluster_name, &server, "admin")?;
        let path = cluster_dir.join("admin.conf");
        write_private(&path, yaml.as_bytes())?;
        runner.say(&format!("admin kubeconfig: {}", path.display()));
        if a.merge_kubeconfig {
            super::kubeconfig::merge_into_user_config(&yaml, &inv.cluster_name)?;
        }
    }
    Ok(runner.finish(a.command, &hosts))
}

fn socket(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// Every role's phase must be one the engine runs.
fn check_role_phases(roles: &[ComponentRole]) -> anyhow::Result<()> {
    for r in roles {
        if r.phase != "addons" && !PHASES.contains(&r.phase.as_str()) {
            anyhow::bail!(
                "role {}: unknown phase {:?}; phases are {} and addons",
                r.name,
                r.phase,
                PHASES.join(", ")
            );
        }
    }
    Ok(())
}

/// Pod subnets per node, kept in the cluster state so they never move under a running node.
fn allocate_subnets(
    cluster_dir: &Path,
    inv: &Inventory,
    dry_run: bool,
) -> anyhow::Result<BTreeMap<String, IpNet>> {
    let file = cluster_dir.join("subnets.json");
    let previous: BTreeMap<String, IpNet> = match std::fs::read_to_string(&file) {
        Ok(t) => {
            serde_json::from_str(&t).with_context(|| format!("{} is corrupt", file.display()))?
        }
        Err(_) => BTreeMap::new(),
    };
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let now = subnets::allocate(
        &previous,
        &names,
        inv.network.pod_cidr,
        inv.network.node_prefix,
    )?;
    if now != previous && !dry_run {
        write_private(&file, serde_json::to_string_pretty(&now)?.as_bytes())?;
    }
    Ok(now)
}

/// Create the PKI (once; a re-run keeps every valid file). A dry run works on a copy.
fn ensure_pki(
    runner: &mut Runner,
    cluster_dir: &Path,
    inv: &Inventory,
    dry_run: bool,
) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let members = |role: HostRole| -> Vec<pki::Member> {
        inv.hosts_with(role)
            .map(|h| pki::Member::new(h.name.clone(), h.ssh.address))
            .collect()
    };
    let spec = pki::PkiSpec {
        cluster_name: inv.cluster_name.clone(),
        control_plane: members(HostRole::ControlPlane),
        etcd: members(HostRole::Etcd),
        nodes: inv
            .hosts
            .iter()
            .map(|h| pki::Member::new(h.name.clone(), h.ssh.address))
            .collect(),
        service_cidr: inv.network.service_cidr,
        cluster_domain: "cluster.local".into(),
        apiserver_extra_sans: Vec::new(),
    };
    let real = cluster_dir.join("pki");
    let (dir, tmp) = if dry_run {
        let tmp = tempfile::tempdir()?;
        let copy = tmp.path().join("pki");
        if real.exists() {
            copy_dir(&real, &copy)?;
        }
        (copy, Some(tmp))
    } else {
        (real, None)
    };
    let report = pki::ensure(&dir, &spec)?;
    runner.say("[pki] local");
    let n = report.created.len() + report.renewed.len();
    runner.say(&format!(
        "  {:<14} {}",
        "control",
        if n == 0 {
            "ok".to_string()
        } else if dry_run {
            format!("{n} to change")
        } else {
            format!("{n} changed")
        }
    ));
    for p in &report.created {
        runner.changes.push((
            "pki".into(),
            "local".into(),
            format!("created {}", p.display()),
        ));
    }
    for r in &report.renewed {
        runner.changes.push((
            "pki".into(),
            "local".into(),
            format!("renewed {} ({})", r.path.display(), r.reason),
        ));
    }
    for w in &report.warnings {
        runner.say(&format!("  warning: {w}"));
    }
    Ok((dir, tmp))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// Write a file readable only by its owner, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("path has no parent")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
