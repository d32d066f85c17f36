//! The inventory's hosts as a fleet: SSH settings from plain options (commands turn their
//! flags into `FleetOptions`; nothing here knows the command line), host selection by name or
//! inventory role, and the `connect` phase that opens every chosen host in parallel.

use std::time::Duration;

use anyhow::Context;

use crate::inventory::{Host, HostRole, Inventory};
use crate::paths::{Paths, ensure_private_dir};
use crate::ssh::{Session, SshConfig};

/// How to reach the hosts, besides what the inventory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOptions {
    /// How many hosts are worked on at once.
    pub concurrency: usize,
    /// Trust and pin host keys not seen before (a changed key is still refused).
    pub accept_new_host_keys: bool,
    /// Overrides the inventory's SSH handshake timeout.
    pub connect_timeout_secs: Option<u64>,
    /// How long a single remote command may run.
    pub command_timeout_secs: u64,
}

/// The SSH settings for an inventory's hosts: the inventory's, overridden by the options.
pub fn ssh_config(
    paths: &Paths,
    inv: &Inventory,
    opts: &FleetOptions,
) -> anyhow::Result<SshConfig> {
    ensure_private_dir(&paths.state)
        .with_context(|| format!("cannot create state dir {}", paths.state.display()))?;
    // Compressed copies of uploaded files live beside the mirror, made once per file.
    crate::ssh::set_wire_cache_dir(paths.cache.clone());
    Ok(SshConfig {
        known_hosts: inv
            .ssh
            .known_hosts
            .clone()
            .unwrap_or_else(|| paths.known_hosts()),
        accept_new_host_keys: opts.accept_new_host_keys,
        connect_timeout: Duration::from_secs(
            opts.connect_timeout_secs
                .unwrap_or(inv.ssh.connect_timeout_secs),
        ),
        command_timeout: Duration::from_secs(opts.command_timeout_secs),
        bastion: inv.ssh.bastion.clone(),
    })
}

/// Hosts matching a comma-separated list of role or host names; all hosts for `None`.
pub fn select_hosts(inv: &Inventory, filter: Option<&str>) -> anyhow::Result<Vec<Host>> {
    let Some(filter) = filter else {
        return Ok(inv.hosts.clone());
    };
    let mut chosen = Vec::new();
    for word in filter.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let role = HostRole::ALL.into_iter().find(|r| r.as_str() == word);
        let matched: Vec<&Host> = inv
            .hosts
            .iter()
            .filter(|h| h.name == word || role.is_some_and(|r| h.has_role(r)))
            .collect();
        if matched.is_empty() {
            anyhow::bail!(
                "--hosts {word}: no host or role of that name in {} (roles: etcd, control-plane, worker)",
                inv.path.display()
            );
        }
        for h in matched {
            if !chosen.iter().any(|c: &Host| c.name == h.name) {
                chosen.push(h.clone());
            }
        }
    }
    Ok(chosen)
}

/// Open a session to one host.
pub async fn connect(host: &Host, cfg: &SshConfig) -> anyhow::Result<Session> {
    Ok(Session::connect(&host.name, &host.ssh, host.sudo, cfg).await?)
}

/// An address of another host (for the route a host uses inside the cluster); a single-host
/// cluster asks for its own address.
pub fn peer_of(inv: &Inventory, host: &Host) -> String {
    inv.hosts
        .iter()
        .find(|h| h.name != host.name)
        .unwrap_or(host)
        .ssh
        .address
        .to_string()
}

/// The `connect` phase: open every host (session + facts) in parallel; a host that cannot be
/// reached is marked failed in the runner and left out of everything after.
pub async fn open_nodes(
    runner: &mut crate::engine::runner::Runner,
    inv: &Inventory,
    cfg: &SshConfig,
    dry_run: bool,
) -> Vec<crate::node::Node> {
    runner.say(&format!("[connect] {} hosts", inv.hosts.len()));
    let items: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| (h.clone(), peer_of(inv, h)))
        .collect();
    let opened = crate::fanout::for_each(
        items,
        runner.limit,
        |(h, _)| h.name.clone(),
        |(h, peer)| {
            let cfg = cfg.clone();
            async move { Ok(crate::node::Node::open(&h, &peer, &cfg, dry_run).await?) }
        },
    )
    .await;
    let mut nodes = Vec::new();
    for r in opened {
        let secs = r.elapsed.as_secs_f64();
        match r.result {
            Ok(n) => {
                runner.say(&format!(
                    "  {:<14} {} ({secs:.1} s)",
                    r.host, n.facts.os.pretty_name
                ));
                nodes.push(n);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                runner.say(&format!(
                    "  {:<14} FAILED in connect: {msg} ({secs:.1} s)",
                    r.host
                ));
                runner.fail(&r.host, "connect", msg);
            }
        }
    }
    nodes
}
