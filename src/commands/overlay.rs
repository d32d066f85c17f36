//! `director-boot overlay up|status|expose`: the pod network on its own.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::connect::load_inventory;
use crate::cli::OverlayCommand;
use crate::cluster_state::ClusterState;
use crate::engine::context::{self, NodeContext, POD_BRIDGE, VXLAN_DEVICE, WIREGUARD_DEVICE};
use crate::engine::render::Renderer;
use crate::engine::runner::Runner;
use crate::fleet::{open_nodes, ssh_config};
use crate::inventory::{Backend, Inventory};
use crate::node::Node;
use crate::paths::Paths;

pub async fn run(
    paths: &Paths,
    command: OverlayCommand,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        OverlayCommand::Up {
            inventory,
            dry_run,
            artifacts,
            ssh,
        } => {
            super::init::run(
                paths,
                super::init::InitArgs {
                    inventory: &inventory,
                    dry_run,
                    artifacts,
                    skip_preflight: Vec::new(),
                    merge_kubeconfig: false,
                    ssh: &ssh,
                    json,
                    verbose,
                    only_phases: Some(crate::engine::action::init::OVERLAY_COMPONENTS),
                    only_hosts: None,
                    command: "overlay up",
                    rotate_wireguard: None,
                },
            )
            .await
        }
        OverlayCommand::RotateKeys {
            inventory,
            hosts,
            dry_run,
            ssh,
        } => {
            let inv = load_inventory(&inventory)?;
            if !inv.network.overlay.encrypt {
                anyhow::bail!(
                    "{}: network.overlay.encrypt is not true: the overlay has no WireGuard keys to rotate",
                    inventory.display()
                );
            }
            if let Some(bad) = hosts
                .iter()
                .find(|h| !inv.hosts.iter().any(|x| &x.name == *h))
            {
                anyhow::bail!("--hosts: {bad} is not a host of {}", inventory.display());
            }
            super::init::run(
                paths,
                super::init::InitArgs {
                    inventory: &inventory,
                    dry_run,
                    artifacts: None,
                    skip_preflight: Vec::new(),
                    merge_kubeconfig: false,
                    ssh: &ssh,
                    json,
                    verbose,
                    only_phases: Some(crate::engine::action::init::OVERLAY_COMPONENTS),
                    only_hosts: None,
                    command: "overlay rotate-keys",
                    rotate_wireguard: Some(hosts),
                },
            )
            .await
        }
        OverlayCommand::Status { inventory, ssh } => {
            let inv = load_inventory(&inventory)?;
            let cfg = ssh_config(paths, &inv, &ssh.fleet())?;
            let subnets = recorded_subnets(paths, &inv, &inventory)?;
            let mut runner = Runner::new(false, ssh.concurrency as usize, verbose, json, None);
            let nodes = open_nodes(&mut runner, &inv, &cfg, false).await;
            let ctxs = context::network_only(&inv, &subnets, &nodes)?;
            let renderer = Renderer::new()?;
            let script = renderer.render("overlay/status.sh", &tera::Context::new())?;
            let mut rows = Vec::new();
            for h in &inv.hosts {
                let st = match (nodes.iter().find(|n| n.name() == h.name), ctxs.get(&h.name)) {
                    (Some(n), Some(nc)) => {
                        match host_status(n, &script, nc.overlay_encrypt).await {
                            Ok(raw) => compare(nc, &raw),
                            Err(e) => HostStatus::unreachable(&h.name, &format!("{e:#}")),
                        }
                    }
                    _ => HostStatus::unreachable(&h.name, "unreachable over SSH"),
                };
                rows.push(st);
            }
            let healthy = rows.iter().all(|r| r.problems.is_empty());
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.host.clone(),
                            r.device.clone(),
                            r.mtu.map_or("—".into(), |m| m.to_string()),
                            format!("{}/{}", r.peers_ok, r.peers_expected),
                            r.address.clone().unwrap_or_else(|| "—".into()),
                            peer_paths(r),
                            if r.problems.is_empty() {
                                "ok".into()
                            } else {
                                r.problems.join("; ")
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::output::table(
                        &[
                            "HOST",
                            "DEVICE",
                            "MTU",
                            "PEERS",
                            "OVERLAY ADDRESS",
                            "PATHS",
                            "STATUS"
                        ],
                        &table
                    )
                );
                for r in &rows {
                    for line in &r.repairs {
                        println!("{}: repaired {line}", r.host);
                    }
                }
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        OverlayCommand::Expose {
            inventory,
            host,
            ssh,
        } => {
            let inv = load_inventory(&inventory)?;
            if !inv.hosts.iter().any(|h| h.name == host) {
                anyhow::bail!(
                    "{host}: no such host in {}; hosts: {}",
                    inventory.display(),
                    inv.hosts
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            // Converge the overlay on that host (its bridge address is part of it).
            let code = super::init::run(
                paths,
                super::init::InitArgs {
                    inventory: &inventory,
                    dry_run: false,
                    artifacts: None,
                    skip_preflight: Vec::new(),
                    merge_kubeconfig: false,
                    ssh: &ssh,
                    json: false,
                    verbose,
                    only_phases: Some(&["overlay"]),
                    only_hosts: Some(vec![host.clone()]),
                    command: "overlay expose",
                    rotate_wireguard: None,
                },
            )
            .await?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            let cfg = ssh_config(paths, &inv, &ssh.fleet())?;
            let subnets = recorded_subnets(paths, &inv, &inventory)?;
            let h = inv
                .hosts
                .iter()
                .find(|h| h.name == host)
                .context("host vanished")?;
            let peer = crate::fleet::peer_of(&inv, h);
            let node = Node::open(h, &peer, &cfg, false).await?;
            let nc = context::network_only(&inv, &subnets, std::slice::from_ref(&node))?
                .remove(&host)
                .context("no node context")?;
            let have = node
                .session
                .run(&format!("ip -4 -o addr show dev {POD_BRIDGE}"))
                .await?;
            let want = nc.pod_gateway.to_string();
            if !have.stdout.contains(&format!("inet {want}/")) {
                anyhow::bail!(
                    "{host}: the pod bridge {POD_BRIDGE} does not carry {want} after converging; check `journalctl -u director-overlay` on {host}"
                );
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"host": host, "address": want, "subnet": nc.pod_subnet})
                );
            } else {
                println!(
                    "{host} is on the overlay at {want} (subnet {}): pods reach services on {host} at {want}, and {host} reaches pods from it. It stays after a reboot.",
                    nc.pod_subnet
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `node2=direct node3=vxlan`: how each peer's pods are reached (`+wg` when encrypted).
fn peer_paths(r: &HostStatus) -> String {
    if r.peers.is_empty() {
        return "—".into();
    }
    r.peers
        .iter()
        .map(|p| {
            format!(
                "{}={}{}",
                p.name,
                p.path,
                if p.encrypted && p.path != "wireguard" {
                    "+wg"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pod subnets `init`/`overlay up` recorded for the inventory's cluster.
pub(super) fn recorded_subnets(
    paths: &Paths,
    inv: &Inventory,
    inventory: &std::path::Path,
) -> anyhow::Result<BTreeMap<String, ipnet::IpNet>> {
    let state = ClusterState::new(paths, &inv.cluster_name);
    state.subnets()?.with_context(|| {
        format!(
            "no overlay recorded for cluster {} ({} is missing): run `director-boot init {}` (or `overlay up`) first",
            inv.cluster_name,
            state.subnets_file().display(),
            inventory.display()
        )
    })
}

async fn host_status(n: &Node, script: &str, encrypted: bool) -> anyhow::Result<String> {
    let wg = if encrypted { WIREGUARD_DEVICE } else { "" };
    let cmd = crate::node::script_command(script, &[VXLAN_DEVICE, POD_BRIDGE, wg]);
    // Root: the WireGuard device's state comes from its configuration socket or netlink.
    Ok(n.session.sudo(&cmd).await?.stdout)
}

/// One peer of the host's WireGuard device, as `director-wg show` prints it.
#[derive(Debug, serde::Deserialize)]
struct WgPeer {
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    latest_handshake: i64,
}

#[derive(Debug, serde::Deserialize)]
struct WgShow {
    #[serde(default)]
    peers: Vec<WgPeer>,
}

/// WireGuard says a session is stale after 180 s without a handshake (REJECT_AFTER_TIME); with
/// traffic it re-handshakes every 120 s.
const WG_STALE_SECS: i64 = 180;

#[derive(Debug, Serialize, PartialEq)]
pub struct HostStatus {
    pub host: String,
    /// `up`, `down`, `missing` or `unknown`.
    pub device: String,
    pub mtu: Option<u32>,
    pub peers_expected: usize,
    /// Peers whose path (route, and for VXLAN the neighbour and FDB entry) is in place.
    pub peers_ok: usize,
    pub address: Option<String>,
    /// One entry per peer: how its pods are reached from this host.
    pub peers: Vec<PeerStatus>,
    /// The self-repair timer is running.
    pub repair_timer: bool,
    /// The last fixes the self-repair timer made (newest last): drift it found and put right.
    pub repairs: Vec<String>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    /// The pair's setting: `auto`, `vxlan` or `direct`.
    pub backend: String,
    /// What the host uses now: `direct`, `vxlan`, or `unknown` before the overlay ran.
    pub path: String,
    /// Pod traffic to this peer is encrypted.
    pub encrypted: bool,
    pub ok: bool,
    /// Seconds since the last WireGuard handshake with this peer (encrypted; none yet: null).
    pub handshake_age_secs: Option<i64>,
}

impl HostStatus {
    fn unreachable(host: &str, why: &str) -> HostStatus {
        HostStatus {
            host: host.into(),
            device: "unknown".into(),
            mtu: None,
            peers_expected: 0,
            peers_ok: 0,
            address: None,
            peers: Vec::new(),
            repair_timer: false,
            repairs: Vec::new(),
            problems: vec![why.into()],
        }
    }
}

fn sections(raw: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut cur = "";
    for line in raw.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            cur = name.trim();
            out.entry(cur).or_default();
        } else if !line.trim().is_empty() {
            out.entry(cur).or_default().push(line);
        }
    }
    out
}

fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == key {
            return it.next();
        }
    }
    None
}

/// What the host has against what its context says it should have.
pub fn compare(nc: &NodeContext, raw: &str) -> HostStatus {
    let s = sections(raw);
    let get = |k: &str| s.get(k).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let link = get("link");
    let (device, mtu) = match link.first() {
        None => {
            let dev = if nc.overlay_encrypt {
                WIREGUARD_DEVICE
            } else {
                VXLAN_DEVICE
            };
            problems.push(format!("no {dev}: run `director-boot overlay up`"));
            ("missing".to_string(), None)
        }
        Some(l) => {
            let up = l.contains(",UP") || l.contains("<UP");
            let mtu = word_after(l, "mtu").and_then(|m| m.parse::<u32>().ok());
            // A VXLAN device keeps to what its underlay can carry (pods of an all-direct host
            // may use the underlay's whole MTU).
            let want = if nc.overlay_encrypt {
                nc.overlay_mtu
            } else {
                nc.overlay_mtu
                    .min(nc.underlay_mtu.saturating_sub(context::VXLAN_OVERHEAD))
            };
            if mtu != Some(want) {
                problems.push(format!(
                    "MTU {} (want {want})",
                    mtu.map_or("?".into(), |m| m.to_string()),
                ));
            }
            if !up {
                problems.push("device down".into());
            }
            (if up { "up" } else { "down" }.to_string(), mtu)
        }
    };
    let routes = get("routes");
    let neigh = get("neigh");
    let fdb = get("fdb");
    let decided = get("decided");
    let wg: Option<WgShow> = get("wireguard")
        .first()
        .and_then(|l| serde_json::from_str(l).ok());
    if nc.overlay_encrypt && wg.is_none() {
        problems.push(format!(
            "no WireGuard device {WIREGUARD_DEVICE} answers: run `director-boot overlay up` (journalctl -u director-wireguard)"
        ));
    }
    let now: Option<i64> = get("now").first().and_then(|l| l.trim().parse().ok());
    let mut ok = 0;
    let mut peers = Vec::new();
    for p in &nc.peers {
        let subnet = p.pod_subnet.to_string();
        let vtep = p.vtep_address.to_string();
        let dst = p.address.to_string();
        let path = decided
            .iter()
            .find(|l| l.split_whitespace().next() == Some(p.name.as_str()))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("unknown")
            .to_string();
        let route = routes
            .iter()
            .find(|l| l.split_whitespace().next() == Some(subnet.as_str()));
        let r = route.is_some_and(|l| match path.as_str() {
            "direct" => word_after(l, "via") == Some(dst.as_str()),
            "vxlan" => word_after(l, "dev") == Some(VXLAN_DEVICE),
            "wireguard" => word_after(l, "dev") == Some(WIREGUARD_DEVICE),
            _ => true,
        });
        if nc.overlay_encrypt {
            // A WireGuard peer routing the peer's pod subnet, and how fresh its session is.
            let wp = wg
                .as_ref()
                .and_then(|w| w.peers.iter().find(|x| x.allowed_ips.contains(&subnet)));
            let good = r && wp.is_some();
            if good {
                ok += 1;
            } else {
                let missing: Vec<&str> = [(r, "route"), (wp.is_some(), "WireGuard peer")]
                    .iter()
                    .filter(|(has, _)| !has)
                    .map(|(_, w)| *w)
                    .collect();
                problems.push(format!("{}: missing {}", p.name, missing.join("+")));
            }
            let handshake = wp.map(|x| x.latest_handshake).filter(|h| *h > 0);
            peers.push(PeerStatus {
                name: p.name.clone(),
                backend: p.backend.to_string(),
                path,
                encrypted: true,
                ok: good,
                handshake_age_secs: handshake.zip(now).map(|(h, n)| (n - h).max(0)),
            });
            if let (Some(age), true) = (peers.last().and_then(|x| x.handshake_age_secs), good)
                && age > WG_STALE_SECS
            {
                problems.push(format!(
                    "{}: last WireGuard handshake {age} s ago (no session: is the peer up, UDP {} open?)",
                    p.name,
                    crate::engine::context::WIREGUARD_PORT
                ));
            }
            continue;
        }
        let n = neigh
            .iter()
            .any(|l| l.split_whitespace().next() == Some(&vtep) && l.contains(&p.vtep_mac));
        let f = fdb.iter().any(|l| {
            l.split_whitespace().next() == Some(&p.vtep_mac) && word_after(l, "dst") == Some(&dst)
        });
        let good = r && n && f;
        if good {
            ok += 1;
        } else {
            let missing: Vec<&str> = [(r, "route"), (n, "neighbour"), (f, "fdb")]
                .iter()
                .filter(|(has, _)| !has)
                .map(|(_, w)| *w)
                .collect();
            problems.push(format!("{}: missing {}", p.name, missing.join("+")));
        }
        if p.backend == Backend::Direct && path == "vxlan" {
            problems.push(format!(
                "{}: backend direct, but {dst} is not on this host's segment (its route has a gateway), so VXLAN carries it: set overlay_backend to auto or vxlan",
                p.name
            ));
        }
        peers.push(PeerStatus {
            name: p.name.clone(),
            backend: p.backend.to_string(),
            path,
            encrypted: false,
            ok: good,
            handshake_age_secs: None,
        });
    }
    let known: Vec<String> = nc.peers.iter().map(|p| p.pod_subnet.to_string()).collect();
    for l in &routes {
        if let Some(dst) = l.split_whitespace().next()
            && !known.iter().any(|k| k == dst)
        {
            problems.push(format!("stale route {dst} (a removed host?)"));
        }
    }
    let repair_timer = get("timer").first().map(|s| s.trim()) == Some("active");
    if !repair_timer {
        problems.push(
            "director-overlay-repair.timer is not active (drift would not be repaired): run `director-boot overlay up`"
                .into(),
        );
    }
    let repairs: Vec<String> = get("repairs").iter().map(|l| l.to_string()).collect();
    let want = format!("inet {}/{}", nc.pod_gateway, nc.pod_prefix_len);
    let address = get("bridge")
        .iter()
        .any(|l| l.contains(&want))
        .then(|| nc.pod_gateway.to_string());
    if address.is_none() {
        problems.push(format!("{POD_BRIDGE} lacks {}", nc.pod_gateway));
    }
    if get("sysctl").first().map(|s| s.trim()) != Some("1") {
        problems.push("net.ipv4.ip_forward is off".into());
    }
    if get("unit").first().map(|s| s.trim()) != Some("enabled") {
        problems.push(
            "director-overlay.service not enabled (the overlay would not come back after a reboot)"
                .into(),
        );
    }
    HostStatus {
        host: nc.name.clone(),
        device,
        mtu,
        peers_expected: nc.peers.len(),
        peers_ok: ok,
        address,
        peers,
        repair_timer,
        repairs,
        problems,
    }
}
