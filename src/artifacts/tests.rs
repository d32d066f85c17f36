//! fetch/verify/list/export/bundle against a loopback HTTP server serving an upstream layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fetch::{FetchOptions, Source, fetch};
use super::pinned::{Component, ComponentKind, FileSpec, Pinned};
use super::{bundle, mirror};
use crate::engine::artifacts::{Artifacts, sha256_file};

/// A minimal HTTP/1.1 file server on 127.0.0.1 (GET only, one request per connection).
async fn serve(root: PathBuf) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let file = root.join(path.trim_start_matches('/'));
                let resp = match std::fs::read(&file) {
                    Ok(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend(body);
                        r
                    }
                    Err(_) => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/")
}

fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(enc);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn put(root: &Path, rel: &str, data: &[u8]) -> String {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    sha256_file(&p).unwrap()
}

/// An upstream layout (kubelet as a file, etcd as a tarball, one image) and its manifest.
fn site(root: &Path) -> Pinned {
    let kubelet = put(
        root,
        "dl.example/release/v1.36.3/bin/linux/amd64/kubelet",
        b"kubelet-bin",
    );
    let etcd = put(
        root,
        "gh.example/etcd/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz",
        &tarball(&[
            ("etcd-v3.6.14-linux-amd64/etcd", b"etcd-bin"),
            ("etcd-v3.6.14-linux-amd64/etcdctl", b"etcdctl-bin"),
            ("etcd-v3.6.14-linux-amd64/README.md", b"readme"),
        ]),
    );
    let cni = put(
        root,
        "gh.example/cni/cni-plugins-linux-amd64-v1.9.1.tgz",
        &tarball(&[("./bridge", b"bridge-bin"), ("./loopback", b"lo-bin")]),
    );
    let pause = put(root, "images/pause.tar", b"pause-oci-archive");
    let sha = |v: String| BTreeMap::from([("amd64".to_string(), v)]);
    let file = |name: &str, member: Option<&str>, path: &str| FileSpec {
        name: name.into(),
        member: member.map(str::to_string),
        path: path.into(),
    };
    let comp = |name: &str, version: &str, url: &str, sha256, files| Component {
        name: name.into(),
        kind: ComponentKind::File,
        version: version.into(),
        url: Some(url.into()),
        sha256_url: None,
        reference: None,
        digest: None,
        path: None,
        sha256,
        files,
    };
    Pinned {
        source: "test site".into(),
        kubernetes_version: "v1.36.3".into(),
        components: vec![
            comp(
                "kubelet",
                "1.36.3",
                "https://dl.example/release/v{version}/bin/linux/{arch}/kubelet",
                sha(kubelet),
                vec![file("kubelet", None, "bin/kubelet")],
            ),
            comp(
                "etcd",
                "3.6.14",
                "https://gh.example/etcd/v{version}/etcd-v{version}-linux-{arch}.tar.gz",
                sha(etcd),
                vec![
                    file(
                        "etcd",
                        Some("etcd-v{version}-linux-{arch}/etcd"),
                        "bin/etcd",
                    ),
                    file(
                        "etcdctl",
                        Some("etcd-v{version}-linux-{arch}/etcdctl"),
                        "bin/etcdctl",
                    ),
                ],
            ),
            comp(
                "cni-plugins",
                "1.9.1",
                "https://gh.example/cni/cni-plugins-linux-{arch}-v{version}.tgz",
                sha(cni),
                vec![
                    file("cni-bridge", Some("bridge"), "cni/bridge"),
                    file("cni-loopback", Some("loopback"), "cni/loopback"),
                ],
            ),
            Component {
                name: "pause".into(),
                kind: ComponentKind::Image,
                version: "3.10".into(),
                url: None,
                sha256_url: None,
                reference: Some("registry.k8s.io/pause:3.10".into()),
                digest: None,
                path: Some("images/pause.tar".into()),
                sha256: BTreeMap::from([("all".to_string(), pause)]),
                files: vec![],
            },
        ],
    }
}

