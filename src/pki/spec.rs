//! What the cluster PKI must contain: the input spec, the on-disk layout and the
//! derived plan (one entry per certificate).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::{PkiError, Result};
use crate::inventory::{Inventory, Role};

/// A host that gets certificates: its name (a DNS-1123 subdomain, also used in
/// file names) and the address other members reach it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
}

impl Member {
    pub fn new(name: impl Into<String>, address: IpAddr) -> Self {
        Self {
            name: name.into(),
            address,
        }
    }
}

/// Input of [`super::ensure`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiSpec {
    /// Used in the CA subjects and in kubeconfigs.
    pub cluster_name: String,
    /// Hosts running kube-apiserver: their names and addresses go into the
    /// apiserver serving certificate.
    pub control_plane: Vec<Member>,
    /// etcd members: each gets `etcd/server-<name>` and `etcd/peer-<name>`.
    pub etcd: Vec<Member>,
    /// Every host running a kubelet (control-plane hosts included if they run
    /// one): each gets `kubelet-<name>` (client) and `kubelet-<name>-serving`.
    pub nodes: Vec<Member>,
    /// Service CIDR; its first address (10.96.0.1 for 10.96.0.0/12) is the
    /// in-cluster `kubernetes` service IP and goes into the apiserver SANs.
    pub service_cidr: IpNet,
    /// Usually `cluster.local`.
    pub cluster_domain: String,
    /// Extra apiserver SANs (load-balancer name/VIP, ...). Entries that parse
    /// as IP addresses become IP SANs, the rest DNS SANs.
    #[serde(default)]
    pub apiserver_extra_sans: Vec<String>,
}

/// File stems (path relative to the PKI directory, without `.crt`/`.key`).
pub mod layout {
    pub const CA: &str = "ca";
    pub const ETCD_CA: &str = "etcd/ca";
    pub const FRONT_PROXY_CA: &str = "front-proxy-ca";
    pub const APISERVER: &str = "apiserver";
    pub const APISERVER_KUBELET_CLIENT: &str = "apiserver-kubelet-client";
    pub const APISERVER_ETCD_CLIENT: &str = "apiserver-etcd-client";
    pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";
    pub const ETCD_HEALTHCHECK_CLIENT: &str = "etcd/healthcheck-client";
    pub const ADMIN: &str = "admin";
    pub const CONTROLLER_MANAGER: &str = "controller-manager";
    pub const SCHEDULER: &str = "scheduler";
    pub const KUBE_PROXY: &str = "kube-proxy";
    /// Service-account signing key (PKCS#8 PEM) and its public key (SPKI PEM).
    pub const SA_KEY_FILE: &str = "sa.key";
    pub const SA_PUB_FILE: &str = "sa.pub";

    pub fn etcd_server(name: &str) -> String {
        format!("etcd/server-{name}")
    }
    pub fn etcd_peer(name: &str) -> String {
        format!("etcd/peer-{name}")
    }
    pub fn kubelet_client(name: &str) -> String {
        format!("kubelet-{name}")
    }
    pub fn kubelet_serving(name: &str) -> String {
        format!("kubelet-{name}-serving")
    }
    pub fn cert_file(stem: &str) -> String {
        format!("{stem}.crt")
    }
    pub fn key_file(stem: &str) -> String {
        format!("{stem}.key")
    }
}

/// Group put into the `apiserver-kubelet-client` certificate instead of
/// `system:masters`. It must be bound to the built-in ClusterRole
/// `system:kubelet-api-admin`; see [`super::apiserver_kubelet_client_rbac`].
pub const APISERVER_KUBELET_CLIENT_GROUP: &str = "director-boot:apiserver-kubelet-clients";

/// Which CA signs a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CaId {
    Cluster,
    Etcd,
    FrontProxy,
}

pub(crate) const ALL_CAS: [CaId; 3] = [CaId::Cluster, CaId::Etcd, CaId::FrontProxy];

impl CaId {
    pub(crate) fn stem(self) -> &'static str {
        match self {
            CaId::Cluster => layout::CA,
            CaId::Etcd => layout::ETCD_CA,
            CaId::FrontProxy => layout::FRONT_PROXY_CA,
        }
    }
    /// Common name of the CA (same as kubeadm; the cluster name goes into O).
    pub(crate) fn common_name(self) -> &'static str {
        match self {
            CaId::Cluster => "kubernetes",
            CaId::Etcd => "etcd-ca",
            CaId::FrontProxy => "front-proxy-ca",
        }
    }
}

