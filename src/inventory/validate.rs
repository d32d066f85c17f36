//! Checks across fields (names, addresses, CIDRs, roles, key files), then the resolved
//! inventory: defaults applied, host overrides winning, paths expanded.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::local_files::{base_dir, check_key, check_writable_file, expand};
use super::problems::{Problems, join};
use super::raw::*;
use super::tree::{Mark, shorten};
use super::{
    ArtifactsSource, Backend, ControlPlaneEndpoint, EndpointHost, Host, Inventory, Network,
    Overlay, Role, SshEndpoint, SshSettings,
};

pub const DEFAULT_USER: &str = "root";
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 10;
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_NODE_PREFIX: u8 = 24;
pub const DEFAULT_VNI: u32 = 42;
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// kube-apiserver refuses service ranges larger than this many host bits.
const MAX_SERVICE_BITS: u8 = 20;
/// Room for the API server's and the DNS service's fixed addresses and a few more.
const MIN_SERVICE_BITS: u8 = 4;
const IPV6_MIN_MTU: u32 = 1280;

/// kube-controller-manager refuses to split the pod CIDR into more than 2^16 node subnets.
const MAX_NODE_PREFIX_GAP: u8 = 16;

/// Where relative and `~` paths lead.
pub struct Dirs {
    pub base: PathBuf,
    pub home: Option<PathBuf>,
}

impl Dirs {
    pub fn for_file(file: &Path) -> Self {
        Dirs {
            base: base_dir(file),
            home: dirs::home_dir(),
        }
    }
}

/// A setting's value (written or default) and where it was written, if it was.
fn or_default<T: Clone>(s: &Option<Spanned<T>>, default: T) -> (T, Option<Mark>) {
    match s {
        Some(s) => (s.value.clone(), Some(s.mark)),
        None => (default, None),
    }
}

/// Check everything and build the inventory; `None` if any problem was added.
pub fn check(raw: &RawInventory, file: &Path, dirs: &Dirs, p: &mut Problems) -> Option<Inventory> {
    let before = p.list.len();
    let mut warnings = Vec::new();

    if let Some(name) = &raw.cluster_name
        && let Err(why) = dns_label(&name.value)
    {
        p.add(
            Some(name.mark),
            "cluster.name",
            format!("`{}` is not a DNS label: {why}", shorten(&name.value)),
        );
    }

    let hosts: &[RawHost] = raw.hosts.as_ref().map_or(&[], |h| &h.value);
    let network = check_network(&raw.network, hosts.len(), p);

    check_user(&raw.defaults.user, "defaults.user", p);
    let default_key = key_file(
        &raw.defaults.identity_file,
        "defaults.identity_file",
        dirs,
        p,
    );
    let ssh = check_ssh(&raw.ssh, &raw.defaults, &default_key, &network, dirs, p);

    if let Some(list) = &raw.hosts {
        let default_port = or_default(&raw.defaults.port, DEFAULT_SSH_PORT).0;
        check_host_list(list, &network, &ssh, default_port, p);
        check_control_planes(raw, &list.value, p, &mut warnings);
    }
    let control_plane_endpoint = raw
        .control_plane_endpoint
        .as_ref()
        .and_then(|ep| check_endpoint(ep, hosts, &network, &ssh, p));
    let hosts: Vec<Host> = hosts
        .iter()
        .filter_map(|h| host(h, &raw.defaults, &default_key, dirs, p))
        .collect();

    let artifacts = raw
        .artifacts
        .as_ref()
        .and_then(|a| check_artifacts(a, dirs, p));

    if p.list.len() > before {
        return None;
    }
    Some(Inventory {
        path: file.to_path_buf(),
        cluster_name: raw.cluster_name.as_ref()?.value.clone(),
        control_plane_endpoint,
        audit: raw.audit.clone(),
        artifacts,
        ssh,
        network,
        hosts,
        warnings,
    })
}

