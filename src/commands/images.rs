//! `director-boot images load INVENTORY FILE...`: side-load image archives into the nodes'
//! containerd (namespace k8s.io), for clusters that reach no registry. The archives are read
//! first (names, digests, sha256), so a bad file fails before any host is touched; then every
//! host goes at once: inspect, upload what is not staged yet, import what containerd lacks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::connect::load_inventory;
use crate::cli::{ImagesCommand, SshArgs};
use crate::engine::image_archive::ImageArchive;
use crate::engine::images::{Ctr, LoadError, LoadPhase, LoadState, Loaded, load_archives};
use crate::fanout::{self, HostResult};
use crate::fleet::{peer_of, select_hosts, ssh_config};
use crate::node::Node;
use crate::paths::Paths;
use crate::progress::HostProgress;

pub async fn run(paths: &Paths, command: ImagesCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        ImagesCommand::Load {
            inventory,
            files,
            hosts,
            containerd_address,
            ssh,
        } => {
            load(
                paths,
                LoadArgs {
                    inventory: &inventory,
                    files: &files,
                    hosts: hosts.as_deref(),
                    ctr: Ctr {
                        address: containerd_address,
                    },
                    ssh: &ssh,
                    json,
                },
            )
            .await
        }
    }
}

pub struct LoadArgs<'a> {
    pub inventory: &'a Path,
    pub files: &'a [PathBuf],
    pub hosts: Option<&'a str>,
    pub ctr: Ctr,
    pub ssh: &'a SshArgs,
    pub json: bool,
}

/// Read every archive (in parallel: hashing a GB takes seconds); names on the nodes must differ.
pub async fn open_archives(files: &[PathBuf]) -> anyhow::Result<Vec<ImageArchive>> {
    let jobs = files.iter().cloned().map(|f| {
        tokio::task::spawn_blocking(move || ImageArchive::open(&f).map_err(anyhow::Error::from))
    });
    let mut archives: Vec<ImageArchive> = Vec::new();
    for opened in futures::future::join_all(jobs).await {
        let a = opened.context("reading an image archive")??;
        if let Some(same) = archives.iter().find(|b| b.file_name == a.file_name) {
            anyhow::bail!(
                "{} and {} have the same file name, which is their name on the nodes; rename one",
                same.path.display(),
                a.path.display()
            );
        }
        archives.push(a);
    }
    Ok(archives)
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// `603 MiB`, or `12 KiB` below a MiB.
fn human(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    } else {
        format!("{} MiB", mib(bytes))
    }
}

/// One result line per image, e.g. `node2: imported localhost/x:1 (603 MiB; upload 12.3 s ...)`.
pub fn describe(host: &str, l: &Loaded) -> String {
    match l.state {
        LoadState::Present => format!("{host}: {} already present", l.reference),
        LoadState::Imported => {
            let size = human(l.size);
            let import = l.import_seconds.unwrap_or_default();
            match l.upload_seconds {
                Some(up) => format!(
                    "{host}: imported {} ({size}; upload {up:.1} s at {:.0} MiB/s, import {import:.1} s)",
                    l.reference,
                    l.size as f64 / f64::from(1u32 << 20) / up.max(0.001)
                ),
                None => format!(
                    "{host}: imported {} ({size}, already staged; import {import:.1} s)",
                    l.reference
                ),
            }
        }
    }
}

async fn load(paths: &Paths, a: LoadArgs<'_>) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(a.inventory)?;
    let cfg = ssh_config(paths, &inv, &a.ssh.fleet())?;
    let targets = select_hosts(&inv, a.hosts)?;
    let archives = open_archives(a.files).await?;
    let progress = HostProgress::new(a.json);
    if !a.json {
        for ar in &archives {
            progress.println(&format!(
                "{}: {} ({}, {})",
                ar.path.display(),
                ar.references().join(", "),
                human(ar.size),
                match ar.format {
                    crate::engine::image_archive::Format::Oci => "OCI layout",
                    crate::engine::image_archive::Format::Docker => "docker archive",
                }
            ));
        }
    }
    let items: Vec<_> = targets
        .iter()
        .map(|h| (h.clone(), peer_of(&inv, h)))
        .collect();
    let (archives_ref, ctr_ref, progress_ref, json) = (&archives, &a.ctr, &progress, a.json);
    let results: Vec<HostResult<Vec<Loaded>>> = fanout::for_each(
        items,
        a.ssh.concurrency as usize,
        |(h, _)| h.name.clone(),
        |(host, peer)| {
            let cfg = cfg.clone();
            let bar = progress_ref.host(&host.name, "connecting");
            async move {
                let outcome = async {
                    let node =
                        Node::open(&host, &peer, &cfg, false)
                            .await
                            .map_err(|e| LoadError {
                                host: host.name.clone(),
                                phase: LoadPhase::Connect,
                                reason: e.to_string(),
                                hint: None,
                            })?;
                    let say = |m: &str| bar.set_message(m.to_string());
                    let loaded = load_archives(&node, archives_ref, ctr_ref, &say).await;
                    node.session.close().await;
                    loaded
                }
                .await;
                bar.finish_and_clear();
                // Each host's lines as soon as it is done.
                if !json {
                    match &outcome {
                        Ok(loaded) => {
                            for l in loaded {
                                progress_ref.println(&describe(&host.name, l));
                            }
                        }
                        Err(e) => progress_ref.println(&format!("FAILED {e}")),
                    }
                }
                outcome.map_err(anyhow::Error::from)
            }
        },
    )
    .await;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&archives, &results))?
        );
    }
    Ok(super::summarize(&results, a.json))
}