/// One leaf certificate the directory must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafPlan {
    pub stem: String,
    pub ca: CaId,
    pub cn: String,
    pub orgs: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
}

impl LeafPlan {
    fn client(stem: impl Into<String>, ca: CaId, cn: impl Into<String>, orgs: &[&str]) -> Self {
        Self {
            stem: stem.into(),
            ca,
            cn: cn.into(),
            orgs: orgs.iter().map(|o| o.to_string()).collect(),
            dns: Vec::new(),
            ips: Vec::new(),
            server_auth: false,
            client_auth: true,
        }
    }
}

/// DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', starting and
/// ending alphanumeric, at most 253 characters. This also keeps names safe to
/// use in file names.
fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The first usable address of the service CIDR (the `kubernetes` service IP).
/// The API server certificate's extra names for an inventory: the control-plane endpoint's
/// host (address or DNS name), so clients can verify the server behind a VIP or a load balancer.
pub fn endpoint_sans(inv: &Inventory) -> Vec<String> {
    inv.control_plane_endpoint
        .iter()
        .map(|e| e.host.to_string())
        .collect()
}

pub fn first_service_ip(cidr: &IpNet) -> Result<IpAddr> {
    let net = cidr.trunc();
    let ip = match net {
        IpNet::V4(n) => {
            let v = u32::from(n.network()).checked_add(1);
            v.map(|v| IpAddr::V4(v.into()))
        }
        IpNet::V6(n) => {
            let v = u128::from(n.network()).checked_add(1);
            v.map(|v| IpAddr::V6(v.into()))
        }
    };
    match ip {
        Some(ip) if net.contains(&ip) => Ok(ip),
        _ => Err(PkiError::InvalidSpec(format!(
            "service CIDR {cidr} has no room for the kubernetes service IP"
        ))),
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl PkiSpec {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PkiError::InvalidSpec(m));
        if self.cluster_name.trim().is_empty() {
            return bad("cluster_name is empty".into());
        }
        if !valid_dns_name(&self.cluster_domain) {
            return bad(format!(
                "cluster_domain {:?} is not a DNS name",
                self.cluster_domain
            ));
        }
        if self.control_plane.is_empty() {
            return bad("no control-plane members".into());
        }
        if self.etcd.is_empty() {
            return bad("no etcd members".into());
        }
        for (role, members) in [
            ("control_plane", &self.control_plane),
            ("etcd", &self.etcd),
            ("nodes", &self.nodes),
        ] {
            let mut seen = BTreeSet::new();
            for m in members {
                if !valid_dns_name(&m.name) {
                    return bad(format!(
                        "{role} member name {:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')",
                        m.name
                    ));
                }
                if m.address.is_unspecified() {
                    return bad(format!(
                        "{role} member {} has address {}",
                        m.name, m.address
                    ));
                }
                if !seen.insert(m.name.as_str()) {
                    return bad(format!("{role} member {} is listed twice", m.name));
                }
            }
        }
        for san in &self.apiserver_extra_sans {
            if san.parse::<IpAddr>().is_err() && !valid_dns_name(san) {
                return bad(format!(
                    "apiserver extra SAN {san:?} is neither an IP nor a DNS name"
                ));
            }
        }
        first_service_ip(&self.service_cidr)?;
        Ok(())
    }

    /// The spec for an inventory: control-plane hosts for the apiserver SANs,
    /// etcd hosts as etcd members, and kubelet certificates for every
    /// control-plane and worker host. Each host's address is its SSH address
    /// (assumed to be the address the cluster uses); domain `cluster.local`.
    pub fn from_inventory(inv: &Inventory) -> Self {
        let members = |pred: &dyn Fn(&crate::inventory::Host) -> bool| -> Vec<Member> {
            inv.hosts
                .iter()
                .filter(|h| pred(h))
                .map(|h| Member::new(h.name.clone(), h.ssh.address))
                .collect()
        };
        PkiSpec {
            cluster_name: inv.cluster_name.clone(),
            control_plane: members(&|h| h.has_role(Role::ControlPlane)),
            etcd: members(&|h| h.has_role(Role::Etcd)),
            nodes: members(&|h| h.has_role(Role::ControlPlane) || h.has_role(Role::Worker)),
            service_cidr: inv.network.service_cidr,
            cluster_domain: "cluster.local".into(),
            apiserver_extra_sans: endpoint_sans(inv),
        }
    }

    /// Every leaf certificate this spec calls for, in a stable order.
    pub(crate) fn leaves(&self) -> Result<Vec<LeafPlan>> {
        let mut out = Vec::new();

        // kube-apiserver serving certificate.
        let mut dns = Vec::new();
        let mut ips = vec![first_service_ip(&self.service_cidr)?];
        for m in &self.control_plane {
            push_unique(&mut dns, m.name.clone());
            push_unique(&mut ips, m.address);
        }
        for d in [
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            format!("kubernetes.default.svc.{}", self.cluster_domain),
            "localhost".to_string(),
        ] {
            push_unique(&mut dns, d);
        }
        push_unique(&mut ips, IpAddr::from([127, 0, 0, 1]));
        for san in &self.apiserver_extra_sans {
            match san.parse::<IpAddr>() {
                Ok(ip) => push_unique(&mut ips, ip),
                Err(_) => push_unique(&mut dns, san.clone()),
            }
        }
        out.push(LeafPlan {
            stem: layout::APISERVER.into(),
            ca: CaId::Cluster,
            cn: "kube-apiserver".into(),
            orgs: Vec::new(),
            dns,
            ips,
            server_auth: true,
            client_auth: false,
        });
        out.push(LeafPlan::client(
            layout::APISERVER_KUBELET_CLIENT,
            CaId::Cluster,
            "kube-apiserver-kubelet-client",
            &[APISERVER_KUBELET_CLIENT_GROUP],
        ));
        out.push(LeafPlan::client(
            layout::APISERVER_ETCD_CLIENT,
            CaId::Etcd,
            "kube-apiserver-etcd-client",
            &[],
        ));
        out.push(LeafPlan::client(
            layout::FRONT_PROXY_CLIENT,
            CaId::FrontProxy,
            "front-proxy-client",
            &[],
        ));
        out.push(LeafPlan::client(
            layout::ETCD_HEALTHCHECK_CLIENT,
            CaId::Etcd,
            "kube-etcd-healthcheck-client",
            &[],
        ));

        // etcd members.
        for m in &self.etcd {
            let mut ips = vec![m.address];
            push_unique(&mut ips, IpAddr::from([127, 0, 0, 1]));
            push_unique(&mut ips, IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
            let mut dns = vec![m.name.clone()];
            push_unique(&mut dns, "localhost".to_string());
            for stem in [layout::etcd_server(&m.name), layout::etcd_peer(&m.name)] {
                out.push(LeafPlan {
                    stem,
                    ca: CaId::Etcd,
                    cn: m.name.clone(),
                    orgs: Vec::new(),
                    dns: dns.clone(),
                    ips: ips.clone(),
                    server_auth: true,
                    client_auth: true,
                });
            }
        }

        // Component client certificates (for kubeconfigs).
        out.push(LeafPlan::client(
            layout::ADMIN,
            CaId::Cluster,
            "kubernetes-admin",
            &["system:masters"],
        ));
        out.push(LeafPlan::client(
            layout::CONTROLLER_MANAGER,
            CaId::Cluster,
            "system:kube-controller-manager",
            &[],
        ));
        out.push(LeafPlan::client(
            layout::SCHEDULER,
            CaId::Cluster,
            "system:kube-scheduler",
            &[],
        ));
        out.push(LeafPlan::client(
            layout::KUBE_PROXY,
            CaId::Cluster,
            "system:kube-proxy",
            &["system:node-proxier"],
        ));

        // Kubelets.
        for m in &self.nodes {
            out.push(LeafPlan::client(
                layout::kubelet_client(&m.name),
                CaId::Cluster,
                format!("system:node:{}", m.name),
                &["system:nodes"],
            ));
            out.push(LeafPlan {
                stem: layout::kubelet_serving(&m.name),
                ca: CaId::Cluster,
                cn: format!("system:node:{}", m.name),
                orgs: vec!["system:nodes".into()],
                dns: vec![m.name.clone()],
                ips: vec![m.address],
                server_auth: true,
                client_auth: false,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip() {
        let c: IpNet = "10.96.0.0/12".parse().unwrap();
        assert_eq!(first_service_ip(&c).unwrap().to_string(), "10.96.0.1");
        let c: IpNet = "fd00:10:96::/112".parse().unwrap();
        assert_eq!(first_service_ip(&c).unwrap().to_string(), "fd00:10:96::1");
        let c: IpNet = "10.0.0.5/32".parse().unwrap();
        assert!(first_service_ip(&c).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_dns_name("node-1.example"));
        assert!(!valid_dns_name("../etc"));
        assert!(!valid_dns_name("a/b"));
        assert!(!valid_dns_name("Node1"));
        assert!(!valid_dns_name(""));
    }
}
