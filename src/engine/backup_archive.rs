//! The backup file (`director-boot backup`): ONE gzip'd tar holding an etcd snapshot and the
//! cluster's state directory (PKI, the Secrets encryption key ring, pod subnets, admin
//! kubeconfig), with a manifest that names every member with its sha256 and size, and a last
//! member holding the sha256 of the manifest itself, so that every byte that matters is covered:
//!
//! ```text
//! director-boot-backup.json          manifest: format, cluster, time, etcd member, files[]
//! etcd/snapshot.db                   `etcdctl snapshot save` through one healthy member
//! state/pki/ca.crt ...               the cluster state dir (logs left out)
//! director-boot-backup.json.sha256   sha256 of the manifest's bytes
//! ```
//!
//! Reading verifies everything before anything is used: the manifest's checksum, every
//! member's sha256 and size, no member missing, none unlisted, no path leaving the archive.
//! The file is written 0600 (it holds the CA keys and the encryption keys), atomically.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "director-boot-backup.json";
pub const MANIFEST_SUM: &str = "director-boot-backup.json.sha256";
pub const SNAPSHOT: &str = "etcd/snapshot.db";
pub const STATE_PREFIX: &str = "state/";
pub const FORMAT: &str = "director-boot-backup/v1";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {action}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a director-boot backup: {reason}", file.display())]
    NotABackup { file: PathBuf, reason: String },
    #[error(
        "{}: {member} is damaged: its sha256 is {actual}, the backup's manifest says {expected}; not using this backup",
        file.display()
    )]
    Checksum {
        file: PathBuf,
        member: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{}: the manifest ({MANIFEST}) does not match its checksum ({MANIFEST_SUM}): the file is damaged or was altered; not using this backup",
        file.display()
    )]
    ManifestChecksum { file: PathBuf },
    #[error("{}: {member} is listed in the manifest but missing; not using this backup", file.display())]
    Missing { file: PathBuf, member: String },
    #[error("{}: {member} is not listed in the manifest; not using this backup", file.display())]
    Unlisted { file: PathBuf, member: String },
    #[error("{}: refusing to overwrite an existing file", path.display())]
    Exists { path: PathBuf },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub cluster: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub director_boot_version: String,
    /// The etcd member the snapshot was taken through.
    pub etcd_member: String,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The state files (paths relative to the cluster state dir).
    pub fn state_files(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .filter_map(|f| f.path.strip_prefix(STATE_PREFIX))
    }
}

/// What goes into a backup besides the snapshot: files of the state dir, by relative path.
pub struct Input<'a> {
    pub cluster: &'a str,
    pub etcd_member: &'a str,
    pub snapshot: &'a [u8],
    pub state: Vec<(String, PathBuf)>,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    /// sha256 of the whole file (for the operator's records; the file carries its own checks).
    pub sha256: String,
    pub files: usize,
}

pub use crate::hash::sha256_hex;

