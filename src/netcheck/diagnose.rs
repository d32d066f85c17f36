//! Why a pair failed, from its measurements and both nodes' network facts: the failure modes a
//! VXLAN overlay meets in practice (blocked encapsulation port, MTU black holes, strict
//! rp_filter, forwarding off, FORWARD policy DROP, a missing device).

use super::facts::NetFacts;
use super::model::{Diagnosis, Measurement};

/// Everything known about one ordered pair when it is diagnosed.
pub struct PairEvidence<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub overlay: &'a Measurement,
    pub underlay: &'a Measurement,
    pub from_facts: Option<&'a NetFacts>,
    pub to_facts: Option<&'a NetFacts>,
    /// Growth of the receiver's VXLAN rx counter while the sender sent overlay traffic, when
    /// it was measured.
    pub to_vxlan_rx_delta: Option<u64>,
    pub overlay_port: u16,
    /// The MTU pods (or netcheck's namespaces) use on the overlay.
    pub overlay_mtu: u32,
    /// The overlay's device between hosts (dbvx0, or dbwg0 when encrypted) and the bytes its
    /// encapsulation adds.
    pub device: &'a str,
    pub overhead: u32,
}

fn diag(
    code: &'static str,
    host: Option<&str>,
    summary: String,
    fix: String,
    evidence: Vec<String>,
) -> Diagnosis {
    Diagnosis {
        code,
        host: host.map(str::to_string),
        summary,
        fix,
        evidence,
    }
}