fn opts(source: Source, pinned: Pinned) -> FetchOptions {
    FetchOptions {
        source,
        pinned,
        manifest_name: "site.yaml".into(),
        arches: vec!["amd64".into()],
        concurrency: 3,
        show_progress: false,
    }
}

/// Every file under `dir` (relative paths).
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[tokio::test]
async fn fetch_from_a_served_layout_then_verify_list_export_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    let pinned = site(&served);
    let base = serve(served.clone()).await;
    let m = tmp.path().join("mirror");

    let r = fetch(&m, opts(Source::Http(base.clone()), pinned.clone()))
        .await
        .unwrap();
    assert_eq!(r.downloaded.len(), 4, "{r:?}");
    // What init reads.
    let a = Artifacts::open(&m).unwrap();
    assert_eq!(a.kubernetes_version, "v1.36.3");
    for name in ["kubelet", "etcd", "etcdctl", "cni-bridge", "cni-loopback"] {
        a.verify(a.get(name, "test").unwrap()).unwrap();
    }
    assert_eq!(
        std::fs::read(m.join("bin/etcdctl")).unwrap(),
        b"etcdctl-bin"
    );
    assert_eq!(std::fs::read(m.join("cni/bridge")).unwrap(), b"bridge-bin");
    assert_eq!(a.images()["pause"], "registry.k8s.io/pause:3.10");
    let v = mirror::verify(&m).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.checked, 5 + 1 + 3, "artifacts + downloads");
    let rows = mirror::list(&m).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.name == "etcd" && r.version == "3.6.14" && r.arch == "amd64" && r.size == 8),
        "{rows:?}"
    );

    // A re-run downloads nothing.
    let again = fetch(&m, opts(Source::Http(base.clone()), pinned.clone()))
        .await
        .unwrap();
    assert!(
        again.downloaded.is_empty() && again.present.len() == 4,
        "{again:?}"
    );

    // A tampered unpacked binary is named by verify.
    std::fs::write(m.join("bin/etcd"), b"evil").unwrap();
    let v = mirror::verify(&m).unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(
        v.problems[0].starts_with("bin/etcd: sha256 is "),
        "{:?}",
        v.problems
    );
    // ...and a re-fetch repairs it (unpacking again from the checked download).
    fetch(&m, opts(Source::Http(base.clone()), pinned.clone()))
        .await
        .unwrap();
    assert!(mirror::verify(&m).unwrap().problems.is_empty());

    // export = the served layout again, plus the mirror's pinned.yaml
    let out = tmp.path().join("export");
    let e = mirror::export(&m, &out).unwrap();
    assert_eq!(e.files, 4);
    let mut want = files_under(&served);
    want.push("pinned.yaml".into());
    want.sort();
    assert_eq!(files_under(&out), want);
    let exported = Pinned::load(&out.join("pinned.yaml")).unwrap();
    let m2 = tmp.path().join("mirror2");
    fetch(&m2, opts(Source::Dir(out.clone()), exported))
        .await
        .unwrap();
    assert!(mirror::verify(&m2).unwrap().problems.is_empty());

    // bundle -> the mirror init uses
    let file = tmp.path().join("site.tar.zst");
    bundle::write(&m, &file).unwrap();
    let cache = tmp.path().join("cache");
    let bm = bundle::mirror_from_bundle(&cache, &file).await.unwrap();
    assert!(bm.starts_with(&cache));
    let a = Artifacts::open(&bm).unwrap();
    a.verify(a.get("etcdctl", "test").unwrap()).unwrap();
    assert_eq!(
        bundle::mirror_from_bundle(&cache, &file).await.unwrap(),
        bm,
        "second use: same cached mirror"
    );
}

