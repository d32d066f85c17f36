//! End-to-end tests of `load`: bad inventories with their exact messages, good ones resolved,
//! the sample, and a fuzz test that nothing panics.

use std::path::{Path, PathBuf};

use super::validate::Dirs;
use super::*;

/// Messages name this file; relative paths resolve under /inv and `~` to /home/ops.
const FILE: &str = "inv.yaml";

fn fake_dirs() -> Dirs {
    Dirs {
        base: PathBuf::from("/inv"),
        home: Some(PathBuf::from("/home/ops")),
    }
}

/// Inline YAML starts on the line after `r"`; drop that first newline so line numbers match.
fn yaml(text: &str) -> &str {
    text.strip_prefix('\n').unwrap_or(text)
}

fn problems(text: &str) -> Vec<String> {
    match load_with(yaml(text), Path::new(FILE), &fake_dirs()) {
        Ok(inv) => panic!("expected problems, but it loaded: {inv:#?}"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn good(text: &str) -> Inventory {
    good_in(text, &fake_dirs())
}

fn good_in(text: &str, dirs: &Dirs) -> Inventory {
    match load_with(yaml(text), Path::new(FILE), dirs) {
        Ok(inv) => inv,
        Err(e) => panic!("expected it to load: {e}"),
    }
}

/// One test per bad inventory: the exact rendered problems, in file order.
macro_rules! bad {
    ($name:ident, $text:expr, [$($msg:expr),+ $(,)?]) => {
        #[test]
        fn $name() {
            assert_eq!(problems($text), vec![$($msg.to_string()),+]);
        }
    };
}

bad!(
    empty_file,
    "",
    ["inv.yaml: (file): the file holds no inventory: it needs at least `cluster` and `hosts`"]
);

bad!(
    yaml_syntax_error,
    r"
cluster: {name: c1
hosts: []
",
    [
        "inv.yaml:2:6: (file): not valid YAML: while parsing a flow mapping, did not find expected ',' or '}'"
    ]
);

bad!(
    several_documents,
    r"
cluster: {name: c1}
---
hosts: []
",
    ["inv.yaml:3:1: (file): holds several YAML documents (`---`): an inventory is one document"]
);

bad!(
    document_is_not_a_mapping,
    r"
- node1
- node2
",
    [
        "inv.yaml:1:1: (document): expected a mapping with fields cluster, defaults, ssh, network, artifacts, hosts, found a list"
    ]
);

bad!(
    unknown_top_level_field_suggests_the_right_one,
    r"
cluster: {name: c1}
host:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:1:1: hosts: missing: list the cluster's hosts, each with name, address and roles",
        "inv.yaml:2:1: host: unknown field (did you mean `hosts`?); valid fields here: cluster, defaults, ssh, network, artifacts, hosts",
    ]
);

bad!(
    missing_cluster,
    r"
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:1:1: cluster.name: missing: add `cluster:` with `name: <a DNS label like prod-bigdata>`"
    ]
);

bad!(
    missing_cluster_name,
    r"
cluster:
  title: c1
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:2:3: cluster.title: unknown field; valid fields here: name, control_plane_endpoint, audit",
        "inv.yaml:2:3: cluster.name: missing: name the cluster with a DNS label like prod-bigdata",
    ]
);

bad!(
    cluster_name_not_a_dns_label,
    r"
cluster: {name: Prod_Data}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:1:17: cluster.name: `Prod_Data` is not a DNS label: use only lowercase letters, digits and '-'"
    ]
);

bad!(
    cluster_name_too_long,
    r"
cluster:
  name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:2:9: cluster.name: `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...` is not a DNS label: it is longer than 63 characters"
    ]
);

bad!(
    empty_host_list,
    r"
cluster: {name: c1}
hosts: []
",
    [
        "inv.yaml:2:8: hosts: the list is empty: add at least one host with roles [etcd, control-plane, worker]"
    ]
);

bad!(
    hosts_is_not_a_list,
    r"
cluster: {name: c1}
hosts:
  node1: 192.168.1.1
",
    ["inv.yaml:3:3: hosts: expected a list of hosts (`- name: ...`), found a mapping"]
);

bad!(
    host_is_not_a_mapping,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - node2
",
    [
        "inv.yaml:4:5: hosts[1]: expected a host (a mapping with name, address and roles), found `node2`"
    ]
);

bad!(
    host_missing_required_fields,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - port: 2222
    address:
",
    [
        "inv.yaml:4:5: hosts[1].name: missing: give the host a name (a DNS label like node1)",
        "inv.yaml:4:5: hosts[1].roles: missing: give at least one of etcd, control-plane, worker",
        "inv.yaml:5:5: hosts[1].address: missing: give the host's IPv4 or IPv6 address",
    ]
);

bad!(
    host_unknown_field_suggests_the_right_one,
    r"
cluster: {name: c1}
hosts:
  - name: n1
    adress: 192.168.1.1
    roles: [etcd, control-plane, worker]
",
    [
        "inv.yaml:3:5: hosts[0].address: missing: give the host's IPv4 or IPv6 address",
        "inv.yaml:4:5: hosts[0].adress: unknown field (did you mean `address`?); valid fields here: name, address, roles, overlay_backend, user, port, identity_file, sudo, kubelet_extra, containerd_extra",
    ]
);

bad!(
    field_given_twice,
    r"
cluster: {name: c1}
hosts:
  - name: n1
    address: 192.168.1.1
    roles: [etcd, control-plane, worker]
    name: n2
",
    ["inv.yaml:6:5: hosts[0].name: given twice (first at line 3): keep one"]
);

bad!(
    duplicate_host_names,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n1, address: 192.168.1.2, roles: [worker]}
",
    [
        "inv.yaml:4:12: hosts[1].name: `n1` is already the name of hosts[0]: host names must be unique"
    ]
);

bad!(
    duplicate_address_and_port,
    r"
cluster: {name: c1}
defaults: {port: 2200}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.1, roles: [worker], port: 2201}
  - {name: n3, address: 192.168.1.1, roles: [worker]}
",
    [
        "inv.yaml:5:25: hosts[1].address: 192.168.1.1 is already hosts[0]'s (SSH port 2200; a different SSH port does not make it another node): each host needs its own address, which is also its node address (for VMs behind port forwards, give each VM's private network address)",
        "inv.yaml:6:25: hosts[2].address: 192.168.1.1 port 2200 is already hosts[0]'s: each host needs its own address, which is also its node address (for VMs behind port forwards, give each VM's private network address)"
    ]
);

bad!(
    host_name_not_a_dns_label,
    r"
cluster: {name: c1}
hosts:
  - {name: node-1-, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: Node.2, address: 192.168.1.2, roles: [worker]}
",
    [
        "inv.yaml:3:12: hosts[0].name: `node-1-` is not a DNS label: it must start and end with a letter or digit",
        "inv.yaml:4:12: hosts[1].name: `Node.2` is not a DNS label: use only lowercase letters, digits and '-'",
    ]
);

