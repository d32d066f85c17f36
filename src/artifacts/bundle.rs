//! One-file bundles: the export layout (downloads + pinned.yaml) as a zstd-compressed tar, for
//! sites without a web server. `fetch --from FILE` and `init --artifacts FILE` unpack it once
//! into the cache, keyed by its sha256.

use std::path::{Path, PathBuf};

use super::ArtifactsError;
use super::fetch::{FetchOptions, Source};
use super::pinned::Pinned;
use crate::engine::artifacts::sha256_file;

/// zstd level: fast to write, decompresses at disk speed.
const LEVEL: i32 = 3;

/// Write the mirror's export layout into one `.tar.zst` file.
pub fn write(mirror: &Path, file: &Path) -> Result<super::mirror::ExportReport, ArtifactsError> {
    let stage = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempdir_in(file.parent().unwrap_or(Path::new(".")))
        .map_err(ArtifactsError::io(file))?;
    let report = super::mirror::export(mirror, stage.path())?;
    let tmp = file.with_extension("tmp");
    let out = std::fs::File::create(&tmp).map_err(ArtifactsError::io(&tmp))?;
    let enc = zstd::Encoder::new(out, LEVEL).map_err(ArtifactsError::io(&tmp))?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", stage.path())
        .map_err(ArtifactsError::io(&tmp))?;
    let enc = tar.into_inner().map_err(ArtifactsError::io(&tmp))?;
    let out = enc.finish().map_err(ArtifactsError::io(&tmp))?;
    out.sync_all().map_err(ArtifactsError::io(&tmp))?;
    std::fs::rename(&tmp, file).map_err(ArtifactsError::io(file))?;
    Ok(report)
}

/// Unpack a bundle into `<cache>/bundles/<sha256 prefix>/src` (once); returns that directory.
pub fn unpack(cache: &Path, file: &Path) -> Result<PathBuf, ArtifactsError> {
    let key = sha256_file(file).map_err(|e| ArtifactsError::Manifest {
        file: file.display().to_string(),
        reason: e.to_string(),
    })?;
    let base = cache.join("bundles").join(&key[..16]);
    let dir = base.join("src");
    if dir.join("pinned.yaml").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&base).map_err(ArtifactsError::io(&base))?;
    let tmp = base.join(format!("src.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let f = std::fs::File::open(file).map_err(ArtifactsError::io(file))?;
    let dec = zstd::Decoder::new(f).map_err(|e| ArtifactsError::Manifest {
        file: file.display().to_string(),
        reason: format!("not a zstd bundle: {e}"),
    })?;
    let mut archive = tar::Archive::new(dec);
    archive.unpack(&tmp).map_err(|e| ArtifactsError::Manifest {
        file: file.display().to_string(),
        reason: format!("cannot unpack: {e}"),
    })?;
    if !tmp.join("pinned.yaml").exists() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ArtifactsError::Manifest {
            file: file.display().to_string(),
            reason: "not a director-boot bundle (no pinned.yaml)".into(),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(ArtifactsError::io(&dir))?;
    Ok(dir)
}

/// The mirror for `init --artifacts FILE`: the bundle unpacked and fetched (checked against
/// its own pinned.yaml) into `<cache>/bundles/<key>/mirror`, once.
pub async fn mirror_from_bundle(cache: &Path, file: &Path) -> Result<PathBuf, ArtifactsError> {
    let src = unpack(cache, file)?;
    let mirror = src.with_file_name("mirror");
    if mirror.join("manifest.json").exists() {
        return Ok(mirror);
    }
    let manifest = src.join("pinned.yaml");
    let pinned = Pinned::load(&manifest)?;
    let arches = arches_of(&pinned);
    super::fetch::fetch(
        &mirror,
        FetchOptions {
            source: Source::Dir(src.clone()),
            pinned,
            manifest_name: format!("{} (in {})", "pinned.yaml", file.display()),
            arches,
            concurrency: 4,
            show_progress: false,
        },
    )
    .await?;
    Ok(mirror)
}

/// The architectures a (site or lab) manifest has checksums for, amd64 first.
pub fn arches_of(p: &Pinned) -> Vec<String> {
    let mut arches: Vec<String> = super::pinned::ARCHES
        .iter()
        .filter(|a| {
            p.components
                .iter()
                .filter(|c| c.kind == super::pinned::ComponentKind::File)
                .all(|c| c.sha256.contains_key(**a) || c.sha256_url.is_some())
        })
        .map(|a| a.to_string())
        .collect();
    if arches.is_empty() {
        arches.push("amd64".into());
    }
    arches
}
