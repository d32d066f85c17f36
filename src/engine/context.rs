//! What templates see: `cluster` (the same on every host) and `node` (this host), built from the
//! inventory, the gathered facts and the recorded pod subnets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::subnets::{from_end, nth};
use crate::facts::Facts;
use crate::inventory::{Backend, Host, HostRole, Inventory};
use crate::osfamily::OsFamily;

/// Bytes VXLAN adds to every packet (outer IPv4 + UDP + VXLAN + inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Bytes WireGuard adds to every packet over IPv4 (outer IPv4 20 + UDP 8 + WireGuard header 16
/// + authentication tag 16).
pub const WIREGUARD_OVERHEAD: u32 = 60;
/// Name of the overlay's VXLAN device on every node.
pub const VXLAN_DEVICE: &str = "dbvx0";
/// Name of the overlay's WireGuard device on every node (`network.overlay.encrypt`).
pub const WIREGUARD_DEVICE: &str = "dbwg0";
/// UDP port WireGuard listens on (its customary port, as Calico and flannel use).
pub const WIREGUARD_PORT: u16 = 51820;
/// Where each host keeps its WireGuard private key (0600, generated there).
pub const WIREGUARD_KEY: &str = "/etc/director-boot/wireguard/private.key";
/// Name of the bridge local pods attach to.
pub const POD_BRIDGE: &str = "dbbr0";
/// Addresses at the top of every node's pod subnet that pods never get (the broadcast address
/// excluded): netcheck's namespace uses the last one, the rest are kept for later use.
pub const RESERVED_AT_END: u32 = 5;

/// Port of the node-local API load balancer (k3s's choice): 6443 is the API server's own on
/// control planes.
pub const API_LB_PORT: u16 = 6444;

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
    /// `address:6443`, IPv6 in brackets: the member's API server for load balancers.
    pub endpoint: String,
}

/// The node-local API load balancer every node's components use (HA clusters).
#[derive(Debug, Clone, Serialize)]
pub struct ApiLb {
    pub port: u16,
}

/// The control-plane endpoint as a virtual IP held by one control plane (keepalived).
#[derive(Debug, Clone, Serialize)]
pub struct Vip {
    pub address: IpAddr,
    /// VRRP virtual router id, from the cluster name: two clusters on one segment differ.
    pub router_id: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub name: String,
    pub address: IpAddr,
    pub pod_subnet: IpNet,
    /// The peer's VXLAN endpoint address on the overlay (its subnet's network address).
    pub vtep_address: IpAddr,
    pub vtep_mac: String,
    /// In `cluster.nodes`: the host's own setting; in `node.peers`: what the pair uses
    /// (`Backend::pair` of both ends' settings; `auto` is decided on the host, per peer).
    pub backend: Backend,
    /// The host's WireGuard public key (`network.overlay.encrypt`), read from the host by the
    /// overlay-keys phase (the private key never leaves it); empty without encryption.
    pub wg_public_key: String,
    /// A key the host is rotating to (`overlay rotate-keys`): its peers already answer its
    /// handshakes, while `wg_public_key` still carries the traffic. Usually empty.
    pub wg_announced_key: String,
}

/// TLS cipher suites for every component's server (the CIS Benchmark's list for kubelets,
/// 4.2.12, which is also within its lists for the API server and etcd): ECDHE with AEAD only.
/// TLS 1.3 suites are not configurable in Go and all strong.
pub const TLS_CIPHER_SUITES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";

/// The API server's audit log (`cluster.audit` in the inventory).
#[derive(Debug, Clone, Serialize)]
pub struct AuditContext {
    pub path: String,
    /// The directory of `path`, created 0700.
    pub dir: String,
    pub max_age_days: u32,
    pub max_backups: u32,
    pub max_size_mb: u32,
}