bad!(
    address_is_a_host_name,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: n1.example.com, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:25: hosts[0].address: expected an IPv4 or IPv6 address like 192.168.56.11 (names are not resolved), found `n1.example.com`"
    ]
);

bad!(
    address_unspecified,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 0.0.0.0, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:25: hosts[0].address: `0.0.0.0` is not a host's address: give the address SSH can reach it on"
    ]
);

bad!(
    address_is_a_list,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: [192.168.1.1], roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:25: hosts[0].address: expected an IPv4 or IPv6 address like 192.168.56.11 (names are not resolved), found a list"
    ]
);

bad!(
    no_control_plane_host,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, worker]}
",
    [
        "inv.yaml:3:3: hosts: no host has the control-plane role: add `control-plane` to at least one host's roles"
    ]
);

bad!(
    no_etcd_host,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [control-plane]}
  - {name: n2, address: 192.168.1.2, roles: [worker]}
",
    ["inv.yaml:3:3: hosts: no host has the etcd role: add `etcd` to at least one host's roles"]
);

bad!(
    unknown_role,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, master]}
",
    [
        "inv.yaml:3:52: hosts[0].roles[1]: unknown role `master`: valid roles are etcd, control-plane, worker"
    ]
);

bad!(
    empty_roles,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: []}
",
    ["inv.yaml:4:45: hosts[1].roles: no roles: give at least one of etcd, control-plane, worker"]
);

bad!(
    role_listed_twice,
    r"
cluster: {name: c1}
hosts:
  - name: n1
    address: 192.168.1.1
    roles:
      - etcd
      - control-plane
      - etcd
",
    ["inv.yaml:8:9: hosts[0].roles[2]: `etcd` is listed twice: keep one"]
);

bad!(
    roles_not_a_list,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: etcd}
",
    [
        "inv.yaml:3:45: hosts[0].roles: expected a list of roles like [etcd, control-plane, worker], found `etcd`"
    ]
);

bad!(
    port_zero,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker], port: 0}
",
    ["inv.yaml:3:82: hosts[0].port: expected a port number in 1..=65535, found `0`"]
);

bad!(
    port_not_a_number,
    r"
cluster: {name: c1}
defaults:
  port: ssh
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    ["inv.yaml:3:9: defaults.port: expected a port number in 1..=65535, found `ssh`"]
);

bad!(
    port_too_large,
    r"
cluster: {name: c1}
defaults:
  port: 65536
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    ["inv.yaml:3:9: defaults.port: expected a port number in 1..=65535, found `65536`"]
);

bad!(
    bad_cidrs,
    r"
cluster: {name: c1}
network:
  pod_cidr: 10.244.0.0/33
  service_cidr: services
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: expected a CIDR like 10.244.0.0/16, found `10.244.0.0/33`",
        "inv.yaml:4:17: network.service_cidr: expected a CIDR like 10.244.0.0/16, found `services`",
    ]
);

bad!(
    cidr_with_host_bits,
    r"
cluster: {name: c1}
network:
  pod_cidr: 10.244.1.0/16
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: `10.244.1.0/16` has bits set past its /16 prefix: did you mean 10.244.0.0/16?"
    ]
);

bad!(
    pod_cidr_overlaps_service_cidr,
    r"
cluster: {name: c1}
network:
  pod_cidr: 10.96.0.0/16
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: pod_cidr 10.96.0.0/16 and service_cidr 10.96.0.0/12 overlap: give ranges that do not"
    ]
);

bad!(
    mixed_ip_families,
    r"
cluster: {name: c1}
network:
  pod_cidr: fd00:10:244::/56
  node_prefix: 64
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: fd00:10:244::/56 is IPv6, but the overlay carries IPv4 only (VXLAN routes, masquerade and forwarding are IPv4): use an IPv4 pod_cidr like 10.244.0.0/16, an IPv4 service_cidr and IPv4 host addresses"
    ]
);

bad!(
    host_family_differs_from_the_cidrs,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 'fd00::11', roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:25: hosts[0].address: fd00::11 is IPv6 but network.service_cidr 10.96.0.0/12 is IPv4: the cluster is single-stack, so hosts and CIDRs must share one family"
    ]
);

bad!(
    host_address_inside_pod_and_service_cidrs,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 10.244.3.4, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 10.100.0.1, roles: [worker]}
",
    [
        "inv.yaml:3:25: hosts[0].address: 10.244.3.4 is inside network.pod_cidr 10.244.0.0/16: hosts must be outside the pod and service ranges; change the address or network.pod_cidr",
        "inv.yaml:4:25: hosts[1].address: 10.100.0.1 is inside network.service_cidr 10.96.0.0/12: hosts must be outside the pod and service ranges; change the address or network.service_cidr",
    ]
);

bad!(
    node_prefix_not_longer_than_pod_prefix,
    r"
cluster: {name: c1}
network:
  node_prefix: 16
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:16: network.node_prefix: /16 must be longer than pod_cidr 10.244.0.0/16's /16: each node gets a slice of pod_cidr (e.g. 24)"
    ]
);

bad!(
    too_few_node_subnets,
    r"
cluster: {name: c1}
network:
  pod_cidr: 10.244.0.0/23
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [worker]}
  - {name: n3, address: 192.168.1.3, roles: [worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: pod_cidr 10.244.0.0/23 holds 2 node subnets of /24, but there are 3 hosts: use a shorter node_prefix or a larger pod_cidr"
    ]
);

bad!(
    node_prefix_leaves_too_few_pod_addresses,
    r"
cluster: {name: c1}
network:
  node_prefix: 31
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:16: network.node_prefix: /31 leaves each node fewer than 4 pod addresses: use at most /30"
    ]
);

bad!(
    node_prefix_too_far_from_pod_prefix,
    r"
cluster: {name: c1}
network:
  pod_cidr: 10.0.0.0/8
  service_cidr: 172.16.0.0/16
  node_prefix: 26
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:5:16: network.node_prefix: /26 splits pod_cidr 10.0.0.0/8 into more than 2^16 node subnets, which kube-controller-manager refuses: use at most /24"
    ]
);

bad!(
    vni_out_of_range,
    r"
cluster: {name: c1}
network:
  overlay: {vni: 16777216}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:18: network.overlay.vni: expected a VXLAN network identifier in 1..=16777215, found `16777216`"
    ]
);

bad!(
    mtu_out_of_range_and_not_auto,
    r"
cluster: {name: c1}
network:
  overlay:
    mtu: 9001
    port: 0
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:4:10: network.overlay.mtu: expected `auto` or an MTU in 576..=9000, found `9001`",
        "inv.yaml:5:11: network.overlay.port: expected a port number in 1..=65535, found `0`",
    ]
);

bad!(
    mtu_word,
    r"
cluster: {name: c1}
network:
  overlay: {mtu: jumbo}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    ["inv.yaml:3:18: network.overlay.mtu: expected `auto` or an MTU in 576..=9000, found `jumbo`"]
);

