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
use super::model::{Measurement, PairResult, Report, Scope, ServiceResult, Thresholds, ratio};
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

/// A family of checks beside the cross-node pairs, which `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// Two probe endpoints on each node (a second probe pod, or a second namespace).
    SameNode,
    /// Pod to a ClusterIP Service and to a NodePort, through kube-proxy (pods mode).
    Services,
    /// Both directions of a pair at once.
    Bidir,
    /// Connection rate (connect/request/response/close per second).
    Crr,
}

pub struct Options {
    pub pairs: Pairs,
    pub duration: u64,
    /// Seconds of the connection-rate test (0 = not run).
    pub crr_duration: u64,
    /// Checks left out.
    pub skip: Vec<Extra>,
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
    /// The node's second measuring point on its pod bridge (same-node pair), when there is one.
    peer_ip: Option<std::net::IpAddr>,
}

impl Options {
    fn wants(&self, e: Extra) -> bool {
        !self.skip.contains(&e) && (e != Extra::Crr || self.crr_duration > 0)
    }

    /// The probe's `--tests` for a cross-node pair.
    fn pair_tests(&self) -> String {
        let mut t = vec!["tcp"];
        if self.streams > 1 {
            t.push("tcp-multi");
        }
        t.extend(["udp", "rr", "mtu"]);
        if self.wants(Extra::Crr) {
            t.push("crr");
        }
        t.join(",")
    }

    /// The tests of a same-node pair: no underlay, so no UDP-loss or MTU verdict either, and
    /// one stream is what a pod pair on one bridge shows (more would only share the CPU).
    fn same_node_tests(&self) -> String {
        let mut t = vec!["tcp", "rr"];
        if self.wants(Extra::Crr) {
            t.push("crr");
        }
        t.join(",")
    }

    /// Through a Service: TCP only (the probe's UDP and MTU tests need no kube-proxy).
    fn service_tests(&self) -> String {
        if self.wants(Extra::Crr) {
            "tcp,rr,crr".into()
        } else {
            "tcp,rr".into()
        }
    }
}

