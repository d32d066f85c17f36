//! netcheck's orchestration: put the probe on every node, give each node a measuring point on
//! its pod bridge, run the probe pair by pair (one pair at a time, so pairs do not share the
//! wire) over the overlay and host to host on the underlay, diagnose the failures, and always
//! take everything down again, also on Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::diagnose::{PairEvidence, diagnose};
use super::facts::NetFacts;
use super::model::{Measurement, PairResult, Report, Thresholds};
use super::probe_json::ProbeOutput;
use crate::engine::context::{
    self, NodeContext, POD_BRIDGE, VXLAN_DEVICE, WIREGUARD_DEVICE, WIREGUARD_PORT,
};
use crate::engine::render::Renderer;
use crate::engine::runner::Runner;
use crate::inventory::Inventory;
use crate::node::{Node, last_lines, script_command};
use crate::ssh::SshConfig;

/// Where the probe binary and the setup script go on every node.
const REMOTE_DIR: &str = "/usr/local/lib/director-boot/netcheck";
const NAMESPACE: &str = "dbnc";
const VETH: &str = "dbnc-h";
pub const OVERLAY_PORT: u16 = 5299;
pub const UNDERLAY_PORT: u16 = 5298;

#[derive(Debug, Clone, PartialEq)]
pub enum Pairs {
    All,
    /// Each node to the next (and the last to the first).
    Ring,
    /// A deterministic sample of this many ordered pairs.
    Sample(usize),
}

impl std::str::FromStr for Pairs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Pairs::All),
            "ring" => Ok(Pairs::Ring),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Pairs::Sample(n)),
                _ => Err(format!(
                    "`{s}`: expected all, ring or a number of pairs to sample"
                )),
            },
        }
    }
}

pub struct Options {
    pub pairs: Pairs,
    pub duration: u64,
    pub streams: u32,
    pub udp_bitrate: u64,
    pub thresholds: Thresholds,
    /// The binary uploaded to the nodes (default: this one).
    pub probe_binary: Option<PathBuf>,
    pub pair_timeout: Duration,
    pub mode: Mode,
    /// Whether the cluster is up (its admin kubeconfig exists): `auto` then uses pods.
    pub cluster_up: bool,
    /// Where the probe image is built.
    pub cache_dir: PathBuf,
}

/// The ordered pairs to measure.
pub fn select_pairs(nodes: &[String], how: &Pairs) -> Vec<(String, String)> {
    let all: Vec<(String, String)> = nodes
        .iter()
        .flat_map(|a| {
            nodes
                .iter()
                .filter(move |b| *b != a)
                .map(move |b| (a.clone(), b.clone()))
        })
        .collect();
    match how {
        Pairs::All => all,
        Pairs::Ring if nodes.len() < 2 => Vec::new(),
        Pairs::Ring if nodes.len() == 2 => all,
        Pairs::Ring => (0..nodes.len())
            .map(|i| (nodes[i].clone(), nodes[(i + 1) % nodes.len()].clone()))
            .collect(),
        Pairs::Sample(n) => {
            // Deterministic: the same cluster samples the same pairs, so runs compare.
            let mut keyed: Vec<(String, (String, String))> = all
                .into_iter()
                .map(|(a, b)| {
                    (
                        crate::ssh::sha256_hex(format!("{a}>{b}").as_bytes()),
                        (a, b),
                    )
                })
                .collect();
            keyed.sort();
            let mut chosen: Vec<(String, String)> =
                keyed.into_iter().take(*n).map(|(_, p)| p).collect();
            chosen.sort();
            chosen
        }
    }
}

struct Prepared<'a> {
    node: &'a Node,
    ctx: NodeContext,
    binary: String,
    /// This node's measuring point on the overlay: its address and the command prefix that
    /// runs the probe client there.
    overlay_ip: std::net::IpAddr,
    overlay_exec: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Pods when the cluster is up (an admin kubeconfig exists), else namespaces.
    Auto,
    /// A DaemonSet of probe pods (the image is built from this binary and side-loaded).
    Pods,
    /// A network namespace on each node's pod bridge (works before the cluster exists).
    Netns,
}