bad!(
    connect_timeout_out_of_range,
    r"
cluster: {name: c1}
ssh:
  connect_timeout: 301
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    ["inv.yaml:3:20: ssh.connect_timeout: expected a number of seconds in 1..=300, found `301`"]
);

bad!(
    connect_timeout_negative,
    r"
cluster: {name: c1}
ssh: {connect_timeout: -5}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    ["inv.yaml:2:24: ssh.connect_timeout: expected a number of seconds in 1..=300, found `-5`"]
);

bad!(
    bastion_is_a_cluster_host,
    r"
cluster: {name: c1}
ssh:
  bastion:
    address: 192.168.1.2
    user: jump
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [worker]}
",
    [
        "inv.yaml:8:25: hosts[1].address: 192.168.1.2 is also ssh.bastion.address: the bastion must be a machine outside the cluster"
    ]
);

bad!(
    bastion_without_address,
    r"
cluster: {name: c1}
ssh:
  bastion: {port: 2222, host: jump}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: ssh.bastion.address: missing: give the bastion's IPv4 or IPv6 address",
        "inv.yaml:3:25: ssh.bastion.host: unknown field; valid fields here: address, port, user, identity_file",
    ]
);

bad!(
    bastion_inside_service_cidr,
    r"
cluster: {name: c1}
ssh:
  bastion: {address: 10.96.0.10}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:22: ssh.bastion.address: 10.96.0.10 is inside network.service_cidr 10.96.0.0/12: hosts must be outside the pod and service ranges; change the address or network.service_cidr"
    ]
);

bad!(
    sudo_not_auto_true_or_false,
    r"
cluster: {name: c1}
defaults: {sudo: yes}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker], sudo: 1}
",
    [
        "inv.yaml:2:18: defaults.sudo: expected `auto`, `true` or `false`, found `yes`",
        "inv.yaml:4:82: hosts[0].sudo: expected `auto`, `true` or `false`, found `1`",
    ]
);

bad!(
    section_of_the_wrong_type,
    r"
cluster: {name: c1}
defaults:
  - user: root
network: 10.244.0.0/16
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:3: defaults: expected a mapping with fields user, port, identity_file, sudo, kubelet_extra, containerd_extra, found a list",
        "inv.yaml:4:10: network: expected a mapping with fields pod_cidr, service_cidr, node_prefix, overlay, found `10.244.0.0/16`",
    ]
);

bad!(
    extras_must_be_mappings,
    r"
cluster: {name: c1}
defaults:
  kubelet_extra: [maxPods, 200]
  containerd_extra: 'SystemdCgroup = true'
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:18: defaults.kubelet_extra: expected a mapping of settings (or `{}`), found a list",
        "inv.yaml:4:21: defaults.containerd_extra: expected a mapping of settings (or `{}`), found `SystemdCgroup = true`",
    ]
);

bad!(
    extras_key_given_twice,
    r"
cluster: {name: c1}
defaults:
  kubelet_extra:
    maxPods: 200
    maxPods: 300
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    ["inv.yaml:5:5: defaults.kubelet_extra.maxPods: given twice: keep one"]
);

bad!(
    user_that_looks_like_an_option,
    r"
cluster: {name: c1}
defaults: {user: -oProxyCommand=sh}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker], user: 'a b'}
",
    [
        "inv.yaml:2:18: defaults.user: `-oProxyCommand=sh` is not a login name: give a user like root or ubuntu (no spaces, '@', ':' or leading '-')",
        "inv.yaml:4:82: hosts[0].user: `a b` is not a login name: give a user like root or ubuntu (no spaces, '@', ':' or leading '-')",
    ]
);

bad!(
    identity_file_missing,
    r"
cluster: {name: c1}
defaults: {identity_file: keys/id_ed25519}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker], identity_file: ~/.ssh/nope}
",
    [
        "inv.yaml:2:27: defaults.identity_file: cannot read /inv/keys/id_ed25519: no such file: give a readable private key, or remove identity_file to use the ssh-agent",
        "inv.yaml:4:91: hosts[0].identity_file: cannot read /home/ops/.ssh/nope: no such file: give a readable private key, or remove identity_file to use the ssh-agent",
    ]
);

bad!(
    identity_file_of_another_user,
    r"
cluster: {name: c1}
defaults: {identity_file: ~admin/.ssh/id_rsa}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:2:27: defaults.identity_file: `~admin/.ssh/id_rsa`: only `~/` (your own home) is expanded; write the full path"
    ]
);

bad!(
    everything_wrong_at_once_in_file_order,
    r"
cluster: {name: c1}
network:
  pod_cidr: 10.244.0.0/16
  service_cidr: 10.244.0.0/20
  overlay: {vni: 0}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker], port: 0}
  - {name: n1, address: 192.168.1.2, roles: [etcd]}
  - {name: N3, address: 10.244.9.9, roles: [worker, etc]}
",
    [
        "inv.yaml:4:17: network.service_cidr: pod_cidr 10.244.0.0/16 and service_cidr 10.244.0.0/20 overlap: give ranges that do not",
        "inv.yaml:5:18: network.overlay.vni: expected a VXLAN network identifier in 1..=16777215, found `0`",
        "inv.yaml:7:82: hosts[0].port: expected a port number in 1..=65535, found `0`",
        "inv.yaml:8:12: hosts[1].name: `n1` is already the name of hosts[0]: host names must be unique",
        "inv.yaml:9:12: hosts[2].name: `N3` is not a DNS label: use only lowercase letters, digits and '-'",
        "inv.yaml:9:25: hosts[2].address: 10.244.9.9 is inside network.pod_cidr 10.244.0.0/16: hosts must be outside the pod and service ranges; change the address or network.pod_cidr",
        "inv.yaml:9:25: hosts[2].address: 10.244.9.9 is inside network.service_cidr 10.244.0.0/20: hosts must be outside the pod and service ranges; change the address or network.service_cidr",
        "inv.yaml:9:53: hosts[2].roles[1]: unknown role `etc`: valid roles are etcd, control-plane, worker",
    ]
);

/// Messages about key files name real paths, so these use a real directory.
mod key_files {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dirs_in(dir: &Path) -> Dirs {
        Dirs {
            base: dir.to_path_buf(),
            home: Some(dir.join("home")),
        }
    }

