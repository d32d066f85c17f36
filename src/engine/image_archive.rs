//! What an image archive holds, read on the control machine before anything is uploaded: the
//! names `ctr images import` will give its images (OCI image layout or `docker save` format),
//! the manifest digests where the archive fixes them, and the file's sha256.
//!
//! Naming follows containerd's importer (images/archive): in an OCI layout an index entry is
//! named by its `io.containerd.image.name` annotation, else by `org.opencontainers.image.ref.name`
//! when that is a full reference (a bare tag would become `import-<date>:<tag>`); in a docker
//! archive every `RepoTags` entry is normalized (`busybox` -> `docker.io/library/busybox:latest`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::hash::sha256_reader;

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// index.json / manifest.json larger than this is not an image archive's.
const MAX_JSON: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// An OCI image layout (oci-layout, index.json, blobs/) in a tar.
    Oci,
    /// `docker save` output (manifest.json with RepoTags).
    Docker,
}

/// One image of an archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchivedImage {
    /// The name containerd lists after the import (`ctr images ls -q`).
    pub reference: String,
    /// The digest containerd records as the image's target: the index entry's digest in an
    /// OCI layout; unknown for docker archives (containerd writes its own manifest for them).
    pub digest: Option<String>,
}

/// An image archive on the control machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageArchive {
    pub path: PathBuf,
    /// The file name, which is also its name on the nodes.
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
    pub format: Format,
    pub images: Vec<ArchivedImage>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is {kind}-compressed; `ctr images import` takes a plain tar: decompress it first"
    )]
    Compressed { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is not an image archive: it holds neither index.json (OCI image layout) nor manifest.json (docker save)"
    )]
    NotAnArchive { path: PathBuf },
    #[error("{path}: {file} is not valid: {reason}")]
    Invalid {
        path: PathBuf,
        file: &'static str,
        reason: String,
    },
    #[error(
        "{path}: an image is named only by the tag {tag:?}, which ctr would import as \
         import-<date>:{tag}; name it with a full reference (umoci: --image DIR:localhost/NAME:{tag})"
    )]
    TagOnly { path: PathBuf, tag: String },
    #[error(
        "{path} names no image (no {CONTAINERD_NAME} or {OCI_REF_NAME} annotation, no RepoTags): \
         ctr would import it without a name a pod could use"
    )]
    Unnamed { path: PathBuf },
    #[error("{path}: {reference:?} is not an image reference: {reason}")]
    BadReference {
        path: PathBuf,
        reference: String,
        reason: String,
    },
}

impl ImageArchive {
    /// Read an archive's image names and hash it (one pass each; the file may be GBs).
    pub fn open(path: &Path) -> Result<ImageArchive, ArchiveError> {
        let io = |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        let (format, images) = read_images(&mut file, path)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let sha256 = sha256_reader(&mut file).map_err(io)?;
        Ok(ImageArchive {
            path: path.to_path_buf(),
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "archive.tar".into()),
            size: meta.len(),
            sha256,
            format,
            images,
        })
    }

    pub fn references(&self) -> Vec<&str> {
        self.images.iter().map(|i| i.reference.as_str()).collect()
    }
}

/// The compression a file starts with, if any.
fn compression(magic: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (&[0x1f, 0x8b], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (b"BZh", "bzip2"),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| magic.starts_with(m))
        .map(|(_, k)| *k)
}

/// The format and images of an archive (a tar), reading only its small JSON members; file
/// data is skipped by seeking.
pub fn read_images<R: Read + Seek>(
    mut reader: R,
    path: &Path,
) -> Result<(Format, Vec<ArchivedImage>), ArchiveError> {
    let io = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 6];
    let n = reader.read(&mut magic).map_err(io)?;
    if let Some(kind) = compression(magic.get(..n).unwrap_or_default()) {
        return Err(ArchiveError::Compressed {
            path: path.to_path_buf(),
            kind,
        });
    }
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut archive = tar::Archive::new(reader);
    let (mut layout, mut index, mut manifest) = (false, None, None);
    for entry in archive.entries_with_seek().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let which = match name.trim_start_matches("./") {
            "oci-layout" => {
                layout = true;
                continue;
            }
            "index.json" => &mut index,
            "manifest.json" => &mut manifest,
            _ => continue,
        };
        if entry.size() > MAX_JSON {
            return Err(ArchiveError::Invalid {
                path: path.to_path_buf(),
                file: if name.ends_with("index.json") {
                    "index.json"
                } else {
                    "manifest.json"
                },
                reason: format!("{} bytes is too large", entry.size()),
            });
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(io)?;
        *which = Some(text);
    }
    // containerd prefers the OCI layout when both are present (docker >= 25 writes both).
    match (layout, index, manifest) {
        (true, Some(index), _) | (false, Some(index), None) => {
            Ok((Format::Oci, oci_images(&index, path)?))
        }
        (_, _, Some(manifest)) => Ok((Format::Docker, docker_images(&manifest, path)?)),
        _ => Err(ArchiveError::NotAnArchive {
            path: path.to_path_buf(),
        }),
    }
}