/// The diagnoses for one pair (empty when nothing is wrong or nothing can be said).
pub fn diagnose(e: &PairEvidence<'_>) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let port = e.overlay_port;
    let nodes = [(e.from, e.from_facts), (e.to, e.to_facts)];

    // Broken before the overlay is even reached.
    for (host, facts) in nodes {
        let Some(f) = facts else { continue };
        if f.vxlan_state == "missing" || f.vxlan_state.is_empty() {
            out.push(diag(
                "overlay-device-missing",
                Some(host),
                format!("{host} has no overlay device ({})", e.device),
                "run `director-boot overlay up INVENTORY` (or `init`) to lay the overlay".into(),
                vec![format!(
                    "{host}: /sys/class/net/{} does not exist",
                    e.device
                )],
            ));
        } else if f.vxlan_state == "down" {
            out.push(diag(
                "overlay-device-down",
                Some(host),
                format!("{host}'s overlay device {} is down", e.device),
                format!(
                    "on {host}: `systemctl restart director-overlay` (or `director-boot overlay up INVENTORY`)"
                ),
                vec![format!("{host}: {} operstate down", e.device)],
            ));
        }
        if f.ip_forward == Some(false) {
            out.push(diag(
                "ip-forward",
                Some(host),
                format!("{host} does not forward IPv4 packets (net.ipv4.ip_forward=0)"),
                format!(
                    "on {host}: `sysctl -w net.ipv4.ip_forward=1` and keep it in /etc/sysctl.d (director-boot's node-prep role does)"
                ),
                vec![format!("{host}: net.ipv4.ip_forward=0")],
            ));
        }
    }

    let overlay_dead = !e.overlay.ok();
    if overlay_dead && e.underlay.ok() {
        // The encapsulation port: explicit rules first, then firewalld, then counters.
        let mut named = false;
        for (host, facts) in nodes {
            let Some(f) = facts else { continue };
            let rules = f.blocking_rules();
            if !rules.is_empty() {
                named = true;
                out.push(diag(
                    "blocked-overlay-port",
                    Some(host),
                    format!("{host} drops the overlay's VXLAN traffic (UDP port {port})"),
                    format!(
                        "on {host}: remove the rule (`iptables -D {}`) or allow UDP {port} from the other nodes",
                        rules[0].trim_start_matches("-A ")
                    ),
                    rules.iter().map(|r| format!("{host}: iptables {r}")).collect(),
                ));
            } else if f.firewalld_blocks(port) {
                named = true;
                out.push(diag(
                    "blocked-overlay-port",
                    Some(host),
                    format!("firewalld on {host} does not open the overlay's UDP port {port}"),
                    format!(
                        "on {host}: `firewall-cmd --permanent --add-port={port}/udp && firewall-cmd --reload` (director-boot's firewalld role does this on init)"
                    ),
                    vec![format!("{host}: firewalld ports: {}", f.firewalld_ports.join(" "))],
                ));
            }
        }
        if !named && e.to_vxlan_rx_delta == Some(0) {
            out.push(diag(
                "blocked-overlay-port",
                None,
                format!(
                    "overlay packets from {} never reach {}: UDP port {port} is blocked between them",
                    e.from, e.to
                ),
                format!(
                    "allow UDP {port} between the nodes in every firewall on the path (host firewalls, cloud security groups, hypervisor filters)"
                ),
                vec![format!(
                    "{}'s {} received 0 packets while {} sent to it; the underlay between them works",
                    e.to, e.device, e.from
                )],
            ));
        }
        for (host, facts) in nodes {
            if let Some(f) = facts
                && f.forward_policy == "DROP"
                && !f.db_forward_rule
            {
                out.push(diag(
                    "forward-drop",
                    Some(host),
                    format!("{host} drops forwarded packets (FORWARD policy DROP) and director-boot's accept rule for the pod CIDR is gone"),
                    "re-run `director-boot overlay up INVENTORY` (it restores the DIRECTOR-BOOT-FORWARD chain), and find what flushed it (a firewall service, Docker)".into(),
                    vec![format!("{host}: iptables -P FORWARD DROP, no -j DIRECTOR-BOOT-FORWARD")],
                ));
            }
        }
        for (host, facts) in nodes {
            if let Some(f) = facts
                && f.strict_rp_filter()
            {
                out.push(diag(
                    "rp-filter",
                    Some(host),
                    format!("{host} has strict reverse-path filtering (rp_filter=1), which drops overlay traffic arriving on an unexpected interface"),
                    format!("on {host}: `sysctl -w net.ipv4.conf.all.rp_filter=2` (loose) and keep it in /etc/sysctl.d"),
                    vec![format!(
                        "{host}: rp_filter all={:?} underlay={:?} {}={:?}",
                        f.rp_filter_all, f.rp_filter_underlay, e.device, f.rp_filter_vxlan
                    )],
                ));
            }
        }
    }

    // MTU: what got through with DF set against what the overlay promises.
    let mut mtu_evidence = Vec::new();
    if let Some(pmtu) = e.overlay.path_mtu
        && pmtu < e.overlay_mtu
    {
        mtu_evidence.push(format!(
            "overlay path MTU {} → {} is {pmtu}, below the overlay MTU {}",
            e.from, e.to, e.overlay_mtu
        ));
    }
    let tcp_stalled = e.overlay.tcp_bps.is_none_or(|b| b < 1e6)
        && e.overlay.rr_p50_us.is_some()
        && e.underlay.ok();
    if tcp_stalled {
        mtu_evidence.push(format!(
            "small requests cross the overlay but a TCP stream does not ({} → {})",
            e.from, e.to
        ));
    }
    let mut culprit: Option<(&str, String)> = None;
    for (host, facts) in nodes {
        let Some(f) = facts else { continue };
        if let (Some(u), Some(v)) = (f.underlay_mtu, f.vxlan_mtu) {
            let need = e.overlay_mtu + e.overhead;
            if u < need {
                culprit = Some((
                    host,
                    format!(
                        "{host}: underlay MTU {u} < overlay MTU {} + {} bytes of encapsulation",
                        e.overlay_mtu, e.overhead
                    ),
                ));
            } else if v > u.saturating_sub(e.overhead) {
                culprit = Some((
                    host,
                    format!(
                        "{host}: {} MTU {v} > underlay MTU {u} - {}",
                        e.device, e.overhead
                    ),
                ));
            }
        }
    }
    if !mtu_evidence.is_empty() || (culprit.is_some() && (overlay_dead || tcp_stalled)) {
        let (host, fix) = match &culprit {
            Some((h, why)) => {
                mtu_evidence.push(why.clone());
                (
                    Some(*h),
                    format!(
                        "make every node's underlay MTU equal, or set `network.overlay.mtu` in the inventory to the smallest underlay MTU - {} and re-run `director-boot init`",
                        super::VXLAN_OVERHEAD
                    ),
                )
            }
            None => (
                None,
                format!(
                    "something on the path between {} and {} has a smaller MTU than the nodes (or drops ICMP 'fragmentation needed'): set `network.overlay.mtu` to the path MTU - {} and re-run `director-boot init`",
                    e.from,
                    e.to,
                    super::VXLAN_OVERHEAD
                ),
            ),
        };
        out.push(diag(
            "mtu",
            host,
            format!(
                "MTU problem between {} and {}: large overlay packets are lost",
                e.from, e.to
            ),
            fix,
            mtu_evidence,
        ));
    }

    if overlay_dead && !e.underlay.ok() {
        out.push(diag(
            "underlay",
            None,
            format!(
                "{} cannot reach {} even on the underlay (host to host): {}",
                e.from,
                e.to,
                e.underlay
                    .failed
                    .clone()
                    .unwrap_or_else(|| e.underlay.errors.join("; "))
            ),
            "check that the node is up and that the hosts reach each other (routes, host firewall)"
                .into(),
            e.underlay.errors.clone(),
        ));
    }
    out
}

