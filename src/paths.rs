//! Where director-boot keeps state and caches on the control machine.

use std::path::{Path, PathBuf};

use crate::cli::GlobalArgs;

/// Resolved directories for one run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// known_hosts, PKI, lab state, logs. Holds secrets: created 0700.
    pub state: PathBuf,
    /// Root filesystems, downloads, built binaries. Large, reproducible.
    pub cache: PathBuf,
}

impl Paths {
    pub fn from_args(args: &GlobalArgs) -> Self {
        let home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("/root"));
        let state = args.state_dir.clone().unwrap_or_else(|| {
            dirs::state_dir()
                .unwrap_or_else(|| home.join(".local/state"))
                .join("director-boot")
        });
        let cache = args.cache_dir.clone().unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(|| home.join(".cache"))
                .join("director-boot")
        });
        Paths { state, cache }
    }

    /// The default known_hosts file when the inventory names none.
    pub fn known_hosts(&self) -> PathBuf {
        self.state.join("known_hosts")
    }

    /// The lab's dir: `lab`, or `labN` for lab slot N (see `lab::names`).
    pub fn lab_dir(&self) -> PathBuf {
        match crate::lab::names::slot() {
            0 => self.state.join("lab"),
            n => self.state.join(format!("lab{n}")),
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.state.join("logs")
    }

    /// PKI, pod subnets, admin kubeconfig and logs of one cluster.
    pub fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.state.join("clusters").join(cluster)
    }
}

/// Create a directory (and parents) readable only by its owner.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