/// The state dir's files worth keeping: everything but the run logs, earlier backups and
/// temporary files, sorted.
pub fn state_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ArchiveError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), ArchiveError> {
        for e in std::fs::read_dir(dir).map_err(io("list", dir))? {
            let e = e.map_err(io("list", dir))?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let ft = e.file_type().map_err(io("stat", &path))?;
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if ft.is_dir() {
                if dir == root
                    && (name == "logs" || name == "backups" || name.starts_with("before-restore-"))
                {
                    continue;
                }
                walk(root, &path, out)?;
            } else if ft.is_file() {
                out.push((rel, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn header(path: &str, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

/// Write the backup to `out` (0600, atomically; an existing file is never overwritten).
pub fn write(out: &Path, input: &Input<'_>) -> Result<Written, ArchiveError> {
    use std::os::unix::fs::OpenOptionsExt;
    if out.exists() {
        return Err(ArchiveError::Exists {
            path: out.to_path_buf(),
        });
    }
    // Read the state files first: the manifest lists them with their sums.
    let mut members: Vec<(String, Vec<u8>)> = vec![(SNAPSHOT.to_string(), input.snapshot.to_vec())];
    for (rel, path) in &input.state {
        let data = std::fs::read(path).map_err(io("read", path))?;
        members.push((format!("{STATE_PREFIX}{rel}"), data));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        cluster: input.cluster.into(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        director_boot_version: env!("CARGO_PKG_VERSION").into(),
        etcd_member: input.etcd_member.into(),
        files: members
            .iter()
            .map(|(p, d)| FileEntry {
                path: p.clone(),
                sha256: sha256_hex(d),
                size: d.len() as u64,
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| io("encode manifest", out)(std::io::Error::other(e.to_string())))?;
    let manifest_sum = format!("{}\n", sha256_hex(&manifest_bytes));

    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<(), ArchiveError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = chrono::Utc::now().timestamp().max(0) as u64;
        let mut add = |path: &str, data: &[u8]| {
            let mut h = header(path, data.len() as u64, mtime);
            tar.append_data(&mut h, path, data)
                .map_err(io("write", &tmp))
        };
        add(MANIFEST, &manifest_bytes)?;
        for (p, d) in &members {
            add(p, d)?;
        }
        add(MANIFEST_SUM, manifest_sum.as_bytes())?;
        let gz = tar.into_inner().map_err(io("write", &tmp))?;
        let mut f = gz.finish().map_err(io("write", &tmp))?;
        f.flush().map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if out.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Err(ArchiveError::Exists {
            path: out.to_path_buf(),
        });
    }
    std::fs::rename(&tmp, out).map_err(io("rename into place", out))?;
    let size = std::fs::metadata(out).map_err(io("stat", out))?.len();
    let sha256 = crate::hash::sha256_file(out).map_err(io("read", out))?;
    Ok(Written {
        path: out.to_path_buf(),
        size,
        sha256,
        files: manifest.files.len(),
    })
}

/// A verified backup, unpacked into a private directory.
pub struct Opened {
    pub manifest: Manifest,
    /// Member path -> where it was unpacked.
    files: BTreeMap<String, PathBuf>,
    _dir: tempfile::TempDir,
}

impl Opened {
    pub fn path_of(&self, member: &str) -> Option<&Path> {
        self.files.get(member).map(PathBuf::as_path)
    }

    pub fn snapshot(&self) -> Option<&Path> {
        self.path_of(SNAPSHOT)
    }

    /// The state files: path relative to the state dir, and where it was unpacked.
    pub fn state(&self) -> Vec<(String, &Path)> {
        self.files
            .iter()
            .filter_map(|(p, f)| {
                p.strip_prefix(STATE_PREFIX)
                    .map(|rel| (rel.to_string(), f.as_path()))
            })
            .collect()
    }
}

/// A member path that stays inside the archive (no absolute path, no `..`).
fn safe(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Read and verify a backup; nothing in it is trusted before every check passed.
pub fn open(file: &Path) -> Result<Opened, ArchiveError> {
    let not = |reason: String| ArchiveError::NotABackup {
        file: file.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(file).map_err(io("open", file))?;
    let dir = tempfile::Builder::new()
        .prefix("director-boot-restore-")
        .tempdir()
        .map_err(io("create a private directory for", file))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut manifest_sum: Option<String> = None;
    // member -> (sha256, size, unpacked at)
    let mut seen: BTreeMap<String, (String, u64, PathBuf)> = BTreeMap::new();
    let entries = ar
        .entries()
        .map_err(|e| not(format!("not a gzip'd tar: {e}")))?;
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| not(format!("unreadable (truncated?): {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| not(format!("bad member name: {e}")))?
            .to_string_lossy()
            .into_owned();
        if !safe(&path) {
            return Err(not(format!("member {path:?} leaves the archive")));
        }
        if path == MANIFEST || path == MANIFEST_SUM {
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| not(format!("{path}: {e}")))?;
            if path == MANIFEST {
                manifest_bytes = Some(data);
            } else {
                manifest_sum = Some(String::from_utf8_lossy(&data).trim().to_string());
            }
            continue;
        }
        if seen.contains_key(&path) {
            return Err(not(format!("member {path} appears twice")));
        }
        let dest = dir.path().join(format!("{i}"));
        let mut out = std::fs::File::create(&dest).map_err(io("unpack into", &dest))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| not(format!("{path}: unreadable (truncated?): {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io("unpack into", &dest))?;
            size += n as u64;
        }
        seen.insert(path, (hex::encode(hasher.finalize()), size, dest));
    }
    let Some(manifest_bytes) = manifest_bytes else {
        return Err(not(format!("no {MANIFEST}")));
    };
    let Some(sum) = manifest_sum else {
        return Err(not(format!("no {MANIFEST_SUM}")));
    };
    if sha256_hex(&manifest_bytes) != sum {
        return Err(ArchiveError::ManifestChecksum {
            file: file.to_path_buf(),
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| not(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not(format!(
            "format {:?}; this director-boot reads {FORMAT}",
            manifest.format
        )));
    }
    let mut files = BTreeMap::new();
    for f in &manifest.files {
        let Some((sha, size, at)) = seen.remove(&f.path) else {
            return Err(ArchiveError::Missing {
                file: file.to_path_buf(),
                member: f.path.clone(),
            });
        };
        if sha != f.sha256 || size != f.size {
            return Err(ArchiveError::Checksum {
                file: file.to_path_buf(),
                member: f.path.clone(),
                expected: f.sha256.clone(),
                actual: sha,
            });
        }
        files.insert(f.path.clone(), at);
    }
    if let Some(extra) = seen.keys().next() {
        return Err(ArchiveError::Unlisted {
            file: file.to_path_buf(),
            member: extra.clone(),
        });
    }
    if !files.contains_key(SNAPSHOT) {
        return Err(ArchiveError::Missing {
            file: file.to_path_buf(),
            member: SNAPSHOT.into(),
        });
    }
    Ok(Opened {
        manifest,
        files,
        _dir: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn state_dir(root: &Path) -> PathBuf {
        let dir = root.join("clusters/lab");
        std::fs::create_dir_all(dir.join("pki/etcd")).unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("pki/ca.crt"), "CA CERT").unwrap();
        std::fs::write(dir.join("pki/ca.key"), "CA KEY").unwrap();
        std::fs::write(dir.join("pki/etcd/ca.crt"), "ETCD CA").unwrap();
        std::fs::write(dir.join("pki/encryption.json"), "{\"keys\":[]}").unwrap();
        std::fs::write(dir.join("subnets.json"), "{}").unwrap();
        std::fs::write(dir.join("logs/init.log"), "noise").unwrap();
        std::fs::write(dir.join(".admin.conf.tmp"), "half").unwrap();
        dir
    }

    fn backup(root: &Path) -> PathBuf {
        let dir = state_dir(root);
        let out = root.join("lab.backup.tar.gz");
        let w = write(
            &out,
            &Input {
                cluster: "lab",
                etcd_member: "node1",
                snapshot: b"etcd snapshot bytes",
                state: state_files(&dir).unwrap(),
            },
        )
        .unwrap();
        assert_eq!(w.files, 6);
        out
    }

    /// Rewrite the archive, changing one member's bytes (same length or not) but not the
    /// manifest: what a damaged or tampered file looks like.
    fn tamper(src: &Path, dst: &Path, member: &str, f: impl Fn(&mut Vec<u8>)) {
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(src).unwrap(),
        ));
        let out = std::fs::File::create(dst).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::fast(),
        ));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if path == member {
                f(&mut data);
            }
            let mut h = header(&path, data.len() as u64, 0);
            b.append_data(&mut h, &path, &data[..]).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn round_trip_keeps_state_and_snapshot_and_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let out = backup(tmp.path());
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let o = open(&out).unwrap();
        assert_eq!(o.manifest.cluster, "lab");
        assert_eq!(o.manifest.etcd_member, "node1");
        assert_eq!(
            std::fs::read(o.snapshot().unwrap()).unwrap(),
            b"etcd snapshot bytes"
        );
        let names: Vec<String> = o.state().into_iter().map(|(p, _)| p).collect();
        // logs and temporary files stay out; the encryption key ring is in
        assert_eq!(
            names,
            [
                "pki/ca.crt",
                "pki/ca.key",
                "pki/encryption.json",
                "pki/etcd/ca.crt",
                "subnets.json"
            ]
        );
        // never overwritten
        let again = write(
            &out,
            &Input {
                cluster: "lab",
                etcd_member: "node1",
                snapshot: b"x",
                state: vec![],
            },
        );
        assert!(matches!(again, Err(ArchiveError::Exists { .. })));
    }

    #[test]
    fn a_damaged_member_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let out = backup(tmp.path());
        let bad = tmp.path().join("bad.tar.gz");
        tamper(&out, &bad, "state/pki/ca.key", |d| d[0] ^= 1);
        let err = open(&bad).err().expect("refused").to_string();
        assert!(err.contains("state/pki/ca.key is damaged"), "{err}");
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(err.contains("not using this backup"), "{err}");

        tamper(&out, &bad, SNAPSHOT, |d| d.push(b'!'));
        let err = open(&bad).err().expect("refused").to_string();
        assert!(err.contains("etcd/snapshot.db is damaged"), "{err}");
    }

    #[test]
    fn an_altered_manifest_a_missing_or_unlisted_member_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = backup(tmp.path());
        let bad = tmp.path().join("bad.tar.gz");
        tamper(&out, &bad, MANIFEST, |d| {
            let s = String::from_utf8(d.clone())
                .unwrap()
                .replace("node1", "node9");
            *d = s.into_bytes();
        });
        let err = open(&bad).err().expect("refused");
        assert!(
            matches!(err, ArchiveError::ManifestChecksum { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(MANIFEST_SUM));

        // a member dropped from the archive
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&out).unwrap(),
        ));
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&bad).unwrap(),
            flate2::Compression::fast(),
        ));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if path == "subnets.json" || path == "state/subnets.json" {
                continue;
            }
            let mut h = header(&path, data.len() as u64, 0);
            b.append_data(&mut h, &path, &data[..]).unwrap();
            if path == SNAPSHOT {
                let extra = b"smuggled";
                let mut h = header("state/pki/evil.key", extra.len() as u64, 0);
                b.append_data(&mut h, "state/pki/evil.key", &extra[..])
                    .unwrap();
            }
        }
        b.into_inner().unwrap().finish().unwrap();
        let err = open(&bad).err().expect("refused").to_string();
        assert!(
            err.contains("state/subnets.json is listed in the manifest but missing"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_truncation_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let junk = tmp.path().join("junk");
        std::fs::write(&junk, b"hello, not a tarball").unwrap();
        let err = open(&junk).err().expect("refused").to_string();
        assert!(err.contains("not a director-boot backup"), "{err}");

        let out = backup(tmp.path());
        let data = std::fs::read(&out).unwrap();
        let cut = tmp.path().join("cut.tar.gz");
        std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
        assert!(open(&cut).is_err());
    }

    #[test]
    fn member_paths_must_stay_inside() {
        assert!(safe("state/pki/ca.crt"));
        assert!(!safe("../etc/passwd"));
        assert!(!safe("/etc/passwd"));
        assert!(!safe("state/../../x"));
        assert!(!safe(""));
    }
}
