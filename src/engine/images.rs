//! Side-load container images into a node's containerd, for clusters with no registry: the
//! mirror's archives during `init`, and any archive with `director-boot images load`. Skips
//! images already present with the same archive.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;

use super::artifacts::{Artifact, Artifacts, Kind};
use super::image_archive::ImageArchive;
use crate::node::{Node, NodeError, shell_quote};
use crate::ssh::Output;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Artifact(#[from] super::artifacts::ArtifactError),
}

const IMAGE_DIR: &str = "/var/lib/director-boot/images";

/// Import one OCI archive already on the node.
pub async fn import(node: &Node, archive: &str) -> Result<(), NodeError> {
    node.sudo_ok(&format!(
        "ctr -n k8s.io images import {}",
        shell_quote(archive)
    ))
    .await
    .map(|_| ())
}

/// Image archives one node imports at once.
const IMPORTS_AT_ONCE: usize = 3;

/// The mirror's images as (artifact, archive path on the node).
fn archives(artifacts: &Artifacts) -> Vec<(&Artifact, String)> {
    artifacts
        .all()
        .filter(|a| a.kind == Kind::Image && a.reference.is_some())
        .map(|a| (a, format!("{IMAGE_DIR}/{}.tar", a.name)))
        .collect()
}

/// Put every image archive on the node (verified, skipped when already there); returns the
/// change lines and the references whose archive was (or would be) written.
async fn copy_archives<'a>(
    node: &Node,
    artifacts: &'a Artifacts,
) -> Result<(Vec<String>, Vec<&'a str>), ImageError> {
    let images = archives(artifacts);
    let dests: Vec<String> = images.iter().map(|(_, d)| d.clone()).collect();
    let snap = node.snapshot(&dests, &[], &[]).await?;
    let (mut changes, mut copied, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    for (a, dest) in &images {
        if snap.file_matches(dest, &a.sha256, 0o644) {
            continue;
        }
        if !node.dry_run {
            artifacts.verify(a)?;
            node.session
                .upload_file(&artifacts.path(a), dest, 0o644)
                .await
                .map_err(NodeError::from)?;
            sums.push((dest.clone(), a.sha256.clone()));
        }
        let verb = if node.dry_run { "would write" } else { "wrote" };
        changes.push(format!("{verb} {dest}"));
        copied.push(a.reference.as_deref().unwrap_or_default());
    }
    node.remember_sums(&sums).await?;
    Ok((changes, copied))
}

/// The artifacts phase's part: image archives onto the node before containerd runs. Returns
/// the change lines and the archive paths written.
pub async fn stage_archives(
    node: &Node,
    artifacts: &Artifacts,
) -> Result<(Vec<String>, Vec<String>), ImageError> {
    let (changes, copied) = copy_archives(node, artifacts).await?;
    let written = archives(artifacts)
        .into_iter()
        .filter(|(a, _)| copied.contains(&a.reference.as_deref().unwrap_or_default()))
        .map(|(_, d)| d)
        .collect();
    Ok((changes, written))
}

/// Make every image of the mirror present in the node's containerd; returns change lines.
/// `staged`: archive paths the artifacts phase wrote this run (to be imported again).
pub async fn load_all(
    node: &Node,
    artifacts: &Artifacts,
    staged: Option<&std::collections::BTreeSet<String>>,
) -> Result<Vec<String>, ImageError> {
    let (mut changes, copied) = copy_archives(node, artifacts).await?;
    // No containerd yet (dry run on a fresh host): nothing is present.
    let listed = node
        .session
        .sudo("ctr -n k8s.io images ls -q")
        .await
        .map_err(NodeError::from)?;
    let present: Vec<&str> = if listed.success() {
        listed.stdout.lines().collect()
    } else {
        Vec::new()
    };
    let wanted: Vec<(&str, String)> = archives(artifacts)
        .into_iter()
        .filter_map(|(a, dest)| {
            let reference = a.reference.as_deref().unwrap_or_default();
            let fresh = staged.is_some_and(|s| s.contains(&dest));
            (fresh || copied.contains(&reference) || !present.contains(&reference))
                .then_some((reference, dest))
        })
        .collect();
    if node.dry_run {
        changes.extend(wanted.iter().map(|(r, _)| format!("would import {r}")));
        return Ok(changes);
    }
    // containerd unpacks one archive while the next is read: a few at once.
    let results: Vec<Result<(), NodeError>> =
        futures::stream::iter(wanted.iter().map(|(_, dest)| import(node, dest)))
            .buffered(IMPORTS_AT_ONCE)
            .collect()
            .await;
    for ((reference, dest), r) in wanted.iter().zip(results) {
        // Two archives holding one layer can meet in containerd's ingest lock: that one
        // goes again alone.
        if r.is_err() {
            import(node, dest).await?;
        }
        changes.push(format!("imported {reference}"));
    }
    Ok(changes)
}

// ---- `director-boot images load`: any archive, onto any node, on demand ----------------

/// Where `images load` stages archives on a node, apart from the mirror's (which `init` owns).
pub const LOADED_DIR: &str = "/var/lib/director-boot/images/loaded";
/// containerd's socket on nodes `init` set up (and on most others).
pub const DEFAULT_CONTAINERD_ADDRESS: &str = "/run/containerd/containerd.sock";
/// Room kept free beyond the archive itself when staging it.
const SPACE_SLACK: u64 = 64 << 20;
/// Exit codes of the inspect script.
const NO_CTR: u32 = 41;
const NO_SOCKET: u32 = 42;

/// The step of `images load` that failed on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadPhase {
    /// Reaching the host (SSH and facts).
    Connect,
    /// Asking containerd what it has and the disk how much room there is.
    Inspect,
    Upload,
    Import,
}