#[derive(serde::Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(serde::Deserialize)]
struct OciDescriptor {
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn oci_images(index: &str, path: &Path) -> Result<Vec<ArchivedImage>, ArchiveError> {
    let index: OciIndex = serde_json::from_str(index).map_err(|e| ArchiveError::Invalid {
        path: path.to_path_buf(),
        file: "index.json",
        reason: e.to_string(),
    })?;
    let mut images = Vec::new();
    for m in index.manifests {
        let reference = match (
            m.annotations.get(CONTAINERD_NAME),
            m.annotations.get(OCI_REF_NAME),
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(r)) if r.contains(['/', ':', '@']) => r.clone(),
            (None, Some(tag)) => {
                return Err(ArchiveError::TagOnly {
                    path: path.to_path_buf(),
                    tag: tag.clone(),
                });
            }
            // Content without a name: imported, but nothing to report or check.
            (None, None) => continue,
        };
        check_reference(&reference, path)?;
        push_unique(&mut images, reference, Some(m.digest));
    }
    non_empty(images, path)
}

#[derive(serde::Deserialize)]
struct DockerManifest {
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

fn docker_images(manifest: &str, path: &Path) -> Result<Vec<ArchivedImage>, ArchiveError> {
    let entries: Vec<DockerManifest> =
        serde_json::from_str(manifest).map_err(|e| ArchiveError::Invalid {
            path: path.to_path_buf(),
            file: "manifest.json",
            reason: e.to_string(),
        })?;
    let mut images = Vec::new();
    for tag in entries
        .into_iter()
        .flat_map(|e| e.repo_tags.unwrap_or_default())
    {
        let reference =
            normalize_docker_ref(&tag).map_err(|reason| ArchiveError::BadReference {
                path: path.to_path_buf(),
                reference: tag.clone(),
                reason,
            })?;
        push_unique(&mut images, reference, None);
    }
    non_empty(images, path)
}

fn push_unique(images: &mut Vec<ArchivedImage>, reference: String, digest: Option<String>) {
    if !images.iter().any(|i| i.reference == reference) {
        images.push(ArchivedImage { reference, digest });
    }
}

fn non_empty(images: Vec<ArchivedImage>, path: &Path) -> Result<Vec<ArchivedImage>, ArchiveError> {
    if images.is_empty() {
        Err(ArchiveError::Unnamed {
            path: path.to_path_buf(),
        })
    } else {
        Ok(images)
    }
}

/// A name that goes into shell commands and `ctr` output lines: no blanks or control bytes.
fn check_reference(reference: &str, path: &Path) -> Result<(), ArchiveError> {
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ArchiveError::BadReference {
            path: path.to_path_buf(),
            reference: reference.to_string(),
            reason: "empty or contains blanks".into(),
        });
    }
    Ok(())
}

