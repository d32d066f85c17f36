//! From the YAML tree to the raw inventory: the schema (which fields exist, their types and
//! ranges), checked in full so every unknown, missing or ill-typed field is reported at once.
//!
//! serde's `deny_unknown_fields` would stop at the first mistake; this walks the whole tree.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::problems::{Problems, join};
use super::raw::*;
use super::tree::{Kind, Mark, Node, shorten};
use super::{Backend, Role};

const TOP_FIELDS: [&str; 6] = [
    "cluster",
    "defaults",
    "ssh",
    "network",
    "artifacts",
    "hosts",
];
const ARTIFACTS_FIELDS: [&str; 2] = ["url", "manifest"];
const CLUSTER_FIELDS: [&str; 3] = ["name", "control_plane_endpoint", "audit"];
const AUDIT_FIELDS: [&str; 4] = ["path", "max_age_days", "max_backups", "max_size_mb"];
const ENDPOINT_FIELDS: [&str; 3] = ["address", "port", "vip"];
const SSH_FIELDS: [&str; 3] = ["known_hosts", "connect_timeout", "bastion"];
const BASTION_FIELDS: [&str; 4] = ["address", "port", "user", "identity_file"];
const NETWORK_FIELDS: [&str; 4] = ["pod_cidr", "service_cidr", "node_prefix", "overlay"];
const OVERLAY_FIELDS: [&str; 5] = ["vni", "port", "mtu", "backend", "encrypt"];
const HOST_OWN_FIELDS: [&str; 4] = ["name", "address", "roles", "overlay_backend"];

/// Extras deeper than this are surely a mistake, and recursion must stay bounded.
const MAX_EXTRA_DEPTH: usize = 32;

pub const PORT: &str = "a port number in 1..=65535";

pub fn decode(root: &Node, p: &mut Problems) -> Option<RawInventory> {
    let top = Fields::read(root, "", &TOP_FIELDS, p)?;

    let cluster = match top.get("cluster") {
        None => {
            p.add(
                Some(root.mark),
                "cluster.name",
                "missing: add `cluster:` with `name: <a DNS label like prod-bigdata>`",
            );
            None
        }
        Some(node) => Fields::read(node, "cluster", &CLUSTER_FIELDS, p),
    };
    let cluster_name = cluster.as_ref().and_then(|f| {
        f.required(
            "name",
            "name the cluster with a DNS label like prod-bigdata",
            p,
        )
        .and_then(|n| string(n, "cluster.name", p))
    });
    let endpoint_node = cluster
        .as_ref()
        .and_then(|f| f.get("control_plane_endpoint"))
        .filter(|n| !n.is_null());
    let control_plane_endpoint =
        endpoint_node.and_then(|n| endpoint(n, "cluster.control_plane_endpoint", p));

    let audit = cluster
        .as_ref()
        .and_then(|f| f.get("audit"))
        .map(|n| audit(n, p))
        .unwrap_or_default();

    let defaults = top
        .get("defaults")
        .and_then(|n| Fields::read(n, "defaults", &RawHostSettings::FIELDS, p))
        .map(|f| host_settings(&f, "defaults", p))
        .unwrap_or_default();
    let ssh = top
        .get("ssh")
        .and_then(|n| Fields::read(n, "ssh", &SSH_FIELDS, p))
        .map(|f| ssh(&f, p))
        .unwrap_or_default();
    let network = top
        .get("network")
        .and_then(|n| Fields::read(n, "network", &NETWORK_FIELDS, p))
        .map(|f| network(&f, p))
        .unwrap_or_default();
    let artifacts = top
        .get("artifacts")
        .filter(|n| !n.is_null())
        .and_then(|n| Fields::read(n, "artifacts", &ARTIFACTS_FIELDS, p))
        .and_then(|f| artifacts(&f, p));
    let hosts = match top.get("hosts") {
        Some(node) if !node.is_null() => hosts(node, p),
        _ => {
            p.add(
                Some(top.key_mark("hosts").unwrap_or(root.mark)),
                "hosts",
                "missing: list the cluster's hosts, each with name, address and roles",
            );
            None
        }
    };

    Some(RawInventory {
        mark: root.mark,
        cluster_mark: top.key_mark("cluster"),
        cluster_name,
        control_plane_endpoint,
        endpoint_written: endpoint_node.is_some(),
        audit,
        defaults,
        ssh,
        network,
        artifacts,
        hosts,
    })
}

