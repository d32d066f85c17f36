//! The resolved inventory: what the rest of director-boot codes against.
//!
//! The YAML form (with `defaults` and per-host overrides) lives in `raw.rs`; `load` turns it into
//! these types after validation, so no other module ever sees an unresolved or invalid value.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What a host does in the cluster (the inventory's `roles:`), as opposed to a component role
/// (`engine::role::ComponentRole`, a `roles/<component>/role.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostRole {
    Etcd,
    ControlPlane,
    Worker,
}

/// The inventory's own short name for `HostRole`.
pub type Role = HostRole;

impl Role {
    pub const ALL: [Role; 3] = [Role::Etcd, Role::ControlPlane, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Etcd => "etcd",
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to reach one machine over SSH (a cluster host or the bastion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshEndpoint {
    pub address: IpAddr,
    pub port: u16,
    pub user: String,
    /// Private key file; `None` means: use the ssh-agent.
    pub identity_file: Option<PathBuf>,
}

/// One cluster host with every default and override already applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub name: String,
    pub ssh: SshEndpoint,
    /// Wrap privileged commands in `sudo -n` (true for any user but root unless set).
    pub sudo: bool,
    pub roles: BTreeSet<Role>,
    /// Extra kubelet configuration merged over the generated KubeletConfiguration.
    pub kubelet_extra: serde_yaml::Mapping,
    /// Extra containerd settings merged over the generated config.toml.
    pub containerd_extra: serde_yaml::Mapping,
    /// This host's own `overlay_backend`, over `network.overlay.backend`.
    pub overlay_backend: Option<Backend>,
}

impl Host {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// SSH settings that apply to the whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshSettings {
    /// OpenSSH-format known_hosts file; `None` means the state dir's.
    pub known_hosts: Option<PathBuf>,
    pub bastion: Option<SshEndpoint>,
    pub connect_timeout_secs: u64,
}

/// How pod traffic travels to a peer (`network.overlay.backend`, `hosts[].overlay_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A plain route via the peer's host address when the peer is on the same L2 segment (the
    /// host's route to it has no gateway), VXLAN otherwise; decided per peer on the host.
    Auto,
    /// Always VXLAN.
    Vxlan,
    /// Always a plain route via the peer's host address (the hosts share an L2 segment).
    Direct,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Auto, Backend::Vxlan, Backend::Direct];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Vxlan => "vxlan",
            Backend::Direct => "direct",
        }
    }

    /// What a pair of hosts uses between them, from both ends' settings: VXLAN when either
    /// asks for it (so both directions take the same path), else direct when either does.
    pub fn pair(self, other: Backend) -> Backend {
        match (self, other) {
            (Backend::Vxlan, _) | (_, Backend::Vxlan) => Backend::Vxlan,
            (Backend::Direct, _) | (_, Backend::Direct) => Backend::Direct,
            _ => Backend::Auto,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlay {
    pub vni: u32,
    pub port: u16,
    /// `None` means: underlay MTU minus the overhead of the encapsulation in use, from facts.
    pub mtu: Option<u32>,
    /// Every host's backend unless the host sets its own (`hosts[].overlay_backend`).
    pub backend: Backend,
    /// Pod traffic between hosts goes through WireGuard.
    pub encrypt: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub pod_cidr: IpNet,
    pub service_cidr: IpNet,
    /// Prefix length of each node's slice of `pod_cidr`.
    pub node_prefix: u8,
    pub overlay: Overlay,
}

/// The host part of the control-plane endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointHost {
    Ip(IpAddr),
    /// A DNS name (validated; lowercase letters as written are kept).
    Dns(String),
}

impl fmt::Display for EndpointHost {
    /// The bare host, as a certificate SAN or a keepalived address (IPv6 without brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointHost::Ip(ip) => write!(f, "{ip}"),
            EndpointHost::Dns(name) => f.write_str(name),
        }
    }
}

/// `cluster.control_plane_endpoint`: where users, tools and in-cluster clients reach the API
/// servers of a cluster with one or more control planes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlPlaneEndpoint {
    pub host: EndpointHost,
    /// The API port on the endpoint (6443 unless written).
    pub port: u16,
    /// director-boot holds `host` (an IP address) as a virtual IP on the control planes
    /// (keepalived); false when the user runs the load balancer or DNS name behind it.
    pub managed_vip: bool,
}

impl ControlPlaneEndpoint {
    /// The default API port, as kubeadm's.
    pub const DEFAULT_PORT: u16 = 6443;

    /// `host:port` for URLs and dial addresses: `192.168.56.10:6443`, `[fd00::10]:6443`,
    /// `api.example.com:8443`.
    pub fn host_port(&self) -> String {
        match &self.host {
            EndpointHost::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }

    /// The API server URL through the endpoint, e.g. `https://192.168.56.10:6443`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host_port())
    }

    /// The virtual IP director-boot manages, if it is one.
    pub fn vip(&self) -> Option<IpAddr> {
        match self.host {
            EndpointHost::Ip(ip) if self.managed_vip => Some(ip),
            _ => None,
        }
    }
}

/// `cluster.audit`: where the API server writes its audit log and how long it keeps it. The
/// defaults are the CIS Benchmark's minimums (1.2.17-1.2.19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// An absolute path on the control planes.
    pub path: String,
    pub max_age_days: u32,
    pub max_backups: u32,
    pub max_size_mb: u32,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            path: "/var/log/kubernetes/audit/audit.log".into(),
            max_age_days: 30,
            max_backups: 10,
            max_size_mb: 100,
        }
    }
}

/// `artifacts:`, relative paths resolved against the inventory's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactsSource {
    /// An http(s) URL as written, or an absolute path (a directory or a bundle file).
    pub url: String,
    pub manifest: Option<PathBuf>,
}

/// A validated inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub cluster_name: String,
    /// Required with more than one control plane; `None` means the first control plane's own
    /// address (the single-control-plane behaviour).
    pub control_plane_endpoint: Option<ControlPlaneEndpoint>,
    pub audit: Audit,
    /// `artifacts:`: where `init` fetches what the mirror lacks.
    pub artifacts: Option<ArtifactsSource>,
    pub ssh: SshSettings,
    pub network: Network,
    pub hosts: Vec<Host>,
    /// Things that are allowed but unwise.
    pub warnings: Vec<String>,
}

impl Inventory {
    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.has_role(role))
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