/// `artifacts.url` and `artifacts.manifest`: paths are taken from the inventory's directory;
/// a path must exist (a URL is only reachable at fetch time).
fn check_artifacts(a: &RawArtifacts, dirs: &Dirs, p: &mut Problems) -> Option<ArtifactsSource> {
    let local = |s: &Spanned<String>, field: &str, what: &str, p: &mut Problems| match expand(
        &s.value,
        &dirs.base,
        dirs.home.as_deref(),
    ) {
        Ok(path) if path.exists() => Some(path),
        Ok(path) => {
            p.add(
                Some(s.mark),
                field,
                format!("{} does not exist: {what}", path.display()),
            );
            None
        }
        Err(why) => {
            p.add(Some(s.mark), field, why);
            None
        }
    };
    let url = if a.url.value.starts_with("http://") || a.url.value.starts_with("https://") {
        a.url.value.clone()
    } else {
        local(
            &a.url,
            "artifacts.url",
            "give an http(s) URL, or a directory in the upstream layout or a bundle file (`director-boot artifacts export|bundle`)",
            p,
        )?
        .to_string_lossy()
        .into_owned()
    };
    let manifest = match &a.manifest {
        Some(m) => Some(local(
            m,
            "artifacts.manifest",
            "give the pinned manifest the artifacts were exported with (`artifacts export` writes OUTDIR/pinned.yaml)",
            p,
        )?),
        None => None,
    };
    Some(ArtifactsSource { url, manifest })
}

/// Kubernetes node and cluster names end up in DNS; a label is the safe common ground.
pub fn dns_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("use only lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}

/// A login name that cannot be mistaken for an option or break `user@host` forms.
fn check_user(user: &Option<Spanned<String>>, field: &str, p: &mut Problems) {
    let Some(user) = user else { return };
    let u = &user.value;
    let bad = u.is_empty()
        || u.starts_with('-')
        || u.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == ':');
    if bad {
        p.add(
            Some(user.mark),
            field,
            format!(
                "`{}` is not a login name: give a user like root or ubuntu (no spaces, '@', ':' or leading '-')",
                shorten(u)
            ),
        );
    }
}

/// `Some(None)`: written as the agent; `None`: not written (or unusable, already reported).
fn key_file(
    identity: &Option<Spanned<Identity>>,
    field: &str,
    dirs: &Dirs,
    p: &mut Problems,
) -> Option<Option<PathBuf>> {
    let identity = identity.as_ref()?;
    let text = match &identity.value {
        Identity::Agent => return Some(None),
        Identity::File(text) => text,
    };
    let checked = expand(text, &dirs.base, dirs.home.as_deref())
        .and_then(|path| check_key(&path).map(|()| path));
    match checked {
        Ok(path) => Some(Some(path)),
        Err(why) => {
            p.add(Some(identity.mark), field, why);
            None
        }
    }
}

fn default_net(text: &str) -> IpNet {
    // The defaults are constants known to parse; fall back to the IPv4 "this network" range
    // rather than panic.
    text.parse().unwrap_or_default()
}

