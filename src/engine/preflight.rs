//! Preflight: named checks per host before anything changes. A failed check stops that host
//! (unless skipped with --skip-preflight NAME); warnings are shown and do not stop it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::artifacts::Artifacts;
use crate::inventory::HostRole;
use crate::node::Node;

/// The oldest kernel supported: RHEL 8's. Older ones (RHEL 7's 3.10) lack what containerd 2,
/// runc and kubelet 1.36 rely on (cgroup and overlayfs features).
pub const MIN_KERNEL: (u32, u32) = (4, 18);

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
    "arch",
    "kernel",
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

/// Kubernetes' name (GOARCH) for a `uname -m` machine.
pub fn goarch(machine: &str) -> &str {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" | "armv8l" => "arm64",
        "armv7l" | "armv7" | "armhf" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The mirror's architecture: the manifest's `arch` when it names one, else the ELF machine of
/// its first binary (mirrors built before the field existed). `None` when neither tells.
pub fn mirror_arch(artifacts: &Artifacts) -> Option<String> {
    let manifest = std::fs::read(artifacts.dir.join("manifest.json")).ok()?;
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&manifest)
        && let Some(arch) = v.get("arch").and_then(|a| a.as_str())
    {
        return Some(goarch(arch).to_string());
    }
    let binary = artifacts
        .all()
        .find(|a| a.kind == crate::engine::artifacts::Kind::Binary)?;
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(artifacts.path(binary)).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    elf_arch(&head).map(str::to_string)
}

/// GOARCH of an ELF header's e_machine.
fn elf_arch(head: &[u8; 20]) -> Option<&'static str> {
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    Some(match machine {
        0x3e => "amd64",
        0xb7 => "arm64",
        0x28 => "arm",
        0x15 => "ppc64le",
        0x16 => "s390x",
        0xf3 => "riscv64",
        _ => return None,
    })
}

/// `6.1.0-18-amd64` -> (6, 1).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn arch_check(host_machine: &str, mirror: Option<&str>) -> Check {
    let host = goarch(host_machine);
    match mirror {
        Some(m) if m == host => check("arch", Verdict::Pass, format!("{host} like the mirror")),
        Some(m) => check(
            "arch",
            Verdict::Fail,
            format!(
                "this host is {host} ({host_machine}) but the artifact mirror holds {m} binaries: use a {host} mirror (`director-boot artifacts fetch --arch {host}`)"
            ),
        ),
        None => check(
            "arch",
            Verdict::Warn,
            format!("{host}; the mirror does not say its architecture"),
        ),
    }
}

fn kernel_check(release: &str) -> Check {
    let (maj, min) = MIN_KERNEL;
    match kernel_version(release) {
        Some(v) if v >= MIN_KERNEL => check("kernel", Verdict::Pass, release.to_string()),
        Some(_) => check(
            "kernel",
            Verdict::Fail,
            format!(
                "{release} is older than {maj}.{min} (RHEL 8's), the oldest kernel containerd 2, runc and kubelet 1.36 are run on here: upgrade the OS"
            ),
        ),
        None => check(
            "kernel",
            Verdict::Warn,
            format!("cannot read a version from {release:?}"),
        ),
    }
}