    fn key(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn problems_in(dir: &Path, text: &str) -> Vec<String> {
        match load_with(yaml(text), Path::new(FILE), &dirs_in(dir)) {
            Ok(inv) => panic!("expected problems, but it loaded: {inv:#?}"),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn key_readable_by_others_must_be_chmod_600() {
        let dir = tempfile::tempdir().unwrap();
        let path = key(dir.path(), "id_open", 0o644);
        let shown = path.display();
        assert_eq!(
            problems_in(
                dir.path(),
                r"
cluster: {name: c1}
defaults: {identity_file: id_open}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
"
            ),
            [format!(
                "inv.yaml:2:27: defaults.identity_file: {shown} can be read by group or others (mode 644) and ssh refuses such keys: run `chmod 600 {shown}`"
            )]
        );
    }

    #[test]
    fn key_that_is_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("keys")).unwrap();
        let shown = dir.path().join("keys");
        assert_eq!(
            problems_in(
                dir.path(),
                r"
cluster: {name: c1}
ssh:
  bastion: {address: 203.0.113.10, identity_file: ./keys}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
"
            ),
            [format!(
                "inv.yaml:3:51: ssh.bastion.identity_file: {} is a directory: give the private key file itself",
                shown.display()
            )]
        );
    }

    #[test]
    fn known_hosts_that_is_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            problems_in(
                dir.path(),
                r"
cluster: {name: c1}
ssh: {known_hosts: .}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
"
            ),
            [format!(
                "inv.yaml:2:20: ssh.known_hosts: {} is a directory: give a file path (it is created if missing)",
                dir.path().display()
            )]
        );
    }

    #[test]
    fn unreadable_key_when_not_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = key(dir.path(), "id_locked", 0o000);
        // root reads anything, so the check can only be seen failing as another user.
        if fs::File::open(&path).is_ok() {
            return;
        }
        assert_eq!(
            problems_in(
                dir.path(),
                r"
cluster: {name: c1}
defaults: {identity_file: id_locked}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
"
            ),
            [format!(
                "inv.yaml:2:27: defaults.identity_file: cannot read {}: permission denied: run director-boot as the key's owner, or fix its ownership",
                path.display()
            )]
        );
    }

    #[test]
    fn keys_resolve_relative_to_the_file_and_home() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home/.ssh")).unwrap();
        let shared = key(dir.path(), "cluster_key", 0o600);
        let own = key(&dir.path().join("home/.ssh"), "id_ed25519", 0o400);
        let inv = good_in(
            r"
cluster: {name: c1}
defaults: {identity_file: ./cluster_key, user: ops}
ssh:
  bastion: {address: 203.0.113.10, user: jump}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [worker], identity_file: ~/.ssh/id_ed25519}
  - {name: n3, address: 192.168.1.3, roles: [worker], identity_file: null}
",
            &dirs_in(dir.path()),
        );
        let keys: Vec<_> = inv
            .hosts
            .iter()
            .map(|h| h.ssh.identity_file.clone())
            .collect();
        assert_eq!(keys, [Some(shared.clone()), Some(own), None]);
        let bastion = inv.ssh.bastion.unwrap();
        assert_eq!(bastion.identity_file, Some(shared));
        assert_eq!(bastion.user, "jump");
        assert_eq!(bastion.port, 22);
    }
}

#[test]
fn defaults_fill_everything_left_out() {
    let inv = good(
        r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    );
    assert_eq!(inv.path, PathBuf::from(FILE));
    assert_eq!(inv.cluster_name, "c1");
    assert!(inv.warnings.is_empty());
    assert_eq!(inv.control_plane_endpoint, None);
    assert_eq!(
        inv.ssh,
        SshSettings {
            known_hosts: None,
            bastion: None,
            connect_timeout_secs: 10,
        }
    );
    assert_eq!(
        inv.network,
        Network {
            pod_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            node_prefix: 24,
            overlay: Overlay {
                vni: 42,
                port: 4789,
                mtu: None,
                backend: crate::inventory::Backend::Auto,
                encrypt: false,
            },
        }
    );
    assert_eq!(
        inv.hosts,
        [Host {
            name: "n1".into(),
            ssh: SshEndpoint {
                address: "192.168.1.1".parse().unwrap(),
                port: 22,
                user: "root".into(),
                identity_file: None,
            },
            sudo: false,
            roles: Role::ALL.into_iter().collect(),
            kubelet_extra: serde_yaml::Mapping::new(),
            containerd_extra: serde_yaml::Mapping::new(),
            overlay_backend: None,
        }]
    );
}

#[test]
fn host_settings_override_defaults_and_sudo_follows_the_user() {
    let inv = good(
        r"
cluster: {name: c1}
defaults:
  user: ubuntu
  port: 2222
  kubelet_extra: {maxPods: 110, evictionHard: {memory.available: 500Mi, nodefs.available: 10%}}
  containerd_extra: {version: 2}
ssh:
  known_hosts: state/known_hosts
  connect_timeout: 30
network:
  pod_cidr: 172.20.0.0/16
  service_cidr: 172.21.0.0/16
  node_prefix: 26
  overlay: {vni: 7, port: 8472, mtu: 1450}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
  - name: n2
    address: 192.168.1.2
    roles: [worker]
    user: root
    port: 22
    kubelet_extra: {evictionHard: {memory.available: 1Gi}, maxPods: 250}
  - {name: n3, address: 192.168.1.3, roles: [worker], user: root, sudo: false}
  - {name: n4, address: 192.168.1.4, roles: [worker], user: root, sudo: true}
",
    );
    assert_eq!(
        inv.ssh.known_hosts,
        Some(PathBuf::from("/inv/state/known_hosts"))
    );
    assert_eq!(inv.ssh.connect_timeout_secs, 30);
    assert_eq!(inv.network.node_prefix, 26);
    assert_eq!(
        inv.network.overlay,
        Overlay {
            vni: 7,
            port: 8472,
            mtu: Some(1450),
            backend: crate::inventory::Backend::Auto,
            encrypt: false,
        }
    );
    let summary: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.ssh.user.as_str(), h.ssh.port, h.sudo))
        .collect();
    assert_eq!(
        summary,
        [
            ("n1", "ubuntu", 2222, true),
            ("n2", "root", 22, false),
            ("n3", "root", 2222, false),
            ("n4", "root", 2222, true),
        ]
    );
    let mapping = |text: &str| -> serde_yaml::Mapping { serde_yaml::from_str(text).unwrap() };
    assert_eq!(
        inv.hosts[0].kubelet_extra,
        mapping("{maxPods: 110, evictionHard: {memory.available: 500Mi, nodefs.available: 10%}}")
    );
    // A host's extras are merged into the defaults' key by key, nested mappings too.
    assert_eq!(
        inv.hosts[1].kubelet_extra,
        mapping("{maxPods: 250, evictionHard: {memory.available: 1Gi, nodefs.available: 10%}}")
    );
    assert_eq!(inv.hosts[1].containerd_extra, mapping("{version: 2}"));
    assert_eq!(inv.hosts_with(Role::Worker).count(), 3);
}

