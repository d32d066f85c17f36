//! Command-line surface. Handlers live in `commands/`, one file per subcommand.

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
        /// Artifact mirror directory (manifest.json + files); default: <cache>/mirror.
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Preflight checks to downgrade to warnings (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        skip_preflight: Vec<String>,
        /// Also add the admin credentials to ~/.kube/config as a named context.
        #[arg(long)]
        merge_kubeconfig: bool,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// List the cluster's certificates and when they expire.
    Certs { inventory: PathBuf },
    /// Measure container-to-container TCP/UDP throughput across the overlay.
    Netcheck {
        inventory: PathBuf,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Deploy a catalog application (spark, symphony, cassandra, hadoop, ...).
    DeployApp { app: String },
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