/// How the host mounts cgroups: `/sys/fs/cgroup` as cgroup2 is v2, else v1 (hybrid when a v2
/// `unified` mount sits beside the v1 controllers).
fn cgroup_check(
    fs_type: &str,
    v1_mounts: &str,
    v2_mounts: &str,
    kubelet: bool,
    v1_allowed: bool,
) -> Check {
    let v1 = v1_mounts != "0" && !v1_mounts.is_empty();
    let v2 = v2_mounts != "0" && !v2_mounts.is_empty();
    let mode = match (fs_type, v1, v2) {
        ("cgroup2fs", _, _) => "v2",
        (_, true, true) => "v1 (hybrid: v1 controllers plus a v2 unified mount)",
        (_, true, false) => "v1",
        (_, false, true) => "v2",
        (_, false, false) => {
            return check("cgroups", Verdict::Fail, "no cgroup filesystem mounted");
        }
    };
    if mode == "v2" || !kubelet {
        check("cgroups", Verdict::Pass, mode)
    } else if v1_allowed {
        check(
            "cgroups",
            Verdict::Warn,
            format!("{mode}; kubelet failCgroupV1 is false in the inventory"),
        )
    } else {
        check(
            "cgroups",
            Verdict::Fail,
            format!(
                "{mode}: kubelet 1.36 refuses cgroup v1 by default; boot with systemd.unified_cgroup_hierarchy=1 (RHEL 8: grubby --update-kernel=ALL --args=systemd.unified_cgroup_hierarchy=1) or set kubelet_extra: {{failCgroupV1: false}}"
            ),
        )
    }
}

/// Checks that need only this host (the probe is one SSH round trip). `mirror_arch` is the
/// artifact mirror's architecture, when known.
pub async fn host_checks(
    node: &Node,
    peers: &[String],
    mirror_arch: Option<&str>,
) -> anyhow::Result<Vec<Check>> {
    let f = &node.facts;
    let mut out = Vec::new();
    out.push(arch_check(&f.arch, mirror_arch));
    out.push(kernel_check(&f.kernel));
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
         echo cgfs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null); \
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
    let runs_kubelet =
        node.host.has_role(HostRole::Worker) || node.host.has_role(HostRole::ControlPlane);
    let v1_allowed =
        node.host.kubelet_extra.get("failCgroupV1") == Some(&serde_yaml::Value::Bool(false));
    out.push(cgroup_check(
        one("cgfs"),
        one("cg1"),
        one("cg2"),
        runs_kubelet,
        v1_allowed,
    ));
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

/// Why a binary did not run, when the reason is the loader's or the kernel's (a wrong
/// architecture, a missing ELF interpreter, a glibc too old) rather than its own flags.
fn loader_failure(rc: i32, text: &str) -> Option<String> {
    const SIGNS: &[&str] = &[
        "not found (required by",
        "error while loading shared libraries",
        "Exec format error",
        "cannot execute",
        "required file not found",
        "No such file or directory",
    ];
    let text = text.trim();
    if SIGNS.iter().any(|s| text.contains(s)) || rc == 126 || rc == 127 {
        Some(if text.is_empty() {
            format!("exit {rc}")
        } else {
            text.to_string()
        })
    } else {
        None
    }
}

/// Where a host remembers which set of staged binaries (paths and sha256) already ran.
const BINARIES_RAN: &str = "/var/lib/director-boot/binaries-ran";

