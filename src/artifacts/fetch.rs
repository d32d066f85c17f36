//! `artifacts fetch`: download every pinned file (several at once), check its sha256 before it
//! gets its name, unpack tarballs into the mirror and write its manifest.json.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::ArtifactsError;
use super::mirror::{ManifestEntry, MirrorManifest};
use super::pinned::{ComponentKind, Pinned, expand, normalize_member};
use crate::engine::artifacts::sha256_file;

/// Where downloads come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The upstream URLs of the pinned manifest.
    Upstream,
    /// A web server in the upstream layout (`BASE/<host>/<path>`).
    Http(String),
    /// A directory in the upstream layout (an export, an unpacked bundle).
    Dir(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Upstream => "upstream".into(),
            Source::Http(b) => b.clone(),
            Source::Dir(d) => d.display().to_string(),
        }
    }
}

pub struct FetchOptions {
    pub source: Source,
    pub pinned: Pinned,
    /// Where the manifest came from (named in checksum errors).
    pub manifest_name: String,
    pub arches: Vec<String>,
    pub concurrency: usize,
    pub show_progress: bool,
}

#[derive(Debug, Default)]
pub struct FetchReport {
    pub downloaded: Vec<String>,
    pub present: Vec<String>,
    pub skipped: Vec<String>,
    pub bytes: u64,
}

struct Job {
    component: usize,
    arch: String,
    /// Path in the served layout (also names the file in errors).
    rel: String,
    /// Where the download lives in the mirror.
    dest: PathBuf,
    /// The upstream URL (file components).
    url: Option<String>,
    expected: Option<String>,
    checksum_url: Option<String>,
}

/// Mirror-relative prefix of an architecture's unpacked files.
pub fn arch_prefix(arches: &[String], arch: &str) -> String {
    if arches.first().map(String::as_str) == Some(arch) {
        String::new()
    } else {
        format!("arch/{arch}/")
    }
}

