//! director-boot: from a host inventory to a Kubernetes cluster for big-data work.

pub mod apps;
pub mod artifacts;
pub mod catalog;
pub mod cli;
pub mod cluster_state;
pub mod commands;
pub mod engine;
pub mod facts;
pub mod fanout;
pub mod fleet;
pub mod hash;
pub mod inventory;
pub mod lab;
pub mod membership;
pub mod mux;
pub mod netcheck;
pub mod node;
pub mod osfamily;
pub mod output;
pub mod paths;
pub mod pki;
pub mod probe;
pub mod progress;
pub mod ssh;