fn tera_ctx(nc: &NodeContext, binary: &str, max_secs: u64, netns: bool) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("node", nc);
    ctx.insert(
        "netcheck",
        &serde_json::json!({
            "namespace": NAMESPACE,
            "veth": VETH,
            "binary": binary,
            "address": nc.netcheck_address,
            "overlay_port": OVERLAY_PORT,
            "underlay_port": UNDERLAY_PORT,
            "max_secs": max_secs,
            "namespace_mode": netns,
        }),
    );
    ctx
}

/// The overlay's device and UDP port between hosts: WireGuard's when the overlay is encrypted.
fn overlay_device(inv: &Inventory) -> (&'static str, u16) {
    if inv.network.overlay.encrypt {
        (WIREGUARD_DEVICE, WIREGUARD_PORT)
    } else {
        (VXLAN_DEVICE, inv.network.overlay.port)
    }
}

async fn netfacts(
    n: &Node,
    renderer: &Renderer,
    device: &str,
    port: u16,
) -> anyhow::Result<NetFacts> {
    let script = renderer.render("netcheck/netfacts.sh", &tera::Context::new())?;
    let port = port.to_string();
    let cmd = script_command(&script, &[device, &port, &n.facts.interface, POD_BRIDGE]);
    let out = n.sudo_ok(&cmd).await?;
    Ok(NetFacts::parse(&out.stdout))
}

async fn prepare<'a>(
    n: &'a Node,
    nc: &NodeContext,
    renderer: &Renderer,
    local_binary: &std::path::Path,
    max_secs: u64,
    netns: bool,
) -> anyhow::Result<Prepared<'a>> {
    let binary = format!("{REMOTE_DIR}/director-boot");
    n.session
        .upload_file(local_binary, &binary, 0o755)
        .await
        .with_context(|| format!("uploading the probe to {binary}"))?;
    let script = renderer.render("netcheck/setup.sh", &tera_ctx(nc, &binary, max_secs, netns))?;
    let setup = format!("{REMOTE_DIR}/setup.sh");
    n.session
        .upload(script.as_bytes(), &setup, 0o755)
        .await
        .context("uploading the netcheck setup script")?;
    n.sudo_ok(&format!("sh {setup} up"))
        .await
        .context("starting the probe servers")?;
    Ok(Prepared {
        node: n,
        ctx: nc.clone(),
        overlay_ip: nc.netcheck_address,
        overlay_exec: format!("ip netns exec {NAMESPACE} {binary}"),
        binary,
    })
}

/// Build the probe image, side-load it, and start the DaemonSet: node -> (pod IP, exec prefix).
async fn start_pods(
    cp: Option<&Node>,
    ready: &BTreeMap<String, Prepared<'_>>,
    renderer: &Renderer,
    binary: &std::path::Path,
    cache_dir: &std::path::Path,
    max_secs: u64,
) -> anyhow::Result<BTreeMap<String, (std::net::IpAddr, String)>> {
    let cp = cp.context("no reachable control-plane host to run the DaemonSet from")?;
    let (b, c) = (binary.to_path_buf(), cache_dir.join("netcheck"));
    let image = tokio::task::spawn_blocking(move || super::probe_image::build(&b, &c))
        .await
        .context("building the probe image")??;
    let loads = futures::future::join_all(
        ready
            .values()
            .map(|p| super::pods::load_image(p.node, &image)),
    )
    .await;
    for (p, r) in ready.values().zip(loads) {
        r.with_context(|| format!("{}: side-loading {}", p.node.name(), image.reference))?;
    }
    super::pods::stop(cp).await?;
    let nodes: Vec<&Node> = ready.values().map(|p| p.node).collect();
    super::pods::start(
        cp,
        &nodes,
        renderer,
        &image,
        OVERLAY_PORT,
        max_secs,
        Duration::from_secs(90),
    )
    .await
}

