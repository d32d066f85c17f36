//! Host key verification against an OpenSSH known_hosts file, and pinning of new keys.
//!
//! Matching (plain and hashed `|1|` host patterns) is russh's; we add exact line numbers,
//! key-type preferences, safe file creation and serialized appends.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use russh::keys::known_hosts::known_host_keys_path;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use super::SshError;

/// Serializes check-then-append so that many hosts connecting at once neither interleave
/// lines nor pin the same host twice.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// `SHA256:<base64>`, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The host field OpenSSH writes: `addr` for port 22, `[addr]:port` otherwise.
pub fn host_pattern(addr: IpAddr, port: u16) -> String {
    if port == 22 {
        addr.to_string()
    } else {
        format!("[{addr}]:{port}")
    }
}

/// A pinned key for a host, with its 1-based line in the file.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub line: usize,
    pub key: PublicKey,
}

/// Keys pinned for `addr:port`, with real line numbers.
pub fn pinned_keys(path: &Path, addr: IpAddr, port: u16) -> Result<Vec<Pinned>, String> {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let found = known_host_keys_path(&addr.to_string(), port, path)
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    // russh counts only lines that do not start with '#'; translate to real line numbers.
    let counted: Vec<usize> = text
        .split_inclusive('\n')
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .map(|(i, _)| i + 1)
        .collect();
    Ok(found
        .into_iter()
        .map(|(n, key)| Pinned {
            line: n
                .checked_sub(1)
                .and_then(|i| counted.get(i))
                .copied()
                .unwrap_or(n),
            key,
        })
        .collect())
}

/// Same key family (all RSA signature variants are one key type).
fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// Host key algorithms to offer, those already pinned for this host first (as OpenSSH
/// does), so a host known by its ECDSA key is not reported "changed" for offering Ed25519.
pub fn preferred_algorithms(path: &Path, addr: IpAddr, port: u16) -> Vec<Algorithm> {
    let mut all: Vec<Algorithm> = russh::Preferred::DEFAULT.key.to_vec();
    let pinned: Vec<Algorithm> = pinned_keys(path, addr, port)
        .unwrap_or_default()
        .iter()
        .map(|p| p.key.algorithm())
        .collect();
    all.sort_by_key(|alg| !pinned.iter().any(|p| same_type(p, alg)));
    all
}

/// Accept `key` for `host` (`addr:port`), pin it if new and allowed, or say why not.
pub fn verify(
    host: &str,
    addr: IpAddr,
    port: u16,
    key: &PublicKey,
    path: &Path,
    accept_new: bool,
) -> Result<(), SshError> {
    let _guard = FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let io_err = |reason: String| SshError::Session {
        host: host.to_string(),
        reason: format!("known_hosts: {reason}"),
    };
    let pinned = pinned_keys(path, addr, port).map_err(io_err)?;
    if pinned.iter().any(|p| p.key.key_data() == key.key_data()) {
        return Ok(());
    }
    // A different key of the same type is a change; so is a host that is pinned only
    // under other key types (we never silently trust a second key for a known host).
    let offered_alg = key.algorithm();
    if let Some(old) = pinned
        .iter()
        .find(|p| same_type(&p.key.algorithm(), &offered_alg))
        .or_else(|| pinned.first())
    {
        return Err(SshError::HostKeyChanged {
            host: host.to_string(),
            expected: format!("{} {}", old.key.algorithm(), fingerprint(&old.key)),
            offered: format!("{offered_alg} {}", fingerprint(key)),
            known_hosts: path.to_path_buf(),
            line: old.line,
        });
    }
    if !accept_new {
        return Err(SshError::HostKeyUnknown {
            host: host.to_string(),
            fingerprint: format!("{offered_alg} {}", fingerprint(key)),
            known_hosts: path.to_path_buf(),
        });
    }
    append(path, &host_pattern(addr, port), key)
        .map_err(|e| io_err(format!("cannot pin the key in {}: {e}", path.display())))?;
    tracing::info!(host, fingerprint = %fingerprint(key), file = %path.display(), "pinned new host key");
    Ok(())
}

/// Append one `pattern key` line in a single write (O_APPEND), creating the directory
/// (0700) and file (0600) if needed.
fn append(path: &Path, pattern: &str, key: &PublicKey) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| e.to_string())?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    // Never glue our entry onto a last line that lacks its newline.
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1)).map_err(|e| e.to_string())?;
        file.read_exact(&mut last).map_err(|e| e.to_string())?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    let mut key = key.clone();
    key.set_comment("");
    let encoded = key.to_openssh().map_err(|e| e.to_string())?;
    line.push_str(pattern);
    line.push(' ');
    line.push_str(encoded.trim());
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::parse_public_key_base64;

    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(b64: &str) -> PublicKey {
        parse_public_key_base64(b64).unwrap()
    }

    #[test]
    fn pattern_follows_openssh() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(host_pattern(a, 22), "10.0.0.1");
        assert_eq!(host_pattern(a, 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn real_line_numbers_despite_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(
            &path,
            format!(
                "# comment\n#another\n10.0.0.9 ssh-ed25519 {K2}\n\n# x\n[10.0.0.1]:2222 ssh-ed25519 {K1}\n"
            ),
        )
        .unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let found = pinned_keys(&path, a, 2222).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 6);

        let err = verify("h", a, 2222, &key(K2), &path, true).unwrap_err();
        match err {
            SshError::HostKeyChanged {
                line,
                expected,
                offered,
                ..
            } => {
                assert_eq!(line, 6);
                assert!(expected.contains(&fingerprint(&key(K1))), "{expected}");
                assert!(offered.contains(&fingerprint(&key(K2))), "{offered}");
            }
            other => panic!("{other}"),
        }
        verify("h", a, 2222, &key(K1), &path, false).unwrap();
    }

    #[test]
    fn unknown_then_pinned_with_safe_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/sub/known_hosts");
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let err = verify("h", a, 22, &key(K1), &path, false).unwrap_err();
        assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err}");
        assert!(err.to_string().contains("SHA256:"), "{err}");
        assert!(!path.exists());
        verify("h", a, 22, &key(K1), &path, true).unwrap();
        verify("h", a, 22, &key(K1), &path, false).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("10.0.0.2 ssh-ed25519 {K1}\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn appends_after_a_missing_final_newline_and_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, format!("10.9.9.9 ssh-ed25519 {K2}")).unwrap();
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let a: IpAddr = format!("10.1.0.{i}").parse().unwrap();
                    verify("h", a, 22, &key(K1), &path, true).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 17);
        for i in 0..16u8 {
            let a: IpAddr = format!("10.1.0.{i}").parse().unwrap();
            assert_eq!(pinned_keys(&path, a, 22).unwrap().len(), 1);
        }
    }

    #[test]
    fn pinned_types_are_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let a: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(preferred_algorithms(&path, a, 22)[0], Algorithm::Ed25519);
    }
}
