//! The probe image for netcheck's pods mode, built on the fly from the director-boot binary
//! itself and the shared libraries it links (no registry, no build step, and the probe in the
//! pods is always the same build as the one running netcheck). An OCI image archive that
//! `ctr images import` accepts: one uncompressed layer, a config, a manifest, an index.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the probe image {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ldd {path}: {detail}")]
    Ldd { path: PathBuf, detail: String },
}

pub struct ProbeImage {
    /// Image reference, e.g. `localhost/director-boot/probe:3f2a9c81d0e4`.
    pub reference: String,
    /// The OCI archive.
    pub archive: PathBuf,
}

/// Where the binary lives inside the image.
pub const ENTRYPOINT: &str = "/usr/local/bin/director-boot";

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    crate::hash::sha256_file(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The shared libraries `ldd` lists for `binary` (absolute paths, the loader included).
fn libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| ImageError::Ldd {
            path: binary.to_path_buf(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        // A static binary needs nothing.
        if String::from_utf8_lossy(&out.stdout).contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(ImageError::Ldd {
            path: binary.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs
}

fn layer_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    inside: &str,
    source: &Path,
    mode: u32,
) -> Result<(), ImageError> {
    let read = |source_err| ImageError::Read {
        path: source.to_path_buf(),
        source: source_err,
    };
    // Follow symlinks: the image gets the file's content at the path ldd named.
    let mut f = std::fs::File::open(source).map_err(read)?;
    let len = f.metadata().map_err(read)?.len();
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, inside.trim_start_matches('/'), &mut f)
        .map_err(read)
}

fn blob<W: Write>(
    tar: &mut tar::Builder<W>,
    bytes: &[u8],
) -> Result<(String, usize), std::io::Error> {
    let digest = hex::encode(Sha256::digest(bytes));
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, format!("blobs/sha256/{digest}"), bytes)?;
    Ok((digest, bytes.len()))
}

/// A copy of `binary` without its debug sections (binutils' objcopy), or `None` when there is
/// no objcopy or it fails: the probe then ships as it is. A debug build is ~10x larger than its
/// code, and every node of a netcheck uploads, imports and unpacks the image.
fn strip_debug(binary: &Path, dir: &Path) -> Option<tempfile::NamedTempFile> {
    let out = tempfile::NamedTempFile::new_in(dir).ok()?;
    let ok = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(out)
}

/// Build (or reuse from `cache_dir`) the probe image for `binary`.
pub fn build(binary: &Path, cache_dir: &Path) -> Result<ProbeImage, ImageError> {
    let sum = sha256_file(binary)?;
    let tag = &sum[..12];
    let reference = format!("localhost/director-boot/probe:{tag}");
    let archive = cache_dir.join(format!("probe-{tag}.tar"));
    if archive.exists() {
        return Ok(ProbeImage { reference, archive });
    }
    let write = |source| ImageError::Write {
        path: archive.clone(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(write)?;

    // The layer, in a temp file (a debug binary is large).
    let stripped = strip_debug(binary, cache_dir);
    let entry = stripped.as_ref().map_or(binary, |t| t.path());
    let mut layer_file = tempfile::NamedTempFile::new_in(cache_dir).map_err(write)?;
    {
        let mut tar = tar::Builder::new(layer_file.as_file_mut());
        layer_entry(&mut tar, ENTRYPOINT, entry, 0o755)?;
        for lib in libraries(binary)? {
            layer_entry(&mut tar, &lib.to_string_lossy(), &lib, 0o755)?;
        }
        tar.finish().map_err(write)?;
    }
    let layer_path = layer_file.path().to_path_buf();
    let layer_digest = sha256_file(&layer_path)?;
    let layer_size = std::fs::metadata(&layer_path).map_err(write)?.len();

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [ENTRYPOINT],
            "Cmd": ["probe", "server"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        "history": [{"created_by": "director-boot netcheck"}],
    })
    .to_string();

    let tmp = tempfile::NamedTempFile::new_in(cache_dir).map_err(write)?;
    {
        let mut tar = tar::Builder::new(tmp.as_file());
        let (config_digest, config_size) = blob(&mut tar, config.as_bytes()).map_err(write)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(layer_size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        let mut lf = std::fs::File::open(&layer_path).map_err(write)?;
        tar.append_data(&mut h, format!("blobs/sha256/{layer_digest}"), &mut lf)
            .map_err(write)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
        })
        .to_string();
        let (manifest_digest, manifest_size) =
            blob(&mut tar, manifest.as_bytes()).map_err(write)?;
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                           "annotations": {"io.containerd.image.name": reference,
                                           "org.opencontainers.image.ref.name": tag}}],
        })
        .to_string();
        for (name, body) in [
            (
                "oci-layout",
                r#"{"imageLayoutVersion":"1.0.0"}"#.to_string(),
            ),
            ("index.json", index),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, body.as_bytes())
                .map_err(write)?;
        }
        tar.finish().map_err(write)?;
    }
    tmp.persist(&archive).map_err(|e| write(e.error))?;
    prune(cache_dir, KEEP_ARCHIVES, PRUNE_AFTER);
    Ok(ProbeImage { reference, archive })
}

