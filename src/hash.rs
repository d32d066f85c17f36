//! sha256 as director-boot compares files (hex), of bytes or of a local file read in chunks
//! (artifacts and image archives run to hundreds of MB).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_reader(&mut std::fs::File::open(path)?)
}

/// What identifies one version of a file without reading it (the quick check the hosts'
/// sha256 cache uses too): size, modification time and inode.
type Stamp = (u64, SystemTime, u64);

static MEMO: OnceLock<Mutex<HashMap<PathBuf, (Stamp, String)>>> = OnceLock::new();

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified()?, m.ino()))
}

/// sha256 of a local file, read once per process while the file's size, mtime and inode stay
/// the same: an init sends each mirror file to every host and checks it before each send, and
/// re-reading hundreds of MB per host is CPU the hosts' own work then waits for.
pub fn sha256_file_memo(path: &Path) -> std::io::Result<String> {
    let before = stamp(path)?;
    let memo = MEMO.get_or_init(Default::default);
    if let Ok(m) = memo.lock()
        && let Some((st, sha)) = m.get(path)
        && *st == before
    {
        return Ok(sha.clone());
    }
    let sha = sha256_file(path)?;
    // Changed while being read: the sum is of no one version, so it is not kept.
    if stamp(path)? == before
        && let Ok(mut m) = memo.lock()
    {
        m.insert(path.to_path_buf(), (before, sha.clone()));
    }
    Ok(sha)
}

/// sha256 of everything `r` yields (a file, or an archive member being read).
pub fn sha256_reader(r: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_bytes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_hex(b"abc"));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn memo_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file_memo(&p).unwrap(), sha256_hex(b"abc"));
        assert_eq!(sha256_file_memo(&p).unwrap(), sha256_hex(b"abc"));
        // A new version (another size) is read again.
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(sha256_file_memo(&p).unwrap(), sha256_hex(b"abcd"));
        // Replaced by rename (a new inode), as the mirror build and fetch write files.
        let q = dir.path().join("g");
        std::fs::write(&q, b"wxyz").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(sha256_file_memo(&p).unwrap(), sha256_hex(b"wxyz"));
    }
}