/// `artifacts: {url, manifest}`: where `init` fetches what the mirror lacks. `url` is a web
/// server in the upstream layout (http or https), or a directory or bundle file on this
/// machine; `manifest` the pinned file to check against.
fn artifacts(f: &Fields, p: &mut Problems) -> Option<RawArtifacts> {
    let url = f
        .required(
            "url",
            "name the web server (http://repo.example/director-boot/), directory or bundle file `init` fetches the pinned components from",
            p,
        )
        .and_then(|n| string(n, "artifacts.url", p))?;
    let manifest = f
        .get("manifest")
        .and_then(|n| string(n, "artifacts.manifest", p));
    if url.value.contains("://")
        && !(url.value.starts_with("http://") || url.value.starts_with("https://"))
    {
        p.add(
            Some(url.mark),
            "artifacts.url",
            format!(
                "expected an http:// or https:// URL, a directory or a bundle file, found `{}`",
                shorten(&url.value)
            ),
        );
        return None;
    }
    Some(RawArtifacts { url, manifest })
}

/// `cluster.audit: {path, max_age_days, max_backups, max_size_mb}`; what is not given keeps
/// its default. The path goes into a systemd unit: absolute, no spaces or quotes.
fn audit(node: &Node, p: &mut Problems) -> super::Audit {
    let d = super::Audit::default();
    let Some(f) = Fields::read(node, "cluster.audit", &AUDIT_FIELDS, p) else {
        return d;
    };
    let path = f
        .get("path")
        .and_then(|n| string(n, "cluster.audit.path", p))
        .and_then(|s| {
            let ok = s.value.starts_with('/')
                && s.value.len() > 1
                && !s.value.ends_with('/')
                && !s.value.contains(|c: char| c.is_whitespace() || "'\"\\$`%".contains(c));
            if !ok {
                p.add(
                    Some(s.mark),
                    "cluster.audit.path",
                    format!(
                        "expected an absolute file path without spaces or quotes, like {}, found `{}`",
                        d.path,
                        shorten(&s.value)
                    ),
                );
            }
            ok.then_some(s.value)
        })
        .unwrap_or(d.path.clone());
    let num = |name: &str, min: u64, max: u64, default: u32, p: &mut Problems| {
        f.get(name)
            .and_then(|n| {
                int::<u32>(
                    n,
                    &format!("cluster.audit.{name}"),
                    min,
                    max,
                    &format!("a whole number in {min}..={max}"),
                    p,
                )
            })
            .map(|s| s.value)
            .unwrap_or(default)
    };
    super::Audit {
        path,
        max_age_days: num("max_age_days", 1, 3650, d.max_age_days, p),
        max_backups: num("max_backups", 1, 1000, d.max_backups, p),
        max_size_mb: num("max_size_mb", 1, 100_000, d.max_size_mb, p),
    }
}

fn host_settings(f: &Fields, path: &str, p: &mut Problems) -> RawHostSettings {
    let at = |k: &str| join(path, k);
    RawHostSettings {
        user: f.get("user").and_then(|n| string(n, &at("user"), p)),
        port: f
            .get("port")
            .and_then(|n| int(n, &at("port"), 1, 65535, PORT, p)),
        identity_file: f
            .get("identity_file")
            .and_then(|n| identity(n, &at("identity_file"), p)),
        sudo: f.get("sudo").and_then(|n| sudo(n, &at("sudo"), p)),
        kubelet_extra: f
            .get("kubelet_extra")
            .and_then(|n| extra(n, &at("kubelet_extra"), p)),
        containerd_extra: f
            .get("containerd_extra")
            .and_then(|n| extra(n, &at("containerd_extra"), p)),
    }
}

