//! Fixed names and addresses of the lab. They are fixed on purpose (one lab per slot), so
//! every resource can be found again by `down` from the node index alone.
//!
//! A machine can run several independent labs side by side, one per *slot*
//! (`DIRECTOR_BOOT_LAB_SLOT`, 0 to 9, default 0): slot N has bridge `dblabN`, subnet
//! 10.213.N.0/24, its own namespaces, cgroups and machine lock. Slot 0 keeps the names labs
//! always had.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// The environment variable that picks the slot.
pub const SLOT_ENV: &str = "DIRECTOR_BOOT_LAB_SLOT";
/// Slots 0..=MAX_SLOT (one decimal digit keeps every name inside its length limit).
pub const MAX_SLOT: u8 = 9;

/// The slot named by `value` (the environment variable's), or why it is not one.
pub fn parse_slot(value: Option<&str>) -> Result<u8, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse::<u8>()
            .ok()
            .filter(|s| *s <= MAX_SLOT)
            .ok_or_else(|| {
                format!("{SLOT_ENV}={v:?} is not a lab slot: give a number from 0 to {MAX_SLOT}")
            }),
    }
}

/// The slot of this process's lab. `check_slot` refuses a bad value before any lab command
/// acts, so the fallback to 0 is never reached by one.
pub fn slot() -> u8 {
    static SLOT: OnceLock<u8> = OnceLock::new();
    *SLOT.get_or_init(|| parse_slot(std::env::var(SLOT_ENV).ok().as_deref()).unwrap_or(0))
}

/// A bad `DIRECTOR_BOOT_LAB_SLOT`, as the message to show.
pub fn check_slot() -> Result<u8, String> {
    parse_slot(std::env::var(SLOT_ENV).ok().as_deref())
}

/// The host bridge every node's veth is attached to.
pub fn bridge() -> String {
    format!("dblab{}", slot())
}

fn lab_address(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, slot(), last)
}

/// The control machine's address on the bridge.
pub fn host_address() -> Ipv4Addr {
    lab_address(1)
}
pub const PREFIX_LEN: u8 = 24;
/// The nodes' default gateway: an address nobody owns. kube-apiserver needs a default route
/// to exist, but no lab traffic may leave this machine.
pub fn blackhole_gateway() -> Ipv4Addr {
    lab_address(254)
}
/// The control-plane endpoint of a lab with several control planes: below the first node's
/// address (.11), above the bridge's (.1), so no node or the host ever owns it; `init` makes it
/// the virtual IP.
pub fn endpoint_address() -> Ipv4Addr {
    lab_address(10)
}
/// The underlay MTU of every lab link.
pub const MTU: u32 = 1500;
/// Node indexes stay below the gateway address: 10 + index < 254.
pub const MAX_NODES: u32 = 200;
/// Host cgroup (in every hierarchy) under which each node gets its own subtree.
pub fn cgroup_parent() -> String {
    match slot() {
        0 => "lab".into(),
        n => format!("lab{n}"),
    }
}

/// The machine-wide lock of this slot's lab commands.
pub fn machine_lock() -> String {
    match slot() {
        0 => "/run/lock/director-boot-lab.lock".into(),
        n => format!("/run/lock/director-boot-lab-{n}.lock"),
    }
}

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
    lab_address(last)
}

/// Network namespace of a node; also the host-side veth name (at most 15 characters).
pub fn netns(index: u32) -> String {
    match slot() {
        0 => format!("dblab-node{index}"),
        n => format!("dblab{n}-node{index}"),
    }
}

pub fn host_veth(index: u32) -> String {
    netns(index)
}

/// The node's cgroup, relative to each hierarchy's root.
pub fn cgroup(index: u32) -> String {
    format!("{}/{}", cgroup_parent(), netns(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(node_name(3), "node3");
        let s = slot();
        assert_eq!(node_address(1).to_string(), format!("10.213.{s}.11"));
        assert_eq!(node_address(20).to_string(), format!("10.213.{s}.30"));
        if s == 0 {
            assert_eq!(netns(7), "dblab-node7");
            assert_eq!(cgroup(2), "lab/dblab-node2");
        } else {
            assert_eq!(netns(7), format!("dblab{s}-node7"));
            assert_eq!(cgroup(2), format!("lab{s}/dblab{s}-node2"));
        }
        assert!(host_veth(MAX_NODES).len() <= 15);
        assert!(format!("dblab{MAX_SLOT}-node{MAX_NODES}").len() <= 15);
        assert!(u32::from(node_address(MAX_NODES).octets()[3]) < 254);
    }

    #[test]
    fn endpoint_address_is_free() {
        assert_ne!(endpoint_address(), host_address());
        assert_ne!(endpoint_address(), blackhole_gateway());
        assert!((1..=MAX_NODES).all(|i| node_address(i) != endpoint_address()));
        let net = ipnet::Ipv4Net::new(host_address(), PREFIX_LEN).unwrap();
        assert!(net.contains(&endpoint_address()));
    }

    #[test]
    fn parses_slots() {
        assert_eq!(parse_slot(None), Ok(0));
        assert_eq!(parse_slot(Some("")), Ok(0));
        assert_eq!(parse_slot(Some("2")), Ok(2));
        assert_eq!(parse_slot(Some("9")), Ok(9));
        for bad in ["10", "-1", "x"] {
            let e = parse_slot(Some(bad)).unwrap_err();
            assert!(
                e.contains("DIRECTOR_BOOT_LAB_SLOT") && e.contains("0 to 9"),
                "{e}"
            );
        }
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