/// Run every staged binary's `--version` once on the host (in parallel, one SSH round trip)
/// and name each one the host cannot execute, with the loader's own message. `staged` is
/// (path, sha256); a set that already ran here is not run again (no-op re-runs stay fast).
pub async fn binaries_run(node: &Node, staged: &[(String, String)]) -> anyhow::Result<()> {
    if staged.is_empty() || node.dry_run {
        return Ok(());
    }
    let key = crate::ssh::sha256_hex(
        staged
            .iter()
            .map(|(p, s)| format!("{p}\t{s}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    let list: Vec<String> = staged
        .iter()
        .map(|(p, _)| crate::ssh::sh_quote(p))
        .collect();
    // One line per binary: path, exit code, its first output flattened (tabs/newlines -> ' ').
    let script = format!(
        "[ \"$(cat {BINARIES_RAN} 2>/dev/null)\" = {key} ] && {{ echo cached; exit 0; }}; \
         for b in {}; do ( out=$(timeout 10 \"$b\" --version </dev/null 2>&1); rc=$?; \
         printf '%s\\t%s\\t%s\\n' \"$b\" \"$rc\" \"$(printf '%s' \"$out\" | head -c 400 | tr '\\t\\n' '  ')\" ) & done; wait",
        list.join(" ")
    );
    let o = node.session.sudo(&script).await?;
    if o.stdout.trim() == "cached" {
        return Ok(());
    }
    let mut failed = Vec::new();
    for line in o.stdout.lines() {
        let mut it = line.splitn(3, '\t');
        let (Some(path), Some(rc), text) = (it.next(), it.next(), it.next().unwrap_or("")) else {
            continue;
        };
        let rc: i32 = rc.trim().parse().unwrap_or(0);
        if let Some(why) = loader_failure(rc, text) {
            failed.push(format!("{path}: {why}"));
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "cannot execute the staged binaries on this host ({} {}): {}",
            node.facts.os.pretty_name,
            node.facts.arch,
            failed.join("; ")
        );
    }
    node.sudo_ok(&format!(
        "mkdir -p /var/lib/director-boot && echo {key} > {BINARIES_RAN}"
    ))
    .await?;
    Ok(())
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
    fn arch_kernel_and_cgroups() {
        assert_eq!(arch_check("x86_64", Some("amd64")).verdict, Verdict::Pass);
        assert_eq!(
            arch_check("aarch64", Some("amd64")).detail,
            "this host is arm64 (aarch64) but the artifact mirror holds amd64 binaries: use a arm64 mirror (`director-boot artifacts fetch --arch arm64`)"
        );
        assert_eq!(arch_check("x86_64", None).verdict, Verdict::Warn);
        assert_eq!(
            kernel_check("4.18.0-553.el8_10.x86_64").verdict,
            Verdict::Pass
        );
        assert_eq!(kernel_check("6.18.1").verdict, Verdict::Pass);
        assert_eq!(
            kernel_check("3.10.0-1160.el7.x86_64").detail,
            "3.10.0-1160.el7.x86_64 is older than 4.18 (RHEL 8's), the oldest kernel containerd 2, runc and kubelet 1.36 are run on here: upgrade the OS"
        );
        assert_eq!(kernel_check("weird").verdict, Verdict::Warn);
        assert_eq!(
            cgroup_check("cgroup2fs", "0", "1", true, false).detail,
            "v2"
        );
        let hybrid = cgroup_check("tmpfs", "11", "1", true, false);
        assert_eq!(hybrid.verdict, Verdict::Fail);
        assert!(hybrid.detail.starts_with("v1 (hybrid"), "{}", hybrid.detail);
        assert_eq!(
            cgroup_check("tmpfs", "11", "0", true, true).verdict,
            Verdict::Warn
        );
        assert_eq!(
            cgroup_check("tmpfs", "11", "0", false, false).verdict,
            Verdict::Pass
        );
        assert_eq!(
            cgroup_check("", "0", "0", true, true).verdict,
            Verdict::Fail
        );
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
    fn elf_machines() {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[5] = 1;
        h[18] = 0x3e;
        assert_eq!(elf_arch(&h), Some("amd64"));
        h[18] = 0xb7;
        assert_eq!(elf_arch(&h), Some("arm64"));
        h[0] = 0;
        assert_eq!(elf_arch(&h), None);
    }

    #[test]
    fn loader_failures_are_told_from_flag_errors() {
        let glibc = "/usr/local/bin/etcd: /lib64/libc.so.6: version `GLIBC_2.34' not found (required by /usr/local/bin/etcd)";
        assert_eq!(loader_failure(1, glibc).as_deref(), Some(glibc));
        assert!(loader_failure(126, "cannot execute binary file: Exec format error").is_some());
        assert!(loader_failure(127, "").is_some());
        // A binary that does not know --version still ran.
        assert_eq!(loader_failure(1, "Error: unknown flag: --version"), None);
        assert_eq!(loader_failure(0, "etcd Version: 3.6.14"), None);
    }

    #[test]
    fn rejects_unknown_skip_names() {
        assert_eq!(
            unknown_skips(&["swap".into(), "bogus".into()]),
            vec!["bogus".to_string()]
        );
    }
}
