//! Command-line surface. Handlers live in `commands/`, one file per subcommand.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "director-boot",
    version,
    about = "From a host inventory to a Kubernetes cluster for big-data work"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where director-boot keeps its state (known_hosts, PKI, lab, logs).
    #[arg(long, global = true, env = "DIRECTOR_BOOT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where downloads, root filesystems and built artifacts are cached.
    #[arg(long, global = true, env = "DIRECTOR_BOOT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Options of every command that talks to hosts over SSH.
#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// How many hosts are worked on at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Trust and pin host keys not seen before (a changed key is still refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for a host's SSH handshake (overrides the inventory).
    #[arg(long)]
    pub connect_timeout: Option<u64>,
    /// Seconds a single remote command may run.
    #[arg(long, default_value_t = 600)]
    pub command_timeout: u64,
}

impl SshArgs {
    /// The plain options the fleet takes.
    pub fn fleet(&self) -> crate::fleet::FleetOptions {
        crate::fleet::FleetOptions {
            concurrency: self.concurrency as usize,
            accept_new_host_keys: self.accept_new_host_keys,
            connect_timeout_secs: self.connect_timeout,
            command_timeout_secs: self.command_timeout,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an inventory without touching any host.
    Validate { inventory: PathBuf },
    /// Gather OS, kernel, CPU, memory and network facts from every host.
    Facts {
        inventory: PathBuf,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Run an ad-hoc command on every host (or a subset).
    Exec {
        inventory: PathBuf,
        /// Only hosts with this role or name (comma-separated).
        #[arg(long)]
        hosts: Option<String>,
        /// Run the command through sudo.
        #[arg(long)]
        sudo: bool,
        /// Keep the SSH sessions open in a background agent for SECS idle seconds, so the next
        /// `exec` on this inventory reuses them (like OpenSSH ControlPersist).
        #[arg(long, value_name = "SECS")]
        persist: Option<u64>,
        #[command(flatten)]
        ssh: SshArgs,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Build a Kubernetes cluster from an inventory (re-run to converge; changes only what differs).
    Init {
        inventory: PathBuf,
        /// Print what each host would get; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Artifact mirror directory (manifest.json + files) or bundle file (`artifacts
        /// bundle`); default: <cache>/mirror.
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Preflight checks to downgrade to warnings (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        skip_preflight: Vec<String>,
        /// Also add the admin credentials to ~/.kube/config as a named context.
        #[arg(long)]
        merge_kubeconfig: bool,
        /// Only these hosts (comma-separated names), e.g. the ones just added to the
        /// inventory; the others only converge what lists their peers (overlay routes, API
        /// load balancer backends, the API servers' etcd list).
        #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
        limit: Vec<String>,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Rolling upgrade to another Kubernetes version from the mirror: skew policy checked, etcd
    /// backed up, control planes one at a time, then nodes in batches (cordon, drain, swap,
    /// Ready, uncordon). Stops at the first failing host; a re-run resumes.
    Upgrade {
        inventory: PathBuf,
        /// The version to go to (`v1.37.2`); the mirror must hold it.
        #[arg(long, value_name = "VERSION")]
        to: crate::engine::upgrade::Version,
        /// Worker nodes at once: a number (2) or a percentage of the workers (25%).
        #[arg(long, default_value = "1")]
        batch: crate::engine::upgrade::Batch,
        /// Seconds `kubectl drain` may take per node (PodDisruptionBudgets respected).
        #[arg(long, default_value_t = 300)]
        drain_timeout: u64,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Artifact mirror directory; default: <cache>/mirror.
        #[arg(long)]
        artifacts: Option<PathBuf>,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// The pod network on its own: lay it (`up`), inspect it (`status`), or give a host a
    /// stable address on it (`expose`).
    Overlay {
        #[command(subcommand)]
        command: OverlayCommand,
    },
    /// The cluster's certificates: list them and when they expire (warns within 30 days),
    /// or `renew` leaves from the existing CAs.
    Certs(CertsArgs),
    /// Back up the cluster into ONE file (0600): an etcd snapshot taken through a healthy
    /// member, and the cluster's state dir: the PKI with its CA keys, the Secrets encryption
    /// key ring (encryption.json / encryption-config.yaml: without it the Secrets in the
    /// snapshot cannot be read), pod subnets, admin kubeconfig. Every file is checksummed.
    /// Keep it as safe as the CA keys themselves.
    Backup {
        inventory: PathBuf,
        /// Where to write it (never overwritten); default
        /// ./<cluster>-<UTC time>.backup.tar.gz.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Say what would be done; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Restore the cluster from a `backup` file: verify every checksum, put its state dir
    /// back (PKI, Secrets encryption keys, subnets), stop the control plane and etcd on every
    /// host, rebuild each member's data from the snapshot (etcdutl, new cluster token), start
    /// etcd and the control plane, restart kubelets, wait for the nodes to be Ready.
    /// Everything written after the backup is lost.
    Restore {
        inventory: PathBuf,
        /// The backup file.
        file: PathBuf,
        /// Confirm: this replaces the cluster's whole etcd data.
        #[arg(long)]
        yes: bool,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Artifact mirror directory (etcdutl, and the etcd and control-plane binaries);
        /// default: <cache>/mirror.
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Seconds to wait for every node to be Ready at the end.
        #[arg(long, default_value_t = 300)]
        ready_timeout: u64,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Secrets encryption at rest: rotate the key.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Measure container-to-container TCP/UDP throughput across the overlay, against the
    /// host-to-host underlay, and diagnose the pairs that fail.
    Netcheck {
        inventory: PathBuf,
        /// Which ordered pairs: all, ring, or a number of pairs to sample (big clusters).
        #[arg(long, default_value = "all")]
        pairs: crate::netcheck::run::Pairs,
        /// Seconds per throughput test.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
        duration: u64,
        /// Parallel TCP streams for the multi-stream test (1 = skip that test).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        streams: u32,
        /// Seconds of the connection-rate test (a new TCP connection per request, like
        /// netperf TCP_CRR) on every path; 0 = skip it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=600))]
        crr_duration: u64,
        /// Checks to leave out, comma-separated: same-node (a second endpoint on each node),
        /// services (pod to ClusterIP and NodePort, pods mode), bidir (both directions at
        /// once), crr (connection rate).
        #[arg(long, value_enum, value_delimiter = ',')]
        skip: Vec<crate::netcheck::run::Extra>,
        /// UDP send rate in bit/s for the loss test (0 = as fast as possible, which measures
        /// the sender more than the network).
        #[arg(long, default_value_t = 1_000_000_000)]
        udp_bitrate: u64,
        /// Fail a pair whose overlay TCP (single stream) is below this fraction of the
        /// underlay's. The default flags a broken or badly misconfigured overlay; a healthy
        /// VXLAN overlay measures 0.65-0.8 single-stream on small VMs, close to 1 with jumbo
        /// frames on real NICs (tighten it there).
        #[arg(long, default_value_t = 0.5)]
        min_efficiency: f64,
        /// Fail a pair whose overlay UDP loss is above this fraction.
        #[arg(long, default_value_t = 0.05)]
        max_udp_loss: f64,
        /// Also write a self-contained HTML report with heatmaps.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Seconds after which a pair's probe is abandoned (at least the tests' own duration).
        #[arg(long, default_value_t = 60)]
        pair_timeout: u64,
        /// Where the probes run: pods (a DaemonSet), netns (namespaces on the pod bridges, no
        /// Kubernetes needed), or auto (pods once the cluster is up).
        #[arg(long, value_enum, default_value = "auto")]
        mode: crate::netcheck::run::Mode,
        /// The director-boot binary to put on the nodes as the probe (default: this one).
        #[arg(long, value_name = "FILE")]
        probe_binary: Option<PathBuf>,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Measure throughput, loss, latency and path MTU between two hosts (an iperf3 built in).
    Probe {
        #[command(subcommand)]
        command: ProbeCommand,
    },
    /// Deploy a catalog application (spark, symphony, cassandra, hadoop, ...).
    DeployApp {
        /// An app of the catalog (`catalog list`), or a directory holding one (./my-app).
        app: String,
        /// Print the Kubernetes objects it would apply (secrets masked) and exit.
        #[arg(long)]
        render: bool,
        #[command(flatten)]
        spec: AppSpecArgs,
        #[command(flatten)]
        kube: DeployKubeArgs,
    },
    /// The app catalog: list, show and check apps.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Deployed catalog apps: list, status, scale, delete.
    Apps(AppsArgs),
    /// Take one node out of the cluster: cordon, drain (PodDisruptionBudgets respected), remove
    /// its etcd member (refused when quorum would be lost), reset it if reachable, delete its
    /// Node object, and converge the remaining hosts without it. Then delete it from the
    /// inventory. Without --yes: show the plan, change nothing.
    RemoveNode {
        inventory: PathBuf,
        /// The host's name in the inventory.
        node: String,
        /// Confirm: do it.
        #[arg(long)]
        yes: bool,
        /// Seconds `kubectl drain` may take before the removal stops (nothing else changed).
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        drain_timeout: u64,
        /// Artifact mirror directory; default: <cache>/mirror.
        #[arg(long)]
        artifacts: Option<PathBuf>,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Remove everything init installed from the hosts (units, binaries, data, CNI, iptables, links).
    Reset {
        inventory: PathBuf,
        /// Confirm: this deletes cluster data.
        #[arg(long)]
        yes: bool,
        /// Also delete the cluster's local state (PKI, pod subnets, admin kubeconfig).
        #[arg(long)]
        forget: bool,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// The artifact mirror: fetch the pinned upstream binaries and images, verify, list,
    /// export in the upstream layout for a web server, or bundle as one file.
    Artifacts {
        #[command(subcommand)]
        command: crate::commands::artifacts::ArtifactsCommand,
    },
    /// Container images on the nodes (side-loading for clusters without a registry).
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// The background agent behind `exec --persist` (started by exec itself).
    #[command(hide = true)]
    MuxAgent {
        inventory: PathBuf,
        #[arg(long)]
        idle: u64,
        #[arg(long)]
        socket: PathBuf,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// A local lab of real machines (systemd-nspawn) to try director-boot on.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
}

/// `certs INVENTORY` lists; `certs renew INVENTORY ...` renews.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: Option<CertsCommand>,
    /// The inventory whose certificates are listed.
    pub inventory: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// List the certificates and when they expire (the default).
    List { inventory: PathBuf },
    /// Re-issue leaf certificates from the existing CAs (keys kept; CAs never change), stage
    /// them, and restart only the units that use a renewed one (etcd and control planes one
    /// host at a time). Without names or --all: only those expiring within 30 days.
    /// kubelet client certificates also rotate on their own (through CSRs the controller
    /// manager approves).
    Renew {
        inventory: PathBuf,
        /// Every leaf certificate.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Certificates as `certs` lists them: apiserver, etcd/server-node1, kubelet-node2, ...
        names: Vec<String>,
        /// Say what would be re-issued and restarted; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        ssh: SshArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// A new encryption key: added as a reader on every control plane, then made the writer,
    /// every Secret rewritten, the old key dropped. Resumes an interrupted rotation.
    RotateKey {
        inventory: PathBuf,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        ssh: SshArgs,
    },
}

/// How an app is sized and configured: its default cluster spec, overridden.
#[derive(Debug, Clone, Default, Args)]
pub struct AppSpecArgs {
    /// A cluster spec laid over the app's default one (members, resources, storage, secrets).
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Override one setting, e.g. worker.members=3, serviceType=ClusterIP,
    /// secrets.entitlement.file=./entitlement.dat (repeatable; later wins).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Namespace of the app's objects (default: the spec's, else `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Instance name, the prefix of every object's name (default: the app's name).
    #[arg(long)]
    pub instance: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Check apps (catalog names or directories; default: every shipped app).
    Validate {
        #[arg(value_name = "PATH|NAME")]
        apps: Vec<String>,
    },
    /// List the shipped apps.
    List,
    /// Show an app's roles, services, secrets and default cluster spec.
    Show {
        #[arg(value_name = "PATH|NAME")]
        app: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverlayCommand {
    /// Lay or converge the VXLAN overlay and the pod bridge on every host (the `overlay`
    /// phase of init, without the rest of the cluster).
    Up {
        inventory: PathBuf,
        /// Print what each host would get; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Artifact mirror directory (for the CNI plugins); default: <cache>/mirror.
        #[arg(long)]
        artifacts: Option<PathBuf>,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Compare every host's overlay (device, MTU, routes, neighbour and FDB entries per peer,
    /// pod bridge, forwarding) with what the inventory says it should be.
    Status {
        inventory: PathBuf,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// New WireGuard key pairs (`network.overlay.encrypt`), one host at a time, without
    /// dropping connections: each host makes its next key, its peers learn it, the host
    /// switches, the peers forget the old one. Private keys never leave their hosts.
    RotateKeys {
        inventory: PathBuf,
        /// Only these hosts (comma-separated names); default: every host.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Say which hosts would get new keys; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Give a host its address on the overlay (its pod bridge's), as `weave expose` does, so a
    /// service on the host is reachable from pods at that address and the host reaches pods.
    Expose {
        inventory: PathBuf,
        /// The host (a name from the inventory).
        host: String,
        #[command(flatten)]
        ssh: SshArgs,
    },
}

/// Which cluster and namespace the Kubernetes API commands talk to.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, else the admin kubeconfig `init` wrote).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Use the admin kubeconfig of this cluster (when init has built several).
    #[arg(long, global = true)]
    pub cluster_name: Option<String>,
    /// Namespace of the app instance (default: wherever it is).
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    /// Seconds to wait for members to become Ready (or gone) before giving up.
    #[arg(long, default_value_t = 600, global = true)]
    pub timeout: u64,
}

/// `deploy-app`'s cluster options (its namespace comes from the app spec's `--namespace`).
#[derive(Debug, Clone, Args)]
pub struct DeployKubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, else the admin kubeconfig `init` wrote).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Use the admin kubeconfig of this cluster (when init has built several).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Seconds to wait for members to become Ready before giving up.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

impl DeployKubeArgs {
    pub fn kube_args(&self) -> KubeArgs {
        KubeArgs {
            kubeconfig: self.kubeconfig.clone(),
            cluster_name: self.cluster_name.clone(),
            namespace: None,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(subcommand)]
    pub command: AppsCommand,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// App instances with ready/desired members per role.
    List,
    /// Every member of an instance (phase, node, restarts, problem) and its endpoints.
    Status {
        /// Instance name (the app id unless deployed under another name).
        name: String,
    },
    /// Change a role's member count (highest ordinals leave first; data kept).
    Scale {
        /// Instance name.
        name: String,
        /// The role to scale, e.g. worker.
        #[arg(long)]
        role: String,
        /// The new member count (within the role's min/max).
        #[arg(long)]
        members: u32,
        /// Also delete the volumes (PVCs) of members that leave.
        #[arg(long)]
        delete_data: bool,
    },
    /// Delete an instance (its volumes only with --delete-data).
    Delete {
        /// Instance name.
        name: String,
        /// Also delete the instance's volumes (PVCs).
        #[arg(long)]
        delete_data: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import image archives (OCI layout or `docker save` tars) into every node's containerd
    /// (namespace k8s.io). Re-running changes nothing: an archive is uploaded only when the
    /// node's staged copy differs, imported only when containerd lacks one of its images.
    Load {
        inventory: PathBuf,
        /// Image archives, e.g. ~/.cache/director-boot/app-images/spark.tar.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only hosts with this role or name (comma-separated).
        #[arg(long)]
        hosts: Option<String>,
        /// containerd's socket on the hosts.
        #[arg(long, default_value = crate::engine::images::DEFAULT_CONTAINERD_ADDRESS)]
        containerd_address: String,
        #[command(flatten)]
        ssh: SshArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build and start the lab machines (a no-op when they are already up).
    Up {
        /// How many machines.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
        nodes: u32,
        /// How many of them are control planes (`[etcd, control-plane]`, the rest workers); an
        /// odd count; more than one gets 10.213.0.10 as the control-plane endpoint (a virtual
        /// IP). Default: as the existing lab has it, else 1.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        control_planes: Option<u32>,
        /// Run firewalld on the nodes, as RHEL-family hosts do (init opens each role's ports).
        #[arg(long)]
        firewalld: bool,
        /// Make NAME the only SSH login (key, passwordless sudo) and refuse root over SSH, as
        /// RHEL cloud images and Vagrant boxes do; the lab inventory logs in as NAME.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// List the lab machines and their state.
    Status,
    /// Stop the lab and remove every trace of it from this machine.
    Down,
    /// Stop one lab machine (a clean poweroff); `lab start` or `lab up` starts it again.
    Stop {
        /// The machine, e.g. node3.
        node: String,
    },
    /// Start one stopped lab machine.
    Start {
        /// The machine, e.g. node3.
        node: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Answer probe clients (TCP and UDP on the same port), one client at a time.
    Server {
        #[arg(long, default_value = "0.0.0.0")]
        bind: IpAddr,
        #[arg(long, default_value_t = crate::probe::DEFAULT_PORT)]
        port: u16,
        /// Exit after SECS without a client (0 = never), so forgotten servers clean up.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        idle_exit: u64,
        /// Exit after the first client session.
        #[arg(long)]
        once: bool,
    },
    /// Run tests against a probe server and print what was measured.
    Client(ProbeClientArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ProbeClientArgs {
    /// Address or host name of the probe server.
    pub server: String,
    #[arg(long, default_value_t = crate::probe::DEFAULT_PORT)]
    pub port: u16,
    /// Tests to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tcp,tcp-multi,udp,rr,mtu,crr"
    )]
    pub tests: Vec<crate::probe::TestKind>,
    /// Parallel streams of the tcp-multi test.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=128))]
    pub streams: u32,
    /// Data threads per side in TCP tests: one for all streams (as iperf3 up to 3.15) or one
    /// per stream (as iperf3 3.16+). Only matters when the CPU, not the link, is the limit.
    #[arg(long, value_enum, default_value = "one")]
    pub data_threads: crate::probe::DataThreads,
    /// Seconds each TCP and UDP test sends.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub duration: f64,
    /// Seconds after the first byte left out of TCP figures (like iperf3 -O).
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_seconds)]
    pub omit: f64,
    /// UDP send rate in bits/s, with an optional K/M/G suffix; 0 = as fast as possible.
    #[arg(long, default_value = "0", value_parser = parse_bitrate)]
    pub udp_bitrate: u64,
    /// UDP payload bytes per datagram, or auto (path MTU minus IP/UDP headers).
    #[arg(long, default_value = "auto", value_parser = parse_udp_size)]
    pub udp_size: UdpSize,
    /// Request/response transactions.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rr_count: u32,
    /// Seconds the crr test opens new connections (connect/request/response/close).
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_seconds)]
    pub crr_duration: f64,
    /// Largest packet size the MTU search tries.
    #[arg(long, default_value_t = 9000, value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub max_mtu: u32,
    /// Bound on the whole run in seconds (default: enough for the selected tests).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,
}

/// `--udp-size`: a byte count or automatic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSize(pub Option<usize>);

fn parse_udp_size(s: &str) -> Result<UdpSize, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(UdpSize(None));
    }
    match s.parse::<usize>() {
        Ok(n) if (32..=65_507).contains(&n) => Ok(UdpSize(Some(n))),
        _ => Err("expected auto or a size from 32 to 65507".into()),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=86_400.0).contains(&x) => Ok(x),
        _ => Err("expected seconds, e.g. 5 or 0.5".into()),
    }
}

/// Bits per second with an optional decimal K/M/G suffix (as iperf3's -b).
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok((x * mult) as u64),
        _ => Err("expected bits/s like 0, 500M or 2.5G".into()),
    }
}

#[cfg(test)]
mod probe_arg_tests {
    use super::*;

    #[test]
    fn bitrates_and_sizes() {
        assert_eq!(parse_bitrate("0"), Ok(0));
        assert_eq!(parse_bitrate("500M"), Ok(500_000_000));
        assert_eq!(parse_bitrate("2.5g"), Ok(2_500_000_000));
        assert!(parse_bitrate("fast").is_err());
        assert_eq!(parse_udp_size("auto"), Ok(UdpSize(None)));
        assert_eq!(parse_udp_size("1400"), Ok(UdpSize(Some(1400))));
        assert!(parse_udp_size("70000").is_err());
    }

    #[test]
    fn client_defaults() {
        let cli = Cli::try_parse_from(["director-boot", "probe", "client", "10.0.0.2"]).unwrap();
        let Command::Probe {
            command: ProbeCommand::Client(a),
        } = cli.command
        else {
            panic!("not a probe client");
        };
        assert_eq!(a.tests.len(), 6);
        assert_eq!(
            (a.port, a.streams, a.rr_count, a.max_mtu),
            (5299, 4, 2000, 9000)
        );
        assert_eq!(a.udp_size, UdpSize(None));
        let cli = Cli::try_parse_from([
            "director-boot",
            "--json",
            "probe",
            "client",
            "h",
            "--tests",
            "tcp,mtu",
            "--duration",
            "0.5",
        ])
        .unwrap();
        let Command::Probe {
            command: ProbeCommand::Client(a),
        } = cli.command
        else {
            panic!("not a probe client");
        };
        assert_eq!(
            a.tests,
            vec![crate::probe::TestKind::Tcp, crate::probe::TestKind::Mtu]
        );
        assert_eq!(a.duration, 0.5);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
