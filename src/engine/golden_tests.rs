//! Golden tests for the shipped role files and templates: every role that applies to each host
//! of a fixture cluster is rendered for a RHEL-family and for a Debian-family variant of that
//! cluster, and the output is compared with the reviewed files under
//! `tests/golden/<family>/<node>/<dest path>` (manifests under `manifests/`, and `_plan.txt`
//! listing, per role, everything else the role does on the host, rendered). After a deliberate
//! change, `UPDATE_GOLDEN=1 cargo test golden` rewrites them; review the diff, it is what users'
//! hosts get.
//!
//! Besides the comparison: every role file parses, every referenced template exists, every
//! rendered YAML/TOML/JSON file parses, the firewalld service opens exactly the ports each host's
//! roles need (and only on RHEL-family hosts), shell snippets and the overlay script pass `sh -n`
//! (and shellcheck when installed), and units pass `systemd-analyze verify` when available.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;

use super::context::{ClusterContext, Member, NodeContext, Peer, vtep_mac};
use super::plan::{applies, render_files, tera_context};
use super::render::{Renderer, roles};
use super::role::ComponentRole;
use crate::inventory::{Backend, HostRole};
use crate::osfamily::OsFamily;

const CLUSTER: &str = "lab";
const OVERLAY_PORT: u16 = 8472;

/// The fixture cluster: node1 runs everything, node2 and node3 are workers.
const NODES: [(&str, &str, &[HostRole]); 3] = [
    (
        "node1",
        "192.168.56.11",
        &[HostRole::Etcd, HostRole::ControlPlane, HostRole::Worker],
    ),
    ("node2", "192.168.56.12", &[HostRole::Worker]),
    ("node3", "192.168.56.13", &[HostRole::Worker]),
];

const FAMILIES: [&str; 2] = ["rhel", "debian"];

/// The engine's phases, in the order it runs them.
fn phases() -> Vec<&'static str> {
    let mut p = crate::engine::action::init::COMPONENTS.to_vec();
    p.push("addons");
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn member(i: usize) -> Member {
    Member {
        name: NODES[i].0.into(),
        address: ip(NODES[i].1),
        endpoint: format!("{}:6443", NODES[i].1),
    }
}