async fn teardown(n: &Node) -> anyhow::Result<()> {
    let setup = format!("{REMOTE_DIR}/setup.sh");
    n.sudo_ok(&format!("[ ! -f {setup} ] || sh {setup} down"))
        .await?;
    Ok(())
}

/// One probe server: on the overlay (a pod or a namespace), or on the node itself.
struct Target {
    on_overlay: bool,
    server: std::net::IpAddr,
    port: u16,
    max_mtu: u32,
}

impl Target {
    fn overlay(from: &Prepared<'_>, to: &Prepared<'_>) -> Target {
        Target {
            on_overlay: true,
            server: to.overlay_ip,
            port: OVERLAY_PORT,
            max_mtu: from.ctx.overlay_mtu.max(to.ctx.overlay_mtu),
        }
    }

    fn underlay(from: &Prepared<'_>, to: &Prepared<'_>) -> Target {
        Target {
            on_overlay: false,
            server: to.ctx.address,
            port: UNDERLAY_PORT,
            max_mtu: from.ctx.underlay_mtu.max(to.ctx.underlay_mtu),
        }
    }
}

/// Run the probe client on `from` against `to`; never longer than `limit`.
async fn probe(
    from: &Prepared<'_>,
    to: &Target,
    tests: &str,
    opts: &Options,
    limit: Duration,
) -> Measurement {
    let Target {
        on_overlay,
        server,
        port,
        max_mtu,
    } = to;
    let exec = if *on_overlay {
        &from.overlay_exec
    } else {
        &from.binary
    };
    let cmd = format!(
        "{exec} probe client {server} --port {port} --json --tests {tests} --duration {} --streams {} --udp-bitrate {} --max-mtu {max_mtu} --timeout {}",
        opts.duration,
        opts.streams,
        opts.udp_bitrate,
        limit.as_secs().max(1)
    );
    match tokio::time::timeout(limit + Duration::from_secs(5), from.node.session.sudo(&cmd)).await {
        Err(_) => Measurement::failed(format!(
            "{}: the probe did not finish within {} s",
            from.node.name(),
            limit.as_secs() + 5
        )),
        Ok(Err(e)) => Measurement::failed(format!("{}: {e}", from.node.name())),
        Ok(Ok(out)) => match serde_json::from_str::<ProbeOutput>(out.stdout.trim()) {
            Ok(p) => {
                let m = p.into_measurement();
                if m.ok() {
                    m
                } else {
                    Measurement {
                        failed: Some(m.errors.join("; ")),
                        ..m
                    }
                }
            }
            Err(_) => Measurement::failed(format!(
                "{}: probe exited {}: {}",
                from.node.name(),
                out.exit_code,
                last_lines(&out.stderr, 3)
            )),
        },
    }
}

async fn vxlan_rx(n: &Node, device: &str) -> Option<u64> {
    let out = n
        .session
        .run(&format!(
            "cat /sys/class/net/{device}/statistics/rx_packets"
        ))
        .await
        .ok()?;
    out.stdout.trim().parse().ok()
}

fn judge(p: &mut PairResult, t: &Thresholds) {
    let mut failures = Vec::new();
    if let Some(why) = &p.overlay.failed {
        failures.push(format!("overlay: {why}"));
    } else {
        match p.efficiency {
            Some(e) if e < t.min_efficiency => failures.push(format!(
                "efficiency {:.0}% < {:.0}%",
                e * 100.0,
                t.min_efficiency * 100.0
            )),
            None => failures.push("no TCP figure for the overlay or the underlay".into()),
            _ => {}
        }
        if let Some(l) = p.overlay.udp_loss
            && l > t.max_udp_loss
        {
            failures.push(format!(
                "UDP loss {:.2}% > {:.2}%",
                l * 100.0,
                t.max_udp_loss * 100.0
            ));
        }
    }
    if p.diagnoses.iter().any(|d| d.code == "mtu") {
        failures.push("MTU problem".into());
    }
    p.passed = failures.is_empty();
    p.failures = failures;
}

