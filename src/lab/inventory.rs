//! The lab's inventory file, in the format `inventory::load` reads (see inventory/model.rs).
//! Lab-only kubelet/containerd settings go into the generic `*_extra` override knobs.

use std::path::Path;

use serde::Serialize;

#[derive(Serialize)]
struct File {
    cluster: Cluster,
    defaults: Defaults,
    ssh: Ssh,
    network: Network,
    hosts: Vec<Host>,
}

#[derive(Serialize)]
struct Cluster {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane_endpoint: Option<String>,
}

#[derive(Serialize)]
struct Defaults {
    user: String,
    port: u16,
    identity_file: String,
    sudo: bool,
    kubelet_extra: serde_yaml::Mapping,
    containerd_extra: serde_yaml::Mapping,
}

#[derive(Serialize)]
struct Ssh {
    known_hosts: String,
    connect_timeout: u64,
}

#[derive(Serialize)]
struct Network {
    pod_cidr: String,
    service_cidr: String,
    node_prefix: u8,
    overlay: Overlay,
}

#[derive(Serialize)]
struct Overlay {
    vni: u32,
    port: u16,
    mtu: u32,
}

#[derive(Serialize)]
struct Host {
    name: String,
    address: String,
    roles: Vec<&'static str>,
}

fn mapping(pairs: &[(&str, serde_yaml::Value)]) -> serde_yaml::Mapping {
    pairs
        .iter()
        .map(|(k, v)| (serde_yaml::Value::from(*k), v.clone()))
        .collect()
}

/// Kubelet settings a node of this lab needs (lab-notes): cgroup v1 host, per-node cgroup
/// root, read-only kernel sysctls, and no swap policy. Lab nodes share the host's disk with
/// everything else on it, so percentage eviction thresholds (15 % free for images) would evict
/// pods on a busy but healthy host: absolute floors instead.
fn kubelet_extra() -> serde_yaml::Mapping {
    let eviction = mapping(&[
        ("nodefs.available", "1Gi".into()),
        ("imagefs.available", "1Gi".into()),
        ("memory.available", "100Mi".into()),
    ]);
    mapping(&[
        ("evictionHard", eviction.into()),
        ("imageGCHighThresholdPercent", 100.into()),
        ("imageGCLowThresholdPercent", 99.into()),
        ("failCgroupV1", false.into()),
        ("cgroupDriver", "cgroupfs".into()),
        ("cgroupRoot", "/".into()),
        ("protectKernelDefaults", false.into()),
        ("failSwapOn", false.into()),
    ])
}

/// containerd settings, as a tree merged over config.toml: negative oom_score_adj fails in
/// these nodes (no CAP_SYS_RESOURCE in the bounding set).
fn containerd_extra() -> serde_yaml::Mapping {
    let cri = mapping(&[("restrict_oom_score_adj", true.into())]);
    let plugins = mapping(&[("io.containerd.grpc.v1.cri", cri.into())]);
    mapping(&[("plugins", plugins.into())])
}

/// The roles of the node at `position` (0-based) in a lab of `nodes` with `control_planes`:
/// the first ones `[etcd, control-plane]`, the rest workers. With one control plane (the
/// default) it is a worker too, as are all of them when every node is a control plane.
pub fn roles(position: usize, nodes: usize, control_planes: usize) -> Vec<&'static str> {
    if position >= control_planes {
        vec!["worker"]
    } else if control_planes == 1 || control_planes >= nodes {
        vec!["etcd", "control-plane", "worker"]
    } else {
        vec!["etcd", "control-plane"]
    }
}

/// The control-plane endpoint a lab with `control_planes` needs (`None` for one: the node's
/// own address is the endpoint then, as in any single-control-plane inventory).
pub fn endpoint(control_planes: usize) -> Option<String> {
    (control_planes > 1).then(|| super::names::endpoint_address().to_string())
}

/// The inventory for `nodes` = (name, address), the first `control_planes` of them control
/// planes (see `roles`).
#[cfg(test)]
pub fn render(
    lab_dir: &Path,
    nodes: &[(String, String)],
    control_planes: usize,
) -> Result<String, serde_yaml::Error> {
    render_for(lab_dir, nodes, control_planes, None)
}