fn fixture_cluster() -> ClusterContext {
    let nodes = NODES
        .iter()
        .enumerate()
        .map(|(i, (name, addr, _))| Peer {
            name: (*name).into(),
            address: ip(addr),
            pod_subnet: net(&format!("10.244.{i}.0/24")),
            vtep_address: ip(&format!("10.244.{i}.0")),
            vtep_mac: vtep_mac(CLUSTER, name),
            // node3 forces VXLAN to all its peers; the others decide per peer.
            backend: if *name == "node3" {
                Backend::Vxlan
            } else {
                Backend::Auto
            },
            wg_public_key: String::new(),
            wg_announced_key: String::new(),
        })
        .collect();
    ClusterContext {
        name: CLUSTER.into(),
        domain: "cluster.local".into(),
        kubernetes_version: "v1.36.2".into(),
        pod_cidr: net("10.244.0.0/16"),
        service_cidr: net("10.96.0.0/12"),
        node_prefix: 24,
        api_service_ip: ip("10.96.0.1"),
        dns_ip: ip("10.96.0.10"),
        api_server: "https://192.168.56.11:6443".into(),
        api_endpoint: "https://192.168.56.11:6443".into(),
        api_lb: None,
        vip: None,
        control_plane: vec![member(0)],
        etcd: vec![member(0)],
        etcd_initial_cluster: "node1=https://192.168.56.11:2380".into(),
        etcd_endpoints: "https://192.168.56.11:2379".into(),
        etcd_token: format!("{CLUSTER}-etcd"),
        overlay_vni: 4242,
        overlay_port: OVERLAY_PORT,
        overlay_encrypt: false,
        wireguard_device: crate::engine::context::WIREGUARD_DEVICE,
        wireguard_port: crate::engine::context::WIREGUARD_PORT,
        wireguard_key: crate::engine::context::WIREGUARD_KEY,
        nodes,
        images: [
            ("pause", "registry.k8s.io/pause:3.10"),
            ("coredns", "registry.k8s.io/coredns/coredns:v1.12.1"),
            (
                "kube-network-policies",
                "localhost/director-boot/kube-network-policies:v0.8.0-xtnfqueue",
            ),
            ("busybox", "docker.io/library/busybox:1.35"),
            (
                "local-path-provisioner",
                "localhost/director-boot/local-path-provisioner:v0.0.30",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        audit: crate::engine::context::AuditContext::from(&crate::inventory::Audit::default()),
        tls_cipher_suites: crate::engine::context::TLS_CIPHER_SUITES,
    }
}

fn fixture_node(cluster: &ClusterContext, i: usize, family: &str) -> NodeContext {
    let (name, addr, roles) = NODES[i];
    let me = &cluster.nodes[i];
    let rhel = family == "rhel";
    // node3 carries inventory extras, to show them merged into the rendered files.
    let (kubelet_extra, containerd_extra) = if name == "node3" {
        (
            serde_json::json!({"maxPods": 50, "evictionHard": {"memory.available": "200Mi"}}),
            serde_json::json!({"plugins": {"io.containerd.grpc.v1.cri": {
                "registry": {"config_path": "/etc/containerd/certs.d"}}}}),
        )
    } else {
        (serde_json::json!({}), serde_json::json!({}))
    };
    NodeContext {
        name: name.into(),
        address: ip(addr),
        roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
        family: family.into(),
        cni_bin_dir: if rhel { "/opt/cni/bin" } else { "/usr/lib/cni" }.into(),
        firewalld: rhel,
        selinux: rhel,
        pod_subnet: me.pod_subnet,
        pod_gateway: ip(&format!("10.244.{i}.1")),
        pod_prefix_len: 24,
        pod_bridge: crate::engine::context::POD_BRIDGE,
        ipam_range_end: ip(&format!("10.244.{i}.249")),
        netcheck_address: ip(&format!("10.244.{i}.254")),
        vtep_address: me.vtep_address,
        vtep_mac: me.vtep_mac.clone(),
        underlay_interface: if rhel { "enp1s0" } else { "eth0" }.into(),
        underlay_mtu: 1500,
        overlay_mtu: 1450,
        overlay_backend: me.backend,
        overlay_encrypt: false,
        peers: cluster
            .nodes
            .iter()
            .filter(|p| p.name != name)
            .map(|p| Peer {
                backend: me.backend.pair(p.backend),
                ..p.clone()
            })
            .collect(),
        kubelet_extra,
        containerd_extra,
        etcd_initial_cluster: cluster.etcd_initial_cluster.clone(),
        etcd_cluster_state: "new".into(),
    }
}

/// What one host gets: golden-relative path → content, plus the roles that applied.
struct Rendered {
    files: BTreeMap<String, String>,
    /// Absolute dest path → content, for the content checks.
    by_dest: BTreeMap<String, String>,
    roles: Vec<String>,
    /// Rendered shell snippets (on_change, health, reset_commands): (role, what, command).
    commands: Vec<(String, String, String)>,
}

fn render_node(
    r: &Renderer,
    all: &[ComponentRole],
    cluster: &ClusterContext,
    node: &NodeContext,
) -> Rendered {
    let ctx = tera_context(cluster, node);
    let host_roles: BTreeSet<HostRole> = NODES
        .iter()
        .find(|(n, _, _)| *n == node.name)
        .map(|(_, _, roles)| roles.iter().copied().collect())
        .unwrap();
    let mut out = Rendered {
        files: BTreeMap::new(),
        by_dest: BTreeMap::new(),
        roles: Vec::new(),
        commands: Vec::new(),
    };
    let mut plan = String::new();
    plan.push_str(&format!(
        "# What each role that applies to {} ({}) does there besides writing the files in this\n\
         # directory; rendered from roles/*/role.yaml by the golden tests.\n",
        node.name, node.family
    ));
    let render = |s: &str| r.render_str(s, &ctx).unwrap();
    // In phase order, as the engine applies them.
    let mut ordered: Vec<&ComponentRole> = all.iter().collect();
    ordered.sort_by_key(|role| phases().iter().position(|p| *p == role.phase));
    for role in ordered {
        if !role.applies_to(&host_roles) || !applies(r, role, &ctx).unwrap() {
            continue;
        }
        out.roles.push(role.name.clone());
        plan.push_str(&format!("\n[{}] phase {}\n", role.name, role.phase));
        let family = if node.family == "rhel" {
            OsFamily::Rhel
        } else {
            OsFamily::Debian
        };
        for p in &role.packages {
            plan.push_str(&format!(
                "package {} unless `{}`: {}\n",
                p.name(),
                p.present_test(family),
                family.install_packages(&[p.for_family(family).to_string()])
            ));
        }
        for b in &role.binaries {
            plan.push_str(&format!("binary {} -> {}\n", b.name, b.path()));
        }
        for p in &role.pki {
            plan.push_str(&format!("pki {} -> {}\n", render(&p.src), render(&p.dest)));
        }
        for k in &role.kubeconfigs {
            plan.push_str(&format!(
                "kubeconfig {} ({}) -> {}\n",
                render(&k.cert),
                k.server,
                render(&k.dest)
            ));
        }
        for d in &role.dirs {
            plan.push_str(&format!("dir {} {}\n", render(&d.path), d.mode));
        }
        for f in render_files(r, role, &ctx, node).unwrap() {
            let text = String::from_utf8(f.content).unwrap();
            plan.push_str(&format!("file {} {:04o}\n", f.dest, f.mode));
            let rel = f.dest.trim_start_matches('/').to_string();
            assert!(
                out.by_dest.insert(f.dest.clone(), text.clone()).is_none(),
                "{}: two roles write {}",
                node.name,
                f.dest
            );
            out.files.insert(rel, text);
        }
        for m in &role.manifests {
            let text = r.render(m, &ctx).unwrap();
            plan.push_str(&format!("manifest {m}\n"));
            out.by_dest.insert(format!("manifests/{m}"), text.clone());
            out.files.insert(format!("manifests/{m}"), text);
        }
        let mut cmd = |what: &str, text: &str, plan: &mut String| {
            let c = render(text);
            plan.push_str(&format!("{what}: {c}\n"));
            out.commands.push((role.name.clone(), what.to_string(), c));
        };
        for c in &role.on_change {
            cmd("on_change", c, &mut plan);
        }
        for u in &role.units {
            plan.push_str(&format!("unit {u}\n"));
        }
        for h in &role.health {
            cmd(
                &format!("health {:?} ({}s)", h.name, h.timeout_secs),
                &h.command,
                &mut plan,
            );
        }
        for c in &role.reset_commands {
            cmd("reset_command", c, &mut plan);
        }
        for p in &role.reset_paths {
            plan.push_str(&format!("reset_path {}\n", render(p)));
        }
    }
    out.files.insert("_plan.txt".into(), plan);
    out
}

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, base, out);
        } else {
            out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Every (family, node) rendering of the fixture cluster.
fn render_all() -> Vec<(String, NodeContext, Rendered)> {
    let r = Renderer::new().unwrap();
    let all = roles().unwrap();
    let cluster = fixture_cluster();
    let mut out = Vec::new();
    for family in FAMILIES {
        for i in 0..NODES.len() {
            let node = fixture_node(&cluster, i, family);
            let rendered = render_node(&r, &all, &cluster, &node);
            out.push((family.to_string(), node, rendered));
        }
    }
    out
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0");
    let root = golden_root();
    let mut problems = Vec::new();
    let mut expected_all = BTreeSet::new();
    for (family, node, rendered) in render_all() {
        for (rel, text) in &rendered.files {
            let rel = format!("{family}/{}/{rel}", node.name);
            let path = root.join(&rel);
            expected_all.insert(rel.clone());
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, text).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(golden) if golden == *text => {}
                Ok(golden) => problems.push(format!(
                    "{rel} differs from its golden file:\n{}",
                    first_difference(&golden, text)
                )),
                Err(_) => problems.push(format!("{rel}: no golden file")),
            }
        }
    }
    let mut present = BTreeSet::new();
    walk(&root, &root, &mut present);
    for stale in present.difference(&expected_all) {
        if update {
            std::fs::remove_file(root.join(stale)).unwrap();
        } else {
            problems.push(format!("{stale}: golden file for nothing rendered"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\n(after a deliberate change: UPDATE_GOLDEN=1 cargo test golden, then review the diff)",
        problems.join("\n")
    );
}

fn first_difference(golden: &str, rendered: &str) -> String {
    let (g, r): (Vec<_>, Vec<_>) = (golden.lines().collect(), rendered.lines().collect());
    for i in 0..g.len().max(r.len()) {
        if g.get(i) != r.get(i) {
            return format!(
                "  line {}:\n  golden:   {:?}\n  rendered: {:?}",
                i + 1,
                g.get(i).unwrap_or(&"<end>"),
                r.get(i).unwrap_or(&"<end>")
            );
        }
    }
    "  (line endings differ)".into()
}

#[test]
fn golden_roles_parse_and_reference_existing_templates() {
    let r = Renderer::new().unwrap();
    let all = roles().unwrap();
    let names: BTreeSet<_> = all.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names.len(), all.len(), "role names are unique");
    for expected in [
        "node-prep",
        "firewalld",
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
        "overlay",
        "cni",
        "addons",
        "network-policy",
        "local-path-storage",
    ] {
        assert!(names.contains(expected), "role {expected} is shipped");
    }
    for role in &all {
        assert!(
            phases().contains(&role.phase.as_str()),
            "{}: unknown phase {}",
            role.name,
            role.phase
        );
        for f in &role.files {
            assert!(
                r.has(&f.template),
                "{}: no template {}",
                role.name,
                f.template
            );
        }
        for m in &role.manifests {
            assert!(r.has(m), "{}: no template {m}", role.name);
        }
    }
}

#[test]
fn golden_structured_files_parse() {
    for (family, node, rendered) in render_all() {
        for (dest, text) in &rendered.by_dest {
            let what = format!("{family}/{}: {dest}", node.name);
            if dest.ends_with(".yaml") || dest.ends_with(".yml") {
                let mut docs = 0;
                for doc in serde_yaml::Deserializer::from_str(text) {
                    let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}"));
                    assert!(v.is_mapping(), "{what}: a document is not a mapping");
                    docs += 1;
                }
                assert!(docs > 0, "{what}: no YAML document");
            } else if dest.ends_with(".toml") {
                let _: toml::Value =
                    toml::from_str(text).unwrap_or_else(|e| panic!("{what}: invalid TOML: {e}"));
            } else if dest.ends_with(".json") || dest.ends_with(".conflist") {
                let _: serde_json::Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{what}: invalid JSON: {e}"));
            }
        }
    }
}