fn check_network(raw: &RawNetwork, host_count: usize, p: &mut Problems) -> Network {
    let (pod, pod_mark) = or_default(&raw.pod_cidr, default_net(DEFAULT_POD_CIDR));
    let (service, service_mark) = or_default(&raw.service_cidr, default_net(DEFAULT_SERVICE_CIDR));
    let (node_prefix, node_mark) = or_default(&raw.node_prefix, DEFAULT_NODE_PREFIX);

    let family = |n: &IpNet| match n {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    };
    // Point at service_cidr when the user wrote it, else at pod_cidr.
    let (mark, field) = match (service_mark, pod_mark) {
        (Some(m), _) => (Some(m), "network.service_cidr"),
        (None, m) => (m, "network.pod_cidr"),
    };
    // overlay-up.sh lays IPv4 routes, neighbours, /32 VTEPs and iptables (not ip6tables)
    // rules: an IPv6 pod range would be accepted here and then carry no pod traffic. Its fix
    // (an IPv4 pod_cidr) also settles a family mismatch, so it is the one message given.
    if let IpNet::V6(_) = pod {
        p.add(
            pod_mark,
            "network.pod_cidr",
            format!(
                "{pod} is IPv6, but the overlay carries IPv4 only (VXLAN routes, masquerade and forwarding are IPv4): use an IPv4 pod_cidr like {DEFAULT_POD_CIDR}, an IPv4 service_cidr and IPv4 host addresses"
            ),
        );
    } else if family(&pod) != family(&service) {
        p.add(
            mark,
            field,
            format!(
                "pod_cidr {pod} is {} but service_cidr {service} is {}: dual-stack is not supported, use one family for both",
                family(&pod),
                family(&service)
            ),
        );
    } else if pod.contains(&service.network()) || service.contains(&pod.network()) {
        p.add(
            mark,
            field,
            format!("pod_cidr {pod} and service_cidr {service} overlap: give ranges that do not"),
        );
    }

    // Point at whichever of the two the user wrote; the message names both.
    let (node_at, node_field) = match (node_mark, pod_mark) {
        (Some(m), _) => (Some(m), "network.node_prefix"),
        (None, Some(m)) => (Some(m), "network.pod_cidr"),
        (None, None) => (None, "network.node_prefix"),
    };
    let max = pod.max_prefix_len();
    if node_prefix <= pod.prefix_len() {
        p.add(
            node_at,
            node_field,
            format!(
                "/{node_prefix} must be longer than pod_cidr {pod}'s /{}: each node gets a slice of pod_cidr (e.g. {})",
                pod.prefix_len(),
                (pod.prefix_len() + 8).min(max - 2)
            ),
        );
    } else if node_prefix > max - 2 {
        p.add(
            node_at,
            node_field,
            format!(
                "/{node_prefix} leaves each node fewer than 4 pod addresses: use at most /{}",
                max - 2
            ),
        );
    } else if node_prefix - pod.prefix_len() > MAX_NODE_PREFIX_GAP {
        p.add(
            node_at,
            node_field,
            format!(
                "/{node_prefix} splits pod_cidr {pod} into more than 2^{MAX_NODE_PREFIX_GAP} node subnets, which kube-controller-manager refuses: use at most /{}",
                pod.prefix_len() + MAX_NODE_PREFIX_GAP
            ),
        );
    } else {
        let subnets = 1u64 << (node_prefix - pod.prefix_len());
        if subnets < host_count as u64 {
            p.add(
                node_at,
                node_field,
                format!(
                    "pod_cidr {pod} holds {subnets} node subnets of /{node_prefix}, but there are {host_count} hosts: use a shorter node_prefix or a larger pod_cidr"
                ),
            );
        }
    }

    // kube-apiserver allocates service IPs from a bitmap of at most 2^20 entries, and the
    // cluster needs a few fixed ones (the API's, DNS's) at the start of the range.
    let bits = service.max_prefix_len() - service.prefix_len();
    if !(MIN_SERVICE_BITS..=MAX_SERVICE_BITS).contains(&bits) {
        p.add(
            service_mark,
            "network.service_cidr",
            format!(
                "{service} has {} addresses: kube-apiserver needs a service range of /{} to /{}",
                describe_size(bits),
                service.max_prefix_len() - MAX_SERVICE_BITS,
                service.max_prefix_len() - MIN_SERVICE_BITS
            ),
        );
    }

    let overlay = &raw.overlay;
    // IPv6 itself needs links of at least 1280 bytes.
    if let (
        IpNet::V6(_),
        Some(Spanned {
            value: Some(mtu),
            mark,
        }),
    ) = (pod, &overlay.mtu)
        && *mtu < IPV6_MIN_MTU
    {
        p.add(
            Some(*mark),
            "network.overlay.mtu",
            format!("{mtu} is below IPv6's minimum MTU: with an IPv6 pod_cidr use auto or {IPV6_MIN_MTU}..=9000"),
        );
    }
    // With encryption every pair goes through WireGuard: a pair forced to `direct` (plain
    // routing, pods' packets on the wire as they are) would contradict it.
    if let (
        Some(Spanned { value: true, .. }),
        Some(Spanned {
            value: Backend::Direct,
            mark,
        }),
    ) = (&overlay.encrypt, &overlay.backend)
    {
        p.add(
            Some(*mark),
            "network.overlay.backend",
            "`direct` sends pod packets between hosts unencapsulated and in clear, which `encrypt: true` forbids (every pair then goes through WireGuard); remove `backend` or set `auto`",
        );
    }
    Network {
        pod_cidr: pod,
        service_cidr: service,
        node_prefix,
        overlay: Overlay {
            vni: or_default(&overlay.vni, DEFAULT_VNI).0,
            port: or_default(&overlay.port, DEFAULT_VXLAN_PORT).0,
            mtu: or_default(&overlay.mtu, None).0,
            backend: or_default(&overlay.backend, Backend::Auto).0,
            encrypt: or_default(&overlay.encrypt, false).0,
        },
    }
}

