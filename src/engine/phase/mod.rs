//! Phases: the steps an action runs in order (k0sctl's model). A phase has a title, the hosts
//! it concerns, a run, a dry run (say what it would change), and an optional clean-up for when
//! a later phase aborts the action. Phases share one `Run`: what earlier phases found (the
//! connected nodes, subnets, PKI, contexts, roles per host) is there for the later ones, so an
//! action such as `upgrade` or `remove-node` reuses them in another order or subset.

pub mod addons;
pub mod admin_kubeconfig;
pub mod artifacts;
pub mod backup;
pub mod certs;
pub mod component;
pub mod connect;
pub mod encryption;
pub mod etcd_members;
pub mod host_plan;
pub mod overlay_keys;
pub mod overlay_rotate;
pub mod pki;
pub mod preflight;
pub mod restore;
pub mod subnets;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};

use futures::future::LocalBoxFuture;
use ipnet::IpNet;

use super::apply::Env;
use super::artifacts::Artifacts;
use super::context::{ClusterContext, NodeContext};
use super::render::Renderer;
use super::role::ComponentRole;
use super::runner::Runner;
use crate::cluster_state::{ClusterState, PkiWorkDir};
use crate::inventory::Inventory;
use crate::node::Node;
use crate::pki::encryption::KeyRing;
use crate::ssh::SshConfig;

/// What the caller asked of this run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub skip_preflight: Vec<String>,
    pub merge_kubeconfig: bool,
    /// Only the roles of these component phases (`overlay up`); `None` = every role.
    pub only_components: Option<&'static [&'static str]>,
    /// Only these hosts (the others are still connected: their facts feed the peers' routes).
    pub only_hosts: Option<Vec<String>>,
    /// With `only_hosts` (`init --limit`): the other hosts still get the roles that list their
    /// peers (`PEER_ROLES`), so they learn a new host.
    pub limit_peers: bool,
    /// `overlay rotate-keys`: give these hosts (empty: every host) new WireGuard keys.
    pub rotate_wireguard: Option<Vec<String>>,
}

/// The roles whose files list other hosts: what a host outside `init --limit` still converges
/// (overlay routes, API load balancer backends, keepalived peers, the API servers' etcd list).
pub const PEER_ROLES: &[&str] = &[
    "overlay",
    "overlay-wireguard",
    "apiserver-lb",
    "apiserver-vip",
    "kube-apiserver",
];

/// Everything a run's phases read, and what they found so far.
pub struct RunState {
    pub opts: Options,
    pub inv: Inventory,
    pub state: ClusterState,
    pub ssh: SshConfig,
    pub artifacts: Artifacts,
    pub renderer: Renderer,
    pub roles: Vec<ComponentRole>,
    /// Connected hosts with their facts (connect).
    pub nodes: Vec<Node>,
    /// Pod subnet per host (subnets).
    pub subnets: BTreeMap<String, IpNet>,
    /// The PKI this run works on (pki).
    pub pki: Option<PkiWorkDir>,
    /// The Secrets encryption keys, kept in that PKI dir (pki, or the rotation's first phase).
    pub encryption: Option<KeyRing>,
    /// What templates see (host plan).
    pub cluster: Option<ClusterContext>,
    pub node_ctx: BTreeMap<String, NodeContext>,
    /// The component roles each host gets (host plan); hosts left out are not worked on.
    pub host_roles: BTreeMap<String, Vec<ComponentRole>>,
    /// Per host, the binaries the artifacts phase wrote: their roles count as changed.
    pub staged: BTreeMap<String, BTreeSet<String>>,
}

impl RunState {
    /// A run that has found nothing yet: the day-2 actions start here; `init` fills in the
    /// renderer and roles it already loaded to check them.
    pub fn new(
        opts: Options,
        inv: Inventory,
        state: ClusterState,
        ssh: SshConfig,
        artifacts: Artifacts,
    ) -> anyhow::Result<RunState> {
        Ok(RunState {
            opts,
            inv,
            state,
            ssh,
            artifacts,
            renderer: Renderer::new()?,
            roles: super::render::roles()?,
            nodes: Vec::new(),
            subnets: Default::default(),
            pki: None,
            encryption: None,
            cluster: None,
            node_ctx: Default::default(),
            host_roles: Default::default(),
            staged: Default::default(),
        })
    }

    /// What applying a role reads, once the host plan is made.
    pub fn env(&self) -> anyhow::Result<Env<'_>> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no cluster context: the host plan did not run"))?;
        let pki = self
            .pki
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no PKI: the pki phase did not run"))?;
        Ok(Env {
            renderer: &self.renderer,
            cluster,
            artifacts: &self.artifacts,
            pki_dir: &pki.path,
            staged: &self.staged,
        })
    }

    /// Connected hosts that have a plan in this run.
    pub fn planned(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(|n| self.host_roles.contains_key(n.name()))
    }

    /// A host outside `only_hosts` (it gets at most the peer roles).
    pub fn limited_out(&self, host: &str) -> bool {
        self.opts
            .only_hosts
            .as_ref()
            .is_some_and(|only| !only.iter().any(|h| h == host))
    }

    /// The roles one host gets in one component phase.
    pub fn roles_in(&self, host: &str, phase: &str) -> Vec<&ComponentRole> {
        self.host_roles
            .get(host)
            .map(|all| all.iter().filter(|r| r.phase == phase).collect())
            .unwrap_or_default()
    }
}

/// A run: the runner (output, host states, summary) and the state the phases share. Kept
/// apart so a phase can hand the runner its hosts while its jobs read the state.
pub struct Run {
    pub runner: Runner,
    pub s: RunState,
}

pub type PhaseFuture<'a, T> = LocalBoxFuture<'a, T>;

pub trait Phase {
    /// The name in the output (`[etcd] 1 host`) and in a failed host's state.
    fn title(&self) -> &str;

    /// Whether the phase has anything to do in this run (k0sctl's ShouldRun).
    fn should_run(&self, _s: &RunState) -> bool {
        true
    }

    /// The hosts this phase works on (none for a local phase).
    fn hosts<'s>(&self, _s: &'s RunState) -> Vec<&'s Node> {
        Vec::new()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>>;

    /// Say what the phase would change, changing nothing. Every step of this engine reports
    /// instead of acting when the run is a dry run (nodes carry the flag), so unless a phase
    /// says otherwise its dry run is its run.
    fn dry_run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        self.run(run)
    }

    /// Undo what this phase left half-done when a later phase aborted the action.
    fn clean_up<'a>(&'a self, _run: &'a mut Run) -> PhaseFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Run the phases in order (k0sctl's phase manager). A host that fails a phase is left out of
/// the later ones by the runner; a phase that fails as a whole aborts the action, and the
/// phases that ran before it clean up, last first.
pub async fn run_all(phases: &[Box<dyn Phase + '_>], run: &mut Run) -> anyhow::Result<()> {
    let mut ran: Vec<&dyn Phase> = Vec::new();
    for p in phases {
        if !p.should_run(&run.s) {
            continue;
        }
        let result = if run.s.opts.dry_run {
            p.dry_run(run).await
        } else {
            p.run(run).await
        };
        if let Err(e) = result {
            for done in ran.iter().rev() {
                done.clean_up(run).await;
            }
            return Err(e);
        }
        ran.push(p.as_ref());
    }
    Ok(())
}
