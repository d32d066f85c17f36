//! `overlay-rotate` (`overlay rotate-keys`, after overlay-keys): new WireGuard key pairs, one
//! host at a time, without dropping the connections that cross the overlay. WireGuard has one
//! key per device, and a peer is known by its public key, so for each host:
//! 1. the host generates its next private key beside the current one (`private.key.next`);
//! 2. every other host learns the next public key as an extra peer with no allowed IPs
//!    (it answers handshakes from it, routes nothing to it);
//! 3. the host switches to the next key: its sessions are re-established with the new key
//!    against peers that already know it;
//! 4. every other host moves the host's pod subnet to the new key and forgets the old one.
//!
//! Between 3 and 4 a packet from the host may be dropped for lack of allowed IPs (about the
//! time of one role apply): TCP retransmits it, no connection is lost. A rotation interrupted
//! after 1 resumes with the same next key (director-wg keeps an existing key file).

use super::overlay_keys::{WG_TOOL, for_each_peer, parse_key};
use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::apply::apply_role;
use crate::engine::context::WIREGUARD_KEY;

pub const TITLE: &str = "overlay-rotate";
const ROLE: &str = "overlay-wireguard";

pub struct RotateKeys;

impl Phase for RotateKeys {
    fn title(&self) -> &str {
        TITLE
    }

    fn should_run(&self, s: &RunState) -> bool {
        s.opts.rotate_wireguard.is_some() && s.inv.network.overlay.encrypt
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let wanted = run.s.opts.rotate_wireguard.clone().unwrap_or_default();
            let targets: Vec<String> = run
                .s
                .nodes
                .iter()
                .map(|n| n.name().to_string())
                .filter(|n| run.s.node_ctx.contains_key(n))
                .filter(|n| wanted.is_empty() || wanted.contains(n))
                .filter(|n| !run.runner.failed(n))
                .collect();
            if run.s.opts.dry_run {
                for t in &targets {
                    run.runner.say(&format!(
                        "[{TITLE}] {t}: would get a new WireGuard key pair"
                    ));
                }
                return Ok(());
            }
            for t in targets {
                if let Err(e) = rotate_one(run, &t).await {
                    run.runner.fail(&t, TITLE, format!("{e:#}"));
                    anyhow::bail!(
                        "{t}: key rotation stopped: {e:#}; re-run `director-boot overlay rotate-keys` (it resumes with the key {t} already generated)"
                    );
                }
            }
            Ok(())
        })
    }
}

async fn rotate_one(run: &mut Run, target: &str) -> anyhow::Result<()> {
    let next_path = format!("{WIREGUARD_KEY}.next");
    let out = connected(&run.s, target)?
        .sudo_ok(&format!("{WG_TOOL} key {next_path}"))
        .await?;
    let next = parse_key(&out.stdout)?;
    set_peer_keys(&mut run.s, target, None, Some(&next));
    apply_to_peers(run, target, "rotate-announce").await?;
    connected(&run.s, target)?
        .sudo_ok(&format!(
            "mv -f {next_path} {WIREGUARD_KEY} && sh /usr/local/lib/director-boot/overlay-up.sh up"
        ))
        .await?;
    set_peer_keys(&mut run.s, target, Some(&next), Some(""));
    apply_to_peers(run, target, "rotate-commit").await?;
    run.runner.say(&format!(
        "[{TITLE}] {target}: new key pair in use (public key {}…)",
        &next[..8]
    ));
    Ok(())
}

/// Set `target`'s key and/or announced key wherever the contexts name it.
fn set_peer_keys(s: &mut RunState, target: &str, key: Option<&str>, announced: Option<&str>) {
    for_each_peer(s, |p| {
        if p.name == target {
            if let Some(k) = key {
                p.wg_public_key = k.to_string();
            }
            if let Some(a) = announced {
                p.wg_announced_key = a.to_string();
            }
        }
    });
}

fn connected<'a>(s: &'a RunState, name: &str) -> anyhow::Result<&'a crate::node::Node> {
    s.nodes
        .iter()
        .find(|n| n.name() == name)
        .ok_or_else(|| anyhow::anyhow!("{name} is not connected"))
}

/// Apply the WireGuard role on every host but `target` (its peer list changes).
async fn apply_to_peers(run: &mut Run, target: &str, title: &str) -> anyhow::Result<()> {
    let Run { runner, s } = run;
    let st = &*s;
    let env = st.env()?;
    let env = &env;
    let role = st
        .roles
        .iter()
        .find(|r| r.name == ROLE)
        .ok_or_else(|| anyhow::anyhow!("no role {ROLE}"))?;
    let peers: Vec<_> = st
        .nodes
        .iter()
        .filter(|n| n.name() != target && st.node_ctx.contains_key(n.name()))
        .collect();
    let names: Vec<String> = peers.iter().map(|n| n.name().to_string()).collect();
    runner
        .phase(title, peers, |n| async move {
            let nc = st
                .node_ctx
                .get(n.name())
                .ok_or_else(|| anyhow::anyhow!("no node context"))?;
            Ok(apply_role(env, n, nc, role).await?.changes)
        })
        .await;
    if let Some(bad) = names.iter().find(|n| runner.failed(n)) {
        anyhow::bail!("{bad} did not take the new peer list");
    }
    Ok(())
}
