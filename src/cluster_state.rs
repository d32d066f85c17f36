//! What director-boot keeps about one cluster on the control machine, in
//! `<state dir>/clusters/<name>/`: the pod subnets per node (`subnets.json`, so a subnet never
//! moves under a running node), the PKI (`pki/`), the admin kubeconfig (`admin.conf`) and the
//! run logs (`logs/`). Every reader and writer of that directory goes through here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::paths::{Paths, ensure_private_dir};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is corrupt", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where `restore` records the etcd cluster token (see `ClusterState::etcd_token`).
pub const ETCD_TOKEN_FILE: &str = "etcd-token";

/// One cluster's state directory.
#[derive(Debug, Clone)]
pub struct ClusterState {
    dir: PathBuf,
}

/// The PKI a run works on: the real directory, or for a dry run a throw-away copy of it (so a
/// dry run shows what it would create without creating it). The copy goes with this value.
#[derive(Debug)]
pub struct PkiWorkDir {
    pub path: PathBuf,
    _copy: Option<tempfile::TempDir>,
}

impl ClusterState {
    pub fn new(paths: &Paths, cluster: &str) -> Self {
        ClusterState {
            dir: paths.cluster_dir(cluster),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// Create the directory, readable only by its owner (it holds keys).
    pub fn create(&self) -> Result<(), StateError> {
        ensure_private_dir(&self.dir).map_err(io(&self.dir))
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.conf")
    }

    pub fn subnets_file(&self) -> PathBuf {
        self.dir.join("subnets.json")
    }

    /// The recorded pod subnets; `None` when none were recorded yet.
    pub fn subnets(&self) -> Result<Option<BTreeMap<String, IpNet>>, StateError> {
        let file = self.subnets_file();
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path: file, source })
    }

    pub fn save_subnets(&self, subnets: &BTreeMap<String, IpNet>) -> Result<(), StateError> {
        let file = self.subnets_file();
        let text = serde_json::to_string_pretty(subnets).map_err(|source| StateError::Corrupt {
            path: file.clone(),
            source,
        })?;
        write_private(&file, text.as_bytes())
    }

    pub fn save_admin_kubeconfig(&self, yaml: &str) -> Result<PathBuf, StateError> {
        let path = self.admin_kubeconfig();
        write_private(&path, yaml.as_bytes())?;
        Ok(path)
    }

    /// The etcd cluster token of the data the members run: recorded by `restore` (which
    /// starts etcd from a snapshot under a new token); `None` means the token `init` gives
    /// (`<cluster>-etcd`).
    pub fn etcd_token(&self) -> Result<Option<String>, StateError> {
        let file = self.dir.join(ETCD_TOKEN_FILE);
        match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&file)(e)),
        }
    }

    pub fn save_etcd_token(&self, token: &str) -> Result<(), StateError> {
        write_private(
            &self.dir.join(ETCD_TOKEN_FILE),
            format!("{token}\n").as_bytes(),
        )
    }

    /// The PKI directory to work on: the real one, or for a dry run a copy of it.
    pub fn pki_work_dir(&self, dry_run: bool) -> Result<PkiWorkDir, StateError> {
        let real = self.pki_dir();
        if !dry_run {
            return Ok(PkiWorkDir {
                path: real,
                _copy: None,
            });
        }
        let tmp = tempfile::tempdir().map_err(io(&real))?;
        let copy = tmp.path().join("pki");
        if real.exists() {
            copy_dir(&real, &copy).map_err(io(&real))?;
        }
        Ok(PkiWorkDir {
            path: copy,
            _copy: Some(tmp),
        })
    }

    /// Remove the whole directory (`reset --forget`).
    pub fn forget(&self) -> Result<(), StateError> {
        std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// Write a file readable only by its owner, atomically (a temporary file renamed over it).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), StateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file")
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &Path) -> ClusterState {
        let paths = Paths {
            state: dir.to_path_buf(),
            cache: dir.join("cache"),
        };
        ClusterState::new(&paths, "lab")
    }

    #[test]
    fn subnets_round_trip_and_corruption_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let st = state(tmp.path());
        st.create().unwrap();
        assert!(st.subnets().unwrap().is_none());
        let s: BTreeMap<String, IpNet> = [("n1".to_string(), "10.244.0.0/24".parse().unwrap())]
            .into_iter()
            .collect();
        st.save_subnets(&s).unwrap();
        assert_eq!(st.subnets().unwrap(), Some(s));
        std::fs::write(st.subnets_file(), "{").unwrap();
        assert!(matches!(st.subnets(), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn a_dry_run_works_on_a_copy_of_the_pki() {
        let tmp = tempfile::tempdir().unwrap();
        let st = state(tmp.path());
        std::fs::create_dir_all(st.pki_dir().join("etcd")).unwrap();
        std::fs::write(st.pki_dir().join("etcd/ca.crt"), "x").unwrap();
        let work = st.pki_work_dir(true).unwrap();
        assert_ne!(work.path, st.pki_dir());
        assert_eq!(std::fs::read(work.path.join("etcd/ca.crt")).unwrap(), b"x");
        assert_eq!(st.pki_work_dir(false).unwrap().path, st.pki_dir());
    }
}