/// 2^bits, readable.
fn describe_size(bits: u8) -> String {
    match bits {
        0..=32 => (1u64 << bits).to_string(),
        _ => format!("2^{bits}"),
    }
}

/// An address that would be routed into the cluster's own ranges cannot be reached over SSH.
fn check_outside_cidrs(addr: &Spanned<IpAddr>, field: &str, net: &Network, p: &mut Problems) {
    for (name, cidr) in [
        ("pod_cidr", net.pod_cidr),
        ("service_cidr", net.service_cidr),
    ] {
        if cidr.contains(&addr.value) {
            p.add(
                Some(addr.mark),
                field,
                format!(
                    "{} is inside network.{name} {cidr}: hosts must be outside the pod and service ranges; change the address or network.{name}",
                    addr.value
                ),
            );
        }
    }
}

fn check_ssh(
    raw: &RawSsh,
    defaults: &RawHostSettings,
    default_key: &Option<Option<PathBuf>>,
    net: &Network,
    dirs: &Dirs,
    p: &mut Problems,
) -> SshSettings {
    let known_hosts = raw.known_hosts.as_ref().and_then(|kh| {
        match expand(&kh.value, &dirs.base, dirs.home.as_deref())
            .and_then(|path| check_writable_file(&path).map(|()| path))
        {
            Ok(path) => Some(path),
            Err(why) => {
                p.add(Some(kh.mark), "ssh.known_hosts", why);
                None
            }
        }
    });

    let bastion = raw.bastion.as_ref().and_then(|b| {
        check_user(&b.user, "ssh.bastion.user", p);
        let key = key_file(&b.identity_file, "ssh.bastion.identity_file", dirs, p);
        let address = b.address.as_ref()?;
        check_outside_cidrs(address, "ssh.bastion.address", net, p);
        Some(SshEndpoint {
            address: address.value,
            port: or_default(&b.port, DEFAULT_SSH_PORT).0,
            user: or_default(&b.user, or_default(&defaults.user, DEFAULT_USER.into()).0).0,
            identity_file: key.or_else(|| default_key.clone()).flatten(),
        })
    });

    SshSettings {
        known_hosts,
        bastion,
        connect_timeout_secs: or_default(&raw.connect_timeout, DEFAULT_CONNECT_TIMEOUT).0,
    }
}

