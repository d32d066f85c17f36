//! `director-boot netcheck INVENTORY`: see src/netcheck.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::connect::load_inventory;
use crate::cli::SshArgs;
use crate::cluster_state::ClusterState;
use crate::engine::render::Renderer;
use crate::engine::runner::Runner;
use crate::fleet::ssh_config;
use crate::netcheck::model::Thresholds;
use crate::netcheck::run::{Options, Pairs};
use crate::netcheck::{html, report, run};
use crate::paths::Paths;

pub struct NetcheckArgs<'a> {
    pub inventory: &'a Path,
    pub pairs: Pairs,
    pub duration: u64,
    pub streams: u32,
    pub crr_duration: u64,
    pub skip: Vec<crate::netcheck::run::Extra>,
    pub udp_bitrate: u64,
    pub min_efficiency: f64,
    pub max_udp_loss: f64,
    pub html: Option<PathBuf>,
    pub pair_timeout: u64,
    pub probe_binary: Option<PathBuf>,
    pub mode: crate::netcheck::run::Mode,
    pub ssh: &'a SshArgs,
    pub json: bool,
    pub verbose: bool,
}

pub async fn run(paths: &Paths, a: NetcheckArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    if !(0.0..=10.0).contains(&a.min_efficiency) || !(0.0..=1.0).contains(&a.max_udp_loss) {
        anyhow::bail!(
            "--min-efficiency is a fraction of the underlay (e.g. 0.8) and --max-udp-loss a fraction of the datagrams (e.g. 0.01)"
        );
    }
    let cfg = ssh_config(paths, &inv, &a.ssh.fleet())?;
    let state = ClusterState::new(paths, &inv.cluster_name);
    let subnets = super::overlay::recorded_subnets(paths, &inv, a.inventory)?;
    let mut runner = Runner::new(
        false,
        a.ssh.concurrency as usize,
        a.verbose,
        a.json,
        Some(&state.logs_dir()),
    );
    let opts = Options {
        pairs: a.pairs,
        duration: a.duration,
        crr_duration: a.crr_duration,
        skip: a.skip,
        streams: a.streams,
        udp_bitrate: a.udp_bitrate,
        thresholds: Thresholds {
            min_efficiency: a.min_efficiency,
            max_udp_loss: a.max_udp_loss,
        },
        probe_binary: a.probe_binary,
        pair_timeout: Duration::from_secs(a.pair_timeout),
        mode: a.mode,
        cluster_up: state.admin_kubeconfig().exists(),
        cache_dir: paths.cache.clone(),
    };
    let rep = run::run(&mut runner, &inv, &cfg, &subnets, &opts).await?;
    if let Some(path) = &a.html {
        let page = html::render(&Renderer::new()?, &rep)?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
        runner.say(&format!("HTML report: {}", path.display()));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!();
        print!("{}", report::render(&rep));
    }
    Ok(if rep.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