/// The address below `ip` (the peer namespace sits just under netcheck's own, in the range
/// the pod IPAM never hands out).
fn address_below(ip: std::net::IpAddr) -> Option<std::net::IpAddr> {
    match ip {
        std::net::IpAddr::V4(a) => u32::from(a)
            .checked_sub(1)
            .map(|x| std::net::IpAddr::V4(x.into())),
        std::net::IpAddr::V6(a) => u128::from(a)
            .checked_sub(1)
            .map(|x| std::net::IpAddr::V6(x.into())),
    }
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

fn tera_ctx(
    nc: &NodeContext,
    binary: &str,
    max_secs: u64,
    netns: bool,
    peer: Option<std::net::IpAddr>,
) -> tera::Context {
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
            "peer_address": peer.map(|p| p.to_string()).unwrap_or_default(),
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
    same_node: bool,
) -> anyhow::Result<Prepared<'a>> {
    let peer = if netns && same_node {
        address_below(nc.netcheck_address)
    } else {
        None
    };
    let binary = format!("{REMOTE_DIR}/director-boot");
    n.session
        .upload_file(local_binary, &binary, 0o755)
        .await
        .with_context(|| format!("uploading the probe to {binary}"))?;
    let script = renderer.render(
        "netcheck/setup.sh",
        &tera_ctx(nc, &binary, max_secs, netns, peer),
    )?;
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
        peer_ip: peer,
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
    peer: bool,
) -> anyhow::Result<super::pods::PodProbes> {
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
        &super::pods::PodSpec {
            image: &image,
            port: OVERLAY_PORT,
            max_secs,
            peer,
        },
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

    /// The node's second endpoint on its own pod bridge.
    fn peer(on: &Prepared<'_>, peer: std::net::IpAddr) -> Target {
        Target {
            on_overlay: true,
            server: peer,
            port: OVERLAY_PORT,
            max_mtu: on.ctx.overlay_mtu,
        }
    }

    /// A Service address, dialled from `from`'s pod.
    fn service(from: &Prepared<'_>, server: std::net::IpAddr, port: u16) -> Target {
        Target {
            on_overlay: true,
            server,
            port,
            max_mtu: from.ctx.overlay_mtu,
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
        "{exec} probe client {server} --port {port} --json --tests {tests} --duration {} --crr-duration {} --streams {} --udp-bitrate {} --max-mtu {max_mtu} --timeout {}",
        opts.duration,
        opts.crr_duration.max(1),
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

/// The single-stream TCP figures of a second sample, in place of the first's.
fn take_tcp_sample(m: &mut Measurement, sample: &Measurement) {
    m.tcp_bps = sample.tcp_bps;
    m.tcp_sender_cpu_s_per_gbit = sample.tcp_sender_cpu_s_per_gbit;
    m.tcp_receiver_cpu_s_per_gbit = sample.tcp_receiver_cpu_s_per_gbit;
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

/// A same-node pair has nothing to be compared with: it fails only when it does not work.
fn judge_same_node(p: &mut PairResult) {
    p.failures = match &p.overlay.failed {
        Some(why) => vec![format!("same node: {why}")],
        None => Vec::new(),
    };
    p.passed = p.failures.is_empty();
}

/// A Service path fails when it does not connect at all; its figures are reported, not judged.
fn judge_service(s: &mut ServiceResult) {
    s.failures = match &s.measurement.failed {
        Some(why) => vec![format!("{} {}: {why}", s.kind, s.address)],
        None if s.measurement.tcp_bps.is_none() && s.measurement.rr_p50_us.is_none() => {
            vec![format!(
                "{} {}: no test got through ({})",
                s.kind,
                s.address,
                s.measurement.errors.join("; ")
            )]
        }
        None => Vec::new(),
    };
    s.passed = s.failures.is_empty();
}

/// The Service check's pods: a client on the first measured pair's sending node, the endpoint
/// on its receiving node, and for the NodePort a third node when there is one (the hop a
/// client outside the cluster takes when it picks any node).
fn service_nodes<'p>(
    pairs: &'p [(String, String)],
    ready: &[&'p String],
) -> Option<(&'p str, &'p str, &'p str)> {
    let (a, b) = pairs
        .iter()
        .find(|(a, b)| ready.contains(&a) && ready.contains(&b))?;
    let via = ready
        .iter()
        .find(|n| **n != a && **n != b)
        .map_or(b.as_str(), |n| n.as_str());
    Some((a, b, via))
}

/// Wait until a Service address answers a probe from `from` (kube-proxy programs new
/// Services within its sync period): at most `wait`. `Err` holds the last probe's error.
async fn service_ready(
    from: &Prepared<'_>,
    to: &Target,
    opts: &Options,
    wait: Duration,
) -> Result<(), String> {
    let until = Instant::now() + wait;
    loop {
        let m = probe(from, to, "rr", opts, Duration::from_secs(5)).await;
        if m.rr_p50_us.is_some() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(m
                .failed
                .unwrap_or_else(|| m.errors.join("; "))
                .trim()
                .to_string());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What kube-proxy on `n` shows for a Service address: whether its unit is active and how many
/// NAT rules mention the address (`ip` for a ClusterIP, `:port` of a NodePort).
async fn kube_proxy_evidence(n: &Node, needle: &str) -> Vec<String> {
    let cmd = format!(
        "systemctl is-active kube-proxy 2>/dev/null; \
         (iptables-save -t nat 2>/dev/null || true) | grep -c -- {} || true",
        crate::node::shell_quote(needle)
    );
    match n.session.sudo(&cmd).await {
        Ok(out) => {
            let mut lines = out.stdout.lines();
            let active = lines.next().unwrap_or("").trim().to_string();
            let rules = lines.next().unwrap_or("").trim().to_string();
            vec![
                format!("{}: kube-proxy unit {active}", n.name()),
                format!("{}: {rules} iptables NAT rules mention {needle}", n.name()),
            ]
        }
        Err(e) => vec![format!("{}: cannot look at kube-proxy: {e}", n.name())],
    }
}

/// Both directions of every measured pair at once, on the overlay and on the underlay: a
/// single-stream TCP test from each end to the other, started together. Measured once per
/// node pair and shown on both of its ordered pairs.
async fn bidirectional(
    runner: &mut Runner,
    ready: &BTreeMap<String, Prepared<'_>>,
    results: &mut [PairResult],
    opts: &Options,
    limit: Duration,
) {
    let mut done: Vec<(String, String)> = Vec::new();
    let unordered: Vec<(String, String)> = results
        .iter()
        .filter(|p| p.overlay.ok())
        .map(|p| {
            if p.from < p.to {
                (p.from.clone(), p.to.clone())
            } else {
                (p.to.clone(), p.from.clone())
            }
        })
        .collect();
    if unordered.is_empty() {
        return;
    }
    runner.say("[both directions at once]");
    for (a, b) in unordered {
        if done.contains(&(a.clone(), b.clone())) {
            continue;
        }
        let (Some(pa), Some(pb)) = (ready.get(&a), ready.get(&b)) else {
            continue;
        };
        let (to_b, to_a) = (Target::overlay(pa, pb), Target::overlay(pb, pa));
        let (o_ab, o_ba) = tokio::join!(
            probe(pa, &to_b, "tcp", opts, limit),
            probe(pb, &to_a, "tcp", opts, limit)
        );
        let (to_b, to_a) = (Target::underlay(pa, pb), Target::underlay(pb, pa));
        let (u_ab, u_ba) = tokio::join!(
            probe(pa, &to_b, "tcp", opts, limit),
            probe(pb, &to_a, "tcp", opts, limit)
        );
        for p in results.iter_mut() {
            let (fwd, rev) = if p.from == a && p.to == b {
                ((&o_ab, &u_ab), (&o_ba, &u_ba))
            } else if p.from == b && p.to == a {
                ((&o_ba, &u_ba), (&o_ab, &u_ab))
            } else {
                continue;
            };
            p.overlay.bidir_out_bps = fwd.0.tcp_bps;
            p.overlay.bidir_in_bps = rev.0.tcp_bps;
            p.underlay.bidir_out_bps = fwd.1.tcp_bps;
            p.underlay.bidir_in_bps = rev.1.tcp_bps;
            for (m, path) in [
                (fwd.0, "overlay"),
                (rev.0, "overlay"),
                (fwd.1, "underlay"),
                (rev.1, "underlay"),
            ] {
                if let Some(why) = &m.failed {
                    let e = format!("bidir ({path}): {why}");
                    if path == "overlay" {
                        p.overlay.errors.push(e);
                    } else {
                        p.underlay.errors.push(e);
                    }
                }
            }
            p.bidir_efficiency = ratio(p.overlay.bidir_total_bps(), p.underlay.bidir_total_bps());
        }
        runner.say(&format!(
            "  {a:>12} ⇄ {b:<12} overlay {} + {} Gbit/s, underlay {} + {} Gbit/s",
            super::report::gbit(o_ab.tcp_bps),
            super::report::gbit(o_ba.tcp_bps),
            super::report::gbit(u_ab.tcp_bps),
            super::report::gbit(u_ba.tcp_bps),
        ));
        done.push((a, b));
    }
}

/// Pod to ClusterIP and pod to NodePort, with a Service whose only endpoint is the probe pod
/// on `to`; compared with the same two pods measured directly (the cross-node pair).
async fn measure_services(
    cp: &Node,
    ready: &BTreeMap<String, Prepared<'_>>,
    renderer: &Renderer,
    (from, to, via): (&str, &str, &str),
    pairs: &[PairResult],
    opts: &Options,
    limit: Duration,
) -> Vec<ServiceResult> {
    let (Some(pa), Some(pb), Some(pv)) = (ready.get(from), ready.get(to), ready.get(via)) else {
        return Vec::new();
    };
    let direct = pairs
        .iter()
        .find(|p| p.from == from && p.to == to)
        .map(|p| p.overlay.clone())
        .unwrap_or_default();
    let base = |kind: &str, address: String, via: Option<String>| ServiceResult {
        kind: kind.into(),
        from: from.into(),
        to: to.into(),
        via,
        address,
        measurement: Measurement::default(),
        direct_tcp_bps: direct.tcp_bps,
        direct_rr_p50_us: direct.rr_p50_us,
        direct_crr_per_sec: direct.crr_per_sec,
        passed: false,
        failures: Vec::new(),
        diagnoses: Vec::new(),
        seconds: 0.0,
    };
    let (cluster_ip, node_port) =
        match super::pods::expose(cp, renderer, pb.overlay_ip, to, OVERLAY_PORT).await {
            Ok(x) => x,
            Err(e) => {
                let mut s = base("clusterip", "-".into(), None);
                s.measurement = Measurement::failed(format!("creating the Service: {e:#}"));
                judge_service(&mut s);
                return vec![s];
            }
        };
    let tests = opts.service_tests();
    let mut out = Vec::new();
    for (kind, target, dial_from, address, via_node) in [
        (
            "clusterip",
            Target::service(pa, cluster_ip, OVERLAY_PORT),
            pa,
            format!("{cluster_ip}:{OVERLAY_PORT}"),
            None,
        ),
        (
            "nodeport",
            Target::service(pa, pv.ctx.address, node_port),
            pv,
            format!("{}:{node_port}", pv.ctx.address),
            Some(via.to_string()),
        ),
    ] {
        let t0 = Instant::now();
        let mut s = base(kind, address, via_node);
        s.measurement = match service_ready(pa, &target, opts, Duration::from_secs(15)).await {
            Ok(()) => probe(pa, &target, &tests, opts, limit).await,
            Err(last) => Measurement::failed(format!(
                "no probe answer from {from}'s pod through the {kind} within 15 s (last: {last})"
            )),
        };
        judge_service(&mut s);
        if !s.passed {
            let needle = if kind == "clusterip" {
                cluster_ip.to_string()
            } else {
                format!("--dport {node_port}")
            };
            let evidence = kube_proxy_evidence(dial_from.node, &needle).await;
            s.diagnoses = super::diagnose::service_path(
                kind,
                from,
                to,
                dial_from.node.name(),
                direct.ok(),
                s.measurement.failed.as_deref().unwrap_or(""),
                evidence,
            );
        }
        s.seconds = t0.elapsed().as_secs_f64();
        out.push(s);
    }
    out
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
    let limit = opts.pair_timeout.max(Duration::from_secs(
        opts.duration * tests_per_probe + opts.crr_duration + 10,
    ));
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
                let same_node = opts.wants(Extra::SameNode);
                let p = prepare(n, &nc, renderer, local_binary, max_secs, netns, same_node).await?;
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
                opts.wants(Extra::SameNode),
            )
            .await
            {
                Ok(map) => {
                    mode_used = "pods".into();
                    for (name, p) in ready.iter_mut() {
                        if let Some((ip, exec)) = map.main.get(name) {
                            let peer = map.peer.get(name);
                            runner.say(&format!(
                                "  {name:<14} probe pod at {ip}{}",
                                peer.map_or(String::new(), |p| format!(", second one at {p}"))
                            ));
                            p.overlay_ip = *ip;
                            p.overlay_exec = exec.clone();
                            p.peer_ip = peer.copied();
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
        let tests = opts.pair_tests();
        let tests = tests.as_str();
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
            let (mut overlay, mut underlay) = (overlay, underlay);
            let mut efficiency = ratio(overlay.tcp_bps, underlay.tcp_bps);
            let mut remeasured = false;
            // One sample can land on a moment when another process holds the CPU; a pair
            // below the bar gets a second sample before it is judged, as a user rerunning
            // iperf3 would.
            if let (Some(pa), Some(pb), Some(e)) = (pa, pb, efficiency)
                && e < opts.thresholds.min_efficiency
                && overlay.ok()
            {
                let o2 = probe(pa, &Target::overlay(pa, pb), "tcp", opts, limit).await;
                let u2 = probe(pa, &Target::underlay(pa, pb), "tcp", opts, limit).await;
                remeasured = true;
                if let Some(e2) = ratio(o2.tcp_bps, u2.tcp_bps)
                    && e2 > e
                {
                    take_tcp_sample(&mut overlay, &o2);
                    take_tcp_sample(&mut underlay, &u2);
                    efficiency = Some(e2);
                }
            }
            let multi_efficiency = ratio(overlay.tcp_multi_bps, underlay.tcp_multi_bps);
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
                scope: Scope::CrossNode,
                from: a.clone(),
                to: b.clone(),
                backend,
                encrypted,
                overlay,
                underlay,
                efficiency,
                multi_efficiency,
                bidir_efficiency: None,
                remeasured,
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
            if p.remeasured {
                runner.say("               (below the bar at first: measured twice, the better sample kept)");
            }
            results.push(p);
        }

        if opts.wants(Extra::Bidir) {
            bidirectional(runner, &ready, &mut results, opts, limit).await;
        }

        let mut same_node = Vec::new();
        let mut skipped = Vec::new();
        if opts.wants(Extra::SameNode) {
            runner.say(&format!("[same node] {} nodes", ready.len()));
            let tests = opts.same_node_tests();
            for (name, p) in &ready {
                let Some(peer) = p.peer_ip else {
                    continue;
                };
                let t0 = Instant::now();
                let overlay = probe(p, &Target::peer(p, peer), &tests, opts, limit).await;
                let mut r = PairResult {
                    scope: Scope::SameNode,
                    from: name.clone(),
                    to: name.clone(),
                    backend: "bridge".into(),
                    encrypted: false,
                    overlay,
                    underlay: Measurement::default(),
                    efficiency: None,
                    multi_efficiency: None,
                    bidir_efficiency: None,
                    remeasured: false,
                    passed: false,
                    failures: Vec::new(),
                    diagnoses: Vec::new(),
                    seconds: t0.elapsed().as_secs_f64(),
                };
                judge_same_node(&mut r);
                runner.say(&format!(
                    "  {name:>12} ⇄ {peer:<15} {} Gbit/s, RR p50 {} µs, {} conn/s{}  ({:.1} s)",
                    super::report::gbit(r.overlay.tcp_bps),
                    r.overlay
                        .rr_p50_us
                        .map_or("—".into(), |v| format!("{v:.0}")),
                    r.overlay
                        .crr_per_sec
                        .map_or("—".into(), |v| format!("{v:.0}")),
                    if r.passed { "" } else { "  FAIL" },
                    r.seconds
                ));
                same_node.push(r);
            }
        }

        let mut services = Vec::new();
        if opts.wants(Extra::Services) {
            if mode_used != "pods" {
                skipped.push(
                    "services: Services are measured in pods mode only (--mode pods)".to_string(),
                );
            } else if let Some(cp) = cp {
                let names: Vec<&String> = ready.keys().collect();
                match service_nodes(&pairs, &names) {
                    None => skipped.push("services: no pair of two ready nodes".into()),
                    Some((a, b, via)) => {
                        runner.say("[services] ClusterIP and NodePort through kube-proxy");
                        services = measure_services(
                            cp,
                            &ready,
                            &renderer,
                            (a, b, via),
                            &results,
                            opts,
                            limit,
                        )
                        .await;
                        for s in &services {
                            runner.say(&format!(
                                "  {:>12} → {:<9} {:<21} → {:<10} {} Gbit/s, RR p50 {} µs, {} conn/s{}",
                                s.from,
                                s.kind,
                                s.address,
                                s.to,
                                super::report::gbit(s.measurement.tcp_bps),
                                s.measurement.rr_p50_us.map_or("—".into(), |v| format!("{v:.0}")),
                                s.measurement.crr_per_sec.map_or("—".into(), |v| format!("{v:.0}")),
                                if s.passed { "" } else { "  FAIL" },
                            ));
                        }
                    }
                }
            } else {
                skipped.push("services: no reachable control-plane host".into());
            }
        }
        let warnings: Vec<(String, String)> = facts
            .iter()
            .flat_map(|(n, f)| f.warnings().into_iter().map(move |w| (n.clone(), w)))
            .collect();
        (
            results, errors, mode_used, warnings, same_node, services, skipped,
        )
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
    let Some((results, errors, mode_used, node_warnings, same_node, services, skipped)) = outcome
    else {
        anyhow::bail!("interrupted; the probe servers and namespaces were removed");
    };
    node_errors.extend(errors);
    let passed = !results.is_empty()
        && results.iter().all(|p| p.passed)
        && same_node.iter().all(|p| p.passed)
        && services.iter().all(|s| s.passed);
    Ok(Report {
        cluster: inv.cluster_name.clone(),
        mode: mode_used,
        nodes: names,
        overlay_mtu,
        duration_secs: opts.duration,
        crr_duration_secs: if opts.wants(Extra::Crr) {
            opts.crr_duration
        } else {
            0
        },
        thresholds: opts.thresholds.clone(),
        pairs: results,
        same_node,
        services,
        skipped,
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
            scope: Scope::CrossNode,
            from: "a".into(),
            to: "b".into(),
            backend: "vxlan".into(),
            encrypted: false,
            overlay: m(8e9, 0.0),
            underlay: m(10e9, 0.0),
            efficiency: Some(0.8),
            multi_efficiency: None,
            bidir_efficiency: None,
            remeasured: false,
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

    fn opts(skip: Vec<Extra>, crr: u64, streams: u32) -> Options {
        Options {
            pairs: Pairs::All,
            duration: 1,
            crr_duration: crr,
            skip,
            streams,
            udp_bitrate: 1_000_000_000,
            thresholds: Thresholds {
                min_efficiency: 0.5,
                max_udp_loss: 0.05,
            },
            probe_binary: None,
            pair_timeout: Duration::from_secs(60),
            mode: Mode::Pods,
            cluster_up: true,
            cache_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn tests_per_path_follow_the_options() {
        let o = opts(vec![], 1, 4);
        assert_eq!(o.pair_tests(), "tcp,tcp-multi,udp,rr,mtu,crr");
        assert_eq!(o.same_node_tests(), "tcp,rr,crr");
        assert_eq!(o.service_tests(), "tcp,rr,crr");
        // --crr-duration 0 or --skip crr leave the connection-rate test out everywhere.
        for o in [opts(vec![], 0, 1), opts(vec![Extra::Crr], 1, 1)] {
            assert_eq!(o.pair_tests(), "tcp,udp,rr,mtu");
            assert_eq!(o.same_node_tests(), "tcp,rr");
            assert_eq!(o.service_tests(), "tcp,rr");
            assert!(!o.wants(Extra::Crr));
        }
        let o = opts(vec![Extra::SameNode, Extra::Services], 1, 4);
        assert!(!o.wants(Extra::SameNode) && !o.wants(Extra::Services));
        assert!(o.wants(Extra::Bidir));
    }

    #[test]
    fn the_peer_namespace_sits_just_below_netchecks_own() {
        let ip: std::net::IpAddr = "10.244.1.254".parse().unwrap();
        assert_eq!(address_below(ip), Some("10.244.1.253".parse().unwrap()));
        let v6: std::net::IpAddr = "fd00::1:ff".parse().unwrap();
        assert_eq!(address_below(v6), Some("fd00::1:fe".parse().unwrap()));
        assert_eq!(address_below("0.0.0.0".parse().unwrap()), None);
    }

    #[test]
    fn same_node_pairs_fail_only_when_they_do_not_connect() {
        let mut p = PairResult {
            scope: Scope::SameNode,
            from: "a".into(),
            to: "a".into(),
            backend: "bridge".into(),
            encrypted: false,
            // Slow, lossy, no underlay: still a pass, figures are reported as they are.
            overlay: Measurement {
                tcp_bps: Some(1e6),
                ..Measurement::default()
            },
            underlay: Measurement::default(),
            efficiency: None,
            multi_efficiency: None,
            bidir_efficiency: None,
            remeasured: false,
            passed: false,
            failures: vec![],
            diagnoses: vec![],
            seconds: 1.0,
        };
        judge_same_node(&mut p);
        assert!(p.passed, "{:?}", p.failures);
        p.overlay = Measurement::failed("connect refused");
        judge_same_node(&mut p);
        assert!(!p.passed);
        assert_eq!(p.failures, vec!["same node: connect refused".to_string()]);
    }

    #[test]
    fn a_service_fails_only_when_nothing_gets_through() {
        let mut s = ServiceResult {
            kind: "clusterip".into(),
            from: "a".into(),
            to: "b".into(),
            via: None,
            address: "10.96.0.10:5299".into(),
            measurement: Measurement {
                tcp_bps: Some(1e8),
                rr_p50_us: Some(900.0),
                ..Measurement::default()
            },
            direct_tcp_bps: Some(1e10),
            direct_rr_p50_us: Some(100.0),
            direct_crr_per_sec: None,
            passed: false,
            failures: vec![],
            diagnoses: vec![],
            seconds: 1.0,
        };
        judge_service(&mut s);
        assert!(s.passed, "100x slower than direct is reported, not failed");
        s.measurement = Measurement {
            errors: vec!["tcp (connect_timeout): x".into()],
            ..Measurement::default()
        };
        judge_service(&mut s);
        assert!(!s.passed);
        assert!(
            s.failures[0].contains("no test got through"),
            "{:?}",
            s.failures
        );
        s.measurement = Measurement::failed("connection refused");
        judge_service(&mut s);
        assert_eq!(
            s.failures,
            vec!["clusterip 10.96.0.10:5299: connection refused".to_string()]
        );
    }

    #[test]
    fn services_use_the_first_ready_pair_and_a_third_node_for_the_nodeport() {
        let pairs = select_pairs(&names(3), &Pairs::All);
        let n: Vec<String> = names(3);
        let ready: Vec<&String> = n.iter().collect();
        assert_eq!(
            service_nodes(&pairs, &ready),
            Some(("node1", "node2", "node3"))
        );
        // Two nodes: the NodePort is dialled on the endpoint's own node.
        let ready2: Vec<&String> = n.iter().take(2).collect();
        assert_eq!(
            service_nodes(&pairs, &ready2),
            Some(("node1", "node2", "node2"))
        );
        let ready1: Vec<&String> = n.iter().take(1).collect();
        assert_eq!(service_nodes(&pairs, &ready1), None);
    }
}