#[test]
fn golden_settings_that_matter() {
    for (family, node, rendered) in render_all() {
        let what = format!("{family}/{}", node.name);
        let get = |dest: &str| {
            rendered
                .by_dest
                .get(dest)
                .unwrap_or_else(|| panic!("{what}: no {dest}"))
        };
        // Every host is prepared and on the overlay.
        for role in ["node-prep", "overlay"] {
            assert!(rendered.roles.iter().any(|r| r == role), "{what}: {role}");
        }
        if !node.roles.iter().any(|r| r == "worker") {
            continue;
        }
        let kubelet: serde_yaml::Value =
            serde_yaml::from_str(get("/var/lib/kubelet/config.yaml")).unwrap();
        assert_eq!(kubelet["cgroupDriver"].as_str(), Some("cgroupfs"), "{what}");
        assert_eq!(
            kubelet["podCIDR"].as_str(),
            Some(node.pod_subnet.to_string().as_str())
        );
        assert_eq!(kubelet["clusterDNS"][0].as_str(), Some("10.96.0.10"));
        assert_eq!(kubelet["authorization"]["mode"].as_str(), Some("Webhook"));
        if node.name == "node3" {
            assert_eq!(
                kubelet["maxPods"].as_u64(),
                Some(50),
                "{what}: kubelet_extra merged"
            );
        }
        let containerd: toml::Value = toml::from_str(get("/etc/containerd/config.toml")).unwrap();
        let cri = &containerd["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(
            cri["sandbox_image"].as_str(),
            Some("registry.k8s.io/pause:3.10")
        );
        let runc = &cri["containerd"]["runtimes"]["runc"]["options"];
        assert_eq!(runc["SystemdCgroup"].as_bool(), Some(false));
        assert_eq!(runc["BinaryName"].as_str(), Some("/usr/local/bin/runc"));
        assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/opt/cni/bin"));
        let conflist: serde_json::Value =
            serde_json::from_str(get("/etc/cni/net.d/10-director-boot.conflist")).unwrap();
        let bridge = &conflist["plugins"][0];
        assert_eq!(bridge["bridge"], "dbbr0");
        assert_eq!(bridge["mtu"], 1450);
        assert_eq!(
            bridge["ipam"]["ranges"][0][0]["subnet"],
            node.pod_subnet.to_string()
        );
        // The overlay reaches every peer.
        let script = get("/usr/local/lib/director-boot/overlay-up.sh");
        for p in &node.peers {
            let line = format!(
                "{} {} {} {} {}",
                p.name, p.pod_subnet, p.vtep_address, p.vtep_mac, p.address
            );
            assert!(script.contains(&line), "{what}: overlay peer line {line}");
        }
        assert!(!script.contains(&format!("{} {}", node.name, node.pod_subnet)));
    }
}