impl std::fmt::Display for LoadPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadPhase::Connect => "connect",
            LoadPhase::Inspect => "inspect",
            LoadPhase::Upload => "upload",
            LoadPhase::Import => "import",
        })
    }
}

/// Why loading failed on one host, in which phase, and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host}: {phase} failed: {reason}{}", .hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct LoadError {
    pub host: String,
    pub phase: LoadPhase,
    pub reason: String,
    pub hint: Option<String>,
}

/// What happened to one image on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadState {
    /// containerd already had it (same digest, or the same archive staged and imported).
    Present,
    Imported,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Loaded {
    pub reference: String,
    pub archive: std::path::PathBuf,
    pub size: u64,
    pub state: LoadState,
    /// Whether the archive went over the wire (false: the staged copy was already right).
    pub uploaded: bool,
    pub upload_seconds: Option<f64>,
    pub import_seconds: Option<f64>,
}

/// `ctr` against one containerd, in the namespace the kubelet's CRI uses.
#[derive(Debug, Clone)]
pub struct Ctr {
    pub address: String,
}

impl Default for Ctr {
    fn default() -> Self {
        Ctr {
            address: DEFAULT_CONTAINERD_ADDRESS.into(),
        }
    }
}

impl Ctr {
    fn command(&self, args: &str) -> String {
        format!(
            "ctr --address {} -n k8s.io {args}",
            shell_quote(&self.address)
        )
    }

    /// Script printing `free <KiB>` for the staging dir, then `ctr images ls`; exits
    /// NO_CTR / NO_SOCKET before asking a containerd that is not there (ctr would wait for
    /// its dial timeout).
    fn inspect_script(&self) -> String {
        format!(
            "command -v ctr >/dev/null 2>&1 || exit {NO_CTR}; [ -S {a} ] || exit {NO_SOCKET}; \
             mkdir -p {d} && df -Pk {d} | awk 'NR == 2 {{ print \"free\", $4 }}' && {ls}",
            a = shell_quote(&self.address),
            d = shell_quote(LOADED_DIR),
            ls = self.command("images ls"),
        )
    }
}