pub async fn run(
    runner: &mut Runner,
    inv: &Inventory,
    cfg: &SshConfig,
    subnets: &BTreeMap<String, ipnet::IpNet>,
    opts: &Options,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let renderer = Renderer::new()?;
    let local_binary = match &opts.probe_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this program's own binary")?,
    };
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let pairs = select_pairs(&names, &opts.pairs);
    let tests_per_probe = 4 + u64::from(opts.streams > 1);
    // Long enough for every test of a pair, short enough that a stuck pair ends.
    let limit = opts
        .pair_timeout
        .max(Duration::from_secs(opts.duration * tests_per_probe + 10));
    let max_secs = (pairs.len() as u64 * 2 * limit.as_secs()).clamp(300, 86_400);

    let nodes = crate::fleet::open_nodes(runner, inv, cfg, false).await;
    let mut node_errors: Vec<(String, String)> = Vec::new();
    for name in &names {
        if !nodes.iter().any(|n| n.name() == name) {
            node_errors.push((name.clone(), "unreachable over SSH (see above)".into()));
        }
    }
    let ctxs = context::network_only(inv, subnets, &nodes)?;
    let overlay_mtu = ctxs.values().map(|c| c.overlay_mtu).min().unwrap_or(1450);
    let (device, device_port) = overlay_device(inv);
    let encrypted = inv.network.overlay.encrypt;
    let cp = nodes
        .iter()
        .find(|n| n.host.has_role(crate::inventory::HostRole::ControlPlane));

    // Everything after this point is undone by the teardown, also on Ctrl-C.
    let body = async {
        runner.say(&format!("[prepare] {} nodes", nodes.len()));
        let prepared = futures::future::join_all(nodes.iter().map(|n| {
            let nc = ctxs.get(n.name()).cloned();
            let (renderer, local_binary) = (&renderer, &local_binary);
            async move {
                let nc = nc.context("no node context")?;
                let facts = netfacts(n, renderer, device, device_port).await?;
                let netns = opts.mode != Mode::Pods;
                let p = prepare(n, &nc, renderer, local_binary, max_secs, netns).await?;
                anyhow::Ok((p, facts))
            }
        }))
        .await;
        let mut ready: BTreeMap<String, Prepared<'_>> = BTreeMap::new();
        let mut facts: BTreeMap<String, NetFacts> = BTreeMap::new();
        let mut errors = Vec::new();
        for (n, r) in nodes.iter().zip(prepared) {
            match r {
                Ok((p, f)) => {
                    runner.say(&format!(
                        "  {:<14} probe at {} (overlay) and {} (underlay)",
                        n.name(),
                        p.ctx.netcheck_address,
                        p.ctx.address
                    ));
                    facts.insert(n.name().to_string(), f);
                    ready.insert(n.name().to_string(), p);
                }
                Err(e) => {
                    runner.say(&format!("  {:<14} FAILED: {e:#}", n.name()));
                    errors.push((n.name().to_string(), format!("prepare: {e:#}")));
                }
            }
        }

        let want_pods = match opts.mode {
            Mode::Pods => true,
            Mode::Netns => false,
            Mode::Auto => opts.cluster_up,
        };
        let mut mode_used = "netns".to_string();
        if want_pods {
            runner.say("[pods] probe DaemonSet");
            match start_pods(
                cp,
                &ready,
                &renderer,
                &local_binary,
                &opts.cache_dir,
                max_secs,
            )
            .await
            {
                Ok(map) => {
                    mode_used = "pods".into();
                    for (name, p) in ready.iter_mut() {
                        if let Some((ip, exec)) = map.get(name) {
                            runner.say(&format!("  {name:<14} probe pod at {ip}"));
                            p.overlay_ip = *ip;
                            p.overlay_exec = exec.clone();
                        }
                    }
                }
                Err(e) if opts.mode == Mode::Pods => {
                    runner.say(&format!("  FAILED: {e:#}"));
                    for name in ready.keys() {
                        errors.push((name.clone(), format!("pods: {e:#}")));
                    }
                    ready.clear();
                }
                Err(e) => {
                    runner.say(&format!(
                        "  pods unavailable ({e:#}); measuring from namespaces on the pod bridges instead"
                    ));
                    mode_used = format!("netns (pods unavailable: {e:#})");
                }
            }
        }

        runner.say(&format!("[measure] {} pairs", pairs.len()));
        let mut results = Vec::new();
        let tests = if opts.streams > 1 {
            "tcp,tcp-multi,udp,rr,mtu"
        } else {
            "tcp,udp,rr,mtu"
        };
        for (a, b) in &pairs {
            let t0 = Instant::now();
            let (pa, pb) = (ready.get(a), ready.get(b));
            let unreachable = |n: &str| {
                let why = errors
                    .iter()
                    .chain(node_errors.iter())
                    .find(|(h, _)| h == n)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_else(|| "not prepared".into());
                Measurement::failed(format!("{n}: {why}"))
            };
            let (overlay, underlay, rx_delta) = match (pa, pb) {
                (Some(pa), Some(pb)) => {
                    let overlay = probe(pa, &Target::overlay(pa, pb), tests, opts, limit).await;
                    let underlay = probe(pa, &Target::underlay(pa, pb), tests, opts, limit).await;
                    // A dead overlay: does anything arrive at the receiver's VXLAN device?
                    let rx_delta = if overlay.ok() {
                        None
                    } else {
                        let before = vxlan_rx(pb.node, device).await;
                        let short = Duration::from_secs(3);
                        let _ = probe(pa, &Target::overlay(pa, pb), "rr", opts, short).await;
                        let after = vxlan_rx(pb.node, device).await;
                        match (before, after) {
                            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                            _ => None,
                        }
                    };
                    (overlay, underlay, rx_delta)
                }
                (None, _) => (unreachable(a), unreachable(a), None),
                (Some(_), None) => (unreachable(b), unreachable(b), None),
            };
            let efficiency = match (overlay.tcp_bps, underlay.tcp_bps) {
                (Some(o), Some(u)) if u > 0.0 => Some(o / u),
                _ => None,
            };
            let diagnoses = diagnose(&PairEvidence {
                from: a,
                to: b,
                overlay: &overlay,
                underlay: &underlay,
                from_facts: facts.get(a),
                to_facts: facts.get(b),
                to_vxlan_rx_delta: rx_delta,
                overlay_port: device_port,
                overlay_mtu,
                device,
                overhead: if encrypted {
                    context::WIREGUARD_OVERHEAD
                } else {
                    super::VXLAN_OVERHEAD
                },
            });
            let backend = facts
                .get(a)
                .and_then(|f| f.paths.get(b))
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            let mut p = PairResult {
                from: a.clone(),
                to: b.clone(),
                backend,
                encrypted,
                overlay,
                underlay,
                efficiency,
                passed: false,
                failures: Vec::new(),
                diagnoses,
                seconds: t0.elapsed().as_secs_f64(),
            };
            judge(&mut p, &opts.thresholds);
            runner.say(&format!(
                "  {a:>12} → {b:<12} {:<7} {} Gbit/s (underlay {}) {}{}  ({:.1} s)",
                p.backend,
                super::report::gbit(p.overlay.tcp_bps),
                super::report::gbit(p.underlay.tcp_bps),
                p.efficiency
                    .map_or("—".into(), |e| format!("{:.0}%", e * 100.0)),
                if p.passed { "" } else { "  FAIL" },
                p.seconds
            ));
            results.push(p);
        }
        let warnings: Vec<(String, String)> = facts
            .iter()
            .flat_map(|(n, f)| f.warnings().into_iter().map(move |w| (n.clone(), w)))
            .collect();
        (results, errors, mode_used, warnings)
    };

    let outcome = tokio::select! {
        r = body => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    runner.say("[cleanup]");
    if let Some(cp) = cp
        && opts.cluster_up
        && opts.mode != Mode::Netns
        && let Err(e) = super::pods::stop(cp).await
    {
        runner.say(&format!(
            "  {:<14} removing the probe DaemonSet failed: {e:#}",
            cp.name()
        ));
    }
    let downs = futures::future::join_all(nodes.iter().map(teardown)).await;
    for (n, r) in nodes.iter().zip(downs) {
        if let Err(e) = r {
            runner.say(&format!("  {:<14} cleanup failed: {e:#}", n.name()));
        }
    }
    let Some((results, errors, mode_used, node_warnings)) = outcome else {
        anyhow::bail!("interrupted; the probe servers and namespaces were removed");
    };
    node_errors.extend(errors);
    let passed = !results.is_empty() && results.iter().all(|p| p.passed);
    Ok(Report {
        cluster: inv.cluster_name.clone(),
        mode: mode_used,
        nodes: names,
        overlay_mtu,
        duration_secs: opts.duration,
        thresholds: opts.thresholds.clone(),
        pairs: results,
        node_errors,
        node_warnings,
        passed,
        started: started_at,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node{i}")).collect()
    }

    #[test]
    fn all_pairs_are_ordered_and_exclude_self() {
        let p = select_pairs(&names(3), &Pairs::All);
        assert_eq!(p.len(), 6);
        assert!(p.iter().all(|(a, b)| a != b));
    }

    #[test]
    fn a_ring_visits_every_node_once() {
        let p = select_pairs(&names(4), &Pairs::Ring);
        assert_eq!(p.len(), 4);
        assert_eq!(p[3], ("node4".into(), "node1".into()));
        assert_eq!(select_pairs(&names(1), &Pairs::Ring), Vec::new());
    }

    #[test]
    fn a_sample_is_deterministic_and_bounded() {
        let a = select_pairs(&names(10), &Pairs::Sample(7));
        assert_eq!(a.len(), 7);
        assert_eq!(a, select_pairs(&names(10), &Pairs::Sample(7)));
        assert_eq!(select_pairs(&names(3), &Pairs::Sample(50)).len(), 6);
    }

    #[test]
    fn pairs_parse() {
        assert_eq!("ring".parse::<Pairs>(), Ok(Pairs::Ring));
        assert_eq!("12".parse::<Pairs>(), Ok(Pairs::Sample(12)));
        assert!("0".parse::<Pairs>().is_err());
        assert!("some".parse::<Pairs>().is_err());
    }

    #[test]
    fn thresholds_decide_a_pair() {
        let t = Thresholds {
            min_efficiency: 0.8,
            max_udp_loss: 0.01,
        };
        let m = |tcp: f64, loss: f64| Measurement {
            tcp_bps: Some(tcp),
            udp_bps: Some(1e9),
            udp_loss: Some(loss),
            ..Measurement::default()
        };
        let mut p = PairResult {
            from: "a".into(),
            to: "b".into(),
            backend: "vxlan".into(),
            encrypted: false,
            overlay: m(8e9, 0.0),
            underlay: m(10e9, 0.0),
            efficiency: Some(0.8),
            passed: false,
            failures: vec![],
            diagnoses: vec![],
            seconds: 1.0,
        };
        judge(&mut p, &t);
        assert!(p.passed, "{:?}", p.failures);
        p.overlay.udp_loss = Some(0.05);
        p.efficiency = Some(0.5);
        judge(&mut p, &t);
        assert_eq!(p.failures.len(), 2, "{:?}", p.failures);
    }
}
