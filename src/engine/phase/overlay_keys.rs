//! `overlay-keys` (before the overlay phase, with `network.overlay.encrypt`): every host's
//! WireGuard key pair. Each host generates its own private key the first time (director-wg,
//! 0600 in /etc/director-boot/wireguard, never read back), and this phase reads only the public
//! keys, so the overlay role can give every host a peer per other host. Calico and Cilium
//! publish node keys the same way (the node makes its key, the cluster learns the public half).
//! A re-run finds the keys and changes nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::context::WIREGUARD_KEY;

pub const TITLE: &str = "overlay-keys";
/// Where the artifacts phase installs director-wg.
pub const WG_TOOL: &str = "/usr/local/bin/director-wg";

pub struct OverlayKeys;

impl Phase for OverlayKeys {
    fn title(&self) -> &str {
        TITLE
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.inv.network.overlay.encrypt
            && s.opts
                .only_components
                .is_none_or(|only| only.contains(&"overlay"))
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dry_run = run.s.opts.dry_run;
            let keys: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
            // The hosts the run has a context for (a host being removed has none).
            let nodes: Vec<_> = run
                .s
                .nodes
                .iter()
                .filter(|n| run.s.node_ctx.contains_key(n.name()))
                .collect();
            let keys_ref = &keys;
            run.runner
                .phase(TITLE, nodes, |n| async move {
                    let (key, change) = read_key(n, dry_run).await?;
                    if let Some(k) = key {
                        keys_ref
                            .lock()
                            .map_err(|_| anyhow::anyhow!("key table poisoned"))?
                            .insert(n.name().to_string(), k);
                    }
                    Ok(change.into_iter().collect())
                })
                .await;
            let keys = keys
                .into_inner()
                .map_err(|_| anyhow::anyhow!("key table poisoned"))?;
            set_keys(&mut run.s, &keys);
            Ok(())
        })
    }
}

/// The host's public key, generating its key pair when it has none (a dry run only says so).
async fn read_key(
    n: &crate::node::Node,
    dry_run: bool,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let probe = n
        .session
        .sudo(&format!(
            "test -x {WG_TOOL} && test -s {WIREGUARD_KEY} && {WG_TOOL} pubkey {WIREGUARD_KEY}"
        ))
        .await?;
    if probe.success() {
        return Ok((Some(parse_key(&probe.stdout)?), None));
    }
    let change = "WireGuard key pair generated on the host (public key read)".to_string();
    if dry_run {
        return Ok((None, Some(change)));
    }
    let out = n
        .sudo_ok(&format!("{WG_TOOL} key {WIREGUARD_KEY}"))
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}; is {WG_TOOL} staged (the mirror needs wireguard-go and director-wg: scripts/build-mirror.sh)?")
        })?;
    Ok((Some(parse_key(&out.stdout)?), Some(change)))
}

/// A WireGuard public key: 32 bytes in base64 (44 characters ending in `=`).
pub fn parse_key(stdout: &str) -> anyhow::Result<String> {
    let k = stdout.trim();
    if k.len() == 44
        && k.ends_with('=')
        && k[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    {
        Ok(k.to_string())
    } else {
        anyhow::bail!("{WG_TOOL} printed no public key (got {:?})", short(k))
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Give every context the public keys: the cluster's node list and every host's peers.
pub fn set_keys(s: &mut RunState, keys: &BTreeMap<String, String>) {
    for_each_peer(s, |p| {
        p.wg_public_key = keys.get(&p.name).cloned().unwrap_or_default()
    });
}

/// Every place a host's peer entry lives: the cluster's node list and each host's peers.
pub fn for_each_peer(s: &mut RunState, mut f: impl FnMut(&mut crate::engine::context::Peer)) {
    if let Some(c) = s.cluster.as_mut() {
        c.nodes.iter_mut().for_each(&mut f);
    }
    for ctx in s.node_ctx.values_mut() {
        ctx.peers.iter_mut().for_each(&mut f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_checked() {
        let k = "0BQ11eJddsNoDsjO0faWMPhCFRnHClbWtAwj0DLgBBg=";
        assert_eq!(parse_key(&format!("{k}\n")).unwrap(), k);
        assert!(parse_key("").is_err());
        assert!(parse_key("error: no device").is_err());
        assert!(parse_key(&k.replace('=', "A")).is_err());
    }
}
