//! Preflight: named checks per host before anything changes. A failed check stops that host
//! (unless skipped with --skip-preflight NAME); warnings are shown and do not stop it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inventory::HostRole;
use crate::node::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// Every check name, for --skip-preflight validation and docs.
pub const CHECKS: &[&str] = &[
    "os",
    "systemd",
    "cpu",
    "memory",
    "swap",
    "ip-forward",
    "commands",
    "ports",
    "clock",
    "cgroups",
    "kernel-modules",
    "unique-hostname",
    "unique-machine-id",
    "reachability",
    super::endpoint::CHECK,
];

const REQUIRED_COMMANDS: &[&str] = &[
    "ip",
    "iptables",
    "mount",
    "umount",
    "nsenter",
    "sha256sum",
    "systemctl",
    "sh",
    "stat",
    "mktemp",
    "findmnt",
];

/// Ports each role listens on, with the process expected to hold them on a re-run.
fn role_ports(role: HostRole) -> &'static [(u16, &'static str)] {
    match role {
        HostRole::Etcd => &[(2379, "etcd"), (2380, "etcd")],
        HostRole::ControlPlane => &[
            (6443, "kube-apiserver"),
            (10257, "kube-controller"),
            (10259, "kube-scheduler"),
        ],
        HostRole::Worker => &[(10250, "kubelet"), (10256, "kube-proxy")],
    }
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        detail: detail.into(),
    }
}

