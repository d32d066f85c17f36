//! The inventory as written: every field optional (defaults come later) and every value
//! carrying the place it was written, so later checks can point at it.
//!
//! `decode.rs` fills these from the YAML tree; a field that was missing or ill-typed is `None`
//! here and has already been reported.

use std::net::IpAddr;

use ipnet::IpNet;

use super::tree::Mark;
use super::{Backend, Role};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub mark: Mark,
}

/// `sudo: auto | true | false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sudo {
    /// Use sudo unless the user is root.
    Auto,
    Always,
    Never,
}

/// `identity_file`: a path, or an explicit null meaning "use the ssh-agent" (which lets a host
/// opt out of a key set in `defaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Agent,
    File(String),
}

/// Settings that `defaults` gives every host and each host may override.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawHostSettings {
    pub user: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub identity_file: Option<Spanned<Identity>>,
    pub sudo: Option<Spanned<Sudo>>,
    pub kubelet_extra: Option<Spanned<serde_yaml::Mapping>>,
    pub containerd_extra: Option<Spanned<serde_yaml::Mapping>>,
}

impl RawHostSettings {
    pub const FIELDS: [&'static str; 6] = [
        "user",
        "port",
        "identity_file",
        "sudo",
        "kubelet_extra",
        "containerd_extra",
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawHost {
    /// Position in the written list (entries that are not hosts at all are left out).
    pub index: usize,
    /// Where the host's entry starts (for "missing field" problems).
    pub mark: Mark,
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<IpAddr>>,
    pub roles: Option<Spanned<Vec<Spanned<Role>>>>,
    pub overlay_backend: Option<Spanned<Backend>>,
    pub settings: RawHostSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawBastion {
    pub mark: Mark,
    pub address: Option<Spanned<IpAddr>>,
    pub port: Option<Spanned<u16>>,
    pub user: Option<Spanned<String>>,
    pub identity_file: Option<Spanned<Identity>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSsh {
    pub known_hosts: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<u64>>,
    pub bastion: Option<RawBastion>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawOverlay {
    pub vni: Option<Spanned<u32>>,
    pub port: Option<Spanned<u16>>,
    /// `Some(None)` is an explicit `auto`.
    pub mtu: Option<Spanned<Option<u32>>>,
    pub backend: Option<Spanned<Backend>>,
    pub encrypt: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawNetwork {
    pub pod_cidr: Option<Spanned<IpNet>>,
    pub service_cidr: Option<Spanned<IpNet>>,
    pub node_prefix: Option<Spanned<u8>>,
    pub overlay: RawOverlay,
}

/// The host of `cluster.control_plane_endpoint`, as written (already a valid IP or DNS name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEndpointHost {
    Ip(IpAddr),
    Dns(String),
}

/// `vip: auto | true | false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vip {
    /// A virtual IP when the host is an IP address; the user's own when it is a DNS name.
    Auto,
    Yes,
    No,
}

/// `cluster.control_plane_endpoint`, short (`host[:port]`) or long (`{address, port, vip}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawEndpoint {
    pub mark: Mark,
    /// The field the host was written in: the endpoint itself, or its `address`.
    pub host_field: String,
    pub host: Spanned<RawEndpointHost>,
    pub port: Option<Spanned<u16>>,
    pub vip: Option<Spanned<Vip>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawInventory {
    /// Where the document starts: the place to point at for a missing top-level section.
    pub mark: Mark,
    /// Where `cluster:` was written (its key), for problems that ask to add a field there.
    pub cluster_mark: Option<Mark>,
    pub cluster_name: Option<Spanned<String>>,
    pub control_plane_endpoint: Option<RawEndpoint>,
    /// A non-null endpoint was written (even one `decode` could not use, already reported).
    pub endpoint_written: bool,
    /// `cluster.audit`, defaults applied (already checked).
    pub audit: super::Audit,
    pub defaults: RawHostSettings,
    pub ssh: RawSsh,
    pub network: RawNetwork,
    /// `artifacts:` (already checked for shape).
    pub artifacts: Option<RawArtifacts>,
    /// `None` when missing or not a list (already reported); the mark is the list's.
    pub hosts: Option<Spanned<Vec<RawHost>>>,
}

/// `artifacts: {url, manifest}` as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RawArtifacts {
    pub url: Spanned<String>,
    pub manifest: Option<Spanned<String>>,
}
