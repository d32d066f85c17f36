//! Secrets encrypted at rest: the API server's encryption keys, kept beside the PKI
//! (`<pki>/encryption.json`, 0600) with the EncryptionConfiguration rendered from them
//! (`<pki>/encryption-config.yaml`, 0600), which the kube-apiserver role stages on control
//! planes only.
//!
//! The provider is `secretbox` (XSalsa20-Poly1305, 32-byte keys): of the providers upstream
//! offers for keys held on the host, it is the authenticated one it rates strong; `aescbc` is
//! "not recommended due to CBC's vulnerability to padding oracle attacks" and `aesgcm` needs a
//! new key every 200k writes. `identity` stays last as a reader only, so Secrets written before
//! encryption was turned on stay readable until they are rewritten (and an old etcd backup can
//! still be restored); nothing is ever written through it.
//!
//! Rotation (`secrets rotate-key`) is a small state machine recorded in the same file, so an
//! interrupted run resumes where it stopped: the new key is added as a reader on every control
//! plane, then made the writer everywhere, every Secret is rewritten, then the old key dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "encryption.json";
pub const CONFIG_FILE: &str = "encryption-config.yaml";
/// Where control planes hold the configuration (`--encryption-provider-config`).
pub const NODE_PATH: &str = "/etc/kubernetes/encryption-config.yaml";
pub const PROVIDER: &str = "secretbox";

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
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
    #[error("cannot generate an encryption key: {0}")]
    Random(String),
}