fn ssh(f: &Fields, p: &mut Problems) -> RawSsh {
    let bastion = f.get("bastion").filter(|n| !n.is_null()).and_then(|node| {
        let b = Fields::read(node, "ssh.bastion", &BASTION_FIELDS, p)?;
        Some(RawBastion {
            mark: node.mark,
            address: b
                .required("address", "give the bastion's IPv4 or IPv6 address", p)
                .and_then(|n| ip(n, "ssh.bastion.address", p)),
            port: b
                .get("port")
                .and_then(|n| int(n, "ssh.bastion.port", 1, 65535, PORT, p)),
            user: b.get("user").and_then(|n| string(n, "ssh.bastion.user", p)),
            identity_file: b
                .get("identity_file")
                .and_then(|n| identity(n, "ssh.bastion.identity_file", p)),
        })
    });
    RawSsh {
        known_hosts: f
            .get("known_hosts")
            .and_then(|n| string(n, "ssh.known_hosts", p)),
        connect_timeout: f.get("connect_timeout").and_then(|n| {
            int(
                n,
                "ssh.connect_timeout",
                1,
                300,
                "a number of seconds in 1..=300",
                p,
            )
        }),
        bastion,
    }
}

fn network(f: &Fields, p: &mut Problems) -> RawNetwork {
    let overlay = f
        .get("overlay")
        .and_then(|n| Fields::read(n, "network.overlay", &OVERLAY_FIELDS, p))
        .map(|o| RawOverlay {
            vni: o.get("vni").and_then(|n| {
                int(
                    n,
                    "network.overlay.vni",
                    1,
                    16_777_215,
                    "a VXLAN network identifier in 1..=16777215",
                    p,
                )
            }),
            port: o
                .get("port")
                .and_then(|n| int(n, "network.overlay.port", 1, 65535, PORT, p)),
            mtu: o.get("mtu").and_then(|n| mtu(n, "network.overlay.mtu", p)),
            backend: o
                .get("backend")
                .and_then(|n| backend(n, "network.overlay.backend", p)),
            encrypt: o
                .get("encrypt")
                .and_then(|n| boolean(n, "network.overlay.encrypt", p)),
        })
        .unwrap_or_default();
    RawNetwork {
        pod_cidr: f
            .get("pod_cidr")
            .and_then(|n| cidr(n, "network.pod_cidr", p)),
        service_cidr: f
            .get("service_cidr")
            .and_then(|n| cidr(n, "network.service_cidr", p)),
        node_prefix: f.get("node_prefix").and_then(|n| {
            int(
                n,
                "network.node_prefix",
                1,
                128,
                "a prefix length in 1..=128",
                p,
            )
        }),
        overlay,
    }
}

fn hosts(node: &Node, p: &mut Problems) -> Option<Spanned<Vec<RawHost>>> {
    let Kind::Seq(items) = &node.kind else {
        p.add(
            Some(node.mark),
            "hosts",
            format!(
                "expected a list of hosts (`- name: ...`), found {}",
                node.describe()
            ),
        );
        return None;
    };
    if items.is_empty() {
        p.add(
            Some(node.mark),
            "hosts",
            "the list is empty: add at least one host with roles [etcd, control-plane, worker]",
        );
    }
    let mut fields: Vec<&str> = HOST_OWN_FIELDS.to_vec();
    fields.extend(RawHostSettings::FIELDS);
    let hosts = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let path = format!("hosts[{i}]");
            if !matches!(item.kind, Kind::Map(_)) {
                p.add(
                    Some(item.mark),
                    &path,
                    format!(
                        "expected a host (a mapping with name, address and roles), found {}",
                        item.describe()
                    ),
                );
                return None;
            }
            let f = Fields::read(item, &path, &fields, p)?;
            Some(RawHost {
                index: i,
                mark: item.mark,
                name: f
                    .required("name", "give the host a name (a DNS label like node1)", p)
                    .and_then(|n| string(n, &join(&path, "name"), p)),
                address: f
                    .required("address", "give the host's IPv4 or IPv6 address", p)
                    .and_then(|n| ip(n, &join(&path, "address"), p)),
                roles: f
                    .required(
                        "roles",
                        "give at least one of etcd, control-plane, worker",
                        p,
                    )
                    .and_then(|n| roles(n, &join(&path, "roles"), p)),
                overlay_backend: f
                    .get("overlay_backend")
                    .and_then(|n| backend(n, &join(&path, "overlay_backend"), p)),
                settings: host_settings(&f, &path, p),
            })
        })
        .collect();
    Some(Spanned {
        value: hosts,
        mark: node.mark,
    })
}

