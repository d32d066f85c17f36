//! The cluster engine: an ordered list of small named phases, each run over the hosts it
//! concerns with bounded parallelism, each able to report what it would change (dry-run) and to
//! skip what is already right. Component phases are driven by role files (data); see `role.rs`.

pub mod action;
pub mod addons;
pub mod apply;
pub mod artifacts;
pub mod backup_archive;
pub mod context;
pub mod endpoint;
pub mod etcd_cluster;
#[cfg(test)]
mod golden_tests;
pub mod image_archive;
pub mod images;
pub mod kubectl;
pub mod packages;
pub mod phase;
pub mod plan;
pub mod preflight;
pub mod render;
pub mod reset;
pub mod role;
pub mod runner;
pub mod subnets;
pub mod upgrade;