/// `<port protocol="P" port="N"/>` entries of a firewalld service definition.
fn firewalld_ports(xml: &str) -> BTreeSet<String> {
    let attr = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_string())
    };
    xml.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("<port "))
        .map(|l| {
            format!(
                "{}/{}",
                attr(l, "port").unwrap(),
                attr(l, "protocol").unwrap()
            )
        })
        .collect()
}

#[test]
fn golden_firewalld_ports_follow_roles() {
    for (family, node, rendered) in render_all() {
        let fw: Vec<_> = rendered
            .by_dest
            .keys()
            .filter(|d| d.starts_with("/etc/firewalld/"))
            .collect();
        if family == "debian" {
            assert!(
                fw.is_empty(),
                "debian/{}: firewalld files {fw:?}",
                node.name
            );
            continue;
        }
        let xml = &rendered.by_dest["/etc/firewalld/services/director-boot.xml"];
        let mut expected: BTreeSet<String> = [format!("{OVERLAY_PORT}/udp")].into();
        for role in &node.roles {
            let ports: &[&str] = match role.as_str() {
                "etcd" => &["2379-2380/tcp"],
                "control-plane" => &["6443/tcp"],
                "worker" => &["10250/tcp", "30000-32767/tcp", "30000-32767/udp"],
                other => panic!("unknown role {other}"),
            };
            expected.extend(ports.iter().map(|p| p.to_string()));
        }
        assert_eq!(firewalld_ports(xml), expected, "rhel/{}", node.name);
        assert!(xml.starts_with("<?xml"), "rhel/{}", node.name);
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn golden_shell_passes_sh_n_and_shellcheck() {
    let dir = tempfile::tempdir().unwrap();
    let shellcheck = have("shellcheck");
    if !shellcheck {
        eprintln!("shellcheck not installed: only `sh -n`");
    }
    let mut n = 0;
    for (family, node, rendered) in render_all() {
        let mut scripts: Vec<(String, String)> = rendered
            .commands
            .iter()
            .map(|(role, what, c)| (format!("{role} {what}"), format!("#!/bin/sh\n{c}\n")))
            .collect();
        for (dest, text) in &rendered.by_dest {
            if dest.ends_with(".sh") {
                scripts.push((dest.clone(), text.clone()));
            }
            // Inline shell in units: `Exec...=/bin/sh -c '...'`.
            if dest.ends_with(".service") {
                for line in text.lines().filter(|l| l.starts_with("Exec")) {
                    if let Some((_, rest)) = line.split_once("/bin/sh -c '") {
                        let body = rest.strip_suffix('\'').expect("one quoted argument");
                        scripts.push((format!("{dest}: {line}"), format!("#!/bin/sh\n{body}\n")));
                    }
                }
            }
        }
        for (what, text) in scripts {
            n += 1;
            let path = dir.path().join(format!("s{n}.sh"));
            std::fs::write(&path, &text).unwrap();
            let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{family}/{} {what}: sh -n: {}\n{text}",
                node.name,
                String::from_utf8_lossy(&out.stderr)
            );
            if shellcheck {
                let out = Command::new("shellcheck")
                    .args(["-s", "sh", "-S", "warning"])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{family}/{} {what}: shellcheck:\n{}\n{text}",
                    node.name,
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
    }
}

#[test]
fn golden_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("systemd-analyze not installed: units not verified");
        return;
    }
    for (family, node, rendered) in render_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut units = Vec::new();
        for (dest, text) in &rendered.by_dest {
            if dest.starts_with("/etc/systemd/system/") && dest.ends_with(".service") {
                let name = dest.rsplit('/').next().unwrap();
                let path = dir.path().join(name);
                std::fs::write(&path, text).unwrap();
                units.push(path);
            }
        }
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&units)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        if text.contains("Failed to initialize manager") || text.contains("Failed to set up") {
            eprintln!("systemd-analyze cannot run here: units not verified:\n{text}");
            return;
        }
        // The binaries the units run are installed by the engine, not on this machine.
        let problems: Vec<_> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !(l.contains(" is not executable: No such file or directory")
                    && (l.contains("/usr/local/") || l.contains("/sbin/modprobe")))
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{family}/{}: systemd-analyze verify:\n{}",
            node.name,
            problems.join("\n")
        );
    }
}