/// Checks that need the whole host list: duplicates, roles, address families, the bastion.
fn check_host_list(
    list: &Spanned<Vec<RawHost>>,
    net: &Network,
    ssh: &SshSettings,
    default_port: u16,
    p: &mut Problems,
) {
    let hosts = &list.value;
    // An empty list was reported by `decode`; entries that were not hosts at all, too.
    if hosts.is_empty() {
        return;
    }

    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut endpoints: HashMap<IpAddr, (usize, u16)> = HashMap::new();
    let service_v4 = matches!(net.service_cidr, IpNet::V4(_));
    for h in hosts {
        let (i, path) = (h.index, format!("hosts[{}]", h.index));
        if let Some(name) = &h.name {
            if let Err(why) = dns_label(&name.value) {
                p.add(
                    Some(name.mark),
                    join(&path, "name"),
                    format!("`{}` is not a DNS label: {why}", shorten(&name.value)),
                );
            } else if let Some(&first) = names.get(name.value.as_str()) {
                p.add(
                    Some(name.mark),
                    join(&path, "name"),
                    format!(
                        "`{}` is already the name of hosts[{first}]: host names must be unique",
                        name.value
                    ),
                );
            } else {
                names.insert(&name.value, i);
            }
        }
        check_user(&h.settings.user, &join(&path, "user"), p);

        let Some(addr) = &h.address else { continue };
        let field = join(&path, "address");
        check_outside_cidrs(addr, &field, net, p);
        if let Some(why) = unusable_node_address(addr.value) {
            p.add(
                Some(addr.mark),
                &field,
                format!(
                    "{} is {why}: a host's address is also its node address (etcd peers, the API server, the overlay, kubelet's node IP), so give the address other hosts reach it at",
                    addr.value
                ),
            );
        }
        if addr.value.is_ipv4() != service_v4 {
            let (family, other) = if service_v4 {
                ("IPv6", "IPv4")
            } else {
                ("IPv4", "IPv6")
            };
            p.add(
                Some(addr.mark),
                &field,
                format!(
                    "{} is {family} but network.service_cidr {} is {other}: the cluster is single-stack, so hosts and CIDRs must share one family",
                    addr.value, net.service_cidr
                ),
            );
        }
        // Not even with different SSH ports (VMs behind one forwarding address): the address
        // is the node's address too, and two nodes cannot share one.
        let port = h.settings.port.as_ref().map_or(default_port, |s| s.value);
        if let Some(&(first, first_port)) = endpoints.get(&addr.value) {
            let how = if first_port == port {
                format!("{} port {port} is already hosts[{first}]'s", addr.value)
            } else {
                format!(
                    "{} is already hosts[{first}]'s (SSH port {first_port}; a different SSH port does not make it another node)",
                    addr.value
                )
            };
            p.add(
                Some(addr.mark),
                &field,
                format!(
                    "{how}: each host needs its own address, which is also its node address (for VMs behind port forwards, give each VM's private network address)"
                ),
            );
        } else {
            endpoints.insert(addr.value, (i, port));
        }
        if let Some(b) = &ssh.bastion
            && b.address == addr.value
        {
            p.add(
                Some(addr.mark),
                &field,
                format!(
                    "{} is also ssh.bastion.address: the bastion must be a machine outside the cluster",
                    addr.value
                ),
            );
        }
    }

    // Hosts whose roles could not be read would make the counts misleading.
    if hosts.iter().any(|h| h.roles.is_none()) {
        return;
    }
    for role in [Role::ControlPlane, Role::Etcd] {
        if count(hosts, role) == 0 {
            p.add(
                Some(list.mark),
                "hosts",
                format!("no host has the {role} role: add `{role}` to at least one host's roles"),
            );
        }
    }
    // Control planes run kubelet but register tainted NoSchedule (as kubeadm's), and etcd-only
    // hosts run none: without a worker, init would finish and then no workload could run.
    if count(hosts, Role::Worker) == 0 && count(hosts, Role::ControlPlane) > 0 {
        p.add(
            Some(list.mark),
            "hosts",
            "no host has the worker role: control planes are tainted NoSchedule and etcd-only hosts run no kubelet, so no workload (apps, netcheck pods) could be scheduled; add `worker` to at least one host's roles (a control plane can be a worker too)",
        );
    }
}

/// Why an address cannot be a node's, if it cannot (`decode` already refused the unspecified
/// and multicast ones). Loopback stays allowed: a one-host cluster behind an SSH port forward
/// works on 127.0.0.1.
fn unusable_node_address(ip: IpAddr) -> Option<&'static str> {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()).then_some("the broadcast address")
}