/// Checks that need only this host (the probe is one SSH round trip).
pub async fn host_checks(node: &Node, peers: &[String]) -> anyhow::Result<Vec<Check>> {
    let f = &node.facts;
    let mut out = Vec::new();
    out.push(match f.family {
        Some(fam) => check(
            "os",
            Verdict::Pass,
            format!("{} ({})", f.os.pretty_name, fam.as_str()),
        ),
        None => check(
            "os",
            Verdict::Fail,
            format!("{} is not RHEL-family or Debian-family", f.os.pretty_name),
        ),
    });
    out.push(if f.init_system == "systemd" {
        check("systemd", Verdict::Pass, "systemd is PID 1")
    } else {
        check(
            "systemd",
            Verdict::Fail,
            format!(
                "PID 1 is {:?}, director-boot installs systemd units",
                f.init_system
            ),
        )
    });
    let cp = node.host.has_role(HostRole::ControlPlane);
    let (min_cpu, min_mem) = if cp { (2, 1700) } else { (1, 1024) };
    out.push(if f.cpus >= min_cpu {
        check("cpu", Verdict::Pass, format!("{} CPUs", f.cpus))
    } else {
        check(
            "cpu",
            Verdict::Fail,
            format!("{} CPUs, this host's roles need {min_cpu}", f.cpus),
        )
    });
    out.push(if f.memory_mib >= min_mem {
        check("memory", Verdict::Pass, format!("{} MiB", f.memory_mib))
    } else {
        check(
            "memory",
            Verdict::Fail,
            format!("{} MiB, this host's roles need {min_mem} MiB", f.memory_mib),
        )
    });
    out.push(if f.time_offset_ms.abs() <= 30_000 {
        check(
            "clock",
            Verdict::Pass,
            format!("{:+} ms from this machine", f.time_offset_ms),
        )
    } else {
        check(
            "clock",
            Verdict::Fail,
            format!(
                "{:+} ms from this machine (more than 30 s): enable NTP (chronyd/timesyncd)",
                f.time_offset_ms
            ),
        )
    });

    let ports: Vec<(u16, &str)> = node
        .host
        .roles
        .iter()
        .flat_map(|r| role_ports(*r).iter().copied())
        .collect();
    let probe = format!(
        "echo swap=$(awk 'NR>1' /proc/swaps | wc -l); \
         echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); \
         for c in {cmds}; do command -v $c >/dev/null 2>&1 || echo missing=$c; done; \
         echo cg1=$(grep -c ' cgroup ' /proc/mounts); echo cg2=$(grep -c ' cgroup2 ' /proc/mounts); \
         echo bridge_nf=$([ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo 1 || echo 0); \
         echo overlayfs=$(grep -c overlay /proc/filesystems); \
         ss -Hltnp 2>/dev/null | awk '{{print \"listen=\" $4 \" \" $6}}'; \
         for p in {peers}; do timeout 3 bash -c \"</dev/tcp/$p/22\" 2>/dev/null && echo reach=$p || echo unreach=$p; done",
        cmds = REQUIRED_COMMANDS.join(" "),
        peers = peers.join(" "),
    );
    let o = node.session.sudo(&probe).await?;
    let mut kv: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in o.stdout.lines() {
        if let Some((k, v)) = line.split_once('=') {
            kv.entry(k).or_default().push(v);
        }
    }
    let one = |k: &str| kv.get(k).and_then(|v| v.first().copied()).unwrap_or("");
    let lab_swap_ok =
        node.host.kubelet_extra.get("failSwapOn") == Some(&serde_yaml::Value::Bool(false));
    out.push(match one("swap") {
        "0" => check("swap", Verdict::Pass, "no swap"),
        _ if lab_swap_ok => check(
            "swap",
            Verdict::Warn,
            "swap is on; kubelet failSwapOn is false in the inventory",
        ),
        n => check(
            "swap",
            Verdict::Fail,
            format!("{n} swap device(s) on: run `swapoff -a` and remove swap from /etc/fstab"),
        ),
    });
    out.push(match one("fwd") {
        "1" => check("ip-forward", Verdict::Pass, "net.ipv4.ip_forward=1"),
        _ => check(
            "ip-forward",
            Verdict::Warn,
            "net.ipv4.ip_forward=0; node-prep sets it",
        ),
    });
    let missing: Vec<&str> = kv.get("missing").cloned().unwrap_or_default();
    out.push(if missing.is_empty() {
        check("commands", Verdict::Pass, "all present")
    } else {
        check(
            "commands",
            Verdict::Fail,
            format!(
                "missing: {} (install iproute2, iptables, util-linux, coreutils)",
                missing.join(", ")
            ),
        )
    });
    out.push(if one("cg1") != "0" || one("cg2") != "0" {
        check(
            "cgroups",
            Verdict::Pass,
            format!("v1 mounts {}, v2 mounts {}", one("cg1"), one("cg2")),
        )
    } else {
        check("cgroups", Verdict::Fail, "no cgroup filesystem mounted")
    });
    out.push(kernel_features(one("overlayfs"), one("bridge_nf")));
    // A port is fine when free, or when already held by the component that belongs there.
    let listeners: Vec<&str> = kv.get("listen").cloned().unwrap_or_default();
    let mut busy = Vec::new();
    for (port, owner) in &ports {
        let suffix = format!(":{port} ");
        if let Some(l) = listeners.iter().find(|l| l.contains(&suffix))
            && !l.contains(owner)
        {
            busy.push(format!(
                "{port} ({})",
                l.split_once(' ').map(|x| x.1).unwrap_or("")
            ));
        }
    }
    out.push(if busy.is_empty() {
        check(
            "ports",
            Verdict::Pass,
            format!("{} role ports free or held by their component", ports.len()),
        )
    } else {
        check(
            "ports",
            Verdict::Fail,
            format!("in use by something else: {}", busy.join(", ")),
        )
    });
    let unreach: Vec<&str> = kv.get("unreach").cloned().unwrap_or_default();
    out.push(if unreach.is_empty() {
        check(
            "reachability",
            Verdict::Pass,
            format!("{} peers reachable on TCP 22", peers.len()),
        )
    } else {
        check(
            "reachability",
            Verdict::Fail,
            format!(
                "cannot reach {} on TCP 22 from this host",
                unreach.join(", ")
            ),
        )
    });
    Ok(out)
}