/// An even etcd member count is allowed (it is the state between adding or removing members
/// one at a time) but warned about.
#[test]
fn even_etcd_member_counts_are_warnings() {
    let two = good(
        r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [etcd, worker]}
",
    );
    assert_eq!(
        two.warnings,
        [
            "hosts: 2 etcd members need 2 for quorum and so tolerate no failure, like 1 member does: use 1 or 3 (remove `etcd` from one host's roles or add it to one more host)"
        ]
    );
    let four = good(
        r"
cluster: {name: c1, control_plane_endpoint: 192.168.1.10}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [etcd, control-plane, worker]}
  - {name: n3, address: 192.168.1.3, roles: [etcd, control-plane, worker]}
  - {name: n4, address: 192.168.1.4, roles: [etcd, worker]}
",
    );
    assert_eq!(
        four.warnings,
        [
            "hosts: 4 etcd members need 3 for quorum and so tolerate 1 failure, like 3 members do: use 3 or 5 (remove `etcd` from one host's roles or add it to one more host)"
        ]
    );
}

#[test]
fn even_etcd_message_has_the_quorum_arithmetic() {
    assert_eq!(
        validate::even_etcd_message(6),
        "6 etcd members need 4 for quorum and so tolerate 2 failures, like 5 members do: use 5 or 7 (remove `etcd` from one host's roles or add it to one more host)"
    );
}

bad!(
    several_control_planes_without_an_endpoint,
    r"
cluster:
  name: c1
hosts:
  - {name: n1, address: 192.168.1.10, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.11, roles: [etcd, control-plane, worker]}
  - {name: n3, address: 192.168.1.12, roles: [etcd, control-plane, worker]}
",
    [
        // .10 is a host's, so the example is the lowest free one.
        "inv.yaml:1:1: cluster.control_plane_endpoint: missing: 3 hosts have the control-plane role, but without a shared endpoint every node and kubeconfig reaches only the first, and losing that host loses the API; add under `cluster:` `control_plane_endpoint: 192.168.1.2` (a free address in the control planes' subnet; director-boot holds it as a virtual IP) or `control_plane_endpoint: api.example.com` (the DNS name of a load balancer you run in front of every control plane's port 6443)"
    ]
);

bad!(
    two_control_planes_without_an_endpoint_and_one_etcd,
    r"
hosts:
  - {name: n1, address: 10.0.0.5, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 10.0.0.6, roles: [control-plane, worker]}
cluster: {name: c1}
",
    [
        "inv.yaml:4:1: cluster.control_plane_endpoint: missing: 2 hosts have the control-plane role, but without a shared endpoint every node and kubeconfig reaches only the first, and losing that host loses the API; add under `cluster:` `control_plane_endpoint: 10.0.0.10` (a free address in the control planes' subnet; director-boot holds it as a virtual IP) or `control_plane_endpoint: api.example.com` (the DNS name of a load balancer you run in front of every control plane's port 6443)"
    ]
);

/// Three control planes and three etcd members, with `endpoint` as `control_plane_endpoint`.
fn ha(endpoint: &str) -> String {
    format!(
        "cluster:\n  name: c1\n  control_plane_endpoint: {endpoint}\nhosts:\n  - {{name: n1, address: 192.168.56.11, roles: [etcd, control-plane, worker]}}\n  - {{name: n2, address: 192.168.56.12, roles: [etcd, control-plane]}}\n  - {{name: n3, address: 192.168.56.13, roles: [etcd, control-plane, worker]}}\n"
    )
}

fn endpoint_of(text: &str) -> ControlPlaneEndpoint {
    good(text)
        .control_plane_endpoint
        .expect("an endpoint was written")
}

#[test]
fn endpoint_short_forms() {
    let ip = |s: &str| EndpointHost::Ip(s.parse().unwrap());
    let dns = |s: &str| EndpointHost::Dns(s.into());
    let cases = [
        ("192.168.56.10", ip("192.168.56.10"), 6443, true),
        ("192.168.56.10:6443", ip("192.168.56.10"), 6443, true),
        ("api.example.com", dns("api.example.com"), 6443, false),
        ("api.example.com:8443", dns("api.example.com"), 8443, false),
        ("lb-1", dns("lb-1"), 6443, false),
        ("'10.0.0.1'", ip("10.0.0.1"), 6443, true),
    ];
    for (written, host, port, managed_vip) in cases {
        assert_eq!(
            endpoint_of(&ha(written)),
            ControlPlaneEndpoint {
                host,
                port,
                managed_vip
            },
            "{written}"
        );
    }
}

#[test]
fn endpoint_long_form_and_vip_modes() {
    let ep = endpoint_of(&ha("{address: 192.168.56.10, port: 443, vip: false}"));
    assert_eq!(
        (ep.host_port(), ep.managed_vip, ep.vip()),
        ("192.168.56.10:443".into(), false, None)
    );
    let ep = endpoint_of(&ha("{address: 192.168.56.10, vip: true}"));
    assert_eq!(ep.vip(), Some("192.168.56.10".parse().unwrap()));
    assert_eq!(ep.url(), "https://192.168.56.10:6443");
    let ep = endpoint_of(&ha("{address: api.example.com, vip: auto}"));
    assert_eq!(
        (ep.url(), ep.managed_vip),
        ("https://api.example.com:6443".into(), false)
    );
    // An external load balancer may sit on any address, even a host's (it is not held by us).
    let ep = endpoint_of(&ha("{address: 192.168.56.11, vip: false}"));
    assert_eq!(ep.host.to_string(), "192.168.56.11");
}

/// IPv6 endpoints parse (the cluster itself is refused for its IPv6 pod range, not for them).
#[test]
fn endpoint_ipv6_in_brackets_for_urls_only() {
    let text = r"
cluster:
  name: v6
  control_plane_endpoint: '[fd00::10]:6443'
network: {pod_cidr: 'fd00:10:244::/56', service_cidr: 'fd00:10:96::/112', node_prefix: 64}
hosts:
  - {name: n1, address: 'fd00::11', roles: [etcd, control-plane, worker]}
";
    let only_pod_cidr = |text: &str| {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("network.pod_cidr: fd00:10:244::/56 is IPv6"));
    };
    only_pod_cidr(text);
    only_pod_cidr(&text.replace("'[fd00::10]:6443'", "'fd00::10'"));
    let ep = ControlPlaneEndpoint {
        host: EndpointHost::Ip("fd00::10".parse().unwrap()),
        port: 6443,
        managed_vip: true,
    };
    assert_eq!(ep.host.to_string(), "fd00::10");
    assert_eq!(ep.host_port(), "[fd00::10]:6443");
    assert_eq!(ep.url(), "https://[fd00::10]:6443");
}

#[test]
fn one_control_plane_may_have_an_endpoint() {
    let inv = good(
        r"
cluster: {name: c1, control_plane_endpoint: api.example.com}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    );
    assert_eq!(
        inv.control_plane_endpoint.map(|e| e.host_port()),
        Some("api.example.com:6443".into())
    );
}

