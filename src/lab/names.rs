//! Fixed names and addresses of the lab. They are fixed on purpose (one lab per machine), so
//! every resource can be found again by `down` from the node index alone.

use std::net::Ipv4Addr;

/// The host bridge every node's veth is attached to.
pub const BRIDGE: &str = "dblab0";
/// The control machine's address on the bridge.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
pub const PREFIX_LEN: u8 = 24;
/// The nodes' default gateway: an address nobody owns. kube-apiserver needs a default route
/// to exist, but no lab traffic may leave this machine.
pub const BLACKHOLE_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 254);
/// The control-plane endpoint of a lab with several control planes: below the first node's
/// address (.11), above the bridge's (.1), so no node or the host ever owns it; `init` makes it
/// the virtual IP.
pub const ENDPOINT_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 10);
/// The underlay MTU of every lab link.
pub const MTU: u32 = 1500;
/// Node indexes stay below the gateway address: 10 + index < 254.
pub const MAX_NODES: u32 = 200;
/// Host cgroup (in every hierarchy) under which each node gets its own subtree.
pub const CGROUP_PARENT: &str = "lab";

pub fn node_name(index: u32) -> String {
    format!("node{index}")
}

/// The index of `nodeI`, for names given on the command line.
pub fn node_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("node")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|i| (1..=MAX_NODES).contains(i))
}

pub fn node_address(index: u32) -> Ipv4Addr {
    // MAX_NODES keeps 10 + index well inside one octet.
    let last = u8::try_from(10 + index.min(MAX_NODES)).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 213, 0, last)
}

/// Network namespace of a node; also the host-side veth name (at most 15 characters).
pub fn netns(index: u32) -> String {
    format!("dblab-node{index}")
}

pub fn host_veth(index: u32) -> String {
    netns(index)
}

/// The node's cgroup, relative to each hierarchy's root.
pub fn cgroup(index: u32) -> String {
    format!("{CGROUP_PARENT}/dblab-node{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(node_name(3), "node3");
        assert_eq!(node_address(1).to_string(), "10.213.0.11");
        assert_eq!(node_address(20).to_string(), "10.213.0.30");
        assert_eq!(netns(7), "dblab-node7");
        assert_eq!(cgroup(2), "lab/dblab-node2");
        assert!(host_veth(MAX_NODES).len() <= 15);
        assert!(u32::from(node_address(MAX_NODES).octets()[3]) < 254);
    }

    #[test]
    fn endpoint_address_is_free() {
        assert_ne!(ENDPOINT_ADDRESS, HOST_ADDRESS);
        assert_ne!(ENDPOINT_ADDRESS, BLACKHOLE_GATEWAY);
        assert!((1..=MAX_NODES).all(|i| node_address(i) != ENDPOINT_ADDRESS));
        let net = ipnet::Ipv4Net::new(HOST_ADDRESS, PREFIX_LEN).unwrap();
        assert!(net.contains(&ENDPOINT_ADDRESS));
    }

    #[test]
    fn parses_node_names() {
        assert_eq!(node_index("node1"), Some(1));
        assert_eq!(node_index("node20"), Some(20));
        assert_eq!(node_index("node0"), None);
        assert_eq!(node_index("node01"), None);
        assert_eq!(node_index("node"), None);
        assert_eq!(node_index("nodex"), None);
        assert_eq!(node_index("node999"), None);
        assert_eq!(node_index("worker1"), None);
    }
}