/// `render` for a lab whose only login is `user` (with sudo) when given, else root.
pub fn render_for(
    lab_dir: &Path,
    nodes: &[(String, String)],
    control_planes: usize,
    user: Option<&str>,
) -> Result<String, serde_yaml::Error> {
    let file = File {
        cluster: Cluster {
            name: "lab".into(),
            control_plane_endpoint: endpoint(control_planes),
        },
        defaults: Defaults {
            user: user.unwrap_or("root").into(),
            port: 22,
            identity_file: super::keys::client_key_path(lab_dir).display().to_string(),
            sudo: user.is_some(),
            kubelet_extra: kubelet_extra(),
            containerd_extra: containerd_extra(),
        },
        ssh: Ssh {
            known_hosts: super::keys::known_hosts_path(lab_dir).display().to_string(),
            connect_timeout: 10,
        },
        network: Network {
            pod_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
            node_prefix: 24,
            overlay: Overlay {
                vni: 4096,
                port: 4789,
                // Underlay MTU minus the 50-byte VXLAN overhead.
                mtu: super::names::MTU - 50,
            },
        },
        hosts: nodes
            .iter()
            .enumerate()
            .map(|(i, (name, address))| Host {
                name: name.clone(),
                address: address.clone(),
                roles: roles(i, nodes.len(), control_planes),
            })
            .collect(),
    };
    let body = serde_yaml::to_string(&file)?;
    Ok(format!(
        "# director-boot lab inventory (generated by `director-boot lab up`; rewritten on each up)\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_roles_keys_and_lab_knobs() {
        let nodes = vec![
            ("node1".to_string(), "10.213.0.11".to_string()),
            ("node2".to_string(), "10.213.0.12".to_string()),
        ];
        let text = render(Path::new("/s/lab"), &nodes, 1).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["cluster"]["name"], "lab");
        assert_eq!(v["defaults"]["user"], "root");
        assert_eq!(v["defaults"]["identity_file"], "/s/lab/id_ed25519");
        assert_eq!(v["ssh"]["known_hosts"], "/s/lab/known_hosts");
        assert_eq!(v["hosts"][0]["name"], "node1");
        assert_eq!(v["hosts"][0]["address"], "10.213.0.11");
        let roles: Vec<&str> = v["hosts"][0]["roles"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        assert_eq!(roles, vec!["etcd", "control-plane", "worker"]);
        assert_eq!(v["hosts"][1]["roles"][0], "worker");
        assert_eq!(v["hosts"][1]["roles"].as_sequence().unwrap().len(), 1);
        let k = &v["defaults"]["kubelet_extra"];
        assert_eq!(k["failCgroupV1"], false);
        assert_eq!(k["cgroupRoot"], "/");
        assert_eq!(k["protectKernelDefaults"], false);
        assert_eq!(k["failSwapOn"], false);
        assert_eq!(
            v["defaults"]["containerd_extra"]["plugins"]["io.containerd.grpc.v1.cri"]["restrict_oom_score_adj"],
            true
        );
        assert_eq!(v["network"]["overlay"]["mtu"], 1450);
        // One control plane: no endpoint, as before the option existed.
        assert!(!text.contains("control_plane_endpoint"), "{text}");
        // `lab up --user ops`: the inventory logs in as ops, through sudo.
        let text = render_for(Path::new("/s/lab"), &nodes, 1, Some("ops")).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["defaults"]["user"], "ops");
        assert_eq!(v["defaults"]["sudo"], true);
    }

    fn lab_nodes(n: u32) -> Vec<(String, String)> {
        (1..=n)
            .map(|i| {
                (
                    crate::lab::names::node_name(i),
                    crate::lab::names::node_address(i).to_string(),
                )
            })
            .collect()
    }

    /// Every host's roles, in order, joined for a compact comparison.
    fn roles_of(text: &str) -> Vec<String> {
        let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        v["hosts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|h| {
                let roles: Vec<&str> = h["roles"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .filter_map(|r| r.as_str())
                    .collect();
                roles.join(",")
            })
            .collect()
    }

    #[test]
    fn three_of_five_control_planes_with_the_endpoint() {
        let text = render(Path::new("/s/lab"), &lab_nodes(5), 3).unwrap();
        assert_eq!(
            roles_of(&text),
            [
                "etcd,control-plane",
                "etcd,control-plane",
                "etcd,control-plane",
                "worker",
                "worker"
            ]
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            v["cluster"]["control_plane_endpoint"],
            crate::lab::names::endpoint_address().to_string()
        );
    }

    #[test]
    fn all_control_planes_are_workers_too() {
        let text = render(Path::new("/s/lab"), &lab_nodes(3), 3).unwrap();
        assert_eq!(roles_of(&text), ["etcd,control-plane,worker"; 3]);
        let text = render(Path::new("/s/lab"), &lab_nodes(1), 1).unwrap();
        assert_eq!(roles_of(&text), ["etcd,control-plane,worker"]);
    }

    /// What `lab up` writes is what `validate` accepts (with a stand-in key file).
    #[test]
    fn written_inventories_validate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id_ed25519"), "key").unwrap();
        std::fs::set_permissions(
            dir.path().join("id_ed25519"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        for (n, k) in [(1, 1), (3, 1), (3, 3), (5, 3), (5, 5), (7, 5)] {
            let text = render(dir.path(), &lab_nodes(n), k as usize).unwrap();
            let path = dir.path().join("inventory.yaml");
            match crate::inventory::load_str(&text, &path) {
                Ok(inv) => {
                    assert_eq!(
                        inv.hosts_with(crate::inventory::Role::ControlPlane).count(),
                        k as usize
                    );
                    let ep = inv
                        .control_plane_endpoint
                        .map(|e| (e.host_port(), e.managed_vip));
                    let vip = crate::lab::names::endpoint_address();
                    let want = (k > 1).then(|| (format!("{vip}:6443"), true));
                    assert_eq!(ep, want, "{n} nodes, {k} control planes");
                }
                Err(e) => panic!("{n} nodes, {k} control planes: {e}\n{text}"),
            }
        }
    }
}