#[test]
fn endpoint_problems() {
    let cases = [
        (
            "192.168.56.12",
            "inv.yaml:3:27: cluster.control_plane_endpoint: 192.168.56.12 is already hosts[1]'s address: a virtual IP must be an address no machine owns; pick a free one in the control planes' subnet",
        ),
        (
            "{address: api.example.com, vip: true}",
            "inv.yaml:3:59: cluster.control_plane_endpoint.vip: `true` needs an IP address, but the endpoint is the DNS name `api.example.com`: a virtual IP is an address director-boot holds on the control planes, a name is a load balancer or DNS record you run; give a free IP address as address, or use `vip: auto` for the name",
        ),
        (
            "api_server.example.com",
            "inv.yaml:3:27: cluster.control_plane_endpoint: `api_server.example.com` is neither an IP address nor a DNS name: the label `api_server` may hold only letters, digits and '-'",
        ),
        (
            "192.168.56",
            "inv.yaml:3:27: cluster.control_plane_endpoint: `192.168.56` is neither an IP address nor a DNS name: its last label is all digits, like a mistyped IP address",
        ),
        (
            "{address: -lb.example.com.}",
            "inv.yaml:3:37: cluster.control_plane_endpoint.address: `-lb.example.com.` is neither an IP address nor a DNS name: write it without the trailing '.'",
        ),
        (
            "api.example.com:0",
            "inv.yaml:3:27: cluster.control_plane_endpoint: expected a port number in 1..=65535 after the ':', found `0`",
        ),
        (
            "api.example.com:https",
            "inv.yaml:3:27: cluster.control_plane_endpoint: expected a port number in 1..=65535 after the ':', found `https`",
        ),
        (
            "https://api.example.com:6443",
            "inv.yaml:3:27: cluster.control_plane_endpoint: `https://api.example.com:6443` is a URL: give the host and port only, like api.example.com:6443",
        ),
        (
            // Unquoted, `[fd00::10]` is a YAML list (and `[fd00::10]:6443` not even YAML).
            "[fd00::10]",
            "inv.yaml:3:27: cluster.control_plane_endpoint: expected an IP address or DNS name with an optional port, like 192.168.56.10, api.example.com:8443 or '[fd00::10]:6443' or a mapping with address, port, vip, found a list: quote an IPv6 address in brackets",
        ),
        (
            "'[api.example.com]:6443'",
            "inv.yaml:3:27: cluster.control_plane_endpoint: `[api.example.com]:6443` has brackets around something that is not an IPv6 address: brackets are only for IPv6, like '[fd00::10]:6443'",
        ),
        (
            "127.0.0.1",
            "inv.yaml:3:27: cluster.control_plane_endpoint: `127.0.0.1` cannot be the control-plane endpoint: give an address every host and user can reach",
        ),
        (
            "10.96.0.10",
            "inv.yaml:3:27: cluster.control_plane_endpoint: 10.96.0.10 is inside network.service_cidr 10.96.0.0/12: the endpoint must be outside the pod and service ranges; change the address or network.service_cidr",
        ),
        (
            "'fd00::10'",
            "inv.yaml:3:27: cluster.control_plane_endpoint: fd00::10 is IPv6 but network.service_cidr 10.96.0.0/12 is IPv4: a virtual IP must share the hosts' family",
        ),
        (
            "{host: 192.168.56.10, vip: maybe}",
            "inv.yaml:3:28: cluster.control_plane_endpoint.host: unknown field; valid fields here: address, port, vip",
        ),
    ];
    for (written, expected) in cases {
        let got = problems(&ha(written));
        assert_eq!(
            got.first().map(String::as_str),
            Some(expected),
            "{written}: {got:#?}"
        );
    }
    // The long form reports every field's problem.
    assert_eq!(
        problems(&ha("{host: 192.168.56.10, vip: maybe}"))[1..],
        [
            "inv.yaml:3:28: cluster.control_plane_endpoint.address: missing: give the endpoint's IP address or DNS name, like 192.168.56.10 or api.example.com",
            "inv.yaml:3:54: cluster.control_plane_endpoint.vip: expected `auto`, `true` or `false`, found `maybe`",
        ]
    );
}

#[test]
fn anchors_and_aliases_are_understood() {
    let inv = good(
        r"
cluster: {name: c1, control_plane_endpoint: 192.168.1.10}
hosts:
  - {name: n1, address: 192.168.1.1, roles: &all [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: *all}
  - {name: n3, address: 192.168.1.3, roles: *all}
",
    );
    assert_eq!(inv.hosts_with(Role::Etcd).count(), 3);
}

/// The sample uses the ssh-agent (`identity_file: null`), so it loads on any machine as is.
#[test]
fn sample_inventory_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/sample.yaml");
    let inv = match load(&path) {
        Ok(inv) => inv,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(inv.cluster_name, "prod-bigdata");
    assert!(inv.warnings.is_empty());
    let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    assert_eq!(inv.hosts_with(Role::Etcd).count(), 3);
    let ep = inv
        .control_plane_endpoint
        .expect("the sample has an endpoint");
    assert_eq!(
        (ep.url(), ep.managed_vip),
        ("https://192.168.56.10:6443".into(), true)
    );
    let node3 = &inv.hosts[2];
    assert_eq!((node3.ssh.user.as_str(), node3.sudo), ("ubuntu", true));
    assert!(inv.hosts.iter().all(|h| h.ssh.identity_file.is_none()));
}

/// Every line of the sample that sets a field explains it.
#[test]
fn sample_inventory_comments_every_field() {
    let text = include_str!("../../inventory/sample.yaml");
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("").trim();
        if !code.is_empty() {
            assert!(line.contains('#'), "line {} has no comment: {line}", i + 1);
        }
    }
}

#[test]
fn missing_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.yaml");
    let err = load(&path).unwrap_err();
    assert_eq!(
        err.problems[0].to_string(),
        format!(
            "{}: (file): cannot read the inventory: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn non_utf8_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"cluster: {name: caf\xe9}\n").unwrap();
    let err = load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the inventory has 1 problem:\n  {}: (file): not UTF-8 text (invalid byte at offset 19): save it as UTF-8\n",
            path.display()
        )
    );
}

// ---- Inventories real users write (issue 13, item 6) ----

/// Shared values under `x-` keys, anchored once and merged into hosts with `<<`.
#[test]
fn merge_keys_and_x_keys_share_host_settings() {
    let inv = good(
        r"
x-node: &node
  user: ops
  port: 2222
  roles: [worker]
x-notes: {owner: data-team}
cluster: {name: c1, x-ticket: OPS-1}
hosts:
  - <<: *node
    name: n1
    address: 192.168.1.1
    roles: [etcd, control-plane, worker]
  - {<<: *node, name: n2, address: 192.168.1.2}
  - <<: [*node, {port: 22}]
    name: n3
    address: 192.168.1.3
    x-rack: r2
",
    );
    let summary: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.ssh.user.as_str(),
                h.ssh.port,
                h.sudo,
                h.roles.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("n1", "ops", 2222, true, 3),
            ("n2", "ops", 2222, true, 1),
            ("n3", "ops", 2222, true, 1),
        ]
    );
}

