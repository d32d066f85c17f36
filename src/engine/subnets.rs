//! Per-node pod subnets carved from the cluster pod CIDR. Kept in the cluster state so a node's
//! subnet never changes under it: existing nodes keep theirs, new nodes take the lowest free one.

use std::collections::BTreeMap;

use ipnet::IpNet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubnetError {
    #[error(
        "pod CIDR {cidr} has no free /{prefix} left for {host} ({used} in use); widen network.pod_cidr or lengthen network.node_prefix"
    )]
    Exhausted {
        cidr: IpNet,
        prefix: u8,
        host: String,
        used: usize,
    },
    #[error("network.node_prefix /{prefix} does not fit inside pod CIDR {cidr}")]
    Prefix { cidr: IpNet, prefix: u8 },
}

/// Assign a subnet to each of `hosts`, keeping every still-valid assignment in `previous`.
pub fn allocate(
    previous: &BTreeMap<String, IpNet>,
    hosts: &[String],
    pod_cidr: IpNet,
    prefix: u8,
) -> Result<BTreeMap<String, IpNet>, SubnetError> {
    let candidates = pod_cidr.subnets(prefix).map_err(|_| SubnetError::Prefix {
        cidr: pod_cidr,
        prefix,
    })?;
    let mut out: BTreeMap<String, IpNet> = BTreeMap::new();
    for h in hosts {
        if let Some(net) = previous.get(h)
            && net.prefix_len() == prefix
            && pod_cidr.contains(net)
        {
            out.insert(h.clone(), *net);
        }
    }
    let taken: std::collections::BTreeSet<IpNet> = out.values().copied().collect();
    let mut free = candidates.filter(|c| !taken.contains(c));
    for h in hosts {
        if out.contains_key(h) {
            continue;
        }
        let net = free.next().ok_or_else(|| SubnetError::Exhausted {
            cidr: pod_cidr,
            prefix,
            host: h.clone(),
            used: out.len(),
        })?;
        out.insert(h.clone(), net);
    }
    Ok(out)
}

/// The n-th address of a network (0 = the network address).
/// The address `k` below the subnet's last one (`k = 0` is the broadcast address).
pub fn from_end(net: IpNet, k: u32) -> Option<std::net::IpAddr> {
    match net {
        IpNet::V4(v4) => {
            let last = u32::from(v4.broadcast());
            let addr = std::net::Ipv4Addr::from(last.checked_sub(k)?);
            (v4.contains(&addr) && addr != v4.network()).then(|| addr.into())
        }
        IpNet::V6(v6) => {
            let last = u128::from(v6.broadcast());
            let addr = std::net::Ipv6Addr::from(last.checked_sub(u128::from(k))?);
            (v6.contains(&addr) && addr != v6.network()).then(|| addr.into())
        }
    }
}

pub fn nth(net: IpNet, n: u32) -> Option<std::net::IpAddr> {
    match net {
        IpNet::V4(v4) => {
            let base = u32::from(v4.network());
            let addr = base.checked_add(n)?;
            v4.contains(&std::net::Ipv4Addr::from(addr))
                .then(|| std::net::Ipv4Addr::from(addr).into())
        }
        IpNet::V6(v6) => {
            let base = u128::from(v6.network());
            let addr = base.checked_add(u128::from(n))?;
            v6.contains(&std::net::Ipv6Addr::from(addr))
                .then(|| std::net::Ipv6Addr::from(addr).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_existing_and_fills_gaps() {
        let cidr = net("10.244.0.0/16");
        let hosts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let first = allocate(&BTreeMap::new(), &hosts, cidr, 24).unwrap();
        assert_eq!(first["a"], net("10.244.0.0/24"));
        assert_eq!(first["c"], net("10.244.2.0/24"));
        // b leaves, d arrives: d takes b's freed slot, a and c keep theirs.
        let hosts2: Vec<String> = ["a", "c", "d"].map(String::from).to_vec();
        let second = allocate(&first, &hosts2, cidr, 24).unwrap();
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["c"], first["c"]);
        assert_eq!(second["d"], net("10.244.1.0/24"));
        assert!(!second.contains_key("b"));
    }

    #[test]
    fn exhaustion_names_the_host() {
        let hosts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let e = allocate(&BTreeMap::new(), &hosts, net("10.0.0.0/23"), 24).unwrap_err();
        assert!(e.to_string().contains("for c (2 in use)"), "{e}");
    }

    #[test]
    fn nth_address() {
        assert_eq!(
            nth(net("10.96.0.0/12"), 1).unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            nth(net("10.96.0.0/12"), 10).unwrap().to_string(),
            "10.96.0.10"
        );
        assert_eq!(nth(net("fd00::/64"), 1).unwrap().to_string(), "fd00::1");
        assert!(nth(net("10.0.0.0/30"), 4).is_none());
    }
}
