//! The lab network: bridge `dblabN` (10.213.N.1/24, N the lab slot) on the host, one network namespace per
//! node joined to it by a veth pair. Host ip_forward stays 0 and the nodes' default route
//! points at an address nobody owns, so no lab traffic leaves this machine.

use std::path::{Path, PathBuf};

use super::error::LabError;
use super::names;
use super::sys::run;

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_path(index: u32) -> PathBuf {
    Path::new("/run/netns").join(names::netns(index))
}

pub fn netns_exists(index: u32) -> bool {
    netns_path(index).exists()
}

/// The owner tag stored as the bridge's alias: the lab dir, or its hash when too long for
/// an interface alias.
pub fn owner_tag(lab_dir: &Path) -> String {
    let s = lab_dir.display().to_string();
    if s.len() <= 120 {
        s
    } else {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(s.as_bytes())))
    }
}

/// The owner tag of an existing bridge (`Some("")` when it has none), `None` when absent.
pub fn bridge_owner() -> Option<String> {
    if !link_exists(&names::bridge()) {
        return None;
    }
    let alias = std::fs::read_to_string(
        Path::new("/sys/class/net")
            .join(names::bridge())
            .join("ifalias"),
    )
    .unwrap_or_default();
    Some(alias.trim().to_string())
}

pub async fn create_bridge(owner: &str) -> Result<(), LabError> {
    let b = &names::bridge();
    let mtu = names::MTU.to_string();
    let addr = format!("{}/{}", names::host_address(), names::PREFIX_LEN);
    if !link_exists(b) {
        run("ip", &["link", "add", b, "type", "bridge"]).await?;
    }
    run("ip", &["link", "set", b, "alias", owner]).await?;
    run("ip", &["link", "set", b, "mtu", &mtu]).await?;
    let shown = run("ip", &["-4", "-o", "addr", "show", "dev", b]).await?;
    if !shown.contains(&format!(" {addr} ")) {
        run("ip", &["addr", "add", &addr, "dev", b]).await?;
    }
    run("ip", &["link", "set", b, "up"]).await?;
    Ok(())
}

pub async fn delete_bridge() -> Result<(), LabError> {
    if link_exists(&names::bridge()) {
        run("ip", &["link", "del", &names::bridge()]).await?;
    }
    Ok(())
}

pub async fn create_netns(index: u32) -> Result<(), LabError> {
    let ns = names::netns(index);
    if !netns_exists(index) {
        run("ip", &["netns", "add", &ns]).await?;
    }
    run("ip", &["-n", &ns, "link", "set", "lo", "up"]).await?;
    Ok(())
}

/// The veth pair (host side on the bridge, node side `eth0`), address and default route.
pub async fn create_veth(index: u32) -> Result<(), LabError> {
    let ns = names::netns(index);
    let host = names::host_veth(index);
    let mtu = names::MTU.to_string();
    let node_eth_exists = run("ip", &["-n", &ns, "link", "show", "eth0"])
        .await
        .is_ok();
    if !link_exists(&host) || !node_eth_exists {
        if link_exists(&host) {
            run("ip", &["link", "del", &host]).await?;
        }
        run(
            "ip",
            &[
                "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu",
                &mtu, "netns", &ns,
            ],
        )
        .await?;
    }
    run(
        "ip",
        &["link", "set", &host, "master", &names::bridge(), "up"],
    )
    .await?;
    let addr = format!("{}/{}", names::node_address(index), names::PREFIX_LEN);
    let shown = run(
        "ip",
        &["-n", &ns, "-4", "-o", "addr", "show", "dev", "eth0"],
    )
    .await?;
    if !shown.contains(&format!(" {addr} ")) {
        run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"]).await?;
    }
    run("ip", &["-n", &ns, "link", "set", "eth0", "up"]).await?;
    let gw = names::blackhole_gateway().to_string();
    // `replace` keeps this idempotent.
    run(
        "ip",
        &[
            "-n", &ns, "route", "replace", "default", "via", &gw, "dev", "eth0",
        ],
    )
    .await?;
    Ok(())
}

pub async fn delete_node(index: u32) -> Result<(), LabError> {
    let host = names::host_veth(index);
    if link_exists(&host) {
        run("ip", &["link", "del", &host]).await?;
    }
    if netns_exists(index) {
        run("ip", &["netns", "del", &names::netns(index)]).await?;
    }
    Ok(())
}