bad!(
    merge_of_something_that_is_not_a_mapping,
    r"
cluster: {name: c1}
hosts:
  - {<<: node, name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:10: (file): `<<` merges a mapping or a list of mappings (like `<<: *defaults`), found `node`"
    ]
);

bad!(
    merged_fields_are_still_checked,
    r"
x-node: &node {user: ops, rolez: [worker]}
cluster: {name: c1}
hosts:
  - {<<: *node, name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:1:27: hosts[0].rolez: unknown field (did you mean `roles`?); valid fields here: name, address, roles, overlay_backend, user, port, identity_file, sudo, kubelet_extra, containerd_extra"
    ]
);

bad!(
    no_host_runs_workloads,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
  - {name: n2, address: 192.168.1.2, roles: [etcd]}
  - {name: n3, address: 192.168.1.3, roles: [etcd]}
",
    [
        "inv.yaml:3:3: hosts: no host has the worker role: control planes are tainted NoSchedule and etcd-only hosts run no kubelet, so no workload (apps, netcheck pods) could be scheduled; add `worker` to at least one host's roles (a control plane can be a worker too)"
    ]
);

bad!(
    ipv6_pod_cidr_the_overlay_cannot_carry,
    r"
cluster: {name: v6}
network: {pod_cidr: 'fd00:10:244::/56', service_cidr: 'fd00:10:96::/112', node_prefix: 64}
hosts:
  - {name: n1, address: '2001:db8::11', roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:2:21: network.pod_cidr: fd00:10:244::/56 is IPv6, but the overlay carries IPv4 only (VXLAN routes, masquerade and forwarding are IPv4): use an IPv4 pod_cidr like 10.244.0.0/16, an IPv4 service_cidr and IPv4 host addresses"
    ]
);

bad!(
    hosts_of_both_address_families,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: '2001:db8::12', roles: [worker]}
",
    [
        "inv.yaml:4:25: hosts[1].address: 2001:db8::12 is IPv6 but network.service_cidr 10.96.0.0/12 is IPv4: the cluster is single-stack, so hosts and CIDRs must share one family"
    ]
);

bad!(
    non_root_login_without_sudo,
    r"
cluster: {name: c1}
defaults: {user: ops, sudo: false}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [worker], user: root}
  - {name: n3, address: 192.168.1.3, roles: [worker], user: ec2-user, sudo: false}
",
    [
        "inv.yaml:2:29: hosts[0].sudo: `false` (from defaults.sudo, line 2) but the login `ops` is not root: init installs binaries, units and certificates as root, so it needs sudo; use `sudo: auto` (or true) or log in as root",
        "inv.yaml:6:77: hosts[2].sudo: `false` but the login `ec2-user` is not root: init installs binaries, units and certificates as root, so it needs sudo; use `sudo: auto` (or true) or log in as root",
    ]
);

bad!(
    multicast_and_broadcast_host_addresses,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 224.0.0.18, roles: [worker]}
  - {name: n3, address: 255.255.255.255, roles: [worker]}
",
    [
        "inv.yaml:4:25: hosts[1].address: `224.0.0.18` is not a host's address: give the address SSH can reach it on",
        "inv.yaml:5:25: hosts[2].address: 255.255.255.255 is the broadcast address: a host's address is also its node address (etcd peers, the API server, the overlay, kubelet's node IP), so give the address other hosts reach it at",
    ]
);

bad!(
    virtual_ip_on_a_port_no_api_server_listens_on,
    r"
cluster: {name: c1, control_plane_endpoint: 192.168.1.10:7443}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:1:45: cluster.control_plane_endpoint.port: 7443 with a virtual IP: the VIP lands on a control plane, whose API server listens on 6443; leave the port out, or set `vip: false` if a load balancer of yours listens on 7443"
    ]
);

#[test]
fn load_balancer_of_ones_own_may_use_any_port() {
    let inv = good(
        r"
cluster: {name: c1, control_plane_endpoint: {address: 192.168.1.10, port: 7443, vip: false}}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    );
    assert_eq!(
        inv.control_plane_endpoint.map(|e| e.url()),
        Some("https://192.168.1.10:7443".into())
    );
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const SAMPLE: &str = include_str!("../../inventory/sample.yaml");

    /// Apply `edits` (position, kind, text) to the sample's characters.
    fn mutate(edits: &[(usize, u8, String)]) -> String {
        let mut chars: Vec<char> = SAMPLE.chars().collect();
        for (pos, kind, text) in edits {
            let at = pos % (chars.len() + 1);
            match kind % 4 {
                0 => {
                    let end = (at + text.len()).min(chars.len());
                    chars.drain(at..end);
                }
                1 => {
                    chars.splice(at..at, text.chars());
                }
                2 => {
                    // Duplicate a line-sized chunk: repeated keys, hosts and sections.
                    let end = (at + 80).min(chars.len());
                    let chunk: Vec<char> = chars[at..end].to_vec();
                    chars.splice(at..at, chunk);
                }
                _ => {
                    let end = (at + text.chars().count()).min(chars.len());
                    chars.splice(at..end, text.chars());
                }
            }
        }
        chars.into_iter().collect()
    }

    fn never_panics(text: &str) {
        let _ = load_with(text, Path::new(FILE), &fake_dirs());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text(text in any::<String>()) {
            never_panics(&text);
        }

        #[test]
        fn yaml_looking_text(text in r"([a-z_]{1,8}: ?|- |\{|\}|\[|\]|, |'|&a |\*a|~|[0-9./:]{1,12}|\n {0,6}|#|---\n){0,40}") {
            never_panics(&text);
        }

        #[test]
        fn mutated_sample(edits in prop::collection::vec((any::<usize>(), any::<u8>(), r"[ -~\n\t]{0,12}"), 1..6)) {
            never_panics(&mutate(&edits));
        }
    }
}

bad!(
    later_hosts_keep_their_index_after_a_broken_entry,
    r"
cluster: {name: c1}
hosts:
  - just-a-name
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n1, address: 192.168.1.2, roles: [worker]}
",
    [
        "inv.yaml:3:5: hosts[0]: expected a host (a mapping with name, address and roles), found `just-a-name`",
        "inv.yaml:5:12: hosts[2].name: `n1` is already the name of hosts[1]: host names must be unique",
    ]
);

bad!(
    only_broken_hosts_is_not_an_empty_list,
    r"
cluster: {name: c1}
hosts: [42]
",
    [
        "inv.yaml:2:9: hosts[0]: expected a host (a mapping with name, address and roles), found `42`"
    ]
);

bad!(
    service_cidr_too_large,
    r"
cluster: {name: c1}
network:
  service_cidr: 10.0.0.0/8
  pod_cidr: 172.16.0.0/16
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:17: network.service_cidr: 10.0.0.0/8 has 16777216 addresses: kube-apiserver needs a service range of /12 to /28"
    ]
);