/// Why pod → Service failed: `direct_ok` says whether the same two pods reach each other
/// without the Service; `evidence` is what kube-proxy on `proxy_node` (the client's node for a
/// ClusterIP, the dialled node for a NodePort) shows.
pub fn service_path(
    kind: &str,
    from: &str,
    to: &str,
    proxy_node: &str,
    direct_ok: bool,
    error: &str,
    mut evidence: Vec<String>,
) -> Vec<Diagnosis> {
    if !error.is_empty() {
        evidence.insert(0, format!("probe: {error}"));
    }
    let what = if kind == "nodeport" {
        "NodePort"
    } else {
        "ClusterIP"
    };
    if !direct_ok {
        return vec![diag(
            "service-pod-path",
            Some(to),
            format!(
                "the pod on {from} does not reach the probe pod on {to} even without the Service: \
                 the pod-to-pod failure (see that pair) explains the {what} failure"
            ),
            format!("fix the pod-to-pod path {from} → {to} first"),
            evidence,
        )];
    }
    let unit_down = evidence
        .iter()
        .any(|e| e.contains("kube-proxy unit") && !e.ends_with("unit active"));
    let no_rules = evidence
        .iter()
        .any(|e| e.contains(" 0 iptables NAT rules mention"));
    let summary = if unit_down {
        format!("kube-proxy is not running on {proxy_node}: nothing translates the {what}")
    } else if no_rules {
        format!("kube-proxy on {proxy_node} has no NAT rule for the {what}")
    } else {
        format!(
            "the pod on {from} reaches the probe pod on {to} directly but not through the {what}"
        )
    };
    vec![diag(
        "service-path",
        Some(proxy_node),
        summary,
        format!(
            "on {proxy_node}: `systemctl status kube-proxy`, `journalctl -u kube-proxy`, \
             `iptables-save -t nat | grep KUBE-` (the Service's rules), and that \
             br_netfilter is loaded with net.bridge.bridge-nf-call-iptables=1"
        ),
        evidence,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Measurement {
        Measurement {
            tcp_bps: Some(9e9),
            udp_bps: Some(2e9),
            udp_loss: Some(0.0),
            rr_p50_us: Some(60.0),
            rr_p99_us: Some(120.0),
            path_mtu: Some(1450),
            ..Measurement::default()
        }
    }

    fn facts() -> NetFacts {
        NetFacts {
            ip_forward: Some(true),
            rp_filter_all: Some(0),
            rp_filter_underlay: Some(2),
            underlay_mtu: Some(1500),
            vxlan_mtu: Some(1450),
            vxlan_state: "unknown".into(),
            vxlan_port: Some(8472),
            forward_policy: "ACCEPT".into(),
            db_forward_rule: true,
            br_netfilter: true,
            ..NetFacts::default()
        }
    }

    fn evidence<'a>(
        overlay: &'a Measurement,
        underlay: &'a Measurement,
        a: &'a NetFacts,
        b: &'a NetFacts,
        rx: Option<u64>,
    ) -> PairEvidence<'a> {
        PairEvidence {
            from: "node1",
            to: "node3",
            overlay,
            underlay,
            from_facts: Some(a),
            to_facts: Some(b),
            to_vxlan_rx_delta: rx,
            overlay_port: 8472,
            overlay_mtu: 1450,
            device: "dbvx0",
            overhead: super::super::VXLAN_OVERHEAD,
        }
    }

    #[test]
    fn a_healthy_pair_has_no_diagnosis() {
        let (o, u, a, b) = (good(), good(), facts(), facts());
        assert!(diagnose(&evidence(&o, &u, &a, &b, Some(40))).is_empty());
    }

    #[test]
    fn an_iptables_drop_on_the_receiver_is_named_with_its_rule() {
        let o = Measurement::failed("connect timeout");
        let u = good();
        let a = facts();
        let mut b = facts();
        b.port_rules = vec!["[9:100] -A INPUT -p udp -m udp --dport 8472 -j DROP".into()];
        let d = diagnose(&evidence(&o, &u, &a, &b, Some(0)));
        assert_eq!(d[0].code, "blocked-overlay-port");
        assert_eq!(d[0].host.as_deref(), Some("node3"));
        assert!(
            d[0].fix
                .contains("iptables -D INPUT -p udp -m udp --dport 8472 -j DROP"),
            "{}",
            d[0].fix
        );
    }

    #[test]
    fn silent_loss_of_the_port_is_diagnosed_from_the_counters() {
        let (o, u, a, b) = (Measurement::failed("timeout"), good(), facts(), facts());
        let d = diagnose(&evidence(&o, &u, &a, &b, Some(0)));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "blocked-overlay-port");
        assert!(d[0].summary.contains("never reach node3"));
    }

    #[test]
    fn firewalld_without_the_port_is_named() {
        let (o, u, a) = (Measurement::failed("timeout"), good(), facts());
        let mut b = facts();
        b.firewalld_running = true;
        b.firewalld_ports = vec!["6443/tcp".into()];
        let d = diagnose(&evidence(&o, &u, &a, &b, None));
        assert!(d[0].summary.contains("firewalld on node3"), "{d:?}");
    }

    #[test]
    fn a_small_underlay_mtu_is_an_mtu_problem_on_that_host() {
        let mut o = good();
        o.path_mtu = Some(1400);
        o.tcp_bps = None;
        let (u, a) = (good(), facts());
        let mut b = facts();
        b.underlay_mtu = Some(1400);
        let d = diagnose(&evidence(&o, &u, &a, &b, Some(10)));
        let m = d.iter().find(|d| d.code == "mtu").expect("mtu diagnosis");
        assert_eq!(m.host.as_deref(), Some("node3"));
        assert!(m.evidence.iter().any(|e| e.contains("underlay MTU 1400")));
    }

    #[test]
    fn a_path_mtu_below_the_overlay_mtu_is_reported_without_a_culprit() {
        let mut o = good();
        o.path_mtu = Some(1300);
        let (u, a, b) = (good(), facts(), facts());
        let d = diagnose(&evidence(&o, &u, &a, &b, None));
        assert_eq!(d[0].code, "mtu");
        assert_eq!(d[0].host, None);
    }

    #[test]
    fn forwarding_off_and_strict_rp_filter_are_named() {
        let (o, u) = (Measurement::failed("timeout"), good());
        let mut a = facts();
        a.ip_forward = Some(false);
        let mut b = facts();
        b.rp_filter_all = Some(1);
        b.rp_filter_underlay = Some(1);
        let d = diagnose(&evidence(&o, &u, &a, &b, Some(5)));
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert!(codes.contains(&"ip-forward"), "{codes:?}");
        assert!(codes.contains(&"rp-filter"), "{codes:?}");
    }

    #[test]
    fn forward_drop_without_our_rule_is_named() {
        let (o, u, a) = (Measurement::failed("timeout"), good(), facts());
        let mut b = facts();
        b.forward_policy = "DROP".into();
        b.db_forward_rule = false;
        let d = diagnose(&evidence(&o, &u, &a, &b, Some(4)));
        assert!(d.iter().any(|d| d.code == "forward-drop"), "{d:?}");
        b.db_forward_rule = true;
        let d = diagnose(&evidence(&o, &u, &a, &b, Some(4)));
        assert!(!d.iter().any(|d| d.code == "forward-drop"), "{d:?}");
    }

    #[test]
    fn a_dead_underlay_is_not_blamed_on_the_overlay() {
        let (o, u, a, b) = (
            Measurement::failed("timeout"),
            Measurement::failed("node3: connect timeout"),
            facts(),
            facts(),
        );
        let d = diagnose(&evidence(&o, &u, &a, &b, None));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "underlay");
    }

    #[test]
    fn a_service_failure_names_kube_proxy_or_the_pod_path() {
        let ev = |active: &str, rules: u32| {
            vec![
                format!("node1: kube-proxy unit {active}"),
                format!("node1: {rules} iptables NAT rules mention 10.96.0.9"),
            ]
        };
        let d = service_path(
            "clusterip",
            "node1",
            "node2",
            "node1",
            true,
            "refused",
            ev("inactive", 0),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "service-path");
        assert!(
            d[0].summary.contains("not running on node1"),
            "{}",
            d[0].summary
        );
        assert_eq!(d[0].evidence[0], "probe: refused");
        let d = service_path(
            "nodeport",
            "node1",
            "node2",
            "node3",
            true,
            "",
            ev("active", 0),
        );
        assert!(
            d[0].summary.contains("no NAT rule for the NodePort"),
            "{}",
            d[0].summary
        );
        let d = service_path(
            "clusterip",
            "node1",
            "node2",
            "node1",
            true,
            "",
            ev("active", 4),
        );
        assert!(
            d[0].summary.contains("directly but not through"),
            "{}",
            d[0].summary
        );
        let d = service_path("clusterip", "node1", "node2", "node1", false, "x", vec![]);
        assert_eq!(d[0].code, "service-pod-path");
    }
}