/// The entries of one mapping in the schema, after reporting unknown and repeated keys.
struct Fields<'n> {
    path: String,
    mark: Mark,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// `None` (reported) when `node` is not a mapping; an empty value reads as no fields.
    fn read(node: &'n Node, path: &str, valid: &[&str], p: &mut Problems) -> Option<Self> {
        let mut fields = Fields {
            path: path.to_string(),
            mark: node.mark,
            entries: Vec::new(),
        };
        let entries = match &node.kind {
            Kind::Map(entries) => entries,
            _ if node.is_null() => return Some(fields),
            _ => {
                p.add(
                    Some(node.mark),
                    if path.is_empty() { "(document)" } else { path },
                    format!(
                        "expected a mapping with fields {}, found {}",
                        valid.join(", "),
                        node.describe()
                    ),
                );
                return None;
            }
        };
        for (key, value) in entries {
            let name = match &key.kind {
                Kind::Scalar { text, .. } => text.as_str(),
                _ => {
                    p.add(
                        Some(key.mark),
                        if path.is_empty() { "(document)" } else { path },
                        format!(
                            "a field name must be a plain word, found {}; valid fields here: {}",
                            key.describe(),
                            valid.join(", ")
                        ),
                    );
                    continue;
                }
            };
            // `x-` keys hold the user's own shared values (anchors to merge elsewhere), as in
            // Compose files; they configure nothing.
            if name.starts_with("x-") {
                continue;
            }
            let field = join(path, name);
            if !valid.contains(&name) {
                let hint = match closest(name, valid) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => String::new(),
                };
                p.add(
                    Some(key.mark),
                    field,
                    format!(
                        "unknown field{hint}; valid fields here: {}",
                        valid.join(", ")
                    ),
                );
            } else if let Some((_, first, _)) = fields.entries.iter().find(|(n, ..)| *n == name) {
                p.add(
                    Some(key.mark),
                    field,
                    format!("given twice (first at line {}): keep one", first.mark.line),
                );
            } else {
                fields.entries.push((name, key, value));
            }
        }
        Some(fields)
    }

    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, _, v)| *v)
    }

    fn key_mark(&self, name: &str) -> Option<Mark> {
        self.entries
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, k, _)| k.mark)
    }

    /// The field's value, or a "missing" problem (an empty value counts as missing).
    fn required(&self, name: &str, what_to_do: &str, p: &mut Problems) -> Option<&'n Node> {
        match self.get(name) {
            Some(node) if !node.is_null() => Some(node),
            found => {
                // An empty value's own mark is wherever the parser stopped; its key is clearer.
                let mark = match found {
                    Some(_) => self.key_mark(name).unwrap_or(self.mark),
                    None => self.mark,
                };
                p.add(
                    Some(mark),
                    join(&self.path, name),
                    format!("missing: {what_to_do}"),
                );
                None
            }
        }
    }
}

/// A valid field name close enough to a typo to suggest it.
fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (edit_distance(name, v), *v))
        .filter(|(d, v)| *d <= 1.max(v.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// A scalar's text, or a problem saying what was expected. Null reads as "not given".
fn scalar<'n>(node: &'n Node, field: &str, expected: &str, p: &mut Problems) -> Option<&'n str> {
    match &node.kind {
        _ if node.is_null() => None,
        Kind::Scalar { text, .. } => Some(text),
        _ => {
            p.add(
                Some(node.mark),
                field,
                format!("expected {expected}, found {}", node.describe()),
            );
            None
        }
    }
}

fn spanned<T>(value: T, node: &Node) -> Spanned<T> {
    Spanned {
        value,
        mark: node.mark,
    }
}