/// How many hosts have `role`.
fn count(hosts: &[RawHost], role: Role) -> usize {
    hosts
        .iter()
        .filter(|h| {
            h.roles
                .as_ref()
                .is_some_and(|r| r.value.iter().any(|s| s.value == role))
        })
        .count()
}

/// What high availability asks of the role counts: a shared endpoint once there is more than
/// one control plane; an odd etcd quorum is advised (a warning: an even count is the state
/// between two day-2 steps, a member added or removed one at a time).
fn check_control_planes(
    raw: &RawInventory,
    hosts: &[RawHost],
    p: &mut Problems,
    warnings: &mut Vec<String>,
) {
    if hosts.is_empty() || hosts.iter().any(|h| h.roles.is_none()) {
        return;
    }
    let etcd = count(hosts, Role::Etcd);
    if etcd > 1 && etcd.is_multiple_of(2) {
        warnings.push(format!("hosts: {}", even_etcd_message(etcd)));
    }
    let control_planes: Vec<IpAddr> = hosts
        .iter()
        .filter(|h| {
            h.roles
                .as_ref()
                .is_some_and(|r| r.value.iter().any(|s| s.value == Role::ControlPlane))
        })
        .filter_map(|h| h.address.as_ref().map(|a| a.value))
        .collect();
    let n = count(hosts, Role::ControlPlane);
    if n > 1 && !raw.endpoint_written {
        let taken: Vec<IpAddr> = hosts
            .iter()
            .filter_map(|h| h.address.as_ref().map(|a| a.value))
            .collect();
        let example = control_planes
            .first()
            .and_then(|cp| free_neighbour(*cp, &taken))
            .map_or_else(|| "192.168.56.10".to_string(), |ip| ip.to_string());
        p.add(
            Some(raw.cluster_mark.unwrap_or(raw.mark)),
            "cluster.control_plane_endpoint",
            format!(
                "missing: {n} hosts have the control-plane role, but without a shared endpoint every node and kubeconfig reaches only the first, and losing that host loses the API; add under `cluster:` `control_plane_endpoint: {example}` (a free address in the control planes' subnet; director-boot holds it as a virtual IP) or `control_plane_endpoint: api.example.com` (the DNS name of a load balancer you run in front of every control plane's port 6443)"
            ),
        );
    }
}

/// Why an even etcd member count buys nothing over one member fewer, and what to do.
pub fn even_etcd_message(n: usize) -> String {
    format!(
        "{} (remove `etcd` from one host's roles or add it to one more host)",
        quorum_arithmetic(n)
    )
}

/// "4 etcd members need 3 for quorum and so tolerate 1 failure, like 3 members do: use 3 or 5"
/// (for an even `n` of at least 2).
pub fn quorum_arithmetic(n: usize) -> String {
    let quorum = n / 2 + 1;
    let tolerated = match n.saturating_sub(1) / 2 {
        0 => "no failure".to_string(),
        1 => "1 failure".to_string(),
        f => format!("{f} failures"),
    };
    let fewer = match n.saturating_sub(1) {
        1 => "1 member does".to_string(),
        m => format!("{m} members do"),
    };
    format!(
        "{n} etcd members need {quorum} for quorum and so tolerate {tolerated}, like {fewer}: use {} or {}",
        n.saturating_sub(1),
        n + 1
    )
}

/// An address next to `near` (same /24 or /120: last byte 10, else the lowest from 2) that no
/// host has: only an example for a message, the user must check it is really free.
fn free_neighbour(near: IpAddr, taken: &[IpAddr]) -> Option<IpAddr> {
    let with_last = |last: u8| -> IpAddr {
        match near {
            IpAddr::V4(v4) => {
                let mut o = v4.octets();
                o[3] = last;
                IpAddr::from(o)
            }
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[15] = last;
                IpAddr::from(o)
            }
        }
    };
    std::iter::once(10)
        .chain(2..=254)
        .map(with_last)
        .find(|ip| !taken.contains(ip))
}