/// One key. Its secret never appears in Debug output or logs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Key {
    /// `keyN`: part of every stored value's prefix (`k8s:enc:secretbox:v1:keyN:`), never reused.
    pub name: String,
    /// 32 random bytes, base64.
    pub secret: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The next thing a pending rotation does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Stage `keys` (old writer first, the new key as a reader) on every control plane.
    StageReader,
    /// Stage `keys` (the new key first: the writer) on every control plane.
    StageWriter,
    /// Rewrite every Secret, so each is stored under the new key.
    Rewrite,
    /// Stage `keys` without the old key on every control plane.
    StagePrune,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rotation {
    /// The key being introduced.
    pub key: String,
    pub step: Step,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRing {
    /// What control planes must hold, in the order the API server tries them; the first one
    /// encrypts every write.
    pub keys: Vec<Key>,
    /// Every Secret has been rewritten since encryption (or the current writer) came in.
    pub rewritten: bool,
    /// Serial of the last key generated (`key<serial>`).
    pub serial: u32,
    pub rotation: Option<Rotation>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EncryptionError + '_ {
    move |source| EncryptionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn new_key(serial: u32) -> Result<Key, EncryptionError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| EncryptionError::Random(e.to_string()))?;
    Ok(Key {
        name: format!("key{serial}"),
        secret: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

impl KeyRing {
    pub fn generate() -> Result<KeyRing, EncryptionError> {
        Ok(KeyRing {
            keys: vec![new_key(1)?],
            rewritten: false,
            serial: 1,
            rotation: None,
        })
    }

    /// The recorded key ring of a PKI dir, `None` when there is none yet.
    pub fn load(pki_dir: &Path) -> Result<Option<KeyRing>, EncryptionError> {
        let path = pki_dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| EncryptionError::Corrupt { path, source })
    }

    /// The key ring of a PKI dir, created (one key) when there is none; the rendered
    /// configuration is (re)written beside it. True when the ring was created.
    pub fn ensure(pki_dir: &Path) -> Result<(KeyRing, bool), EncryptionError> {
        let (ring, created) = match KeyRing::load(pki_dir)? {
            Some(r) => (r, false),
            None => (KeyRing::generate()?, true),
        };
        ring.save(pki_dir)?;
        Ok((ring, created))
    }

    /// Record the ring and its configuration, both 0600, each atomically.
    pub fn save(&self, pki_dir: &Path) -> Result<(), EncryptionError> {
        std::fs::create_dir_all(pki_dir).map_err(io(pki_dir))?;
        let state = pki_dir.join(STATE_FILE);
        let text =
            serde_json::to_string_pretty(self).map_err(|source| EncryptionError::Corrupt {
                path: state.clone(),
                source,
            })?;
        write_if_changed(&state, text.as_bytes())?;
        write_if_changed(&pki_dir.join(CONFIG_FILE), self.config_yaml().as_bytes())
    }

    /// The EncryptionConfiguration control planes hold.
    pub fn config_yaml(&self) -> String {
        let mut y = String::from(
            "# Written by director-boot: Secrets encrypted at rest with secretbox (XSalsa20-Poly1305).\n\
             # The first key encrypts; every key decrypts; identity only reads what was stored before.\n\
             apiVersion: apiserver.config.k8s.io/v1\n\
             kind: EncryptionConfiguration\n\
             resources:\n  - resources:\n      - secrets\n    providers:\n      - secretbox:\n          keys:\n",
        );
        for k in &self.keys {
            y.push_str(&format!(
                "            - name: {}\n              secret: {}\n",
                k.name, k.secret
            ));
        }
        y.push_str("      - identity: {}\n");
        y
    }

    /// The key that encrypts.
    pub fn writer(&self) -> Option<&str> {
        self.keys.first().map(|k| k.name.as_str())
    }

    /// Start a rotation unless one is pending: a new key, as a reader after the others.
    /// True when a rotation was started.
    pub fn begin_rotation(&mut self) -> Result<bool, EncryptionError> {
        if self.rotation.is_some() {
            return Ok(false);
        }
        self.serial += 1;
        let key = new_key(self.serial)?;
        self.rotation = Some(Rotation {
            key: key.name.clone(),
            step: Step::StageReader,
        });
        self.keys.push(key);
        Ok(true)
    }

    /// The pending rotation's next step, if any.
    pub fn step(&self) -> Option<Step> {
        self.rotation.as_ref().map(|r| r.step)
    }

    /// `step` is done: move on, changing the keys for the next one.
    pub fn finish_step(&mut self, step: Step) {
        let Some(rot) = self.rotation.as_mut() else {
            return;
        };
        if rot.step != step {
            return;
        }
        let new = rot.key.clone();
        match step {
            Step::StageReader => {
                // Every control plane can read the new key: it may now write with it.
                if let Some(i) = self.keys.iter().position(|k| k.name == new) {
                    let k = self.keys.remove(i);
                    self.keys.insert(0, k);
                }
                rot.step = Step::StageWriter;
                self.rewritten = false;
            }
            Step::StageWriter => rot.step = Step::Rewrite,
            Step::Rewrite => {
                self.rewritten = true;
                self.keys.retain(|k| k.name == new);
                rot.step = Step::StagePrune;
            }
            Step::StagePrune => self.rotation = None,
        }
    }
}

/// Leave a file that already says this alone: a converged run rewrites nothing.
fn write_if_changed(path: &Path, data: &[u8]) -> Result<(), EncryptionError> {
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600);
    if private && std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    write_private(path, data)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), EncryptionError> {
    crate::cluster_state::write_private(path, data).map_err(|e| match e {
        crate::cluster_state::StateError::Io { path, source } => {
            EncryptionError::Io { path, source }
        }
        crate::cluster_state::StateError::Corrupt { path, source } => {
            EncryptionError::Corrupt { path, source }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ensure_creates_one_key_once_and_writes_0600_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (ring, created) = KeyRing::ensure(tmp.path()).unwrap();
        assert!(created);
        assert_eq!(ring.writer(), Some("key1"));
        let secret = base64::engine::general_purpose::STANDARD
            .decode(&ring.keys[0].secret)
            .unwrap();
        assert_eq!(secret.len(), 32);
        let mtime = |f: &str| {
            std::fs::metadata(tmp.path().join(f))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = (mtime(STATE_FILE), mtime(CONFIG_FILE));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (again, created) = KeyRing::ensure(tmp.path()).unwrap();
        assert!(!created);
        assert_eq!(again, ring);
        // A converged run rewrites nothing.
        assert_eq!((mtime(STATE_FILE), mtime(CONFIG_FILE)), before);
        for f in [STATE_FILE, CONFIG_FILE] {
            let mode = std::fs::metadata(tmp.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(tmp.path().join(CONFIG_FILE)).unwrap())
                .unwrap();
        let providers = &yaml["resources"][0]["providers"];
        assert_eq!(providers[0]["secretbox"]["keys"][0]["name"], "key1");
        assert!(providers[1]["identity"].is_mapping());
        assert_eq!(yaml["resources"][0]["resources"][0], "secrets");
    }

    #[test]
    fn rotation_adds_a_reader_then_switches_the_writer_then_drops_the_old_key() {
        let mut ring = KeyRing::generate().unwrap();
        assert!(ring.begin_rotation().unwrap());
        assert!(!ring.begin_rotation().unwrap(), "one rotation at a time");
        let names = |r: &KeyRing| r.keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ring), ["key1", "key2"]);
        assert_eq!(ring.step(), Some(Step::StageReader));
        // A step that is not the pending one changes nothing (a stale re-run).
        ring.finish_step(Step::Rewrite);
        assert_eq!(ring.step(), Some(Step::StageReader));
        ring.finish_step(Step::StageReader);
        assert_eq!(names(&ring), ["key2", "key1"]);
        assert_eq!(ring.step(), Some(Step::StageWriter));
        assert!(!ring.rewritten);
        ring.finish_step(Step::StageWriter);
        assert_eq!(ring.step(), Some(Step::Rewrite));
        ring.finish_step(Step::Rewrite);
        assert_eq!(names(&ring), ["key2"]);
        assert!(ring.rewritten);
        ring.finish_step(Step::StagePrune);
        assert_eq!(ring.step(), None);
        assert!(ring.begin_rotation().unwrap());
        assert_eq!(names(&ring), ["key2", "key3"]);
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let ring = KeyRing::generate().unwrap();
        let shown = format!("{ring:?}");
        assert!(!shown.contains(&ring.keys[0].secret), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