#[tokio::test]
async fn a_corrupt_download_names_the_file_and_both_sha256_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    let pinned = site(&served);
    let rel = "gh.example/etcd/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz";
    let expected = sha256_file(&served.join(rel)).unwrap();
    let mut bytes = std::fs::read(served.join(rel)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(served.join(rel), &bytes).unwrap();
    let actual = sha256_file(&served.join(rel)).unwrap();
    let base = serve(served.clone()).await;
    let m = tmp.path().join("mirror");

    let e = fetch(&m, opts(Source::Http(base), pinned))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(rel), "{e}");
    assert!(e.contains(&expected) && e.contains(&actual), "{e}");
    assert!(e.contains("site.yaml"), "{e}");
    let left = files_under(&m);
    assert!(!left.iter().any(|f| f.contains("etcd")), "{left:?}");
    assert!(!left.iter().any(|f| f.contains(".part")), "{left:?}");
    assert!(!m.join("manifest.json").exists());
}

#[tokio::test]
async fn a_missing_file_and_a_dead_server_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    let pinned = site(&served);
    std::fs::remove_file(served.join("images/pause.tar")).unwrap();
    let base = serve(served.clone()).await;
    let e = fetch(
        &tmp.path().join("m"),
        opts(Source::Http(base.clone()), pinned),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("cannot download {base}images/pause.tar: HTTP 404")),
        "{e}"
    );
}

/// Two architectures: the first is bin/ (what init reads), the others under arch/<arch>/; a
/// component without a collected checksum takes the upstream `.sha256` file next to it, and
/// the mirror's pinned.yaml then carries the value.
#[tokio::test]
async fn two_arches_and_a_sidecar_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    let mut sha = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        let rel = format!("dl.example/v1.36.3/{arch}/kube-apiserver");
        let s = put(&served, &rel, format!("apiserver-{arch}").as_bytes());
        put(
            &served,
            &format!("{rel}.sha256"),
            format!("{s}  kube-apiserver\n").as_bytes(),
        );
        sha.insert(arch.to_string(), s);
    }
    let pinned = Pinned {
        source: "test".into(),
        kubernetes_version: "v1.36.3".into(),
        components: vec![Component {
            name: "kube-apiserver".into(),
            kind: ComponentKind::File,
            version: "1.36.3".into(),
            url: Some("https://dl.example/v{version}/{arch}/kube-apiserver".into()),
            sha256_url: Some("{url}.sha256".into()),
            reference: None,
            digest: None,
            path: None,
            sha256: BTreeMap::new(),
            files: vec![FileSpec {
                name: "kube-apiserver".into(),
                member: None,
                path: "bin/kube-apiserver".into(),
            }],
        }],
    };
    let base = serve(served.clone()).await;
    let m = tmp.path().join("mirror");
    let mut o = opts(Source::Http(base), pinned);
    o.arches = vec!["amd64".into(), "arm64".into()];
    fetch(&m, o).await.unwrap();
    assert_eq!(
        std::fs::read(m.join("bin/kube-apiserver")).unwrap(),
        b"apiserver-amd64"
    );
    assert_eq!(
        std::fs::read(m.join("arch/arm64/bin/kube-apiserver")).unwrap(),
        b"apiserver-arm64"
    );
    let a = Artifacts::open(&m).unwrap();
    let api = a.get("kube-apiserver", "test").unwrap();
    assert_eq!(api.path, "bin/kube-apiserver", "init gets the first arch");
    a.verify(api).unwrap();
    let written = Pinned::load(&m.join("pinned.yaml")).unwrap();
    assert_eq!(written.components[0].sha256, sha);
    assert!(written.components[0].sha256_url.is_none());
    assert!(mirror::verify(&m).unwrap().problems.is_empty());
    let rows = mirror::list(&m).unwrap();
    let arches: Vec<&str> = rows.iter().map(|r| r.arch.as_str()).collect();
    assert_eq!(arches, ["amd64", "arm64"]);
}
