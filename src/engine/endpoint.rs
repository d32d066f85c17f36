//! Preflight for the control-plane endpoint (`cluster.control_plane_endpoint`).
//!
//! A virtual IP director-boot manages must be an address of the control planes' own subnet
//! (VRRP moves it between hosts on one segment) that no other machine uses; an external load
//! balancer or DNS name must resolve, and should answer.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::preflight::{Check, Verdict};
use crate::inventory::ControlPlaneEndpoint;
use crate::node::Node;

/// The name of these checks for `--skip-preflight`.
pub const CHECK: &str = "endpoint";

fn check(verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name: CHECK,
        verdict,
        detail: detail.into(),
    }
}

/// The prefixes of `ip -o addr show dev IFACE` output (`... inet 10.0.0.5/24 ...`).
pub fn interface_networks(ip_addr_output: &str) -> Vec<IpNet> {
    ip_addr_output
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.parse::<IpNet>().ok()
        })
        .collect()
}

/// Whether director-boot's VRRP unit runs on this host.
pub async fn vrrp_running(node: &Node) -> bool {
    node.sudo_ok("systemctl is-active --quiet director-apiserver-vip")
        .await
        .is_ok()
}

/// On a control plane: the VIP must be in its underlay subnet, and free unless our own VRRP
/// unit already runs here or on another control plane (`cluster_vrrp`: a re-run, or a control
/// plane joining a running cluster; then one of the control planes holds it).
pub async fn vip_checks(node: &Node, vip: IpAddr, cluster_vrrp: bool) -> Vec<Check> {
    let iface = &node.facts.interface;
    let q = crate::node::shell_quote(iface);
    let nets = match node.sudo_ok(&format!("ip -o addr show dev {q}")).await {
        Ok(out) => interface_networks(&out.stdout),
        Err(e) => return vec![check(Verdict::Fail, format!("cannot read {iface}: {e}"))],
    };
    let mut out = Vec::new();
    match nets.iter().find(|n| n.contains(&vip)) {
        Some(net) => out.push(check(
            Verdict::Pass,
            format!("VIP {vip} is in {iface}'s subnet {}", net.trunc()),
        )),
        None => out.push(check(
            Verdict::Fail,
            format!(
                "VIP {vip} is not in {iface}'s subnet ({}): VRRP can only move an address \
                 within the control planes' segment; choose a free address there, or an \
                 external load balancer (control_plane_endpoint: {{address: NAME, vip: false}})",
                nets.iter()
                    .map(|n| n.trunc().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
    // Ours already (re-run)? Then whoever answers is one of us.
    if cluster_vrrp || vrrp_running(node).await {
        return out;
    }
    let ping = if vip.is_ipv6() { "ping -6" } else { "ping" };
    // An answer to ping, or a neighbour entry with a link-layer address after trying (a host
    // that drops ping still answers ARP), means another machine has it.
    let probe = format!(
        "{ping} -c 1 -W 1 {vip} >/dev/null 2>&1 && echo answered; \
         ip neigh show {vip} | grep -q lladdr && echo neighbour; true"
    );
    match node.sudo_ok(&probe).await {
        Ok(o) if o.stdout.contains("answered") || o.stdout.contains("neighbour") => {
            out.push(check(
                Verdict::Fail,
                format!(
                    "VIP {vip} is already in use on this network (it answers{}): another \
                     machine holds it; choose a free address for control_plane_endpoint",
                    if o.stdout.contains("neighbour") {
                        " ARP"
                    } else {
                        " ping"
                    }
                ),
            ))
        }
        Ok(_) => out.push(check(Verdict::Pass, format!("VIP {vip} is free"))),
        Err(e) => out.push(check(
            Verdict::Warn,
            format!("could not probe whether VIP {vip} is free: {e}"),
        )),
    }
    out
}

/// From this machine: an external endpoint must resolve; one that does not answer yet is only
/// a warning (its load balancer may wait for API servers that do not exist yet).
pub async fn external_check(endpoint: &ControlPlaneEndpoint) -> Check {
    let target = endpoint.host_port();
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host(&target).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return check(
                Verdict::Fail,
                format!(
                    "control_plane_endpoint {target} does not resolve ({e}): create its DNS \
                     record (or load balancer) first"
                ),
            );
        }
    };
    for a in &addrs {
        let connect = tokio::net::TcpStream::connect(a);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
            return check(Verdict::Pass, format!("{target} answers at {a}"));
        }
    }
    check(
        Verdict::Warn,
        format!(
            "control_plane_endpoint {target} does not accept connections yet: it must send \
             port {} to the control planes' port 6443",
            endpoint.port
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_interface_networks() {
        let out = "2: host0    inet 10.213.0.11/24 brd 10.213.0.255 scope global host0\\       valid_lft forever preferred_lft forever\n\
                   2: host0    inet 10.213.0.10/32 scope global host0\n\
                   2: host0    inet6 fe80::1/64 scope link \n";
        let nets = interface_networks(out);
        assert_eq!(
            nets,
            vec![
                "10.213.0.11/24".parse::<IpNet>().unwrap(),
                "10.213.0.10/32".parse().unwrap(),
                "fe80::1/64".parse().unwrap()
            ]
        );
        assert!(nets[0].contains(&"10.213.0.10".parse::<IpAddr>().unwrap()));
    }
}