fn string(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<String>> {
    scalar(node, field, "a string", p).map(|s| spanned(s.to_string(), node))
}

fn int<T: TryFrom<u64>>(
    node: &Node,
    field: &str,
    min: u64,
    max: u64,
    expected: &str,
    p: &mut Problems,
) -> Option<Spanned<T>> {
    let text = scalar(node, field, expected, p)?;
    let value = text
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .and_then(|v| T::try_from(v).ok());
    if value.is_none() {
        p.add(
            Some(node.mark),
            field,
            format!("expected {expected}, found `{}`", shorten(text)),
        );
    }
    value.map(|v| spanned(v, node))
}

fn ip(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<IpAddr>> {
    const EXPECTED: &str = "an IPv4 or IPv6 address like 192.168.56.11 (names are not resolved)";
    let text = scalar(node, field, EXPECTED, p)?;
    match IpAddr::from_str(text) {
        Ok(addr) if addr.is_unspecified() || addr.is_multicast() => {
            p.add(
                Some(node.mark),
                field,
                format!("`{addr}` is not a host's address: give the address SSH can reach it on"),
            );
            None
        }
        Ok(addr) => Some(spanned(addr, node)),
        Err(_) => unparsable(node, field, EXPECTED, text, p),
    }
}

/// The problem for a scalar that does not parse as the expected kind of value.
fn unparsable<T>(
    node: &Node,
    field: &str,
    expected: &str,
    text: &str,
    p: &mut Problems,
) -> Option<T> {
    p.add(
        Some(node.mark),
        field,
        format!("expected {expected}, found `{}`", shorten(text)),
    );
    None
}

fn cidr(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<IpNet>> {
    const EXPECTED: &str = "a CIDR like 10.244.0.0/16";
    let text = scalar(node, field, EXPECTED, p)?;
    match IpNet::from_str(text) {
        Ok(net) if net.trunc() != net => {
            p.add(
                Some(node.mark),
                field,
                format!(
                    "`{net}` has bits set past its /{} prefix: did you mean {}?",
                    net.prefix_len(),
                    net.trunc()
                ),
            );
            None
        }
        Ok(net) => Some(spanned(net, node)),
        Err(_) => unparsable(node, field, EXPECTED, text, p),
    }
}

fn sudo(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<Sudo>> {
    const EXPECTED: &str = "`auto`, `true` or `false`";
    let value = match scalar(node, field, EXPECTED, p)? {
        "auto" => Sudo::Auto,
        "true" => Sudo::Always,
        "false" => Sudo::Never,
        other => {
            p.add(
                Some(node.mark),
                field,
                format!("expected {EXPECTED}, found `{}`", shorten(other)),
            );
            return None;
        }
    };
    Some(spanned(value, node))
}

/// What the short form of `control_plane_endpoint` looks like.
const ENDPOINT_SHORT: &str = "an IP address or DNS name with an optional port, like 192.168.56.10, api.example.com:8443 or '[fd00::10]:6443'";

/// `control_plane_endpoint`: `host`, `host:port`, `'[v6]:port'`, or `{address, port, vip}`.
fn endpoint(node: &Node, field: &str, p: &mut Problems) -> Option<RawEndpoint> {
    match &node.kind {
        _ if node.is_null() => None,
        Kind::Map(_) => {
            let f = Fields::read(node, field, &ENDPOINT_FIELDS, p)?;
            let host_field = join(field, "address");
            let host = f
                .required(
                    "address",
                    "give the endpoint's IP address or DNS name, like 192.168.56.10 or api.example.com",
                    p,
                )
                .and_then(|n| {
                    let text = scalar(n, &host_field, "an IP address or DNS name", p)?;
                    endpoint_host(text, n, &host_field, p)
                });
            let port = f
                .get("port")
                .and_then(|n| int(n, &join(field, "port"), 1, 65535, PORT, p));
            let vip = f.get("vip").and_then(|n| vip(n, &join(field, "vip"), p));
            Some(RawEndpoint {
                mark: node.mark,
                host_field,
                host: host?,
                port,
                vip,
            })
        }
        Kind::Seq(_) => {
            // `[fd00::10]:6443` unquoted is a YAML flow list.
            p.add(
                Some(node.mark),
                field,
                format!(
                    "expected {ENDPOINT_SHORT} or a mapping with address, port, vip, found a list: quote an IPv6 address in brackets"
                ),
            );
            None
        }
        Kind::Scalar { text, .. } => {
            let (host_text, port_text) = match split_host_port(text) {
                Ok(parts) => parts,
                Err(why) => {
                    p.add(Some(node.mark), field, format!("`{}` {why}", shorten(text)));
                    return None;
                }
            };
            let host = endpoint_host(host_text, node, field, p);
            let port = match port_text.map(|t| (t, t.parse::<u16>())) {
                None => None,
                Some((_, Ok(port))) if port > 0 => Some(spanned(port, node)),
                Some((t, _)) => {
                    p.add(
                        Some(node.mark),
                        field,
                        format!("expected {PORT} after the ':', found `{}`", shorten(t)),
                    );
                    return None;
                }
            };
            Some(RawEndpoint {
                mark: node.mark,
                host_field: field.to_string(),
                host: host?,
                port,
                vip: None,
            })
        }
    }
}

/// Split a short-form endpoint into host and port text; the error completes "`text` ...".
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), &'static str> {
    if text.contains("://") {
        return Err("is a URL: give the host and port only, like api.example.com:6443");
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(
                "has no closing ']': write an IPv6 address with a port as '[fd00::10]:6443'",
            );
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(
                "has brackets around something that is not an IPv6 address: brackets are only for IPv6, like '[fd00::10]:6443'",
            );
        }
        return match after {
            "" => Ok((inside, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((inside, Some(port))),
                None => {
                    Err("has text after ']' that is not ':<port>': write it like '[fd00::10]:6443'")
                }
            },
        };
    }
    // A bare IPv6 address (its colons are not a port separator).
    if IpAddr::from_str(text).is_ok() {
        return Ok((text, None));
    }
    match text.split_once(':') {
        None => Ok((text, None)),
        Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
        Some(_) => Err(
            "is neither an IP address nor host:port: write an IPv6 address with a port in brackets, like '[fd00::10]:6443'",
        ),
    }
}

/// An IP address (a usable one) or a name for `validate` to check as a DNS name.
fn endpoint_host(
    text: &str,
    node: &Node,
    field: &str,
    p: &mut Problems,
) -> Option<Spanned<RawEndpointHost>> {
    match IpAddr::from_str(text) {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() => {
            p.add(
                Some(node.mark),
                field,
                format!(
                    "`{ip}` cannot be the control-plane endpoint: give an address every host and user can reach"
                ),
            );
            None
        }
        Ok(ip) => Some(spanned(RawEndpointHost::Ip(ip), node)),
        Err(_) => Some(spanned(RawEndpointHost::Dns(text.to_string()), node)),
    }
}

fn vip(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<Vip>> {
    const EXPECTED: &str = "`auto`, `true` or `false`";
    let value = match scalar(node, field, EXPECTED, p)? {
        "auto" => Vip::Auto,
        "true" => Vip::Yes,
        "false" => Vip::No,
        other => {
            p.add(
                Some(node.mark),
                field,
                format!("expected {EXPECTED}, found `{}`", shorten(other)),
            );
            return None;
        }
    };
    Some(spanned(value, node))
}

fn backend(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<Backend>> {
    const EXPECTED: &str = "`auto`, `vxlan` or `direct`";
    let text = scalar(node, field, EXPECTED, p)?;
    match Backend::ALL.iter().find(|b| b.as_str() == text) {
        Some(b) => Some(spanned(*b, node)),
        None => {
            p.add(
                Some(node.mark),
                field,
                format!("expected {EXPECTED}, found `{}`", shorten(text)),
            );
            None
        }
    }
}

fn boolean(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<bool>> {
    const EXPECTED: &str = "`true` or `false`";
    match scalar(node, field, EXPECTED, p)? {
        "true" => Some(spanned(true, node)),
        "false" => Some(spanned(false, node)),
        other => {
            p.add(
                Some(node.mark),
                field,
                format!("expected {EXPECTED}, found `{}`", shorten(other)),
            );
            None
        }
    }
}

fn mtu(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<Option<u32>>> {
    const EXPECTED: &str = "`auto` or an MTU in 576..=9000";
    if scalar(node, field, EXPECTED, p)? == "auto" {
        return Some(spanned(None, node));
    }
    int(node, field, 576, 9000, EXPECTED, p).map(|v| spanned(Some(v.value), node))
}

fn identity(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<Identity>> {
    if node.is_null() {
        return Some(spanned(Identity::Agent, node));
    }
    let text = scalar(node, field, "a path to a private key file", p)?;
    if text.is_empty() {
        return Some(spanned(Identity::Agent, node));
    }
    Some(spanned(Identity::File(text.to_string()), node))
}

fn roles(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<Vec<Spanned<Role>>>> {
    let valid = || {
        Role::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Kind::Seq(items) = &node.kind else {
        p.add(
            Some(node.mark),
            field,
            format!(
                "expected a list of roles like [{}], found {}",
                valid(),
                node.describe()
            ),
        );
        return None;
    };
    if items.is_empty() {
        p.add(
            Some(node.mark),
            field,
            format!("no roles: give at least one of {}", valid()),
        );
        return None;
    }
    let mut roles: Vec<Spanned<Role>> = Vec::new();
    let mut all_valid = true;
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let role = match &item.kind {
            Kind::Scalar { text, .. } => Role::ALL.into_iter().find(|r| r.as_str() == text),
            _ => None,
        };
        match role {
            None => p.add(
                Some(item.mark),
                item_field,
                format!(
                    "unknown role {}: valid roles are {}",
                    item.describe(),
                    valid()
                ),
            ),
            Some(role) if roles.iter().any(|r| r.value == role) => p.add(
                Some(item.mark),
                item_field,
                format!("`{role}` is listed twice: keep one"),
            ),
            Some(role) => {
                roles.push(spanned(role, item));
                continue;
            }
        }
        all_valid = false;
    }
    // A host with a misspelt role would make "no control-plane host" checks misleading.
    all_valid.then(|| spanned(roles, node))
}

fn extra(node: &Node, field: &str, p: &mut Problems) -> Option<Spanned<serde_yaml::Mapping>> {
    if node.is_null() {
        return None;
    }
    if !matches!(node.kind, Kind::Map(_)) {
        p.add(
            Some(node.mark),
            field,
            format!(
                "expected a mapping of settings (or `{{}}`), found {}",
                node.describe()
            ),
        );
        return None;
    }
    match to_value(node, field, 0, p)? {
        serde_yaml::Value::Mapping(m) => Some(spanned(m, node)),
        _ => None,
    }
}

/// Plain YAML for the config generators, typed by the YAML 1.2 core schema.
fn to_value(node: &Node, field: &str, depth: usize, p: &mut Problems) -> Option<serde_yaml::Value> {
    use serde_yaml::Value;
    if depth > MAX_EXTRA_DEPTH {
        p.add(
            Some(node.mark),
            field,
            format!("nested more than {MAX_EXTRA_DEPTH} levels deep: flatten it"),
        );
        return None;
    }
    Some(match &node.kind {
        _ if node.is_null() => Value::Null,
        Kind::Scalar { text, plain: false } => Value::String(text.clone()),
        Kind::Scalar { text, plain: true } => plain_scalar(text),
        Kind::Seq(items) => Value::Sequence(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| to_value(n, &format!("{field}[{i}]"), depth + 1, p))
                .collect::<Option<_>>()?,
        ),
        Kind::Map(entries) => {
            let mut map = serde_yaml::Mapping::new();
            for (k, v) in entries {
                let key = to_value(k, field, depth + 1, p)?;
                let child = match &key {
                    Value::String(s) => join(field, s),
                    _ => field.to_string(),
                };
                let value = to_value(v, &child, depth + 1, p)?;
                if map.contains_key(&key) {
                    p.add(Some(k.mark), child, "given twice: keep one");
                    return None;
                }
                map.insert(key, value);
            }
            Value::Mapping(map)
        }
    })
}

fn plain_scalar(text: &str) -> serde_yaml::Value {
    use serde_yaml::Value;
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Value::Number(u.into());
    }
    // Rust also parses `inf` and `nan`, which YAML spells `.inf` and `.nan`; keep those strings.
    let numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if numeric && let Ok(f) = text.parse::<f64>() {
        return Value::Number(f.into());
    }
    Value::String(text.to_string())
}
