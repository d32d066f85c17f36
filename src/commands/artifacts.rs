//! `director-boot artifacts fetch|verify|list|export|bundle`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::artifacts::fetch::{FetchOptions, Source};
use crate::artifacts::pinned::{ARCHES, Pinned};
use crate::artifacts::{bundle, human_size, mirror};
use crate::paths::Paths;

#[derive(Debug, Clone, Args)]
pub struct MirrorArg {
    /// Artifact mirror directory; default: <cache>/mirror (as init).
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
}

impl MirrorArg {
    fn dir(&self, paths: &Paths) -> PathBuf {
        self.artifacts
            .clone()
            .unwrap_or_else(|| paths.cache.join("mirror"))
    }
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Download the pinned components (from upstream, or a web server / bundle in the
    /// upstream layout), check every sha256, unpack into the mirror. Re-runs fetch only
    /// what is missing.
    Fetch {
        /// A web server in the upstream layout (BASE/<host>/<path>, like kubespray's
        /// files_repo), a directory in that layout, or a bundle file (`artifacts bundle`).
        #[arg(long, value_name = "URL|DIR|FILE")]
        from: Option<String>,
        /// Pinned manifest to check against (default: the built-in one; for a bundle, the
        /// bundle's own).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Architectures (comma-separated); the first one is the mirror's bin/ and cni/.
        #[arg(long, value_delimiter = ',', default_value = "amd64")]
        arch: Vec<String>,
        /// Downloads at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
        concurrency: u32,
        #[command(flatten)]
        mirror: MirrorArg,
    },
    /// Re-hash every file of the mirror and name every mismatch (exit 1).
    Verify {
        #[command(flatten)]
        mirror: MirrorArg,
    },
    /// Component, version, architecture and size of everything in the mirror.
    List {
        #[command(flatten)]
        mirror: MirrorArg,
    },
    /// Write the mirror's downloads in the upstream layout plus its pinned.yaml into OUTDIR,
    /// ready for a web server (`fetch --from URL --manifest OUTDIR/pinned.yaml`).
    Export {
        outdir: PathBuf,
        #[command(flatten)]
        mirror: MirrorArg,
    },
    /// Write the export as one zstd-compressed tar, for sites without a web server
    /// (`fetch --from FILE`, `init --artifacts FILE`).
    Bundle {
        file: PathBuf,
        #[command(flatten)]
        mirror: MirrorArg,
    },
}

pub async fn run(paths: &Paths, cmd: ArtifactsCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        ArtifactsCommand::Fetch {
            from,
            manifest,
            arch,
            concurrency,
            mirror,
        } => {
            fetch(
                paths,
                &mirror.dir(paths),
                from,
                manifest,
                arch,
                concurrency,
                json,
            )
            .await
        }
        ArtifactsCommand::Verify { mirror } => {
            let dir = mirror.dir(paths);
            let r = mirror::verify(&dir)
                .with_context(|| format!("cannot verify the mirror {}", dir.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for p in &r.problems {
                    println!("MISMATCH {p}");
                }
                println!(
                    "{}: {} files checked ({}), {} problem(s)",
                    dir.display(),
                    r.checked,
                    human_size(r.bytes),
                    r.problems.len()
                );
            }
            Ok(if r.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ArtifactsCommand::List { mirror } => {
            let dir = mirror.dir(paths);
            let rows = mirror::list(&dir)
                .with_context(|| format!("cannot read the mirror {}", dir.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.version.clone(),
                            r.arch.clone(),
                            r.kind.clone(),
                            human_size(r.size),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::output::table(&["COMPONENT", "VERSION", "ARCH", "KIND", "SIZE"], &table)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ArtifactsCommand::Export { outdir, mirror } => {
            let dir = mirror.dir(paths);
            let r = mirror::export(&dir, &outdir).with_context(|| {
                format!("cannot export {} to {}", dir.display(), outdir.display())
            })?;
            report_export(&r, &outdir, json)?;
            Ok(ExitCode::SUCCESS)
        }
        ArtifactsCommand::Bundle { file, mirror } => {
            let dir = mirror.dir(paths);
            let r = bundle::write(&dir, &file).with_context(|| {
                format!("cannot bundle {} into {}", dir.display(), file.display())
            })?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"file": file, "files": r.files, "bytes": r.bytes, "size": size})
                );
            } else {
                println!(
                    "{}: {} files ({} -> {} zstd)",
                    file.display(),
                    r.files,
                    human_size(r.bytes),
                    human_size(size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_export(r: &mirror::ExportReport, outdir: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "{}: {} files ({}) in the upstream layout, manifest {}",
            outdir.display(),
            r.files,
            human_size(r.bytes),
            r.manifest.display()
        );
    }
    Ok(())
}

async fn fetch(
    paths: &Paths,
    dir: &Path,
    from: Option<String>,
    manifest: Option<PathBuf>,
    arches: Vec<String>,
    concurrency: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    for a in &arches {
        if !ARCHES.contains(&a.as_str()) {
            anyhow::bail!("--arch {a}: not one of {}", ARCHES.join(", "));
        }
    }
    let (source, bundle_manifest) = match from.as_deref() {
        None => (Source::Upstream, None),
        Some(from) => source(paths, from).with_context(|| format!("--from {from}"))?,
    };
    let (pinned, manifest_name) = pinned(manifest.or(bundle_manifest), "--manifest")?;
    let started = std::time::Instant::now();
    let report = crate::artifacts::fetch::fetch(
        dir,
        FetchOptions {
            source,
            pinned,
            manifest_name,
            arches,
            concurrency: concurrency as usize,
            show_progress: !json && std::io::stderr().is_terminal(),
        },
    )
    .await
    .with_context(|| format!("artifacts fetch into {} failed", dir.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "mirror": dir,
                "downloaded": report.downloaded,
                "present": report.present,
                "skipped": report.skipped,
                "bytes": report.bytes,
            })
        );
    } else {
        for s in &report.skipped {
            eprintln!("skipped: {s}");
        }
        println!(
            "{}: {} downloaded ({}), {} already present, {} skipped, in {:.1}s",
            dir.display(),
            report.downloaded.len(),
            human_size(report.bytes),
            report.present.len(),
            report.skipped.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where to fetch from: an http(s) URL, a directory in the upstream layout, or a bundle file
/// (unpacked into the cache; its own pinned.yaml is the manifest unless one is given).
fn source(paths: &Paths, from: &str) -> anyhow::Result<(Source, Option<PathBuf>)> {
    if from.starts_with("http://") || from.starts_with("https://") {
        return Ok((Source::Http(from.to_string()), None));
    }
    let p = PathBuf::from(from);
    if p.is_dir() {
        Ok((Source::Dir(p), None))
    } else if p.is_file() {
        let src = bundle::unpack(&paths.cache, &p)
            .with_context(|| format!("cannot open the bundle {}", p.display()))?;
        let m = src.join("pinned.yaml");
        Ok((Source::Dir(src), Some(m)))
    } else {
        anyhow::bail!(
            "{}: neither an http(s) URL nor an existing directory or bundle file",
            p.display()
        )
    }
}

/// The pinned manifest to check downloads against, and how to name it in errors.
fn pinned(manifest: Option<PathBuf>, field: &str) -> anyhow::Result<(Pinned, String)> {
    Ok(match manifest {
        Some(m) => (
            Pinned::load(&m).with_context(|| format!("{field} {}", m.display()))?,
            m.display().to_string(),
        ),
        None => (
            Pinned::builtin()?,
            "the built-in pinned manifest".to_string(),
        ),
    })
}

/// `init` with the inventory's `artifacts:` and no `--artifacts`: fetch what the mirror lacks
/// (nothing, on a re-run) before the phases start, for the mirror's architectures (amd64 for
/// a new mirror; preflight names a host whose architecture the mirror does not hold).
pub async fn fetch_for_init(
    paths: &Paths,
    dir: &Path,
    src: &crate::inventory::ArtifactsSource,
    json: bool,
) -> anyhow::Result<()> {
    let (source, bundle_manifest) = source(paths, &src.url).context("artifacts.url")?;
    let (pinned, manifest_name) = pinned(
        src.manifest.clone().or(bundle_manifest),
        "artifacts.manifest",
    )?;
    let arches = match mirror::MirrorManifest::open(dir) {
        Ok(m) => m.all_arches(),
        Err(_) => vec!["amd64".to_string()],
    };
    let started = std::time::Instant::now();
    let report = crate::artifacts::fetch::fetch(
        dir,
        FetchOptions {
            source,
            pinned,
            manifest_name,
            arches,
            concurrency: 4,
            show_progress: !json && std::io::stderr().is_terminal(),
        },
    )
    .await
    .with_context(|| {
        format!(
            "artifacts: fetching from {} into {} failed (the inventory's artifacts.url)",
            src.url,
            dir.display()
        )
    })?;
    if !report.downloaded.is_empty() {
        eprintln!(
            "artifacts: {} file(s) fetched from {} ({}) in {:.1}s",
            report.downloaded.len(),
            src.url,
            human_size(report.bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
