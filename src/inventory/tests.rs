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
        "inv.yaml:1:1: (document): expected a mapping with fields cluster, defaults, ssh, network, hosts, found a list"
    ]
);

bad!(
    unknown_top_level_field_suggests_the_right_one,
    r"
cluster: {name: c1}
host:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
",
    [
        "inv.yaml:1:1: hosts: missing: list the cluster's hosts, each with name, address and roles",
        "inv.yaml:2:1: host: unknown field (did you mean `hosts`?); valid fields here: cluster, defaults, ssh, network, hosts",
    ]
);

bad!(
    missing_cluster,
    r"
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
",
    [
        "inv.yaml:2:3: cluster.title: unknown field; valid fields here: name",
        "inv.yaml:2:3: cluster.name: missing: name the cluster with a DNS label like prod-bigdata",
    ]
);

bad!(
    cluster_name_not_a_dns_label,
    r"
cluster: {name: Prod_Data}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
    roles: [etcd, control-plane]
",
    [
        "inv.yaml:3:5: hosts[0].address: missing: give the host's IPv4 or IPv6 address",
        "inv.yaml:4:5: hosts[0].adress: unknown field (did you mean `address`?); valid fields here: name, address, roles, user, port, identity_file, sudo, kubelet_extra, containerd_extra",
    ]
);

bad!(
    field_given_twice,
    r"
cluster: {name: c1}
hosts:
  - name: n1
    address: 192.168.1.1
    roles: [etcd, control-plane]
    name: n2
",
    ["inv.yaml:6:5: hosts[0].name: given twice (first at line 3): keep one"]
);

bad!(
    duplicate_host_names,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
  - {name: n2, address: 192.168.1.1, roles: [worker], port: 2201}
  - {name: n3, address: 192.168.1.1, roles: [worker]}
",
    [
        "inv.yaml:6:25: hosts[2].address: 192.168.1.1 port 2200 is already hosts[0]'s: each host needs its own address (or SSH port)"
    ]
);

bad!(
    host_name_not_a_dns_label,
    r"
cluster: {name: c1}
hosts:
  - {name: node-1-, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: n1.example.com, roles: [etcd, control-plane]}
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
  - {name: n1, address: 0.0.0.0, roles: [etcd, control-plane]}
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
  - {name: n1, address: [192.168.1.1], roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane], port: 0}
",
    ["inv.yaml:3:74: hosts[0].port: expected a port number in 1..=65535, found `0`"]
);

bad!(
    port_not_a_number,
    r"
cluster: {name: c1}
defaults:
  port: ssh
hosts:
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: pod_cidr fd00:10:244::/56 is IPv6 but service_cidr 10.96.0.0/12 is IPv4: dual-stack is not supported, use one family for both"
    ]
);

bad!(
    host_family_differs_from_the_cidrs,
    r"
cluster: {name: c1}
hosts:
  - {name: n1, address: 'fd00::11', roles: [etcd, control-plane]}
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
  - {name: n1, address: 10.244.3.4, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
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
  - {name: n1, address: 192.168.1.1, roles: [etcd, control-plane]}
  - {name: n2, address: 192.168.1.2, roles: [worker]}
  - {name: n3, address: 192.168.1.3, roles: [worker]}
",
    [
        "inv.yaml:3:13: network.pod_cidr: pod_cidr 10.244.0.0/23 holds 2 node subnets of /24, but there are 3 hosts: use a shorter node_prefix or a larger pod_cidr"
    ]
);