pub async fn fetch(mirror: &Path, opts: FetchOptions) -> Result<FetchReport, ArtifactsError> {
    install_crypto_provider();
    if opts.arches.is_empty() {
        return Err(ArtifactsError::Manifest {
            file: opts.manifest_name.clone(),
            reason: "no architecture asked for".into(),
        });
    }
    std::fs::create_dir_all(mirror).map_err(ArtifactsError::io(mirror))?;
    let mut report = FetchReport::default();
    let mut jobs = Vec::new();
    for (i, c) in opts.pinned.components.iter().enumerate() {
        let arches: Vec<String> = match c.kind {
            ComponentKind::File => opts.arches.clone(),
            ComponentKind::Image => vec![opts.arches[0].clone()],
        };
        for arch in arches {
            let Some(rel) = c.layout_path(&arch) else {
                continue;
            };
            if c.kind == ComponentKind::Image && matches!(opts.source, Source::Upstream) {
                report.skipped.push(format!(
                    "{} ({}): an image is not a file upstream; pull it on a connected machine and serve it as {rel} with --from, or build the lab's with scripts/build-mirror.sh",
                    c.name,
                    c.reference.as_deref().unwrap_or("?")
                ));
                continue;
            }
            let dest = match c.kind {
                ComponentKind::File => mirror.join("upstream").join(&rel),
                ComponentKind::Image => mirror.join(&rel),
            };
            jobs.push(Job {
                component: i,
                expected: c.sha256_for(&arch).map(str::to_string),
                checksum_url: c.checksum_url_for(&arch),
                url: c.url_for(&arch),
                arch,
                rel,
                dest,
            });
        }
    }

    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| ArtifactsError::Download {
            url: opts.source.describe(),
            reason: e.to_string(),
        })?;
    let multi = MultiProgress::with_draw_target(if opts.show_progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let ctx = Arc::new(Ctx {
        client,
        source: opts.source.clone(),
        manifest_name: opts.manifest_name.clone(),
        multi,
    });
    let total = jobs.len();
    let results: Vec<(Job, Result<Outcome, ArtifactsError>)> =
        futures::stream::iter(jobs.into_iter().map(|job| {
            let ctx = ctx.clone();
            async move {
                let r = fetch_one(&ctx, &job).await;
                (job, r)
            }
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;

    let mut failures = Vec::new();
    let mut resolved: BTreeMap<(usize, String), String> = BTreeMap::new();
    for (job, r) in results {
        match r {
            Ok(o) => {
                if o.downloaded {
                    report.downloaded.push(job.rel.clone());
                    report.bytes += o.size;
                } else {
                    report.present.push(job.rel.clone());
                }
                resolved.insert((job.component, job.arch.clone()), o.sha256);
            }
            Err(e) => failures.push(e),
        }
    }
    if failures.len() == 1 {
        return Err(failures.remove(0));
    }
    if !failures.is_empty() {
        return Err(ArtifactsError::Several {
            count: failures.len(),
            total,
            list: failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  "),
        });
    }

    // Unpack and describe.
    let mut pinned = opts.pinned.clone();
    let mut entries = Vec::new();
    for (i, c) in opts.pinned.components.iter().enumerate() {
        match c.kind {
            ComponentKind::Image => {
                let arch = &opts.arches[0];
                let Some(sha) = resolved.get(&(i, arch.clone())) else {
                    continue;
                };
                let path = c.path.clone().unwrap_or_default();
                let size = file_size(&mirror.join(&path))?;
                entries.push(ManifestEntry {
                    name: c.name.clone(),
                    version: c.version.clone(),
                    kind: "image".into(),
                    path,
                    sha256: sha.clone(),
                    size,
                    arch: None,
                    reference: c.reference.clone(),
                    source: c.reference.clone(),
                    format: Some("oci-archive".into()),
                });
            }
            ComponentKind::File => {
                for arch in &opts.arches {
                    let Some(sha) = resolved.get(&(i, arch.clone())) else {
                        continue;
                    };
                    pinned.components[i]
                        .sha256
                        .insert(arch.clone(), sha.clone());
                    let rel = c.layout_path(arch).unwrap_or_default();
                    let download = mirror.join("upstream").join(&rel);
                    let prefix = arch_prefix(&opts.arches, arch);
                    let unpacked = unpack(&download, &rel, c, arch, mirror, &prefix)?;
                    for (f, (path, sha, size)) in c.files.iter().zip(unpacked) {
                        entries.push(ManifestEntry {
                            name: f.name.clone(),
                            version: c.version.clone(),
                            kind: "binary".into(),
                            path,
                            sha256: sha,
                            size,
                            arch: Some(arch.clone()),
                            reference: None,
                            source: c.url_for(arch),
                            format: None,
                        });
                    }
                }
            }
        }
    }
    let manifest = MirrorManifest {
        kubernetes_version: pinned.kubernetes_version.clone(),
        arch: Some(opts.arches[0].clone()),
        arches: opts.arches.clone(),
        generated_by: Some(format!(
            "director-boot artifacts fetch from {} with {}",
            opts.source.describe(),
            opts.manifest_name
        )),
        artifacts: entries,
    };
    // The mirror's pinned.yaml says exactly what it holds: fetched arches, resolved checksums.
    pinned.components.retain(|c| {
        let i = opts.pinned.components.iter().position(|o| o.name == c.name);
        i.is_some_and(|i| resolved.keys().any(|(ci, _)| *ci == i))
    });
    for c in &mut pinned.components {
        if c.kind == ComponentKind::File {
            c.sha256.retain(|a, _| opts.arches.contains(a));
            c.sha256_url = None;
        }
    }
    let pinned_text = serde_yaml::to_string(&pinned).map_err(|e| ArtifactsError::Manifest {
        file: "pinned.yaml".into(),
        reason: e.to_string(),
    })?;
    write_atomic(
        &mirror.join("pinned.yaml"),
        format!(
            "# The pinned manifest this mirror was fetched with ({}).\n{pinned_text}",
            opts.manifest_name
        )
        .as_bytes(),
    )?;
    manifest.write(mirror)?;
    Ok(report)
}

struct Ctx {
    client: reqwest::Client,
    source: Source,
    manifest_name: String,
    multi: MultiProgress,
}

struct Outcome {
    downloaded: bool,
    sha256: String,
    size: u64,
}

fn source_location(source: &Source, upstream_url: Option<String>, rel: &str) -> String {
    match source {
        Source::Upstream => upstream_url.unwrap_or_else(|| rel.to_string()),
        Source::Http(base) => format!("{}/{rel}", base.trim_end_matches('/')),
        Source::Dir(d) => d.join(rel).display().to_string(),
    }
}

async fn fetch_one(ctx: &Ctx, job: &Job) -> Result<Outcome, ArtifactsError> {
    let expected = match &job.expected {
        Some(e) => e.clone(),
        None => match &job.checksum_url {
            Some(url) => sidecar_sha256(ctx, url, &job.rel).await?,
            None => {
                return Err(ArtifactsError::NoChecksum {
                    file: job.rel.clone(),
                    arch: job.arch.clone(),
                    manifest: ctx.manifest_name.clone(),
                });
            }
        },
    };
    // Re-runs download only what is missing (or no longer matches).
    if job.dest.exists() {
        let dest = job.dest.clone();
        let actual = tokio::task::spawn_blocking(move || sha256_file(&dest))
            .await
            .map_err(|e| ArtifactsError::Download {
                url: job.rel.clone(),
                reason: e.to_string(),
            })?
            .map_err(|e| ArtifactsError::Download {
                url: job.rel.clone(),
                reason: e.to_string(),
            })?;
        if actual == expected {
            return Ok(Outcome {
                downloaded: false,
                size: file_size(&job.dest)?,
                sha256: actual,
            });
        }
        let _ = std::fs::remove_file(&job.dest);
    }
    let parent = job.dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(ArtifactsError::io(parent))?;
    let file_name = job
        .dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.part-{}", std::process::id()));
    let bar = ctx.multi.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:<40!} {bytes:>10}/{total_bytes:<10} {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(file_name.clone());
    let res = download_to(ctx, job, &tmp, &bar).await;
    bar.finish_and_clear();
    ctx.multi.remove(&bar);
    let (actual, size) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if actual != expected {
        let _ = std::fs::remove_file(&tmp);
        return Err(ArtifactsError::Checksum {
            file: job.rel.clone(),
            expected,
            actual,
            manifest: ctx.manifest_name.clone(),
        });
    }
    std::fs::rename(&tmp, &job.dest).map_err(ArtifactsError::io(&job.dest))?;
    let _ = ctx.multi.println(format!(
        "fetched {} ({}), sha256 ok",
        job.rel,
        super::human_size(size)
    ));
    Ok(Outcome {
        downloaded: true,
        sha256: actual,
        size,
    })
}

/// Stream the file into `tmp`, hashing as it goes.
async fn download_to(
    ctx: &Ctx,
    job: &Job,
    tmp: &Path,
    bar: &ProgressBar,
) -> Result<(String, u64), ArtifactsError> {
    let mut hasher = Sha256::new();
    let mut out = tokio::fs::File::create(tmp)
        .await
        .map_err(ArtifactsError::io(tmp))?;
    let mut size = 0u64;
    match &ctx.source {
        Source::Dir(d) => {
            let src = d.join(&job.rel);
            let mut f = tokio::fs::File::open(&src)
                .await
                .map_err(ArtifactsError::io(&src))?;
            if let Ok(m) = f.metadata().await {
                bar.set_length(m.len());
            }
            let mut buf = vec![0u8; 1 << 20];
            loop {
                use tokio::io::AsyncReadExt;
                let n = f.read(&mut buf).await.map_err(ArtifactsError::io(&src))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .await
                    .map_err(ArtifactsError::io(tmp))?;
                size += n as u64;
                bar.inc(n as u64);
            }
        }
        source => {
            let url = source_location(source, job.url.clone(), &job.rel);
            let err = |reason: String| ArtifactsError::Download {
                url: url.clone(),
                reason,
            };
            let resp = ctx
                .client
                .get(&url)
                .send()
                .await
                .map_err(|e| err(error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(err(format!("HTTP {}", resp.status())));
            }
            if let Some(len) = resp.content_length() {
                bar.set_length(len);
            }
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| err(error_chain(&e)))?;
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(ArtifactsError::io(tmp))?;
                size += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
        }
    }
    out.flush().await.map_err(ArtifactsError::io(tmp))?;
    out.sync_all().await.map_err(ArtifactsError::io(tmp))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// The first word of an upstream `.sha256` file.
async fn sidecar_sha256(ctx: &Ctx, url: &str, rel: &str) -> Result<String, ArtifactsError> {
    let sidecar_rel = url
        .split_once("://")
        .map(|(_, r)| r.to_string())
        .unwrap_or_else(|| url.to_string());
    let location = source_location(&ctx.source, Some(url.to_string()), &sidecar_rel);
    let text = match &ctx.source {
        Source::Dir(d) => std::fs::read_to_string(d.join(&sidecar_rel))
            .map_err(ArtifactsError::io(d.join(&sidecar_rel)))?,
        _ => {
            let err = |reason: String| ArtifactsError::Download {
                url: location.clone(),
                reason,
            };
            let resp = ctx
                .client
                .get(&location)
                .send()
                .await
                .map_err(|e| err(error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(err(format!("HTTP {}", resp.status())));
            }
            resp.text().await.map_err(|e| err(error_chain(&e)))?
        }
    };
    let sha = text.split_whitespace().next().unwrap_or("").to_lowercase();
    if !super::pinned::is_sha256(&sha) {
        return Err(ArtifactsError::Manifest {
            file: location,
            reason: format!("checksum file for {rel} holds no sha256"),
        });
    }
    Ok(sha)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Put a component's files into the mirror; returns (path, sha256, size) per file, in order.
fn unpack(
    download: &Path,
    rel: &str,
    c: &super::pinned::Component,
    arch: &str,
    mirror: &Path,
    prefix: &str,
) -> Result<Vec<(String, String, u64)>, ArtifactsError> {
    let mut out: Vec<Option<(String, String, u64)>> = vec![None; c.files.len()];
    let targets: Vec<String> = c
        .files
        .iter()
        .map(|f| format!("{prefix}{}", expand(&f.path, &c.version, arch)))
        .collect();
    // Plain files: the download itself.
    for (i, f) in c.files.iter().enumerate() {
        if f.member.is_none() {
            let dest = mirror.join(&targets[i]);
            let mut src = std::fs::File::open(download).map_err(ArtifactsError::io(download))?;
            out[i] = Some(write_executable(&dest, &targets[i], &mut src)?);
        }
    }
    let members: BTreeMap<String, usize> = c
        .files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.member.as_ref().map(|m| {
                (
                    normalize_member(&expand(m, &c.version, arch)).to_string(),
                    i,
                )
            })
        })
        .collect();
    if !members.is_empty() {
        let mut file = std::fs::File::open(download).map_err(ArtifactsError::io(download))?;
        let mut magic = [0u8; 2];
        let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
        let file = std::fs::File::open(download).map_err(ArtifactsError::io(download))?;
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(ArtifactsError::io(download))?;
        for entry in entries {
            let mut entry = entry.map_err(ArtifactsError::io(download))?;
            let name = entry
                .path()
                .map_err(ArtifactsError::io(download))?
                .to_string_lossy()
                .into_owned();
            if let Some(&i) = members.get(normalize_member(&name))
                && entry.header().entry_type().is_file()
            {
                let dest = mirror.join(&targets[i]);
                out[i] = Some(write_executable(&dest, &targets[i], &mut entry)?);
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.ok_or_else(|| ArtifactsError::Member {
                archive: rel.to_string(),
                member: c.files[i]
                    .member
                    .as_deref()
                    .map(|m| expand(m, &c.version, arch))
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Write `src` to `dest` (mode 0755) through a temporary name; returns (rel, sha256, size).
fn write_executable(
    dest: &Path,
    rel: &str,
    src: &mut dyn Read,
) -> Result<(String, String, u64), ArtifactsError> {
    use std::os::unix::fs::PermissionsExt;
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(ArtifactsError::io(parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(ArtifactsError::io(&tmp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(ArtifactsError::io(dest))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(ArtifactsError::io(&tmp))?;
        size += n as u64;
    }
    f.set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(ArtifactsError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, dest).map_err(ArtifactsError::io(dest))?;
    Ok((rel.to_string(), hex::encode(hasher.finalize()), size))
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ArtifactsError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(ArtifactsError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ArtifactsError::io(path))
}

fn file_size(path: &Path) -> Result<u64, ArtifactsError> {
    Ok(std::fs::metadata(path)
        .map_err(ArtifactsError::io(path))?
        .len())
}

/// reqwest is built without a rustls crypto provider of its own; use ring (as kube does).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