/// The endpoint as written, checked against the hosts and the cluster's ranges.
fn check_endpoint(
    ep: &RawEndpoint,
    hosts: &[RawHost],
    net: &Network,
    ssh: &SshSettings,
    p: &mut Problems,
) -> Option<ControlPlaneEndpoint> {
    let before = p.list.len();
    let vip = ep.vip.as_ref().map_or(Vip::Auto, |v| v.value);
    let (field, mark) = (ep.host_field.as_str(), ep.host.mark);
    let (host, managed_vip) = match &ep.host.value {
        RawEndpointHost::Ip(ip) => {
            let managed = vip != Vip::No;
            for (name, cidr) in [
                ("pod_cidr", net.pod_cidr),
                ("service_cidr", net.service_cidr),
            ] {
                if cidr.contains(ip) {
                    p.add(
                        Some(mark),
                        field,
                        format!(
                            "{ip} is inside network.{name} {cidr}: the endpoint must be outside the pod and service ranges; change the address or network.{name}"
                        ),
                    );
                }
            }
            if managed {
                check_vip(*ip, hosts, net, ssh, mark, field, p);
                if let Some(port) = ep
                    .port
                    .as_ref()
                    .filter(|x| x.value != ControlPlaneEndpoint::DEFAULT_PORT)
                {
                    p.add(
                        Some(port.mark),
                        "cluster.control_plane_endpoint.port",
                        format!(
                            "{} with a virtual IP: the VIP lands on a control plane, whose API server listens on {}; leave the port out, or set `vip: false` if a load balancer of yours listens on {}",
                            port.value,
                            ControlPlaneEndpoint::DEFAULT_PORT,
                            port.value
                        ),
                    );
                }
            }
            (EndpointHost::Ip(*ip), managed)
        }
        RawEndpointHost::Dns(name) => {
            if let Err(why) = dns_name(name) {
                p.add(
                    Some(mark),
                    field,
                    format!(
                        "`{}` is neither an IP address nor a DNS name: {why}",
                        shorten(name)
                    ),
                );
            }
            if let Some(v) = ep.vip.as_ref().filter(|v| v.value == Vip::Yes) {
                p.add(
                    Some(v.mark),
                    "cluster.control_plane_endpoint.vip",
                    format!(
                        "`true` needs an IP address, but the endpoint is the DNS name `{}`: a virtual IP is an address director-boot holds on the control planes, a name is a load balancer or DNS record you run; give a free IP address as address, or use `vip: auto` for the name",
                        shorten(name)
                    ),
                );
            }
            (EndpointHost::Dns(name.clone()), false)
        }
    };
    (p.list.len() == before).then(|| ControlPlaneEndpoint {
        host,
        port: or_default(&ep.port, ControlPlaneEndpoint::DEFAULT_PORT).0,
        managed_vip,
    })
}

/// A virtual IP director-boot would hold must be free and in the hosts' family.
fn check_vip(
    ip: IpAddr,
    hosts: &[RawHost],
    net: &Network,
    ssh: &SshSettings,
    mark: Mark,
    field: &str,
    p: &mut Problems,
) {
    let service_v4 = matches!(net.service_cidr, IpNet::V4(_));
    if ip.is_ipv4() != service_v4 {
        let (family, other) = if service_v4 {
            ("IPv6", "IPv4")
        } else {
            ("IPv4", "IPv6")
        };
        p.add(
            Some(mark),
            field,
            format!(
                "{ip} is {family} but network.service_cidr {} is {other}: a virtual IP must share the hosts' family",
                net.service_cidr
            ),
        );
    }
    let owner = hosts
        .iter()
        .find(|h| h.address.as_ref().is_some_and(|a| a.value == ip))
        .map(|h| format!("hosts[{}]", h.index))
        .or_else(|| {
            ssh.bastion
                .as_ref()
                .filter(|b| b.address == ip)
                .map(|_| "ssh.bastion".to_string())
        });
    if let Some(owner) = owner {
        p.add(
            Some(mark),
            field,
            format!(
                "{ip} is already {owner}'s address: a virtual IP must be an address no machine owns; pick a free one in the control planes' subnet"
            ),
        );
    }
}

