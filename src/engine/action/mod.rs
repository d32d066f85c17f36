//! Actions: what a command asks of the cluster, as an ordered list of phases (`phase/`).
//! `init` builds or converges the whole cluster; `overlay up` is `init` restricted to the
//! node-prep and overlay components; `secrets rotate-key` rotates the Secrets encryption key
//! over the control planes. Day-2 actions (upgrade, remove-node, backup) are further
//! lists over the same phases.

pub mod backup;
pub mod certs_renew;
pub mod init;
pub mod remove_node;
pub mod secrets_rotate;
pub mod upgrade;