/// Docker's normalization of a familiar name (distribution/reference ParseDockerRef):
/// default registry docker.io, `library/` for its single-component names, tag `latest` when
/// neither tag nor digest is given.
pub fn normalize_docker_ref(name: &str) -> Result<String, String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("empty or contains blanks".into());
    }
    let (name_tag, digest) = match name.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (name, None),
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if repo.is_empty() || tag == Some("") || digest == Some("") {
        return Err("missing repository, tag or digest".into());
    }
    let (mut domain, mut path) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), repo.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !path.contains('/') {
        path = format!("library/{path}");
    }
    if path.to_lowercase() != path {
        return Err("repository names must be lowercase".into());
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with the given (name, contents) members, built with the tar crate.
    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn read(bytes: Vec<u8>) -> Result<(Format, Vec<ArchivedImage>), ArchiveError> {
        read_images(std::io::Cursor::new(bytes), Path::new("x.tar"))
    }

    const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
    const BLOB: &[u8] = &[7u8; 10_000];

    #[test]
    fn oci_layout_names_from_ref_name() {
        // As umoci writes them (scripts/lib/oci.sh), blobs after the index.
        let index = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaa","size":348,"annotations":{"org.opencontainers.image.ref.name":"localhost/director-boot/spark:4.0.1"}}]}"#;
        let (f, images) = read(tar_of(&[
            ("oci-layout", LAYOUT),
            ("index.json", index),
            ("blobs/sha256/aaa", BLOB),
        ]))
        .unwrap();
        assert_eq!(f, Format::Oci);
        assert_eq!(
            images,
            [ArchivedImage {
                reference: "localhost/director-boot/spark:4.0.1".into(),
                digest: Some("sha256:aaa".into())
            }]
        );
    }

    #[test]
    fn containerd_name_wins_and_docker_25_archives_are_oci() {
        // docker >= 25 writes both formats; the OCI index has a bare tag as ref.name.
        let index = br#"{"manifests":[{"digest":"sha256:bbb","annotations":{"io.containerd.image.name":"docker.io/library/busybox:latest","org.opencontainers.image.ref.name":"latest"}}]}"#;
        let manifest = br#"[{"Config":"c.json","RepoTags":["busybox:latest"],"Layers":[]}]"#;
        let (f, images) = read(tar_of(&[
            ("blobs/sha256/bbb", BLOB),
            ("index.json", index),
            ("manifest.json", manifest),
            ("oci-layout", LAYOUT),
        ]))
        .unwrap();
        assert_eq!(f, Format::Oci);
        assert_eq!(images[0].reference, "docker.io/library/busybox:latest");
        assert_eq!(images[0].digest.as_deref(), Some("sha256:bbb"));
    }

    #[test]
    fn docker_archive_tags_are_normalized_and_deduplicated() {
        // manifest.json comes last in `docker save` output.
        let manifest = br#"[{"Config":"c.json","RepoTags":["busybox:1.36","myorg/app","busybox:1.36"],"Layers":["l/layer.tar"]},{"Config":"d.json","RepoTags":null,"Layers":[]}]"#;
        let (f, images) = read(tar_of(&[
            ("l/layer.tar", BLOB),
            ("c.json", b"{}"),
            ("./manifest.json", manifest),
        ]))
        .unwrap();
        assert_eq!(f, Format::Docker);
        let refs: Vec<_> = images.iter().map(|i| i.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "docker.io/library/busybox:1.36",
                "docker.io/myorg/app:latest"
            ]
        );
        assert!(images.iter().all(|i| i.digest.is_none()));
    }

    #[test]
    fn refusals_say_why() {
        let tag_only = br#"{"manifests":[{"digest":"sha256:c","annotations":{"org.opencontainers.image.ref.name":"v1"}}]}"#;
        let err = read(tar_of(&[("oci-layout", LAYOUT), ("index.json", tag_only)])).unwrap_err();
        assert!(
            matches!(err, ArchiveError::TagOnly { ref tag, .. } if tag == "v1"),
            "{err}"
        );
        assert!(err.to_string().contains("import-<date>:v1"), "{err}");

        let unnamed = br#"{"manifests":[{"digest":"sha256:c"}]}"#;
        let err = read(tar_of(&[("oci-layout", LAYOUT), ("index.json", unnamed)])).unwrap_err();
        assert!(matches!(err, ArchiveError::Unnamed { .. }), "{err}");

        let err = read(tar_of(&[("etc/passwd", b"root")])).unwrap_err();
        assert!(matches!(err, ArchiveError::NotAnArchive { .. }), "{err}");

        let err = read(tar_of(&[("oci-layout", LAYOUT), ("index.json", b"{nope")])).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::Invalid {
                    file: "index.json",
                    ..
                }
            ),
            "{err}"
        );

        let err = read(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Compressed { kind: "gzip", .. }),
            "{err}"
        );

        let blank = br#"[{"RepoTags":["bad name:1"]}]"#;
        let err = read(tar_of(&[("manifest.json", blank)])).unwrap_err();
        assert!(matches!(err, ArchiveError::BadReference { .. }), "{err}");
    }

    #[test]
    fn docker_normalization() {
        for (given, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.35", "docker.io/library/busybox:1.35"),
            ("myorg/app:v1", "docker.io/myorg/app:v1"),
            ("index.docker.io/library/x:1", "docker.io/library/x:1"),
            ("docker.io/x", "docker.io/library/x:latest"),
            (
                "localhost/director-boot/spark:4.0.1",
                "localhost/director-boot/spark:4.0.1",
            ),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("quay.io/a/b@sha256:0123", "quay.io/a/b@sha256:0123"),
        ] {
            assert_eq!(normalize_docker_ref(given).as_deref(), Ok(want), "{given}");
        }
        assert!(normalize_docker_ref("MyApp:1").is_err());
        assert!(normalize_docker_ref("app:").is_err());
        assert!(normalize_docker_ref("").is_err());
    }

    #[test]
    fn opens_a_file_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.tar");
        let index = br#"{"manifests":[{"digest":"sha256:d","annotations":{"org.opencontainers.image.ref.name":"localhost/director-boot/probe:0.1.0"}}]}"#;
        let bytes = tar_of(&[("oci-layout", LAYOUT), ("index.json", index)]);
        std::fs::write(&path, &bytes).unwrap();
        let a = ImageArchive::open(&path).unwrap();
        assert_eq!(a.file_name, "probe.tar");
        assert_eq!(a.size, bytes.len() as u64);
        assert_eq!(a.sha256, crate::ssh::sha256_hex(&bytes));
        assert_eq!(a.references(), ["localhost/director-boot/probe:0.1.0"]);
        let err = ImageArchive::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