/// Runs node1's rendered overlay script for real inside a throwaway network namespace (root and
/// `unshare` needed; skipped otherwise): up twice (idempotent), a stale peer pruned, then down.
#[test]
fn golden_overlay_script_runs_in_a_network_namespace() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let netns = root
        && Command::new("unshare")
            .args(["--net", "--mount", "sh", "-c"])
            .arg("ip link add eth0 type veth peer name eth1")
            .output()
            .is_ok_and(|o| o.status.success());
    if !netns {
        eprintln!("no root network namespaces here: overlay script not run");
        return;
    }
    let (_, _, rendered) = render_all()
        .into_iter()
        .find(|(f, n, _)| f == "debian" && n.name == "node1")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("overlay-up.sh");
    std::fs::write(
        &script,
        &rendered.by_dest["/usr/local/lib/director-boot/overlay-up.sh"],
    )
    .unwrap();
    let test = r#"
set -eu
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
ip link add eth0 type veth peer name eth1
ip addr add 192.168.56.11/24 dev eth0
ip link set eth0 up
ip link set eth1 up
sh "$1" up
sh "$1" up
ip route del 10.244.1.0/24
bridge fdb del MAC2 dev dbvx0 dst 192.168.56.12 self
sh "$1" repair
sh "$1" repair
echo "== repairs"; cat /var/lib/director-boot/overlay-repairs.log
echo "== decided"; cat /run/director-boot/overlay-backends
ip route add 10.244.9.0/24 via 10.244.9.0 dev dbvx0 onlink
ip neigh add 10.244.9.0 lladdr 02:00:00:00:00:09 dev dbvx0 nud permanent
bridge fdb add 02:00:00:00:00:09 dev dbvx0 dst 192.168.56.19 self permanent
sh "$1"
echo "== link"; ip -d link show dbvx0
echo "== routes"; ip -4 route show proto 213
echo "== neigh"; ip -4 neigh show dev dbvx0
echo "== fdb"; bridge fdb show dev dbvx0
echo "== nat"; iptables -w -t nat -S
echo "== filter"; iptables -w -S
sh "$1" down
sh "$1" down
echo "== after down"; ip link show dbvx0 2>&1 || true; iptables -w -t nat -S; iptables -w -S
"#
    .replace("MAC2", &vtep_mac(CLUSTER, "node2"));
    let out = Command::new("unshare")
        .args(["--net", "--mount", "sh", "-c", &test, "test"])
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let section = |name: &str| {
        text.split(&format!("== {name}\n"))
            .nth(1)
            .and_then(|s| s.split("\n==").next())
            .unwrap_or_default()
            .to_string()
    };
    let link = section("link");
    assert!(
        link.contains("vxlan id 4242 local 192.168.56.11 dev eth0"),
        "{link}"
    );
    assert!(link.contains("dstport 8472 nolearning"), "{link}");
    assert!(link.contains("mtu 1450"), "{link}");
    // node2 shares eth0's segment (auto: direct); node3 asks for VXLAN.
    assert_eq!(
        section("routes").trim(),
        "10.244.1.0/24 via 192.168.56.12 dev eth0 \n10.244.2.0/24 via 10.244.2.0 dev dbvx0 onlink"
    );
    assert_eq!(
        section("decided").trim(),
        "node2 direct eth0 192.168.56.12\nnode3 vxlan dbvx0 192.168.56.13"
    );
    // The first repair put back the route and the FDB entry and said so; the second had
    // nothing to do.
    let repairs = section("repairs");
    let lines: Vec<&str> = repairs.lines().collect();
    assert_eq!(lines.len(), 2, "{repairs}");
    assert!(
        lines[0].contains("node2 route 10.244.1.0/24: was 'missing', now '10.244.1.0/24 via 192.168.56.12 dev eth0 '"),
        "{repairs}"
    );
    assert!(
        lines[1].contains(&format!(
            "node2 fdb {}: was 'missing'",
            vtep_mac(CLUSTER, "node2")
        )),
        "{repairs}"
    );
    let neigh = section("neigh");
    assert_eq!(neigh.lines().count(), 2, "stale neighbour pruned: {neigh}");
    let fdb = section("fdb");
    assert!(
        !fdb.contains("02:00:00:00:00:09"),
        "stale FDB entry pruned: {fdb}"
    );
    assert!(fdb.contains(&format!(
        "{} dst 192.168.56.12 self permanent",
        vtep_mac(CLUSTER, "node2")
    )));
    assert!(section("nat").contains(
        "-A POSTROUTING -m comment --comment director-boot -j DIRECTOR-BOOT-POSTROUTING"
    ));
    assert!(
        section("filter")
            .contains("-A FORWARD -m comment --comment director-boot -j DIRECTOR-BOOT-FORWARD")
    );
    let after = section("after down");
    assert!(!after.contains("DIRECTOR-BOOT"), "{after}");
    assert!(after.contains("does not exist"), "{after}");
}

