//! What goes over the wire: a byte counter under every SSH connection, and file contents
//! compressed once per file (cached by sha256) for hosts that can decompress them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes written to every SSH connection's TCP stream (handshakes, commands, file data, SSH
/// framing and encryption included): what a run really sends.
static BYTES_SENT: AtomicU64 = AtomicU64::new(0);

/// Bytes this process has sent over SSH so far.
pub fn bytes_sent() -> u64 {
    BYTES_SENT.load(Ordering::Relaxed)
}

/// A stream that counts what is written through it.
pub struct Counted<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            BYTES_SENT.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// How a file's contents travel to one host; decided once per host from its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    Plain,
    Gzip,
    Zstd,
}

impl Wire {
    /// zstd when the host has it (fast on both ends), else gzip (on every Linux), else as is.
    pub fn choose(has_zstd: bool, has_gzip: bool) -> Wire {
        match (has_zstd, has_gzip) {
            (true, _) => Wire::Zstd,
            (false, true) => Wire::Gzip,
            _ => Wire::Plain,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            Wire::Plain => 0,
            Wire::Gzip => 1,
            Wire::Zstd => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Wire {
        match v {
            1 => Wire::Gzip,
            2 => Wire::Zstd,
            _ => Wire::Plain,
        }
    }

    /// The host-side command that turns stdin back into the file.
    pub(crate) fn decoder(self) -> &'static str {
        match self {
            Wire::Plain => "cat",
            Wire::Gzip => "gzip -dc",
            Wire::Zstd => "zstd -dcq",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Wire::Plain => "",
            Wire::Gzip => "gz",
            Wire::Zstd => "zst",
        }
    }
}

/// Smaller files go as they are: compressing them saves less than a cache file costs.
pub const MIN_COMPRESSED_SIZE: u64 = 256 * 1024;

/// zstd level 3 (its default): ~3x on Go binaries at hundreds of MB/s on one core.
const ZSTD_LEVEL: i32 = 3;

static CACHE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Where compressed copies are kept (the run's cache dir); without it nothing is compressed.
pub fn set_cache_dir(dir: PathBuf) {
    let _ = CACHE_DIR.set(dir);
}

/// One lock per cache file, so ten hosts wanting one file compress it once.
type Inflight = Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;
static INFLIGHT: OnceLock<Inflight> = OnceLock::new();

/// The compressed copy of `local` (whose sha256 is `sha`) for `wire`, made once and kept in
/// the cache dir under its content hash. `None` when there is no cache dir or `wire` is plain.
pub async fn compressed(local: &Path, sha: &str, wire: Wire) -> std::io::Result<Option<PathBuf>> {
    let Some(dir) = CACHE_DIR.get() else {
        return Ok(None);
    };
    if wire == Wire::Plain {
        return Ok(None);
    }
    let dir = dir.join("wire");
    let target = dir.join(format!("{sha}.{}", wire.extension()));
    let lock = {
        let map = INFLIGHT.get_or_init(Default::default);
        let mut map = map
            .lock()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        map.entry(target.clone()).or_default().clone()
    };
    let _held = lock.lock().await;
    static PRUNED: std::sync::Once = std::sync::Once::new();
    PRUNED.call_once(|| {
        if let Err(e) = prune(&dir, CACHE_MAX_BYTES) {
            tracing::debug!("wire cache {}: not pruned: {e}", dir.display());
        }
    });
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        // Used now: the pruning keeps what was used last.
        if let Ok(f) = std::fs::File::open(&target) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        return Ok(Some(target));
    }
    let (local, out) = (local.to_path_buf(), target.clone());
    tokio::task::spawn_blocking(move || compress_file(&local, &dir, &out, wire))
        .await
        .map_err(std::io::Error::other)??;
    Ok(Some(target))
}

/// The wire cache's size bound: compressed copies of old mirrors and image archives would
/// otherwise pile up run after run.
const CACHE_MAX_BYTES: u64 = 2 << 30;

/// Delete the least recently used copies until the rest fit in `max` bytes (a copy another run
/// is reading stays readable: its open file outlives the name).
fn prune(dir: &Path, max: u64) -> std::io::Result<()> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_file() {
            files.push((m.modified()?, m.len(), e.path()));
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut total = 0u64;
    for (_, len, path) in files {
        total += len;
        if total > max {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Compress into a temp file beside `out`, then rename: a half-written copy is never used.
fn compress_file(local: &Path, dir: &Path, out: &Path, wire: Wire) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut input = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(local)?);
    let file = tmp.as_file().try_clone()?;
    match wire {
        Wire::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(file, ZSTD_LEVEL)?;
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?;
        }
        Wire::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::new(4));
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?;
        }
        Wire::Plain => return Ok(()),
    }
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_most_recently_used_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = dir.path().join(name);
            std::fs::write(&p, [0u8; 100]).unwrap();
            let f = std::fs::File::open(&p).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(100 * (3 - i as u64)))
                .unwrap();
        }
        prune(dir.path(), 250).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mid", "new"]);
    }

    #[test]
    fn choice_prefers_zstd_then_gzip() {
        assert_eq!(Wire::choose(true, true), Wire::Zstd);
        assert_eq!(Wire::choose(false, true), Wire::Gzip);
        assert_eq!(Wire::choose(false, false), Wire::Plain);
        for w in [Wire::Plain, Wire::Gzip, Wire::Zstd] {
            assert_eq!(Wire::from_u8(w.as_u8()), w);
        }
    }

    /// What we compress, the host's own `zstd -d` / `gzip -d` turn back (when installed here).
    #[test]
    fn host_tools_decompress_what_we_compress() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        let data: Vec<u8> = (0..400_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        std::fs::write(&src, &data).unwrap();
        for wire in [Wire::Zstd, Wire::Gzip] {
            let out = dir.path().join(format!("data.{}", wire.extension()));
            compress_file(&src, dir.path(), &out, wire).unwrap();
            assert!(std::fs::metadata(&out).unwrap().len() < data.len() as u64 / 2);
            let tool = wire.decoder().split(' ').next().unwrap();
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .is_ok_and(|s| s.success())
            {
                let back = Command::new("sh")
                    .args(["-c", &format!("{} < '{}'", wire.decoder(), out.display())])
                    .output()
                    .unwrap();
                assert!(back.status.success(), "{wire:?}");
                assert_eq!(back.stdout, data, "{wire:?}");
            }
        }
    }
}