/// The kernel features containerd and kube-proxy need, judged by their state rather than by a
/// module's name, so a built-in feature counts: overlayfs registered in /proc/filesystems
/// (`overlayfs` = how many lines name it), br_netfilter's sysctl present (`bridge_nf` = 1).
fn kernel_features(overlayfs: &str, bridge_nf: &str) -> Check {
    let mut absent = Vec::new();
    if overlayfs.trim().parse::<u32>().unwrap_or(0) == 0 {
        absent.push("overlay (not in /proc/filesystems)");
    }
    if bridge_nf.trim() != "1" {
        absent.push("br_netfilter (no /proc/sys/net/bridge/bridge-nf-call-iptables)");
    }
    if absent.is_empty() {
        check(
            "kernel-modules",
            Verdict::Pass,
            "overlay and br_netfilter available (built in or loaded)",
        )
    } else {
        check(
            "kernel-modules",
            Verdict::Warn,
            format!(
                "not available yet: {}; node-prep loads them",
                absent.join(", ")
            ),
        )
    }
}

/// Checks across hosts: hostnames and machine-ids must be unique.
pub fn cross_checks(nodes: &[&Node]) -> BTreeMap<String, Vec<Check>> {
    let mut out: BTreeMap<String, Vec<Check>> = BTreeMap::new();
    for n in nodes {
        let dup_host: Vec<&str> = nodes
            .iter()
            .filter(|m| m.name() != n.name() && m.facts.hostname == n.facts.hostname)
            .map(|m| m.name())
            .collect();
        let dup_id: Vec<&str> = nodes
            .iter()
            .filter(|m| {
                m.name() != n.name()
                    && !n.facts.machine_id.is_empty()
                    && m.facts.machine_id == n.facts.machine_id
            })
            .map(|m| m.name())
            .collect();
        let e = out.entry(n.name().to_string()).or_default();
        e.push(if dup_host.is_empty() {
            check("unique-hostname", Verdict::Pass, n.facts.hostname.clone())
        } else {
            check(
                "unique-hostname",
                Verdict::Fail,
                format!(
                    "hostname {} is also used by {}",
                    n.facts.hostname,
                    dup_host.join(", ")
                ),
            )
        });
        e.push(if dup_id.is_empty() {
            check("unique-machine-id", Verdict::Pass, "unique")
        } else {
            check(
                "unique-machine-id",
                Verdict::Fail,
                format!(
                    "/etc/machine-id equals that of {} (cloned image?): regenerate it",
                    dup_id.join(", ")
                ),
            )
        });
    }
    out
}

/// Apply --skip-preflight: skipped failures become warnings.
pub fn skip(checks: &mut [Check], skipped: &[String]) {
    for c in checks.iter_mut() {
        if c.verdict == Verdict::Fail && skipped.iter().any(|s| s == c.name) {
            c.verdict = Verdict::Warn;
            c.detail = format!("{} (skipped)", c.detail);
        }
    }
}

/// Unknown names in --skip-preflight, to reject before any work.
pub fn unknown_skips(skipped: &[String]) -> Vec<String> {
    skipped
        .iter()
        .filter(|s| !CHECKS.contains(&s.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_turns_failures_into_warnings() {
        let mut c = vec![
            check("swap", Verdict::Fail, "on"),
            check("cpu", Verdict::Fail, "1"),
        ];
        skip(&mut c, &["swap".to_string()]);
        assert_eq!(c[0].verdict, Verdict::Warn);
        assert_eq!(c[0].detail, "on (skipped)");
        assert_eq!(c[1].verdict, Verdict::Fail);
    }

    #[test]
    fn kernel_features_built_in_loaded_and_neither() {
        // Built in and loaded look alike to the probe: the sysctl exists either way.
        assert_eq!(kernel_features("1", "1").verdict, Verdict::Pass);
        assert_eq!(kernel_features("2\n", "1\n").verdict, Verdict::Pass);
        let neither = kernel_features("0", "0");
        assert_eq!(neither.verdict, Verdict::Warn);
        assert!(neither.detail.contains("overlay"), "{}", neither.detail);
        assert!(
            neither.detail.contains("br_netfilter"),
            "{}",
            neither.detail
        );
        let no_bridge = kernel_features("1", "0");
        assert!(
            !no_bridge.detail.contains("overlay ("),
            "{}",
            no_bridge.detail
        );
    }

    #[test]
    fn rejects_unknown_skip_names() {
        assert_eq!(
            unknown_skips(&["swap".into(), "bogus".into()]),
            vec!["bogus".to_string()]
        );
    }
}