bad!(
    service_cidr_too_small_v6,
    r"
cluster: {name: c1}
network:
  pod_cidr: 'fd00:10:244::/56'
  service_cidr: 'fd00:10:96::/126'
  node_prefix: 64
hosts:
  - {name: n1, address: 'fd00::11', roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: fd00:10:244::/56 is IPv6, but the overlay carries IPv4 only (VXLAN routes, masquerade and forwarding are IPv4): use an IPv4 pod_cidr like 10.244.0.0/16, an IPv4 service_cidr and IPv4 host addresses",
        "inv.yaml:4:17: network.service_cidr: fd00:10:96::/126 has 4 addresses: kube-apiserver needs a service range of /108 to /124"
    ]
);

bad!(
    ipv6_mtu_below_minimum,
    r"
cluster: {name: c1}
network:
  pod_cidr: 'fd00:10:244::/56'
  service_cidr: 'fd00:10:96::/112'
  node_prefix: 64
  overlay: {mtu: 1200}
hosts:
  - {name: n1, address: 'fd00::11', roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: fd00:10:244::/56 is IPv6, but the overlay carries IPv4 only (VXLAN routes, masquerade and forwarding are IPv4): use an IPv4 pod_cidr like 10.244.0.0/16, an IPv4 service_cidr and IPv4 host addresses",
        "inv.yaml:6:18: network.overlay.mtu: 1200 is below IPv6's minimum MTU: with an IPv6 pod_cidr use auto or 1280..=9000"
    ]
);

#[test]
fn audit_defaults_to_the_cis_minimums_and_takes_overrides() {
    let one =
        "hosts:\n  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}\n";
    let inv = good(&format!("cluster: {{name: c1}}\n{one}"));
    assert_eq!(inv.audit, Audit::default());
    assert_eq!(inv.audit.max_age_days, 30);
    let inv = good(&format!(
        "cluster:\n  name: c1\n  audit: {{path: /srv/audit/api.log, max_age_days: 90, max_backups: 20, max_size_mb: 200}}\n{one}"
    ));
    assert_eq!(
        inv.audit,
        Audit {
            path: "/srv/audit/api.log".into(),
            max_age_days: 90,
            max_backups: 20,
            max_size_mb: 200
        }
    );
    let p = problems(&format!(
        "cluster:\n  name: c1\n  audit: {{path: relative.log, max_backups: 0, keep: 3}}\n{one}"
    ));
    assert!(
        p.iter()
            .any(|l| l.contains("cluster.audit.path: expected an absolute file path")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("cluster.audit.max_backups: expected a whole number in 1..=1000")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("cluster.audit.keep: unknown field")),
        "{p:?}"
    );
}

#[test]
fn artifacts_source_url_or_local_paths() {
    let hosts =
        "hosts:\n  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}\n";
    let inv = good(&format!(
        "cluster: {{name: c1}}\nartifacts: {{url: 'http://repo.example/db/'}}\n{hosts}"
    ));
    assert_eq!(
        inv.artifacts,
        Some(ArtifactsSource {
            url: "http://repo.example/db/".into(),
            manifest: None
        })
    );
    // Relative paths are the inventory's directory's, and must exist.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("export")).unwrap();
    std::fs::write(dir.path().join("export/pinned.yaml"), "").unwrap();
    let dirs = Dirs {
        base: dir.path().to_path_buf(),
        home: None,
    };
    let inv = good_in(
        &format!(
            "cluster: {{name: c1}}\nartifacts: {{url: export, manifest: export/pinned.yaml}}\n{hosts}"
        ),
        &dirs,
    );
    let a = inv.artifacts.unwrap();
    assert_eq!(a.url, dir.path().join("export").to_string_lossy());
    assert_eq!(a.manifest, Some(dir.path().join("export/pinned.yaml")));
    assert_eq!(
        problems(&format!(
            "cluster: {{name: c1}}\nartifacts: {{url: ftp://x/, manifest: m.yaml}}\n{hosts}"
        )),
        [
            "inv.yaml:2:18: artifacts.url: expected an http:// or https:// URL, a directory or a bundle file, found `ftp://x/`"
        ]
    );
    assert_eq!(
        problems(&format!(
            "cluster: {{name: c1}}\nartifacts: {{url: 'https://r/', manifest: m.yaml}}\n{hosts}"
        )),
        [
            "inv.yaml:2:42: artifacts.manifest: /inv/m.yaml does not exist: give the pinned manifest the artifacts were exported with (`artifacts export` writes OUTDIR/pinned.yaml)"
        ]
    );
    assert_eq!(
        problems(&format!(
            "cluster: {{name: c1}}\nartifacts: {{manifest: m.yaml}}\n{hosts}"
        )),
        [
            "inv.yaml:2:13: artifacts.url: missing: name the web server (http://repo.example/director-boot/), directory or bundle file `init` fetches the pinned components from"
        ]
    );
}

#[test]
fn overlay_backend_defaults_to_auto_and_a_host_may_override_it() {
    let inv = good(
        r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
  - {name: n2, address: 192.168.1.2, roles: [worker], overlay_backend: vxlan}
",
    );
    assert_eq!(inv.network.overlay.backend, crate::inventory::Backend::Auto);
    assert!(!inv.network.overlay.encrypt);
    assert_eq!(inv.hosts[0].overlay_backend, None);
    assert_eq!(
        inv.hosts[1].overlay_backend,
        Some(crate::inventory::Backend::Vxlan)
    );
    let inv = good(
        r"
cluster: {name: c1}
network:
  overlay: {backend: direct, encrypt: false}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    );
    assert_eq!(
        inv.network.overlay.backend,
        crate::inventory::Backend::Direct
    );
}

bad!(
    overlay_backend_unknown,
    r"
cluster: {name: c1}
network:
  overlay: {backend: ipip}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker], overlay_backend: gre}
",
    [
        "inv.yaml:3:22: network.overlay.backend: expected `auto`, `vxlan` or `direct`, found `ipip`",
        "inv.yaml:5:93: hosts[0].overlay_backend: expected `auto`, `vxlan` or `direct`, found `gre`"
    ]
);

bad!(
    overlay_encrypt_with_a_direct_backend_is_refused,
    r"
cluster: {name: c1}
network:
  overlay: {encrypt: true, backend: direct}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}
",
    [
        "inv.yaml:3:37: network.overlay.backend: `direct` sends pod packets between hosts unencapsulated and in clear, which `encrypt: true` forbids (every pair then goes through WireGuard); remove `backend` or set `auto`"
    ]
);

#[test]
fn overlay_encrypt_is_accepted() {
    let inv = crate::inventory::load_str(
        "cluster: {name: c1}\nnetwork:\n  overlay: {encrypt: true}\nhosts:\n  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane, worker]}\n",
        std::path::Path::new("inv.yaml"),
    )
    .expect("valid");
    assert!(inv.network.overlay.encrypt);
}