/// The HA variant of the fixture: three control planes behind a VIP. Renders the load balancer
/// and VRRP roles for a control plane that is not a worker, and checks them with the real tools
/// where this machine has them.
#[test]
fn ha_fixture_renders_load_balancer_vip_and_taint() {
    use crate::engine::context::{API_LB_PORT, ApiLb, Vip};
    let r = Renderer::new().unwrap();
    let all = roles().unwrap();
    let mut cluster = fixture_cluster();
    cluster.control_plane = (0..3).map(member).collect();
    cluster.api_lb = Some(ApiLb { port: API_LB_PORT });
    cluster.api_server = format!("https://127.0.0.1:{API_LB_PORT}");
    cluster.api_endpoint = "https://192.168.56.10:6443".into();
    cluster.vip = Some(Vip {
        address: ip("192.168.56.10"),
        router_id: 51,
    });
    let mut node = fixture_node(&cluster, 1, "rhel");
    node.roles = vec!["etcd".into(), "control-plane".into()];
    let ctx = tera_context(&cluster, &node);
    let host_roles: BTreeSet<HostRole> = [HostRole::Etcd, HostRole::ControlPlane].into();
    let mut files = BTreeMap::new();
    let mut applied = Vec::new();
    for role in &all {
        if role.applies_to(&host_roles) && applies(&r, role, &ctx).unwrap() {
            applied.push(role.name.clone());
            for f in render_files(&r, role, &ctx, &node).unwrap() {
                files.insert(f.dest, String::from_utf8(f.content).unwrap());
            }
        }
    }
    for want in ["apiserver-lb", "apiserver-vip", "kubelet", "kube-proxy"] {
        assert!(
            applied.iter().any(|a| a == want),
            "{want} not in {applied:?}"
        );
    }
    let lb = &files["/etc/director-boot/apiserver-lb.cfg"];
    assert!(lb.contains("bind 127.0.0.1:6444"), "{lb}");
    for addr in ["192.168.56.11", "192.168.56.12", "192.168.56.13"] {
        assert!(lb.contains(&format!("{addr}:6443 check")), "{lb}");
    }
    let vrrp = &files["/etc/director-boot/keepalived.conf"];
    assert!(vrrp.contains("unicast_src_ip 192.168.56.12"), "{vrrp}");
    assert!(vrrp.contains("192.168.56.11") && vrrp.contains("192.168.56.13"));
    assert_eq!(
        vrrp.matches("192.168.56.12").count(),
        1,
        "not its own peer: {vrrp}"
    );
    assert!(vrrp.contains("192.168.56.10/32 dev enp1s0"), "{vrrp}");
    assert!(vrrp.contains("virtual_router_id 51"), "{vrrp}");
    let kubelet = &files["/var/lib/kubelet/config.yaml"];
    assert!(
        kubelet.contains("node-role.kubernetes.io/control-plane"),
        "{kubelet}"
    );
    let fw = &files["/etc/firewalld/services/director-boot.xml"];
    assert!(fw.contains("<protocol value=\"vrrp\"/>"), "{fw}");

    // the real tools accept the files
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let accepts = |tool: &str, args: &[&str], file: &Path| {
        if !have_binary(tool) {
            return;
        }
        let out = Command::new(tool).args(args).arg(file).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    accepts("/usr/sbin/haproxy", &["-c", "-f"], &write("lb.cfg", lb));
    // keepalived insists the interface exists here (and is not loopback), and the check script
    // (written beside the config on a node) too.
    if let Some(iface) = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n != "lo")
    {
        let text = vrrp
            .replace("enp1s0", &iface)
            .replace("/etc/director-boot/check-apiserver.sh", "/bin/true");
        accepts(
            "/usr/sbin/keepalived",
            &["--config-test", "-f"],
            &write("keepalived.conf", &text),
        );
    }
}

fn have_binary(path: &str) -> bool {
    Path::new(path).exists()
}

/// Reset renders every role that an inventory role gives a host, also those whose `when` is
/// false there (an HA role on a cluster without an endpoint): their commands must render.
#[test]
fn reset_plans_render_for_every_fixture_host() {
    let r = Renderer::new().unwrap();
    let all = roles().unwrap();
    let cluster = fixture_cluster();
    for family in FAMILIES {
        for (i, (name, _, host_roles)) in NODES.iter().enumerate() {
            let node = fixture_node(&cluster, i, family);
            let host_roles: BTreeSet<HostRole> = host_roles.iter().copied().collect();
            let plan = crate::engine::reset::plan(&r, &all, &cluster, &node, &host_roles)
                .unwrap_or_else(|e| panic!("{family}/{name}: {e}"));
            assert!(plan.units.iter().any(|u| u == "kubelet"), "{family}/{name}");
        }
    }
}