/// What the inspect script found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Inspection {
    free_bytes: Option<u64>,
    /// Image name -> target digest, as `ctr images ls` lists them.
    images: HashMap<String, String>,
}

fn parse_inspection(stdout: &str) -> Inspection {
    let mut found = Inspection::default();
    for line in stdout.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            ["free", kib] => found.free_bytes = kib.parse::<u64>().ok().map(|k| k * 1024),
            ["REF", ..] => {}
            [name, _media_type, digest, ..] if digest.starts_with("sha256:") => {
                found.images.insert(name.to_string(), digest.to_string());
            }
            _ => {}
        }
    }
    found
}

/// Does containerd already hold every image of the archive? With a digest in the archive
/// (OCI) the listed target must match; without (docker), the staged copy must be this archive
/// (it was imported after it was staged).
fn all_present(archive: &ImageArchive, listed: &HashMap<String, String>, staged: bool) -> bool {
    archive
        .images
        .iter()
        .all(|i| match (listed.get(&i.reference), &i.digest) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => staged,
            (None, _) => false,
        })
}

/// A `ctr` failure as a LoadError with advice.
fn ctr_failure(host: &str, phase: LoadPhase, ctr: &Ctr, out: &Output) -> LoadError {
    let err = crate::node::last_lines(&out.stderr, 5);
    let init = "run `director-boot init` first";
    let (reason, hint) = if out.exit_code == NO_CTR || out.exit_code == 127 {
        (
            format!("ctr (containerd's client) is not installed on {host}"),
            Some(init.to_string()),
        )
    } else if out.exit_code == NO_SOCKET
        || err.contains("failed to dial")
        || err.contains("connection refused")
    {
        (
            format!(
                "containerd is not running on {host} (nothing answers at {})",
                ctr.address
            ),
            Some(format!(
                "{init}; if containerd listens elsewhere (k3s: /run/k3s/containerd/containerd.sock), pass --containerd-address"
            )),
        )
    } else if err.contains("no space left") {
        (
            format!("{host} ran out of disk space: {err}"),
            Some(format!(
                "free space on {host} (containerd keeps images under /var/lib/containerd)"
            )),
        )
    } else {
        (format!("`ctr` exited {}: {err}", out.exit_code), None)
    };
    LoadError {
        host: host.to_string(),
        phase,
        reason,
        hint,
    }
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Make every image of `archives` present in the node's containerd: archives are staged under
/// LOADED_DIR (skipped when the staged copy has the same sha256) and imported unless containerd
/// already lists each of their images (same digest). `say` gets progress messages.
pub async fn load_archives(
    node: &Node,
    archives: &[ImageArchive],
    ctr: &Ctr,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Loaded>, LoadError> {
    let host = node.name().to_string();
    let fail = |phase, reason: String, hint: Option<String>| LoadError {
        host: host.clone(),
        phase,
        reason,
        hint,
    };
    let ssh_fail = |phase, e: &dyn std::fmt::Display| fail(phase, e.to_string(), None);

    say("inspecting");
    let out = node
        .session
        .sudo(&ctr.inspect_script())
        .await
        .map_err(|e| ssh_fail(LoadPhase::Inspect, &e))?;
    if !out.success() {
        return Err(ctr_failure(&host, LoadPhase::Inspect, ctr, &out));
    }
    let found = parse_inspection(&out.stdout);
    let dests: Vec<String> = archives
        .iter()
        .map(|a| format!("{LOADED_DIR}/{}", a.file_name))
        .collect();
    let snap = node
        .snapshot(&dests, &[], &[])
        .await
        .map_err(|e| ssh_fail(LoadPhase::Inspect, &e))?;

    let mut results = Vec::new();
    for (a, dest) in archives.iter().zip(&dests) {
        let staged = snap.file_matches(dest, &a.sha256, 0o644);
        if all_present(a, &found.images, staged) {
            results.extend(a.images.iter().map(|i| Loaded {
                reference: i.reference.clone(),
                archive: a.path.clone(),
                size: a.size,
                state: LoadState::Present,
                uploaded: false,
                upload_seconds: None,
                import_seconds: None,
            }));
            continue;
        }
        let mut upload_seconds = None;
        if !staged {
            if let Some(free) = found.free_bytes {
                // The new copy is written next to a stale one before it replaces it.
                if free < a.size + SPACE_SLACK {
                    return Err(fail(
                        LoadPhase::Upload,
                        format!(
                            "{} MiB free in {LOADED_DIR}, {} needs {} MiB",
                            mib(free),
                            a.file_name,
                            mib(a.size + SPACE_SLACK)
                        ),
                        Some(format!("free space on {host}")),
                    ));
                }
            }
            say(&format!("uploading {} ({} MiB)", a.file_name, mib(a.size)));
            let t = Instant::now();
            let file = tokio::fs::File::open(&a.path).await.map_err(|e| {
                fail(
                    LoadPhase::Upload,
                    format!("cannot read {}: {e}", a.path.display()),
                    None,
                )
            })?;
            node.session
                .upload_stream(
                    tokio::io::BufReader::with_capacity(1 << 20, file),
                    &a.sha256,
                    dest,
                    0o644,
                )
                .await
                .map_err(|e| ssh_fail(LoadPhase::Upload, &e))?;
            upload_seconds = Some(t.elapsed().as_secs_f64());
            node.remember_sums(&[(dest.clone(), a.sha256.clone())])
                .await
                .map_err(|e| ssh_fail(LoadPhase::Upload, &e))?;
        }
        say(&format!("importing {}", a.file_name));
        let t = Instant::now();
        let out = node
            .session
            .sudo(&ctr.command(&format!("images import {}", shell_quote(dest))))
            .await
            .map_err(|e| ssh_fail(LoadPhase::Import, &e))?;
        if !out.success() {
            return Err(ctr_failure(&host, LoadPhase::Import, ctr, &out));
        }
        let import_seconds = Some(t.elapsed().as_secs_f64());
        // Trust, but check: the names read from the archive are the ones containerd lists.
        let listed = node
            .session
            .sudo(&ctr.command("images ls -q"))
            .await
            .map_err(|e| ssh_fail(LoadPhase::Import, &e))?;
        let names: Vec<&str> = listed.stdout.lines().collect();
        for i in &a.images {
            if !names.contains(&i.reference.as_str()) {
                return Err(fail(
                    LoadPhase::Import,
                    format!("ctr imported {dest} but does not list {}", i.reference),
                    Some(format!(
                        "see the names the archive gives with `tar -xOf {} index.json`",
                        a.path.display()
                    )),
                ));
            }
        }
        results.extend(a.images.iter().map(|i| Loaded {
            reference: i.reference.clone(),
            archive: a.path.clone(),
            size: a.size,
            state: LoadState::Imported,
            uploaded: upload_seconds.is_some(),
            upload_seconds,
            import_seconds,
        }));
    }
    Ok(results)
}

#[cfg(test)]
mod load_tests {
    use super::*;
    use crate::engine::image_archive::{ArchivedImage, Format};

    fn archive(images: &[(&str, Option<&str>)]) -> ImageArchive {
        ImageArchive {
            path: "/tmp/a.tar".into(),
            file_name: "a.tar".into(),
            size: 10,
            sha256: "00".repeat(32),
            format: Format::Oci,
            images: images
                .iter()
                .map(|(r, d)| ArchivedImage {
                    reference: r.to_string(),
                    digest: d.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn parses_what_the_node_has() {
        // As containerd 1.6's ctr prints it (columns padded with spaces).
        let out = "free 1048576\n\
            REF                                 TYPE                                       DIGEST        SIZE     PLATFORMS   LABELS\n\
            localhost/director-boot/probe:0.1.0 application/vnd.oci.image.manifest.v1+json sha256:005b  11.9 MiB linux/amd64 io.cri-containerd.image=managed\n\
            docker.io/library/busybox:1.35      application/vnd.oci.image.manifest.v1+json sha256:7d6c  1.0 MiB  linux/amd64 -\n";
        let found = parse_inspection(out);
        assert_eq!(found.free_bytes, Some(1 << 30));
        assert_eq!(
            found.images["localhost/director-boot/probe:0.1.0"],
            "sha256:005b"
        );
        assert_eq!(found.images.len(), 2);
        assert_eq!(parse_inspection(""), Inspection::default());
    }

    #[test]
    fn presence_needs_the_same_digest_or_the_same_staged_archive() {
        let listed: HashMap<String, String> = [("a:1".to_string(), "sha256:x".to_string())].into();
        assert!(all_present(
            &archive(&[("a:1", Some("sha256:x"))]),
            &listed,
            false
        ));
        // A different build under the same name is imported again.
        assert!(!all_present(
            &archive(&[("a:1", Some("sha256:y"))]),
            &listed,
            true
        ));
        assert!(!all_present(
            &archive(&[("a:1", Some("sha256:x")), ("b:1", None)]),
            &listed,
            true
        ));
        // docker archives: the digest is containerd's own; the staged sha256 decides.
        assert!(all_present(&archive(&[("a:1", None)]), &listed, true));
        assert!(!all_present(&archive(&[("a:1", None)]), &listed, false));
    }

    #[test]
    fn ctr_failures_say_what_to_do() {
        let ctr = Ctr::default();
        let out = |code, stderr: &str| Output {
            exit_code: code,
            stdout: String::new(),
            stderr: stderr.to_string(),
        };
        let e = ctr_failure("node2", LoadPhase::Inspect, &ctr, &out(NO_SOCKET, ""));
        assert_eq!(
            e.to_string(),
            "node2: inspect failed: containerd is not running on node2 (nothing answers at \
             /run/containerd/containerd.sock); run `director-boot init` first; if containerd \
             listens elsewhere (k3s: /run/k3s/containerd/containerd.sock), pass --containerd-address"
        );
        let e = ctr_failure("node2", LoadPhase::Inspect, &ctr, &out(NO_CTR, ""));
        assert!(
            e.to_string()
                .contains("ctr (containerd's client) is not installed on node2"),
            "{e}"
        );
        let e = ctr_failure(
            "node3",
            LoadPhase::Import,
            &ctr,
            &out(
                1,
                "ctr: failed to dial \"/run/containerd/containerd.sock\": context deadline exceeded",
            ),
        );
        assert!(
            e.to_string()
                .starts_with("node3: import failed: containerd is not running"),
            "{e}"
        );
        let e = ctr_failure(
            "node3",
            LoadPhase::Import,
            &ctr,
            &out(
                1,
                "ctr: failed to ingest: write /var/lib/containerd/x: no space left on device",
            ),
        );
        assert!(e.to_string().contains("free space on node3"), "{e}");
        let e = ctr_failure(
            "node3",
            LoadPhase::Import,
            &ctr,
            &out(1, "ctr: unrecognized image format\n"),
        );
        assert_eq!(
            e.to_string(),
            "node3: import failed: `ctr` exited 1: ctr: unrecognized image format"
        );
    }

    /// The inspect script under /bin/sh: no containerd socket is told apart from no ctr.
    #[test]
    fn inspect_script_runs_under_sh() {
        let dir = tempfile::tempdir().unwrap();
        let ctr = Ctr {
            address: dir.path().join("no.sock").display().to_string(),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("PATH=/nonexistent; {}", ctr.inspect_script()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(NO_CTR as i32));
        let has_ctr = std::process::Command::new("sh")
            .args(["-c", "command -v ctr"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has_ctr {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(ctr.inspect_script())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(NO_SOCKET as i32));
        }
    }
}