fn json_report(
    archives: &[ImageArchive],
    results: &[HostResult<Vec<Loaded>>],
) -> serde_json::Value {
    let hosts: Vec<_> = results
        .iter()
        .map(|r| match &r.result {
            Ok(images) => serde_json::json!({
                "host": r.host, "ok": true, "seconds": r.elapsed.as_secs_f64(), "images": images,
            }),
            Err(e) => {
                let load = e.downcast_ref::<LoadError>();
                serde_json::json!({
                    "host": r.host, "ok": false, "seconds": r.elapsed.as_secs_f64(),
                    "phase": load.map(|l| l.phase),
                    "error": load.map(|l| l.reason.clone()).unwrap_or_else(|| format!("{e:#}")),
                    "hint": load.and_then(|l| l.hint.clone()),
                })
            }
        })
        .collect();
    serde_json::json!({
        "command": "images load",
        "ok": results.iter().all(|r| r.result.is_ok()),
        "archives": archives,
        "hosts": hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn loaded(state: LoadState, up: Option<f64>) -> Loaded {
        Loaded {
            reference: "localhost/director-boot/spark:4.0.1".into(),
            archive: "/c/spark.tar".into(),
            size: 603 << 20,
            state,
            uploaded: up.is_some(),
            upload_seconds: up,
            import_seconds: (state == LoadState::Imported).then_some(30.0),
        }
    }

    #[test]
    fn result_lines() {
        assert_eq!(
            describe("node2", &loaded(LoadState::Imported, Some(12.06))),
            "node2: imported localhost/director-boot/spark:4.0.1 (603 MiB; upload 12.1 s at 50 MiB/s, import 30.0 s)"
        );
        assert_eq!(
            describe("node2", &loaded(LoadState::Imported, None)),
            "node2: imported localhost/director-boot/spark:4.0.1 (603 MiB, already staged; import 30.0 s)"
        );
        assert_eq!(
            describe("node2", &loaded(LoadState::Present, None)),
            "node2: localhost/director-boot/spark:4.0.1 already present"
        );
    }

    #[test]
    fn json_names_phase_and_hint() {
        let results = vec![
            HostResult {
                host: "node1".into(),
                result: Ok(vec![loaded(LoadState::Present, None)]),
                elapsed: Duration::from_secs(1),
            },
            HostResult {
                host: "node2".into(),
                result: Err(anyhow::Error::from(LoadError {
                    host: "node2".into(),
                    phase: LoadPhase::Import,
                    reason: "containerd is not running on node2".into(),
                    hint: Some("run `director-boot init` first".into()),
                })),
                elapsed: Duration::from_secs(2),
            },
        ];
        let v = json_report(&[], &results);
        assert_eq!(v["ok"], false);
        assert_eq!(v["hosts"][0]["images"][0]["state"], "present");
        assert_eq!(v["hosts"][1]["phase"], "import");
        assert_eq!(v["hosts"][1]["hint"], "run `director-boot init` first");
    }

    #[tokio::test]
    async fn archives_with_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let index = br#"{"manifests":[{"digest":"sha256:d","annotations":{"org.opencontainers.image.ref.name":"localhost/x:1"}}]}"#;
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(index.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "index.json", &index[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("x.tar"), &bytes).unwrap();
        }
        let files = [dir.path().join("a/x.tar"), dir.path().join("b/x.tar")];
        let err = open_archives(&files).await.unwrap_err();
        assert!(err.to_string().contains("same file name"), "{err}");
        let one = open_archives(&files[..1]).await.unwrap();
        assert_eq!(one[0].references(), ["localhost/x:1"]);
        let err = open_archives(&[dir.path().join("missing.tar")])
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
    }
}
