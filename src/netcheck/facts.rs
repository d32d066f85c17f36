//! The network facts of one node that a diagnosis reads, parsed from
//! `templates/netcheck/netfacts.sh` (KEY=value lines).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NetFacts {
    pub kernel: String,
    /// peer -> how this host reaches its pods (`direct`, `vxlan`), from the overlay script.
    pub paths: BTreeMap<String, String>,
    pub ip_forward: Option<bool>,
    pub rp_filter_all: Option<u8>,
    pub rp_filter_underlay: Option<u8>,
    pub rp_filter_vxlan: Option<u8>,
    /// Bridged traffic can pass iptables: the kernel has br_netfilter (built in or loaded),
    /// seen by its sysctl `net/bridge/bridge-nf-call-iptables` existing.
    pub br_netfilter: bool,
    /// `/sys/module/br_netfilter` exists (a loaded module; absent for a built-in one).
    pub br_netfilter_module: bool,
    pub bridge_nf_call_iptables: Option<bool>,
    pub underlay_mtu: Option<u32>,
    pub vxlan_mtu: Option<u32>,
    pub bridge_mtu: Option<u32>,
    /// `missing` when the VXLAN device does not exist.
    pub vxlan_state: String,
    pub vxlan_rx_packets: u64,
    pub vxlan_tx_packets: u64,
    pub vxlan_port: Option<u16>,
    pub forward_policy: String,
    pub input_policy: String,
    /// director-boot's FORWARD accept rule for the pod CIDR is in place.
    pub db_forward_rule: bool,
    pub firewalld_running: bool,
    /// Ports firewalld opens (runtime list plus the director-boot service), e.g. `8472/udp`.
    pub firewalld_ports: Vec<String>,
    /// iptables rules that mention the overlay port, as `iptables-save -c` prints them.
    pub port_rules: Vec<String>,
}

fn flag(v: Option<&String>) -> Option<bool> {
    v.and_then(|s| s.trim().parse::<u8>().ok()).map(|n| n != 0)
}

fn num<T: std::str::FromStr>(v: Option<&String>) -> Option<T> {
    v.and_then(|s| s.trim().parse().ok())
}

impl NetFacts {
    pub fn parse(text: &str) -> NetFacts {
        let mut kv: BTreeMap<String, String> = BTreeMap::new();
        let mut rules = Vec::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            if k.starts_with("rule.") {
                rules.push(v.trim().to_string());
            } else {
                kv.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let s = |k: &str| kv.get(k).cloned().unwrap_or_default();
        NetFacts {
            kernel: s("kernel"),
            paths: s("paths")
                .split_whitespace()
                .filter_map(|w| w.split_once(':'))
                .map(|(peer, path)| (peer.to_string(), path.to_string()))
                .collect(),
            ip_forward: flag(kv.get("ip_forward")),
            rp_filter_all: num(kv.get("rp_filter_all")),
            rp_filter_underlay: num(kv.get("rp_filter_underlay")),
            rp_filter_vxlan: num(kv.get("rp_filter_vxlan")),
            br_netfilter: flag(kv.get("bridge_nf_call_iptables")).is_some(),
            br_netfilter_module: s("br_netfilter_module") == "1",
            bridge_nf_call_iptables: flag(kv.get("bridge_nf_call_iptables")),
            underlay_mtu: num(kv.get("underlay_mtu")),
            vxlan_mtu: num(kv.get("vxlan_mtu")),
            bridge_mtu: num(kv.get("bridge_mtu")),
            vxlan_state: s("vxlan_state"),
            vxlan_rx_packets: num(kv.get("vxlan_rx_packets")).unwrap_or(0),
            vxlan_tx_packets: num(kv.get("vxlan_tx_packets")).unwrap_or(0),
            vxlan_port: num(kv.get("vxlan_port")),
            forward_policy: s("forward_policy"),
            input_policy: s("input_policy"),
            db_forward_rule: s("db_forward_rule") == "1",
            firewalld_running: s("firewalld") == "running",
            firewalld_ports: s("firewalld_ports")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            port_rules: rules,
        }
    }

    /// Rules that drop or reject the overlay port (what `iptables -A INPUT -p udp --dport
    /// 8472 -j DROP` leaves behind), without the counters.
    pub fn blocking_rules(&self) -> Vec<String> {
        self.port_rules
            .iter()
            .filter(|r| r.contains("-p udp") || r.contains("-p 17"))
            .filter(|r| r.contains("-j DROP") || r.contains("-j REJECT"))
            .map(|r| strip_counters(r).to_string())
            .collect()
    }

    /// firewalld runs and does not open the overlay port.
    pub fn firewalld_blocks(&self, port: u16) -> bool {
        let want = format!("{port}/udp");
        self.firewalld_running && !self.firewalld_ports.iter().any(|p| p == &want)
    }

    /// Problems of the node that break Kubernetes networking even when every pair passes
    /// (Services need bridged traffic to go through iptables).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.br_netfilter {
            w.push("br_netfilter is neither built into the kernel nor loaded (no /proc/sys/net/bridge/bridge-nf-call-iptables): Service traffic between pods on one node bypasses kube-proxy's rules (`modprobe br_netfilter`, and list it in /etc/modules-load.d)".to_string());
        } else if self.bridge_nf_call_iptables == Some(false) {
            w.push("net.bridge.bridge-nf-call-iptables=0: Service traffic between pods on one node bypasses kube-proxy's rules (`sysctl -w net.bridge.bridge-nf-call-iptables=1`)".to_string());
        }
        w
    }

    /// rp_filter in strict mode (1) where the overlay's traffic passes: the kernel takes the max
    /// of `all` and the interface.
    pub fn strict_rp_filter(&self) -> bool {
        let all = self.rp_filter_all.unwrap_or(0);
        [self.rp_filter_vxlan, self.rp_filter_underlay]
            .iter()
            .any(|v| all.max(v.unwrap_or(0)) == 1)
    }
}