/// Archives of other builds kept in the cache: each is hundreds of MB (a debug binary), one
/// per build of director-boot, so without pruning the cache grows by one every rebuild.
const KEEP_ARCHIVES: usize = 3;
/// Never removed younger than this: another netcheck of another build may be loading it.
const PRUNE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes the probe archives in `dir` beyond the `keep` newest, if older than `min_age`.
/// Best effort: the cache is ours, and a file that cannot be removed is left.
fn prune(dir: &Path, keep: usize, min_age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut archives: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("probe-") && name.ends_with(".tar")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    archives.sort_by_key(|a| std::cmp::Reverse(a.0));
    for (modified, path) in archives.into_iter().skip(keep) {
        if modified.elapsed().is_ok_and(|age| age >= min_age) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_absolute_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x7f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn a_debug_build_loses_its_debug_sections() {
        let me = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let Some(stripped) = strip_debug(&me, dir.path()) else {
            eprintln!("skipped: no objcopy");
            return;
        };
        let before = std::fs::metadata(&me).unwrap().len();
        let after = std::fs::metadata(stripped.path()).unwrap().len();
        assert!(after > 0 && after < before, "{after} of {before} bytes");
    }

    #[test]
    fn prune_keeps_the_newest_and_the_young() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        for (i, name) in ["probe-a.tar", "probe-b.tar", "probe-c.tar", "probe-d.tar"]
            .iter()
            .enumerate()
        {
            let f = std::fs::File::create(dir.path().join(name)).unwrap();
            // a newest, d oldest
            f.set_modified(now - hour * (i as u32 + 1)).unwrap();
        }
        std::fs::write(dir.path().join("other.tar"), b"").unwrap();
        prune(dir.path(), 2, std::time::Duration::from_secs(600));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["other.tar", "probe-a.tar", "probe-b.tar"]);
        // Beyond the newest but young: kept.
        prune(dir.path(), 0, 3 * hour);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn an_image_of_a_real_binary_has_the_binary_its_libraries_and_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let bin = Path::new("/bin/true");
        let img = build(bin, dir.path()).unwrap();
        assert!(img.reference.starts_with("localhost/director-boot/probe:"));
        let mut names = Vec::new();
        let mut a = tar::Archive::new(std::fs::File::open(&img.archive).unwrap());
        for e in a.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.contains(&"index.json".to_string()), "{names:?}");
        assert!(names.contains(&"oci-layout".to_string()));
        assert_eq!(names.iter().filter(|n| n.starts_with("blobs/")).count(), 3);
        // A second build reuses the archive.
        let again = build(bin, dir.path()).unwrap();
        assert_eq!(again.archive, img.archive);
    }
}