impl From<&crate::inventory::Audit> for AuditContext {
    fn from(a: &crate::inventory::Audit) -> Self {
        let dir = std::path::Path::new(&a.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        AuditContext {
            path: a.path.clone(),
            dir,
            max_age_days: a.max_age_days,
            max_backups: a.max_backups,
            max_size_mb: a.max_size_mb,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterContext {
    pub name: String,
    pub domain: String,
    pub kubernetes_version: String,
    pub pod_cidr: IpNet,
    pub service_cidr: IpNet,
    pub node_prefix: u8,
    /// First service IP: the `kubernetes` Service.
    pub api_service_ip: IpAddr,
    /// Tenth service IP: cluster DNS.
    pub dns_ip: IpAddr,
    /// URL the nodes' components use to reach the API: the node-local load balancer when the
    /// cluster has a control-plane endpoint, else the only control-plane host.
    pub api_server: String,
    /// URL users and tools use (admin kubeconfig): the control-plane endpoint, else the only
    /// control-plane host.
    pub api_endpoint: String,
    /// Set when the cluster has a control-plane endpoint.
    pub api_lb: Option<ApiLb>,
    /// Set when the endpoint is an address director-boot holds as a virtual IP.
    pub vip: Option<Vip>,
    pub control_plane: Vec<Member>,
    pub etcd: Vec<Member>,
    /// `name=https://addr:2380,...` for etcd's --initial-cluster.
    pub etcd_initial_cluster: String,
    /// `https://addr:2379,...` for the API server.
    pub etcd_endpoints: String,
    /// etcd's --initial-cluster-token: `<name>-etcd`, or the one `restore` recorded in the
    /// cluster state (set by the host plan).
    pub etcd_token: String,
    pub overlay_vni: u32,
    pub overlay_port: u16,
    /// Pod traffic between hosts goes through WireGuard (`network.overlay.encrypt`).
    pub overlay_encrypt: bool,
    pub wireguard_device: &'static str,
    pub wireguard_port: u16,
    pub wireguard_key: &'static str,
    pub nodes: Vec<Peer>,
    /// Image references by short name (`pause`, `coredns`), from the artifact manifest.
    pub images: BTreeMap<String, String>,
    pub audit: AuditContext,
    /// `TLS_CIPHER_SUITES`, for templates.
    pub tls_cipher_suites: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeContext {
    pub name: String,
    pub address: IpAddr,
    pub roles: Vec<String>,
    pub family: String,
    pub cni_bin_dir: String,
    pub firewalld: bool,
    pub selinux: bool,
    pub pod_subnet: IpNet,
    /// The pod bridge's address (first host of the subnet); also the host's own address on
    /// the overlay (`overlay expose`).
    pub pod_gateway: IpAddr,
    pub pod_prefix_len: u8,
    pub pod_bridge: &'static str,
    /// Last address CNI's host-local IPAM hands out; the ones above it are director-boot's
    /// (see `RESERVED_AT_END`).
    pub ipam_range_end: IpAddr,
    /// netcheck's namespace on the pod bridge.
    pub netcheck_address: IpAddr,
    pub vtep_address: IpAddr,
    pub vtep_mac: String,
    pub underlay_interface: String,
    pub underlay_mtu: u32,
    pub overlay_mtu: u32,
    /// This host's own backend setting (its peers' pairs are in `peers[].backend`).
    pub overlay_backend: Backend,
    /// Pod traffic to every peer goes through WireGuard (`network.overlay.encrypt`).
    pub overlay_encrypt: bool,
    /// Every other node, for the overlay's routes and FDB entries.
    pub peers: Vec<Peer>,
    pub kubelet_extra: serde_json::Value,
    pub containerd_extra: serde_json::Value,
    /// This etcd member's `--initial-cluster` and `--initial-cluster-state`: the whole
    /// cluster and `new` for a member bootstrapping it; the members of the day and `existing`
    /// for one added later (set from the cluster state by the etcd-members phase, so a member's
    /// unit never changes when another joins).
    pub etcd_initial_cluster: String,
    pub etcd_cluster_state: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{host}: no pod subnet recorded")]
    NoSubnet { host: String },
    #[error(
        "{host}: OS family is not supported ({os}); director-boot supports RHEL-family and Debian-family hosts"
    )]
    Unsupported { host: String, os: String },
    #[error("service CIDR {0} is too small for the API and DNS service IPs")]
    ServiceCidr(IpNet),
    #[error(
        "{host}: network.overlay.mtu {mtu} + {overhead} bytes of {what} is more than the underlay MTU {underlay} of {interface}: full-size pod packets would be dropped; set mtu to at most {max} or remove it (auto)"
    )]
    MtuTooBig {
        host: String,
        mtu: u32,
        overhead: u32,
        what: &'static str,
        underlay: u32,
        interface: String,
        max: u32,
    },
    #[error("{host}: extra settings are not representable: {reason}")]
    Extra { host: String, reason: String },
}

/// A stable, locally administered MAC for a node's VXLAN device, so peers can be told it
/// without asking the node.
pub fn vtep_mac(cluster: &str, node: &str) -> String {
    let digest = Sha256::digest(format!("{cluster}/{node}").as_bytes());
    let mut b = [0u8; 6];
    b.copy_from_slice(&digest[..6]);
    b[0] = (b[0] & 0xfe) | 0x02;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn members(inv: &Inventory, role: HostRole) -> Vec<Member> {
    inv.hosts_with(role)
        .map(|h| Member {
            name: h.name.clone(),
            address: h.ssh.address,
            endpoint: format!("{}:6443", url_host(h.ssh.address)),
        })
        .collect()
}

/// A VRRP virtual router id (1..=255) that differs between clusters on one segment.
pub fn vrrp_router_id(cluster: &str) -> u8 {
    let digest = Sha256::digest(format!("vrrp/{cluster}").as_bytes());
    (digest[0] % 255) + 1
}

fn url_host(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

pub fn cluster(
    inv: &Inventory,
    subnets: &BTreeMap<String, IpNet>,
    kubernetes_version: &str,
    images: BTreeMap<String, String>,
) -> Result<ClusterContext, ContextError> {
    let control_plane = members(inv, HostRole::ControlPlane);
    let etcd = members(inv, HostRole::Etcd);
    let svc = inv.network.service_cidr;
    let api_service_ip = nth(svc, 1).ok_or(ContextError::ServiceCidr(svc))?;
    let dns_ip = nth(svc, 10).ok_or(ContextError::ServiceCidr(svc))?;
    let first_control_plane = control_plane
        .first()
        .map(|m| format!("https://{}", m.endpoint))
        .unwrap_or_default();
    let endpoint = inv.control_plane_endpoint.as_ref();
    let api_lb = endpoint.map(|_| ApiLb { port: API_LB_PORT });
    let api_server = match &api_lb {
        Some(lb) => format!("https://127.0.0.1:{}", lb.port),
        None => first_control_plane.clone(),
    };
    let api_endpoint = endpoint.map_or(first_control_plane, |e| e.url());
    let vip = endpoint.and_then(|e| e.vip()).map(|address| Vip {
        address,
        router_id: vrrp_router_id(&inv.cluster_name),
    });
    let mut nodes = Vec::new();
    for h in &inv.hosts {
        let subnet = *subnets.get(&h.name).ok_or_else(|| ContextError::NoSubnet {
            host: h.name.clone(),
        })?;
        nodes.push(Peer {
            name: h.name.clone(),
            address: h.ssh.address,
            pod_subnet: subnet,
            vtep_address: subnet.network(),
            vtep_mac: vtep_mac(&inv.cluster_name, &h.name),
            backend: h.overlay_backend.unwrap_or(inv.network.overlay.backend),
            wg_public_key: String::new(),
            wg_announced_key: String::new(),
        });
    }
    Ok(ClusterContext {
        name: inv.cluster_name.clone(),
        domain: "cluster.local".into(),
        kubernetes_version: kubernetes_version.to_string(),
        pod_cidr: inv.network.pod_cidr,
        service_cidr: svc,
        node_prefix: inv.network.node_prefix,
        api_service_ip,
        dns_ip,
        api_server,
        api_endpoint,
        api_lb,
        vip,
        etcd_initial_cluster: etcd
            .iter()
            .map(|m| format!("{}=https://{}:2380", m.name, url_host(m.address)))
            .collect::<Vec<_>>()
            .join(","),
        etcd_endpoints: etcd
            .iter()
            .map(|m| format!("https://{}:2379", url_host(m.address)))
            .collect::<Vec<_>>()
            .join(","),
        etcd_token: format!("{}-etcd", inv.cluster_name),
        control_plane,
        etcd,
        overlay_vni: inv.network.overlay.vni,
        overlay_port: inv.network.overlay.port,
        overlay_encrypt: inv.network.overlay.encrypt,
        wireguard_device: WIREGUARD_DEVICE,
        wireguard_port: WIREGUARD_PORT,
        wireguard_key: WIREGUARD_KEY,
        nodes,
        images,
        audit: AuditContext::from(&inv.audit),
        tls_cipher_suites: TLS_CIPHER_SUITES,
    })
}

fn to_json(host: &str, m: &serde_yaml::Mapping) -> Result<serde_json::Value, ContextError> {
    serde_json::to_value(m).map_err(|e| ContextError::Extra {
        host: host.to_string(),
        reason: e.to_string(),
    })
}

pub fn node(
    inv: &Inventory,
    cluster: &ClusterContext,
    host: &Host,
    facts: &Facts,
) -> Result<NodeContext, ContextError> {
    let family: OsFamily = facts.family.ok_or_else(|| ContextError::Unsupported {
        host: host.name.clone(),
        os: facts.os.pretty_name.clone(),
    })?;
    let traits = family.traits();
    let me = cluster
        .nodes
        .iter()
        .find(|p| p.name == host.name)
        .ok_or_else(|| ContextError::NoSubnet {
            host: host.name.clone(),
        })?;
    let underlay_mtu = facts.mtu.unwrap_or(1500);
    let peers: Vec<Peer> = cluster
        .nodes
        .iter()
        .filter(|p| p.name != host.name)
        .map(|p| Peer {
            backend: me.backend.pair(p.backend),
            ..p.clone()
        })
        .collect();
    let encrypt = inv.network.overlay.encrypt;
    let overlay_mtu = inv
        .network
        .overlay
        .mtu
        .unwrap_or_else(|| auto_mtu(underlay_mtu, encrypt, me.backend, &peers));
    Ok(NodeContext {
        name: host.name.clone(),
        address: host.ssh.address,
        roles: host.roles.iter().map(|r| r.as_str().to_string()).collect(),
        family: family.as_str().to_string(),
        cni_bin_dir: traits.cni_bin_dir.to_string(),
        // A running firewalld filters whatever the family (a Debian host may run it too).
        firewalld: traits.firewalld || facts.firewalld_active,
        selinux: traits.selinux,
        pod_subnet: me.pod_subnet,
        pod_gateway: nth(me.pod_subnet, 1).unwrap_or(me.vtep_address),
        pod_prefix_len: me.pod_subnet.prefix_len(),
        pod_bridge: POD_BRIDGE,
        ipam_range_end: from_end(me.pod_subnet, RESERVED_AT_END + 1).unwrap_or(me.vtep_address),
        netcheck_address: from_end(me.pod_subnet, 1).unwrap_or(me.vtep_address),
        vtep_address: me.vtep_address,
        vtep_mac: me.vtep_mac.clone(),
        underlay_interface: facts.interface.clone(),
        underlay_mtu,
        overlay_mtu,
        overlay_backend: me.backend,
        overlay_encrypt: encrypt,
        peers,
        kubelet_extra: to_json(&host.name, &host.kubelet_extra)?,
        containerd_extra: to_json(&host.name, &host.containerd_extra)?,
        etcd_initial_cluster: cluster.etcd_initial_cluster.clone(),
        etcd_cluster_state: crate::membership::STATE_NEW.to_string(),
    })
}

/// A set overlay MTU that cannot fit the host's underlay with the encapsulation in use (init
/// refuses the host; netcheck measures and diagnoses such a host instead). Only facts tell the
/// underlay's MTU: without them nothing is said.
pub fn mtu_problem(inv: &Inventory, nc: &NodeContext, facts: &Facts) -> Option<ContextError> {
    let (m, u) = (inv.network.overlay.mtu?, facts.mtu?);
    let room = u.saturating_sub(auto_mtu(
        u,
        nc.overlay_encrypt,
        nc.overlay_backend,
        &nc.peers,
    ));
    (m + room > u).then(|| ContextError::MtuTooBig {
        host: nc.name.clone(),
        mtu: m,
        overhead: room,
        what: if nc.overlay_encrypt {
            "WireGuard"
        } else {
            "VXLAN"
        },
        underlay: u,
        interface: facts.interface.clone(),
        max: u - room,
    })
}

/// The pod MTU when the inventory leaves it to director-boot: the underlay's minus the largest
/// header any path from this host adds. Without encryption, only a host whose every pair is
/// `direct` sends everything unencapsulated; `auto` may fall back to VXLAN for any peer (the
/// decision is the host's, at run time), so it keeps VXLAN's room.
pub fn auto_mtu(underlay: u32, encrypt: bool, own: Backend, peers: &[Peer]) -> u32 {
    let overhead = if encrypt {
        WIREGUARD_OVERHEAD
    } else if own == Backend::Direct && peers.iter().all(|p| p.backend == Backend::Direct) {
        0
    } else {
        VXLAN_OVERHEAD
    };
    underlay.saturating_sub(overhead)
}

/// The node contexts of connected hosts, for the commands that only touch the network (overlay
/// status/expose, netcheck): no artifact mirror, so no versions or images.
pub fn network_only(
    inv: &Inventory,
    subnets: &BTreeMap<String, IpNet>,
    nodes: &[crate::node::Node],
) -> Result<BTreeMap<String, NodeContext>, ContextError> {
    let cluster = cluster(inv, subnets, "", BTreeMap::new())?;
    nodes
        .iter()
        .map(|n| {
            Ok((
                n.name().to_string(),
                node(inv, &cluster, &n.host, &n.facts)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_mtu_that_cannot_fit_the_underlay_is_refused() {
        let text = "cluster: {name: c1}\nnetwork:\n  overlay: {encrypt: true, mtu: 1450}\nhosts:\n  - {name: n1, address: 10.0.0.2, roles: [etcd, control-plane, worker]}\n";
        let inv = crate::inventory::load_str(text, std::path::Path::new("inv.yaml")).unwrap();
        let subnets = BTreeMap::from([("n1".to_string(), "10.244.0.0/24".parse().unwrap())]);
        let c = cluster(&inv, &subnets, "v1.36.3", BTreeMap::new()).unwrap();
        let facts = Facts::parse(
            "now=1000.500\nkernel=6.1.0\narch=x86_64\ncpus=2\nmem_kib=2048000\ninit=systemd\nhostname=n1\nmachine_id=abc\niface=eth0\naddress=10.0.0.2\nmtu=1500\nos_ID=rocky\nos_VERSION_ID=\"9.4\"\nos_PRETTY_NAME=\"Rocky Linux 9.4\"\n",
            1000.0,
            1001.0,
        )
        .unwrap();
        let n = node(&inv, &c, &inv.hosts[0], &facts).unwrap();
        let err = mtu_problem(&inv, &n, &facts).unwrap();
        assert_eq!(
            err.to_string(),
            "n1: network.overlay.mtu 1450 + 60 bytes of WireGuard is more than the underlay MTU 1500 of eth0: full-size pod packets would be dropped; set mtu to at most 1440 or remove it (auto)"
        );
        let auto = crate::inventory::load_str(
            &text.replace(", mtu: 1450", ""),
            std::path::Path::new("inv.yaml"),
        )
        .unwrap();
        let n = node(&auto, &c, &auto.hosts[0], &facts).unwrap();
        assert_eq!(n.overlay_mtu, 1440);
        assert!(mtu_problem(&auto, &n, &facts).is_none());
    }

    #[test]
    fn vtep_mac_is_stable_and_local() {
        let a = vtep_mac("lab", "node1");
        assert_eq!(a, vtep_mac("lab", "node1"));
        assert_ne!(a, vtep_mac("lab", "node2"));
        let first = u8::from_str_radix(&a[..2], 16).unwrap();
        assert_eq!(first & 0x03, 0x02, "unicast, locally administered: {a}");
    }

    fn peer(backend: Backend) -> Peer {
        Peer {
            name: "p".into(),
            address: "10.0.0.2".parse().unwrap(),
            pod_subnet: "10.244.1.0/24".parse().unwrap(),
            vtep_address: "10.244.1.0".parse().unwrap(),
            vtep_mac: vtep_mac("lab", "p"),
            backend,
            wg_public_key: String::new(),
            wg_announced_key: String::new(),
        }
    }

    #[test]
    fn a_pair_takes_vxlan_when_either_end_asks_and_the_mtu_leaves_room_for_it() {
        use Backend::*;
        assert_eq!(Auto.pair(Vxlan), Vxlan);
        assert_eq!(Direct.pair(Vxlan), Vxlan);
        assert_eq!(Auto.pair(Direct), Direct);
        assert_eq!(Auto.pair(Auto), Auto);
        assert_eq!(auto_mtu(1500, false, Auto, &[peer(Auto)]), 1450);
        assert_eq!(auto_mtu(1500, false, Direct, &[peer(Direct)]), 1500);
        assert_eq!(auto_mtu(1500, false, Direct, &[peer(Vxlan)]), 1450);
        assert_eq!(auto_mtu(1500, true, Direct, &[peer(Direct)]), 1440);
    }
}