/// `[12:3456] -A INPUT ...` -> `-A INPUT ...`
fn strip_counters(rule: &str) -> &str {
    if rule.starts_with('[')
        && let Some(i) = rule.find("] ")
    {
        return &rule[i + 2..];
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "kernel=6.1.0-40-amd64\nip_forward=1\nrp_filter_all=0\nrp_filter_underlay=2\n\
rp_filter_vxlan=missing\nbr_netfilter_module=1\nbridge_nf_call_iptables=1\nunderlay_mtu=1500\nvxlan_mtu=1450\n\
bridge_mtu=1450\nvxlan_state=unknown\nvxlan_rx_packets=120\nvxlan_tx_packets=99\nvxlan_port=8472\n\
udp_in_errors=0\nforward_policy=DROP\ninput_policy=ACCEPT\nfirewalld=absent\n\
rule.1=[7:2156] -A INPUT -p udp -m udp --dport 8472 -j DROP\n\
rule.2=[0:0] -A INPUT -p tcp -m tcp --dport 8472 -j ACCEPT\n";

    fn with(module: &str, sysctl: &str) -> NetFacts {
        let text = SAMPLE
            .replace(
                "br_netfilter_module=1",
                &format!("br_netfilter_module={module}"),
            )
            .replace(
                "bridge_nf_call_iptables=1",
                &format!("bridge_nf_call_iptables={sysctl}"),
            );
        NetFacts::parse(&text)
    }

    #[test]
    fn br_netfilter_built_in_is_seen_by_its_sysctl() {
        // Built in: no /sys/module/br_netfilter, but the sysctl is there.
        let f = with("0", "1");
        assert!(f.br_netfilter && !f.br_netfilter_module);
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
    }

    #[test]
    fn br_netfilter_loaded_as_a_module_passes() {
        let f = with("1", "1");
        assert!(f.br_netfilter && f.br_netfilter_module);
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
    }

    #[test]
    fn br_netfilter_absent_warns_and_off_warns_about_the_sysctl() {
        let w = with("0", "missing").warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("neither built into the kernel nor loaded"),
            "{w:?}"
        );
        let w = with("1", "0").warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("bridge-nf-call-iptables=0"), "{w:?}");
    }

    #[test]
    fn parses_the_script_output() {
        let f = NetFacts::parse(SAMPLE);
        assert_eq!(f.ip_forward, Some(true));
        assert_eq!(f.rp_filter_vxlan, None);
        assert_eq!(f.underlay_mtu, Some(1500));
        assert_eq!(f.vxlan_mtu, Some(1450));
        assert_eq!(f.vxlan_rx_packets, 120);
        assert_eq!(f.vxlan_port, Some(8472));
        assert_eq!(f.forward_policy, "DROP");
        assert!(!f.firewalld_running);
        assert_eq!(f.port_rules.len(), 2);
    }

    #[test]
    fn finds_rules_that_drop_the_port() {
        let f = NetFacts::parse(SAMPLE);
        assert_eq!(
            f.blocking_rules(),
            vec!["-A INPUT -p udp -m udp --dport 8472 -j DROP".to_string()]
        );
    }

    #[test]
    fn firewalld_without_the_port_blocks() {
        let mut f = NetFacts::parse(SAMPLE);
        f.firewalld_running = true;
        f.firewalld_ports = vec!["6443/tcp".into()];
        assert!(f.firewalld_blocks(8472));
        f.firewalld_ports.push("8472/udp".into());
        assert!(!f.firewalld_blocks(8472));
    }

    #[test]
    fn strict_rp_filter_is_the_max_of_all_and_the_interface() {
        let mut f = NetFacts::parse(SAMPLE);
        assert!(!f.strict_rp_filter(), "loose (2) is fine");
        f.rp_filter_all = Some(1);
        f.rp_filter_underlay = Some(0);
        assert!(f.strict_rp_filter());
    }
}