/// A DNS name as a host name (RFC 1123): dot-separated labels of letters, digits and '-'.
pub fn dns_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    if name.ends_with('.') {
        return Err("write it without the trailing '.'".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err(format!(
                "the label `{}` is longer than 63 characters",
                shorten(label)
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "the label `{}` may hold only letters, digits and '-'",
                shorten(label)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the label `{label}` must start and end with a letter or digit"
            ));
        }
    }
    // A numeric last label makes it look like a (mistyped) address, which resolvers refuse.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("its last label is all digits, like a mistyped IP address".into());
    }
    Ok(())
}

/// One host with `defaults` under its own settings; `None` if a required field is missing.
fn host(
    h: &RawHost,
    defaults: &RawHostSettings,
    default_key: &Option<Option<PathBuf>>,
    dirs: &Dirs,
    p: &mut Problems,
) -> Option<Host> {
    let path = format!("hosts[{}]", h.index);
    let key = key_file(
        &h.settings.identity_file,
        &join(&path, "identity_file"),
        dirs,
        p,
    );
    let s = &h.settings;
    let user = s
        .user
        .as_ref()
        .or(defaults.user.as_ref())
        .map_or_else(|| DEFAULT_USER.to_string(), |u| u.value.clone());
    let port = s
        .port
        .as_ref()
        .or(defaults.port.as_ref())
        .map_or(DEFAULT_SSH_PORT, |v| v.value);
    let sudo_setting = s.sudo.as_ref().or(defaults.sudo.as_ref());
    let sudo = match sudo_setting.map(|v| v.value) {
        None | Some(Sudo::Auto) => user != "root",
        Some(Sudo::Always) => true,
        Some(Sudo::Never) => false,
    };
    if let Some(setting) = sudo_setting
        && !sudo
        && user != "root"
    {
        let written = if s.sudo.is_some() {
            "`false`".to_string()
        } else {
            format!("`false` (from defaults.sudo, line {})", setting.mark.line)
        };
        p.add(
            Some(setting.mark),
            join(&path, "sudo"),
            format!(
                "{written} but the login `{user}` is not root: init installs binaries, units and certificates as root, so it needs sudo; use `sudo: auto` (or true) or log in as root"
            ),
        );
    }
    let extra = |own: &Option<Spanned<serde_yaml::Mapping>>,
                 base: &Option<Spanned<serde_yaml::Mapping>>| {
        let base = base.as_ref().map(|b| b.value.clone()).unwrap_or_default();
        match own {
            Some(own) => merge(base, &own.value),
            None => base,
        }
    };
    Some(Host {
        name: h.name.as_ref()?.value.clone(),
        ssh: SshEndpoint {
            address: h.address.as_ref()?.value,
            port,
            user,
            identity_file: key.or_else(|| default_key.clone()).flatten(),
        },
        sudo,
        roles: h
            .roles
            .as_ref()?
            .value
            .iter()
            .map(|r| r.value)
            .collect::<BTreeSet<_>>(),
        kubelet_extra: extra(&s.kubelet_extra, &defaults.kubelet_extra),
        containerd_extra: extra(&s.containerd_extra, &defaults.containerd_extra),
        overlay_backend: h.overlay_backend.as_ref().map(|b| b.value),
    })
}

/// Deep merge: a host's nested settings refine the defaults' instead of replacing them.
fn merge(mut base: serde_yaml::Mapping, over: &serde_yaml::Mapping) -> serde_yaml::Mapping {
    use serde_yaml::Value;
    for (k, v) in over {
        let merged = match (base.remove(k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => Value::Mapping(merge(b, o)),
            (_, v) => v.clone(),
        };
        base.insert(k.clone(), merged);
    }
    base
}
